//! Prepared statements: the decision is made once at Parse (protocol level) or at PREPARE
//! (SQL level) and holds for every execution, whatever the parameters.

use crate::common::frames;
use crate::common::raw;
use crate::common::ADS;
use crate::{assert_refused, direct, proxied, raw_proxied, simple_rows, start_proxy};

#[tokio::test]
async fn a_masked_statement_prepared_once_is_masked_on_every_execution() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    let upstream = direct(ADS.upstream_role).await;
    let st = ads
        .prepare(
            "SELECT id, handle, phone_2fa, email_login, marketing_phone FROM users \
             WHERE country = $1 AND birth_year >= $2 ORDER BY id LIMIT $3",
        )
        .await
        .unwrap();
    let names: Vec<&str> = st.columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "id",
            "handle",
            "phone_2fa",
            "email_login",
            "marketing_phone"
        ]
    );
    let reference = upstream
        .prepare(
            "SELECT id, handle, phone_2fa, email_login, marketing_phone FROM users \
             WHERE country = $1 AND birth_year >= $2 AND ads_opt_in ORDER BY id LIMIT $3",
        )
        .await
        .unwrap();
    let types = |s: &tokio_postgres::Statement| -> Vec<u32> {
        s.columns().iter().map(|c| c.type_().oid()).collect()
    };
    assert_eq!(types(&st), types(&reference));
    assert_eq!(st.params(), reference.params());
    // Opted-in users have even ids, so they live in NL, DE, US and ES only.
    let mut executions = 0;
    for (country, year, limit) in [
        ("NL", 1950, 20i64),
        ("DE", 1970, 5),
        ("ES", 1990, 50),
        ("US", 1950, 1),
    ] {
        let got = ads.query(&st, &[&country, &year, &limit]).await.unwrap();
        let want = upstream
            .query(&reference, &[&country, &year, &limit])
            .await
            .unwrap();
        assert_eq!(got.len(), want.len(), "{country}");
        assert!(!got.is_empty(), "{country}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.get::<_, i64>(0), w.get::<_, i64>(0));
            assert_eq!(g.get::<_, String>(1), w.get::<_, String>(1));
            assert_eq!(g.get::<_, Option<String>>(2), None);
            assert_eq!(g.get::<_, Option<String>>(3), None);
            assert_eq!(g.get::<_, Option<String>>(4), w.get::<_, Option<String>>(4));
        }
        executions += 1;
    }
    assert_eq!(executions, 4);
}

#[tokio::test]
async fn a_named_statement_is_described_and_executed_many_times_in_one_pipeline() {
    let (_cfg, proxy) = start_proxy();
    let mut conn = raw_proxied(proxy.port(), ADS).await;
    let mut msg = raw::parse(
        "q",
        "SELECT handle, phone_2fa FROM users WHERE id = $1::bigint",
    );
    msg.extend(raw::describe(b'S', "q"));
    for id in ["2", "3", "4", "7", "14"] {
        msg.extend(raw::bind("", "q", &[Some(id)]));
        msg.extend(raw::execute("", 0));
    }
    msg.extend(raw::sync());
    conn.send(&msg).await.unwrap();
    let got = conn.until_ready(1).await;
    assert!(frames::first_error(&got).is_none(), "{got:?}");
    let desc = frames::row_description(frames::of_kind(&got, b'T')[0]);
    assert_eq!(desc[1].name, "phone_2fa");
    assert_eq!(desc[1].type_oid, 25, "text");
    // ads_opt_in = even ids: 3 and 7 are hidden; 2, 4 and 14 have 2FA phones, masked.
    let rows = frames::text_rows(&got);
    assert_eq!(
        rows,
        vec![
            vec![Some("user0002".to_owned()), None],
            vec![Some("user0004".to_owned()), None],
            vec![Some("user0014".to_owned()), None],
        ]
    );
    let tags: Vec<String> = frames::of_kind(&got, b'C')
        .into_iter()
        .map(frames::command_tag)
        .collect();
    assert_eq!(
        tags,
        ["SELECT 1", "SELECT 0", "SELECT 1", "SELECT 0", "SELECT 1"]
    );
}

#[tokio::test]
async fn sql_level_prepare_and_execute_are_enforced() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    ads.batch_execute(
        "PREPARE masked(bigint) AS SELECT handle, phone_2fa, marketing_email FROM users WHERE id = $1",
    )
    .await
    .unwrap();
    for (id, visible) in [(2, true), (4, true), (8, true), (1, false), (7, false)] {
        let rows = simple_rows(&ads, &format!("EXECUTE masked({id})")).await;
        assert_eq!(rows.len(), usize::from(visible), "id {id}");
        if visible {
            assert_eq!(rows[0][0].as_deref(), Some(format!("user{id:04}").as_str()));
            assert_eq!(rows[0][1], None);
        }
    }
    // marketing_email of user 8 is given for advertising: it arrives.
    let rows = simple_rows(&ads, "EXECUTE masked(8)").await;
    assert_eq!(rows[0][2].as_deref(), Some("user8@mail.example.org"));

    // A refused PREPARE never reaches Postgres: EXECUTE finds no such statement.
    assert_refused(
        ads.simple_query("PREPARE m(text) AS SELECT id FROM users WHERE phone_2fa = $1")
            .await,
        &["phone_2fa"],
        "PREPARE",
    );
    let err = ads
        .simple_query("EXECUTE m('+31610000007')")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "26000", "{err}");
    // A parameter that is itself a forbidden subquery is refused at EXECUTE.
    assert_refused(
        ads.simple_query(
            "EXECUTE masked((SELECT id FROM users WHERE phone_2fa LIKE '+3161%' LIMIT 1))",
        )
        .await,
        &["phone_2fa"],
        "EXECUTE with a subquery",
    );
}

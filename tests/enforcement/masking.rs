//! Masked output: a forbidden column that only reaches the output arrives as NULL under the
//! same name with the same type, in text (simple protocol) and binary (extended protocol)
//! results; `*` expands to the same columns, in the same order, as Postgres's own `*`.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::common::frames::{self, Field};
use crate::common::raw::{self, Frame, RawConn};
use crate::common::ADS;
use crate::{direct, proxied, raw_direct, raw_proxied, simple_rows, start_proxy, ADS_FILTER};

/// What one query returned: its columns and rows (raw values, text or binary).
struct Answer {
    fields: Vec<Field>,
    rows: Vec<Vec<Option<Vec<u8>>>>,
}

fn answer(frames_: &[Frame], what: &str) -> Answer {
    if let Some(e) = frames::first_error(frames_) {
        panic!("{what}: {}", frames::render(e));
    }
    let t = frames::of_kind(frames_, b'T');
    assert_eq!(t.len(), 1, "{what}: one RowDescription expected");
    Answer {
        fields: frames::row_description(t[0]),
        rows: frames::of_kind(frames_, b'D')
            .into_iter()
            .map(frames::data_row)
            .collect(),
    }
}

/// Runs `sql` with the simple protocol (text results).
async fn simple(conn: &mut RawConn, sql: &str) -> Answer {
    answer(&conn.simple(sql).await, sql)
}

/// Runs `sql` with Parse/Bind/Describe/Execute/Sync, all results in binary.
async fn extended_binary(conn: &mut RawConn, sql: &str) -> Answer {
    let mut msg = raw::parse("", sql);
    msg.extend(frames::bind_with_format("", "", &[], 1));
    msg.extend(raw::describe(b'P', ""));
    msg.extend(raw::execute("", 0));
    msg.extend(raw::sync());
    conn.send(&msg).await.expect("send");
    answer(&conn.until_ready(1).await, sql)
}

/// Compares what ads-service receives for `proxied_sql` with what its upstream role receives
/// for `direct_sql` (the same query with the row filter written out): same column names,
/// types, sizes, modifiers and formats, same rows; columns named in `masked` are NULL through
/// the proxy (and not all NULL directly, so there was something to hide).
async fn assert_masked_like_direct(
    port: u16,
    proxied_sql: &str,
    direct_sql: &str,
    masked: &[&str],
) {
    for binary in [false, true] {
        let mut via = raw_proxied(port, ADS).await;
        let mut reference = raw_direct(ADS.upstream_role).await;
        let (got, want) = if binary {
            (
                extended_binary(&mut via, proxied_sql).await,
                extended_binary(&mut reference, direct_sql).await,
            )
        } else {
            (
                simple(&mut via, proxied_sql).await,
                simple(&mut reference, direct_sql).await,
            )
        };
        let format = if binary { "binary" } else { "text" };
        let shape = |fs: &[Field]| -> Vec<(String, u32, i16, i32, i16)> {
            fs.iter()
                .map(|f| (f.name.clone(), f.type_oid, f.type_len, f.type_mod, f.format))
                .collect()
        };
        assert_eq!(
            shape(&got.fields),
            shape(&want.fields),
            "{format}: columns of {proxied_sql}"
        );
        assert_eq!(
            got.rows.len(),
            want.rows.len(),
            "{format}: row count of {proxied_sql}"
        );
        assert!(!want.rows.is_empty(), "{direct_sql} returned no rows");
        let mut hidden = 0;
        for (r, (g, w)) in got.rows.iter().zip(&want.rows).enumerate() {
            for (i, f) in got.fields.iter().enumerate() {
                if masked.contains(&f.name.as_str()) {
                    assert_eq!(g[i], None, "{format}: row {r} column {} not masked", f.name);
                    hidden += usize::from(w[i].is_some());
                } else {
                    assert_eq!(g[i], w[i], "{format}: row {r} column {} differs", f.name);
                }
            }
        }
        if !masked.is_empty() {
            assert!(
                hidden > 0,
                "{direct_sql}: the masked columns were all NULL anyway"
            );
        }
        for m in masked {
            assert!(
                got.fields.iter().any(|f| f.name == *m),
                "{format}: no column {m} in {proxied_sql}"
            );
        }
    }
}

#[tokio::test]
async fn masked_columns_are_typed_nulls_in_binary_results() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    let upstream = direct(ADS.upstream_role).await;

    let cols =
        "id, handle, email_login, phone_2fa, password_hash, marketing_email, marketing_phone";
    let got = ads
        .query(
            &format!("SELECT {cols} FROM users ORDER BY id LIMIT 60"),
            &[],
        )
        .await
        .unwrap();
    let want = upstream
        .query(
            &format!("SELECT {cols} FROM users WHERE {ADS_FILTER} ORDER BY id LIMIT 60"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 60);
    assert_eq!(got.len(), want.len());
    let names = |r: &tokio_postgres::Row| -> Vec<(String, u32)> {
        r.columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.type_().oid()))
            .collect()
    };
    assert_eq!(names(&got[0]), names(&want[0]));
    let mut marketing = 0;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.get::<_, i64>("id"), w.get::<_, i64>("id"));
        assert_eq!(g.get::<_, String>("handle"), w.get::<_, String>("handle"));
        for masked in ["email_login", "phone_2fa", "password_hash"] {
            assert_eq!(g.get::<_, Option<String>>(masked), None, "{masked}");
        }
        let m: Option<String> = g.get("marketing_email");
        assert_eq!(m, w.get::<_, Option<String>>("marketing_email"));
        marketing += usize::from(m.is_some());
        assert_eq!(
            g.get::<_, Option<String>>("marketing_phone"),
            w.get::<_, Option<String>>("marketing_phone")
        );
    }
    assert!(marketing > 0, "advertising columns arrive unmasked");
    assert!(
        want.iter()
            .any(|w| w.get::<_, Option<String>>("phone_2fa").is_some()),
        "the upstream role reads real 2FA phones: the proxy is what hides them"
    );

    // A wholly tagged table: every column masked, each with its own type (bigint, timestamptz,
    // inet, text, boolean) decoded as NULL by typed getters.
    let got = ads
        .query("SELECT * FROM login_events LIMIT 5", &[])
        .await
        .unwrap();
    let want = upstream
        .query("SELECT * FROM login_events LIMIT 5", &[])
        .await
        .unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(names(&got[0]), names(&want[0]));
    for row in &got {
        assert_eq!(row.get::<_, Option<i64>>("id"), None);
        assert_eq!(row.get::<_, Option<i64>>("user_id"), None);
        assert_eq!(row.get::<_, Option<SystemTime>>("at"), None);
        assert_eq!(row.get::<_, Option<IpAddr>>("ip"), None);
        assert_eq!(row.get::<_, Option<String>>("user_agent"), None);
        assert_eq!(row.get::<_, Option<bool>>("success"), None);
    }
    assert!(want[0].get::<_, Option<IpAddr>>("ip").is_some());
}

#[tokio::test]
async fn masked_columns_are_nulls_in_text_results() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    let sql = "SELECT id, phone_2fa, u.email_login AS login, marketing_phone FROM users u \
               WHERE id < 40 ORDER BY id";
    let messages = ads.simple_query(sql).await.unwrap();
    let first = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("rows");
    let names: Vec<&str> = first.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["id", "phone_2fa", "login", "marketing_phone"]);
    let rows = simple_rows(&ads, sql).await;
    assert_eq!(rows.len(), 19, "even ids 2..38 (ads_opt_in)");
    assert!(rows.iter().all(|r| r[1].is_none() && r[2].is_none()));
    assert!(
        rows.iter().any(|r| r[3].is_some()),
        "marketing phones arrive"
    );
    let upstream = direct(ADS.upstream_role).await;
    let direct_rows = simple_rows(
        &upstream,
        "SELECT id, marketing_phone FROM users WHERE ads_opt_in AND id < 40 ORDER BY id",
    )
    .await;
    let got: Vec<_> = rows.iter().map(|r| (r[0].clone(), r[3].clone())).collect();
    let want: Vec<_> = direct_rows
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn row_descriptions_match_direct_in_text_and_binary() {
    let (_cfg, proxy) = start_proxy();
    let port = proxy.port();
    assert_masked_like_direct(
        port,
        "SELECT id, handle, phone_2fa, email_login AS \"Login\", password_hash, marketing_email \
         FROM users ORDER BY id LIMIT 25",
        &format!(
            "SELECT id, handle, phone_2fa, email_login AS \"Login\", password_hash, \
             marketing_email FROM users WHERE {ADS_FILTER} ORDER BY id LIMIT 25"
        ),
        &["phone_2fa", "Login", "password_hash"],
    )
    .await;
    // Several types at once (bigint, timestamptz, inet, text, boolean).
    assert_masked_like_direct(
        port,
        "SELECT l.id, l.user_id, l.at, l.ip, l.user_agent, l.success FROM login_events l LIMIT 10",
        "SELECT l.id, l.user_id, l.at, l.ip, l.user_agent, l.success FROM login_events l LIMIT 10",
        &["id", "user_id", "at", "ip", "user_agent", "success"],
    )
    .await;
}

#[tokio::test]
async fn star_expansion_keeps_columns_order_names_and_types() {
    let (_cfg, proxy) = start_proxy();
    let port = proxy.port();
    let cases: [(&str, String, &[&str]); 6] = [
        (
            "SELECT * FROM users ORDER BY id LIMIT 30",
            format!("SELECT * FROM users WHERE {ADS_FILTER} ORDER BY id LIMIT 30"),
            &["email_login", "phone_2fa", "password_hash"],
        ),
        (
            "SELECT * FROM users u JOIN posts p ON p.user_id = u.id ORDER BY p.id LIMIT 30",
            format!(
                "SELECT * FROM users u JOIN posts p ON p.user_id = u.id WHERE u.{ADS_FILTER} \
                 ORDER BY p.id LIMIT 30"
            ),
            &["email_login", "phone_2fa", "password_hash"],
        ),
        (
            "SELECT p.*, u.* FROM posts p JOIN users u ON u.id = p.user_id ORDER BY p.id LIMIT 30",
            format!(
                "SELECT p.*, u.* FROM posts p JOIN users u ON u.id = p.user_id \
                 WHERE u.{ADS_FILTER} ORDER BY p.id LIMIT 30"
            ),
            &["email_login", "phone_2fa", "password_hash"],
        ),
        (
            "SELECT * FROM user_security_contacts ORDER BY id LIMIT 30",
            format!(
                "SELECT * FROM user_security_contacts WHERE id IN \
                 (SELECT id FROM users WHERE {ADS_FILTER}) ORDER BY id LIMIT 30"
            ),
            &["email_login", "phone_2fa"],
        ),
        (
            "SELECT * FROM user_security_contacts JOIN user_profiles USING (id) \
             ORDER BY id LIMIT 30",
            format!(
                "SELECT * FROM user_security_contacts JOIN user_profiles USING (id) \
                 WHERE id IN (SELECT id FROM users WHERE {ADS_FILTER}) ORDER BY id LIMIT 30"
            ),
            &["email_login", "phone_2fa"],
        ),
        (
            "WITH x AS (SELECT id, phone_2fa, marketing_phone FROM users) \
             SELECT * FROM x ORDER BY id LIMIT 30",
            format!(
                "WITH x AS (SELECT id, phone_2fa, marketing_phone FROM users \
                 WHERE {ADS_FILTER}) SELECT * FROM x ORDER BY id LIMIT 30"
            ),
            &["phone_2fa"],
        ),
    ];
    for (via, reference, masked) in &cases {
        assert_masked_like_direct(port, via, reference, masked).await;
    }
}

//! Blocked statements: SQLSTATE 42501 naming the column, the session stays usable, an open
//! transaction is aborted exactly as Postgres would abort it, and in the extended protocol
//! everything up to Sync is skipped.

use crate::common::frames;
use crate::common::raw::{self, Frame};
use crate::common::{ADS, ANALYTICS};
use crate::{assert_refused, count, direct, proxied, raw_proxied, start_proxy};

const BLOCKED: &str = "SELECT id FROM users WHERE phone_2fa = '+31610000007'";

fn tags(frames_: &[Frame]) -> String {
    frames_.iter().map(|f| f.tag() as char).collect()
}

#[tokio::test]
async fn a_block_is_42501_naming_the_column_and_the_session_goes_on() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;

    // Simple protocol.
    assert_refused(
        ads.simple_query(BLOCKED).await,
        &["phone_2fa", "ads-service", "advertising", "security"],
        "simple query",
    );
    assert_eq!(count(&ads, "SELECT count(*) FROM advertisers").await, 10);
    // Extended protocol (tokio-postgres prepares first: the refusal comes at Parse).
    assert_refused(
        ads.query(BLOCKED, &[]).await,
        &["phone_2fa"],
        "extended query",
    );
    assert_refused(
        ads.prepare("SELECT count(*) FROM users GROUP BY email_login")
            .await,
        &["email_login", "GROUP BY"],
        "prepare",
    );
    assert_eq!(count(&ads, "SELECT count(*) FROM advertisers").await, 10);
    // The literal in the refused statement is not echoed back.
    let err = ads.simple_query(BLOCKED).await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert!(!db.message().contains("+3161"), "{}", db.message());
    assert!(!db.hint().unwrap_or_default().contains("+3161"));
}

#[tokio::test]
async fn a_block_inside_a_transaction_aborts_it_like_postgres() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    let before = count(&ads, "SELECT count(*) FROM ad_impressions").await;

    ads.batch_execute("BEGIN; INSERT INTO ad_impressions (user_id, advertiser_id) VALUES (2, 1)")
        .await
        .unwrap();
    assert_refused(ads.simple_query(BLOCKED).await, &["phone_2fa"], "in BEGIN");
    let next = ads.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(next.code().unwrap().code(), "25P02", "{next}");
    ads.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        count(&ads, "SELECT count(*) FROM ad_impressions").await,
        before,
        "the insert before the refusal was rolled back"
    );

    // A savepoint recovers as it does in Postgres.
    ads.batch_execute("BEGIN; SAVEPOINT s").await.unwrap();
    assert_refused(
        ads.query(BLOCKED, &[]).await,
        &["phone_2fa"],
        "extended in BEGIN",
    );
    ads.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    assert_eq!(count(&ads, "SELECT count(*) FROM advertisers").await, 10);
    ads.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn one_blocked_statement_blocks_its_whole_query_message() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    let before = count(&ads, "SELECT count(*) FROM ad_impressions").await;
    assert_refused(
        ads.simple_query(&format!(
            "INSERT INTO ad_impressions (user_id, advertiser_id) VALUES (2, 1); {BLOCKED}"
        ))
        .await,
        &["phone_2fa"],
        "multi-statement",
    );
    assert_eq!(
        count(&ads, "SELECT count(*) FROM ad_impressions").await,
        before,
        "the allowed statement before the blocked one did not run"
    );
}

#[tokio::test]
async fn a_blocked_parse_skips_to_sync_and_the_pipeline_recovers() {
    let (_cfg, proxy) = start_proxy();
    let mut conn = raw_proxied(proxy.port(), ADS).await;

    // Parse(ok) Bind Execute, Parse(blocked) Bind Execute, Parse(ok) Bind Execute, Sync:
    // Postgres's answer to a statement failing at Parse is exactly this frame sequence.
    let mut msg = Vec::new();
    msg.extend(raw::parse("", "SELECT count(*) FROM advertisers"));
    msg.extend(raw::bind("", "", &[]));
    msg.extend(raw::execute("", 0));
    msg.extend(raw::parse("", BLOCKED));
    msg.extend(raw::bind("", "", &[]));
    msg.extend(raw::execute("", 0));
    msg.extend(raw::parse("", "SELECT count(*) FROM advertisers"));
    msg.extend(raw::bind("", "", &[]));
    msg.extend(raw::execute("", 0));
    msg.extend(raw::sync());
    conn.send(&msg).await.unwrap();
    let got = conn.until_ready(1).await;
    assert_eq!(tags(&got), "12DCEZ", "{got:?}");
    let err = frames::first_error(&got).unwrap();
    assert_eq!(err.code().as_deref(), Some("42501"));
    assert!(err.field(b'M').unwrap().contains("phone_2fa"));
    assert_eq!(got.last().unwrap().status(), Some(b'I'));

    // The same session answers the next pipeline normally.
    let mut msg = raw::parse("s1", "SELECT name FROM advertisers WHERE id = $1");
    msg.extend(raw::bind("", "s1", &[Some("3")]));
    msg.extend(raw::execute("", 0));
    msg.extend(raw::sync());
    conn.send(&msg).await.unwrap();
    let got = conn.until_ready(1).await;
    assert_eq!(tags(&got), "12DCZ", "{got:?}");
    assert_eq!(
        frames::text_rows(&got),
        vec![vec![Some("Advertiser C".to_owned())]]
    );

    // Inside a transaction block the pipeline's failure leaves it aborted (status E).
    let got = conn.simple("BEGIN").await;
    assert_eq!(got.last().unwrap().status(), Some(b'T'));
    let mut msg = raw::parse("", BLOCKED);
    msg.extend(raw::bind("", "", &[]));
    msg.extend(raw::execute("", 0));
    msg.extend(raw::sync());
    conn.send(&msg).await.unwrap();
    let got = conn.until_ready(1).await;
    assert_eq!(tags(&got), "EZ", "{got:?}");
    assert_eq!(got.last().unwrap().status(), Some(b'E'));
    let got = conn.simple("SELECT 1").await;
    assert_eq!(
        frames::first_error(&got).and_then(|e| e.code()).as_deref(),
        Some("25P02")
    );
    let got = conn.simple("ROLLBACK").await;
    assert_eq!(got.last().unwrap().status(), Some(b'I'));
    let got = conn.simple("SELECT 1").await;
    assert_eq!(frames::text_rows(&got), vec![vec![Some("1".to_owned())]]);
}

#[tokio::test]
async fn a_blocked_named_statement_never_exists_upstream() {
    let (_cfg, proxy) = start_proxy();
    let mut conn = raw_proxied(proxy.port(), ADS).await;
    let mut msg = raw::parse("m", "SELECT id FROM users WHERE phone_2fa = $1");
    msg.extend(raw::sync());
    msg.extend(raw::bind("", "m", &[Some("+31610000007")]));
    msg.extend(raw::execute("", 0));
    msg.extend(raw::sync());
    conn.send(&msg).await.unwrap();
    let got = conn.until_ready(2).await;
    assert_eq!(tags(&got), "EZEZ", "{got:?}");
    assert_eq!(got[0].code().as_deref(), Some("42501"));
    // Binding the refused statement fails as an unknown statement would (26000).
    assert_eq!(got[2].code().as_deref(), Some("26000"), "{got:?}");
}

#[tokio::test]
async fn other_services_get_their_own_refusals() {
    let (_cfg, proxy) = start_proxy();
    let analytics = proxied(proxy.port(), ANALYTICS).await;
    assert_refused(
        analytics
            .simple_query("SELECT count(*) FROM users WHERE marketing_email IS NOT NULL")
            .await,
        &["marketing_email", "analytics-service", "analytics"],
        "analytics on an advertising column",
    );
    assert_refused(
        analytics
            .simple_query("SELECT count(*) FROM login_events WHERE success")
            .await,
        &["login_events"],
        "analytics on a security table",
    );
    // Untagged data is fine and matches direct.
    let upstream = direct(ANALYTICS.upstream_role).await;
    let sql = "SELECT country, count(*) FROM users GROUP BY country ORDER BY country";
    let got = analytics.query(sql, &[]).await.unwrap();
    let want = upstream.query(sql, &[]).await.unwrap();
    let pairs = |rows: &[tokio_postgres::Row]| -> Vec<(String, i64)> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    assert_eq!(pairs(&got), pairs(&want));
    assert_eq!(got.len(), 8);
}

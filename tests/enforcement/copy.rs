//! COPY: `COPY ... TO STDOUT` arrives masked and filtered, byte for byte what Postgres sends
//! for the masked query written by hand (text, csv with header, binary); COPY of a query that
//! uses a forbidden column is refused; COPY FROM is refused without the grant or into a
//! column the service may not write.

use bytes::Bytes;
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use tokio_postgres::Client;

use crate::common::{ADS, ANALYTICS};
use crate::{assert_refused, count, direct, proxied, start_proxy};

async fn copy_out(client: &Client, sql: &str) -> Vec<u8> {
    let stream = client
        .copy_out(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.try_next().await.unwrap() {
        out.extend_from_slice(&chunk);
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn copy_to_stdout_is_masked_and_filtered_byte_for_byte() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    let upstream = direct(ADS.upstream_role).await;
    let cases = [
        (
            "COPY users TO STDOUT",
            "COPY (SELECT id, handle, display_name, country, birth_year, created_at, NULL::text, \
             NULL::text, NULL::text, marketing_email, marketing_phone, ads_opt_in, discoverable \
             FROM users WHERE ads_opt_in) TO STDOUT",
        ),
        (
            "COPY users (id, phone_2fa, marketing_phone) TO STDOUT WITH (FORMAT csv, HEADER)",
            "COPY (SELECT id, NULL::text AS phone_2fa, marketing_phone FROM users \
             WHERE ads_opt_in) TO STDOUT WITH (FORMAT csv, HEADER)",
        ),
        (
            "COPY public.users (id, email_login, password_hash) TO STDOUT (FORMAT binary)",
            "COPY (SELECT id, NULL::text, NULL::text FROM users WHERE ads_opt_in) \
             TO STDOUT (FORMAT binary)",
        ),
        (
            "COPY (SELECT phone_2fa FROM users) TO STDOUT",
            "COPY (SELECT NULL::text FROM users WHERE ads_opt_in) TO STDOUT",
        ),
        (
            "COPY (SELECT * FROM users ORDER BY id) TO STDOUT WITH (FORMAT csv)",
            "COPY (SELECT id, handle, display_name, country, birth_year, created_at, NULL::text, \
             NULL::text, NULL::text, marketing_email, marketing_phone, ads_opt_in, discoverable \
             FROM users WHERE ads_opt_in ORDER BY id) TO STDOUT WITH (FORMAT csv)",
        ),
        (
            "COPY login_events TO STDOUT",
            "COPY (SELECT NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::inet, NULL::text, \
             NULL::boolean FROM login_events) TO STDOUT",
        ),
    ];
    for (via, reference) in cases {
        let got = copy_out(&ads, via).await;
        let want = copy_out(&upstream, reference).await;
        assert!(!want.is_empty(), "{reference}");
        assert!(
            got == want,
            "{via}: {} bytes vs {} expected",
            got.len(),
            want.len()
        );
        // User 14 opted in to ads and gave a 2FA phone but no marketing phone.
        assert!(
            !contains(&got, "+31610000014"),
            "{via}: a 2FA phone arrived"
        );
        assert!(
            !contains(&got, "@login.example.com"),
            "{via}: a login email arrived"
        );
    }
    // Directly, the upstream role reads what the proxy hid.
    let raw = copy_out(&upstream, "COPY users TO STDOUT").await;
    assert!(contains(&raw, "+31610000014") && contains(&raw, "@login.example.com"));
    // The header names the masked column under its own name.
    let csv = copy_out(
        &ads,
        "COPY users (id, phone_2fa) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await;
    assert!(csv.starts_with(b"id,phone_2fa\n"));
    assert_eq!(csv.iter().filter(|b| **b == b'\n').count(), 501);
}

#[tokio::test]
async fn copy_of_a_query_using_a_forbidden_column_is_refused() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    for sql in [
        "COPY (SELECT id FROM users WHERE phone_2fa IS NOT NULL) TO STDOUT",
        "COPY (SELECT u.id FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa) \
         TO STDOUT",
        "COPY (SELECT md5(phone_2fa) FROM users) TO STDOUT WITH (FORMAT csv)",
        "COPY (SELECT id FROM users ORDER BY email_login) TO STDOUT",
    ] {
        let err = ads.copy_out(sql).await.map(|_| ());
        assert_refused(err, &["users."], sql);
        assert_eq!(count(&ads, "SELECT count(*) FROM advertisers").await, 10);
    }
}

#[tokio::test]
async fn copy_from_is_refused_without_the_grant_or_into_forbidden_columns() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    let analytics = proxied(proxy.port(), ANALYTICS).await;
    let before = count(&ads, "SELECT count(*) FROM advertiser_list_entries").await;

    // ads-service holds no copy_from grant, even for its own table.
    assert_refused(
        ads.copy_in::<_, Bytes>("COPY advertiser_list_entries (list_id, phone) FROM STDIN")
            .await
            .map(|_| ()),
        &["COPY ... FROM", "copy_from"],
        "ads COPY FROM",
    );
    assert_refused(
        ads.copy_in::<_, Bytes>("COPY users (handle, email_login, phone_2fa) FROM STDIN")
            .await
            .map(|_| ()),
        &["copy_from"],
        "ads COPY FROM users",
    );
    // analytics-service may COPY FROM, but not into a column tagged for another purpose.
    assert_refused(
        analytics
            .copy_in::<_, Bytes>("COPY users (handle, email_login) FROM STDIN")
            .await
            .map(|_| ()),
        &["email_login"],
        "analytics COPY FROM into email_login",
    );
    assert_refused(
        analytics
            .copy_in::<_, Bytes>("COPY login_events FROM STDIN WITH (FORMAT csv)")
            .await
            .map(|_| ()),
        &["login_events"],
        "analytics COPY FROM into login_events",
    );
    assert_refused(
        analytics.simple_query("COPY users FROM STDIN").await,
        &["users"],
        "analytics COPY FROM of every column (simple protocol)",
    );
    assert_eq!(
        count(&ads, "SELECT count(*) FROM advertiser_list_entries").await,
        before
    );

    // Into untagged columns it works (rolled back), and the sessions were not disturbed.
    analytics.batch_execute("BEGIN").await.unwrap();
    let sink = analytics
        .copy_in("COPY posts (user_id, body) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\tcopied one\n2\tcopied two\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    assert_eq!(
        count(
            &analytics,
            "SELECT count(*) FROM posts WHERE body LIKE 'copied %'"
        )
        .await,
        2
    );
    analytics.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&ads, "SELECT count(*) FROM advertisers").await, 10);
}

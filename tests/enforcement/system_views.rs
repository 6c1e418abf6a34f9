//! Protected catalog and statistics views: `pg_stats` holds sample values of
//! `users.phone_2fa` and `pg_stat_activity.query` other sessions' statement text. Through the
//! proxy their columns arrive as NULL or their use is refused, in every spelling, while the
//! same role reads the values directly.

use std::time::Duration;

use crate::common::frames;
use crate::common::ADS;
use crate::{assert_refused, direct, proxied, raw_proxied, simple_rows, start_proxy};

fn leaks_phone(rows: &[Vec<Option<String>>]) -> bool {
    rows.iter()
        .flatten()
        .flatten()
        .any(|v| v.contains("+3161") || v.contains("@login.example.com"))
}

#[tokio::test]
async fn pg_stats_values_never_arrive() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    let upstream = direct(ADS.upstream_role).await;
    // The upstream role itself can read 2FA phones out of pg_stats.
    let direct_rows = simple_rows(
        &upstream,
        "SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'users' AND attname = 'phone_2fa'",
    )
    .await;
    assert!(leaks_phone(&direct_rows), "{direct_rows:?}");

    for sql in [
        "SELECT * FROM pg_stats",
        "SELECT attname, most_common_vals, histogram_bounds FROM pg_catalog.pg_stats",
        "SELECT s.* FROM \"pg_stats\" s",
        "SELECT S.MOST_COMMON_VALS, S.HISTOGRAM_BOUNDS FROM PG_CATALOG.PG_STATS S",
        "WITH s AS (SELECT * FROM pg_stats) SELECT * FROM s",
        "SELECT x.h FROM (SELECT histogram_bounds AS h FROM pg_stats) x",
    ] {
        let rows = simple_rows(&ads, sql).await;
        assert!(!rows.is_empty(), "{sql}");
        assert!(
            rows.iter().flatten().all(Option::is_none),
            "{sql}: a pg_stats value arrived"
        );
    }
    // Masked columns keep their types in the RowDescription (anyarray stays anyarray).
    let mut conn = raw_proxied(proxy.port(), ADS).await;
    let got = conn
        .simple("SELECT attname, most_common_vals, null_frac FROM pg_stats LIMIT 1")
        .await;
    let desc = frames::row_description(frames::of_kind(&got, b'T')[0]);
    let types: Vec<u32> = desc.iter().map(|f| f.type_oid).collect();
    assert_eq!(types, [19, 2277, 700], "name, anyarray, real");

    for sql in [
        "SELECT histogram_bounds FROM pg_stats WHERE tablename = 'users' AND attname = 'phone_2fa'",
        "SELECT histogram_bounds::text FROM pg_stats",
        "SELECT count(*) FROM pg_stats WHERE histogram_bounds::text LIKE '%+3161%'",
        "SELECT attname FROM pg_stats ORDER BY most_common_vals::text",
        "SELECT array_to_string(most_common_vals, ',') FROM pg_stats",
        "SELECT s.histogram_bounds FROM pg_catalog.pg_stats s WHERE s.attname = 'phone_2fa'",
        "SELECT row_to_json(s) FROM pg_stats s",
    ] {
        assert_refused(ads.simple_query(sql).await, &["pg_stats"], sql);
    }
    // pg_statistic is refused (by the proxy or by Postgres: both say 42501).
    let err = ads
        .simple_query("SELECT stavalues1 FROM pg_statistic")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501", "{err}");
}

#[tokio::test]
async fn pg_stat_activity_does_not_show_other_sessions_statements() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    // Another session of the same upstream role (a batch job outside the proxy) runs a
    // statement carrying a 2FA number for a few seconds.
    let job = direct(ADS.upstream_role).await;
    let running = tokio::spawn(async move {
        job.simple_query("SELECT pg_sleep(4), count(*) FROM users WHERE phone_2fa = '+31610000007'")
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let upstream = direct(ADS.upstream_role).await;
    let seen = simple_rows(
        &upstream,
        "SELECT query FROM pg_stat_activity WHERE query LIKE '%+31610000007%' AND pid <> pg_backend_pid()",
    )
    .await;
    assert_eq!(
        seen.len(),
        1,
        "directly, the role reads the statement: {seen:?}"
    );

    for sql in [
        "SELECT query FROM pg_stat_activity",
        "SELECT * FROM pg_stat_activity",
        "SELECT a.query AS q FROM pg_catalog.pg_stat_activity a",
    ] {
        let rows = simple_rows(&ads, sql).await;
        assert!(!rows.is_empty(), "{sql}");
        assert!(!leaks_phone(&rows), "{sql}: {rows:?}");
        assert!(
            !rows
                .iter()
                .flatten()
                .flatten()
                .any(|v| v.contains("pg_sleep")),
            "{sql}: statement text arrived"
        );
    }
    for sql in [
        "SELECT pid FROM pg_stat_activity WHERE query LIKE '%+3161%'",
        "SELECT count(*) FROM pg_stat_activity GROUP BY query",
        "SELECT md5(query) FROM pg_stat_activity",
        "SELECT length(query) FROM pg_stat_activity",
    ] {
        assert_refused(ads.simple_query(sql).await, &["pg_stat_activity"], sql);
    }
    for sql in [
        "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s",
        "SELECT query FROM pg_stat_get_activity(NULL)",
    ] {
        let err = ads.simple_query(sql).await.unwrap_err();
        assert_eq!(err.code().unwrap().code(), "42501", "{sql}: {err}");
    }
    running.await.unwrap().unwrap();
}

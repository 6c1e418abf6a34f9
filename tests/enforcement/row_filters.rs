//! Row filters: discovery-service sees only `discoverable` users and ads-service only
//! `ads_opt_in` users, wherever `users` is read (joins, subqueries, CTEs, LATERAL, set
//! operations, the `user_profiles` view), and writes reach only those users. Each answer is
//! compared with the same query asked directly with the filter written out.

use crate::common::{Service, ADS, DISCOVERY};
use crate::{direct, proxied, simple_rows, start_proxy, ADS_FILTER, DISCOVERY_FILTER};

/// (query through the proxy, the same query with `{f}` as the row filter on each users scan).
const SAME_QUESTION: &[(&str, &str)] = &[
    ("SELECT count(*) FROM users", "SELECT count(*) FROM users WHERE {f}"),
    (
        "SELECT id, handle FROM users ORDER BY id",
        "SELECT id, handle FROM users WHERE {f} ORDER BY id",
    ),
    (
        "SELECT count(*) FROM public.users u WHERE u.country = 'NL'",
        "SELECT count(*) FROM public.users u WHERE u.country = 'NL' AND u.{f}",
    ),
    (
        "SELECT count(*) FROM follows f JOIN users u ON u.id = f.followee_id",
        "SELECT count(*) FROM follows f JOIN users u ON u.id = f.followee_id WHERE u.{f}",
    ),
    (
        "SELECT count(*) FROM users a JOIN follows f ON f.follower_id = a.id \
         JOIN users b ON b.id = f.followee_id",
        "SELECT count(*) FROM users a JOIN follows f ON f.follower_id = a.id \
         JOIN users b ON b.id = f.followee_id WHERE a.{f} AND b.{f}",
    ),
    (
        "SELECT count(*) FROM posts p LEFT JOIN users u ON u.id = p.user_id WHERE u.id IS NULL",
        "SELECT count(*) FROM posts p LEFT JOIN (SELECT * FROM users WHERE {f}) u \
         ON u.id = p.user_id WHERE u.id IS NULL",
    ),
    (
        "SELECT count(*) FROM posts WHERE user_id IN (SELECT id FROM users)",
        "SELECT count(*) FROM posts WHERE user_id IN (SELECT id FROM users WHERE {f})",
    ),
    (
        "SELECT count(*) FROM posts p WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = p.user_id)",
        "SELECT count(*) FROM posts p WHERE EXISTS \
         (SELECT 1 FROM users u WHERE u.id = p.user_id AND u.{f})",
    ),
    (
        "SELECT count(*) FROM posts p WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = p.user_id)",
        "SELECT count(*) FROM posts p WHERE NOT EXISTS \
         (SELECT 1 FROM users u WHERE u.id = p.user_id AND u.{f})",
    ),
    (
        "SELECT p.id, (SELECT handle FROM users u WHERE u.id = p.user_id) FROM posts p \
         ORDER BY p.id LIMIT 200",
        "SELECT p.id, (SELECT handle FROM users u WHERE u.id = p.user_id AND u.{f}) \
         FROM posts p ORDER BY p.id LIMIT 200",
    ),
    (
        "WITH nl AS (SELECT id FROM users WHERE country = 'NL') SELECT count(*) FROM nl",
        "WITH nl AS (SELECT id FROM users WHERE country = 'NL' AND {f}) SELECT count(*) FROM nl",
    ),
    (
        "SELECT count(*) FROM posts p, LATERAL (SELECT handle FROM users u WHERE u.id = p.user_id) x",
        "SELECT count(*) FROM posts p, LATERAL \
         (SELECT handle FROM users u WHERE u.id = p.user_id AND u.{f}) x",
    ),
    (
        "SELECT count(*) FROM (SELECT handle FROM users UNION ALL SELECT name FROM advertisers) s",
        "SELECT count(*) FROM (SELECT handle FROM users WHERE {f} \
         UNION ALL SELECT name FROM advertisers) s",
    ),
    (
        "SELECT country, count(*) FROM users GROUP BY country ORDER BY country",
        "SELECT country, count(*) FROM users WHERE {f} GROUP BY country ORDER BY country",
    ),
    (
        "SELECT count(*) FROM user_profiles",
        "SELECT count(*) FROM user_profiles WHERE id IN (SELECT id FROM users WHERE {f})",
    ),
    (
        "SELECT p.handle, p.country FROM user_profiles p WHERE p.country IN ('NL', 'BE') ORDER BY p.id",
        "SELECT p.handle, p.country FROM user_profiles p WHERE p.country IN ('NL', 'BE') \
         AND p.id IN (SELECT id FROM users WHERE {f}) ORDER BY p.id",
    ),
    (
        "SELECT count(*) FROM user_profiles v JOIN posts p ON p.user_id = v.id",
        "SELECT count(*) FROM user_profiles v JOIN posts p ON p.user_id = v.id \
         WHERE v.id IN (SELECT id FROM users WHERE {f})",
    ),
    (
        "SELECT max(id), min(id), sum(birth_year) FROM users",
        "SELECT max(id), min(id), sum(birth_year) FROM users WHERE {f}",
    ),
];

async fn same_answers(service: Service, filter: &str) {
    let (_cfg, proxy) = start_proxy();
    let via = proxied(proxy.port(), service).await;
    let upstream = direct(service.upstream_role).await;
    let total: i64 = upstream
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    for (q, reference) in SAME_QUESTION {
        let reference = reference.replace("{f}", filter);
        let got = simple_rows(&via, q).await;
        let want = simple_rows(&upstream, &reference).await;
        assert_eq!(got, want, "{}: {q}", service.name);
        assert!(!got.is_empty(), "{q}");
    }
    // The filter really hides rows: fewer users than the table holds.
    let seen = simple_rows(&via, "SELECT count(*) FROM users").await[0][0]
        .clone()
        .unwrap();
    assert!(seen.parse::<i64>().unwrap() < total, "{seen} of {total}");
}

#[tokio::test]
async fn discovery_sees_only_discoverable_users() {
    same_answers(DISCOVERY, DISCOVERY_FILTER).await;
    let (_cfg, proxy) = start_proxy();
    let d = proxied(proxy.port(), DISCOVERY).await;
    // discoverable = id % 3 = 1 in the seed.
    assert_eq!(
        simple_rows(&d, "SELECT count(*) FROM users").await[0][0].as_deref(),
        Some("334")
    );
    assert!(simple_rows(&d, "SELECT id FROM users WHERE id = 2")
        .await
        .is_empty());
    assert_eq!(
        simple_rows(&d, "SELECT id FROM users WHERE id = 4")
            .await
            .len(),
        1
    );
    assert!(simple_rows(
        &d,
        "SELECT handle FROM user_profiles WHERE handle = 'user0002'"
    )
    .await
    .is_empty());
}

#[tokio::test]
async fn ads_sees_only_opted_in_users() {
    same_answers(ADS, ADS_FILTER).await;
}

#[tokio::test]
async fn prepared_statements_are_filtered_on_every_execution() {
    let (_cfg, proxy) = start_proxy();
    let d = proxied(proxy.port(), DISCOVERY).await;
    let st = d
        .prepare("SELECT handle FROM users WHERE id = $1")
        .await
        .unwrap();
    for id in 1..=12i64 {
        let rows = d.query(&st, &[&id]).await.unwrap();
        let expected = usize::from(id % 3 == 1);
        assert_eq!(rows.len(), expected, "id {id}");
        if expected == 1 {
            assert_eq!(rows[0].get::<_, String>(0), format!("user{id:04}"));
        }
    }
}

#[tokio::test]
async fn writes_reach_only_visible_rows() {
    let (_cfg, proxy) = start_proxy();
    let d = proxied(proxy.port(), DISCOVERY).await;
    d.batch_execute("BEGIN").await.unwrap();
    // ids 1..6: only 1 and 4 are discoverable.
    let n = d
        .execute(
            "UPDATE users SET display_name = display_name WHERE id BETWEEN 1 AND 6",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let n = d
        .execute(
            "DELETE FROM follows WHERE follower_id IN (SELECT id FROM users WHERE id <= 6)",
            &[],
        )
        .await
        .unwrap();
    let upstream = direct(DISCOVERY.upstream_role).await;
    let want: i64 = upstream
        .query_one(
            "SELECT count(*) FROM follows WHERE follower_id IN (1, 4)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as i64, want);
    d.batch_execute("ROLLBACK").await.unwrap();
}

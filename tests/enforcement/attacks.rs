//! The Tailored Audiences misuse: matching an advertiser's uploaded phone numbers and emails
//! against the numbers users gave for two-factor authentication. Every spelling is refused
//! for ads-service through the proxy (simple and extended protocol), although the same SQL
//! run directly as its upstream role returns the matches. auth-service (purpose
//! `security.authentication`, below `security`) runs the same shapes through the proxy and
//! gets exactly what Postgres answers directly.
//!
//! auth-service may not read `advertiser_list_entries` (tagged `advertising` only), so its
//! version of each spelling matches against an inline list of the same shape instead.

use crate::common::{ADS, AUTH};
use crate::{assert_refused, direct, proxied, simple_rows, start_proxy};

/// The advertiser's list as ads-service would read it.
const ADS_LIST: &str = "advertiser_list_entries e";
/// A list of the same shape auth-service may read: two 2FA phones and a login email of the
/// seed data, and entries matching nobody.
const AUTH_LIST: &str = "(VALUES (1, '+31610000007', 'user9@login.example.com'), \
     (2, '+31610000014', NULL), (3, '+31699999999', 'nobody@example.net')) e(list_id, phone, email)";

/// (name, SQL with `{e}` for the list aliased `e` (columns list_id, phone, email), the column
/// the refusal must name).
const SPELLINGS: &[(&str, &str, &str)] = &[
    ("join on", "SELECT u.id FROM users u JOIN {e} ON e.phone = u.phone_2fa ORDER BY u.id", "phone_2fa"),
    (
        "join using through a subquery alias",
        "SELECT u.id FROM users u JOIN (SELECT phone AS phone_2fa FROM {e}) m USING (phone_2fa) ORDER BY u.id",
        "phone_2fa",
    ),
    (
        "natural join",
        "SELECT id FROM (SELECT id, phone_2fa FROM users) u NATURAL JOIN (SELECT phone AS phone_2fa FROM {e}) m ORDER BY id",
        "phone_2fa",
    ),
    ("comma join", "SELECT u.id FROM users u, {e} WHERE e.phone = u.phone_2fa ORDER BY u.id", "phone_2fa"),
    ("in subquery", "SELECT id FROM users WHERE phone_2fa IN (SELECT phone FROM {e}) ORDER BY id", "phone_2fa"),
    (
        "exists",
        "SELECT id FROM users u WHERE EXISTS (SELECT 1 FROM {e} WHERE e.phone = u.phone_2fa) ORDER BY id",
        "phone_2fa",
    ),
    ("intersect", "SELECT phone FROM {e} INTERSECT SELECT phone_2fa FROM users ORDER BY 1", "phone_2fa"),
    ("except", "SELECT phone FROM {e} EXCEPT SELECT phone_2fa FROM users ORDER BY 1", "phone_2fa"),
    (
        "cte",
        "WITH phones AS (SELECT id, phone_2fa FROM users) SELECT p.id FROM phones p JOIN {e} ON e.phone = p.phone_2fa ORDER BY p.id",
        "phone_2fa",
    ),
    (
        "lateral",
        "SELECT e.list_id, m.id FROM {e}, LATERAL (SELECT id FROM users u WHERE u.phone_2fa = e.phone) m ORDER BY 1, 2",
        "phone_2fa",
    ),
    (
        "correlated scalar subquery",
        "SELECT e.phone, (SELECT u.id FROM users u WHERE u.phone_2fa = e.phone) FROM {e} ORDER BY 1, 2",
        "phone_2fa",
    ),
    (
        "window",
        "SELECT u.id, rank() OVER (ORDER BY u.phone_2fa IN (SELECT phone FROM {e}) DESC, u.id) FROM users u ORDER BY 2 LIMIT 20",
        "phone_2fa",
    ),
    (
        "order by",
        "SELECT u.id FROM users u ORDER BY u.phone_2fa IN (SELECT phone FROM {e}) DESC, u.id LIMIT 20",
        "phone_2fa",
    ),
    (
        "group by",
        "SELECT u.phone_2fa IN (SELECT phone FROM {e}) AS matched, count(*) FROM users u GROUP BY 1 ORDER BY 1",
        "phone_2fa",
    ),
    (
        "aggregate filter",
        "SELECT count(*) FILTER (WHERE u.phone_2fa IN (SELECT phone FROM {e})) FROM users u",
        "phone_2fa",
    ),
    (
        "case",
        "SELECT u.id, CASE WHEN u.phone_2fa IN (SELECT phone FROM {e}) THEN 'match' END AS m FROM users u ORDER BY u.id",
        "phone_2fa",
    ),
    (
        "function argument",
        "SELECT u.id FROM users u JOIN {e} ON md5(e.phone) = md5(u.phone_2fa) ORDER BY u.id",
        "phone_2fa",
    ),
    (
        "casts",
        "SELECT u.id FROM users u JOIN {e} ON e.phone::varchar = u.phone_2fa::varchar ORDER BY u.id",
        "phone_2fa",
    ),
    (
        "arrays",
        "SELECT u.id FROM users u JOIN {e} ON ARRAY[u.phone_2fa] && ARRAY[e.phone] ORDER BY u.id",
        "phone_2fa",
    ),
    (
        "distinct on",
        "SELECT DISTINCT ON (u.phone_2fa) u.id FROM users u JOIN {e} ON e.phone = u.phone_2fa ORDER BY u.phone_2fa, u.id",
        "phone_2fa",
    ),
    (
        "row_to_json",
        "SELECT u.id FROM (SELECT id, phone_2fa FROM users) u JOIN {e} ON row_to_json(u)::text LIKE '%' || e.phone || '%' ORDER BY u.id",
        "phone_2fa",
    ),
    (
        "whole row",
        "SELECT u.id FROM (SELECT id, phone_2fa FROM users) u JOIN {e} ON u::text LIKE '%' || e.phone || '%' ORDER BY u.id",
        "phone_2fa",
    ),
    (
        "jsonb field of a whole row",
        "SELECT u.id FROM (SELECT id, phone_2fa FROM users) u JOIN {e} ON to_jsonb(u) ->> 'phone_2fa' = e.phone ORDER BY u.id",
        "phone_2fa",
    ),
    (
        "through a view",
        "SELECT c.id FROM user_security_contacts c JOIN {e} ON e.phone = c.phone_2fa ORDER BY c.id",
        "phone_2fa",
    ),
    (
        "login emails",
        "SELECT u.id FROM users u JOIN {e} ON lower(e.email) = lower(u.email_login) ORDER BY u.id",
        "email_login",
    ),
    (
        "cursor",
        "BEGIN; DECLARE c CURSOR FOR SELECT u.id FROM users u JOIN {e} ON e.phone = u.phone_2fa ORDER BY u.id; FETCH ALL FROM c; COMMIT",
        "phone_2fa",
    ),
    (
        "prepare",
        "PREPARE m AS SELECT u.id FROM users u JOIN {e} ON e.phone = u.phone_2fa ORDER BY u.id; EXECUTE m; DEALLOCATE m",
        "phone_2fa",
    ),
    (
        "explain analyze",
        "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF, COSTS OFF) SELECT u.id FROM users u JOIN {e} ON e.phone = u.phone_2fa",
        "phone_2fa",
    ),
    (
        "copy",
        "COPY (SELECT u.id FROM users u JOIN {e} ON e.phone = u.phone_2fa ORDER BY u.id) TO STDOUT",
        "phone_2fa",
    ),
];

#[tokio::test]
async fn every_spelling_is_refused_for_ads_service() {
    let (_cfg, proxy) = start_proxy();
    let ads = proxied(proxy.port(), ADS).await;
    let upstream = direct(ADS.upstream_role).await;
    assert!(SPELLINGS.len() >= 25);
    for (name, template, column) in SPELLINGS {
        let sql = template.replace("{e}", ADS_LIST);
        assert_refused(
            ads.simple_query(&sql).await,
            &[column, "ads-service"],
            &format!("{name} (simple)"),
        );
        if !sql.contains(';') && !sql.starts_with("COPY") {
            assert_refused(
                ads.query(&sql, &[]).await,
                &[column],
                &format!("{name} (extended)"),
            );
        }
        // The session is intact (no transaction left open by the refused BEGIN).
        assert_eq!(
            simple_rows(&ads, "SELECT 1").await,
            vec![vec![Some("1".to_owned())]],
            "{name}: session after the refusal"
        );
        // Without the proxy, the same role gets the match: there was something to refuse.
        if !sql.starts_with("COPY") {
            let rows = simple_rows(&upstream, &sql).await;
            assert!(!rows.is_empty(), "{name}: no rows directly");
        }
    }
}

#[tokio::test]
async fn auth_service_runs_the_same_shapes_unchanged() {
    let (_cfg, proxy) = start_proxy();
    let auth = proxied(proxy.port(), AUTH).await;
    let upstream = direct(AUTH.upstream_role).await;
    let mut with_match = 0;
    for (name, template, _) in SPELLINGS {
        if template.starts_with("COPY") {
            continue;
        }
        let sql = template.replace("{e}", AUTH_LIST);
        if template.starts_with("EXPLAIN") {
            // `users` also holds advertising-tagged columns auth-service may not use, and plan
            // costs reveal their sizes: EXPLAIN over it is refused for auth-service as well.
            let refused = auth
                .simple_query(&sql)
                .await
                .expect_err("EXPLAIN over users is refused");
            assert_eq!(
                crate::common::pgclient::code_of(&refused),
                "42501",
                "{name}"
            );
            continue;
        }
        let got = simple_rows(&auth, &sql).await;
        let want = simple_rows(&upstream, &sql).await;
        assert_eq!(got, want, "{name}: {sql}");
        assert!(!got.is_empty(), "{name}");
        let flat: Vec<String> = got.iter().flatten().flatten().cloned().collect();
        if flat
            .iter()
            .any(|v| v == "7" || v == "9" || v.contains("rows=2"))
        {
            with_match += 1;
        }
    }
    assert!(
        with_match >= 20,
        "only {with_match} spellings found the seeded matches"
    );
}

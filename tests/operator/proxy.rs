//! The running proxy: hot reload mid-session (valid change taken, invalid change refused with
//! the old policy still enforced) and the metrics and health endpoint after a known workload.

use std::time::{Duration, Instant};

use super::common::{self, connect_as, ProxyConfig, ADS, ANALYTICS};
use super::{http_get, policy_copy, sample};

/// Polls `/metrics` until `series` has `value` (reloads happen on the proxy's own schedule).
fn wait_for_sample(port: u16, series: &str, value: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = http_get(port, "/metrics");
        if sample(&body, series) == Some(value) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {value}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reload_mid_session_and_metrics_after_a_known_workload() {
    let pg = common::shared_cluster();
    let policies = policy_copy();
    let metrics_port = pgpurpose::localpg::free_port().unwrap();
    let mut cfg = ProxyConfig::new(pg);
    cfg.policies = policies.path().to_owned();
    // SIGHUP only: the file watcher has its own unit test, and here each change must be
    // taken exactly when the test says.
    cfg.extra_yaml =
        format!("metrics:\n  listen: \"127.0.0.1:{metrics_port}\"\nreload:\n  watch: false\n");
    let written = common::write_config(&cfg);
    let proxy = common::spawn_proxy(&written.path);

    let (status, body) = http_get(metrics_port, "/health");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");

    // --- known workload, as analytics-service: 3 allow, 2 rewrite, 1 block.
    let analytics = connect_as(ANALYTICS.name, ANALYTICS.password, proxy.port())
        .await
        .unwrap();
    for _ in 0..3 {
        analytics
            .simple_query("SELECT country, count(*) FROM users GROUP BY country")
            .await
            .unwrap();
    }
    for _ in 0..2 {
        analytics
            .simple_query("SELECT id, phone_2fa FROM users LIMIT 1")
            .await
            .unwrap();
    }
    let blocked = analytics
        .simple_query("SELECT count(*) FROM login_events WHERE ip << '10.0.0.0/8'")
        .await
        .unwrap_err();
    assert_eq!(
        blocked.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    let (_, metrics) = http_get(metrics_port, "/metrics");
    let series = |decision: &str| {
        format!(
            "pgpurpose_statements_total{{decision=\"{decision}\",service=\"analytics-service\",purpose=\"analytics\"}}"
        )
    };
    assert_eq!(sample(&metrics, &series("allow")), Some(3.0), "{metrics}");
    assert_eq!(sample(&metrics, &series("rewrite")), Some(2.0), "{metrics}");
    assert_eq!(sample(&metrics, &series("block")), Some(1.0), "{metrics}");
    let decided = sample(&metrics, "pgpurpose_decision_seconds_count").unwrap_or(0.0);
    assert!(decided >= 6.0, "{metrics}");
    assert_eq!(
        sample(&metrics, "pgpurpose_connections_open"),
        Some(1.0),
        "{metrics}"
    );
    assert!(sample(&metrics, "pgpurpose_connections_total").unwrap_or(0.0) >= 1.0);
    assert_eq!(
        sample(&metrics, "pgpurpose_upstream_errors_total"),
        Some(0.0),
        "{metrics}"
    );
    let first_version = pgpurpose::policy::load_dir(policies.path())
        .unwrap()
        .version;
    assert_eq!(
        sample(
            &metrics,
            &format!("pgpurpose_policy_version{{version=\"{first_version}\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );
    drop(analytics);

    // --- hot reload in an open session.
    let ads = connect_as(ADS.name, ADS.password, proxy.port())
        .await
        .unwrap();
    let probe = "SELECT count(*) FROM users WHERE phone_2fa IS NOT NULL";
    let err = ads.simple_query(probe).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err}"
    );

    let tables = policies.path().join("tables.yaml");
    let original = std::fs::read_to_string(&tables).unwrap();
    let opened = original.replace(
        "      phone_2fa: [security]\n",
        "      phone_2fa: [security, advertising]\n",
    );
    assert_ne!(opened, original);
    std::fs::write(&tables, &opened).unwrap();
    proxy.signal("HUP");
    wait_for_sample(
        metrics_port,
        "pgpurpose_policy_reloads_total{outcome=\"reloaded\"}",
        1.0,
    );
    // Same session, next statement: the new policy decides.
    ads.simple_query(probe)
        .await
        .unwrap_or_else(|e| panic!("allowed after the reload: {e}\n{}", proxy.output()));

    // An invalid change (a misspelt purpose) is refused; the policy in force stays.
    std::fs::write(
        &tables,
        original.replace(
            "      phone_2fa: [security]\n",
            "      phone_2fa: [securty]\n",
        ),
    )
    .unwrap();
    proxy.signal("HUP");
    let metrics = wait_for_sample(
        metrics_port,
        "pgpurpose_policy_reloads_total{outcome=\"refused\"}",
        1.0,
    );
    let second_version = pgpurpose::policy::load_sources(&[
        (
            policies.path().join("purposes.yaml"),
            std::fs::read_to_string(policies.path().join("purposes.yaml")).unwrap(),
        ),
        (
            policies.path().join("services.yaml"),
            std::fs::read_to_string(policies.path().join("services.yaml")).unwrap(),
        ),
        (tables.clone(), opened.clone()),
    ])
    .unwrap()
    .version;
    assert_eq!(
        sample(
            &metrics,
            &format!("pgpurpose_policy_version{{version=\"{second_version}\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );
    ads.simple_query(probe)
        .await
        .unwrap_or_else(|e| panic!("the reloaded policy stays in force: {e}"));
    // A statement the valid policy still forbids stays blocked.
    let err = ads
        .simple_query("SELECT count(*) FROM users WHERE email_login LIKE '%@example.com'")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    let log = proxy.stderr_text();
    assert!(log.contains("policy reload refused"), "{log}");
    assert!(
        log.contains("securty"),
        "the refusal names the error: {log}"
    );

    // A new connection is authenticated and decided under the policy in force too.
    let again = connect_as(ADS.name, ADS.password, proxy.port())
        .await
        .unwrap();
    again.simple_query(probe).await.unwrap();
}

//! Session-level behaviour of the proxy binary, with tokio-postgres as the client:
//! service authentication, purpose selection, startup parameters, pinned settings, cancel
//! requests, concurrent sessions and graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::{ProxyConfig, ANALYTICS, APP_DB, SUPPORT};
use tokio_postgres::error::SqlState;

fn start_proxy_with(extra_yaml: &str) -> (common::WrittenConfig, common::ProxyProcess) {
    let pg = common::shared_cluster();
    let mut cfg = ProxyConfig::new(pg);
    cfg.extra_yaml = extra_yaml.to_string();
    let config = common::write_config(&cfg);
    let proxy = common::spawn_proxy(&config.path);
    (config, proxy)
}

fn start_proxy() -> (common::WrittenConfig, common::ProxyProcess) {
    start_proxy_with("")
}

/// A tokio-postgres config for the proxy on `port` (database `app`, no TLS).
fn client_config(port: u16, user: &str, password: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(APP_DB)
        .connect_timeout(Duration::from_secs(10));
    c
}

async fn connect(
    c: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = c.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("(no SQLSTATE: {e})"))
}

async fn one_string(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .query_one(sql, &[])
        .await
        .unwrap()
        .get::<_, String>(0)
}

#[tokio::test]
async fn services_authenticate_with_scram_and_run_as_their_upstream_role() {
    let (_cfg, proxy) = start_proxy();
    let port = proxy.port();

    let client = common::connect_as(ANALYTICS.name, ANALYTICS.password, port)
        .await
        .unwrap();
    assert_eq!(
        one_string(&client, "select current_user::text").await,
        ANALYTICS.upstream_role
    );
    assert_eq!(
        one_string(&client, "select current_database()::text").await,
        APP_DB
    );

    // Wrong password and unknown service look the same: 28P01.
    let wrong = common::connect_as(ANALYTICS.name, "not-the-password", port)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&wrong), "28P01", "{wrong}");
    let unknown = common::connect_as("no-such-service", "x", port)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&unknown), "28P01", "{unknown}");
    // An upstream role name is not a service: identity comes from the policy only.
    let role = common::connect_as(ANALYTICS.upstream_role, ANALYTICS.upstream_role, port)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&role), "28P01", "{role}");
    drop(proxy);
}

#[tokio::test]
async fn a_session_uses_only_a_declared_purpose() {
    let (_cfg, proxy) = start_proxy();
    let port = proxy.port();
    for purpose in ["security", "analytics"] {
        let client =
            common::connect_with_purpose(SUPPORT.name, SUPPORT.password, port, Some(purpose))
                .await
                .unwrap_or_else(|e| panic!("support-service as {purpose}: {e}"));
        assert_eq!(
            one_string(&client, "select current_user::text").await,
            SUPPORT.upstream_role
        );
    }
    // Not among support-service's purposes; and a single-purpose service cannot switch.
    let err =
        common::connect_with_purpose(SUPPORT.name, SUPPORT.password, port, Some("advertising"))
            .await
            .unwrap_err();
    assert!(err.as_db_error().is_some(), "refused with an error: {err}");
    let err =
        common::connect_with_purpose(ANALYTICS.name, ANALYTICS.password, port, Some("security"))
            .await
            .unwrap_err();
    assert!(err.as_db_error().is_some(), "refused with an error: {err}");
    drop(proxy);
}

#[tokio::test]
async fn startup_parameters_cannot_change_pinned_or_privileged_settings() {
    let (_cfg, proxy) = start_proxy();
    let port = proxy.port();

    let mut ok = client_config(port, ANALYTICS.name, ANALYTICS.password);
    ok.application_name("relay-test").options("-c work_mem=8MB");
    let client = connect(&ok).await.unwrap();
    assert_eq!(
        one_string(&client, "show standard_conforming_strings").await,
        "on"
    );
    assert_eq!(one_string(&client, "show client_encoding").await, "UTF8");
    assert_eq!(
        one_string(&client, "show application_name").await,
        "relay-test"
    );
    assert_eq!(one_string(&client, "show work_mem").await, "8MB");

    for option in [
        "-c standard_conforming_strings=off",
        "-c role=postgres",
        "-c search_path=evil,public",
        "-c session_authorization=postgres",
    ] {
        let mut c = client_config(port, ANALYTICS.name, ANALYTICS.password);
        c.options(option);
        match connect(&c).await {
            Err(e) => assert!(e.as_db_error().is_some(), "{option}: {e}"),
            Ok(client) => panic!(
                "{option} was accepted (current_user {})",
                one_string(&client, "select current_user::text").await
            ),
        }
    }
    drop(proxy);
}

#[tokio::test]
async fn cancel_request_reaches_the_upstream_query() {
    let (_cfg, proxy) = start_proxy();
    let client = common::connect_as(ANALYTICS.name, ANALYTICS.password, proxy.port())
        .await
        .unwrap();
    let token = client.cancel_token();
    let started = Instant::now();
    let (slept, _) = tokio::join!(client.simple_query("select pg_sleep(30)"), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let err = slept.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cancel took too long"
    );
    // The session goes on.
    assert_eq!(
        one_string(&client, "select 'still here'::text").await,
        "still here"
    );
    drop(proxy);
}

#[tokio::test]
async fn concurrent_sessions_and_pipelined_errors() {
    let (_cfg, proxy) = start_proxy();
    let port = proxy.port();
    let mut tasks = Vec::new();
    for i in 0..16i32 {
        tasks.push(tokio::spawn(async move {
            let client = common::connect_as(ANALYTICS.name, ANALYTICS.password, port)
                .await
                .unwrap();
            // tokio-postgres pipelines these three statements on one connection (each with
            // its own Sync): the failing one must not disturb the others.
            type Params<'a> = [&'a (dyn tokio_postgres::types::ToSql + Sync)];
            let zero = 0i32;
            let pi: &Params = &[&i];
            let pz: &Params = &[&zero];
            let (a, b, c) = tokio::join!(
                client.query_one("select $1::int + 1", pi),
                client.query_one("select 1 / $1::int", pz),
                client.query_one("select $1::int * 2", pi),
            );
            assert_eq!(a.unwrap().get::<_, i32>(0), i + 1);
            assert_eq!(b.unwrap_err().code(), Some(&SqlState::DIVISION_BY_ZERO));
            assert_eq!(c.unwrap().get::<_, i32>(0), i * 2);
            let tx_rows = client
                .simple_query("begin; select 1; commit")
                .await
                .unwrap();
            assert!(!tx_rows.is_empty());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(proxy);
}

#[tokio::test]
async fn sigterm_stops_the_proxy_within_the_grace_period() {
    let (_cfg, mut proxy) = start_proxy_with("limits:\n  shutdown_grace_ms: 2000\n");
    let port = proxy.port();
    let idle = common::connect_as(ANALYTICS.name, ANALYTICS.password, port)
        .await
        .unwrap();
    assert_eq!(one_string(&idle, "select 'up'::text").await, "up");
    proxy.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = proxy.wait_exit(Duration::from_secs(15));
        (status, proxy)
    })
    .await
    .unwrap();
    let (status, proxy) = status;
    let status =
        status.unwrap_or_else(|| panic!("still running 15 s after SIGTERM\n{}", proxy.output()));
    assert!(status.success(), "exit status {status}\n{}", proxy.output());
    // The idle session was closed, and nobody listens any more.
    assert!(idle.simple_query("select 1").await.is_err());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

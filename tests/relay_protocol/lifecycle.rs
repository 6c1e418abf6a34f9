//! The proxy's life around sessions: the upstream down or restarting, graceful shutdown on
//! SIGTERM, and the connection limit.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use pgpurpose::localpg::{free_port, ClusterOptions, LocalCluster};
use tokio_postgres::NoTls;

use crate::common::pgclient::{self, code_of, severity_of, Event};
use crate::common::raw::{self, RawConn};
use crate::common::{connect_as, ProxyConfig, APP_DB};
use crate::{direct, proxied, start_proxy_with, SERVICE};

#[tokio::test]
async fn upstream_down_fails_promptly_with_08() {
    let closed_port = free_port().unwrap();
    let (_cfg, proxy) = start_proxy_with(|c| c.upstream_port = closed_port);

    let started = Instant::now();
    let e = connect_as(SERVICE.name, SERVICE.password, proxy.port())
        .await
        .expect_err("connected although the upstream is down");
    let elapsed = started.elapsed();
    assert!(code_of(&e).starts_with("08"), "{e}");
    assert_eq!(severity_of(&e), "FATAL", "{e}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");

    // On the wire: authentication completes, then one FATAL and the connection closes.
    let mut conn = RawConn::connect(proxy.port()).await;
    let params = [("user", SERVICE.name), ("database", APP_DB)];
    let error = conn
        .startup(&params, Some(SERVICE.password))
        .await
        .expect_err("startup succeeded");
    assert_eq!(error.code().as_deref(), Some("08006"), "{error:?}");
    assert!(conn
        .until_closed(Duration::from_secs(5))
        .await
        .unwrap()
        .is_empty());
}

/// A cluster of its own with the example schema and roles (no seed data needed).
fn own_cluster() -> LocalCluster {
    let pg = LocalCluster::start(ClusterOptions::default()).expect("starting a cluster");
    crate::common::cluster::stop_when_process_exits(&pg);
    pg.create_database(APP_DB).unwrap();
    let examples = pgpurpose::localpg::examples_dir();
    pg.run_sql_file(APP_DB, &examples.join("schema.sql"))
        .unwrap();
    pg.run_sql_file(APP_DB, &examples.join("roles.sql"))
        .unwrap();
    pg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_restart_errors_the_session_and_new_sessions_work() {
    let pg = tokio::task::spawn_blocking(own_cluster).await.unwrap();
    let config = crate::common::write_config(&ProxyConfig::new(&pg));
    let mut proxy = crate::common::spawn_proxy(&config.path);
    let port = proxy.port();

    let cfg = pgclient::proxy_config(SERVICE.name, SERVICE.password, port, None);
    let (c, mut events) = pgclient::connect_watched(&cfg).await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();

    let mut pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.stop().expect("stopping the cluster");
        pg
    })
    .await
    .unwrap();

    // The session learns about it (Postgres's own 57P01, relayed), and the next query fails
    // promptly instead of hanging.
    let event = pgclient::next_event(&mut events, Duration::from_secs(5)).await;
    match &event {
        Some(Event::Error(e)) => assert!(
            ["57P01", "08006"].contains(&code_of(e).as_str()),
            "unexpected error: {e}"
        ),
        other => panic!("no error event after the upstream stopped: {other:?}"),
    }
    let next = tokio::time::timeout(Duration::from_secs(5), c.simple_query("SELECT 1"))
        .await
        .expect("the next query hung after the upstream stopped");
    assert!(next.is_err(), "a query succeeded with the upstream down");

    // While it is down, new sessions fail with 08006.
    let e = connect_as(SERVICE.name, SERVICE.password, port)
        .await
        .expect_err("connected while the upstream is down");
    assert_eq!(code_of(&e), "08006", "{e}");

    let pg = tokio::task::spawn_blocking(move || {
        pg.start_again().expect("restarting the cluster");
        pg
    })
    .await
    .unwrap();
    let c2 = connect_as(SERVICE.name, SERVICE.password, port)
        .await
        .expect("a new session after the restart");
    let one: i32 = c2.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert!(
        proxy.wait_exit(Duration::ZERO).is_none(),
        "the proxy exited:\n{}",
        proxy.output()
    );
    drop(c2);
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
}

/// Waits until `sql` (run directly) returns a count of at least one.
async fn wait_until(sql: &str, what: &str) {
    let reference = direct().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = reference.query_one(sql, &[]).await.unwrap().get(0);
        if n > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_idle_sessions_and_lets_busy_ones_finish() {
    let (_cfg, mut proxy) =
        start_proxy_with(|c| c.extra_yaml = "limits:\n  shutdown_grace_ms: 20000\n".into());
    let port = proxy.port();
    let cfg = pgclient::proxy_config(SERVICE.name, SERVICE.password, port, None);
    let (_idle, mut idle_events) = pgclient::connect_watched(&cfg).await.unwrap();
    let (busy, mut busy_events) = pgclient::connect_watched(&cfg).await.unwrap();
    busy.batch_execute("BEGIN").await.unwrap();
    let sleeper = tokio::spawn(async move {
        let started = Instant::now();
        let r = busy
            .simple_query("SELECT pg_sleep(1), 'shutdown-test'")
            .await;
        (busy, r, started.elapsed())
    });
    wait_until(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
         AND query LIKE 'SELECT pg_sleep(1), ''shutdown-test''%'",
        "pg_sleep(1) starting",
    )
    .await;
    let signalled = Instant::now();
    proxy.signal("TERM");

    // The idle session is told at once.
    match pgclient::next_event(&mut idle_events, Duration::from_secs(5)).await {
        Some(Event::Error(e)) => {
            assert_eq!(code_of(&e), "57P01", "{e}");
            assert_eq!(severity_of(&e), "FATAL", "{e}");
        }
        other => panic!("the idle session got no 57P01: {other:?}"),
    }
    // No new connections.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the proxy still accepts connections while shutting down"
    );
    // The busy session's statement finishes normally, and it may still COMMIT.
    let (busy, result, took) = sleeper.await.unwrap();
    result.unwrap_or_else(|e| panic!("the running statement failed: {e}"));
    assert!(took >= Duration::from_millis(900));
    busy.batch_execute("COMMIT")
        .await
        .unwrap_or_else(|e| panic!("COMMIT during the drain failed: {e}"));
    // Then, idle, it is ended too.
    match pgclient::next_event(&mut busy_events, Duration::from_secs(5)).await {
        Some(Event::Error(e)) => assert_eq!(code_of(&e), "57P01", "{e}"),
        other => panic!("the drained session got no 57P01: {other:?}"),
    }
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy did not exit after its sessions ended");
    assert!(status.success(), "exit status {status}\n{}", proxy.output());
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "exit took {:?}",
        signalled.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_grace_period_ends_open_transactions() {
    let (_cfg, mut proxy) =
        start_proxy_with(|c| c.extra_yaml = "limits:\n  shutdown_grace_ms: 2000\n".into());
    let cfg = pgclient::proxy_config(SERVICE.name, SERVICE.password, proxy.port(), None);
    let (c, mut events) = pgclient::connect_watched(&cfg).await.unwrap();
    c.batch_execute("BEGIN; INSERT INTO proto_tx VALUES (100, 'grace')")
        .await
        .unwrap();
    let signalled = Instant::now();
    proxy.signal("TERM");
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the proxy did not exit after the grace period");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(8),
        "exit after {took:?} with a 2 s grace period"
    );
    // The client's connection is gone and the open transaction was rolled back upstream.
    match pgclient::next_event(&mut events, Duration::from_secs(5)).await {
        Some(Event::Error(_)) | Some(Event::Closed) => {}
        other => panic!("the client was not disconnected: {other:?}"),
    }
    let reference = direct().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open: i64 = reference
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 \
                 AND state LIKE 'idle in transaction%' \
                 AND query LIKE 'BEGIN; INSERT INTO proto_tx VALUES (100%'",
                &[&SERVICE.upstream_role],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upstream transaction is still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows: i64 = reference
        .query_one("SELECT count(*) FROM proto_tx WHERE id = 100", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_the_third_client_with_53300() {
    let (_cfg, proxy) =
        start_proxy_with(|c| c.extra_yaml = "limits:\n  max_connections: 2\n".into());
    let port = proxy.port();
    let first = proxied(port).await;
    let second = proxied(port).await;
    let e = connect_as(SERVICE.name, SERVICE.password, port)
        .await
        .expect_err("a third client was admitted");
    assert_eq!(code_of(&e), "53300", "{e}");
    assert_eq!(severity_of(&e), "FATAL", "{e}");

    // At the limit, a CancelRequest still gets through.
    let token = second.cancel_token();
    let sleeper = tokio::spawn(async move {
        second
            .simple_query("SELECT pg_sleep(30), 'limit-test'")
            .await
    });
    wait_until(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
         AND query LIKE 'SELECT pg_sleep(30), ''limit-test''%'",
        "pg_sleep(30) starting",
    )
    .await;
    token.cancel_query(NoTls).await.unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("cancel at the connection limit did not work")
        .unwrap();
    assert_eq!(code_of(&cancelled.expect_err("not cancelled")), "57014");

    // A slot freed by a leaving client is reused.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect_as(SERVICE.name, SERVICE.password, port).await {
            Ok(c) => {
                c.simple_query("SELECT 1").await.unwrap();
                break;
            }
            Err(e) if code_of(&e) == "53300" && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no slot after a client left: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_ends_idle_sessions_but_not_running_statements() {
    let (_cfg, proxy) =
        start_proxy_with(|c| c.extra_yaml = "limits:\n  idle_timeout_ms: 1000\n".into());
    let port = proxy.port();
    let cfg = pgclient::proxy_config(SERVICE.name, SERVICE.password, port, None);
    let mut failures = Vec::new();

    // Idle since connecting, and idle after a query: both ended with 57P05.
    let (_fresh, mut fresh_events) = pgclient::connect_watched(&cfg).await.unwrap();
    let (after_query, mut after_events) = pgclient::connect_watched(&cfg).await.unwrap();
    after_query.simple_query("SELECT 1").await.unwrap();

    // A statement running longer than the timeout is not idle.
    let (long, _long_events) = pgclient::connect_watched(&cfg).await.unwrap();
    if let Err(e) = long.simple_query("SELECT pg_sleep(2)").await {
        failures.push(format!("simple query running 2 s was ended: {e}"));
    }
    // Nor is an Execute sent with Flush instead of Sync (the result is awaited before Sync).
    let mut raw_conn = RawConn::login(port, SERVICE.name, Some(SERVICE.password)).await;
    let mut batch = raw::parse("", "SELECT pg_sleep(2)");
    batch.extend(raw::bind("", "", &[]));
    batch.extend(raw::execute("", 0));
    batch.extend(raw::frame(b'H', &[]));
    raw_conn.send(&batch).await.unwrap();
    let mut tags = String::new();
    while !tags.ends_with('C') && !tags.contains('E') {
        match raw_conn.recv().await {
            Ok(Some(f)) => {
                tags.push(f.tag() as char);
                if f.tag() == b'E' {
                    failures.push(format!("Execute+Flush running 2 s was ended: {f:?}"));
                }
            }
            other => {
                failures.push(format!("Execute+Flush: {other:?} after {tags:?}"));
                break;
            }
        }
    }

    for (what, events) in [
        ("idle since connect", &mut fresh_events),
        ("idle after a query", &mut after_events),
    ] {
        match pgclient::next_event(events, Duration::from_secs(3)).await {
            Some(Event::Error(e)) if code_of(&e) == "57P05" => {}
            other => failures.push(format!("{what}: expected 57P05 within 3 s, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_is_not_confused_by_a_query_inside_an_extended_batch() {
    let (_cfg, mut proxy) =
        start_proxy_with(|c| c.extra_yaml = "limits:\n  shutdown_grace_ms: 20000\n".into());
    let mut via = RawConn::login(proxy.port(), SERVICE.name, Some(SERVICE.password)).await;
    let mut reference = RawConn::login(crate::cluster().port(), SERVICE.upstream_role, None).await;
    // A Query inside an unsynced extended batch: Postgres runs it (its own ReadyForQuery)
    // when the batch went well, and skips it, up to Sync, after an error (no ReadyForQuery).
    for (first, ready) in [("SELECT 1", 2), ("SELECT 1/0", 1)] {
        let mut batch = raw::parse("", first);
        batch.extend(raw::bind("", "", &[]));
        batch.extend(raw::execute("", 0));
        batch.extend(raw::query("SELECT 2"));
        batch.extend(raw::sync());
        via.send(&batch).await.unwrap();
        reference.send(&batch).await.unwrap();
        let got = via.until_ready(ready).await;
        assert_eq!(
            got,
            reference.until_ready(ready).await,
            "batch with {first}"
        );
    }
    let ok = via.simple("SELECT 3").await;
    assert_eq!(ok.last().unwrap().status(), Some(b'I'), "{ok:?}");

    // A statement running at SIGTERM still finishes (the count did not go wrong one way),
    // then the idle session ends at once, not after the grace period (nor the other way).
    via.send(&raw::query("SELECT pg_sleep(1), 'skip-test'"))
        .await
        .unwrap();
    wait_until(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
         AND query LIKE 'SELECT pg_sleep(1), ''skip-test''%'",
        "pg_sleep(1) starting",
    )
    .await;
    let signalled = Instant::now();
    proxy.signal("TERM");
    let frames = via.until_closed(Duration::from_secs(19)).await.unwrap();
    let took = signalled.elapsed();
    let tags: String = frames.iter().map(|f| f.tag() as char).collect();
    assert_eq!(tags, "TDCZE", "{frames:?}");
    assert_eq!(frames[4].code().as_deref(), Some("57P01"), "{frames:?}");
    assert!(
        took < Duration::from_secs(3),
        "session ended after {took:?}"
    );
    proxy.wait_exit(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_is_idle_again_after_an_extended_protocol_copy_in() {
    crate::cluster()
        .psql(
            "app",
            "CREATE TABLE IF NOT EXISTS drain_copy (t text); GRANT ALL ON drain_copy TO app_analytics",
        )
        .unwrap();
    let (_cfg, proxy) =
        start_proxy_with(|c| c.extra_yaml = "limits:\n  idle_timeout_ms: 1000\n".into());
    let cfg = pgclient::proxy_config(SERVICE.name, SERVICE.password, proxy.port(), None);
    let (c, mut events) = pgclient::connect_watched(&cfg).await.unwrap();
    // A regular table the catalog snapshot already knows (temporary tables are not in it).
    c.batch_execute("DELETE FROM drain_copy").await.unwrap();
    // tokio-postgres sends Bind/Execute/Sync, then the data, then CopyDone/Sync: Postgres
    // ignores the first Sync (it arrives in copy-in mode), so only one ReadyForQuery comes.
    let sink = c
        .copy_in::<_, bytes::Bytes>("COPY drain_copy FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    futures_util::SinkExt::send(&mut sink, bytes::Bytes::from_static(b"a\nb\n"))
        .await
        .unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 2);
    match pgclient::next_event(&mut events, Duration::from_secs(3)).await {
        Some(Event::Error(e)) if code_of(&e) == "57P05" => {}
        other => panic!("idle after COPY, expected 57P05 within 3 s, got {other:?}"),
    }
}

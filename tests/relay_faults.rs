//! Faults around the proxy binary: the upstream Postgres restarted while sessions are inside a
//! transaction and inside COPY FROM STDIN, an upstream that accepts TCP but never answers
//! (slower than `upstream.connect_timeout_ms`), a connection reset between proxy and upstream,
//! clients vanishing in the middle of a pipeline, cancel requests racing the completion of
//! their query, and SIGHUP under load. In each case the affected clients get a clean error
//! (an ErrorResponse with a connection-class SQLSTATE, then a closed socket), the proxy keeps
//! serving every other session, and its file descriptors come back to their baseline.
//!
//! Network faults go through [`Shim`], a TCP forwarder the proxy's `upstream.port` points at.

mod common;

use std::time::{Duration, Instant};

use common::faults::{self, assert_fds_settle, fast_login, fd_count, Shim, ShimMode};
use common::raw::{self, Frame, RawConn};
use common::{ProxyConfig, ProxyProcess, WrittenConfig, ANALYTICS, APP_DB};
use pgpurpose::localpg::{ClusterOptions, LocalCluster};
use tokio::io::AsyncWriteExt;
use tokio_postgres::error::SqlState;

/// Writes `cfg` with `upstream_extra` lines added to its `upstream:` section, and starts it.
fn start(cfg: &ProxyConfig, upstream_extra: &str) -> (WrittenConfig, ProxyProcess) {
    let yaml = cfg
        .to_yaml()
        .replacen("upstream:\n", &format!("upstream:\n{upstream_extra}"), 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgpurpose.yaml");
    // Every fault test runs with the audit log on, and ends by checking it (`audit_intact`).
    std::fs::write(dir.path().join("audit.key"), AUDIT_KEY).unwrap();
    let yaml = format!(
        "{yaml}audit:\n  dir: {:?}\n  checkpoint_key:\n    file: {:?}\n",
        dir.path().join("audit").display().to_string(),
        dir.path().join("audit.key").display().to_string()
    );
    std::fs::write(&path, yaml).unwrap();
    let proxy = common::spawn_proxy(&path);
    let written = WrittenConfig {
        dir,
        path,
        listen_port: cfg.listen_port,
    };
    (written, proxy)
}

const AUDIT_KEY: &[u8] = b"fault-tests-audit-checkpoint-key-0123456789";

/// After a fault: the audit log verifies (chain, sequence, checkpoint MACs; the live segment
/// may be unsealed), holds no literal the test sent, and (`all_closed`: every session has
/// ended) a `closed` record for every `authenticated` one.
fn audit_intact(written: &WrittenConfig, literals: &[&str], all_closed: bool, what: &str) {
    use pgpurpose::audit::record::{parse_line, ConnectionEventKind, Event};
    let dir = written.dir.path().join("audit");
    let verification =
        pgpurpose::audit::verify::verify_paths(std::slice::from_ref(&dir), Some(AUDIT_KEY))
            .unwrap();
    assert!(
        verification.ok(),
        "{what}: audit verify failed: {:?}",
        verification.error
    );
    let (mut authenticated, mut closed) = (0, 0);
    for path in pgpurpose::audit::writer::list_segments(&dir).unwrap() {
        let text = std::fs::read_to_string(&path).unwrap();
        for literal in literals {
            assert!(
                !text.contains(literal),
                "{what}: literal {literal:?} in the audit log"
            );
        }
        for line in text.lines() {
            if let (Ok((record, _)), true) = (parse_line(line), line.ends_with('}')) {
                if let Event::Connection(c) = record.event {
                    match c.event {
                        ConnectionEventKind::Authenticated => authenticated += 1,
                        ConnectionEventKind::Closed => closed += 1,
                        ConnectionEventKind::Refused => {}
                    }
                }
            }
        }
    }
    assert!(authenticated > 0, "{what}: no session in the audit log");
    if all_closed {
        assert_eq!(
            authenticated, closed,
            "{what}: sessions authenticated vs closed in the audit log"
        );
    }
}

async fn login(port: u16) -> RawConn {
    RawConn::login(port, ANALYTICS.name, Some(ANALYTICS.password)).await
}

async fn assert_serves(port: u16, what: &str) {
    let mut conn = login(port).await;
    let frames = conn.simple("select count(*) from posts").await;
    assert!(
        frames.iter().any(|f| f.tag() == b'D'),
        "{what}: no row from a fresh session: {frames:?}"
    );
}

/// The errors in `frames` as (severity, SQLSTATE).
fn errors(frames: &[Frame]) -> Vec<(String, String)> {
    frames
        .iter()
        .filter(|f| f.tag() == b'E')
        .map(|f| {
            (
                f.severity().unwrap_or_default(),
                f.code().unwrap_or_default(),
            )
        })
        .collect()
}

/// A clean end of a session whose upstream went away: at least one FATAL error, each with a
/// connection-exception (08) or operator-intervention (57P0x) SQLSTATE, then EOF.
fn assert_clean_fatal(frames: &[Frame], what: &str) {
    let errs = errors(frames);
    assert!(
        !errs.is_empty(),
        "{what}: closed without an error: {frames:?}"
    );
    for (severity, code) in &errs {
        assert_eq!(severity, "FATAL", "{what}: {frames:?}");
        assert!(
            code.starts_with("08") || code.starts_with("57P0"),
            "{what}: unexpected SQLSTATE {code}: {frames:?}"
        );
    }
}

#[tokio::test]
async fn upstream_restart_mid_transaction_and_mid_copy() {
    let mut pg = common::cluster::example_cluster(ClusterOptions::default());
    let (written, proxy) = start(&ProxyConfig::new(&pg), "");
    let port = proxy.port();
    let baseline_fds = fd_count(proxy.pid());

    let mut in_tx = login(port).await;
    in_tx.simple("begin").await;
    let frames = in_tx
        .simple("insert into posts (user_id, body) values (1, 'restart-tx')")
        .await;
    assert_eq!(
        frames.last().and_then(Frame::status),
        Some(b'T'),
        "{frames:?}"
    );

    let mut in_copy = login(port).await;
    in_copy
        .send(&raw::query("copy posts (user_id, body) from stdin"))
        .await
        .unwrap();
    let first = in_copy.recv().await.unwrap().unwrap();
    assert_eq!(first.tag(), b'G', "CopyInResponse expected: {first:?}");
    in_copy
        .send(&common::frames::copy_data(b"1\trestart-copy\n"))
        .await
        .unwrap();

    let stop = tokio::task::spawn_blocking(move || {
        pg.stop().unwrap();
        pg
    });
    let tx_frames = in_tx.until_closed(Duration::from_secs(15)).await.unwrap();
    assert_clean_fatal(&tx_frames, "session inside a transaction");
    let copy_frames = in_copy.until_closed(Duration::from_secs(15)).await.unwrap();
    assert_clean_fatal(&copy_frames, "session inside COPY FROM STDIN");
    let mut pg = stop.await.unwrap();
    // Postgres's own FATAL (admin shutdown) reaches the client, and nothing after it.
    for (what, frames) in [("transaction", &tx_frames), ("COPY", &copy_frames)] {
        assert_eq!(
            errors(frames),
            [("FATAL".to_string(), "57P01".to_string())],
            "{what}: {frames:?}"
        );
    }
    println!(
        "upstream restart: in transaction {:?}, in COPY {:?}",
        errors(&tx_frames),
        errors(&copy_frames)
    );

    // While the upstream is down, a new client is told so cleanly.
    let mut during = RawConn::connect(port).await;
    let err = during
        .startup(
            &[("user", ANALYTICS.name), ("database", APP_DB)],
            Some(ANALYTICS.password),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().as_deref(), Some("08006"), "{err:?}");

    let pg = tokio::task::spawn_blocking(move || {
        pg.start_again().unwrap();
        pg
    })
    .await
    .unwrap();
    assert_serves(port, "after the upstream restart").await;
    // Neither the open transaction nor the unfinished COPY was committed.
    let kept = pg
        .psql(
            APP_DB,
            "select count(*) from posts where body in ('restart-tx', 'restart-copy')",
        )
        .unwrap();
    assert_eq!(kept.trim(), "0");
    assert_fds_settle(proxy.pid(), baseline_fds, "after the restart").await;
    audit_intact(&written, &["restart-tx", "restart-copy"], true, "restart");
}

fn shim_target(pg: &LocalCluster) -> std::net::SocketAddr {
    format!("{}:{}", pg.host(), pg.port()).parse().unwrap()
}

// Multi-threaded: the shim's tasks must run while `spawn_proxy` blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_slower_than_the_connect_timeout() {
    let pg = common::shared_cluster();
    let shim = Shim::start(shim_target(pg)).await;
    let mut cfg = ProxyConfig::new(pg);
    cfg.upstream_port = shim.port;
    let (written, proxy) = start(&cfg, "  connect_timeout_ms: 1000\n");
    let port = proxy.port();
    let mut before = login(port).await;
    let baseline_fds = fd_count(proxy.pid());

    shim.set_mode(ShimMode::Stall);
    let started = Instant::now();
    let mut stalled = RawConn::connect(port).await;
    let err = stalled
        .startup(
            &[("user", ANALYTICS.name), ("database", APP_DB)],
            Some(ANALYTICS.password),
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code().as_deref(), Some("08006"), "{err:?}");
    assert_eq!(err.severity().as_deref(), Some("FATAL"));
    assert!(
        err.field(b'D').unwrap_or_default().contains("timed out"),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "refused after {took:?} with a 1 s connect timeout"
    );
    // The established session was not disturbed.
    let frames = before.simple("select 'still here'").await;
    assert!(errors(&frames).is_empty(), "{frames:?}");

    shim.set_mode(ShimMode::Forward);
    assert_serves(port, "after the stall").await;
    drop(stalled);
    assert_fds_settle(proxy.pid(), baseline_fds, "after the stalled upstream").await;
    audit_intact(&written, &["still here"], false, "stalled upstream");
}

// Multi-threaded: the shim's tasks must run while `spawn_proxy` blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_reset_between_proxy_and_upstream() {
    let pg = common::shared_cluster();
    let shim = Shim::start(shim_target(pg)).await;
    let mut cfg = ProxyConfig::new(pg);
    cfg.upstream_port = shim.port;
    let (written, proxy) = start(&cfg, "");
    let port = proxy.port();
    let baseline_fds = fd_count(proxy.pid());

    let victim_index = shim.accepted();
    let mut victim = login(port).await;
    assert_eq!(shim.accepted(), victim_index + 1);
    let mut bystander = login(port).await;
    victim.simple("begin").await;

    shim.reset(victim_index);
    // The reset is noticed on the next read (or immediately); either way a clean FATAL.
    let _ = victim.send(&raw::query("select 1")).await;
    let frames = victim.until_closed(Duration::from_secs(10)).await.unwrap();
    assert_clean_fatal(&frames, "session whose upstream connection was reset");
    assert!(
        errors(&frames).iter().any(|(_, c)| c == "08006"),
        "{frames:?}"
    );

    let frames = bystander.simple("select 'unaffected'").await;
    assert!(errors(&frames).is_empty(), "{frames:?}");
    drop(victim);
    drop(bystander);
    assert_serves(port, "after the reset").await;
    assert_fds_settle(proxy.pid(), baseline_fds, "after the reset").await;
    audit_intact(&written, &["unaffected"], true, "reset");
}

/// Backends of the example roles whose application_name is `name`.
fn backends_named(pg: &LocalCluster, name: &str) -> usize {
    pg.psql(
        "postgres",
        &format!("select count(*) from pg_stat_activity where application_name = '{name}'"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

#[tokio::test]
async fn clients_disconnecting_mid_pipeline_leak_nothing() {
    let pg = common::shared_cluster();
    let (written, proxy) = start(&ProxyConfig::new(pg), "");
    let port = proxy.port();
    let baseline_fds = fd_count(proxy.pid());

    let mut pipeline = Vec::new();
    for i in 0..3 {
        pipeline.extend(raw::parse("", "select pg_sleep(0.2), $1::int"));
        pipeline.extend(raw::bind("", "", &[Some(&i.to_string())]));
        pipeline.extend(raw::execute("", 0));
    }
    pipeline.extend(raw::sync());
    pipeline.extend(raw::query(
        "select repeat('x', 1000) from generate_series(1, 100000)",
    ));
    pipeline.extend(raw::query("select id from users where phone_2fa = '1'")); // blocked
    let mut tasks = Vec::new();
    for i in 0..24 {
        let pipeline = pipeline.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = fast_login(
                port,
                ANALYTICS.name,
                ANALYTICS.password,
                &[("application_name", "mid-pipeline")],
            )
            .await
            .unwrap();
            // Cut at different points: before, inside and after the pipeline's bytes.
            let cut = pipeline.len() * (i % 4) / 3;
            s.write_all(&pipeline[..cut.min(pipeline.len())])
                .await
                .unwrap();
            if i % 2 == 0 {
                // Abortive close (RST), as a crashed client.
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
            drop(s);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_serves(port, "after the disconnects").await;
    let gone = faults::eventually(Duration::from_secs(20), || {
        backends_named(pg, "mid-pipeline") == 0
    })
    .await;
    assert!(
        gone,
        "{} upstream backends outlived their clients",
        backends_named(pg, "mid-pipeline")
    );
    assert_fds_settle(proxy.pid(), baseline_fds, "after mid-pipeline disconnects").await;
    audit_intact(&written, &[], true, "mid-pipeline disconnects");
}

#[tokio::test]
async fn cancel_requests_racing_completion_touch_only_their_session() {
    let pg = common::shared_cluster();
    let (written, proxy) = start(&ProxyConfig::new(pg), "");
    let port = proxy.port();
    let baseline_fds = fd_count(proxy.pid());

    // A bystander runs short queries all along; no cancel may ever reach it.
    let bystander = common::connect_as(ANALYTICS.name, ANALYTICS.password, port)
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let watcher = tokio::spawn(async move {
        let mut n = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let row = bystander
                .query_one("select pg_sleep(0.005), 1::int", &[])
                .await
                .unwrap_or_else(|e| panic!("bystander query {n} failed: {e}"));
            assert_eq!(row.get::<_, i32>(1), 1);
            n += 1;
        }
        n
    });

    let client = common::connect_as(ANALYTICS.name, ANALYTICS.password, port)
        .await
        .unwrap();
    let (mut completed, mut canceled, mut late) = (0, 0, 0);
    for i in 0..40u64 {
        let token = client.cancel_token();
        let sleep_ms = i % 10;
        let cancel_after = Duration::from_millis((i * 7) % 12);
        let sql = format!("select pg_sleep({}), 1::int", sleep_ms as f64 / 1000.0);
        let (result, _) = tokio::join!(client.query_one(&sql, &[]), async {
            tokio::time::sleep(cancel_after).await;
            token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        });
        match result {
            Ok(_) => completed += 1,
            Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => canceled += 1,
            Err(e) => panic!("iteration {i}: unexpected error {e}"),
        }
        // The session stays usable. A cancel delivered just after completion may still be
        // pending in the backend (as with Postgres directly): at most one retry for that.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match client.query_one("select 2::int", &[]).await {
                Ok(row) => {
                    assert_eq!(row.get::<_, i32>(0), 2);
                    break;
                }
                Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) && attempts == 1 => late += 1,
                Err(e) => panic!("iteration {i}: session unusable after a cancel: {e}"),
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let bystander_queries = watcher.await.unwrap();
    println!(
        "cancel race: {completed} completed, {canceled} canceled, {late} late cancels; \
         bystander ran {bystander_queries} queries undisturbed"
    );
    assert!(completed + canceled == 40);
    assert!(bystander_queries > 0);
    drop(client);
    assert_fds_settle(proxy.pid(), baseline_fds + 2, "after the cancel race").await;
    audit_intact(&written, &[], false, "cancel race");
}

/// SIGHUP reloads the policy (`reload`); sessions running queries meanwhile see no error.
#[tokio::test]
async fn sighup_during_load_keeps_every_session_serving() {
    let pg = common::shared_cluster();
    let (written, proxy) = start(&ProxyConfig::new(pg), "");
    let port = proxy.port();
    let mut tasks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let client = common::connect_as(ANALYTICS.name, ANALYTICS.password, port)
                .await
                .unwrap();
            let mut n = 0u32;
            while Instant::now() < deadline {
                client
                    .query_one("select count(*) from posts", &[])
                    .await
                    .unwrap_or_else(|e| panic!("query {n} failed around SIGHUP: {e}"));
                n += 1;
            }
            n
        }));
    }
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        proxy.signal("HUP");
    }
    for t in tasks {
        assert!(t.await.unwrap() > 0);
    }
    assert_serves(port, "after SIGHUP").await;
    audit_intact(&written, &[], false, "SIGHUP during load");
}

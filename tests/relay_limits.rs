//! Resource limits of the proxy binary under hostile clients: oversized messages, slowloris
//! startup packets and frames, a client that never reads its results (bounded buffering and
//! backpressure to the upstream), the failed-authentication limit per client address, and the
//! memory an idle session costs. Every test also checks that other sessions keep working and
//! that the proxy's file descriptors come back to where they were.
//!
//! The idle-connection measurement opens `PGPURPOSE_IDLE_CONNECTIONS` sessions (default 200);
//! the figure in the README comes from
//! `PGPURPOSE_IDLE_CONNECTIONS=2000 cargo test --release --test relay_limits idle -- --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::faults::{self, assert_fds_settle, fast_login, fd_count, rss_kib};
use common::raw::{self, RawConn};
use common::{ProxyConfig, ProxyProcess, WrittenConfig, ANALYTICS, APP_DB};
use pgpurpose::localpg::{ClusterOptions, LocalCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn start_proxy_on(pg: &LocalCluster, limits_yaml: &str) -> (WrittenConfig, ProxyProcess) {
    let mut cfg = ProxyConfig::new(pg);
    cfg.extra_yaml = format!("limits:\n{limits_yaml}");
    let config = common::write_config(&cfg);
    let proxy = common::spawn_proxy(&config.path);
    (config, proxy)
}

fn start_proxy(limits_yaml: &str) -> (WrittenConfig, ProxyProcess) {
    start_proxy_on(common::shared_cluster(), limits_yaml)
}

async fn login(port: u16) -> RawConn {
    RawConn::login(port, ANALYTICS.name, Some(ANALYTICS.password)).await
}

/// A fresh session runs a query: the proxy still serves.
async fn assert_serves(port: u16, what: &str) {
    let mut conn = login(port).await;
    let frames = conn.simple("select 41 + 1").await;
    assert!(
        frames.iter().any(|f| f.tag() == b'D'),
        "{what}: no row from a fresh session: {frames:?}"
    );
}

/// The first frame of `frames` that is an ErrorResponse, as (severity, code).
fn error_of(frames: &[raw::Frame]) -> Option<(String, String)> {
    frames.iter().find(|f| f.tag() == b'E').map(|f| {
        (
            f.severity().unwrap_or_default(),
            f.code().unwrap_or_default(),
        )
    })
}

#[tokio::test]
async fn oversized_message_is_refused_before_its_body_is_read() {
    let (_cfg, proxy) = start_proxy("  max_message_bytes: 262144\n");
    let port = proxy.port();
    let mut bystander = login(port).await;
    let baseline_fds = fd_count(proxy.pid());
    let rss_before = rss_kib(proxy.pid());

    // Just under the limit goes through (kept small: the debug build's analyser is slow on
    // huge statements, and this is about the relay's limit, not the parser's speed).
    let mut ok = login(port).await;
    let sql = format!("select length('{}')", "x".repeat(250_000));
    let frames = ok.simple(&sql).await;
    assert_eq!(error_of(&frames), None, "{frames:?}");

    // A Query announcing 512 MiB: refused on the header alone with FATAL 54000, without
    // waiting for (or reserving memory for) the body.
    let mut big = login(port).await;
    let mut header = vec![b'Q'];
    header.extend_from_slice(&(512i32 << 20).to_be_bytes());
    header.extend_from_slice(b"select ");
    big.send(&header).await.unwrap();
    let started = Instant::now();
    let frames = big.until_closed(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        error_of(&frames),
        Some(("FATAL".into(), "54000".into())),
        "{frames:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        rss_kib(proxy.pid()) < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {} KiB",
        rss_kib(proxy.pid())
    );

    let frames = bystander.simple("select 'unaffected'").await;
    assert_eq!(error_of(&frames), None, "{frames:?}");
    drop((ok, big));
    assert_fds_settle(proxy.pid(), baseline_fds, "after the oversized message").await;
}

#[tokio::test]
async fn slowloris_startup_is_cut_by_the_startup_timeout_and_frees_its_slot() {
    let (_cfg, proxy) = start_proxy("  startup_timeout_ms: 3000\n  max_connections: 3\n");
    let port = proxy.port();
    // `spawn_proxy`'s readiness probe is a connection too: let its session end (and free its
    // slot) before the slots are counted on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline_fds = fd_count(proxy.pid());
    let packet = pgpurpose::protocol::startup::encode_startup(&[
        ("user", ANALYTICS.name),
        ("database", APP_DB),
    ]);

    // Three clients take every slot, each sending its startup packet one byte per second.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let packet = packet.clone();
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let started = Instant::now();
            for byte in packet {
                if s.write_all(&[byte]).await.is_err() {
                    break;
                }
                // The proxy closes the socket: a read sees EOF (or a reset) within a second.
                let mut b = [0u8; 64];
                let r = tokio::time::timeout(Duration::from_secs(1), s.read(&mut b)).await;
                if let Ok(Ok(0) | Err(_)) = r {
                    break;
                }
            }
            started.elapsed()
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // While they hold the slots, a well-behaved client is refused with 53300, not queued.
    let mut extra = RawConn::connect(port).await;
    let refused = extra
        .startup(
            &[("user", ANALYTICS.name), ("database", APP_DB)],
            Some(ANALYTICS.password),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code().as_deref(), Some("53300"), "{refused:?}");

    for task in slow {
        let held = task.await.unwrap();
        assert!(
            held < Duration::from_secs(6),
            "a slowloris startup was held for {held:?} with a 3 s startup timeout"
        );
    }
    // The slots are free again.
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(login(port).await);
    }
    drop(sessions);
    assert_fds_settle(proxy.pid(), baseline_fds, "after slowloris").await;
}

#[tokio::test]
async fn connections_over_the_limit_cannot_pile_up() {
    let (_cfg, proxy) = start_proxy("  max_connections: 2\n  startup_timeout_ms: 5000\n");
    let (port, pid) = (proxy.port(), proxy.pid());
    // Let the readiness probe's session free its slot first (see the slowloris test).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sessions = vec![login(port).await, login(port).await];
    let fds_full = fd_count(pid);
    // A flood of silent connections while every slot is taken: a bounded number wait for
    // their startup packet (to be told 53300); the rest are closed at once.
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_flooded = fd_count(pid);
    assert!(
        fds_flooded <= fds_full + pgpurpose::relay::server::MAX_REFUSING + 4,
        "{fds_flooded} descriptors with the flood, {fds_full} before"
    );
    let mut closed_at_once = 0;
    for s in flood.iter_mut().rev().take(50) {
        let mut b = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), s.read(&mut b)).await
        {
            closed_at_once += 1;
        }
    }
    assert!(
        closed_at_once >= 40,
        "only {closed_at_once} of the last 50 were closed"
    );
    // The admitted sessions are unaffected.
    for s in &mut sessions {
        let frames = s.simple("select 1").await;
        assert_eq!(error_of(&frames), None, "{frames:?}");
    }
    drop(flood);
    assert_fds_settle(pid, fds_full, "after the flood").await;
}

#[tokio::test]
async fn a_frame_trickled_byte_by_byte_does_not_outlive_the_idle_timeout() {
    let (_cfg, proxy) = start_proxy("  idle_timeout_ms: 1500\n");
    let port = proxy.port();
    let baseline_fds = fd_count(proxy.pid());
    let mut bystander = login(port).await;
    let mut slow = login(port).await;
    let query = raw::query("select 'this frame arrives one byte at a time'");
    let started = Instant::now();
    let mut closed_after = None;
    for byte in query {
        if slow.send(&[byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // Keep the bystander active: its queries must not be delayed by the trickle.
        let frames = bystander.simple("select 1").await;
        assert_eq!(error_of(&frames), None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if started.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    let frames = slow.until_closed(Duration::from_secs(5)).await;
    let elapsed = closed_after.unwrap_or_else(|| started.elapsed());
    let frames = frames.unwrap_or_else(|e| panic!("trickling session not closed: {e}"));
    assert_eq!(
        error_of(&frames),
        Some(("FATAL".into(), "57P05".into())),
        "{frames:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "closed only after {elapsed:?}"
    );
    drop(bystander);
    assert_fds_settle(proxy.pid(), baseline_fds, "after the trickled frame").await;
}

/// The upstream backend of the session with `application_name`, as
/// "state|wait_event" (empty when there is none).
fn backend_state(pg: &LocalCluster, application_name: &str) -> String {
    pg.psql(
        "postgres",
        &format!(
            "select coalesce(state, '') || '|' || coalesce(wait_event, '') \
             from pg_stat_activity where application_name = '{application_name}'"
        ),
    )
    .unwrap()
    .trim()
    .to_string()
}

#[tokio::test]
async fn a_client_that_never_reads_gets_backpressure_not_buffering() {
    let pg = common::shared_cluster();
    let (_cfg, proxy) = start_proxy("");
    let port = proxy.port();
    let pid = proxy.pid();
    let baseline_fds = fd_count(pid);
    // Warm the proxy up (catalog, allocator) before taking the memory baseline.
    assert_serves(port, "warm-up").await;
    let rss_before = rss_kib(pid);

    // About 2 GB of results, never read.
    let mut reader_less = RawConn::connect(port).await;
    reader_less
        .startup(
            &[
                ("user", ANALYTICS.name),
                ("database", APP_DB),
                ("application_name", "never-reads"),
            ],
            Some(ANALYTICS.password),
        )
        .await
        .unwrap();
    reader_less
        .send(&raw::query(
            "select repeat('x', 1000) from generate_series(1, 2000000)",
        ))
        .await
        .unwrap();

    // Postgres ends up blocked writing to the proxy (wait event ClientWrite): the proxy stopped
    // reading from it once the client's socket buffer was full.
    let mut state = String::new();
    let blocked = faults::eventually(Duration::from_secs(20), || {
        state = backend_state(pg, "never-reads");
        state == "active|ClientWrite"
    })
    .await;
    assert!(blocked, "upstream backend state: {state:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_during = rss_kib(pid);
    assert!(
        rss_during < rss_before + 32 * 1024,
        "the proxy buffers the unread result: RSS {rss_before} KiB -> {rss_during} KiB"
    );
    println!(
        "never-reading client: proxy RSS {rss_before} KiB before, {rss_during} KiB while blocked"
    );
    assert_eq!(backend_state(pg, "never-reads"), "active|ClientWrite");

    // Other sessions are unaffected.
    assert_serves(port, "while a client does not read").await;

    // The client leaves: its session and upstream backend go away.
    drop(reader_less);
    let gone = faults::eventually(Duration::from_secs(15), || {
        backend_state(pg, "never-reads").is_empty()
    })
    .await;
    assert!(gone, "the upstream backend outlived its client");
    assert_fds_settle(pid, baseline_fds, "after the never-reading client").await;
}

#[tokio::test]
async fn failed_authentications_are_limited_per_client_address() {
    let (_cfg, proxy) = start_proxy("  auth_failures_per_minute: 3\n");
    let port = proxy.port();
    let params = [("user", ANALYTICS.name), ("database", APP_DB)];
    // Leaving when asked for a password (psql does, before prompting) is not a failure.
    for _ in 0..5 {
        let mut conn = RawConn::connect(port).await;
        conn.send(&pgpurpose::protocol::startup::encode_startup(&params))
            .await
            .unwrap();
        let request = conn.recv().await.unwrap().unwrap();
        assert_eq!(request.tag(), b'R', "{request:?}");
    }
    login(port).await;
    for attempt in 0..3 {
        let mut conn = RawConn::connect(port).await;
        let err = conn.startup(&params, Some("wrong")).await.unwrap_err();
        assert_eq!(err.code().as_deref(), Some("28P01"), "attempt {attempt}");
    }
    // Over the limit: a known and an unknown service get the same refusal, before any
    // authentication request (the first message is the error), so neither the password nor
    // the service name matters; the right password is refused too.
    for user in [ANALYTICS.name, "no-such-service"] {
        let mut conn = RawConn::connect(port).await;
        let started = Instant::now();
        conn.send(&pgpurpose::protocol::startup::encode_startup(&[
            ("user", user),
            ("database", APP_DB),
        ]))
        .await
        .unwrap();
        let frames = conn.until_closed(Duration::from_secs(5)).await.unwrap();
        assert_eq!(frames.len(), 1, "{user}: {frames:?}");
        let f = &frames[0];
        assert_eq!(f.code().as_deref(), Some("08004"), "{user}: {f:?}");
        assert_eq!(
            f.field(b'M').as_deref(),
            Some("too many failed authentication attempts from this address"),
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let mut right = RawConn::connect(port).await;
    let refused = right
        .startup(&params, Some(ANALYTICS.password))
        .await
        .unwrap_err();
    assert_eq!(refused.code().as_deref(), Some("08004"), "{refused:?}");
    // Another client address is not affected (127.0.0.2 is loopback too on Linux).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let mut other = RawConn::from_stream(stream);
    other
        .startup(&params, Some(ANALYTICS.password))
        .await
        .unwrap_or_else(|e| panic!("login from 127.0.0.2 refused: {e:?}"));
    let frames = other.simple("select 1").await;
    assert_eq!(error_of(&frames), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_parallel_guesses_is_limited_too() {
    let (_cfg, proxy) =
        tokio::task::block_in_place(|| start_proxy("  auth_failures_per_minute: 3\n"));
    let port = proxy.port();
    // A correct pool of parallel logins is not limited (no failure yet).
    let pool: Vec<_> = (0..10)
        .map(|_| tokio::spawn(fast_login(port, ANALYTICS.name, ANALYTICS.password, &[])))
        .collect();
    for p in pool {
        p.await.unwrap().unwrap();
    }
    let first = fast_login(port, ANALYTICS.name, "wrong", &[])
        .await
        .unwrap_err();
    assert!(first.contains("C28P01"), "{first}");
    // One failure recorded: of ten parallel guesses, at most two more reach SCRAM.
    let burst: Vec<_> = (0..10)
        .map(|_| tokio::spawn(fast_login(port, ANALYTICS.name, "wrong", &[])))
        .collect();
    let (mut wrong, mut refused) = (0, 0);
    for b in burst {
        let e = b.await.unwrap().unwrap_err();
        if e.contains("C28P01") {
            wrong += 1;
        } else if e.contains("C08004") {
            refused += 1;
        } else {
            panic!("unexpected answer: {e}");
        }
    }
    assert!(
        wrong <= 2,
        "{wrong} guesses were checked, {refused} refused"
    );
    assert_eq!(wrong + refused, 10);
}

#[tokio::test]
async fn idle_sessions_cost_bounded_memory_and_release_their_descriptors() {
    let n: usize = std::env::var("PGPURPOSE_IDLE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let limit = faults::raise_fd_limit();
    assert!(
        limit as usize > 2 * n + 200,
        "descriptor limit {limit} too low for {n} connections"
    );
    // Its own cluster: every proxy session has an upstream backend.
    let pg = common::cluster::example_cluster(ClusterOptions {
        settings: vec![("max_connections".into(), (n + 50).to_string())],
        ..ClusterOptions::default()
    });
    let (_cfg, proxy) = start_proxy_on(&pg, &format!("  max_connections: {}\n", n + 50));
    let (port, pid) = (proxy.port(), proxy.pid());

    // Warm up (catalog loaded, allocator arenas in use, first SCRAM derivation cached here).
    let warm: Vec<TcpStream> = open_idle(port, 20).await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, fds0) = (rss_kib(pid), fd_count(pid));

    let started = Instant::now();
    let idle = open_idle(port, n).await;
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss1, fds1) = (rss_kib(pid), fd_count(pid));
    let per_conn_kib = (rss1.saturating_sub(rss0)) as f64 / n as f64;
    let fds_per_conn = (fds1 - fds0) as f64 / n as f64;

    // Still serving with all of them open.
    assert_serves(port, "with many idle sessions").await;
    drop(idle);
    assert_fds_settle(pid, fds0, "after closing the idle sessions").await;
    let rss2 = rss_kib(pid);
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "idle sessions ({build} build): {n} opened in {:.1}s; proxy RSS {rss0} KiB -> {rss1} KiB \
         ({per_conn_kib:.1} KiB per idle session), {fds_per_conn:.2} fds per session; \
         RSS {rss2} KiB after closing them",
        opened_in.as_secs_f64()
    );
    assert!(
        (fds_per_conn - 2.0).abs() < 0.1,
        "{fds_per_conn} descriptors per session (expected 2: client and upstream)"
    );
    assert!(
        per_conn_kib < 128.0,
        "{per_conn_kib:.1} KiB per idle session (bound 128 KiB)"
    );
}

/// Opens `n` authenticated idle sessions, 16 logins at a time.
async fn open_idle(port: u16, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    let mut pending = futures_util::stream::FuturesUnordered::new();
    let mut started = 0;
    use futures_util::StreamExt;
    while out.len() < n {
        while started < n && pending.len() < 16 {
            pending.push(fast_login(port, ANALYTICS.name, ANALYTICS.password, &[]));
            started += 1;
        }
        match pending.next().await {
            Some(Ok(s)) => out.push(s),
            Some(Err(e)) => panic!("login {} of {n} failed: {e}", out.len() + 1),
            None => break,
        }
    }
    out
}

//! Fuzz target: the running proxy's frontend protocol handling, end to end.
//!
//! A real proxy in front of a real Postgres receives, on fresh connections: mutated startup
//! packets (before authentication), and, after a SCRAM login, random sequences of frontend
//! messages of every type (Query, Parse, Bind, Describe, Execute, Sync, Close, Flush,
//! FunctionCall, CopyData/Done/Fail, Terminate, unknown types) with valid, truncated,
//! negative and oversized lengths, cut at random points. The frame-level fuzzer
//! (tests/hardening/fuzz_frames.rs) covers the parsing functions; this one covers the session
//! state machine that uses them.
//!
//! Property: the proxy stays live. Every 25 rounds and at the end a new session logs in and
//! runs `SELECT 1` within the read timeout (the proxy neither crashed nor wedged, whatever the
//! fuzzed sessions left behind). A fuzzed session itself may legitimately wait (a truncated
//! frame waits for its rest), so it is read until it closes or stays quiet briefly.
//! Budget: `PGPURPOSE_FUZZ_SECONDS` (default 6).

mod common;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::raw::{self, RawConn};
use common::{ProxyConfig, ANALYTICS};

const TAGS: &[u8] = b"QPBEDCSHFdcfXz\0";

fn random_message(rng: &mut StdRng) -> Vec<u8> {
    let tag = TAGS[rng.random_range(0..TAGS.len())];
    let body: Vec<u8> = match tag {
        b'Q' => {
            let sql = [
                "SELECT 1",
                "SELECT id FROM users LIMIT 1",
                "SELECT phone_2fa FROM users",
                "BEGIN",
                "COMMIT",
                "COPY posts FROM STDIN",
                "SELECT 1; SELECT 2",
                "",
            ][rng.random_range(0..8)];
            let mut b = sql.as_bytes().to_vec();
            b.push(0);
            b
        }
        b'P' => {
            let mut b = b"\0SELECT $1::int\0".to_vec();
            b.extend_from_slice(&1i16.to_be_bytes());
            b.extend_from_slice(&23i32.to_be_bytes());
            b
        }
        b'B' => raw::bind("", "", &[Some("1")])[5..].to_vec(),
        b'E' => raw::execute("", 0)[5..].to_vec(),
        b'D' => raw::describe(b'S', "")[5..].to_vec(),
        b'C' => raw::close(b'S', "")[5..].to_vec(),
        b'd' => b"1\tx\n".to_vec(),
        b'f' => b"gave up\0".to_vec(),
        _ => (0..rng.random_range(0..12)).map(|_| rng.random()).collect(),
    };
    let len: i64 = match rng.random_range(0..14) {
        0 => -1,
        1 => 2,
        2 => 0x7fff_ffff,
        3 => body.len() as i64 + 4 + rng.random_range(1..32),
        4 => (body.len() as i64 + 4) - rng.random_range(0..=body.len() as i64),
        _ => body.len() as i64 + 4,
    };
    let mut out = vec![tag];
    out.extend_from_slice(&(len as i32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn random_startup(rng: &mut StdRng) -> Vec<u8> {
    let mut p = match rng.random_range(0..4) {
        0 => pgpurpose::protocol::startup::encode_ssl_request().to_vec(),
        1 => pgpurpose::protocol::startup::encode_cancel(rng.random(), rng.random()).to_vec(),
        2 => pgpurpose::protocol::startup::encode_startup(&[
            ("user", ANALYTICS.name),
            ("database", common::APP_DB),
            ("options", "-c pgpurpose.purpose=security"),
        ])
        .to_vec(),
        _ => pgpurpose::protocol::startup::encode_startup(&[("user", "x")]).to_vec(),
    };
    for _ in 0..rng.random_range(0..4) {
        if p.is_empty() {
            break;
        }
        let i = rng.random_range(0..p.len());
        match rng.random_range(0..3) {
            0 => p[i] = rng.random(),
            1 => p.truncate(i),
            _ => p.insert(i, rng.random()),
        }
    }
    p
}

/// A fresh session can log in and run a statement.
async fn healthy(port: u16) {
    let mut conn = RawConn::login(port, ANALYTICS.name, Some(ANALYTICS.password)).await;
    let frames = conn.simple("SELECT 1").await;
    assert!(
        frames.iter().any(|f| f.tag() == b'D'),
        "SELECT 1 returned no row: {frames:?}"
    );
}

/// Send `bytes`, then read until the peer closes or goes quiet for `quiet`.
async fn drive(conn: &mut RawConn, bytes: &[u8], quiet: Duration) {
    let _ = conn.send(bytes).await;
    loop {
        match tokio::time::timeout(quiet, conn.recv()).await {
            Err(_) => return,
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_running_proxy() {
    let budget = std::env::var("PGPURPOSE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(6));
    let seed: u64 = std::env::var("PGPURPOSE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("fuzz_wire: seed {seed}, budget {budget:?}");
    let pg = common::shared_cluster();
    let cfg = ProxyConfig::new(pg);
    let written = common::write_config(&cfg);
    let proxy = common::spawn_proxy(&written.path);
    let port = proxy.port();
    healthy(port).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let (mut startups, mut sessions, mut messages) = (0u64, 0u64, 0u64);
    while start.elapsed() < budget {
        if rng.random_bool(0.3) {
            let mut conn = RawConn::connect(port).await;
            let bytes = random_startup(&mut rng);
            drive(&mut conn, &bytes, Duration::from_millis(150)).await;
            startups += 1;
        } else {
            let mut conn = RawConn::login(port, ANALYTICS.name, Some(ANALYTICS.password)).await;
            let mut bytes = Vec::new();
            let n = rng.random_range(1..8);
            for _ in 0..n {
                bytes.extend(random_message(&mut rng));
            }
            if rng.random_bool(0.3) {
                let cut = rng.random_range(0..=bytes.len());
                bytes.truncate(cut);
            }
            bytes.extend(raw::sync());
            bytes.extend(raw::query("SELECT 1"));
            drive(&mut conn, &bytes, Duration::from_millis(200)).await;
            sessions += 1;
            messages += n as u64;
        }
        if (startups + sessions) % 25 == 0 {
            healthy(port).await;
        }
    }
    healthy(port).await;
    println!(
        "fuzz_wire: {} executions in {:.1}s ({startups} startup streams, {sessions} sessions with {messages} random messages)",
        startups + sessions,
        start.elapsed().as_secs_f64()
    );
    assert!(startups + sessions > 10);
    drop(proxy);
}

//! The authentication path does not tell which services exist: an unknown service name gets a
//! SCRAM exchange of the same shape as a real one (mechanisms, iteration count, salt length),
//! with a salt that stays the same across attempts and across a proxy restart (as a real
//! service's does), the same failure, and no measurably different timing. See
//! docs/security-review-auth.md.

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::raw::{Frame, RawConn};
use common::{ProxyConfig, ANALYTICS, APP_DB};

/// What the server showed during a failed SCRAM exchange for `user`.
#[derive(Debug, PartialEq, Eq)]
struct Exchange {
    mechanisms: Vec<String>,
    salt: Vec<u8>,
    iterations: String,
    /// SQLSTATE and message of the final error, with the user name replaced by `<user>`.
    error: (String, String),
}

fn auth_code(f: &Frame) -> i32 {
    i32::from_be_bytes([f.0[5], f.0[6], f.0[7], f.0[8]])
}

/// Runs a SCRAM exchange for `user` with a wrong proof, returning what the server showed.
async fn failed_exchange(port: u16, user: &str) -> Exchange {
    let mut conn = RawConn::connect(port).await;
    conn.send(&pgpurpose::protocol::startup::encode_startup(&[
        ("user", user),
        ("database", APP_DB),
    ]))
    .await
    .unwrap();
    let sasl = conn.recv().await.unwrap().unwrap();
    assert_eq!((sasl.tag(), auth_code(&sasl)), (b'R', 10), "{sasl:?}");
    let mechanisms = sasl.0[9..]
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    let first = "n,,n=,r=abcdefghijklmnopqrstuvwx";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first.as_bytes());
    conn.send(&common::raw::frame(b'p', &body)).await.unwrap();
    let cont = conn.recv().await.unwrap().unwrap();
    assert_eq!((cont.tag(), auth_code(&cont)), (b'R', 11), "{cont:?}");
    let server_first = String::from_utf8_lossy(&cont.0[9..]).into_owned();
    let attr = |k: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let nonce = attr("r");
    let last = format!("c=biws,r={nonce},p={}", STANDARD.encode([7u8; 32]));
    conn.send(&common::raw::frame(b'p', last.as_bytes()))
        .await
        .unwrap();
    let err = conn.recv().await.unwrap().unwrap();
    Exchange {
        mechanisms,
        salt: STANDARD.decode(attr("s")).unwrap(),
        iterations: attr("i"),
        error: (
            err.code().unwrap_or_default(),
            err.field(b'M').unwrap_or_default().replace(user, "<user>"),
        ),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn unknown_services_are_indistinguishable_from_known_ones() {
    let pg = common::shared_cluster();
    let mut cfg = ProxyConfig::new(pg);
    // The failed-authentication limit would cut this test short.
    cfg.extra_yaml = "limits:\n  auth_failures_per_minute: 0\n".into();
    let written = common::write_config(&cfg);
    let proxy = common::spawn_proxy(&written.path);
    let port = proxy.port();

    let known = failed_exchange(port, ANALYTICS.name).await;
    let unknown = failed_exchange(port, "no-such-service").await;
    assert_eq!(known.mechanisms, unknown.mechanisms);
    assert_eq!(known.iterations, unknown.iterations);
    assert_eq!(known.salt.len(), unknown.salt.len());
    assert_ne!(known.salt, unknown.salt);
    assert_eq!(known.error, unknown.error);
    assert_eq!(known.error.0, "28P01");
    // Salts are stable per name within a run...
    assert_eq!(failed_exchange(port, "no-such-service").await, unknown);

    // ...and across a restart of the proxy, as a real service's salt is.
    drop(proxy);
    let proxy = common::spawn_proxy(&written.path);
    let port = proxy.port();
    assert_eq!(failed_exchange(port, ANALYTICS.name).await, known);
    assert_eq!(failed_exchange(port, "no-such-service").await, unknown);

    // Timing: the whole failed exchange takes the same time for both (medians of interleaved
    // runs; the bound is loose because the machine is shared, the real difference is ~0).
    let (mut t_known, mut t_unknown) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        let started = Instant::now();
        failed_exchange(port, ANALYTICS.name).await;
        t_known.push(started.elapsed());
        let started = Instant::now();
        failed_exchange(port, "no-such-service").await;
        t_unknown.push(started.elapsed());
    }
    let (k, u) = (median(t_known), median(t_unknown));
    println!("failed SCRAM exchange, median: known service {k:?}, unknown {u:?}");
    // 5 ms, or half the exchange time when a busy machine slows everything down.
    let bound = Duration::from_millis(5).max(k.min(u) / 2);
    assert!(k.abs_diff(u) < bound, "known {k:?} vs unknown {u:?}");
}

//! Hand-built frames on a plain TCP stream: messages the proxy must refuse, size limits, broken
//! startup packets, and the negotiation requests in front of the StartupMessage.

use std::time::{Duration, Instant};

use pgpurpose::protocol::startup::{encode_cancel, encode_ssl_request, encode_startup};
use tokio::io::AsyncWriteExt;

use crate::common::proxy::{write_self_signed, ClientTls};
use crate::common::raw::{self, Frame, RawConn};
use crate::common::APP_DB;
use crate::{start_proxy, start_proxy_with, SERVICE};

async fn login(port: u16) -> RawConn {
    RawConn::login(port, SERVICE.name, Some(SERVICE.password)).await
}

/// The single FATAL a closing connection sent, checked against `code`.
fn assert_single_fatal(frames: &[Frame], code: &str, what: &str) {
    assert_eq!(
        frames.len(),
        1,
        "{what}: expected one FATAL, got {frames:?}"
    );
    assert_eq!(frames[0].tag(), b'E', "{what}: {frames:?}");
    assert_eq!(frames[0].severity().as_deref(), Some("FATAL"), "{what}");
    assert_eq!(
        frames[0].code().as_deref(),
        Some(code),
        "{what}: {frames:?}"
    );
}

/// A FunctionCall for `oid` with no arguments and a text result.
fn function_call(oid: i32) -> Vec<u8> {
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&0i16.to_be_bytes()); // argument format codes
    body.extend_from_slice(&0i16.to_be_bytes()); // arguments
    body.extend_from_slice(&0i16.to_be_bytes()); // result format
    raw::frame(b'F', &body)
}

#[tokio::test]
async fn function_call_is_refused_and_the_session_goes_on() {
    let (_cfg, proxy) = start_proxy();
    let mut conn = login(proxy.port()).await;
    // 2026 = pg_backend_pid(): harmless, so only the refusal can make it fail.
    conn.send(&function_call(2026)).await.unwrap();
    let reply = conn.until_ready(1).await;
    assert_eq!(reply.len(), 2, "{reply:?}");
    assert_eq!(reply[0].code().as_deref(), Some("0A000"), "{reply:?}");
    assert_eq!(reply[0].severity().as_deref(), Some("ERROR"));
    assert!(!reply[0].field(b'M').unwrap().contains("pgpurpose_blocked_"));
    assert_eq!(reply[1].status(), Some(b'I'));
    let ok = conn.simple("SELECT 1").await;
    assert_eq!(ok.last().unwrap().status(), Some(b'I'), "{ok:?}");
    assert_eq!(ok[1].tag(), b'D', "{ok:?}");

    // Inside a transaction the refusal aborts it, like any failed statement.
    conn.simple("BEGIN").await;
    conn.send(&function_call(2026)).await.unwrap();
    let reply = conn.until_ready(1).await;
    assert_eq!(reply[0].code().as_deref(), Some("0A000"), "{reply:?}");
    assert_eq!(reply[1].status(), Some(b'E'), "{reply:?}");
    let rolled = conn.simple("ROLLBACK").await;
    assert_eq!(rolled.last().unwrap().status(), Some(b'I'));
}

#[tokio::test]
async fn unknown_message_types_are_fatal_08p01() {
    let (_cfg, proxy) = start_proxy();
    // 'y' is no message at all; 'p' (a SASL response) and 'A' are not valid after login.
    for tag in [b'y', b'p', b'A', 0u8] {
        let mut conn = login(proxy.port()).await;
        conn.send(&raw::frame(tag, b"junk\0")).await.unwrap();
        let frames = conn
            .until_closed(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("type {tag}: {e}"));
        assert_single_fatal(&frames, "08P01", &format!("type {tag}"));
    }
}

#[tokio::test]
async fn messages_above_max_message_bytes_are_fatal_54000() {
    const LIMIT: usize = 1024 * 1024;
    let (_cfg, proxy) =
        start_proxy_with(|c| c.extra_yaml = format!("limits:\n  max_message_bytes: {LIMIT}\n"));
    let port = proxy.port();

    // Just under the limit: fine.
    let mut conn = login(port).await;
    let literal = "x".repeat(LIMIT - 100);
    let reply = conn.simple(&format!("SELECT length('{literal}')")).await;
    assert_eq!(reply[1].tag(), b'D', "{reply:?}");
    assert!(String::from_utf8_lossy(reply[1].body()).ends_with(&(LIMIT - 100).to_string()));

    // A header announcing more than the limit: refused before the body is read.
    let mut conn = login(port).await;
    let mut header = vec![b'Q'];
    header.extend_from_slice(&((2 * LIMIT) as i32).to_be_bytes());
    header.extend_from_slice(b"SELECT 1");
    conn.send(&header).await.unwrap();
    let frames = conn.until_closed(Duration::from_secs(5)).await.unwrap();
    assert_single_fatal(&frames, "54000", "oversized Query header");

    // A complete oversized Bind, and oversized CopyData in the middle of a COPY.
    let mut conn = login(port).await;
    let big = "y".repeat(LIMIT + 10);
    let mut batch = raw::parse("", "SELECT length($1)");
    batch.extend(raw::bind("", "", &[Some(&big)]));
    let _ = conn.send(&batch).await;
    let frames = conn.until_closed(Duration::from_secs(5)).await.unwrap();
    let last = frames.last().cloned();
    assert!(
        last.as_ref().and_then(|f| f.code()).as_deref() == Some("54000"),
        "oversized Bind: {frames:?}"
    );

    let mut conn = login(port).await;
    conn.send(&raw::query("COPY posts (body) FROM STDIN"))
        .await
        .unwrap();
    let copy_in = conn.recv().await.unwrap().unwrap();
    assert_eq!(copy_in.tag(), b'G', "{copy_in:?}");
    let _ = conn.send(&raw::frame(b'd', big.as_bytes())).await;
    let frames = conn.until_closed(Duration::from_secs(5)).await.unwrap();
    assert_single_fatal(&frames, "54000", "oversized CopyData");
}

#[tokio::test]
async fn broken_startup_packets_close_the_connection_without_hanging() {
    let (_cfg, proxy) =
        start_proxy_with(|c| c.extra_yaml = "limits:\n  startup_timeout_ms: 2000\n".into());
    let port = proxy.port();
    let bounded = Duration::from_secs(6);

    // Invalid lengths: closed at once (with a protocol-violation error when one is sent).
    for (what, bytes) in [
        ("length 4", vec![0u8, 0, 0, 4, 0, 3, 0, 0]),
        ("length -1", vec![0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0]),
        ("length 10001", vec![0, 0, 0x27, 0x11, 0, 3, 0, 0]),
        ("protocol 2.0", vec![0, 0, 0, 8, 0, 2, 0, 0]),
        ("no terminator", {
            let mut p = encode_startup(&[("user", SERVICE.name)]).to_vec();
            p.pop();
            p[3] -= 1;
            p
        }),
    ] {
        let mut conn = RawConn::connect(port).await;
        conn.send(&bytes).await.unwrap();
        let started = Instant::now();
        let frames = conn
            .until_closed(bounded)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{what}: slow close"
        );
        for f in &frames {
            assert_eq!(f.code().as_deref(), Some("08P01"), "{what}: {frames:?}");
        }
    }

    // Truncated packets and silence: closed by the startup timeout, not left hanging.
    let packet = encode_startup(&[("user", SERVICE.name), ("database", APP_DB)]);
    for (what, bytes) in [
        ("truncated startup", packet[..packet.len() - 5].to_vec()),
        ("half a length", vec![0u8, 0]),
        ("nothing", Vec::new()),
    ] {
        let mut conn = RawConn::connect(port).await;
        conn.send(&bytes).await.unwrap();
        let started = Instant::now();
        conn.until_closed(bounded)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{what}: closed before the startup timeout"
        );
    }

    // A client that half-closes after a truncated packet: the proxy closes promptly.
    let mut conn = RawConn::connect(port).await;
    conn.send(&packet[..10]).await.unwrap();
    conn.stream.shutdown().await.unwrap();
    let started = Instant::now();
    conn.until_closed(bounded).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));

    // The proxy still serves.
    login(port).await;
}

#[tokio::test]
async fn ssl_request_with_pipelined_bytes_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = write_self_signed(certs.path());
    let tls = ClientTls {
        cert_file,
        key_file,
        required: false,
    };
    let (_cfg, with_tls) = start_proxy_with(|c| c.client_tls = Some(tls));
    let (_cfg2, without_tls) = start_proxy();
    let packet = encode_startup(&[("user", SERVICE.name), ("database", APP_DB)]);
    for (what, port) in [("TLS", with_tls.port()), ("no TLS", without_tls.port())] {
        // SSLRequest and a StartupMessage in one write (CVE-2021-23214 style injection).
        let mut conn = RawConn::connect(port).await;
        let mut bytes = encode_ssl_request().to_vec();
        bytes.extend_from_slice(&packet);
        conn.send(&bytes).await.unwrap();
        let frames = conn
            .until_closed(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_single_fatal(&frames, "08P01", what);
    }

    // Without pipelined bytes: 'S' with TLS configured, 'N' without (then plaintext works).
    let mut conn = RawConn::connect(with_tls.port()).await;
    conn.send(&encode_ssl_request()).await.unwrap();
    assert_eq!(conn.recv_byte().await.unwrap(), Some(b'S'));
    let mut conn = RawConn::connect(without_tls.port()).await;
    conn.send(&encode_ssl_request()).await.unwrap();
    assert_eq!(conn.recv_byte().await.unwrap(), Some(b'N'));
    let params = [("user", SERVICE.name), ("database", APP_DB)];
    conn.startup(&params, Some(SERVICE.password))
        .await
        .unwrap_or_else(|e| panic!("startup after 'N': {e:?}"));
}

#[tokio::test]
async fn gssenc_request_is_declined_and_startup_continues() {
    let (_cfg, proxy) = start_proxy();
    let mut conn = RawConn::connect(proxy.port()).await;
    let mut gss = 8i32.to_be_bytes().to_vec();
    gss.extend_from_slice(&80_877_104i32.to_be_bytes());
    conn.send(&gss).await.unwrap();
    assert_eq!(conn.recv_byte().await.unwrap(), Some(b'N'));
    let params = [("user", SERVICE.name), ("database", APP_DB)];
    conn.startup(&params, Some(SERVICE.password))
        .await
        .unwrap_or_else(|e| panic!("startup after GSSENCRequest: {e:?}"));
    let reply = conn.simple("SELECT 1").await;
    assert_eq!(reply.last().unwrap().status(), Some(b'I'));
}

#[tokio::test]
async fn cancel_request_with_unknown_keys_is_ignored_silently() {
    let (_cfg, proxy) = start_proxy();
    let mut conn = RawConn::connect(proxy.port()).await;
    conn.send(&encode_cancel(12345, 67890)).await.unwrap();
    let frames = conn.until_closed(Duration::from_secs(5)).await.unwrap();
    assert!(frames.is_empty(), "{frames:?}");
    login(proxy.port()).await;
}

/// Tags of `frames` with the SQLSTATE of each ErrorResponse, e.g. `1Z E(22021)Z`.
fn summary(frames: &[Frame]) -> String {
    frames
        .iter()
        .map(|f| match f.code() {
            Some(code) => format!("E({code})"),
            None => (f.tag() as char).to_string(),
        })
        .collect()
}

#[tokio::test]
async fn invalid_utf8_statement_text_is_refused_like_postgres() {
    let (_cfg, proxy) = start_proxy();
    let mut via = login(proxy.port()).await;
    let mut reference = RawConn::login(crate::cluster().port(), SERVICE.upstream_role, None).await;

    let bad_query = raw::frame(b'Q', b"SELECT '\xff'\0");
    let mut bad_parse_body = b"named\0SELECT '\xc3('\0".to_vec();
    bad_parse_body.extend_from_slice(&0i16.to_be_bytes());
    // An unnamed statement prepared first must survive the failed Parse of a named one.
    let mut extended = raw::parse("", "SELECT 1");
    extended.extend(raw::sync());
    extended.extend(raw::frame(b'P', &bad_parse_body));
    extended.extend(raw::sync());
    extended.extend(raw::bind("", "", &[]));
    extended.extend(raw::execute("", 0));
    extended.extend(raw::sync());

    let mut results = Vec::new();
    for conn in [&mut via, &mut reference] {
        conn.send(&bad_query).await.unwrap();
        let simple = conn.until_ready(1).await;
        conn.send(&extended).await.unwrap();
        let ext = conn.until_ready(3).await;
        let after = conn.simple("SELECT 1").await;
        results.push((summary(&simple), summary(&ext), summary(&after)));
    }
    assert_eq!(results[0], results[1], "proxy vs direct");
    assert_eq!(results[0].0, "E(22021)Z");
    assert_eq!(results[0].1, "1ZE(22021)Z2DCZ");
}

#[tokio::test]
async fn malformed_query_message_is_a_protocol_violation() {
    let (_cfg, proxy) = start_proxy();
    // A Query whose text has no terminating NUL. Postgres 15 answers ERROR 08P01 "invalid
    // string in message" and goes on; the proxy cannot know where such a statement ends, so it
    // ends the session (FATAL 08P01), which is stricter but never runs the bytes.
    let bad = raw::frame(b'Q', b"SELECT 1");
    let mut reference = RawConn::login(crate::cluster().port(), SERVICE.upstream_role, None).await;
    reference.send(&bad).await.unwrap();
    let direct = reference.until_ready(1).await;
    assert_eq!(direct[0].code().as_deref(), Some("08P01"), "{direct:?}");

    let mut conn = login(proxy.port()).await;
    conn.send(&bad).await.unwrap();
    let frames = conn.until_closed(Duration::from_secs(5)).await.unwrap();
    assert_single_fatal(&frames, "08P01", "Query without terminator");
}

#[tokio::test]
async fn newer_protocol_minor_version_is_negotiated_like_postgres() {
    let (_cfg, proxy) = start_proxy();
    let params_via = [
        ("user", SERVICE.name),
        ("database", APP_DB),
        ("_pq_.test_option", "1"),
    ];
    let params_direct = [
        ("user", SERVICE.upstream_role),
        ("database", APP_DB),
        ("_pq_.test_option", "1"),
    ];
    let mut negotiations = Vec::new();
    for (port, params) in [
        (proxy.port(), &params_via),
        (crate::cluster().port(), &params_direct),
    ] {
        // Protocol 3.2 (196610) with an unknown protocol option.
        let mut packet = encode_startup(params).to_vec();
        packet[4..8].copy_from_slice(&196_610i32.to_be_bytes());
        let mut conn = RawConn::connect(port).await;
        conn.send(&packet).await.unwrap();
        let first = conn.recv().await.unwrap().expect("no answer");
        assert_eq!(first.tag(), b'v', "port {port}: {first:?}");
        negotiations.push(first);
    }
    assert_eq!(
        negotiations[0].body(),
        negotiations[1].body(),
        "NegotiateProtocolVersion differs from Postgres's"
    );
}

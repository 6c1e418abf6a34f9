//! A minimal HTTP/1.1 endpoint for `/metrics` and `/health` (config `metrics.listen`).
//!
//! Hand-written on tokio rather than pulling in an HTTP stack: it serves two fixed GET routes
//! to scrapers and probes, one request per connection (`Connection: close`). Everything is
//! bounded: the request head (8 KiB), the time to send it (5 s), and concurrent connections
//! (further ones are closed at once).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::{Health, Metrics};

/// Largest request head accepted.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONCURRENT: usize = 32;

/// Content type of the OpenMetrics text format `Metrics::encode` produces.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serve until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        warn!(%error, "metrics endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    continue;
                };
                let metrics = Arc::clone(&metrics);
                let health = Arc::clone(&health);
                tokio::spawn(async move {
                    if let Err(error) = handle(stream, &metrics, &health).await {
                        debug!(%error, "metrics endpoint: request failed");
                    }
                    drop(permit);
                });
            }
        }
    }
}

/// The response to a request line's method and path: status line, content type, body.
pub fn respond(
    method: &str,
    path: &str,
    metrics: &Metrics,
    health: &Health,
) -> (&'static str, &'static str, String) {
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", "text/plain", "GET only\n".into());
    }
    // Query strings are ignored (`/metrics?x=y` is `/metrics`).
    match path.split('?').next().unwrap_or("") {
        "/metrics" => ("200 OK", METRICS_CONTENT_TYPE, metrics.encode()),
        "/health" => match health.status() {
            Ok(()) => ("200 OK", "text/plain", "ok\n".into()),
            Err(reasons) => (
                "503 Service Unavailable",
                "text/plain",
                format!("unhealthy\n{}\n", reasons.join("\n")),
            ),
        },
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics, health: &Health) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_REQUEST_HEAD {
                return Err(std::io::Error::other("request head too large"));
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other(
                    "connection closed before the request",
                ));
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok(())
    })
    .await;
    match read {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(std::io::Error::other("request timed out")),
    }
    let line = head
        .split(|&b| b == b'\r')
        .next()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let (status, content_type, body) = respond(method, path, metrics, health);
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_health_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        metrics.upstream_error();
        let health = Arc::new(Health::new());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Arc::clone(&metrics),
            Arc::clone(&health),
            async {
                let _ = stop_rx.await;
            },
        ));
        let m = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(m.starts_with("HTTP/1.1 200 OK\r\n"), "{m}");
        assert!(
            m.contains("Content-Type: application/openmetrics-text"),
            "{m}"
        );
        assert!(m.contains("\npgpurpose_upstream_errors_total 1\n"), "{m}");
        let h = get(addr, "GET /health HTTP/1.0\r\n\r\n").await;
        assert!(
            h.starts_with("HTTP/1.1 200 OK\r\n") && h.ends_with("\r\n\r\nok\n"),
            "{h}"
        );
        health.add_check("catalog", || Err("no catalog snapshot loaded".into()));
        let h = get(addr, "GET /health HTTP/1.1\r\n\r\n").await;
        assert!(h.starts_with("HTTP/1.1 503 Service Unavailable"), "{h}");
        assert!(h.contains("catalog: no catalog snapshot loaded"), "{h}");
        let n = get(addr, "GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(n.starts_with("HTTP/1.1 404"), "{n}");
        let p = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(p.starts_with("HTTP/1.1 405"), "{p}");
        let _ = stop_tx.send(());
        server.await.unwrap();
    }
}

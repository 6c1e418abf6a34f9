//! Opening a session on the upstream Postgres for an authenticated service: transport (TCP,
//! TLS per `sslmode`), StartupMessage with the service's upstream role and the pinned
//! settings, authentication, and the server's greeting up to the first ReadyForQuery.

use std::time::Duration;

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::stream::{MaybeTls, UpstreamStream};
use crate::auth::AuthError;
use crate::config::{UpstreamConfig, UpstreamTls};
use crate::protocol::backend::error_field;
use crate::protocol::frame::take_frame;
use crate::protocol::startup::{encode_cancel, encode_ssl_request, encode_startup};

/// Largest message accepted from the upstream during startup.
const MAX_STARTUP_FRAME: usize = 1 << 20;

/// Settings every upstream session is pinned to (DESIGN.md, "Session settings change what
/// bytes mean"): literals and identifiers must mean to Postgres what they meant to the analyser.
pub const PINNED_SETTINGS: &[(&str, &str)] = &[
    ("client_encoding", "UTF8"),
    ("standard_conforming_strings", "on"),
];

#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("cannot connect to upstream {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to upstream {0}")]
    Timeout(String),
    #[error("upstream I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("upstream does not offer TLS but the configuration requires it")]
    TlsRefused,
    #[error("upstream TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("upstream authentication failed: {0}")]
    Auth(#[from] AuthError),
    /// The server refused the session; the frame is its ErrorResponse, to forward as is.
    #[error("upstream refused the session: {code} {message}")]
    Refused {
        code: String,
        message: String,
        frame: BytesMut,
    },
    #[error("upstream sent a malformed or unexpected message during startup")]
    Protocol,
    #[error("upstream closed the connection during startup")]
    Closed,
}

/// An upstream session that has reached its first ReadyForQuery.
pub struct UpstreamSession {
    pub stream: UpstreamStream,
    /// Bytes already read beyond the greeting (normally empty).
    pub read_buf: BytesMut,
    /// ParameterStatus and NoticeResponse frames of the greeting, to replay to the client.
    pub greeting: BytesMut,
    pub backend_key: (i32, i32),
    pub status: u8,
}

/// The TCP (and, per configuration, TLS) transport to the upstream, before any startup packet.
pub async fn open_transport(
    config: &UpstreamConfig,
    tls: Option<&TlsConnector>,
) -> Result<UpstreamStream, UpstreamError> {
    let addr = format!("{}:{}", config.host, config.port);
    let tcp = TcpStream::connect(&addr)
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: addr.clone(),
            source,
        })?;
    tcp.set_nodelay(true)?;
    let Some(connector) = tls else {
        return Ok(MaybeTls::Plain(tcp));
    };
    let mut tcp = tcp;
    tcp.write_all(&encode_ssl_request()).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {
            let name =
                rustls::pki_types::ServerName::try_from(config.host.clone()).map_err(|e| {
                    UpstreamError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                })?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(UpstreamError::Tls)?;
            Ok(MaybeTls::Tls(Box::new(stream)))
        }
        b'N' if config.tls == UpstreamTls::Prefer => Ok(MaybeTls::Plain(tcp)),
        b'N' => Err(UpstreamError::TlsRefused),
        _ => Err(UpstreamError::Protocol),
    }
}

/// Connect and authenticate as `role`, passing the client's accepted startup parameters.
pub async fn connect(
    config: &UpstreamConfig,
    tls: Option<&TlsConnector>,
    role: &str,
    password: Option<&str>,
    database: &str,
    client_params: &[(String, String)],
) -> Result<UpstreamSession, UpstreamError> {
    let addr = format!("{}:{}", config.host, config.port);
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    match tokio::time::timeout(
        timeout,
        connect_inner(config, tls, role, password, database, client_params),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::Timeout(addr)),
    }
}

async fn connect_inner(
    config: &UpstreamConfig,
    tls: Option<&TlsConnector>,
    role: &str,
    password: Option<&str>,
    database: &str,
    client_params: &[(String, String)],
) -> Result<UpstreamSession, UpstreamError> {
    let mut stream = open_transport(config, tls).await?;
    let mut params: Vec<(&str, &str)> = vec![("user", role), ("database", database)];
    params.extend(client_params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    params.extend(PINNED_SETTINGS.iter().copied());
    stream.write_all(&encode_startup(&params)).await?;

    let mut read_buf = BytesMut::with_capacity(8192);
    let binding = channel_binding(&stream);
    crate::auth::upstream::authenticate_upstream(
        &mut stream,
        &mut read_buf,
        role,
        password,
        binding,
    )
    .await?;

    let mut greeting = BytesMut::new();
    let mut backend_key = None;
    loop {
        let frame = match take_frame(&mut read_buf, MAX_STARTUP_FRAME)
            .map_err(|_| UpstreamError::Protocol)?
        {
            Some((_, frame)) => frame,
            None => {
                if stream.read_buf(&mut read_buf).await? == 0 {
                    return Err(UpstreamError::Closed);
                }
                continue;
            }
        };
        match frame[0] {
            b'S' | b'N' => greeting.extend_from_slice(&frame),
            b'K' if frame.len() == 13 => {
                let pid = i32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]);
                let key = i32::from_be_bytes([frame[9], frame[10], frame[11], frame[12]]);
                backend_key = Some((pid, key));
            }
            b'Z' if frame.len() == 6 => {
                let backend_key = backend_key.ok_or(UpstreamError::Protocol)?;
                return Ok(UpstreamSession {
                    stream,
                    read_buf,
                    greeting,
                    backend_key,
                    status: frame[5],
                });
            }
            b'E' => {
                return Err(UpstreamError::Refused {
                    code: error_field(&frame, b'C').unwrap_or("XX000").to_owned(),
                    message: error_field(&frame, b'M').unwrap_or("").to_owned(),
                    frame,
                })
            }
            _ => return Err(UpstreamError::Protocol),
        }
    }
}

fn channel_binding(stream: &UpstreamStream) -> crate::auth::upstream::UpstreamChannelBinding {
    use crate::auth::upstream::UpstreamChannelBinding;
    match stream {
        MaybeTls::Tls(tls) => {
            let (_, conn) = tls.get_ref();
            match conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::auth::scram::tls_server_end_point(c))
            {
                Some(data) => UpstreamChannelBinding::Prefer(data),
                None => UpstreamChannelBinding::Disabled,
            }
        }
        MaybeTls::Plain(_) => UpstreamChannelBinding::Disabled,
    }
}

/// Forward a cancel to the upstream with the upstream's keys. Best effort, as in Postgres:
/// the client never gets an answer.
pub async fn send_cancel(
    config: &UpstreamConfig,
    tls: Option<&TlsConnector>,
    key: (i32, i32),
) -> Result<(), UpstreamError> {
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let work = async {
        let mut stream = open_transport(config, tls).await?;
        stream.write_all(&encode_cancel(key.0, key.1)).await?;
        stream.flush().await?;
        // Postgres closes the connection after reading the request; wait for that so the
        // cancel is delivered before we drop the socket.
        let mut sink = [0u8; 16];
        let _ = stream.read(&mut sink).await;
        Ok(())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| UpstreamError::Timeout(config.host.clone()))?
}

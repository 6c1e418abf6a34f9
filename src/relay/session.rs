//! One client session: negotiate (TLS, cancel), authenticate the client as a service, open its
//! upstream session, then relay in both directions until either side ends.
//!
//! The two directions run concurrently (a proxy that blocks writing one way while the other
//! way is full deadlocks pipelining clients). Client-to-upstream frames are parsed one by one,
//! because SQL-bearing messages pass the interception seam; upstream-to-client bytes are
//! forwarded in large chunks, peeking only at frame headers, `ReadyForQuery`, and the
//! `ErrorResponse` of a blocked statement's stand-in.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::params::{interpret, StartupRequest};
use super::stream::{ClientStream, MaybeTls};
use super::upstream::{self, UpstreamError, UpstreamSession};
use super::ProxyState;
use crate::audit::record::{ConnectionEvent, ConnectionEventKind};
use crate::error::{sqlstate, PgError};
use crate::intercept::{Protocol, StatementContext, Verdict};
use crate::policy::Service;
use crate::protocol::backend::{self, error_field};
use crate::protocol::frame::{peek_header, put_frame, take_frame, FrameError, HEADER_LEN};
use crate::protocol::frontend::{parse_message, put_parse, put_query, query_text, FrontendError};
use crate::protocol::startup::{take_startup_packet, StartupPacket, MAX_STARTUP_PACKET};

/// Largest authentication message accepted from a client.
const MAX_AUTH_MESSAGE: usize = 64 * 1024;
/// Read chunk reserved before each socket read.
const READ_CHUNK: usize = 64 * 1024;
/// Largest upstream ErrorResponse the proxy buffers to check for a block stand-in.
const MAX_INSPECTED_ERROR: usize = 1 << 20;
/// How often a session that waits for an idle point (draining, or busy with an idle timeout
/// configured) re-checks whether it reached one.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Identity of an authenticated session, for logs, audit and the interception context.
#[derive(Debug, Clone)]
pub struct SessionIdentity {
    pub connection_id: u64,
    pub client_addr: String,
    pub service: String,
    pub purpose: String,
    /// The upstream database the session is connected to.
    pub database: String,
}

/// Entry point for an accepted connection. Never panics on client input; every failure ends
/// in an ErrorResponse when the client can still be told, then a closed socket.
pub async fn run(
    state: Arc<ProxyState>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    admitted: bool,
) {
    let connection_id = state.next_connection_id();
    let _open = state.metrics.connection_opened();
    let _ = tcp.set_nodelay(true);
    // The span covers the startup phase only: entering a span on every poll of the relay loop
    // costs measurable CPU per message, so relay-phase log lines carry `conn` as a field.
    let span = tracing::info_span!("session", conn = connection_id, peer = %peer);
    let startup = tokio::time::timeout(
        state.config.limits.startup_timeout(),
        tracing::Instrument::instrument(startup(&state, tcp, peer, connection_id, admitted), span),
    )
    .await;
    let ready = match startup {
        Ok(Ok(Some(ready))) => ready,
        Ok(Ok(None)) => return,
        Ok(Err(reason)) => {
            debug!(conn = connection_id, %reason, "session ended during startup");
            return;
        }
        Err(_) => {
            debug!(conn = connection_id, "startup timed out");
            return;
        }
    };
    relay(&state, ready, shutdown).await;
}

/// A session that finished startup and is ready to relay.
struct Ready {
    client: ClientStream,
    client_buf: BytesMut,
    upstream: UpstreamSession,
    identity: SessionIdentity,
    _cancel: super::cancel::CancelGuard,
}

async fn write_fatal<S: AsyncWrite + Unpin>(stream: &mut S, error: &PgError) {
    let _ = stream.write_all(&error.to_frame()).await;
    let _ = stream.flush().await;
}

/// Read one startup packet, bounded in size.
async fn read_startup_packet(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<Option<StartupPacket>, String> {
    loop {
        match take_startup_packet(buf) {
            Ok(Some(packet)) => return Ok(Some(packet)),
            Ok(None) => {}
            Err(e) => {
                let error = PgError::protocol_violation(e.to_string());
                write_fatal(stream, &error).await;
                return Err(e.to_string());
            }
        }
        buf.reserve(MAX_STARTUP_PACKET);
        match stream.read_buf(buf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn startup(
    state: &Arc<ProxyState>,
    tcp: TcpStream,
    peer: SocketAddr,
    connection_id: u64,
    admitted: bool,
) -> Result<Option<Ready>, String> {
    let mut stream: ClientStream = MaybeTls::Plain(tcp);
    let mut buf = BytesMut::with_capacity(1024);
    let params = loop {
        let Some(packet) = read_startup_packet(&mut stream, &mut buf).await? else {
            return Ok(None);
        };
        match packet {
            StartupPacket::SslRequest => {
                // Bytes pipelined behind an SSLRequest would be read as if they came over TLS
                // (CVE-2021-23214): refuse.
                if !buf.is_empty() || stream.is_tls() {
                    write_fatal(
                        &mut stream,
                        &PgError::protocol_violation("unexpected data after SSLRequest"),
                    )
                    .await;
                    return Err("data after SSLRequest".into());
                }
                stream = match (stream, &state.client_tls) {
                    (MaybeTls::Plain(mut tcp), Some(tls)) => {
                        tcp.write_all(b"S").await.map_err(|e| e.to_string())?;
                        let accepted = tls
                            .acceptor
                            .accept(tcp)
                            .await
                            .map_err(|e| format!("TLS handshake: {e}"))?;
                        MaybeTls::Tls(Box::new(accepted))
                    }
                    (mut other, _) => {
                        other.write_all(b"N").await.map_err(|e| e.to_string())?;
                        other
                    }
                };
            }
            StartupPacket::GssEncRequest => {
                if !buf.is_empty() {
                    return Err("data after GSSENCRequest".into());
                }
                stream.write_all(b"N").await.map_err(|e| e.to_string())?;
            }
            StartupPacket::Cancel {
                process_id,
                secret_key,
            } => {
                forward_cancel(state, (process_id, secret_key)).await;
                return Ok(None);
            }
            StartupPacket::Startup {
                minor_version,
                params,
            } => {
                if minor_version != 0 {
                    debug!(
                        minor_version,
                        "client asked for a newer protocol minor version"
                    );
                }
                break (minor_version, params);
            }
        }
    };
    let (minor_version, params) = params;

    if !admitted {
        refused(
            state,
            connection_id,
            peer,
            sqlstate::TOO_MANY_CONNECTIONS,
            "over the connection limit",
            None,
        );
        write_fatal(
            &mut stream,
            &PgError::fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already",
            ),
        )
        .await;
        return Err("over the connection limit".into());
    }
    if state.client_tls.as_ref().is_some_and(|t| t.required) && !stream.is_tls() {
        let error = PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "pgpurpose requires an encrypted connection (TLS)",
        )
        .with_hint("connect with sslmode=require");
        refused(state, connection_id, peer, error.code, "TLS required", None);
        write_fatal(&mut stream, &error).await;
        return Err("plaintext refused".into());
    }
    let request = match interpret(&params) {
        Ok(r) => r,
        Err(error) => {
            refused(
                state,
                connection_id,
                peer,
                error.code,
                "invalid startup parameters",
                None,
            );
            write_fatal(&mut stream, &error).await;
            return Err(error.to_string());
        }
    };
    let mut out = BytesMut::with_capacity(1024);
    if minor_version != 0 || !request.unsupported_protocol_options.is_empty() {
        let opts: Vec<&str> = request
            .unsupported_protocol_options
            .iter()
            .map(String::as_str)
            .collect();
        backend::put_negotiate_protocol_version(&mut out, &opts);
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
        out.clear();
    }

    // Checked before any SCRAM work, for every service name alike (see `auth_limit`).
    let Some(attempt) = state.auth_failures.begin(peer.ip()) else {
        let error = auth_limited();
        refused(
            state,
            connection_id,
            peer,
            error.code,
            "address over the failed-authentication limit",
            None,
        );
        write_fatal(&mut stream, &error).await;
        return Err("address over the failed-authentication limit".into());
    };
    let service = match authenticate(state, &mut stream, &mut buf, &request.service).await {
        Ok(service) => {
            drop(attempt);
            service
        }
        Err(error) => {
            info!(service = %request.service, "authentication failed");
            refused(
                state,
                connection_id,
                peer,
                error.code,
                "authentication failed",
                None,
            );
            if error.code == sqlstate::INVALID_PASSWORD {
                attempt.failed();
            } else {
                drop(attempt);
            }
            write_fatal(&mut stream, &error).await;
            return Err(error.to_string());
        }
    };
    let Some(purpose) = service
        .session_purpose(request.purpose.as_deref())
        .map(str::to_owned)
    else {
        let message = match &request.purpose {
            Some(p) => format!(
                "service \"{}\" is not declared for purpose \"{p}\"",
                service.name
            ),
            None => format!(
                "service \"{}\" is declared for several purposes; choose one",
                service.name
            ),
        };
        let error = PgError::fatal(sqlstate::INVALID_AUTHORIZATION, message).with_hint(format!(
            "connect with options='-c pgpurpose.purpose=NAME', NAME one of: {}",
            service.purposes.join(", ")
        ));
        let reason = "purpose not declared for the service";
        refused(
            state,
            connection_id,
            peer,
            error.code,
            reason,
            Some(&service.name),
        );
        write_fatal(&mut stream, &error).await;
        return Err("purpose refused".into());
    };

    let upstream = match connect_upstream(state, &service, &request).await {
        Ok(u) => u,
        Err(error) => {
            state.metrics.upstream_error();
            warn!(service = %service.name, %error, "upstream session failed");
            let frame = match error {
                UpstreamError::Refused { code, frame, .. } if !code.starts_with("28") => frame,
                UpstreamError::Refused { .. } | UpstreamError::Auth(_) => PgError::fatal(
                    sqlstate::UNABLE_TO_CONNECT,
                    "the upstream database rejected the credentials configured for this service",
                )
                .to_frame(),
                other => PgError::upstream_unavailable("cannot reach the upstream database")
                    .with_detail(other.to_string())
                    .to_frame(),
            };
            let reason = "upstream session failed";
            refused(
                state,
                connection_id,
                peer,
                sqlstate::UNABLE_TO_CONNECT,
                reason,
                Some(&service.name),
            );
            let _ = stream.write_all(&frame).await;
            return Err("upstream unavailable".into());
        }
    };

    let database = upstream_database(state, &request);
    if let Some(audit) = &state.audit {
        let mut event = audit.connection_event_for(
            ConnectionEventKind::Authenticated,
            connection_id,
            &peer.to_string(),
        );
        event.service = Some(service.name.clone());
        event.purpose = Some(purpose.clone());
        event.database = Some(database.clone());
        if let Err(error) = audit.record_connection(event) {
            write_fatal(&mut stream, &error).await;
            return Err("audit log not writable".into());
        }
    }
    let cancel = state.cancels.register(upstream.backend_key);
    backend::put_auth_ok(&mut out);
    out.extend_from_slice(&upstream.greeting);
    backend::put_backend_key_data(&mut out, cancel.key.0, cancel.key.1);
    backend::put_ready_for_query(&mut out, upstream.status);
    stream.write_all(&out).await.map_err(|e| e.to_string())?;

    let identity = SessionIdentity {
        connection_id,
        client_addr: peer.to_string(),
        service: service.name.clone(),
        purpose,
        database,
    };
    info!(service = %identity.service, purpose = %identity.purpose, tls = stream.is_tls(), "session started");
    Ok(Some(Ready {
        client: stream,
        client_buf: buf,
        upstream,
        identity,
        _cancel: cancel,
    }))
}

/// Record a refused connection in the audit log, in the proxy's words only (never the
/// client-claimed user name or other client-supplied text). A refusal stands whether or not
/// it could be recorded.
fn refused(
    state: &ProxyState,
    connection_id: u64,
    peer: SocketAddr,
    code: &str,
    reason: &str,
    service: Option<&str>,
) {
    if let Some(audit) = &state.audit {
        let mut event = audit.connection_event_for(
            ConnectionEventKind::Refused,
            connection_id,
            &peer.to_string(),
        );
        event.sqlstate = Some(code.to_owned());
        event.reason = Some(reason.to_owned());
        event.service = service.map(str::to_owned);
        let _ = audit.record_connection(event);
    }
}

/// Record the end of an authenticated session.
fn closed(state: &ProxyState, identity: &SessionIdentity, end: &End) {
    let Some(audit) = &state.audit else { return };
    let mut event: ConnectionEvent = audit.connection_event_for(
        ConnectionEventKind::Closed,
        identity.connection_id,
        &identity.client_addr,
    );
    event.service = Some(identity.service.clone());
    event.purpose = Some(identity.purpose.clone());
    event.database = Some(identity.database.clone());
    let (reason, code) = match end {
        End::ClientTerminated => ("client terminated the session", None),
        End::ClientGone => ("client connection lost", None),
        End::UpstreamGone => (
            "upstream connection lost",
            Some(sqlstate::CONNECTION_FAILURE),
        ),
        End::UpstreamEndedWithFatal => ("ended by the upstream server", None),
        End::Fatal(error) => ("ended by the proxy", Some(error.code)),
    };
    event.reason = Some(reason.to_owned());
    event.sqlstate = code.map(str::to_owned);
    let _ = audit.record_connection(event);
}

async fn forward_cancel(state: &ProxyState, key: (i32, i32)) {
    let Some(upstream_key) = state.cancels.upstream_key(key) else {
        debug!("cancel request with unknown keys ignored");
        return;
    };
    if let Err(error) = upstream::send_cancel(
        &state.config.upstream,
        state.upstream_tls.as_ref(),
        upstream_key,
    )
    .await
    {
        warn!(%error, "forwarding a cancel request failed");
    }
}

/// Read one typed frame during authentication.
async fn read_auth_frame(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, PgError> {
    loop {
        match take_frame(buf, MAX_AUTH_MESSAGE) {
            Ok(Some((_, frame))) => return Ok(frame),
            Ok(None) => {}
            Err(e) => return Err(PgError::protocol_violation(e.to_string())),
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => {
                return Err(PgError::protocol_violation(
                    "connection closed during authentication",
                ))
            }
            Ok(_) => {}
        }
    }
}

/// SCRAM-SHA-256 (or -PLUS over TLS) with the service's verifier. An unknown service runs the
/// same exchange against a fake verifier so that the answer and its timing do not reveal which
/// services exist.
async fn authenticate(
    state: &ProxyState,
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    name: &str,
) -> Result<Service, PgError> {
    use crate::auth::scram::{dummy_verifier, ScramServer};
    let policy = state.policy.load_full();
    let service = policy.service(name).cloned();
    let verifier = match service
        .as_ref()
        .map(|s| crate::auth::secrets::resolve_verifier(&s.credential))
    {
        Some(Ok(v)) => v,
        Some(Err(error)) => {
            warn!(service = name, %error, "service credential cannot be resolved; refusing");
            dummy_verifier(name, &state.dummy_secret)
        }
        None => dummy_verifier(name, &state.dummy_secret),
    };
    let binding = match (&*stream, &state.client_tls) {
        (MaybeTls::Tls(_), Some(tls)) => tls.server_end_point.clone(),
        _ => None,
    };
    let mut scram = ScramServer::new(verifier, binding);
    let mut out = BytesMut::new();
    backend::put_auth_sasl(&mut out, scram.mechanisms());
    stream
        .write_all(&out)
        .await
        .map_err(|_| PgError::auth_failed(name))?;

    let first = read_auth_frame(stream, buf).await?;
    let (mechanism, data) = sasl_initial_response(&first)
        .ok_or_else(|| PgError::protocol_violation("invalid SASLInitialResponse"))?;
    let server_first = scram
        .client_first(mechanism, data)
        .map_err(|_| PgError::auth_failed(name))?;
    out.clear();
    backend::put_auth_sasl_continue(&mut out, &server_first);
    stream
        .write_all(&out)
        .await
        .map_err(|_| PgError::auth_failed(name))?;

    let last = read_auth_frame(stream, buf).await?;
    if last[0] != b'p' {
        return Err(PgError::protocol_violation("expected SASLResponse"));
    }
    let server_final = scram
        .client_final(&last[HEADER_LEN..])
        .map_err(|_| PgError::auth_failed(name))?;
    let service = service.ok_or_else(|| PgError::auth_failed(name))?;
    out.clear();
    backend::put_auth_sasl_final(&mut out, &server_final);
    stream
        .write_all(&out)
        .await
        .map_err(|_| PgError::auth_failed(name))?;
    Ok(service)
}

/// `p` frame of a SASLInitialResponse: mechanism name, then Int32 length (-1: none) and data.
fn sasl_initial_response(frame: &[u8]) -> Option<(&str, &[u8])> {
    if frame.first() != Some(&b'p') {
        return None;
    }
    let body = frame.get(HEADER_LEN..)?;
    let nul = body.iter().position(|b| *b == 0)?;
    let mechanism = std::str::from_utf8(&body[..nul]).ok()?;
    let rest = body.get(nul + 1..)?;
    let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let data = rest.get(4..)?;
    match len {
        -1 if data.is_empty() => Some((mechanism, data)),
        n if n >= 0 && n as usize == data.len() => Some((mechanism, data)),
        _ => None,
    }
}

async fn connect_upstream(
    state: &ProxyState,
    service: &Service,
    request: &StartupRequest,
) -> Result<UpstreamSession, UpstreamError> {
    let password = match &service.upstream.password {
        Some(source) => Some(crate::auth::secrets::resolve_password(source)?),
        None => None,
    };
    let database = upstream_database(state, request);
    upstream::connect(
        &state.config.upstream,
        state.upstream_tls.as_ref(),
        &service.upstream.user,
        password.as_deref(),
        &database,
        &request.settings,
    )
    .await
}

/// The database a session runs against: the configured one, else the one the client named.
fn upstream_database(state: &ProxyState, request: &StartupRequest) -> String {
    state
        .config
        .upstream
        .database
        .clone()
        .unwrap_or_else(|| request.database.clone())
}

/// State the two relay directions share.
struct Shared {
    /// Stand-ins sent upstream for blocked statements, oldest first, with the error to show.
    substitutions: Mutex<VecDeque<(String, PgError)>>,
    /// Transaction status from the latest ReadyForQuery.
    status: AtomicU8,
    /// ReadyForQuery messages still expected (Query and Sync each produce one, except those
    /// Postgres skips or ignores: see `ClientToUpstream::track`). Never below zero.
    outstanding: AtomicI64,
    /// The upstream entered copy-in mode (CopyInResponse seen) and the client has not ended
    /// it yet (CopyDone / CopyFail).
    copy_in: AtomicBool,
    /// True while bytes are being written to the client, so a session ending on the other
    /// direction does not write an error into the middle of a frame.
    client_writing: AtomicBool,
}

impl Shared {
    /// One fewer ReadyForQuery expected (`n` fewer), never going below zero.
    fn expect_fewer(&self, n: i64) {
        let _ = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                Some((o - n).max(0))
            });
    }

    fn idle(&self) -> bool {
        self.status.load(Ordering::Acquire) == backend::STATUS_IDLE
            && self.outstanding.load(Ordering::Acquire) <= 0
    }
}

/// Why a relay direction stopped.
#[derive(Debug)]
enum End {
    ClientTerminated,
    ClientGone,
    UpstreamGone,
    /// The upstream closed right after a FATAL error (e.g. 57P01 on a server shutdown), which
    /// the client already received: nothing to add.
    UpstreamEndedWithFatal,
    /// End the session telling the client why.
    Fatal(PgError),
}

async fn relay(state: &Arc<ProxyState>, ready: Ready, shutdown: watch::Receiver<bool>) {
    let Ready {
        client,
        client_buf,
        upstream,
        identity,
        _cancel,
    } = ready;
    let UpstreamSession {
        stream: upstream_stream,
        read_buf: upstream_buf,
        status,
        ..
    } = upstream;
    let shared = Shared {
        substitutions: Mutex::new(VecDeque::new()),
        status: AtomicU8::new(status),
        outstanding: AtomicI64::new(0),
        copy_in: AtomicBool::new(false),
        client_writing: AtomicBool::new(false),
    };
    // Plain TCP splits into owned halves without a lock; TLS streams need tokio's locked split.
    match (client, upstream_stream) {
        (MaybeTls::Plain(client), MaybeTls::Plain(upstream)) => {
            let (client_read, client_write) = client.into_split();
            let (upstream_read, upstream_write) = upstream.into_split();
            let halves = (client_read, client_write, upstream_read, upstream_write);
            relay_halves(
                state,
                halves,
                client_buf,
                upstream_buf,
                shared,
                &identity,
                shutdown,
            )
            .await
        }
        (client, upstream) => {
            let (client_read, client_write) = tokio::io::split(client);
            let (upstream_read, upstream_write) = tokio::io::split(upstream);
            let halves = (client_read, client_write, upstream_read, upstream_write);
            relay_halves(
                state,
                halves,
                client_buf,
                upstream_buf,
                shared,
                &identity,
                shutdown,
            )
            .await
        }
    }
}

async fn relay_halves<CR, CW, UR, UW>(
    state: &Arc<ProxyState>,
    halves: (CR, CW, UR, UW),
    client_buf: BytesMut,
    upstream_buf: BytesMut,
    shared: Shared,
    identity: &SessionIdentity,
    mut shutdown: watch::Receiver<bool>,
) where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write, mut upstream_read, mut upstream_write) = halves;
    let mut forward = ClientToUpstream {
        state,
        identity,
        shared: &shared,
        nonce: rand::random(),
        unsynced: false,
        syncs_since_statement: 0,
        blocked: 0,
        out: BytesMut::with_capacity(READ_CHUNK),
    };
    let end = tokio::select! {
        end = forward.run(&mut client_read, &mut upstream_write, client_buf, &mut shutdown) => end,
        end = upstream_to_client(&mut upstream_read, &mut client_write, upstream_buf, &shared) => end,
    };
    let fatal = match &end {
        End::Fatal(error) => Some(error.clone()),
        End::UpstreamGone => Some(PgError::upstream_unavailable(
            "the connection to the upstream database was lost",
        )),
        End::ClientTerminated | End::ClientGone | End::UpstreamEndedWithFatal => None,
    };
    if let Some(error) = fatal {
        if !shared.client_writing.load(Ordering::Acquire) {
            write_fatal(&mut client_write, &error).await;
        }
    }
    if !matches!(
        end,
        End::ClientTerminated | End::UpstreamGone | End::UpstreamEndedWithFatal
    ) {
        // Tell the upstream we are leaving so it does not log an unexpected EOF.
        let mut terminate = BytesMut::new();
        put_frame(&mut terminate, b'X', &[]);
        let _ = upstream_write.write_all(&terminate).await;
    }
    let _ = client_write.shutdown().await;
    closed(state, identity, &end);
    info!(conn = identity.connection_id, service = %identity.service, reason = ?end, "session ended");
}

/// The client-to-upstream direction: frame by frame, with SQL-bearing messages decided.
struct ClientToUpstream<'a> {
    state: &'a ProxyState,
    identity: &'a SessionIdentity,
    shared: &'a Shared,
    /// Per-session random part of block stand-ins, so no client can guess or forge one.
    nonce: u64,
    /// Extended-query messages (Parse, Bind, Describe, Execute, Close) were forwarded since the
    /// last Sync: Postgres may still be working on them, so the session is not idle.
    unsynced: bool,
    /// Syncs forwarded since the last Execute or Query: if that statement started COPY FROM
    /// STDIN, Postgres ignored them (copy-in mode ignores Sync) and they get no ReadyForQuery.
    syncs_since_statement: i64,
    blocked: u64,
    out: BytesMut,
}

impl ClientToUpstream<'_> {
    async fn run(
        &mut self,
        client: &mut (impl AsyncRead + Unpin),
        upstream: &mut (impl AsyncWrite + Unpin),
        mut buf: BytesMut,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let limit = self.state.config.limits.max_message_bytes;
        let idle_timeout = self.state.config.limits.idle_timeout();
        let mut draining = *shutdown.borrow();
        // When an idle session times out. Set when the session is first seen idle and cleared
        // only by a complete frame, so a client trickling a frame byte by byte (slowloris)
        // cannot keep an idle session open by sending something now and then.
        let mut idle_deadline: Option<tokio::time::Instant> = None;
        loop {
            // Handle every complete frame already buffered, batching what goes upstream.
            loop {
                match take_frame(&mut buf, limit) {
                    Ok(Some((_, frame))) => {
                        idle_deadline = None;
                        if let Some(end) = self.handle(frame) {
                            if !self.out.is_empty() {
                                let _ = upstream.write_all(&self.out).await;
                                self.out.clear();
                            }
                            return end;
                        }
                    }
                    Ok(None) => break,
                    Err(FrameError::TooLarge { size, limit }) => {
                        return End::Fatal(PgError::fatal(
                            sqlstate::PROGRAM_LIMIT_EXCEEDED,
                            format!("message of {size} bytes exceeds the limit of {limit} bytes"),
                        ))
                    }
                    Err(e) => return End::Fatal(PgError::protocol_violation(e.to_string())),
                }
            }
            if !self.out.is_empty() {
                if upstream.write_all(&self.out).await.is_err() {
                    return End::UpstreamGone;
                }
                self.out.clear();
            }
            // Reserve room for the rest of a large frame in one allocation.
            let want = match peek_header(&buf, limit) {
                Ok(Some(h)) => h.frame_len.saturating_sub(buf.len()).max(READ_CHUNK),
                _ => READ_CHUNK,
            };
            buf.reserve(want);
            let read = loop {
                if draining && self.idle() {
                    return End::Fatal(PgError::fatal(
                        sqlstate::ADMIN_SHUTDOWN,
                        "terminating connection due to administrator command",
                    ));
                }
                idle_deadline = match idle_timeout {
                    Some(t) if self.idle() => {
                        Some(idle_deadline.unwrap_or_else(|| tokio::time::Instant::now() + t))
                    }
                    _ => None,
                };
                let idle_limit = idle_deadline;
                // A busy session becomes idle without a word from the client (the upstream's
                // ReadyForQuery): poll, so that the idle timer starts then, not at the next
                // client message.
                let poll = draining || (idle_timeout.is_some() && idle_limit.is_none());
                tokio::select! {
                    read = client.read_buf(&mut buf) => break read,
                    changed = shutdown.changed(), if !draining => {
                        draining = changed.is_err() || *shutdown.borrow();
                    }
                    // An async block, so the timer is only created when the branch is enabled.
                    _ = async { tokio::time::sleep(DRAIN_POLL).await }, if poll => {}
                    _ = sleep_or_never(idle_limit) => {
                        return End::Fatal(PgError::fatal(
                            sqlstate::IDLE_SESSION_TIMEOUT,
                            "terminating connection due to idle-session timeout",
                        ));
                    }
                }
            };
            match read {
                Ok(0) | Err(_) => return End::ClientGone,
                Ok(_) => {}
            }
        }
    }

    /// No statement is running or awaiting Sync, and every ReadyForQuery has arrived: the
    /// session may be ended (shutdown) or timed out (idle timeout) without losing work.
    fn idle(&self) -> bool {
        !self.unsynced && self.shared.idle()
    }

    /// Keep count of the ReadyForQuery messages Postgres will send for what the client sent,
    /// so that idleness (shutdown drain, idle timeout) is judged right.
    fn track(&mut self, tag: u8) {
        match tag {
            // Extended-query messages that start work upstream (a client may send them with
            // Flush and await the results before its Sync): the session is busy until Sync.
            b'P' | b'B' | b'C' | b'D' => self.unsynced = true,
            b'E' => {
                self.unsynced = true;
                self.syncs_since_statement = 0;
            }
            // Query, and FunctionCall (sent as a Query stand-in). Inside an unsynced batch
            // Postgres skips it when an earlier message failed (no ReadyForQuery), and runs it
            // otherwise (one ReadyForQuery more): not counted there; the count never goes below
            // zero, so a run one only ends the batch's wait a little early.
            b'Q' | b'F' => {
                if !self.unsynced {
                    self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
                }
                self.syncs_since_statement = 0;
            }
            b'S' => {
                self.unsynced = false;
                self.syncs_since_statement += 1;
                self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
            }
            // CopyDone / CopyFail end copy-in mode: the Syncs sent since the COPY statement
            // (tokio-postgres sends Execute+Sync before the data) were ignored.
            b'c' | b'f' => {
                if self.shared.copy_in.swap(false, Ordering::AcqRel) {
                    self.shared.expect_fewer(self.syncs_since_statement);
                }
                self.syncs_since_statement = 0;
            }
            _ => {}
        }
    }

    /// Handle one complete frontend frame: append what goes upstream to `self.out`, or end.
    fn handle(&mut self, frame: BytesMut) -> Option<End> {
        self.track(frame[0]);
        match frame[0] {
            b'Q' => match query_text(&frame) {
                Ok(sql) => match self.decide(Protocol::Simple, sql) {
                    Verdict::Forward => self.out.extend_from_slice(&frame),
                    Verdict::Rewrite(new_sql) => put_query(&mut self.out, &new_sql),
                    Verdict::Block(error) => self.block_query(error),
                },
                Err(FrontendError::NotUtf8) => {
                    self.audit_refusal(Protocol::Simple, "not_utf8", &not_utf8());
                    self.block_query(not_utf8())
                }
                Err(FrontendError::Malformed) => {
                    return Some(End::Fatal(PgError::protocol_violation(
                        "invalid Query message",
                    )))
                }
            },
            b'P' => match parse_message(&frame) {
                Ok(parse) => match self.decide(Protocol::Extended, parse.sql) {
                    Verdict::Forward => self.out.extend_from_slice(&frame),
                    Verdict::Rewrite(new_sql) => put_parse(&mut self.out, &parse, &new_sql),
                    Verdict::Block(error) => {
                        let marker = self.stand_in(error);
                        put_parse(&mut self.out, &parse, &marker);
                    }
                },
                Err(FrontendError::NotUtf8) => {
                    // Keep the statement name so the failure is attributed like Postgres's:
                    // an unnamed stand-in would replace the client's unnamed statement when
                    // the refused Parse was for a named one. The layout was checked before
                    // the text, so the name is the body up to its first NUL.
                    let name = frame[HEADER_LEN..]
                        .split(|b| *b == 0)
                        .next()
                        .unwrap_or_default();
                    self.audit_refusal(Protocol::Extended, "not_utf8", &not_utf8());
                    let marker = self.stand_in(not_utf8());
                    let mut body = Vec::with_capacity(name.len() + marker.len() + 4);
                    body.extend_from_slice(name);
                    body.push(0);
                    body.extend_from_slice(marker.as_bytes());
                    body.extend_from_slice(&[0, 0, 0]);
                    put_frame(&mut self.out, b'P', &body);
                }
                Err(FrontendError::Malformed) => {
                    return Some(End::Fatal(PgError::protocol_violation(
                        "invalid Parse message",
                    )))
                }
            },
            b'S' => self.out.extend_from_slice(&frame),
            // Bind, Close, Describe, Execute, Flush and COPY sub-protocol data carry no SQL.
            b'B' | b'C' | b'D' | b'E' | b'H' | b'd' | b'c' | b'f' => {
                self.out.extend_from_slice(&frame)
            }
            b'F' => {
                // FunctionCall bypasses SQL entirely. Refuse it through a stand-in so the
                // transaction and ReadyForQuery behave as for any failed statement.
                let error = PgError::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    "the FunctionCall protocol message is not supported by pgpurpose",
                );
                self.audit_refusal(Protocol::Simple, "function_call", &error);
                self.block_query(error);
            }
            b'X' => {
                self.out.extend_from_slice(&frame);
                return Some(End::ClientTerminated);
            }
            other => {
                return Some(End::Fatal(PgError::protocol_violation(format!(
                    "invalid frontend message type {other}"
                ))));
            }
        }
        None
    }

    /// Record a message refused here, before any decision (it is blocked either way).
    fn audit_refusal(&self, protocol: Protocol, rule: &str, error: &PgError) {
        if let Some(audit) = &self.state.audit {
            audit.relay_refusal(&self.context(protocol), rule, error);
        }
    }

    fn context(&self, protocol: Protocol) -> StatementContext<'_> {
        StatementContext {
            service: &self.identity.service,
            purpose: &self.identity.purpose,
            connection_id: self.identity.connection_id,
            client_addr: &self.identity.client_addr,
            database: &self.identity.database,
            protocol,
        }
    }

    fn decide(&self, protocol: Protocol, sql: &str) -> Verdict {
        let ctx = self.context(protocol);
        let started = std::time::Instant::now();
        let verdict = self.state.interceptor.decide(&ctx, sql);
        self.state
            .metrics
            .observe_decision_latency(started.elapsed());
        debug!(protocol = ?protocol, verdict = verdict_kind(&verdict), "statement decided");
        verdict
    }

    /// Register a blocked statement and return the SQL sent upstream in its place: a single
    /// unique identifier, which Postgres rejects at parse time. Postgres then aborts an open
    /// transaction and skips to Sync exactly as for any failing statement; the upstream's
    /// syntax error is replaced by `error` on its way back.
    fn stand_in(&mut self, error: PgError) -> String {
        self.blocked += 1;
        let marker = format!("pgpurpose_blocked_{:016x}_{}", self.nonce, self.blocked);
        if let Ok(mut subs) = self.shared.substitutions.lock() {
            subs.push_back((marker.clone(), error));
        }
        marker
    }

    fn block_query(&mut self, error: PgError) {
        let marker = self.stand_in(error);
        put_query(&mut self.out, &marker);
    }
}

/// The refusal for an address over `limits.auth_failures_per_minute`: the same for every
/// service name and password, so it reveals nothing but the limit itself.
fn auth_limited() -> PgError {
    PgError::fatal(
        sqlstate::CONNECTION_REJECTED,
        "too many failed authentication attempts from this address",
    )
    .with_hint("wait a minute before trying again")
}

fn not_utf8() -> PgError {
    PgError::error(
        sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
        "statement text is not valid UTF-8",
    )
}

fn verdict_kind(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Forward => "allow",
        Verdict::Rewrite(_) => "rewrite",
        Verdict::Block(_) => "block",
    }
}

async fn sleep_or_never(limit: Option<tokio::time::Instant>) {
    match limit {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The upstream-to-client direction. Bytes are forwarded in the chunks they arrive in; only
/// frame headers are parsed, plus `ReadyForQuery` (status) and, while a block is pending, whole
/// `ErrorResponse` frames (to replace a stand-in's syntax error by the block's error).
async fn upstream_to_client<R, W>(
    upstream: &mut R,
    client: &mut W,
    mut buf: BytesMut,
    shared: &Shared,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Bytes of the current frame still to pass through without inspection.
    let mut passthrough: usize = 0;
    // The last frame forwarded was a FATAL ErrorResponse (checked when the whole frame was
    // buffered): a close that follows is the server's own clean end, already explained.
    let mut after_fatal = false;
    loop {
        if buf.is_empty() || !can_progress(&buf, passthrough) {
            buf.reserve(READ_CHUNK);
            match upstream.read_buf(&mut buf).await {
                Ok(0) | Err(_) if after_fatal && buf.is_empty() => {
                    return End::UpstreamEndedWithFatal
                }
                Ok(0) | Err(_) => return End::UpstreamGone,
                Ok(_) => {}
            }
        }
        let mut pos = 0;
        let mut replacement: Option<(usize, BytesMut)> = None;
        while pos < buf.len() {
            if passthrough > 0 {
                let take = passthrough.min(buf.len() - pos);
                pos += take;
                passthrough -= take;
                continue;
            }
            let rest = &buf[pos..];
            if rest.len() < HEADER_LEN {
                break;
            }
            let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
            if len < 4 {
                return End::Fatal(PgError::upstream_unavailable(
                    "the upstream database sent a malformed message",
                ));
            }
            let frame_len = len as usize + 1;
            match rest[0] {
                b'Z' if frame_len == 6 => {
                    if rest.len() < 6 {
                        break;
                    }
                    shared.status.store(rest[5], Ordering::Release);
                    shared.expect_fewer(1);
                    pos += 6;
                }
                b'G' => {
                    shared.copy_in.store(true, Ordering::Release);
                    passthrough = frame_len;
                }
                b'E' if frame_len <= MAX_INSPECTED_ERROR && has_pending(shared) => {
                    if rest.len() < frame_len {
                        break;
                    }
                    if let Some(error) = take_substitution(shared, &rest[..frame_len]) {
                        replacement = Some((frame_len, error.to_frame()));
                        break;
                    }
                    pos += frame_len;
                }
                tag => {
                    after_fatal = tag == b'E'
                        && rest.len() >= frame_len
                        && error_field(&rest[..frame_len], b'V') == Some("FATAL");
                    passthrough = frame_len;
                }
            }
        }
        if pos > 0 {
            let chunk = buf.split_to(pos);
            shared.client_writing.store(true, Ordering::Release);
            let written = client.write_all(&chunk).await;
            shared.client_writing.store(false, Ordering::Release);
            if written.is_err() {
                return End::ClientGone;
            }
        }
        if let Some((skip, frame)) = replacement {
            let _ = buf.split_to(skip);
            shared.client_writing.store(true, Ordering::Release);
            let written = client.write_all(&frame).await;
            shared.client_writing.store(false, Ordering::Release);
            if written.is_err() {
                return End::ClientGone;
            }
        }
    }
}

/// Whether the buffered bytes allow forwarding anything without another read.
fn can_progress(buf: &[u8], passthrough: usize) -> bool {
    if passthrough > 0 {
        return true;
    }
    match buf {
        [b'Z', ..] => buf.len() >= 6,
        [b'E', a, b, c, d, ..] => {
            let len = i32::from_be_bytes([*a, *b, *c, *d]).max(4) as usize + 1;
            buf.len() >= len
        }
        _ => buf.len() >= HEADER_LEN,
    }
}

fn has_pending(shared: &Shared) -> bool {
    shared
        .substitutions
        .lock()
        .map(|s| !s.is_empty())
        .unwrap_or(false)
}

/// If `frame` is the upstream's error for a pending stand-in, remove it (and any older
/// stand-ins Postgres skipped while discarding to Sync) and return the error to show instead.
fn take_substitution(shared: &Shared, frame: &[u8]) -> Option<PgError> {
    let message = error_field(frame, b'M')?;
    let mut subs = shared.substitutions.lock().ok()?;
    let index = subs
        .iter()
        .position(|(marker, _)| message.contains(marker.as_str()))?;
    subs.drain(..index);
    subs.pop_front().map(|(_, error)| error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_response_layout() {
        let mut frame = BytesMut::new();
        put_frame(&mut frame, b'p', b"SCRAM-SHA-256\0\x00\x00\x00\x03abc");
        assert_eq!(
            sasl_initial_response(&frame),
            Some(("SCRAM-SHA-256", b"abc".as_slice()))
        );
        let mut bad = BytesMut::new();
        put_frame(&mut bad, b'p', b"SCRAM-SHA-256\0\x00\x00\x00\x09abc");
        assert_eq!(sasl_initial_response(&bad), None);
    }

    #[test]
    fn stand_in_errors_are_replaced_and_skipped_ones_dropped() {
        let shared = Shared {
            substitutions: Mutex::new(VecDeque::from(vec![
                (
                    "pgpurpose_blocked_00_1".to_owned(),
                    PgError::forbidden("first"),
                ),
                (
                    "pgpurpose_blocked_00_2".to_owned(),
                    PgError::forbidden("second"),
                ),
            ])),
            status: AtomicU8::new(b'I'),
            outstanding: AtomicI64::new(0),
            copy_in: AtomicBool::new(false),
            client_writing: AtomicBool::new(false),
        };
        let unrelated = PgError::error("22012", "division by zero").to_frame();
        assert_eq!(take_substitution(&shared, &unrelated), None);
        let upstream = PgError::error(
            "42601",
            "syntax error at or near \"pgpurpose_blocked_00_2\"",
        )
        .to_frame();
        assert_eq!(
            take_substitution(&shared, &upstream).map(|e| e.message),
            Some("second".to_owned())
        );
        assert!(!has_pending(&shared));
    }
}

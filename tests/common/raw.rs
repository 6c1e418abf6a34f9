//! A raw wire-protocol client for tests that must send exact bytes (hand-built or malformed
//! frames, pipelines with a single Sync) and see exactly what comes back, frame by frame.
//!
//! It speaks just enough of the protocol to log in: trust (AuthenticationOk straight away, as
//! the test clusters answer) or SCRAM-SHA-256 without channel binding (as the proxy answers).
//! Every read is bounded by a timeout, so a peer that hangs fails the test instead of hanging it.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use pgpurpose::protocol::backend::error_field;

/// How long one read may wait before the peer is declared hung.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// One whole backend message (type byte, length, body).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(pub Vec<u8>);

impl Frame {
    pub fn tag(&self) -> u8 {
        self.0[0]
    }

    pub fn body(&self) -> &[u8] {
        &self.0[5..]
    }

    /// A field of an ErrorResponse / NoticeResponse.
    pub fn field(&self, code: u8) -> Option<String> {
        error_field(&self.0, code).map(str::to_owned)
    }

    /// SQLSTATE of an ErrorResponse.
    pub fn code(&self) -> Option<String> {
        if self.tag() == b'E' {
            self.field(b'C')
        } else {
            None
        }
    }

    /// Severity (non-localized when present) of an ErrorResponse.
    pub fn severity(&self) -> Option<String> {
        self.field(b'V').or_else(|| self.field(b'S'))
    }

    /// Transaction status of a ReadyForQuery.
    pub fn status(&self) -> Option<u8> {
        (self.tag() == b'Z').then(|| self.0[5])
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tag() {
            b'E' | b'N' => write!(
                f,
                "{}({} {} {:?})",
                self.tag() as char,
                self.severity().unwrap_or_default(),
                self.field(b'C').unwrap_or_default(),
                self.field(b'M').unwrap_or_default()
            ),
            b'Z' => write!(f, "Z({})", self.0[5] as char),
            b'D' | b'C' | b'T' | b'S' => write!(
                f,
                "{}({:?})",
                self.tag() as char,
                String::from_utf8_lossy(&self.0[5..self.0.len().min(80)])
            ),
            t => write!(f, "{}[{} bytes]", t as char, self.0.len()),
        }
    }
}

/// A typed frontend message: `tag`, length, `body`.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, sql);
    frame(b'Q', &body)
}

/// Parse with no declared parameter types.
pub fn parse(statement: &str, sql: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, statement);
    cstr(&mut body, sql);
    body.extend_from_slice(&0i16.to_be_bytes());
    frame(b'P', &body)
}

/// Bind with text-format parameters (`None` = NULL) and text-format results.
pub fn bind(portal: &str, statement: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    cstr(&mut body, statement);
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v.as_bytes());
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    frame(b'B', &body)
}

/// Describe a portal (`P`) or statement (`S`).
pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    cstr(&mut body, name);
    frame(b'D', &body)
}

pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    body.extend_from_slice(&max_rows.to_be_bytes());
    frame(b'E', &body)
}

/// Close a portal (`P`) or statement (`S`).
pub fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    cstr(&mut body, name);
    frame(b'C', &body)
}

pub fn sync() -> Vec<u8> {
    frame(b'S', &[])
}

pub fn terminate() -> Vec<u8> {
    frame(b'X', &[])
}

/// A raw connection to a Postgres-speaking server.
pub struct RawConn {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl RawConn {
    pub async fn connect(port: u16) -> RawConn {
        let stream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// Wraps an already connected socket (e.g. one bound to a chosen source address).
    pub fn from_stream(stream: TcpStream) -> RawConn {
        let _ = stream.set_nodelay(true);
        RawConn {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// Connects and logs in; panics (with the server's error) if that fails.
    pub async fn login(port: u16, user: &str, password: Option<&str>) -> RawConn {
        let mut conn = RawConn::connect(port).await;
        let params = [("user", user), ("database", super::APP_DB)];
        if let Err(e) = conn.startup(&params, password).await {
            panic!("login as {user} on port {port} failed: {e:?}");
        }
        conn
    }

    /// Writes bytes; `Err` when the peer has gone.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads more bytes into the buffer; `Ok(false)` at EOF (or reset).
    async fn fill(&mut self) -> Result<bool, String> {
        self.buf.reserve(64 * 1024);
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(format!(
                "no data from the peer within {}s",
                READ_TIMEOUT.as_secs()
            )),
            Ok(Ok(0)) | Ok(Err(_)) => Ok(false),
            Ok(Ok(_)) => Ok(true),
        }
    }

    /// The next frame; `Ok(None)` at EOF, `Err` on timeout.
    pub async fn recv(&mut self) -> Result<Option<Frame>, String> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                if len < 4 {
                    return Err(format!("invalid length {len} from the peer"));
                }
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    return Ok(Some(Frame(self.buf.split_to(total).to_vec())));
                }
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(format!("EOF inside a frame ({} bytes)", self.buf.len()))
                };
            }
        }
    }

    /// One byte (the answer to SSLRequest / GSSENCRequest); `None` at EOF.
    pub async fn recv_byte(&mut self) -> Result<Option<u8>, String> {
        if self.buf.is_empty() && !self.fill().await? {
            return Ok(None);
        }
        let b = self.buf[0];
        let _ = self.buf.split_to(1);
        Ok(Some(b))
    }

    /// Reads frames until `n` ReadyForQuery messages arrived; panics on EOF or timeout.
    pub async fn until_ready(&mut self, n: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut seen = 0;
        while seen < n {
            match self.recv().await {
                Ok(Some(f)) => {
                    if f.tag() == b'Z' {
                        seen += 1;
                    }
                    frames.push(f);
                }
                Ok(None) => panic!("connection closed while waiting for ReadyForQuery: {frames:?}"),
                Err(e) => panic!("{e}; received so far: {frames:?}"),
            }
        }
        frames
    }

    /// Sends a simple Query and returns every frame up to and including ReadyForQuery.
    pub async fn simple(&mut self, sql: &str) -> Vec<Frame> {
        self.send(&query(sql)).await.expect("send query");
        self.until_ready(1).await
    }

    /// Reads until the peer closes (within `within`), returning what arrived first.
    pub async fn until_closed(&mut self, within: Duration) -> Result<Vec<Frame>, String> {
        let deadline = Instant::now() + within;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.recv()).await {
                Err(_) => return Err(format!("still open after {within:?}; received: {frames:?}")),
                Ok(Ok(Some(f))) => frames.push(f),
                Ok(Ok(None)) => return Ok(frames),
                Ok(Err(e)) if e.starts_with("EOF") => return Ok(frames),
                Ok(Err(e)) => return Err(format!("{e}; received: {frames:?}")),
            }
        }
    }

    /// StartupMessage and authentication (trust or SCRAM-SHA-256), then everything up to the
    /// first ReadyForQuery. `Err` carries the server's ErrorResponse (or a description).
    pub async fn startup(
        &mut self,
        params: &[(&str, &str)],
        password: Option<&str>,
    ) -> Result<Vec<Frame>, Frame> {
        let packet = pgpurpose::protocol::startup::encode_startup(params);
        self.send(&packet)
            .await
            .map_err(|e| local_error(&e.to_string()))?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let f = self.next_or_error().await?;
            match f.tag() {
                b'E' => return Err(f),
                b'v' => continue,
                b'R' => {
                    let code = i32::from_be_bytes([f.0[5], f.0[6], f.0[7], f.0[8]]);
                    let data = &f.0[9..];
                    match code {
                        0 => break,
                        10 => {
                            let mechanisms: Vec<&[u8]> = data.split(|b| *b == 0).collect();
                            if !mechanisms.contains(&b"SCRAM-SHA-256".as_slice()) {
                                return Err(local_error("server does not offer SCRAM-SHA-256"));
                            }
                            let pw = password.ok_or_else(|| local_error("password needed"))?;
                            let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                            let mut out = BytesMut::new();
                            postgres_protocol::message::frontend::sasl_initial_response(
                                "SCRAM-SHA-256",
                                s.message(),
                                &mut out,
                            )
                            .map_err(|e| local_error(&e.to_string()))?;
                            self.send(&out)
                                .await
                                .map_err(|e| local_error(&e.to_string()))?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().ok_or_else(|| local_error("no SCRAM"))?;
                            s.update(data).map_err(|e| local_error(&e.to_string()))?;
                            let mut out = BytesMut::new();
                            postgres_protocol::message::frontend::sasl_response(
                                s.message(),
                                &mut out,
                            )
                            .map_err(|e| local_error(&e.to_string()))?;
                            self.send(&out)
                                .await
                                .map_err(|e| local_error(&e.to_string()))?;
                        }
                        12 => {
                            let s = scram.as_mut().ok_or_else(|| local_error("no SCRAM"))?;
                            s.finish(data).map_err(|e| local_error(&e.to_string()))?;
                        }
                        other => {
                            return Err(local_error(&format!("unsupported auth request {other}")))
                        }
                    }
                }
                other => {
                    return Err(local_error(&format!(
                        "unexpected message {:?} during authentication",
                        other as char
                    )))
                }
            }
        }
        let mut greeting = Vec::new();
        loop {
            let f = self.next_or_error().await?;
            match f.tag() {
                b'E' => return Err(f),
                b'Z' => {
                    greeting.push(f);
                    return Ok(greeting);
                }
                _ => greeting.push(f),
            }
        }
    }

    async fn next_or_error(&mut self) -> Result<Frame, Frame> {
        match self.recv().await {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(local_error("connection closed")),
            Err(e) => Err(local_error(&e)),
        }
    }
}

/// A locally made ErrorResponse (code `XXLOC`) describing a client-side failure.
fn local_error(message: &str) -> Frame {
    let mut body = Vec::new();
    body.push(b'S');
    cstr(&mut body, "LOCAL");
    body.push(b'C');
    cstr(&mut body, "XXLOC");
    body.push(b'M');
    cstr(&mut body, message);
    body.push(0);
    Frame(frame(b'E', &body))
}

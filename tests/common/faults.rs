//! Helpers for the resource-limit, fault-injection and load tests: reading a process's memory
//! and open file descriptors from `/proc`, raising this process's descriptor limit, a fast
//! SCRAM login for opening thousands of sessions, and a TCP shim between the proxy and
//! Postgres that can stall new connections or reset existing ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::cluster::APP_DB;

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`, ...).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resident memory of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("reading /proc/<pid>/fd")
        .count()
}

/// Waits until `f()` returns true, polling; false if it did not within `within`.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the proxy's descriptor count to come back to `baseline` (sessions close
/// asynchronously); panics with the last count if it does not.
pub async fn assert_fds_settle(pid: u32, baseline: usize, what: &str) {
    let mut last = 0;
    let settled = eventually(Duration::from_secs(15), || {
        last = fd_count(pid);
        last <= baseline
    })
    .await;
    assert!(
        settled,
        "{what}: the proxy holds {last} descriptors, {baseline} before (leak?)"
    );
}

/// Raises this process's soft descriptor limit to the hard limit (children inherit it);
/// returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur
    }
}

/// Salted passwords by (password, salt, iterations): PBKDF2 is slow on purpose, and opening
/// thousands of sessions of one service would redo it each time.
static SALTED: Mutex<Option<HashMap<SaltedKey, [u8; 32]>>> = Mutex::new(None);
/// (password, salt, iterations).
type SaltedKey = (String, Vec<u8>, u32);

fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).await?;
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let mut body = vec![0u8; (len.max(4) - 4) as usize];
    stream.read_exact(&mut body).await?;
    Ok((header[0], body))
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Logs in to the proxy as `user` with SCRAM-SHA-256 (no channel binding), deriving the salted
/// password once per (password, salt, iterations), and returns the socket at ReadyForQuery.
/// `Err` carries the server's error message or a description.
pub async fn fast_login(
    port: u16,
    user: &str,
    password: &str,
    extra: &[(&str, &str)],
) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let mut params = vec![("user", user), ("database", APP_DB)];
    params.extend_from_slice(extra);
    let startup = pgpurpose::protocol::startup::encode_startup(&params);
    let io = |e: std::io::Error| e.to_string();
    stream.write_all(&startup).await.map_err(io)?;
    let nonce = STANDARD.encode(rand::random::<[u8; 18]>());
    let client_first_bare = format!("n=,r={nonce}");
    let mut auth_message = String::new();
    let mut server_signature = [0u8; 32];
    loop {
        let (tag, body) = read_frame(&mut stream).await.map_err(io)?;
        match tag {
            b'E' => {
                let text = String::from_utf8_lossy(&body).replace('\0', " ");
                return Err(text);
            }
            b'R' => {
                let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let data = &body[4..];
                match code {
                    0 => break,
                    10 => {
                        let first = format!("n,,{client_first_bare}");
                        let mut b = b"SCRAM-SHA-256\0".to_vec();
                        b.extend_from_slice(&(first.len() as i32).to_be_bytes());
                        b.extend_from_slice(first.as_bytes());
                        stream.write_all(&frame(b'p', &b)).await.map_err(io)?;
                    }
                    11 => {
                        let server_first = String::from_utf8_lossy(data).to_string();
                        let attrs: HashMap<&str, &str> = server_first
                            .split(',')
                            .filter_map(|kv| kv.split_once('='))
                            .collect();
                        let (r, s, i) = (attrs["r"], attrs["s"], attrs["i"]);
                        let salt = STANDARD.decode(s).map_err(|e| e.to_string())?;
                        let iterations: u32 = i.parse().map_err(|_| "bad i".to_string())?;
                        let key = (password.to_owned(), salt.clone(), iterations);
                        let salted = {
                            let mut cache = SALTED.lock().unwrap();
                            let cache = cache.get_or_insert_with(HashMap::new);
                            *cache.entry(key).or_insert_with(|| {
                                let mut out = [0u8; 32];
                                pbkdf2::pbkdf2_hmac::<Sha256>(
                                    password.as_bytes(),
                                    &salt,
                                    iterations,
                                    &mut out,
                                );
                                out
                            })
                        };
                        let without_proof = format!("c=biws,r={r}");
                        auth_message =
                            format!("{client_first_bare},{server_first},{without_proof}");
                        let client_key = hmac256(&salted, b"Client Key");
                        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
                        let signature = hmac256(&stored_key, auth_message.as_bytes());
                        let proof: Vec<u8> = client_key
                            .iter()
                            .zip(signature)
                            .map(|(a, b)| a ^ b)
                            .collect();
                        let server_key = hmac256(&salted, b"Server Key");
                        server_signature = hmac256(&server_key, auth_message.as_bytes());
                        let last = format!("{without_proof},p={}", STANDARD.encode(proof));
                        stream
                            .write_all(&frame(b'p', last.as_bytes()))
                            .await
                            .map_err(io)?;
                    }
                    12 => {
                        let expected = format!("v={}", STANDARD.encode(server_signature));
                        if data != expected.as_bytes() || auth_message.is_empty() {
                            return Err("wrong server signature".into());
                        }
                    }
                    other => return Err(format!("unexpected auth request {other}")),
                }
            }
            other => return Err(format!("unexpected message {:?}", other as char)),
        }
    }
    loop {
        let (tag, body) = read_frame(&mut stream).await.map_err(io)?;
        match tag {
            b'Z' => return Ok(stream),
            b'E' => return Err(String::from_utf8_lossy(&body).replace('\0', " ")),
            _ => {}
        }
    }
}

/// What a [`Shim`] does with connections it accepts from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShimMode {
    /// Forward both ways to the upstream.
    Forward,
    /// Accept, then never forward or answer anything (an upstream slower than any timeout).
    Stall,
}

/// A TCP forwarder between the proxy and Postgres (the proxy's `upstream.port` points at it),
/// for injecting network faults.
pub struct Shim {
    pub port: u16,
    stall: Arc<AtomicBool>,
    /// One reset trigger per accepted connection, in accept order.
    resets: Arc<Mutex<Vec<watch::Sender<bool>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Shim {
    /// Starts forwarding 127.0.0.1:`port` (a free port) to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Shim {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("shim bind");
        let port = listener.local_addr().expect("shim addr").port();
        let stall = Arc::new(AtomicBool::new(false));
        let resets: Arc<Mutex<Vec<watch::Sender<bool>>>> = Arc::default();
        let (stall2, resets2) = (Arc::clone(&stall), Arc::clone(&resets));
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (tx, rx) = watch::channel(false);
                resets2.lock().unwrap().push(tx);
                let stalled = stall2.load(Ordering::SeqCst);
                tokio::spawn(shim_connection(client, upstream, stalled, rx));
            }
        });
        Shim {
            port,
            stall,
            resets,
            task,
        }
    }

    pub fn set_mode(&self, mode: ShimMode) {
        self.stall.store(mode == ShimMode::Stall, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.resets.lock().unwrap().len()
    }

    /// Resets (TCP RST to both sides) the `index`-th accepted connection.
    pub fn reset(&self, index: usize) {
        let _ = self.resets.lock().unwrap()[index].send(true);
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        self.task.abort();
        for r in self.resets.lock().unwrap().iter() {
            let _ = r.send(true);
        }
    }
}

fn hard_close(stream: TcpStream) {
    // SO_LINGER 0: close sends RST instead of FIN, as a crashed peer or middlebox would.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn shim_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    stalled: bool,
    mut reset: watch::Receiver<bool>,
) {
    if stalled {
        // Hold the connection open without a byte until reset (or the peer leaves).
        let mut sink = [0u8; 1024];
        loop {
            tokio::select! {
                _ = reset.changed() => break,
                n = client.read(&mut sink) => if !matches!(n, Ok(n) if n > 0) { break },
            }
        }
        hard_close(client);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        hard_close(client);
        return;
    };
    let reset_now = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = reset.changed() => true,
    };
    if reset_now {
        hard_close(client);
        hard_close(server);
    }
}

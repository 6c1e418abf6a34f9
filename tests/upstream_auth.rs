//! Authentication against real PostgreSQL 15 software, both directions:
//!
//! - `authenticate_upstream` against a real server: trust, password, MD5, SCRAM-SHA-256 and
//!   SCRAM-SHA-256-PLUS over TLS (with a P-384 certificate, so the channel-binding hash must
//!   be SHA-384 to pass), plus the refusals (wrong password, pg_hba reject, GSSAPI). The test
//!   starts its own throwaway cluster in a temporary directory on a free port and stops it.
//! - The proxy's SCRAM server (`ScramServer`) against libpq, through `psql`: password,
//!   SASLprep'd password, mock verifier, and -PLUS with `channel_binding=require`.
//!
//! Without the Postgres binaries the tests are skipped with a message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pgpurpose::auth::{
    authenticate_upstream, dummy_verifier, tls_server_end_point, AuthError, ScramServer,
    ScramVerifier, UpstreamChannelBinding,
};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throwaway cluster owned by the `postgres` OS user; stopped and deleted on drop.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    /// DER of the server certificate, to trust it and to compute the expected binding.
    cert_der: Vec<u8>,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", &format!("{PG_BIN}/{program}")]);
    cmd
}

fn id_of_postgres(flag: &str) -> u32 {
    run(Command::new("id").args([flag, "postgres"]))
        .trim()
        .parse()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chown_to_postgres(path: &Path) {
    std::os::unix::fs::chown(path, Some(id_of_postgres("-u")), Some(id_of_postgres("-g"))).unwrap();
}

const HBA: &str = "\
local all postgres trust
host all trust_user 127.0.0.1/32 trust
host all pw_user 127.0.0.1/32 password
host all md5_user 127.0.0.1/32 md5
host all scram_user 127.0.0.1/32 scram-sha-256
host all gss_user 127.0.0.1/32 gss
host all all 127.0.0.1/32 reject
";

impl Cluster {
    /// `None` when Postgres 15 or the `postgres` user is not available.
    fn start() -> Option<Cluster> {
        if !Path::new(PG_BIN).join("initdb").exists()
            || !Command::new("id")
                .arg("postgres")
                .output()
                .is_ok_and(|o| o.status.success())
        {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("pgpurpose-upstream-auth")
            .tempdir()
            .unwrap();
        chown_to_postgres(dir.path());
        let data = dir.path().join("data");
        run(as_postgres("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]));

        // A P-384 certificate: its tls-server-end-point hash is SHA-384, not SHA-256.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        for (name, content) in [
            ("server.crt", cert.pem()),
            ("server.key", key.serialize_pem()),
        ] {
            let path = data.join(name);
            std::fs::write(&path, content).unwrap();
            chown_to_postgres(&path);
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        std::fs::write(data.join("pg_hba.conf"), HBA).unwrap();

        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             password_encryption = 'scram-sha-256'\nfsync = off\n",
            dir.path().display()
        );
        let mut existing = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        existing.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), existing).unwrap();

        let cluster = Cluster {
            port,
            cert_der: cert.der().to_vec(),
            dir,
        };
        run(as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.path().join("log"))
            .args(["-w", "start"]));
        cluster.psql(
            "CREATE ROLE trust_user LOGIN;
             CREATE ROLE pw_user LOGIN PASSWORD 'pw secret';
             CREATE ROLE scram_user LOGIN PASSWORD 'scram secret';
             CREATE ROLE gss_user LOGIN;
             CREATE ROLE reject_user LOGIN PASSWORD 'x';
             SET password_encryption = 'md5';
             CREATE ROLE md5_user LOGIN PASSWORD 'md5 secret';",
        );
        let stored = cluster.psql(
            "SELECT rolname || ' ' || left(rolpassword, 6) FROM pg_authid \
             WHERE rolname IN ('md5_user', 'scram_user') ORDER BY 1",
        );
        let lines: Vec<&str> = stored.lines().collect();
        assert!(lines[0].starts_with("md5_user md5"), "{stored}");
        assert_eq!(lines[1], "scram_user SCRAM-", "{stored}");
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn psql(&self, sql: &str) -> String {
        run(as_postgres("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
            ])
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql]))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Read one backend message (test-side framing; the server is trusted here).
async fn next_message<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> (u8, BytesMut) {
    loop {
        if buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() > len {
                let mut frame = buf.split_to(len + 1);
                let tag = frame[0];
                frame.advance(5);
                return (tag, frame);
            }
        }
        assert!(stream.read_buf(buf).await.unwrap() > 0, "server closed");
    }
}

/// Authenticate as `user`, then prove the session is usable: the startup messages left in the
/// buffer parse up to ReadyForQuery and `SELECT current_user` answers `user`.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    user: &str,
    password: Option<&str>,
    binding: UpstreamChannelBinding,
) -> Result<(), AuthError> {
    let mut out = BytesMut::new();
    frontend::startup_message([("user", user), ("database", "postgres")], &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    authenticate_upstream(stream, &mut buf, user, password, binding).await?;

    let mut saw_key_data = false;
    loop {
        match next_message(stream, &mut buf).await {
            (b'Z', _) => break,
            (b'K', _) => saw_key_data = true,
            (b'S', _) | (b'N', _) => {}
            (tag, body) => panic!("unexpected {:?}: {body:?}", char::from(tag)),
        }
    }
    assert!(saw_key_data, "BackendKeyData was lost");
    out.clear();
    frontend::query("SELECT current_user", &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let mut row = None;
    loop {
        match next_message(stream, &mut buf).await {
            (b'D', body) => row = Some(body),
            (b'Z', _) => break,
            (b'T', _) | (b'C', _) => {}
            (tag, body) => panic!("unexpected {:?}: {body:?}", char::from(tag)),
        }
    }
    let row = row.expect("a row");
    assert!(row.ends_with(user.as_bytes()), "{row:?}");
    Ok(())
}

async fn plain(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// Connect with TLS (SSLRequest, then rustls trusting only the cluster's certificate);
/// returns the stream and the tls-server-end-point data of the certificate it presented.
async fn tls(cluster: &Cluster) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let mut tcp = plain(cluster.port).await;
    let mut out = BytesMut::new();
    frontend::ssl_request(&mut out);
    tcp.write_all(&out).await.unwrap();
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer[0], b'S', "server refused TLS");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cluster.cert_der.clone().into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let presented = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(presented, cluster.cert_der);
    let binding = tls_server_end_point(&presented).expect("ECDSA certificates have a hash");
    assert_eq!(
        binding.len(),
        48,
        "P-384/SHA-384 certificate binds with SHA-384"
    );
    (stream, binding)
}

fn rejected(result: Result<(), AuthError>, expected_code: &str) -> String {
    match result {
        Err(AuthError::UpstreamRejected { code, message }) if code == expected_code => message,
        other => panic!("expected upstream rejection {expected_code}, got {other:?}"),
    }
}

async fn scenarios(cluster: &Cluster) {
    use UpstreamChannelBinding::{Disabled, Prefer, Require};
    let port = cluster.port;

    // trust: no password needed or sent.
    login(&mut plain(port).await, "trust_user", None, Disabled)
        .await
        .unwrap();

    // cleartext password
    login(
        &mut plain(port).await,
        "pw_user",
        Some("pw secret"),
        Disabled,
    )
    .await
    .unwrap();
    let msg = rejected(
        login(&mut plain(port).await, "pw_user", Some("wrong"), Disabled).await,
        "28P01",
    );
    assert!(msg.contains("password authentication failed"), "{msg}");
    let err = login(&mut plain(port).await, "pw_user", None, Disabled)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AuthError::UpstreamPasswordMissing(u) if u == "pw_user"),
        "{err:?}"
    );

    // MD5 (role stored with an md5 hash, pg_hba md5)
    login(
        &mut plain(port).await,
        "md5_user",
        Some("md5 secret"),
        Disabled,
    )
    .await
    .unwrap();
    rejected(
        login(
            &mut plain(port).await,
            "md5_user",
            Some("md5 secreT"),
            Disabled,
        )
        .await,
        "28P01",
    );

    // SCRAM-SHA-256 without TLS; with binding data the client says 'y' and that is fine
    // because this server connection has no TLS and offers no -PLUS.
    login(
        &mut plain(port).await,
        "scram_user",
        Some("scram secret"),
        Disabled,
    )
    .await
    .unwrap();
    login(
        &mut plain(port).await,
        "scram_user",
        Some("scram secret"),
        Prefer(vec![0; 48]),
    )
    .await
    .unwrap();
    rejected(
        login(
            &mut plain(port).await,
            "scram_user",
            Some("scram"),
            Disabled,
        )
        .await,
        "28P01",
    );
    let err = login(&mut plain(port).await, "scram_user", None, Disabled)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::UpstreamPasswordMissing(_)),
        "{err:?}"
    );
    let err = login(
        &mut plain(port).await,
        "scram_user",
        Some("scram secret"),
        Require(vec![0; 48]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, AuthError::UpstreamChannelBindingRequired),
        "{err:?}"
    );

    // pg_hba reject and an unsupported method
    rejected(
        login(&mut plain(port).await, "reject_user", Some("x"), Disabled).await,
        "28000",
    );
    let err = login(&mut plain(port).await, "gss_user", Some("x"), Disabled)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AuthError::UnsupportedUpstreamMethod(m) if m.contains("GSSAPI")),
        "{err:?}"
    );

    // SCRAM-SHA-256-PLUS over TLS. `Require` only succeeds after a completed -PLUS exchange,
    // so this proves the binding (SHA-384 of the P-384 certificate) matched Postgres's own.
    let (mut stream, binding) = tls(cluster).await;
    login(
        &mut stream,
        "scram_user",
        Some("scram secret"),
        Require(binding.clone()),
    )
    .await
    .unwrap();
    let (mut stream, binding) = tls(cluster).await;
    login(
        &mut stream,
        "scram_user",
        Some("scram secret"),
        Prefer(binding),
    )
    .await
    .unwrap();
    // The wrong end-point hash (as a man in the middle with another certificate would have).
    let (mut stream, binding) = tls(cluster).await;
    let sha256_instead = {
        use sha2::Digest;
        sha2::Sha256::digest(&cluster.cert_der).to_vec()
    };
    assert_ne!(binding, sha256_instead);
    let msg = rejected(
        login(
            &mut stream,
            "scram_user",
            Some("scram secret"),
            Require(sha256_instead),
        )
        .await,
        "28000",
    );
    assert!(msg.contains("channel binding"), "{msg}");
    // Over TLS without binding data: SCRAM with 'n' still works.
    let (mut stream, _) = tls(cluster).await;
    login(&mut stream, "scram_user", Some("scram secret"), Disabled)
        .await
        .unwrap();
    // Binding required but the server uses trust or MD5: refused by the proxy.
    let (mut stream, binding) = tls(cluster).await;
    let err = login(&mut stream, "trust_user", None, Require(binding))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthError::UpstreamChannelBindingRequired),
        "{err:?}"
    );
    let (mut stream, binding) = tls(cluster).await;
    let err = login(
        &mut stream,
        "md5_user",
        Some("md5 secret"),
        Require(binding),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, AuthError::UpstreamChannelBindingRequired),
        "{err:?}"
    );
}

#[test]
fn authenticate_upstream_against_real_postgres() {
    let Some(cluster) = Cluster::start() else {
        eprintln!("SKIPPED: PostgreSQL 15 binaries ({PG_BIN}) or the postgres OS user not found");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), scenarios(&cluster))
            .await
            .expect("scenarios timed out");
    });
}

// ---- The proxy's SCRAM server against libpq ---------------------------------------------

/// Anything a connection can be after an optional TLS upgrade.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How the front door is set up for one psql run.
#[derive(Clone)]
struct FrontDoor {
    verifier: ScramVerifier,
    /// TLS server config and the channel-binding data offered with it.
    tls: Option<(Arc<rustls::ServerConfig>, Option<Vec<u8>>)>,
}

async fn read_exact_vec<S: AsyncRead + Unpin>(
    stream: &mut S,
    n: usize,
) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// A typed frontend message ('p' here), body only.
async fn read_typed<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(u8, Vec<u8>)> {
    let head = read_exact_vec(stream, 5).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    Ok((head[0], read_exact_vec(stream, len - 4).await?))
}

fn auth_frame(code: u32, data: &[u8]) -> Vec<u8> {
    let mut out = vec![b'R'];
    out.extend_from_slice(&(8 + data.len() as u32).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Serve one client: optional TLS, the startup packet, the SCRAM exchange with
/// `ScramServer`, then AuthenticationOk and ReadyForQuery (psql then quits). Returns the
/// mechanism the client chose and the outcome.
async fn serve(tcp: TcpStream, door: FrontDoor) -> (String, Result<(), AuthError>) {
    let mut stream: Box<dyn Io> = Box::new(tcp);
    let mut binding = None;
    let startup = loop {
        let len = read_exact_vec(&mut stream, 4).await.unwrap();
        let len = u32::from_be_bytes(len.try_into().unwrap());
        let body = read_exact_vec(&mut stream, len as usize - 4).await.unwrap();
        if body[..4] != 80877103u32.to_be_bytes() {
            break body; // the StartupMessage
        }
        match &door.tls {
            Some((config, cb)) => {
                stream.write_all(b"S").await.unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                stream = Box::new(acceptor.accept(stream).await.unwrap());
                binding = cb.clone();
            }
            None => stream.write_all(b"N").await.unwrap(),
        }
    };
    let mut params = startup[4..].split(|&b| b == 0);
    let mut user = String::new();
    while let (Some(k), Some(v)) = (params.next(), params.next()) {
        if k == b"user" {
            user = String::from_utf8(v.to_vec()).unwrap();
        }
    }

    let mut server = ScramServer::new(door.verifier, binding);
    let mut list = Vec::new();
    for m in server.mechanisms() {
        list.extend_from_slice(m.as_bytes());
        list.push(0);
    }
    list.push(0);
    stream.write_all(&auth_frame(10, &list)).await.unwrap();

    let mut mechanism = String::new();
    let result: Result<(), AuthError> = async {
        // A client may hang up here (libpq does when it requires binding we do not offer).
        let (tag, body) = read_typed(&mut stream).await?;
        assert_eq!(tag, b'p');
        let nul = body.iter().position(|&b| b == 0).unwrap();
        mechanism = String::from_utf8(body[..nul].to_vec()).unwrap();
        let first = server.client_first(&mechanism, &body[nul + 5..])?;
        stream.write_all(&auth_frame(11, &first)).await?;
        let (tag, body) = read_typed(&mut stream).await?;
        assert_eq!(tag, b'p');
        let last = server.client_final(&body)?;
        stream.write_all(&auth_frame(12, &last)).await?;
        Ok(())
    }
    .await;
    match &result {
        Ok(()) => {
            let mut out = auth_frame(0, &[]);
            for (k, v) in [("server_version", "15.0"), ("client_encoding", "UTF8")] {
                let body = [k.as_bytes(), b"\0", v.as_bytes(), b"\0"].concat();
                out.push(b'S');
                out.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
                out.extend_from_slice(&body);
            }
            out.extend_from_slice(b"Z\0\0\0\x05I");
            stream.write_all(&out).await.unwrap();
        }
        Err(e) => {
            let _ = stream.write_all(&e.to_pg_error(&user).to_frame()).await;
        }
    }
    let _ = stream.flush().await;
    // Wait for Terminate or the client closing.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    (mechanism, result)
}

/// Run psql once against a fresh front door; returns psql's success, its stderr, and what
/// the server saw.
async fn psql_login(
    door: FrontDoor,
    conninfo: &str,
    password: &str,
) -> (bool, String, String, Result<(), AuthError>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        serve(tcp, door).await
    });
    let out = tokio::process::Command::new(format!("{PG_BIN}/psql"))
        .arg(format!(
            "host=127.0.0.1 port={port} user=svc dbname=svc connect_timeout=10 {conninfo}"
        ))
        .args(["-X", "-w", "-c", "\\q"])
        .env("PGPASSWORD", password)
        .env("PGGSSENCMODE", "disable")
        .env_remove("PGSERVICE")
        .output()
        .await
        .unwrap();
    let (mechanism, result) = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("server side finished")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        mechanism,
        result,
    )
}

async fn libpq_scenarios() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls_config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap(),
    );
    let cert_binding = tls_server_end_point(cert.der()).unwrap();
    let verifier = ScramVerifier::from_password("svc pass", 4096);
    let plain_door = FrontDoor {
        verifier: verifier.clone(),
        tls: None,
    };
    let tls_door = FrontDoor {
        verifier: verifier.clone(),
        tls: Some((tls_config.clone(), Some(cert_binding))),
    };

    // Plain SCRAM.
    let (ok, stderr, mech, result) =
        psql_login(plain_door.clone(), "sslmode=disable", "svc pass").await;
    assert!(ok && result.is_ok(), "{stderr} {result:?}");
    assert_eq!(mech, "SCRAM-SHA-256");

    // Wrong password: libpq shows our 28P01 message.
    let (ok, wrong_stderr, _, result) =
        psql_login(plain_door.clone(), "sslmode=disable", "svc pasS").await;
    assert!(!ok);
    assert!(
        matches!(result, Err(AuthError::AuthenticationFailed)),
        "{result:?}"
    );
    assert!(
        wrong_stderr.contains("password authentication failed for user \"svc\""),
        "{wrong_stderr}"
    );

    // An unknown service (mock verifier) fails exactly like a wrong password.
    let ghost = FrontDoor {
        verifier: dummy_verifier("svc", &[42; 32]),
        tls: None,
    };
    let (ok, ghost_stderr, _, result) = psql_login(ghost, "sslmode=disable", "svc pass").await;
    assert!(!ok);
    assert!(
        matches!(result, Err(AuthError::AuthenticationFailed)),
        "{result:?}"
    );
    assert_eq!(
        ghost_stderr.replace(char::is_numeric, ""),
        wrong_stderr.replace(char::is_numeric, ""),
        "port numbers aside, the messages are identical"
    );

    // libpq's SASLprep agrees with ours: "Ⅸ" and "IX" are the same password.
    let unicode = FrontDoor {
        verifier: ScramVerifier::from_password("pässwörd Ⅸ", 4096),
        tls: None,
    };
    for pw in ["pässwörd Ⅸ", "pässwörd IX"] {
        let (ok, stderr, _, result) = psql_login(unicode.clone(), "sslmode=disable", pw).await;
        assert!(ok && result.is_ok(), "{pw}: {stderr} {result:?}");
    }

    // SCRAM-SHA-256-PLUS over TLS with libpq's channel_binding=require (P-384 certificate:
    // libpq hashes it with SHA-384 and so must we).
    let (ok, stderr, mech, result) = psql_login(
        tls_door.clone(),
        "sslmode=require channel_binding=require",
        "svc pass",
    )
    .await;
    assert!(ok && result.is_ok(), "{stderr} {result:?}");
    assert_eq!(mech, "SCRAM-SHA-256-PLUS");
    // channel_binding=disable: libpq sends 'n' under plain SCRAM, accepted.
    let (ok, stderr, mech, result) = psql_login(
        tls_door.clone(),
        "sslmode=require channel_binding=disable",
        "svc pass",
    )
    .await;
    assert!(ok && result.is_ok(), "{stderr} {result:?}");
    assert_eq!(mech, "SCRAM-SHA-256");
    // TLS without binding data on our side: -PLUS is not offered, libpq says 'y', accepted;
    // and a client that requires binding refuses to continue.
    let no_binding = FrontDoor {
        verifier,
        tls: Some((tls_config, None)),
    };
    let (ok, stderr, mech, result) = psql_login(
        no_binding.clone(),
        "sslmode=require channel_binding=prefer",
        "svc pass",
    )
    .await;
    assert!(ok && result.is_ok(), "{stderr} {result:?}");
    assert_eq!(mech, "SCRAM-SHA-256");
    let (ok, stderr, _, result) = psql_login(
        no_binding,
        "sslmode=require channel_binding=require",
        "svc pass",
    )
    .await;
    assert!(!ok && result.is_err(), "{stderr} {result:?}");
    assert!(stderr.contains("channel binding"), "{stderr}");
}

#[test]
fn scram_server_against_libpq() {
    if !Path::new(PG_BIN).join("psql").exists() {
        eprintln!("SKIPPED: psql ({PG_BIN}/psql) not found");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(180), libpq_scenarios())
            .await
            .expect("scenarios timed out");
    });
}

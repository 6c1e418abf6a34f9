//! `authenticate_upstream` against a real PostgreSQL 15: trust, password, MD5, SCRAM-SHA-256
//! and SCRAM-SHA-256-PLUS over TLS (with a P-384 certificate, so the channel-binding hash
//! must be SHA-384 to pass), plus the refusals (wrong password, pg_hba reject, GSSAPI).
//!
//! The test starts its own throwaway cluster in a temporary directory on a free port and
//! stops it at the end. Without the Postgres binaries it is skipped with a message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pgpurpose::auth::{
    authenticate_upstream, tls_server_end_point, AuthError, UpstreamChannelBinding,
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

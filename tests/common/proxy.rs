//! Proxy configuration files (format: the `pgpurpose run --config` YAML) and the proxy binary
//! run as a child process with its output captured to files.

use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use pgpurpose::localpg::{free_port, LocalCluster};

use super::cluster::APP_DB;

/// How long the proxy may take to start accepting connections (it loads the catalog first).
const PROXY_START_TIMEOUT: Duration = Duration::from_secs(30);

/// TLS material for the proxy's client side.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub required: bool,
}

/// What goes into a proxy configuration file; [`ProxyConfig::new`] fills in the usual values.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Port on 127.0.0.1 the proxy listens on.
    pub listen_port: u16,
    /// Directory of policy files (absolute).
    pub policies: PathBuf,
    pub upstream_host: String,
    pub upstream_port: u16,
    /// `None`: the database the client asks for.
    pub upstream_database: Option<String>,
    /// disable | prefer | require | verify-full
    pub upstream_tls: String,
    pub upstream_ca_file: Option<PathBuf>,
    pub client_tls: Option<ClientTls>,
    pub catalog_user: String,
    pub catalog_database: String,
    /// Raw YAML appended at the top level (e.g. a `limits:` block, or keys added later).
    pub extra_yaml: String,
}

impl ProxyConfig {
    /// Listen on a free port, the repository's `policies/`, upstream = `pg`, catalog from `app`.
    pub fn new(pg: &LocalCluster) -> ProxyConfig {
        ProxyConfig {
            listen_port: free_port().expect("free port"),
            policies: super::repo_root().join("policies"),
            upstream_host: pg.host().to_string(),
            upstream_port: pg.port(),
            upstream_database: None,
            upstream_tls: "disable".into(),
            upstream_ca_file: None,
            client_tls: None,
            catalog_user: pgpurpose::localpg::SUPERUSER.into(),
            catalog_database: APP_DB.into(),
            extra_yaml: String::new(),
        }
    }

    /// The YAML text of this configuration.
    pub fn to_yaml(&self) -> String {
        let mut y = String::new();
        let _ = writeln!(
            y,
            "listen: {}",
            q(&format!("127.0.0.1:{}", self.listen_port))
        );
        let _ = writeln!(y, "policies: {}", q_path(&self.policies));
        let _ = writeln!(y, "upstream:");
        let _ = writeln!(y, "  host: {}", q(&self.upstream_host));
        let _ = writeln!(y, "  port: {}", self.upstream_port);
        let db = self.upstream_database.as_deref().map_or("null".into(), q);
        let _ = writeln!(y, "  database: {db}");
        let _ = writeln!(y, "  tls: {}", self.upstream_tls);
        if let Some(ca) = &self.upstream_ca_file {
            let _ = writeln!(y, "  ca_file: {}", q_path(ca));
        }
        if let Some(tls) = &self.client_tls {
            let _ = writeln!(y, "client_tls:");
            let _ = writeln!(y, "  cert_file: {}", q_path(&tls.cert_file));
            let _ = writeln!(y, "  key_file: {}", q_path(&tls.key_file));
            let _ = writeln!(y, "  required: {}", tls.required);
        }
        let _ = writeln!(y, "catalog:");
        let _ = writeln!(y, "  user: {}", q(&self.catalog_user));
        let _ = writeln!(y, "  database: {}", q(&self.catalog_database));
        y.push_str(&self.extra_yaml);
        if !y.ends_with('\n') {
            y.push('\n');
        }
        y
    }
}

/// A configuration file written to its own temporary directory (removed on drop).
#[derive(Debug)]
pub struct WrittenConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub listen_port: u16,
}

/// Writes `cfg` as `pgpurpose.yaml` in a new temporary directory.
pub fn write_config(cfg: &ProxyConfig) -> WrittenConfig {
    let dir = tempfile::Builder::new()
        .prefix("pgpurpose-proxy-")
        .tempdir()
        .expect("temp dir for the proxy config");
    let path = dir.path().join("pgpurpose.yaml");
    std::fs::write(&path, cfg.to_yaml()).expect("writing the proxy config");
    WrittenConfig {
        dir,
        path,
        listen_port: cfg.listen_port,
    }
}

/// Writes a self-signed certificate for `localhost` and 127.0.0.1 into `dir`; returns
/// (cert, key) paths.
pub fn write_self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generating a certificate");
    let cert = dir.join("proxy.crt");
    let key = dir.join("proxy.key");
    std::fs::write(&cert, ck.cert.pem()).expect("writing cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("writing key");
    (cert, key)
}

/// The proxy binary running as a child; killed on drop.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    port: u16,
    stdout: PathBuf,
    stderr: PathBuf,
    /// Holds the captured output files.
    _logs: tempfile::TempDir,
}

/// Runs `pgpurpose run --config <config>` and waits until its listen port accepts; panics
/// with the proxy's output if it does not.
pub fn spawn_proxy(config: &Path) -> ProxyProcess {
    try_spawn_proxy(config, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`spawn_proxy`] with extra environment variables; the error carries the output.
pub fn try_spawn_proxy(config: &Path, env: &[(&str, &str)]) -> Result<ProxyProcess, String> {
    let port = listen_port_of(config)?;
    let logs = tempfile::Builder::new()
        .prefix("pgpurpose-proxy-logs-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let stdout = logs.path().join("stdout.log");
    let stderr = logs.path().join("stderr.log");
    let out = std::fs::File::create(&stdout).map_err(|e| e.to_string())?;
    let err = std::fs::File::create(&stderr).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgpurpose"));
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("could not start the proxy binary: {e}"))?;
    let mut proxy = ProxyProcess {
        child,
        port,
        stdout,
        stderr,
        _logs: logs,
    };
    let deadline = Instant::now() + PROXY_START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = proxy.child.try_wait() {
            return Err(format!(
                "the proxy exited during startup ({status})\n{}",
                proxy.output()
            ));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(proxy);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the proxy did not accept connections on port {port} within {}s\n{}",
                PROXY_START_TIMEOUT.as_secs(),
                proxy.output()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `listen: "127.0.0.1:PORT"` back from a config written by [`write_config`] (or by hand).
fn listen_port_of(config: &Path) -> Result<u16, String> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("reading {}: {e}", config.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("listen:"))
        .and_then(|v| v.trim().trim_matches('"').rsplit(':').next()?.parse().ok())
        .ok_or_else(|| format!("no `listen: host:port` line in {}", config.display()))
}

impl ProxyProcess {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the proxy wrote so far (stdout then stderr), for assertion messages.
    pub fn output(&self) -> String {
        format!(
            "--- proxy stdout ---\n{}\n--- proxy stderr ---\n{}",
            self.stdout_text(),
            self.stderr_text()
        )
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `HUP`, `INT`) to the proxy.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the proxy to exit on its own, up to `timeout`; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string to json")
}

fn q_path(p: &Path) -> String {
    q(&p.display().to_string())
}

/// A copy of the repository's policies in which `analytics-service` also holds the `ddl` and
/// `procedural_code` grants and may read `pg_prepared_statements`. The relay's own tests use it
/// so that they exercise the relay (temporary tables, functions raising notices, prepared
/// statement bookkeeping) rather than the policy, which has its own tests.
pub fn relay_test_policies() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("pgpurpose-relay-policies-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("policy dir");
        for entry in std::fs::read_dir(super::repo_root().join("policies")).expect("policies/") {
            let path = entry.expect("policy file").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let mut text = std::fs::read_to_string(&path).expect("read policy");
                if path.file_name().is_some_and(|n| n == "services.yaml") {
                    text = text.replace(
                        "grants: [copy_from]",
                        "grants: [copy_from, ddl, procedural_code]",
                    );
                    assert!(
                        text.contains("procedural_code"),
                        "services.yaml changed shape"
                    );
                }
                std::fs::write(dir.join(path.file_name().expect("name")), text)
                    .expect("write policy");
            }
        }
        std::fs::write(
            dir.join("zz-relay-tests.yaml"),
            "tables:\n  pg_catalog.pg_prepared_statements:\n    tags: [analytics]\n",
        )
        .expect("write relay test policy");
        dir
    })
    .clone()
}

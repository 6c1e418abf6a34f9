//! Throwaway local PostgreSQL clusters, for the integration tests and `pgpurpose quickstart`.
//!
//! This module owns everything about running a private Postgres server on this machine: finding
//! the server binaries, `initdb` into a temporary directory, choosing a free port on 127.0.0.1,
//! dropping to the `postgres` OS user when we run as root (the server refuses to run as root and
//! `sudo` is not installed on our machines, so `runuser` is used), waiting until the server
//! answers queries, and tearing it all down again on [`Drop`].
//!
//! The cluster trusts every local connection (Unix socket and 127.0.0.1) by default; callers
//! can put their own `pg_hba.conf` lines in front of that (e.g. `scram-sha-256` for a role).
//! Durability is switched off (`fsync`, `synchronous_commit`, `full_page_writes`) because the
//! data is thrown away anyway and tests should be fast.
//!
//! Client-side work runs as the current user, as the database superuser `postgres`: readiness
//! is checked over TCP, SQL (`psql`) goes through the Unix socket.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The host every cluster listens on (TCP); only loopback, so `trust` is safe enough.
pub const LOCAL_HOST: &str = "127.0.0.1";

/// The database superuser `initdb` creates (`-U postgres`).
pub const SUPERUSER: &str = "postgres";

/// The OS user the server runs as when we are root.
const SERVER_OS_USER: &str = "postgres";

/// How long a start (or restart) may take before we give up and show the server log.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a start is retried on a fresh port when the chosen one was taken meanwhile
/// (a free port is only free until someone else binds it).
const PORT_ATTEMPTS: usize = 3;

/// Lines of the server log shown in errors.
const LOG_TAIL_LINES: usize = 40;

/// Environment variable that overrides binary discovery with an explicit bin directory.
pub const BINDIR_ENV: &str = "PGPURPOSE_PG_BINDIR";

/// Environment variables of libpq that would change what our `psql` calls do.
const LIBPQ_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGTARGETSESSIONATTRS",
];

/// Everything that can go wrong while running a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    /// No directory with `initdb`, `pg_ctl` and `postgres` was found.
    #[error(
        "no PostgreSQL server binaries found (tried ${BINDIR_ENV}, `pg_config --bindir` and \
         /usr/lib/postgresql/*/bin); install the server, e.g. `apt-get install postgresql`"
    )]
    BinariesNotFound,
    /// A program could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not be started.
        source: io::Error,
    },
    /// A program ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr (and stdout, if stderr was empty).
        stderr: String,
    },
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// We are root and need the `postgres` OS user, but it does not exist.
    #[error("running as root needs the `{SERVER_OS_USER}` OS user to run the server: {0}")]
    NoServerUser(String),
    /// The server was started but did not answer within the timeout, or died.
    #[error(
        "PostgreSQL did not become ready within {seconds}s ({reason}); server log {log}:\n{tail}"
    )]
    NotReady {
        /// The timeout.
        seconds: u64,
        /// The last thing that failed.
        reason: String,
        /// Path of the server log file.
        log: String,
        /// The last lines of the server log.
        tail: String,
    },
}

/// How to set up a cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Extra `pg_hba.conf` lines placed before the default trust lines (first match wins).
    pub hba: Vec<String>,
    /// Extra `postgresql.conf` settings (name, value), applied after ours so they win.
    pub settings: Vec<(String, String)>,
    /// Enable TLS with a server certificate for `localhost`/127.0.0.1 signed by a freshly
    /// generated test CA ([`LocalCluster::ssl_ca_file`]).
    pub ssl: bool,
}

/// A running (or stopped) throwaway cluster. Dropping it stops the server and deletes the data.
#[derive(Debug)]
pub struct LocalCluster {
    /// Owns the directory holding data, sockets, log and certificates; removed on drop.
    /// Declared so that it is dropped after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
    /// Directory of the server binaries (`initdb`, `pg_ctl`, `postgres`, `psql`, ...).
    bindir: PathBuf,
    /// `PGDATA`.
    data_dir: PathBuf,
    /// Where the server puts its Unix socket (inside `dir`, so paths stay short and private).
    socket_dir: PathBuf,
    /// The server log (`pg_ctl -l`).
    log_file: PathBuf,
    /// The server certificate, when TLS is on.
    ssl_cert: Option<PathBuf>,
    /// The CA that signed it (what clients verify against), when TLS is on.
    ssl_ca: Option<PathBuf>,
    /// TCP port on 127.0.0.1; kept across `stop` / `start_again`.
    port: u16,
    /// Whether we believe the server is running (so `Drop` knows whether to stop it).
    running: bool,
}

/// How the harness's own client programs reach the server.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// 127.0.0.1: proves the TCP listener is up.
    Tcp,
    /// The Unix socket: the superuser's `local` trust line, so caller `host` lines that demand
    /// passwords on 127.0.0.1 never lock the harness out.
    Socket,
}

/// Counter for unique script file names within a process.
static SCRIPT_SEQ: AtomicU64 = AtomicU64::new(0);

impl LocalCluster {
    /// Creates a cluster in a new temporary directory and starts it on a free port.
    pub fn start(opts: ClusterOptions) -> Result<LocalCluster, LocalPgError> {
        let bindir = find_bindir()?;
        let dir = tempfile::Builder::new()
            .prefix("pgpurpose-pg-")
            .tempdir()
            .map_err(|e| io_err("creating a temporary directory", e))?;
        let root = dir.path().to_path_buf();
        let server_user = server_os_user()?;
        if let Some(ids) = &server_user {
            // The server user must own the directory: initdb creates the data dir in it and
            // the server writes its socket and log there.
            std::os::unix::fs::chown(&root, Some(ids.uid), Some(ids.gid))
                .map_err(|e| io_err(format!("chown {} to postgres", root.display()), e))?;
        }
        let mut cluster = LocalCluster {
            data_dir: root.join("data"),
            socket_dir: root.clone(),
            log_file: root.join("server.log"),
            ssl_cert: None,
            ssl_ca: None,
            bindir,
            dir,
            port: 0,
            running: false,
        };
        cluster.initdb()?;
        cluster.write_hba(&opts.hba)?;
        if opts.ssl {
            cluster.make_certificate()?;
        }
        cluster.write_conf(&opts.settings)?;

        let mut attempt = 1;
        loop {
            cluster.port = free_port().map_err(|e| io_err("finding a free port", e))?;
            match cluster.start_again() {
                Ok(()) => return Ok(cluster),
                Err(e) if attempt < PORT_ATTEMPTS && cluster.port_was_taken() => {
                    // Start the next attempt with a clean log so the check stays honest.
                    let _ = std::fs::write(&cluster.log_file, b"");
                    attempt += 1;
                    eprintln!("localpg: port {} was taken ({e}); retrying", cluster.port);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the last start failed because another process bound our port first.
    fn port_was_taken(&self) -> bool {
        std::fs::read_to_string(&self.log_file)
            .map(|log| log.contains("could not bind") || log.contains("already in use"))
            .unwrap_or(false)
    }

    /// The TCP host (always 127.0.0.1).
    pub fn host(&self) -> &str {
        LOCAL_HOST
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server and client binaries in use.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// `PGDATA` of this cluster.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The server's certificate (for `localhost` and 127.0.0.1), when started with `ssl`.
    pub fn ssl_cert_file(&self) -> Option<&Path> {
        self.ssl_cert.as_deref()
    }

    /// The CA certificate that signed the server's certificate: give it to clients as their
    /// root (`sslrootcert`, the proxy's `upstream.ca_file`), when started with `ssl`.
    pub fn ssl_ca_file(&self) -> Option<&Path> {
        self.ssl_ca.as_deref()
    }

    /// Path of a binary in [`LocalCluster::bindir`] (e.g. `psql`, `pgbench`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }

    /// Runs SQL as the superuser (through the Unix socket) with `ON_ERROR_STOP`; returns
    /// `psql -At` output (rows with `|` between columns, one per line).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, LocalPgError> {
        // Through a file rather than `-c`, so several statements behave like a script (each its
        // own statement, COPY FROM stdin data and psql meta-commands work).
        let seq = SCRIPT_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("script-{seq}.sql"));
        std::fs::write(&path, sql).map_err(|e| io_err(format!("writing {}", path.display()), e))?;
        let result = self.psql_file(db, &path);
        let _ = std::fs::remove_file(&path);
        result
    }

    /// Runs a SQL file as the superuser with `ON_ERROR_STOP`.
    pub fn run_sql_file(&self, db: &str, path: &Path) -> Result<(), LocalPgError> {
        self.psql_file(db, path).map(|_| ())
    }

    /// Creates a database owned by the superuser.
    pub fn create_database(&self, name: &str) -> Result<(), LocalPgError> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        )
        .map(|_| ())
    }

    /// Loads the example schema, roles and seed data from the crate's `examples/` directory
    /// into `db` (schema first; roles and seed are skipped when their files are absent).
    pub fn load_example(&self, db: &str) -> Result<(), LocalPgError> {
        self.load_example_from(db, &examples_dir())
    }

    /// Like [`LocalCluster::load_example`], from another directory.
    pub fn load_example_from(&self, db: &str, dir: &Path) -> Result<(), LocalPgError> {
        for (name, required) in [
            ("schema.sql", true),
            ("roles.sql", false),
            ("seed.sql", false),
        ] {
            let path = dir.join(name);
            if !required && !path.exists() {
                continue;
            }
            self.run_sql_file(db, &path)?;
        }
        Ok(())
    }

    /// Stops the server (fast shutdown), keeping the data and the port.
    pub fn stop(&mut self) -> Result<(), LocalPgError> {
        let data = self.data_dir.display().to_string();
        let mut cmd = self.server_command("pg_ctl");
        cmd.args(["stop", "-D", &data, "-m", "fast", "-w", "-t", "30"]);
        run(cmd)?;
        self.running = false;
        Ok(())
    }

    /// (Re)starts the server on the same port and waits until it answers `select 1`.
    pub fn start_again(&mut self) -> Result<(), LocalPgError> {
        let data = self.data_dir.display().to_string();
        let log = self.log_file.display().to_string();
        let port_opt = format!("-p {}", self.port);
        let timeout = READY_TIMEOUT.as_secs().to_string();
        let mut cmd = self.server_command("pg_ctl");
        cmd.args([
            "start", "-D", &data, "-l", &log, "-o", &port_opt, "-w", "-t", &timeout,
        ]);
        let started = Instant::now();
        if let Err(e) = run(cmd) {
            // pg_ctl may have left a postmaster behind on timeout; make sure Drop stops it.
            self.running = self.data_dir.join("postmaster.pid").exists();
            return Err(self.not_ready(e.to_string()));
        }
        self.running = true;
        self.wait_ready(started + READY_TIMEOUT)
    }

    /// Polls until `select 1` succeeds over TCP, or the deadline passes.
    fn wait_ready(&self, deadline: Instant) -> Result<(), LocalPgError> {
        loop {
            let mut ready = self.client_command("pg_isready", Via::Tcp);
            ready.args(["-t", "2"]);
            let reason = match run(ready) {
                Ok(_) => match self.psql("postgres", "select 1") {
                    Ok(out) if out.trim() == "1" => return Ok(()),
                    Ok(out) => format!("`select 1` returned {out:?}"),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(self.not_ready(reason));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Builds the "not ready" error (with the log tail) and prints the tail to stderr, so a
    /// failing test shows why even when the error is only logged.
    fn not_ready(&self, reason: String) -> LocalPgError {
        let tail = log_tail(&self.log_file, LOG_TAIL_LINES);
        eprintln!(
            "localpg: server log tail ({}):\n{tail}",
            self.log_file.display()
        );
        LocalPgError::NotReady {
            seconds: READY_TIMEOUT.as_secs(),
            reason,
            log: self.log_file.display().to_string(),
            tail,
        }
    }

    fn initdb(&self) -> Result<(), LocalPgError> {
        let data = self.data_dir.display().to_string();
        let mut cmd = self.server_command("initdb");
        cmd.args([
            "-D",
            &data,
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]);
        run(cmd).map(|_| ())
    }

    fn write_hba(&self, extra: &[String]) -> Result<(), LocalPgError> {
        let mut hba = String::from("# written by pgpurpose::localpg; caller lines first\n");
        for line in extra {
            hba.push_str(line);
            hba.push('\n');
        }
        hba.push_str(
            "local all all trust\n\
             host all all 127.0.0.1/32 trust\n\
             local replication all trust\n\
             host replication all 127.0.0.1/32 trust\n",
        );
        self.write_server_file(&self.data_dir.join("pg_hba.conf"), &hba)
    }

    fn write_conf(&self, settings: &[(String, String)]) -> Result<(), LocalPgError> {
        let path = self.data_dir.join("postgresql.conf");
        let mut conf = std::fs::read_to_string(&path)
            .map_err(|e| io_err(format!("reading {}", path.display()), e))?;
        let socket = self.socket_dir.display().to_string();
        let mut ours: Vec<(&str, String)> = vec![
            ("listen_addresses", LOCAL_HOST.to_string()),
            ("unix_socket_directories", socket),
            ("fsync", "off".into()),
            ("synchronous_commit", "off".into()),
            ("full_page_writes", "off".into()),
            ("max_connections", "200".into()),
            ("logging_collector", "off".into()),
        ];
        if let Some(cert) = &self.ssl_cert {
            ours.push(("ssl", "on".into()));
            ours.push(("ssl_cert_file", cert.display().to_string()));
            let key = self.data_dir.join("server.key");
            ours.push(("ssl_key_file", key.display().to_string()));
        }
        conf.push_str("\n# added by pgpurpose::localpg (later lines win)\n");
        let extra = settings.iter().map(|(k, v)| (k.as_str(), v.clone()));
        for (name, value) in ours.into_iter().chain(extra) {
            let _ = writeln!(conf, "{name} = '{}'", value.replace('\'', "''"));
        }
        self.write_server_file(&path, &conf)
    }

    /// Generates a test CA and a server certificate it signs (for `localhost` and 127.0.0.1)
    /// with the `openssl` CLI, run as the server user so the server key has the owner and mode
    /// (0600) the server insists on.
    ///
    /// A CA plus an end-entity certificate rather than one self-signed certificate, because
    /// strict verifiers (rustls/webpki) reject a CA certificate presented as the server's own
    /// (`CaUsedAsEndEntity`), which is what `openssl req -x509` produces.
    ///
    /// The `openssl` CLI rather than `rcgen` in the library: it is present wherever the
    /// Debian/Ubuntu server packages are (they depend on `ssl-cert` → `openssl`), and TLS on the
    /// *upstream* test cluster is a test-only need, so it should not add to the proxy's
    /// dependency tree.
    fn make_certificate(&mut self) -> Result<(), LocalPgError> {
        let root = self.dir.path();
        let s = |p: &Path| p.display().to_string();
        let (ca_crt, ca_key) = (root.join("ca.crt"), root.join("ca.key"));
        let (csr, ext) = (root.join("server.csr"), root.join("server.ext"));
        let cert = self.data_dir.join("server.crt");
        let key = self.data_dir.join("server.key");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];

        let mut ca = self.as_server_user(Path::new("openssl"));
        ca.args(["req", "-x509"]).args(ec);
        ca.args(["-days", "2", "-subj", "/CN=pgpurpose localpg test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .args(["-keyout", &s(&ca_key), "-out", &s(&ca_crt)]);
        run(ca)?;

        let mut req = self.as_server_user(Path::new("openssl"));
        req.arg("req").args(ec).args(["-subj", "/CN=localhost"]);
        req.args(["-keyout", &s(&key), "-out", &s(&csr)]);
        run(req)?;

        self.write_server_file(
            &ext,
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )?;
        let mut sign = self.as_server_user(Path::new("openssl"));
        sign.args(["x509", "-req", "-in", &s(&csr), "-CA", &s(&ca_crt)])
            .args(["-CAkey", &s(&ca_key), "-set_serial", "1", "-days", "2"])
            .args(["-extfile", &s(&ext), "-out", &s(&cert)]);
        run(sign)?;

        let mut chmod = self.as_server_user(Path::new("chmod"));
        chmod.args(["0600", &s(&key)]);
        run(chmod)?;
        self.ssl_cert = Some(cert);
        self.ssl_ca = Some(ca_crt);
        Ok(())
    }

    /// Writes a file in the data directory and gives it to the server user when we are root.
    fn write_server_file(&self, path: &Path, text: &str) -> Result<(), LocalPgError> {
        std::fs::write(path, text).map_err(|e| io_err(format!("writing {}", path.display()), e))?;
        if let Some(ids) = server_os_user()? {
            std::os::unix::fs::chown(path, Some(ids.uid), Some(ids.gid))
                .map_err(|e| io_err(format!("chown {}", path.display()), e))?;
        }
        Ok(())
    }

    fn psql_file(&self, db: &str, path: &Path) -> Result<String, LocalPgError> {
        let mut cmd = self.client_command("psql", Via::Socket);
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-f",
        ]);
        cmd.arg(path);
        let out = run(cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A server-side program (`initdb`, `pg_ctl`), run as the server user when we are root.
    fn server_command(&self, name: &str) -> Command {
        self.as_server_user(&self.bindir.join(name))
    }

    fn as_server_user(&self, program: &Path) -> Command {
        let mut cmd = match server_os_user() {
            Ok(Some(_)) => {
                let mut c = Command::new("runuser");
                c.args(["-u", SERVER_OS_USER, "--"]).arg(program);
                c
            }
            _ => Command::new(program),
        };
        // The server user may not be able to enter our working directory (e.g. /root/...).
        cmd.current_dir(self.dir.path());
        cmd.env_remove("PGDATA");
        cmd
    }

    /// A client program (`psql`, `pg_isready`) connecting as the superuser, over TCP or
    /// through the Unix socket.
    fn client_command(&self, name: &str, via: Via) -> Command {
        let mut cmd = Command::new(self.bindir.join(name));
        for var in LIBPQ_ENV {
            cmd.env_remove(var);
        }
        cmd.env("PGCONNECT_TIMEOUT", "10");
        let host = match via {
            Via::Tcp => LOCAL_HOST.to_string(),
            Via::Socket => self.socket_dir.display().to_string(),
        };
        cmd.args(["-h", &host, "-p", &self.port.to_string(), "-U", SUPERUSER]);
        cmd
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.running || self.data_dir.join("postmaster.pid").exists() {
            let data = self.data_dir.display().to_string();
            let mut cmd = self.server_command("pg_ctl");
            cmd.args(["stop", "-D", &data, "-m", "immediate", "-w", "-t", "10"]);
            if let Err(e) = run(cmd) {
                eprintln!("localpg: stopping the cluster in {data} failed: {e}");
            }
            self.running = false;
        }
        // The TempDir field removes the directory after this (errors ignored there).
    }
}

/// Finds a free TCP port on 127.0.0.1 (bind to port 0, read it, release it).
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// The crate's `examples/` directory (schema.sql, roles.sql, seed.sql).
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Finds the directory of the server binaries: `$PGPURPOSE_PG_BINDIR`, then
/// `pg_config --bindir` (if it really holds the server: Debian's /usr/bin/pg_config may point at
/// a client-only directory), then the highest version under /usr/lib/postgresql/*/bin.
pub fn find_bindir() -> Result<PathBuf, LocalPgError> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let from_env = std::env::var_os(BINDIR_ENV).map(PathBuf::from);
            let from_pg_config = Command::new("pg_config")
                .arg("--bindir")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
            from_env
                .into_iter()
                .chain(from_pg_config)
                .chain(debian_bindirs())
                .find(|dir| has_server(dir))
        })
        .clone()
        .ok_or(LocalPgError::BinariesNotFound)
}

fn has_server(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

/// /usr/lib/postgresql/<version>/bin, highest version first.
fn debian_bindirs() -> Vec<PathBuf> {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            key.map(|k| (k, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, p)| p).collect()
}

/// Uid and gid of the server OS user.
#[derive(Debug, Clone, Copy)]
struct OsIds {
    uid: u32,
    gid: u32,
}

/// `Some(ids of postgres)` when we run as root and must drop privileges, `None` otherwise.
fn server_os_user() -> Result<Option<OsIds>, LocalPgError> {
    static IDS: OnceLock<Result<Option<OsIds>, String>> = OnceLock::new();
    IDS.get_or_init(|| {
        // `id` rather than libc calls: keeps this module free of `unsafe`.
        let euid = id_output(&["-u"])?;
        if euid != 0 {
            return Ok(None);
        }
        let uid = id_output(&["-u", SERVER_OS_USER])?;
        let gid = id_output(&["-g", SERVER_OS_USER])?;
        Ok(Some(OsIds { uid, gid }))
    })
    .clone()
    .map_err(LocalPgError::NoServerUser)
}

fn id_output(args: &[&str]) -> Result<u32, String> {
    let mut cmd = Command::new("id");
    cmd.args(args);
    let out = run(cmd).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .map_err(|_| format!("`id {}` printed {text:?}", args.join(" ")))
}

/// Runs a command to completion; a non-zero exit is an error carrying its stderr.
fn run(mut cmd: Command) -> Result<Output, LocalPgError> {
    let command = describe(&cmd);
    let out = cmd.output().map_err(|source| LocalPgError::Spawn {
        command: command.clone(),
        source,
    })?;
    if out.status.success() {
        return Ok(out);
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if stderr.is_empty() {
        stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Err(LocalPgError::CommandFailed {
        command,
        status: out.status.to_string(),
        stderr,
    })
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(could not read the log: {e})"),
    }
}

fn io_err(context: impl Into<String>, source: io::Error) -> LocalPgError {
    LocalPgError::Io {
        context: context.into(),
        source,
    }
}

/// Quotes an SQL identifier (double quotes, inner quotes doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_ident_doubles_quotes() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[test]
    fn log_tail_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        assert_eq!(log_tail(&path, 2), "c\nd");
        assert_eq!(log_tail(&path, 10), "a\nb\nc\nd");
    }

    #[test]
    fn failed_command_names_command_and_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 3"]);
        let err = run(cmd).unwrap_err().to_string();
        assert!(err.contains("sh -c"), "{err}");
        assert!(err.contains("boom"), "{err}");
    }
}

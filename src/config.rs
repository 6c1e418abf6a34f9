//! The proxy's runtime configuration (`pgpurpose run --config FILE`): where to listen, where
//! the upstream database is, TLS, limits and the policy directory. Policies themselves (purposes,
//! services, tags) live in the policy files, not here.
//!
//! Every field has a documented default; unknown keys are rejected so a typo cannot silently
//! leave a limit at its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::policy::SecretSource;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: invalid value for {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

/// Upstream TLS mode, with libpq `sslmode` meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTls {
    /// Never use TLS to the upstream.
    #[default]
    Disable,
    /// Use TLS if the server offers it; do not verify the certificate.
    Prefer,
    /// Require TLS; do not verify the certificate.
    Require,
    /// Require TLS and verify the certificate chain and host name against `ca_file`
    /// (or the bundled web PKI roots when no file is given).
    VerifyFull,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Host name or IP address of the upstream Postgres. Default `127.0.0.1`.
    #[serde(default = "default_upstream_host")]
    pub host: String,
    /// Default 5432.
    #[serde(default = "default_upstream_port")]
    pub port: u16,
    /// Database to connect to; `None` (default) uses the database the client asked for.
    #[serde(default)]
    pub database: Option<String>,
    /// Default `disable`.
    #[serde(default)]
    pub tls: UpstreamTls,
    /// CA certificates (PEM) for `verify-full`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Time allowed to connect and authenticate upstream. Default 10000 ms.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            host: default_upstream_host(),
            port: default_upstream_port(),
            database: None,
            tls: UpstreamTls::default(),
            ca_file: None,
            connect_timeout_ms: default_connect_timeout_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM certificate chain presented to clients.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// Refuse clients that do not negotiate TLS (FATAL 28000). Default false.
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Role the proxy uses to read the catalog snapshot. Default `postgres`.
    #[serde(default = "default_catalog_user")]
    pub user: String,
    /// Its password, if the server asks for one: `{env: VAR}` or `{file: PATH}`.
    #[serde(default)]
    pub password: Option<KeyRef>,
    /// Database whose catalog is read. Default `postgres`.
    #[serde(default = "default_catalog_database")]
    pub database: String,
    /// Seconds between catalog refreshes. Default 60.
    #[serde(default = "default_refresh_seconds")]
    pub refresh_seconds: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            user: default_catalog_user(),
            password: None,
            database: default_catalog_database(),
            refresh_seconds: default_refresh_seconds(),
        }
    }
}

/// Bounds on resources a client can make the proxy spend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Concurrent client connections; further clients get FATAL 53300. Default 1000.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest frontend message accepted (Query, Parse, CopyData, ...). Default 64 MiB.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Time allowed from TCP accept to the end of authentication. Default 10000 ms.
    #[serde(default = "default_startup_timeout_ms")]
    pub startup_timeout_ms: u64,
    /// Close sessions idle (outside a transaction) this long; 0 disables. Default 0.
    #[serde(default)]
    pub idle_timeout_ms: u64,
    /// On SIGTERM, how long sessions may take to reach an idle point before being closed.
    /// Default 30000 ms.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Failed authentications allowed per client IP address per minute; after that, the
    /// address is refused (FATAL 08004) before authentication until its minute is over.
    /// 0 disables the limit. Default 20.
    #[serde(default = "default_auth_failures_per_minute")]
    pub auth_failures_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            max_message_bytes: default_max_message_bytes(),
            startup_timeout_ms: default_startup_timeout_ms(),
            idle_timeout_ms: 0,
            shutdown_grace_ms: default_shutdown_grace_ms(),
            auth_failures_per_minute: default_auth_failures_per_minute(),
        }
    }
}

impl Limits {
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_millis(self.startup_timeout_ms)
    }
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms))
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// When the audit log is flushed to stable storage (see the README's "Audit log" section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FsyncMode {
    /// A background thread syncs every `fsync_interval_ms` (group commit); a power loss may
    /// lose that much, a crash of the proxy alone loses nothing (records are written first).
    #[default]
    Interval,
    /// Every statement waits until a sync covers its record (several waiters share one sync).
    Always,
    /// Only at rotation and shutdown; the operating system decides otherwise.
    Never,
}

/// What happens to statements while the audit log cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuditFailure {
    /// Block them with SQLSTATE 58030 until the log can be written again (fail closed).
    #[default]
    Block,
    /// Run them unrecorded, logging an error for each (fail open; must be chosen explicitly).
    Allow,
}

/// Where a secret (a key, a password) is: exactly one of `env: VAR` or `file: PATH`. (A plain
/// struct rather than an enum: the YAML library reads an externally tagged enum only from a
/// `!tag`, not from the `{env: VAR}` map a reader expects.)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl KeyRef {
    pub fn source(&self) -> Option<SecretSource> {
        match (&self.env, &self.file) {
            (Some(var), None) => Some(SecretSource::Env(var.clone())),
            (None, Some(path)) => Some(SecretSource::File(path.clone())),
            _ => None,
        }
    }
}

/// The tamper-evident audit log (`audit:`); absent means no audit log (a warning at start).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Directory of the segment files, relative to the configuration file. Required.
    pub dir: PathBuf,
    /// `interval` (default), `always` or `never`.
    #[serde(default)]
    pub fsync: FsyncMode,
    /// Sync period for `fsync: interval`. Default 100 ms.
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    /// Start a new segment file once the current one reaches this size; 0: never by size.
    /// Default 64 MiB.
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
    /// Start a new segment file after this many seconds; 0 (default): never by age.
    #[serde(default)]
    pub rotate_seconds: u64,
    /// Write a keyed checkpoint this often while records are being written; 0: only at
    /// rotation and shutdown. Default 60.
    #[serde(default = "default_checkpoint_seconds")]
    pub checkpoint_seconds: u64,
    /// Key of the checkpoint MACs, `{env: VAR}` or `{file: PATH}` (at least 16 bytes). Required.
    pub checkpoint_key: KeyRef,
    /// `block` (default) or `allow`.
    #[serde(default)]
    pub on_failure: AuditFailure,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address services connect to. Default `127.0.0.1:6432`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory of policy YAML files, relative to the configuration file. Default `policies`.
    #[serde(default = "default_policies")]
    pub policies: PathBuf,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// TLS for clients; absent means SSLRequest is answered 'N'.
    #[serde(default)]
    pub client_tls: Option<ClientTlsConfig>,
    #[serde(default)]
    pub catalog: CatalogConfig,
    #[serde(default)]
    pub limits: Limits,
    /// The audit log; `None` (default) runs without one.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// Prometheus `/metrics` and `/health` endpoint; absent (default): not served.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// Policy hot reload (SIGHUP always reloads).
    #[serde(default)]
    pub reload: crate::reload::ReloadConfig,
}

/// The metrics and health endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP endpoint, e.g. `127.0.0.1:9187`.
    pub listen: SocketAddr,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            policies: default_policies(),
            upstream: UpstreamConfig::default(),
            client_tls: None,
            catalog: CatalogConfig::default(),
            limits: Limits::default(),
            audit: None,
            metrics: None,
            reload: crate::reload::ReloadConfig::default(),
        }
    }
}

impl Config {
    /// Read, parse and validate a configuration file. Relative paths inside it are resolved
    /// against the file's directory so the proxy can be started from anywhere.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Config = serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate(path)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut self.policies);
        if let Some(tls) = &mut self.client_tls {
            abs(&mut tls.cert_file);
            abs(&mut tls.key_file);
        }
        if let Some(ca) = &mut self.upstream.ca_file {
            abs(ca);
        }
        if let Some(audit) = &mut self.audit {
            abs(&mut audit.dir);
            if let Some(key) = &mut audit.checkpoint_key.file {
                abs(key);
            }
        }
        if let Some(file) = self.catalog.password.as_mut().and_then(|p| p.file.as_mut()) {
            abs(file);
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message: message.to_owned(),
        };
        if self.limits.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        if self.limits.max_message_bytes < 1024 || self.limits.max_message_bytes > (1 << 30) {
            return Err(invalid(
                "limits.max_message_bytes",
                "must be between 1 KiB and 1 GiB",
            ));
        }
        if self.limits.startup_timeout_ms == 0 {
            return Err(invalid("limits.startup_timeout_ms", "must be positive"));
        }
        if let Some(audit) = &self.audit {
            if audit.checkpoint_key.source().is_none() {
                return Err(invalid(
                    "audit.checkpoint_key",
                    "give exactly one of `env: VARIABLE` or `file: PATH`",
                ));
            }
            if audit.fsync_interval_ms == 0 || audit.fsync_interval_ms > 60_000 {
                return Err(invalid(
                    "audit.fsync_interval_ms",
                    "must be between 1 and 60000",
                ));
            }
            if audit.rotate_bytes != 0 && audit.rotate_bytes < 4096 {
                return Err(invalid(
                    "audit.rotate_bytes",
                    "must be 0 (no size rotation) or at least 4096",
                ));
            }
        }
        Ok(())
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6432))
}
fn default_policies() -> PathBuf {
    PathBuf::from("policies")
}
fn default_upstream_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_upstream_port() -> u16 {
    5432
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_catalog_user() -> String {
    "postgres".to_owned()
}
fn default_catalog_database() -> String {
    "postgres".to_owned()
}
fn default_refresh_seconds() -> u64 {
    60
}
fn default_max_connections() -> usize {
    1000
}
fn default_max_message_bytes() -> usize {
    64 << 20
}
fn default_startup_timeout_ms() -> u64 {
    10_000
}
fn default_shutdown_grace_ms() -> u64 {
    30_000
}
fn default_fsync_interval_ms() -> u64 {
    100
}
fn default_rotate_bytes() -> u64 {
    64 << 20
}
fn default_checkpoint_seconds() -> u64 {
    60
}
fn default_auth_failures_per_minute() -> u32 {
    20
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_unknown_keys_are_rejected() {
        let config: Config = serde_yaml::from_str("listen: 127.0.0.1:7000\n").unwrap();
        assert_eq!(config.listen.port(), 7000);
        assert_eq!(config.limits.max_connections, 1000);
        assert_eq!(config.limits.auth_failures_per_minute, 20);
        assert_eq!(config.upstream.port, 5432);
        assert!(serde_yaml::from_str::<Config>("limits: {max_conections: 5}\n").is_err());
    }

    #[test]
    fn catalog_password_is_read_as_documented() {
        let config: Config =
            serde_yaml::from_str("catalog: {password: {env: PGPURPOSE_CATALOG_PW}}\n").unwrap();
        let source = config.catalog.password.as_ref().and_then(KeyRef::source);
        assert_eq!(
            source,
            Some(SecretSource::Env("PGPURPOSE_CATALOG_PW".into()))
        );
        let both = "catalog: {password: {env: A, file: b}}\n";
        let config: Config = serde_yaml::from_str(both).unwrap();
        assert_eq!(
            config.catalog.password.as_ref().and_then(KeyRef::source),
            None
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpurpose.yaml");
        std::fs::write(
            &path,
            "policies: pol\nupstream: {tls: verify-full, ca_file: ca.pem}\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.policies, dir.path().join("pol"));
        assert_eq!(config.upstream.ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!(config.upstream.tls, UpstreamTls::VerifyFull);
    }

    #[test]
    fn audit_section_defaults_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "audit:\n  dir: log\n  checkpoint_key:\n    file: key\n  fsync: always\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let audit = config.audit.unwrap();
        assert_eq!(audit.dir, dir.path().join("log"));
        assert!(
            matches!(audit.checkpoint_key.source(), Some(SecretSource::File(p)) if p == dir.path().join("key"))
        );
        std::fs::write(
            &path,
            "audit: {dir: log, checkpoint_key: {env: A, file: b}}\n",
        )
        .unwrap();
        assert!(matches!(
            Config::load(&path),
            Err(ConfigError::Invalid {
                key: "audit.checkpoint_key",
                ..
            })
        ));
        assert_eq!(audit.fsync, FsyncMode::Always);
        assert_eq!(audit.fsync_interval_ms, 100);
        assert_eq!(audit.rotate_bytes, 64 << 20);
        assert_eq!(audit.checkpoint_seconds, 60);
        assert_eq!(audit.on_failure, AuditFailure::Block);
        assert!(serde_yaml::from_str::<Config>("audit: {dir: x}\n").is_err());
        assert!(serde_yaml::from_str::<Config>(
            "audit: {dir: x, checkpoint_key: {env: K}, on_failure: ignore}\n"
        )
        .is_err());
    }

    #[test]
    fn limits_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "limits: {max_connections: 0}\n").unwrap();
        assert!(matches!(
            Config::load(&path),
            Err(ConfigError::Invalid {
                key: "limits.max_connections",
                ..
            })
        ));
    }
}

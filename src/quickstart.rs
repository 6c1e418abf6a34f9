//! `pgpurpose quickstart`: the proxy's main job on an embedded default. Starts a throwaway
//! Postgres from the locally installed binaries, loads the example social-network schema,
//! roles and data from `examples/`, and runs the proxy with the example policies in front of
//! it, printing how to connect as each example service. Everything is removed on exit.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::app::{self, AppError};
use crate::config::{AuditConfig, CatalogConfig, Config, KeyRef, UpstreamConfig};
use crate::localpg::{ClusterOptions, LocalCluster};

/// The example services and their example passwords (see `policies/services.yaml`).
pub const EXAMPLE_SERVICES: &[(&str, &str, &str)] = &[
    ("auth-service", "auth-pass", "security.authentication"),
    ("ads-service", "ads-pass", "advertising"),
    ("discovery-service", "discovery-pass", "discovery"),
    ("analytics-service", "analytics-pass", "analytics"),
    (
        "support-service",
        "support-pass",
        "security or analytics (choose per session)",
    ),
];

/// Database the example is loaded into.
pub const EXAMPLE_DATABASE: &str = "app";

pub struct QuickstartOptions {
    pub listen: SocketAddr,
    pub policies: PathBuf,
    pub examples: PathBuf,
}

impl Default for QuickstartOptions {
    fn default() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        QuickstartOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 6432)),
            policies: root.join("policies"),
            examples: root.join("examples"),
        }
    }
}

/// Start the throwaway database with the example loaded.
pub fn start_example_database(examples: &std::path::Path) -> Result<LocalCluster, AppError> {
    let cluster = LocalCluster::start(ClusterOptions::default())
        .map_err(|e| AppError::Other(e.to_string()))?;
    cluster
        .create_database(EXAMPLE_DATABASE)
        .map_err(|e| AppError::Other(e.to_string()))?;
    cluster
        .load_example_from(EXAMPLE_DATABASE, examples)
        .map_err(|e| AppError::Other(e.to_string()))?;
    Ok(cluster)
}

/// The proxy configuration for a local cluster.
pub fn config_for(cluster: &LocalCluster, options: &QuickstartOptions) -> Config {
    Config {
        listen: options.listen,
        policies: options.policies.clone(),
        upstream: UpstreamConfig {
            host: cluster.host().to_owned(),
            port: cluster.port(),
            ..UpstreamConfig::default()
        },
        catalog: CatalogConfig {
            database: EXAMPLE_DATABASE.to_owned(),
            ..CatalogConfig::default()
        },
        ..Config::default()
    }
}

/// An audit log for the quickstart: a directory next to the throwaway cluster (removed with
/// it) and a freshly generated checkpoint key in a file there.
pub fn audit_for(cluster: &LocalCluster) -> Result<AuditConfig, AppError> {
    let base = cluster
        .data_dir()
        .parent()
        .unwrap_or(cluster.data_dir())
        .to_owned();
    let key_file = base.join("audit.key");
    let key = crate::audit::record::to_hex(&rand::random::<[u8; 32]>());
    std::fs::write(&key_file, key).map_err(|e| AppError::Other(format!("audit key: {e}")))?;
    Ok(AuditConfig {
        dir: base.join("audit"),
        fsync: Default::default(),
        fsync_interval_ms: 100,
        rotate_bytes: 64 << 20,
        rotate_seconds: 0,
        checkpoint_seconds: 60,
        checkpoint_key: KeyRef {
            env: None,
            file: Some(key_file),
        },
        on_failure: Default::default(),
    })
}

/// How to connect, printed once the proxy listens.
pub fn banner(cluster: &LocalCluster, listen: SocketAddr) -> String {
    let mut out = String::new();
    out.push_str("pgpurpose quickstart\n");
    out.push_str(&format!(
        "  throwaway Postgres: 127.0.0.1:{} (database \"{EXAMPLE_DATABASE}\", example schema and data loaded)\n",
        cluster.port()
    ));
    out.push_str(&format!(
        "  proxy listening on {listen}\n\nConnect as a service:\n"
    ));
    for (service, password, purpose) in EXAMPLE_SERVICES {
        out.push_str(&format!(
            "  PGPASSWORD={password} psql \"host={} port={} dbname={EXAMPLE_DATABASE} user={service}\"   # purpose: {purpose}\n",
            listen.ip(),
            listen.port()
        ));
    }
    out.push_str("  (support-service: add options='-c pgpurpose.purpose=security' to the connection string)\n\n");
    out.push_str("Try, as ads-service:\n");
    out.push_str("  SELECT handle, marketing_email FROM users LIMIT 3;             -- allowed\n");
    out.push_str("  SELECT handle, phone_2fa FROM users LIMIT 3;                   -- phone_2fa masked (NULL)\n");
    out.push_str("  SELECT count(*) FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa;  -- blocked\n\n");
    out.push_str("Press Ctrl-C to stop; the throwaway database is removed.\n");
    out
}

/// Run until SIGTERM/SIGINT.
pub async fn run(options: QuickstartOptions) -> Result<(), AppError> {
    let examples = options.examples.clone();
    let cluster = tokio::task::spawn_blocking(move || start_example_database(&examples))
        .await
        .map_err(|e| AppError::Other(e.to_string()))??;
    let mut config = config_for(&cluster, &options);
    let audit = audit_for(&cluster)?;
    let audit_note = format!(
        "Audit log: {dir}\n  pgpurpose audit verify --key-file {key} {dir}\n",
        dir = audit.dir.display(),
        key = audit
            .checkpoint_key
            .file
            .as_deref()
            .unwrap_or(std::path::Path::new("?"))
            .display()
    );
    config.audit = Some(audit);
    let listen = config.listen;
    let serving = app::serve(config, app::termination_signal());
    // Print once the listener is up: `serve` binds first thing, so a short delay is not needed;
    // the banner goes to stdout, logs to stderr.
    println!("{}", banner(&cluster, listen));
    println!("{audit_note}");
    let result = serving.await;
    drop(cluster);
    result
}

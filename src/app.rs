//! Wiring for the binary's commands: load configuration and policy, build the shared state,
//! install signal handling, and run the server. Kept out of `main.rs` so it can be tested.

use std::path::Path;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tracing::info;

use crate::config::{Config, ConfigError};
use arc_swap::ArcSwap;

use crate::enforce::{initial_catalog, maintain_catalog, Enforcer};
use crate::intercept::Interceptor;
use crate::policy::CompiledPolicy;
use crate::relay::{server, ProxyState};

/// How long startup waits for the first catalog snapshot before listening anyway.
pub const INITIAL_CATALOG_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("policy: {0}")]
    Policy(String),
    #[error("TLS: {0}")]
    Tls(#[from] crate::relay::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Other(String),
}

/// Install the `tracing` subscriber: human-readable or JSON lines, filtered by `RUST_LOG`
/// (default `info`).
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM received"),
                    _ = int.recv() => info!("SIGINT received"),
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Load the policy directory named by the configuration.
pub fn load_policy(config: &Config) -> Result<crate::policy::CompiledPolicy, AppError> {
    crate::policy::load_dir(&config.policies).map_err(|e| AppError::Policy(e.to_string()))
}

/// `pgpurpose run`: serve until SIGTERM/SIGINT.
pub async fn run(config_path: &Path) -> Result<(), AppError> {
    let config = Config::load(config_path)?;
    serve(config, termination_signal()).await
}

/// Load the policy, bind the listener and serve until `shutdown` completes, then drain.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AppError> {
    let policy = load_policy(&config)?;
    info!(version = %policy.version, services = policy.services.len(), "policy loaded");
    let audit = open_audit(&config, &policy.version)?;
    let policy = Arc::new(ArcSwap::from_pointee(policy));
    let interceptor = build_interceptor(&config, &policy, audit.clone()).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: config.listen.to_string(),
            source,
        })?;
    info!(listen = %config.listen, upstream = %format!("{}:{}", config.upstream.host, config.upstream.port), "pgpurpose listening");
    let state = Arc::new(ProxyState::new(config, policy, interceptor)?.with_audit(audit.clone()));
    server::run(state, listener, shutdown).await;
    if let Some(audit) = audit {
        match audit.close() {
            Ok(()) => info!(dir = %audit.dir().display(), "audit log sealed"),
            Err(error) => tracing::error!(%error, "the audit log could not be sealed at shutdown"),
        }
    }
    Ok(())
}

/// Open the audit log before listening (so no statement runs unrecorded), or warn that there
/// is none.
pub fn open_audit(
    config: &Config,
    policy_version: &str,
) -> Result<Option<Arc<crate::audit::AuditLog>>, AppError> {
    let Some(section) = &config.audit else {
        tracing::warn!(
            "no `audit:` section in the configuration: statements are NOT recorded in an audit log"
        );
        return Ok(None);
    };
    let settings = crate::audit::AuditSettings::from_config(section)?;
    if settings.on_failure == crate::config::AuditFailure::Allow {
        tracing::warn!("audit.on_failure is `allow`: if the audit log cannot be written, statements run unrecorded");
    }
    let log = crate::audit::AuditLog::open(settings, policy_version)?;
    info!(dir = %log.dir().display(), fsync = ?section.fsync, "audit log open");
    Ok(Some(log))
}

/// The statement interceptor used in production: the policy engine, with the catalog kept
/// fresh by a background task.
async fn build_interceptor(
    config: &Config,
    policy: &Arc<ArcSwap<CompiledPolicy>>,
    audit: Option<Arc<crate::audit::AuditLog>>,
) -> Result<Arc<dyn Interceptor>, AppError> {
    let mut enforcer = Enforcer::new(Arc::clone(policy), config.catalog.database.clone());
    if let Some(audit) = audit {
        enforcer = enforcer.with_observer(audit);
    }
    let enforcer = Arc::new(enforcer);
    let conn_str = catalog_conn_str(config)?;
    initial_catalog(&enforcer, &conn_str, INITIAL_CATALOG_WAIT).await;
    let refresh = std::time::Duration::from_secs(config.catalog.refresh_seconds.max(1));
    tokio::spawn(maintain_catalog(Arc::clone(&enforcer), conn_str, refresh));
    Ok(enforcer)
}

/// libpq key/value connection string for the catalog reader.
fn catalog_conn_str(config: &Config) -> Result<String, AppError> {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut conn = format!(
        "host={} port={} user={} dbname={} application_name=pgpurpose-catalog",
        quote(&config.upstream.host),
        config.upstream.port,
        quote(&config.catalog.user),
        quote(&config.catalog.database)
    );
    if let Some(secret) = &config.catalog.password {
        let password = crate::auth::resolve_password(&secret.into())
            .map_err(|e| AppError::Other(format!("catalog password: {e}")))?;
        conn.push_str(&format!(" password={}", quote(&password)));
    }
    Ok(conn)
}

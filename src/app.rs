//! Wiring for the binary's commands: load configuration and policy, build the shared state,
//! install signal handling, and run the server. Kept out of `main.rs` so it can be tested.

use std::path::Path;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tracing::info;

use crate::config::{Config, ConfigError};
use arc_swap::ArcSwap;

use crate::enforce::{initial_catalog, maintain_catalog, DecisionObserver, Enforcer};
use crate::intercept::Interceptor;
use crate::metrics::{Health, Metrics};
use crate::policy::CompiledPolicy;
use crate::relay::{server, ProxyState};
use crate::reload::{self, PolicyEvents, PolicyReloader};

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

/// What a caller adds to the proxy [`serve_with`] builds: more decision observers and policy
/// event sinks (the audit log), and the metrics and health registries to export.
#[derive(Default)]
pub struct ServeOptions {
    /// Run after the metrics observer, in this order.
    pub observers: Vec<Arc<dyn DecisionObserver>>,
    /// Told about the initial load and every reload or refused reload, after the metrics.
    pub policy_events: Vec<Arc<dyn PolicyEvents>>,
    pub metrics: Arc<Metrics>,
    /// `/health` checks; the catalog check is added by [`serve_with`].
    pub health: Arc<Health>,
}

/// Load the policy, bind the listener and serve until `shutdown` completes, then drain.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AppError> {
    serve_with(config, shutdown, ServeOptions::default()).await
}

/// [`serve`] with extra observers, policy event sinks and shared metrics.
pub async fn serve_with(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
    options: ServeOptions,
) -> Result<(), AppError> {
    // SIGHUP's default action ends the process. Tokio keeps a signal's handler installed for
    // the life of the process once one stream was created, so a SIGHUP that arrives while the
    // catalog is still loading (before the reload task listens) is not fatal.
    #[cfg(unix)]
    if let Err(error) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tracing::warn!(%error, "cannot handle SIGHUP");
    }
    let policy = load_policy(&config)?;
    info!(version = %policy.version, services = policy.services.len(), "policy loaded");
    // Opened before listening, so no statement runs unrecorded.
    let audit = open_audit(&config, &policy.version)?;
    let policy = Arc::new(ArcSwap::from_pointee(policy));
    let mut observers: Vec<Arc<dyn DecisionObserver>> =
        vec![Arc::clone(&options.metrics) as Arc<dyn DecisionObserver>];
    if let Some(audit) = &audit {
        observers.push(Arc::clone(audit) as Arc<dyn DecisionObserver>);
        let depth = Arc::clone(audit);
        options
            .metrics
            .set_audit_queue_depth_source(move || depth.queue_depth() as u64);
        let health = Arc::clone(audit);
        options.health.add_check("audit", move || {
            if health.is_failed() {
                Err("the audit log cannot be written".to_owned())
            } else {
                Ok(())
            }
        });
    }
    observers.extend(options.observers);
    let enforcer = build_enforcer(&config, &policy, observers).await?;
    let catalog_source = Arc::clone(&enforcer);
    options.health.add_check("catalog", move || {
        catalog_source
            .catalog()
            .map(|_| ())
            .ok_or_else(|| "no catalog snapshot of the upstream database loaded".to_owned())
    });
    let mut reloader = PolicyReloader::new(config.policies.clone(), Arc::clone(&policy))
        .with_enforcer(Arc::clone(&enforcer))
        .with_events(Arc::clone(&options.metrics) as Arc<dyn PolicyEvents>);
    if let Some(audit) = &audit {
        reloader = reloader.with_events(Arc::clone(audit) as Arc<dyn PolicyEvents>);
    }
    for sink in options.policy_events {
        reloader = reloader.with_events(sink);
    }
    let reloader = Arc::new(reloader);
    reloader.announce_loaded();
    let reloading = tokio::spawn(reload::watch(Arc::clone(&reloader), config.reload.clone()));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: config.listen.to_string(),
            source,
        })?;
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(metrics_config) = &config.metrics {
        let metrics_listener =
            TcpListener::bind(metrics_config.listen)
                .await
                .map_err(|source| AppError::Listen {
                    addr: metrics_config.listen.to_string(),
                    source,
                })?;
        info!(listen = %metrics_config.listen, "metrics and health endpoint listening");
        tokio::spawn(crate::metrics::http::serve(
            metrics_listener,
            Arc::clone(&options.metrics),
            Arc::clone(&options.health),
            async {
                let _ = metrics_stopped.await;
            },
        ));
    }
    info!(listen = %config.listen, upstream = %format!("{}:{}", config.upstream.host, config.upstream.port), "pgpurpose listening");
    let interceptor: Arc<dyn Interceptor> = enforcer;
    let mut state = ProxyState::new(config, policy, interceptor)?;
    state.metrics = options.metrics;
    state.audit = audit.clone();
    server::run(Arc::new(state), listener, shutdown).await;
    reloading.abort();
    let _ = metrics_stop.send(());
    if let Some(audit) = audit {
        match audit.close() {
            Ok(()) => info!(dir = %audit.dir().display(), "audit log sealed"),
            Err(error) => tracing::error!(%error, "the audit log could not be sealed at shutdown"),
        }
    }
    Ok(())
}

/// Open the audit log of the configuration, or warn that there is none.
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

/// The enforcer used in production: the policy engine with `observers`, with the catalog kept
/// fresh by a background task.
async fn build_enforcer(
    config: &Config,
    policy: &Arc<ArcSwap<CompiledPolicy>>,
    observers: Vec<Arc<dyn DecisionObserver>>,
) -> Result<Arc<Enforcer>, AppError> {
    let mut enforcer = Enforcer::new(Arc::clone(policy), config.catalog.database.clone());
    for observer in observers {
        enforcer = enforcer.with_observer(observer);
    }
    let enforcer = Arc::new(enforcer);
    let conn_str = catalog_conn_str(config)?;
    if initial_catalog(&enforcer, &conn_str, INITIAL_CATALOG_WAIT).await {
        report_catalog_findings(&policy.load(), &enforcer);
    }
    let refresh = std::time::Duration::from_secs(config.catalog.refresh_seconds.max(1));
    tokio::spawn(maintain_catalog(Arc::clone(&enforcer), conn_str, refresh));
    Ok(enforcer)
}

/// Compare the policy in force with the first catalog snapshot and log every finding. A tag
/// on a column that does not exist protects nothing (often a typo that leaves the real column
/// untagged), so errors are logged at error level; `pgpurpose check` turns them into a failing
/// exit code for CI, and a reload that introduces one is refused.
fn report_catalog_findings(policy: &CompiledPolicy, enforcer: &Enforcer) {
    let Some(catalog) = enforcer.catalog() else {
        return;
    };
    for finding in crate::policy::check_against_catalog(policy, &catalog) {
        match finding.level {
            crate::policy::FindingLevel::Error => {
                tracing::error!(%finding, "the policy does not match the database")
            }
            crate::policy::FindingLevel::Warning => {
                tracing::warn!(%finding, "policy check against the database")
            }
        }
    }
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
        let source = secret.source().ok_or_else(|| {
            AppError::Other("catalog.password: give exactly one of `env` or `file`".into())
        })?;
        let password = crate::auth::resolve_password(&source)
            .map_err(|e| AppError::Other(format!("catalog password: {e}")))?;
        conn.push_str(&format!(" password={}", quote(&password)));
    }
    Ok(conn)
}

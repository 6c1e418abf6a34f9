//! Hot reload of the policy: on SIGHUP and when a file in the policy directory changes, load
//! and validate the directory and swap the compiled policy in atomically.
//!
//! - Validation is everything the proxy checks at start (YAML, unknown keys, duplicate keys,
//!   cross-references), plus the comparison with the current catalog snapshot when one is
//!   loaded (a tag on a column the database does not have is refused).
//! - An invalid policy is refused: the policy in force stays, the refusal is logged with the
//!   loader's file:line errors and reported to every [`PolicyEvents`] sink (the audit log, the
//!   metrics).
//! - A valid policy replaces the old one in the shared `ArcSwap`: sessions pick it up at their
//!   next statement (the enforcer loads the policy per statement; authentication reads it per
//!   connection), and the decision cache is cleared ([`Enforcer::invalidate`]), although its
//!   keys already carry the policy version.
//! - File events are debounced (editors write several events per save) and a reload whose files
//!   are byte-for-byte the same as the policy in force changes nothing and reports nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;
use tracing::{error, info, warn};

use crate::enforce::Enforcer;
use crate::policy::CompiledPolicy;

/// What happened to the policy, as reported to [`PolicyEvents`] sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyEventKind {
    /// The policy the proxy started with.
    Loaded,
    /// A new policy is in force.
    Reloaded,
    /// A reload was refused; the policy in force did not change.
    ReloadRefused,
}

impl PolicyEventKind {
    /// `loaded`, `reloaded`, `reload_refused` (the audit log's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyEventKind::Loaded => "loaded",
            PolicyEventKind::Reloaded => "reloaded",
            PolicyEventKind::ReloadRefused => "reload_refused",
        }
    }
}

/// Told about every policy load, reload and refused reload.
pub trait PolicyEvents: Send + Sync + 'static {
    /// `version` is the version in force after the event (for a refusal: the old one, still in
    /// force); `error` is the loader's error text for a refusal (file:line and key; policy files
    /// hold no data values).
    fn policy_event(&self, kind: PolicyEventKind, version: &str, error: Option<&str>);
}

/// The result of one reload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files are the same as the policy in force.
    Unchanged,
    Reloaded {
        version: String,
    },
    Refused {
        error: String,
    },
}

/// Configuration of automatic reloads (`reload:` in the proxy configuration).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Watch the policy directory and reload when a file changes. SIGHUP reloads either way.
    /// Default true.
    #[serde(default = "default_watch")]
    pub watch: bool,
    /// Quiet time after the last file event before reloading. Default 300 ms.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            watch: default_watch(),
            debounce_ms: default_debounce_ms(),
        }
    }
}

fn default_watch() -> bool {
    true
}
fn default_debounce_ms() -> u64 {
    300
}

/// Reloads the policy directory into the shared policy.
pub struct PolicyReloader {
    dir: PathBuf,
    policy: Arc<ArcSwap<CompiledPolicy>>,
    /// Whose cache to clear and whose catalog to validate against.
    enforcer: Option<Arc<Enforcer>>,
    events: Vec<Arc<dyn PolicyEvents>>,
    /// One reload at a time: a SIGHUP and a file event arriving together must not interleave
    /// their load and swap.
    serial: Mutex<()>,
}

impl PolicyReloader {
    pub fn new(dir: impl Into<PathBuf>, policy: Arc<ArcSwap<CompiledPolicy>>) -> Self {
        PolicyReloader {
            dir: dir.into(),
            policy,
            enforcer: None,
            events: Vec::new(),
            serial: Mutex::new(()),
        }
    }

    pub fn with_enforcer(mut self, enforcer: Arc<Enforcer>) -> Self {
        self.enforcer = Some(enforcer);
        self
    }

    /// Add a sink; sinks are told in the order they were added.
    pub fn with_events(mut self, events: Arc<dyn PolicyEvents>) -> Self {
        self.events.push(events);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tell(&self, kind: PolicyEventKind, version: &str, error: Option<&str>) {
        for sink in &self.events {
            sink.policy_event(kind, version, error);
        }
    }

    /// Report the policy the proxy started with ([`PolicyEventKind::Loaded`]).
    pub fn announce_loaded(&self) {
        let version = self.policy.load().version.clone();
        self.tell(PolicyEventKind::Loaded, &version, None);
    }

    /// Load, validate and swap. `trigger` says why, for the log (`SIGHUP`, `file change`).
    pub fn reload(&self, trigger: &str) -> ReloadOutcome {
        let _serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.policy.load_full();
        let candidate = crate::policy::load_dir(&self.dir).and_then(|p| {
            match self.enforcer.as_ref().and_then(|e| e.catalog()) {
                Some(catalog) => new_catalog_mismatches(&current, &p, &catalog).map(|()| p),
                None => Ok(p),
            }
        });
        match candidate {
            Ok(new) if new.version == current.version => ReloadOutcome::Unchanged,
            Ok(new) => {
                let version = new.version.clone();
                // New or rotated credentials: derive their verifiers now, not at a first login
                // (see `relay::warm_verifiers`).
                crate::relay::warm_verifiers(&new);
                self.policy.store(Arc::new(new));
                if let Some(enforcer) = &self.enforcer {
                    enforcer.invalidate();
                }
                info!(%trigger, %version, previous = %current.version, "policy reloaded");
                self.tell(PolicyEventKind::Reloaded, &version, None);
                ReloadOutcome::Reloaded { version }
            }
            Err(e) => {
                let error = e.to_string();
                error!(%trigger, version_in_force = %current.version, error = %error, "policy reload refused; the policy in force is unchanged");
                self.tell(
                    PolicyEventKind::ReloadRefused,
                    &current.version,
                    Some(&error),
                );
                ReloadOutcome::Refused { error }
            }
        }
    }
}

/// Refuse a candidate policy that does not match the catalog where the policy in force does:
/// a tag on a column the database lacks protects nothing and is usually a typo. Mismatches the
/// policy in force already had (the proxy starts without this check, e.g. for a column a
/// migration is about to add) are logged, not refused, so they cannot block every later reload.
fn new_catalog_mismatches(
    current: &CompiledPolicy,
    candidate: &CompiledPolicy,
    catalog: &crate::catalog::Catalog,
) -> Result<(), crate::policy::PolicyError> {
    use crate::policy::{check_against_catalog, FindingLevel};
    let known: Vec<String> = check_against_catalog(current, catalog)
        .into_iter()
        .filter(|f| f.level == FindingLevel::Error)
        .map(|f| f.message)
        .collect();
    let findings = check_against_catalog(candidate, catalog);
    let fresh = findings
        .iter()
        .any(|f| f.level == FindingLevel::Error && !known.contains(&f.message));
    if fresh {
        // The same errors, with their file:line, as one PolicyError.
        crate::policy::ensure_matches_catalog(candidate, catalog)?;
    }
    for finding in &findings {
        warn!(%finding, "policy reload: the policy does not match the catalog");
    }
    Ok(())
}

/// Reload on SIGHUP, and on changes in the policy directory when `config.watch`; runs until
/// the task is dropped. A watcher that cannot start is logged and SIGHUP still works.
pub async fn watch(reloader: Arc<PolicyReloader>, config: ReloadConfig) {
    let (tx, mut files) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Kept alive for as long as this task runs.
    let _watcher = if config.watch {
        match file_watcher(reloader.dir(), tx) {
            Ok(w) => Some(w),
            Err(error) => {
                warn!(%error, dir = %reloader.dir().display(), "cannot watch the policy directory; reload with SIGHUP");
                None
            }
        }
    } else {
        None
    };
    let mut hangup = hangup_signal();
    let debounce = Duration::from_millis(config.debounce_ms);
    loop {
        let trigger = tokio::select! {
            Some(()) = files.recv() => {
                // Wait for a quiet period: one save is often several events.
                loop {
                    tokio::time::sleep(debounce).await;
                    let mut more = false;
                    while files.try_recv().is_ok() {
                        more = true;
                    }
                    if !more {
                        break;
                    }
                }
                "file change"
            }
            Some(()) = next_hangup(&mut hangup) => "SIGHUP",
            else => return,
        };
        let reloader = Arc::clone(&reloader);
        // Reading files and compiling is blocking work.
        let _ = tokio::task::spawn_blocking(move || reloader.reload(trigger)).await;
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(error) => {
            warn!(%error, "cannot listen for SIGHUP");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) -> Option<()> {
    match hangup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) -> Option<()> {
    std::future::pending().await
}

/// A watcher that sends `()` for every create, modify or remove in `dir` (not recursive: policy
/// tests in `dir/tests` do not trigger reloads).
fn file_watcher(
    dir: &Path,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !matches!(event.kind, EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every event.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(PolicyEventKind, String, Option<String>)>>);

    impl PolicyEvents for Recorder {
        fn policy_event(&self, kind: PolicyEventKind, version: &str, error: Option<&str>) {
            self.0
                .lock()
                .unwrap()
                .push((kind, version.to_owned(), error.map(str::to_owned)));
        }
    }

    fn copy_example_policies(dir: &Path) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        for f in ["purposes.yaml", "services.yaml", "tables.yaml"] {
            std::fs::copy(root.join(f), dir.join(f)).unwrap();
        }
    }

    #[test]
    fn valid_changes_swap_and_invalid_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        copy_example_policies(dir.path());
        let policy = Arc::new(ArcSwap::from_pointee(
            crate::policy::load_dir(dir.path()).unwrap(),
        ));
        let first = policy.load().version.clone();
        let recorder = Arc::new(Recorder::default());
        let reloader = PolicyReloader::new(dir.path(), Arc::clone(&policy))
            .with_events(Arc::clone(&recorder) as Arc<dyn PolicyEvents>);
        reloader.announce_loaded();
        assert_eq!(reloader.reload("test"), ReloadOutcome::Unchanged);

        let tables = dir.path().join("tables.yaml");
        let text = std::fs::read_to_string(&tables).unwrap();
        std::fs::write(
            &tables,
            text.replace(
                "      phone_2fa: [security]\n",
                "      phone_2fa: [security, advertising]\n",
            ),
        )
        .unwrap();
        let ReloadOutcome::Reloaded { version } = reloader.reload("test") else {
            panic!("expected a reload");
        };
        assert_ne!(version, first);
        assert_eq!(policy.load().version, version);
        let users = crate::catalog::QualifiedName::new("public", "users");
        assert_eq!(
            policy
                .load()
                .tags(&users, "phone_2fa")
                .map(<[String]>::to_vec),
            Some(vec!["security".to_owned(), "advertising".to_owned()])
        );

        // A typo in a purpose name: refused, the previous policy stays.
        std::fs::write(&tables, text.replace("[security]", "[securty]")).unwrap();
        let ReloadOutcome::Refused { error } = reloader.reload("test") else {
            panic!("expected a refusal");
        };
        assert!(error.contains("tables.yaml:"), "{error}");
        assert!(error.contains("securty"), "{error}");
        assert_eq!(policy.load().version, version);

        let events = recorder.0.lock().unwrap().clone();
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[0].0, PolicyEventKind::Loaded);
        assert_eq!(events[0].1, first);
        assert_eq!(events[1].0, PolicyEventKind::Reloaded);
        assert_eq!(events[1].1, version);
        assert_eq!(events[2].0, PolicyEventKind::ReloadRefused);
        assert_eq!(
            events[2].1, version,
            "a refusal reports the version still in force"
        );
        assert!(events[2]
            .2
            .as_deref()
            .is_some_and(|e| e.contains("securty")));
    }

    #[test]
    fn a_tag_on_a_column_the_database_lacks_is_refused_and_the_cache_cleared() {
        let dir = tempfile::tempdir().unwrap();
        copy_example_policies(dir.path());
        let policy = Arc::new(ArcSwap::from_pointee(
            crate::policy::load_dir(dir.path()).unwrap(),
        ));
        let enforcer = Arc::new(Enforcer::new(Arc::clone(&policy), "app"));
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        enforcer.set_catalog(
            crate::catalog::snapshot_file::load(&root.join("examples/catalog.json")).unwrap(),
        );
        let ctx = crate::intercept::StatementContext {
            service: "analytics-service",
            purpose: "analytics",
            connection_id: 1,
            client_addr: "127.0.0.1:1",
            database: "app",
            protocol: crate::intercept::Protocol::Simple,
        };
        use crate::intercept::Interceptor as _;
        let _ = enforcer.decide(&ctx, "SELECT id FROM users");
        assert_eq!(enforcer.cached_decisions(), 1);
        let reloader = PolicyReloader::new(dir.path(), Arc::clone(&policy))
            .with_enforcer(Arc::clone(&enforcer));
        let tables = dir.path().join("tables.yaml");
        let text = std::fs::read_to_string(&tables).unwrap();
        std::fs::write(
            &tables,
            text.replace("phone_2fa: [security]", "phone_3fa: [security]"),
        )
        .unwrap();
        let ReloadOutcome::Refused { error } = reloader.reload("test") else {
            panic!("a tag on a missing column must be refused");
        };
        assert!(
            error.contains("column `phone_3fa` does not exist"),
            "{error}"
        );
        assert_eq!(enforcer.cached_decisions(), 1, "a refusal keeps the cache");
        std::fs::write(
            &tables,
            text.replace("phone_2fa: [security]", "phone_2fa: [security, analytics]"),
        )
        .unwrap();
        assert!(matches!(
            reloader.reload("test"),
            ReloadOutcome::Reloaded { .. }
        ));
        assert_eq!(enforcer.cached_decisions(), 0, "a reload clears the cache");
    }

    #[tokio::test]
    async fn a_file_change_is_picked_up_by_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        copy_example_policies(dir.path());
        let policy = Arc::new(ArcSwap::from_pointee(
            crate::policy::load_dir(dir.path()).unwrap(),
        ));
        let first = policy.load().version.clone();
        let reloader = Arc::new(PolicyReloader::new(dir.path(), Arc::clone(&policy)));
        let task = tokio::spawn(watch(
            Arc::clone(&reloader),
            ReloadConfig {
                watch: true,
                debounce_ms: 50,
            },
        ));
        // Let the watcher start before changing anything.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let purposes = dir.path().join("purposes.yaml");
        let text = std::fs::read_to_string(&purposes).unwrap();
        std::fs::write(&purposes, format!("{text}\n# edited\n")).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while policy.load().version == first {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reload after a file change"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.abort();
    }
}

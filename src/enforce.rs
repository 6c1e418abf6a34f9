//! The production [`Interceptor`]: decides every statement with the pure engine against the
//! current policy and catalog snapshot, caching decisions by statement *shape*.
//!
//! A cache key is the statement's shape (its tokens with literals replaced by placeholders),
//! the service, the purpose, the policy version and the catalog version. A cached rewrite is a
//! list of token-anchored edits that is applied to the new statement's own tokens, so statements
//! that differ only in literal values share one decision without sharing each other's literals.
//! Decisions that depended on a literal's value, and rewrites whose edits would replace a
//! literal, are never cached.
//!
//! Fail closed: no catalog snapshot yet, an unknown service, a lexing failure or a failed edit
//! all block the statement.

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use moka::sync::Cache;

use crate::catalog::Catalog;
use crate::engine::lexing::{self, Edit, Lexed};
use crate::engine::{self, shape, Decision, SessionView};
use crate::error::{sqlstate, PgError};
use crate::intercept::{Interceptor, StatementContext, Verdict};
use crate::policy::CompiledPolicy;

/// Distinct statement shapes kept per proxy (all services together).
pub const DECISION_CACHE_ENTRIES: u64 = 100_000;
/// Statements longer than this are decided every time rather than cached (bounded memory).
pub const MAX_CACHED_STATEMENT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    shape: String,
    service: String,
    purpose: String,
    policy_version: Arc<str>,
    catalog_version: u64,
}

#[derive(Debug, Clone)]
enum Cached {
    Allow,
    Rewrite(Arc<[Edit]>),
    Block(PgError),
}

/// Called with every decision, for the audit log and metrics.
pub trait DecisionObserver: Send + Sync + 'static {
    fn observe(&self, ctx: &StatementContext<'_>, sql: &str, outcome: &Outcome<'_>);
}

/// What was decided for one message, as seen by observers.
pub enum Outcome<'a> {
    /// Freshly decided by the engine (its report lists every column use).
    Decided(&'a Decision),
    /// Served from the cache; `verdict` is what the relay does.
    Cached(&'a Verdict),
    /// Refused before the engine ran (no catalog, unknown service, lexing failure).
    Refused(&'a PgError),
}

pub struct Enforcer {
    policy: Arc<ArcSwap<CompiledPolicy>>,
    /// The database the catalog snapshot describes; sessions on any other database are
    /// refused, since their names would be resolved against the wrong catalog.
    database: String,
    catalog: ArcSwapOption<Catalog>,
    cache: Cache<CacheKey, Cached>,
    observer: Option<Arc<dyn DecisionObserver>>,
    /// Called after an allowed DDL statement so the catalog is refreshed promptly.
    ddl_seen: Arc<tokio::sync::Notify>,
}

impl Enforcer {
    pub fn new(policy: Arc<ArcSwap<CompiledPolicy>>, database: impl Into<String>) -> Self {
        Enforcer {
            policy,
            database: database.into(),
            catalog: ArcSwapOption::empty(),
            cache: Cache::new(DECISION_CACHE_ENTRIES),
            observer: None,
            ddl_seen: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn with_observer(mut self, observer: Arc<dyn DecisionObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Install a new catalog snapshot (decisions for older snapshots are no longer hit: the
    /// catalog version is part of the key).
    pub fn set_catalog(&self, catalog: Catalog) {
        self.catalog.store(Some(Arc::new(catalog)));
    }

    pub fn catalog(&self) -> Option<Arc<Catalog>> {
        self.catalog.load_full()
    }

    /// Signalled after DDL was allowed through.
    pub fn ddl_notifier(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.ddl_seen)
    }

    pub fn cached_decisions(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    fn observe(&self, ctx: &StatementContext<'_>, sql: &str, outcome: Outcome<'_>) {
        if let Some(observer) = &self.observer {
            observer.observe(ctx, sql, &outcome);
        }
    }

    fn refuse(&self, ctx: &StatementContext<'_>, sql: &str, error: PgError) -> Verdict {
        self.observe(ctx, sql, Outcome::Refused(&error));
        Verdict::Block(error)
    }
}

/// Rewrites that may be re-applied to other statements of the same shape: no edit replaces a
/// literal token (the replacement would carry one statement's value into another).
fn edits_are_shape_safe(lexed: &Lexed, edits: &[Edit]) -> bool {
    edits.iter().all(|e| {
        (e.start_tok..e.end_tok).all(|i| !lexed.tokens.get(i).is_some_and(|t| t.is_literal()))
    })
}

fn is_ddl(decision: &Decision) -> bool {
    decision.report().statements.iter().any(|s| {
        let kind = s.kind.to_ascii_uppercase();
        [
            "CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE", "TRUNCATE",
        ]
        .iter()
        .any(|k| kind.starts_with(k))
    })
}

impl Interceptor for Enforcer {
    fn decide(&self, ctx: &StatementContext<'_>, sql: &str) -> Verdict {
        if ctx.database != self.database {
            let error = PgError::forbidden(format!(
                "pgpurpose enforces its policy on database \"{}\" only; this session is connected to \"{}\"",
                self.database, ctx.database
            ));
            return self.refuse(ctx, sql, error);
        }
        let Some(catalog) = self.catalog.load_full() else {
            let error = PgError::forbidden(
                "pgpurpose has no catalog snapshot of the upstream database yet",
            )
            .with_hint("statements are refused until the catalog is loaded; check the proxy's log");
            return self.refuse(ctx, sql, error);
        };
        let policy = self.policy.load_full();
        let Some(service) = policy.service(ctx.service) else {
            // The service was removed by a policy reload during the session.
            let error = PgError::forbidden(format!(
                "service \"{}\" is not in the current policy",
                ctx.service
            ));
            return self.refuse(ctx, sql, error);
        };
        let lexed = match lexing::lex(sql) {
            Ok(lexed) => lexed,
            Err(error) => {
                let error = PgError::error(
                    sqlstate::SYNTAX_ERROR,
                    format!("pgpurpose cannot analyse this statement: {error}"),
                )
                .with_hint(
                    "the proxy refuses SQL whose meaning it cannot determine with certainty",
                );
                return self.refuse(ctx, sql, error);
            }
        };
        let cacheable = sql.len() <= MAX_CACHED_STATEMENT_BYTES;
        let key = cacheable.then(|| CacheKey {
            shape: shape::shape(&lexed).text,
            service: ctx.service.to_owned(),
            purpose: ctx.purpose.to_owned(),
            policy_version: Arc::from(policy.version.as_str()),
            catalog_version: catalog.version,
        });
        if let Some(cached) = key.as_ref().and_then(|k| self.cache.get(k)) {
            let verdict = match cached {
                Cached::Allow => Verdict::Forward,
                Cached::Block(error) => Verdict::Block(error),
                Cached::Rewrite(edits) => match lexing::apply_edits(&lexed, &edits) {
                    Ok(rewritten) => Verdict::Rewrite(rewritten),
                    Err(_) => Verdict::Block(PgError::forbidden(
                        "pgpurpose could not apply its rewrite to this statement",
                    )),
                },
            };
            self.observe(ctx, sql, Outcome::Cached(&verdict));
            return verdict;
        }

        let session = SessionView {
            service,
            purpose: ctx.purpose,
        };
        let decision = engine::decide(sql, &catalog, &policy, &session);
        self.observe(ctx, sql, Outcome::Decided(&decision));
        let literal_sensitive = decision.report().literal_sensitive;
        let (verdict, cached) = match &decision {
            Decision::Allow(_) => (Verdict::Forward, Some(Cached::Allow)),
            Decision::Block { error, .. } => (
                Verdict::Block(error.clone()),
                Some(Cached::Block(error.clone())),
            ),
            Decision::Rewrite {
                sql: rewritten,
                edits,
                ..
            } => {
                let reusable = edits_are_shape_safe(&lexed, edits);
                (
                    Verdict::Rewrite(rewritten.clone()),
                    reusable.then(|| Cached::Rewrite(Arc::from(edits.as_slice()))),
                )
            }
        };
        if decision.is_allow() && is_ddl(&decision) {
            self.ddl_seen.notify_one();
        }
        if let (Some(key), Some(cached), false) = (key, cached, literal_sensitive) {
            self.cache.insert(key, cached);
        }
        verdict
    }
}

/// Try to load the first snapshot for up to `wait`, so the proxy does not start listening
/// only to refuse every statement. Returns whether a snapshot is installed.
pub async fn initial_catalog(
    enforcer: &Enforcer,
    conn_str: &str,
    wait: std::time::Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match crate::catalog::load::connect_and_load(conn_str).await {
            Ok(catalog) => {
                tracing::info!(
                    version = catalog.version,
                    relations = catalog.relations.len(),
                    "catalog snapshot loaded"
                );
                enforcer.set_catalog(catalog);
                return true;
            }
            Err(error) if tokio::time::Instant::now() >= deadline => {
                tracing::error!(%error, "cannot load the catalog snapshot; starting anyway, statements are refused until it loads");
                return false;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// Keep the enforcer's catalog fresh: load at start (retrying until it succeeds; until then
/// every statement is refused), then every `refresh` and soon after DDL passes through.
pub async fn maintain_catalog(
    enforcer: Arc<Enforcer>,
    conn_str: String,
    refresh: std::time::Duration,
) {
    let ddl = enforcer.ddl_notifier();
    loop {
        match crate::catalog::load::connect_and_load(&conn_str).await {
            Ok(catalog) => {
                let changed = enforcer.catalog().map(|c| c.version) != Some(catalog.version);
                if changed {
                    tracing::info!(
                        version = catalog.version,
                        relations = catalog.relations.len(),
                        "catalog snapshot loaded"
                    );
                }
                enforcer.set_catalog(catalog);
                tokio::select! {
                    _ = tokio::time::sleep(refresh) => {}
                    _ = ddl.notified() => {
                        // Let the DDL's transaction commit before reading the catalog again.
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot load the catalog snapshot; statements are refused until it loads");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    }
}

//! The production [`Interceptor`]: decides every statement with the pure engine against the
//! current policy and catalog snapshot, caching decisions by statement *shape*.
//!
//! A cache key is the statement's [cache-key rendering](shape::push_cache_key) (its tokens with
//! literal values replaced by placeholders that keep the literal's kind), the service, the
//! purpose, the policy version and the catalog version. A cached rewrite is a list of
//! token-anchored edits that is applied to the new statement's own tokens, so statements that
//! differ only in literal values share one decision without sharing each other's literals.
//!
//! What is never cached: decisions that depended on a literal's value (the engine marks them
//! `literal_sensitive`), rewrites whose edits would replace a literal, allowed DDL (the catalog
//! changes under it), and blocks other than a policy verdict on a column or a grant (a syntax
//! error or an analysis failure may depend on a literal, e.g. `ORDER BY 0`, and caching it would
//! block that shape's valid statements too).
//!
//! # The lookup path
//!
//! A lookup tokenizes with [`lexing::lex_for_lookup`] only (Postgres's rules, without the
//! sqlparser cross-check that costs ~20x more), builds the key without allocating anything but
//! one `String`, and runs [`pinned::check_pinned_settings`] on the statement's own tokens before
//! serving a hit. Why skipping the cross-check is safe: an entry exists only because the full
//! pipeline (cross-checked [`lexing::lex`], parse, analysis, decision) ran on a statement whose
//! key is equal, and an equal key means Postgres reads the same token sequence apart from
//! literal values (see `lex_for_lookup`). The decision was made on that reading and did not
//! depend on literal values, so it holds for the new statement. The one check that does read
//! literal values, the pinned settings (`SET client_encoding TO 'UTF8'` is allowed, `'LATIN1'`
//! is not, and both have one shape), runs on every hit; when it objects the statement goes to
//! the engine, which blocks it with its full report.
//!
//! Fail closed: no catalog snapshot yet, an unknown service or a failed edit block the
//! statement; anything the lookup scan refuses is decided by the engine, which refuses it too.

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use moka::sync::Cache;

use crate::catalog::Catalog;
use crate::engine::lexing::{self, Edit, Lexed};
use crate::engine::{self, pinned, shape, Decision, Rule, SessionView};
use crate::error::PgError;
use crate::intercept::{Interceptor, StatementContext, Verdict};
use crate::policy::CompiledPolicy;

/// Distinct statement shapes kept per proxy (all services together).
pub const DECISION_CACHE_ENTRIES: u64 = 100_000;
/// Statements longer than this are decided every time rather than cached (bounded memory).
pub const MAX_CACHED_STATEMENT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone)]
enum Cached {
    Allow,
    Rewrite(Arc<[Edit]>),
    Block(PgError),
}

/// Called with every decision, before the relay acts on it: the audit log and metrics.
pub trait DecisionObserver: Send + Sync + 'static {
    /// An error blocks the statement with that error (fail closed: a decision that could not
    /// be recorded is not carried out).
    fn observe(
        &self,
        ctx: &StatementContext<'_>,
        sql: &str,
        outcome: &Outcome<'_>,
    ) -> Result<(), PgError>;
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
    /// Keyed by [`cache_key`]; looked up by slice, so a hit allocates only the key buffer.
    cache: Cache<Box<[u8]>, Cached>,
    observers: Vec<Arc<dyn DecisionObserver>>,
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
            observers: Vec::new(),
            ddl_seen: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Add an observer; observers run in the order they were added.
    pub fn with_observer(mut self, observer: Arc<dyn DecisionObserver>) -> Self {
        self.observers.push(observer);
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

    /// Drop every cached decision (after a policy reload: the keys carry the policy version, so
    /// old entries could not be hit, but they would hold memory until evicted).
    pub fn invalidate(&self) {
        self.cache.invalidate_all();
    }

    pub fn cached_decisions(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Tell every observer; the first one that fails turns the verdict into its error.
    fn observe(
        &self,
        ctx: &StatementContext<'_>,
        sql: &str,
        outcome: Outcome<'_>,
    ) -> Result<(), PgError> {
        self.observers
            .iter()
            .try_for_each(|o| o.observe(ctx, sql, &outcome))
    }

    fn refuse(&self, ctx: &StatementContext<'_>, sql: &str, error: PgError) -> Verdict {
        match self.observe(ctx, sql, Outcome::Refused(&error)) {
            Ok(()) => Verdict::Block(error),
            Err(observer_error) => Verdict::Block(observer_error),
        }
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

/// The cache key of a statement for a session: service, purpose and policy version, each
/// prefixed by its length (so no field can run into the next), the catalog version, then the
/// statement's [`shape::push_cache_key`] rendering. Binary and built without formatting: it
/// is built on every lookup.
fn cache_key(
    ctx: &StatementContext<'_>,
    policy_version: &str,
    catalog_version: u64,
    lexed: &Lexed,
) -> Vec<u8> {
    let fields = [ctx.service, ctx.purpose, policy_version];
    let fixed: usize = fields.iter().map(|f| f.len() + 8).sum::<usize>() + 8;
    let mut key = Vec::with_capacity(fixed + lexed.sql.len() + lexed.len());
    for f in fields {
        key.extend_from_slice(&(f.len() as u64).to_le_bytes());
        key.extend_from_slice(f.as_bytes());
    }
    key.extend_from_slice(&catalog_version.to_le_bytes());
    shape::push_cache_key(lexed, &mut key);
    key
}

/// What the lookup path found.
enum Lookup<'a> {
    /// Served from the cache.
    Hit(Verdict),
    /// Not cached: decide, then store under this key (the tokens are the statement's, as the
    /// full lexer reads them whenever it accepts the text).
    Miss(Vec<u8>, Lexed<'a>),
    /// Not cacheable (too long, refused by the lookup scan) or a hit the pinned-settings check
    /// objects to: the engine decides and nothing is stored.
    Bypass,
}

impl Enforcer {
    fn lookup<'a>(
        &self,
        ctx: &StatementContext<'_>,
        sql: &'a str,
        policy_version: &str,
        catalog_version: u64,
    ) -> Lookup<'a> {
        if sql.len() > MAX_CACHED_STATEMENT_BYTES {
            return Lookup::Bypass;
        }
        let Ok(lexed) = lexing::lex_for_lookup(sql) else {
            return Lookup::Bypass;
        };
        let key = cache_key(ctx, policy_version, catalog_version, &lexed);
        let Some(cached) = self.cache.get(key.as_slice()) else {
            return Lookup::Miss(key, lexed);
        };
        // Literal values can change this verdict, and the shape erased them.
        if pinned::check_pinned_settings(&lexed).is_err() {
            return Lookup::Bypass;
        }
        Lookup::Hit(match cached {
            Cached::Allow => Verdict::Forward,
            Cached::Block(error) => Verdict::Block(error),
            Cached::Rewrite(edits) => match lexing::apply_edits(&lexed, &edits) {
                Ok(rewritten) => Verdict::Rewrite(rewritten),
                Err(_) => Verdict::Block(PgError::forbidden(
                    "pgpurpose could not apply its rewrite to this statement",
                )),
            },
        })
    }
}

/// What to store for a fresh decision, if anything (see the module docs for what is never
/// cached).
fn to_cache(decision: &Decision, lexed: &Lexed) -> Option<Cached> {
    if decision.report().literal_sensitive {
        return None;
    }
    match decision {
        Decision::Allow(_) => (!is_ddl(decision)).then_some(Cached::Allow),
        Decision::Block { error, report } => {
            let policy_verdict = matches!(
                report.statements.last().map(|s| &s.rule),
                Some(Rule::ForbiddenColumn { .. } | Rule::GrantRequired(_))
            );
            policy_verdict.then(|| Cached::Block(error.clone()))
        }
        Decision::Rewrite { edits, .. } => (!is_ddl(decision)
            && edits_are_shape_safe(lexed, edits))
        .then(|| Cached::Rewrite(Arc::from(edits.as_slice()))),
    }
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
        let store = match self.lookup(ctx, sql, &policy.version, catalog.version) {
            Lookup::Hit(verdict) => {
                return match self.observe(ctx, sql, Outcome::Cached(&verdict)) {
                    Ok(()) => verdict,
                    Err(error) => Verdict::Block(error),
                };
            }
            Lookup::Miss(key, lexed) => Some((key, lexed)),
            Lookup::Bypass => None,
        };

        // The engine runs the full cross-checked lexer itself and blocks what it refuses.
        let session = SessionView {
            service,
            purpose: ctx.purpose,
        };
        let decision = engine::decide(sql, &catalog, &policy, &session);
        let observed = self.observe(ctx, sql, Outcome::Decided(&decision));
        if decision.is_allow() && is_ddl(&decision) {
            self.ddl_seen.notify_one();
        }
        if let Some((key, lexed)) = store {
            if let Some(cached) = to_cache(&decision, &lexed) {
                self.cache.insert(key.into_boxed_slice(), cached);
            }
        }
        if let Err(error) = observed {
            return Verdict::Block(error);
        }
        match decision {
            Decision::Allow(_) => Verdict::Forward,
            Decision::Block { error, .. } => Verdict::Block(error),
            Decision::Rewrite { sql, .. } => Verdict::Rewrite(sql),
        }
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

#[cfg(test)]
mod tests;

//! Operational metrics and health, served over HTTP by [`http`] (`/metrics` in the OpenMetrics
//! text format that Prometheus scrapes, `/health` for load balancers and orchestrators).
//!
//! What is counted, and where:
//! - connections (accepted, open): `relay::session::run`;
//! - statements by decision, service and purpose: [`Metrics`] is a
//!   [`DecisionObserver`] of the enforcer;
//! - decision latency: measured in the relay around `Interceptor::decide`, so it covers cache
//!   lookups, the engine and every observer (the audit write included), i.e. what a statement
//!   waits for before it is forwarded;
//! - upstream errors: failed upstream connections (`relay::session`);
//! - the policy version in force and reloads: [`Metrics`] is a
//!   [`PolicyEvents`] sink of the reloader;
//! - the audit queue depth: fed by the audit writer through
//!   [`Metrics::set_audit_queue_depth`] or sampled at scrape time from
//!   [`Metrics::set_audit_queue_depth_source`].
//!
//! Label values are service and purpose names from the policy and fixed words, never client
//! input, so the number of series is bounded by the policy.

pub mod http;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::enforce::{DecisionObserver, Outcome};
use crate::engine::Decision;
use crate::error::PgError;
use crate::intercept::{StatementContext, Verdict};
use crate::reload::{PolicyEventKind, PolicyEvents};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatementLabels {
    decision: &'static str,
    service: String,
    purpose: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: &'static str,
}

type DepthSource = Box<dyn Fn() -> u64 + Send + Sync>;

/// Every metric of one proxy process.
pub struct Metrics {
    registry: Registry,
    connections_total: Counter,
    connections_open: Gauge,
    statements: Family<StatementLabels, Counter>,
    decision_seconds: Histogram,
    upstream_errors: Counter,
    /// One series, value 1, labelled with the version in force.
    policy_version: Family<VersionLabels, Gauge>,
    policy_reloads: Family<ReloadLabels, Counter>,
    audit_queue_depth: Gauge,
    /// Last value given to [`Metrics::set_audit_queue_depth`].
    audit_depth_value: AtomicU64,
    audit_depth_source: RwLock<Option<DepthSource>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decision latency buckets: 10 µs to ~0.16 s, doubling (a cache hit takes microseconds, a
/// fresh decision of a large statement milliseconds).
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_01, 2.0, 15)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pgpurpose");
        let connections_total = Counter::default();
        let connections_open = Gauge::default();
        let statements = Family::<StatementLabels, Counter>::default();
        let decision_seconds = Histogram::new(latency_buckets());
        let upstream_errors = Counter::default();
        let policy_version = Family::<VersionLabels, Gauge>::default();
        let policy_reloads = Family::<ReloadLabels, Counter>::default();
        let audit_queue_depth = Gauge::default();
        registry.register(
            "connections",
            "Client connections accepted",
            connections_total.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        registry.register(
            "statements",
            "SQL-bearing messages decided, by decision, service and purpose",
            statements.clone(),
        );
        registry.register(
            "decision_seconds",
            "Time from a statement's arrival at the interceptor to its verdict (cache, engine, audit)",
            decision_seconds.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream connections that failed (unreachable, refused, authentication)",
            upstream_errors.clone(),
        );
        registry.register(
            "policy_version",
            "The policy version in force (value 1)",
            policy_version.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reload attempts by outcome (reloaded, refused)",
            policy_reloads.clone(),
        );
        registry.register(
            "audit_queue_depth",
            "Audit records waiting to be written",
            audit_queue_depth.clone(),
        );
        Metrics {
            registry,
            connections_total,
            connections_open,
            statements,
            decision_seconds,
            upstream_errors,
            policy_version,
            policy_reloads,
            audit_queue_depth,
            audit_depth_value: AtomicU64::new(0),
            audit_depth_source: RwLock::new(None),
        }
    }

    /// The OpenMetrics text exposition (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let depth = match self.audit_depth_source.read() {
            Ok(guard) => match guard.as_ref() {
                Some(source) => source(),
                None => self.audit_depth_value.load(Ordering::Relaxed),
            },
            Err(_) => self.audit_depth_value.load(Ordering::Relaxed),
        };
        self.audit_queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Count an accepted connection; the returned guard counts it as open until dropped.
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections_total.inc();
        self.connections_open.inc();
        ConnectionGuard {
            metrics: Arc::clone(self),
        }
    }

    pub fn upstream_error(&self) {
        self.upstream_errors.inc();
    }

    pub fn observe_decision_latency(&self, elapsed: Duration) {
        self.decision_seconds.observe(elapsed.as_secs_f64());
    }

    /// The audit writer's queue depth (used unless a source is set).
    pub fn set_audit_queue_depth(&self, depth: u64) {
        self.audit_depth_value.store(depth, Ordering::Relaxed);
    }

    /// Sample the audit queue depth from `source` at every scrape.
    pub fn set_audit_queue_depth_source(&self, source: impl Fn() -> u64 + Send + Sync + 'static) {
        if let Ok(mut guard) = self.audit_depth_source.write() {
            *guard = Some(Box::new(source));
        }
    }

    /// Record the policy version in force.
    pub fn set_policy_version(&self, version: &str) {
        self.policy_version.clear();
        self.policy_version
            .get_or_create(&VersionLabels {
                version: version.to_owned(),
            })
            .set(1);
    }

    /// Statements counted so far with this decision (`allow`, `rewrite`, `block`), service and
    /// purpose.
    pub fn statements(&self, decision: &'static str, service: &str, purpose: &str) -> u64 {
        self.statements
            .get_or_create(&StatementLabels {
                decision,
                service: service.to_owned(),
                purpose: purpose.to_owned(),
            })
            .get()
    }

    pub fn connections_open(&self) -> i64 {
        self.connections_open.get()
    }

    fn count(&self, decision: &'static str, ctx: &StatementContext<'_>) {
        self.statements
            .get_or_create(&StatementLabels {
                decision,
                service: ctx.service.to_owned(),
                purpose: ctx.purpose.to_owned(),
            })
            .inc();
    }
}

/// Keeps a connection counted as open.
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.connections_open.dec();
    }
}

/// The decision word of an outcome, as the `decision` label spells it.
pub fn decision_label(outcome: &Outcome<'_>) -> &'static str {
    match outcome {
        Outcome::Decided(Decision::Allow(_)) | Outcome::Cached(Verdict::Forward) => "allow",
        Outcome::Decided(Decision::Rewrite { .. }) | Outcome::Cached(Verdict::Rewrite(_)) => {
            "rewrite"
        }
        Outcome::Decided(Decision::Block { .. })
        | Outcome::Cached(Verdict::Block(_))
        | Outcome::Refused(_) => "block",
    }
}

impl DecisionObserver for Metrics {
    fn observe(
        &self,
        ctx: &StatementContext<'_>,
        _sql: &str,
        outcome: &Outcome<'_>,
    ) -> Result<(), PgError> {
        self.count(decision_label(outcome), ctx);
        Ok(())
    }
}

impl PolicyEvents for Metrics {
    fn policy_event(&self, kind: PolicyEventKind, version: &str, _error: Option<&str>) {
        match kind {
            PolicyEventKind::Loaded => self.set_policy_version(version),
            PolicyEventKind::Reloaded => {
                self.set_policy_version(version);
                self.policy_reloads
                    .get_or_create(&ReloadLabels {
                        outcome: "reloaded",
                    })
                    .inc();
            }
            PolicyEventKind::ReloadRefused => {
                self.policy_reloads
                    .get_or_create(&ReloadLabels { outcome: "refused" })
                    .inc();
            }
        }
    }
}

/// Readiness checks behind `/health`: each named check returns `Err(reason)` when the proxy
/// should not receive traffic (no catalog snapshot, audit log not writable, ...).
#[derive(Default)]
pub struct Health {
    checks: RwLock<Vec<(String, HealthCheck)>>,
}

type HealthCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a check; `/health` answers 503 while any check fails.
    pub fn add_check(
        &self,
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        if let Ok(mut checks) = self.checks.write() {
            checks.push((name.into(), Box::new(check)));
        }
    }

    /// `Ok` when every check passes, else each failure as `name: reason`.
    pub fn status(&self) -> Result<(), Vec<String>> {
        let Ok(checks) = self.checks.read() else {
            return Err(vec!["health checks unavailable".into()]);
        };
        let failures: Vec<String> = checks
            .iter()
            .filter_map(|(name, check)| check().err().map(|why| format!("{name}: {why}")))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intercept::Protocol;

    fn ctx<'a>(service: &'a str, purpose: &'a str) -> StatementContext<'a> {
        StatementContext {
            service,
            purpose,
            connection_id: 1,
            client_addr: "127.0.0.1:1",
            database: "app",
            protocol: Protocol::Simple,
        }
    }

    #[test]
    fn statements_connections_and_policy_are_exposed() {
        let m = Arc::new(Metrics::new());
        let blocked = PgError::forbidden("no");
        for _ in 0..3 {
            m.observe(
                &ctx("ads-service", "advertising"),
                "",
                &Outcome::Cached(&Verdict::Forward),
            )
            .unwrap();
        }
        m.observe(
            &ctx("ads-service", "advertising"),
            "",
            &Outcome::Refused(&blocked),
        )
        .unwrap();
        let guard = m.connection_opened();
        let _second = m.connection_opened();
        drop(guard);
        m.upstream_error();
        m.observe_decision_latency(Duration::from_micros(15));
        m.policy_event(PolicyEventKind::Loaded, "v1", None);
        m.policy_event(PolicyEventKind::Reloaded, "v2", None);
        m.policy_event(PolicyEventKind::ReloadRefused, "v2", Some("bad"));
        m.set_audit_queue_depth(7);
        let text = m.encode();
        for line in [
            "pgpurpose_statements_total{decision=\"allow\",service=\"ads-service\",purpose=\"advertising\"} 3",
            "pgpurpose_statements_total{decision=\"block\",service=\"ads-service\",purpose=\"advertising\"} 1",
            "pgpurpose_connections_total 2",
            "pgpurpose_connections_open 1",
            "pgpurpose_upstream_errors_total 1",
            "pgpurpose_decision_seconds_count 1",
            "pgpurpose_decision_seconds_bucket{le=\"0.00002\"} 1",
            "pgpurpose_decision_seconds_bucket{le=\"0.00001\"} 0",
            "pgpurpose_policy_version{version=\"v2\"} 1",
            "pgpurpose_policy_reloads_total{outcome=\"reloaded\"} 1",
            "pgpurpose_policy_reloads_total{outcome=\"refused\"} 1",
            "pgpurpose_audit_queue_depth 7",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("version=\"v1\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        m.set_audit_queue_depth_source(|| 42);
        assert!(m
            .encode()
            .lines()
            .any(|l| l == "pgpurpose_audit_queue_depth 42"));
        assert_eq!(m.statements("allow", "ads-service", "advertising"), 3);
    }

    #[test]
    fn health_reports_every_failing_check() {
        let h = Health::new();
        assert_eq!(h.status(), Ok(()));
        h.add_check("catalog", || Ok(()));
        h.add_check("audit", || Err("log not writable".into()));
        assert_eq!(h.status(), Err(vec!["audit: log not writable".to_owned()]));
    }
}

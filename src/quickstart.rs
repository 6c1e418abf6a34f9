//! `pgpurpose quickstart`: the proxy's main job on an embedded default. Starts a throwaway
//! Postgres from the locally installed binaries, loads the example social-network schema,
//! roles and data from `examples/`, and runs the proxy with the example policies in front of
//! it, printing how to connect as each example service. Everything is removed on exit.
//!
//! Decisions are shown live: [`LiveDecisions`] prints one line per decision on standard output
//! (service, purpose, decision, the deciding rule, and the statement normalised with its
//! literals replaced by `?`; raw SQL never reaches the terminal log).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::io::Write as _;
use std::sync::Arc;

use crate::app::{self, AppError};
use crate::config::{CatalogConfig, Config, MetricsConfig, UpstreamConfig};
use crate::enforce::{DecisionObserver, Outcome};
use crate::engine::{shape::normalize_for_log, Decision, Rule};
use crate::error::PgError;
use crate::intercept::StatementContext;
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
    /// Serve `/metrics` and `/health` here too.
    pub metrics: Option<SocketAddr>,
}

impl Default for QuickstartOptions {
    fn default() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        QuickstartOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 6432)),
            policies: root.join("policies"),
            examples: root.join("examples"),
            metrics: None,
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
        metrics: options.metrics.map(|listen| MetricsConfig { listen }),
        ..Config::default()
    }
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
    out.push_str("  SELECT count(*) FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa;  -- blocked\n");
    out.push_str("As discovery-service:  SELECT handle, display_name FROM users;     -- only users who opted in\n");
    out.push_str("As analytics-service:  SELECT country, count(*) FROM users GROUP BY country;  -- allowed\n");
    out.push_str("                       SELECT count(*) FROM login_events WHERE ip << '10.0.0.0/8';  -- blocked\n");
    out.push_str(
        "As auth-service:       SELECT phone_2fa FROM users WHERE id = 1;   -- allowed\n\n",
    );
    out.push_str("Offline, without a database:\n");
    out.push_str("  pgpurpose explain --service ads-service \"SELECT phone_2fa FROM users\"\n");
    out.push_str(
        "  pgpurpose test                                              # policies/tests/*.yaml\n\n",
    );
    out.push_str("Decisions appear below as they are made. Press Ctrl-C to stop; the throwaway database is removed.\n");
    out
}

/// Prints one line per decision on standard output, for watching the proxy work.
pub struct LiveDecisions;

impl LiveDecisions {
    /// The line printed for a decision: never the raw SQL, only its normalised form.
    pub fn line(ctx: &StatementContext<'_>, sql: &str, outcome: &Outcome<'_>) -> String {
        let (word, why) = match outcome {
            Outcome::Decided(decision) => {
                let word = crate::ops::explain::decision_word(decision);
                let rule = crate::ops::policytest::deciding_rule(decision.report());
                let why = match (decision, rule) {
                    // Rules that name only policy facts; others may quote parser text.
                    (_, Some(r @ (Rule::ForbiddenColumn { .. } | Rule::GrantRequired(_)))) => {
                        r.to_string()
                    }
                    (Decision::Block { error, .. }, _) => format!("ERROR {}", error.code),
                    (_, Some(r)) => r.to_string(),
                    (_, None) => String::new(),
                };
                (word, why)
            }
            Outcome::Cached(verdict) => (
                match verdict {
                    crate::intercept::Verdict::Forward => "ALLOW",
                    crate::intercept::Verdict::Rewrite(_) => "REWRITE",
                    crate::intercept::Verdict::Block(_) => "BLOCK",
                },
                "(cached decision)".to_owned(),
            ),
            Outcome::Refused(error) => ("BLOCK", format!("ERROR {}", error.code)),
        };
        format!(
            "{:<8} {}/{}: {}   -- {why}",
            word,
            ctx.service,
            ctx.purpose,
            normalize_for_log(sql)
        )
    }
}

impl DecisionObserver for LiveDecisions {
    fn observe(
        &self,
        ctx: &StatementContext<'_>,
        sql: &str,
        outcome: &Outcome<'_>,
    ) -> Result<(), PgError> {
        let line = Self::line(ctx, sql, outcome);
        // A closed terminal must not block statements: the printout is a convenience.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
        Ok(())
    }
}

/// Run until SIGTERM/SIGINT.
pub async fn run(options: QuickstartOptions) -> Result<(), AppError> {
    let examples = options.examples.clone();
    let cluster = tokio::task::spawn_blocking(move || start_example_database(&examples))
        .await
        .map_err(|e| AppError::Other(e.to_string()))??;
    let config = config_for(&cluster, &options);
    let listen = config.listen;
    let options_metrics = options.metrics;
    let options = app::ServeOptions {
        observers: vec![Arc::new(LiveDecisions) as Arc<dyn DecisionObserver>],
        ..app::ServeOptions::default()
    };
    let serving = app::serve_with(config, app::termination_signal(), options);
    // Printed while the proxy starts (it reads the local catalog, then binds, within about a
    // second); the banner and the live decisions go to stdout, logs to stderr.
    println!("{}", banner(&cluster, listen));
    if let Some(metrics) = options_metrics {
        println!("Metrics: http://{metrics}/metrics   health: http://{metrics}/health\n");
    }
    let _ = std::io::stdout().flush();
    let result = serving.await;
    drop(cluster);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intercept::{Protocol, Verdict};

    #[test]
    fn live_lines_carry_the_decision_and_never_a_literal() {
        let ctx = StatementContext {
            service: "ads-service",
            purpose: "advertising",
            connection_id: 1,
            client_addr: "127.0.0.1:1",
            database: "app",
            protocol: Protocol::Simple,
        };
        let sql = "SELECT handle FROM users WHERE marketing_phone = '+15550100'";
        let cached = LiveDecisions::line(&ctx, sql, &Outcome::Cached(&Verdict::Forward));
        assert_eq!(
            cached,
            "ALLOW    ads-service/advertising: select handle from users where marketing_phone = ?   -- (cached decision)"
        );
        let refused = PgError::forbidden("no catalog");
        let line = LiveDecisions::line(&ctx, "SELECT 'secret'", &Outcome::Refused(&refused));
        assert!(
            line.starts_with("BLOCK    ads-service/advertising: select ?"),
            "{line}"
        );
        assert!(line.ends_with("-- ERROR 42501"), "{line}");
        assert!(!line.contains("secret"), "{line}");
    }
}

//! Fuzz target: the analyser and decider on arbitrary SQL.
//!
//! Inputs: structure-aware statements from [`crate::sqlgen`] and byte mutations of them and of
//! the seed corpus (`fuzz/corpus/sql/`, the engine cases, the ORM corpus). Each input is
//! decided for a random service and purpose, on a thread with a tokio worker's stack.
//!
//! Properties checked on every execution:
//! - no panic, no stack overflow (the process would abort), no hang: a watchdog fails the test
//!   with the input when one decision takes longer than [`CASE_LIMIT`];
//! - an `Allow` carries no forbidden, unmasked use and no `Syntax` / `Unanalysable` rule;
//! - a `Rewrite` masks only output uses, and its SQL, decided again, is allowed as it is;
//! - the caching `Enforcer` gives the same verdict as a fresh `engine::decide` (the cache is
//!   keyed by statement shape, so literal-only variants are also tried).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use pgpurpose::enforce::Enforcer;
use pgpurpose::engine::{decide, Clause, Decision, Rule, SessionView};
use pgpurpose::intercept::{Interceptor, Protocol, StatementContext, Verdict};
use pgpurpose::policy::CompiledPolicy;

use crate::fixtures::{example_catalog, example_policy};
use crate::sqlgen::{mutate, SqlGen};

/// Longest a single decision may take before the fuzzer calls it a hang.
const CASE_LIMIT: Duration = Duration::from_secs(5);

/// The services (and the purposes they may pick) the fuzzer decides for.
const SESSIONS: &[(&str, &str)] = &[
    ("analytics-service", "analytics"),
    ("ads-service", "advertising"),
    ("discovery-service", "discovery"),
    ("auth-service", "security.authentication"),
    ("support-service", "security"),
    ("support-service", "analytics"),
    ("ops-service", "analytics"),
];

/// Seeds: the corpus directory, every engine case and the ORM corpus.
pub fn seed_statements() -> Vec<String> {
    let mut seeds: Vec<String> = crate::corpus_files("fuzz/corpus/sql")
        .into_iter()
        .filter_map(|(_, b)| String::from_utf8(b).ok())
        .collect();
    for (_, bytes) in crate::corpus_files("tests/engine_cases") {
        let text = String::from_utf8(bytes).unwrap_or_default();
        let cases: Vec<serde_yaml::Value> = serde_yaml::from_str(&text).unwrap_or_default();
        seeds.extend(
            cases
                .iter()
                .filter_map(|c| c.get("sql").and_then(|s| s.as_str()).map(str::to_owned)),
        );
    }
    seeds.extend(crate::corpus::orm_corpus().into_iter().map(|s| s.sql));
    seeds
}

/// Check one decision against the properties above; `Err` describes the violation.
fn check(
    sql: &str,
    d: &Decision,
    catalog: &pgpurpose::catalog::Catalog,
    policy: &CompiledPolicy,
    session: &SessionView<'_>,
) -> Result<(), String> {
    let report = d.report();
    match d {
        Decision::Allow(_) | Decision::Rewrite { .. } => {
            for st in &report.statements {
                if matches!(st.rule, Rule::Syntax | Rule::Unanalysable(_)) {
                    return Err(format!("not blocked despite rule {}", st.rule));
                }
                for u in &st.uses {
                    let neutralised = u.masked && u.clause == Clause::Output;
                    if !(u.allowed || neutralised) {
                        return Err(format!(
                            "forbidden use {}.{} in {:?} not blocked",
                            u.table, u.column, u.clause
                        ));
                    }
                }
            }
            if pgpurpose::engine::lexing::lex(sql).is_err() {
                return Err("allowed a text the lexer refuses".into());
            }
        }
        Decision::Block { .. } => {}
    }
    if let Decision::Allow(_) = d {
        if report.statements.iter().any(|s| !s.masked.is_empty()) {
            return Err("allow with masks".into());
        }
    }
    if let Decision::Rewrite { sql: new_sql, .. } = d {
        let again = decide(new_sql, catalog, policy, session);
        if !again.is_allow() {
            return Err(format!(
                "rewrite {new_sql:?} is not allowed when decided again"
            ));
        }
    }
    Ok(())
}

fn verdict_of(d: &Decision) -> Verdict {
    match d {
        Decision::Allow(_) => Verdict::Forward,
        Decision::Rewrite { sql, .. } => Verdict::Rewrite(sql.clone()),
        Decision::Block { error, .. } => Verdict::Block(error.clone()),
    }
}

fn same_kind(a: &Verdict, b: &Verdict) -> bool {
    match (a, b) {
        (Verdict::Forward, Verdict::Forward) => true,
        (Verdict::Rewrite(x), Verdict::Rewrite(y)) => x == y,
        (Verdict::Block(_), Verdict::Block(_)) => true,
        _ => false,
    }
}

/// Replace every digit run by another number: a literal-only variant with the same shape.
fn literal_variant(rng: &mut StdRng, sql: &str) -> String {
    let n = rng.random_range(0..1000).to_string();
    let mut out = String::with_capacity(sql.len());
    let mut in_digits = false;
    for c in sql.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push_str(&n);
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

#[derive(Default, Debug)]
struct Stats {
    executions: u64,
    allow: u64,
    rewrite: u64,
    block: u64,
    generated: u64,
    mutated: u64,
    cache_checks: u64,
}

#[test]
fn fuzz_sql_decisions() {
    let budget = crate::fuzz_budget(20);
    let seed = crate::fuzz_seed();
    println!("fuzz_sql: seed {seed} (PGPURPOSE_FUZZ_SEED), budget {budget:?}");
    let seeds = seed_statements();
    assert!(seeds.len() > 400, "seed corpus too small: {}", seeds.len());
    // What the worker is deciding now, for the watchdog.
    let current = Arc::new(Mutex::new(String::new()));
    let started_ms = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let worker = {
        let (current, started_ms, done) = (current.clone(), started_ms.clone(), done.clone());
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || -> Result<Stats, String> {
                let result = run_worker(seed, budget, &seeds, &current, &started_ms, epoch);
                done.store(1, Ordering::Release);
                result
            })
            .expect("spawn fuzz worker")
    };
    // Watchdog: a decision running longer than CASE_LIMIT is a hang.
    while done.load(Ordering::Acquire) == 0 {
        std::thread::sleep(Duration::from_millis(100));
        let since = started_ms.load(Ordering::Acquire);
        let now = epoch.elapsed().as_millis() as u64;
        if since != 0 && now.saturating_sub(since) > CASE_LIMIT.as_millis() as u64 {
            let sql = current.lock().map(|s| s.clone()).unwrap_or_default();
            panic!("decision took longer than {CASE_LIMIT:?} (hang?) on: {sql:?}");
        }
    }
    let stats = match worker.join() {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("{e}"),
        Err(p) => {
            let sql = current.lock().map(|s| s.clone()).unwrap_or_default();
            panic!(
                "decide panicked on {sql:?}: {:?}",
                p.downcast_ref::<String>()
            );
        }
    };
    println!(
        "fuzz_sql: {} executions in {:.1}s ({} generated, {} mutated; allow {}, rewrite {}, block {}; {} cache comparisons)",
        stats.executions,
        epoch.elapsed().as_secs_f64(),
        stats.generated,
        stats.mutated,
        stats.allow,
        stats.rewrite,
        stats.block,
        stats.cache_checks
    );
    assert!(stats.executions > 100, "too few executions: {stats:?}");
    assert!(
        stats.allow > 0 && stats.rewrite > 0 && stats.block > 0,
        "the inputs do not reach every outcome: {stats:?}"
    );
}

fn run_worker(
    seed: u64,
    budget: Duration,
    seeds: &[String],
    current: &Mutex<String>,
    started_ms: &AtomicU64,
    epoch: Instant,
) -> Result<Stats, String> {
    let catalog = example_catalog();
    let policy = example_policy();
    let enforcer = Enforcer::new(Arc::new(ArcSwap::from_pointee(example_policy())), "app");
    enforcer.set_catalog(example_catalog());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut gen = SqlGen::new(seed ^ 0x5eed);
    let mut stats = Stats::default();
    let deadline = Instant::now() + budget;
    // The seeds first (each once, in order), then generated and mutated inputs until the
    // deadline.
    let mut i = 0usize;
    while Instant::now() < deadline {
        let sql = if i < seeds.len() {
            seeds[i].clone()
        } else if rng.random_bool(0.5) {
            stats.generated += 1;
            gen.statement()
        } else {
            stats.mutated += 1;
            let base = if rng.random_bool(0.5) {
                seeds[rng.random_range(0..seeds.len())].clone()
            } else {
                gen.statement()
            };
            mutate(&mut rng, &base)
        };
        i += 1;
        let (service_name, purpose) = SESSIONS[rng.random_range(0..SESSIONS.len())];
        if let Ok(mut c) = current.lock() {
            c.clone_from(&sql);
        }
        started_ms.store(epoch.elapsed().as_millis() as u64 + 1, Ordering::Release);
        let service = policy
            .service(service_name)
            .ok_or_else(|| format!("no service {service_name}"))?;
        let session = SessionView { service, purpose };
        let d = decide(&sql, &catalog, &policy, &session);
        stats.executions += 1;
        match &d {
            Decision::Allow(_) => stats.allow += 1,
            Decision::Rewrite { .. } => stats.rewrite += 1,
            Decision::Block { .. } => stats.block += 1,
        }
        check(&sql, &d, &catalog, &policy, &session)
            .map_err(|e| format!("{e}\n  service {service_name} ({purpose})\n  sql: {sql:?}"))?;
        // The cache must agree with the engine, for the text and for a literal variant that
        // may hit the entry the text just created.
        if i % 4 == 0 {
            let ctx = StatementContext {
                service: service_name,
                purpose,
                connection_id: 1,
                client_addr: "fuzz",
                database: "app",
                protocol: Protocol::Simple,
            };
            for text in [sql.clone(), literal_variant(&mut rng, &sql)] {
                let cached = enforcer.decide(&ctx, &text);
                let fresh = verdict_of(&decide(&text, &catalog, &policy, &session));
                stats.cache_checks += 1;
                if !same_kind(&cached, &fresh) {
                    return Err(format!(
                        "cache and engine disagree for {service_name} ({purpose}):\n  sql: {text:?}\n  cached: {cached:?}\n  fresh: {fresh:?}"
                    ));
                }
            }
        }
        started_ms.store(0, Ordering::Release);
    }
    Ok(stats)
}

#[test]
fn oracle_catches_a_forbidden_allow() {
    // The property check must be able to fail: an Allow whose report has a forbidden use.
    let catalog = example_catalog();
    let policy = example_policy();
    let service = policy.service("analytics-service").expect("service");
    let session = SessionView {
        service,
        purpose: "analytics",
    };
    let blocked = decide(
        "SELECT id FROM users WHERE phone_2fa = '1'",
        &catalog,
        &policy,
        &session,
    );
    let forged = Decision::Allow(blocked.report().clone());
    assert!(check("SELECT 1", &forged, &catalog, &policy, &session).is_err());
    let fine = decide("SELECT id FROM users", &catalog, &policy, &session);
    assert!(check("SELECT id FROM users", &fine, &catalog, &policy, &session).is_ok());
}

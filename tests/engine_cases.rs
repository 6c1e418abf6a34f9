//! Table-driven decision cases: every tests/engine_cases/*.yaml file holds a list of cases
//! (name, service, optional purpose, sql, expected decision, exact rewritten SQL for rewrites,
//! optional substring of the block message), run against the catalog of examples/schema.sql
//! and the example policy (tests/fixtures/example.rs).

#[path = "fixtures/cases.rs"]
mod cases;
#[path = "fixtures/example.rs"]
mod fixtures;

use std::path::Path;

use cases::{load_case_files, Case, Expect};
use pgpurpose::engine::{decide, Decision, SessionView};

/// Run a case against the fixture policy and, when the service is defined there, against the
/// project's real policy files (policies/), which must decide the same.
fn run_case(case: &Case) -> Result<(), String> {
    run_case_with(case, &fixtures::example_policy())?;
    let real =
        pgpurpose::policy::load::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
            .map_err(|e| format!("policies/ do not load: {e}"))?;
    if real.service(&case.service).is_some() {
        run_case_with(case, &real).map_err(|e| format!("with policies/: {e}"))?;
    }
    Ok(())
}

fn run_case_with(case: &Case, policy: &pgpurpose::policy::CompiledPolicy) -> Result<(), String> {
    let catalog = fixtures::example_catalog();
    let service = policy
        .service(&case.service)
        .ok_or_else(|| format!("unknown service {}", case.service))?;
    let purpose = match &case.purpose {
        Some(p) => p.clone(),
        None => service
            .purposes
            .first()
            .cloned()
            .ok_or("service without purpose")?,
    };
    let session = SessionView {
        service,
        purpose: &purpose,
    };
    let decision = decide(&case.sql, &catalog, policy, &session);
    let got = match &decision {
        Decision::Allow(_) => Expect::Allow,
        Decision::Rewrite { .. } => Expect::Rewrite,
        Decision::Block { .. } => Expect::Block,
    };
    let describe = || match &decision {
        Decision::Allow(r) => format!(
            "allow {:?}",
            r.statements.iter().map(|s| &s.rule).collect::<Vec<_>>()
        ),
        Decision::Rewrite { sql, .. } => format!("rewrite to: {sql}"),
        Decision::Block { error, .. } => format!("block: {}", error.message),
    };
    if std::env::var("ENGINE_CASE_VERBOSE").is_ok() {
        println!("[{}] {}", case.name, describe());
    }
    if got != case.expect {
        return Err(format!("expected {:?}, got {}", case.expect, describe()));
    }
    if let (Decision::Rewrite { sql, .. }, Some(want)) = (&decision, &case.rewritten) {
        if sql.trim() != want.trim() {
            return Err(format!(
                "rewritten SQL differs:\n   got: {sql}\n  want: {want}"
            ));
        }
    }
    if case.expect == Expect::Rewrite && case.rewritten.is_none() {
        return Err(format!(
            "rewrite case without `rewritten`; got: {}",
            describe()
        ));
    }
    if let (Decision::Block { error, .. }, Some(want)) = (&decision, &case.block_contains) {
        if !error.message.contains(want.as_str()) {
            return Err(format!(
                "block message {:?} does not contain {want:?}",
                error.message
            ));
        }
    }
    if let Some(ls) = case.literal_sensitive {
        if decision.report().literal_sensitive != ls {
            return Err(format!("literal_sensitive expected {ls}"));
        }
    }
    Ok(())
}

#[test]
fn engine_cases() {
    let filter = std::env::var("ENGINE_CASE").ok();
    let mut failures = Vec::new();
    let mut total = 0;
    for (f, cases) in load_case_files() {
        let mut n = 0;
        for case in &cases {
            if filter
                .as_ref()
                .is_some_and(|w| !case.name.contains(w.as_str()))
            {
                continue;
            }
            n += 1;
            if let Err(e) = run_case(case) {
                failures.push(format!(
                    "{} / {}:\n  sql: {}\n  {e}",
                    f.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    case.name,
                    case.sql.trim()
                ));
            }
        }
        println!("{}: {n} cases", f.display());
        total += n;
    }
    println!("total: {total} cases, {} failures", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every case's SQL cut at every token boundary, with each single token removed, and with each
/// pair of neighbouring tokens swapped, must be
/// decided without a panic; a rewrite must itself decide as allowed.
#[test]
fn mutated_cases_never_panic_and_rewrites_are_stable() {
    use pgpurpose::engine::lexing;
    let catalog = fixtures::example_catalog();
    let policy = fixtures::example_policy();
    let mut decided = 0;
    for (_, cases) in load_case_files() {
        for case in &cases {
            let Some(service) = policy.service(&case.service) else {
                continue;
            };
            let purpose = case
                .purpose
                .clone()
                .unwrap_or_else(|| service.purposes[0].clone());
            let session = SessionView {
                service,
                purpose: &purpose,
            };
            let Ok(lexed) = lexing::lex(&case.sql) else {
                continue;
            };
            let mut variants = Vec::new();
            for (i, t) in lexed.tokens.iter().enumerate() {
                variants.push(case.sql[..t.start].to_owned());
                variants.push(format!("{}{}", &case.sql[..t.start], &case.sql[t.end..]));
                // Swap with the next token.
                if let Some(n) = lexed.tokens.get(i + 1) {
                    variants.push(format!(
                        "{}{} {}{}",
                        &case.sql[..t.start],
                        &case.sql[n.start..n.end],
                        &case.sql[t.start..t.end],
                        &case.sql[n.end..]
                    ));
                }
            }
            for v in variants {
                let d = decide(&v, &catalog, &policy, &session);
                decided += 1;
                if let Decision::Rewrite { sql, .. } = &d {
                    let again = decide(sql, &catalog, &policy, &session);
                    assert!(again.is_allow(), "{v}\n -> {sql}\n -> {again:?}");
                }
            }
        }
    }
    println!("decided {decided} mutated statements");
    assert!(decided > 1000);
}

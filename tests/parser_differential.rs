//! Parser differential: the analyser's reading of a statement against Postgres's own, on a
//! real Postgres 15 holding the example.
//!
//! sqlparser accepts and reads some SQL differently from Postgres's grammar; a statement the
//! analyser reads one way and Postgres executes another is a bypass. For every statement the
//! engine lets through (allowed, or rewritten: then the rewrite is what Postgres runs), this
//! test asks the live server what it reads (see `differential/plan.rs`):
//! - the columns its plan reads (`EXPLAIN (VERBOSE, FORMAT JSON)` of the prepared statement
//!   under a generic plan), and
//! - the relations its parse-analysis depends on (`pg_depend` of a temporary SQL function whose
//!   body is the statement).
//!
//! Divergences, each a failure:
//! - **leak**: the plan reads a column the session's purpose may not use (not a row filter's);
//! - **unseen column**: the plan reads a column of the example schema that the analyser did not
//!   record as used (in any clause, masked or not) and that no row filter added;
//! - **unseen relation**: Postgres reads a relation (its plan scans it, or its parse depends on
//!   one of its columns) that the analyser did not resolve.
//!
//! The analyser may see *more* than Postgres (columns the planner prunes): that is the safe
//! direction and is not counted.
//!
//! Why the live server rather than libpg_query (`pg_query` crate): it needs bindgen/libclang
//! and compiles Postgres's parser from C (minutes on the 2-core CI machine), and its raw parse
//! tree carries unresolved names; the server resolves names (search_path, views expanded by the
//! rewriter, `*` expanded) exactly as it will when the statement runs, with the same version
//! and catalog the proxy guards.
//!
//! Sources: every engine case, the trap corpus (`fuzz/corpus/sql/`) for several services, the
//! ORM corpus (`tests/corpus/orm/`; every statement must also be valid Postgres), and generated
//! statements (`PGPURPOSE_DIFF_GENERATED`, default 1000; seed `PGPURPOSE_DIFF_SEED`, default
//! fixed so CI is reproducible).

#[path = "fixtures/cases.rs"]
mod cases;
mod common;
#[path = "fuzz/corpus.rs"]
#[allow(dead_code)]
mod corpus;
#[path = "fixtures/example.rs"]
#[allow(dead_code)]
mod fixtures;
#[path = "differential/orm.rs"]
mod orm;
#[path = "differential/plan.rs"]
mod plan;
#[path = "fuzz/sqlgen.rs"]
#[allow(dead_code)]
mod sqlgen;

use std::collections::{BTreeMap, BTreeSet};

use pgpurpose::catalog::load::connect_and_load;
use pgpurpose::catalog::{Catalog, QualifiedName};
use pgpurpose::engine::analyse::{Scan, StatementAnalysis};
use pgpurpose::engine::{analyse_text, decide, lexing, Decision, Rule, SessionView};
use pgpurpose::policy::{ColumnAccess, CompiledPolicy};
use tokio_postgres::{Client, SimpleQueryMessage};

use plan::Rel;

/// One statement to compare, with who sends it.
#[derive(Debug, Clone)]
struct Probe {
    source: String,
    service: String,
    purpose: String,
    sql: String,
}

/// What happened to one probe.
#[derive(Debug, Default)]
struct Tally {
    probes: usize,
    blocked: usize,
    compared: usize,
    multi_statement: usize,
    /// Postgres itself rejects the forwarded text (or cannot prepare it: utility statements).
    pg_rejects: usize,
    not_preparable: usize,
    divergences: Vec<String>,
    /// Control: statements blocked for a forbidden column that Postgres can plan, and how
    /// many of them the oracle would call a leak if they had been forwarded.
    control_blocked: usize,
    control_detected: usize,
    /// Compared statements whose parse-analysis dependencies could be read too.
    deps_compared: usize,
    /// Compared statements per source kind (case, trap, orm, generated).
    compared_by_source: BTreeMap<String, usize>,
    /// ORM statements Postgres rejects (the corpus must be valid SQL).
    orm_invalid: Vec<String>,
}

fn conn_str(user: &str) -> String {
    let pg = common::shared_cluster();
    format!(
        "host={} port={} user={user} dbname={}",
        pg.host(),
        pg.port(),
        common::APP_DB
    )
}

fn probes(catalog_services: &CompiledPolicy) -> Vec<Probe> {
    let mut out = Vec::new();
    let first_purpose = |service: &str| {
        catalog_services
            .service(service)
            .and_then(|s| s.purposes.first().cloned())
            .unwrap_or_default()
    };
    for (file, cases) in cases::load_case_files() {
        let f = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for c in cases {
            out.push(Probe {
                source: format!("case {f} / {}", c.name),
                purpose: c
                    .purpose
                    .clone()
                    .unwrap_or_else(|| first_purpose(&c.service)),
                service: c.service,
                sql: c.sql,
            });
        }
    }
    let sessions = [
        ("analytics-service", "analytics"),
        ("ads-service", "advertising"),
        ("discovery-service", "discovery"),
        ("support-service", "security"),
    ];
    for (path, bytes) in corpus::corpus_files("fuzz/corpus/sql") {
        let Ok(sql) = String::from_utf8(bytes) else {
            continue;
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (service, purpose) in sessions {
            out.push(Probe {
                source: format!("trap {name}"),
                service: service.into(),
                purpose: purpose.into(),
                sql: sql.clone(),
            });
        }
    }
    for st in corpus::orm_corpus() {
        for (service, purpose) in [("ops-service", "analytics"), ("ads-service", "advertising")] {
            out.push(Probe {
                source: format!("orm {}", st.orm),
                service: service.into(),
                purpose: purpose.into(),
                sql: st.sql.clone(),
            });
        }
    }
    let n: usize = std::env::var("PGPURPOSE_DIFF_GENERATED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("PGPURPOSE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_123);
    let mut gen = sqlgen::SqlGen::new(seed);
    let all = [
        ("analytics-service", "analytics"),
        ("ads-service", "advertising"),
        ("discovery-service", "discovery"),
        ("support-service", "security"),
        ("auth-service", "security.authentication"),
    ];
    for i in 0..n {
        let (service, purpose) = all[i % all.len()];
        out.push(Probe {
            source: format!("generated #{i} (seed {seed})"),
            service: service.into(),
            purpose: purpose.into(),
            sql: gen.statement(),
        });
    }
    out
}

/// Every relation the analysis resolved (views, the scans inside them, write targets).
fn analysed_relations(analyses: &[StatementAnalysis]) -> BTreeSet<QualifiedName> {
    fn scans(s: &Scan, out: &mut BTreeSet<QualifiedName>) {
        out.insert(s.relation.clone());
        if let Some(v) = &s.view {
            out.insert(v.name.clone());
            for inner in &v.scans {
                scans(inner, out);
            }
            for u in &v.uses {
                out.insert(u.key.table.clone());
            }
        }
    }
    let mut out = BTreeSet::new();
    for a in analyses {
        for s in &a.scans {
            scans(s, &mut out);
        }
        for w in &a.write_targets {
            out.insert(w.relation.clone());
        }
        if let Some(c) = &a.copy {
            out.insert(c.relation.clone());
        }
        for u in &a.uses {
            out.insert(u.key.table.clone());
        }
    }
    out
}

fn qn(rel: &Rel) -> QualifiedName {
    QualifiedName::new(rel.0.as_str(), rel.1.as_str())
}

/// Only the example's own relations are compared: Postgres expands catalog views
/// (pg_stats, ...) into system tables the proxy's snapshot does not model column by column.
fn in_scope(rel: &Rel) -> bool {
    rel.0 != "pg_catalog" && rel.0 != "information_schema" && !rel.0.starts_with("pg_")
}

/// Run the simple-query `sql` and return the rows' first column values.
async fn rows(client: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let msgs = client.simple_query(sql).await.map_err(|e| {
        e.as_db_error()
            .map(|d| format!("{}: {}", d.code().code(), d.message()))
            .unwrap_or_else(|| e.to_string())
    })?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).map(str::to_owned))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .collect())
}

/// Postgres's reading of `sql`: plan reads and parse-analysis relation dependencies, or the
/// error that stopped it. Runs in a transaction that is rolled back.
async fn postgres_reading(
    client: &Client,
    sql: &str,
    columns_of: &dyn Fn(&Rel) -> Option<Vec<String>>,
) -> Result<(plan::PlanReads, BTreeSet<Rel>), String> {
    rows(client, "BEGIN").await?;
    let result = reading_in_transaction(client, sql, columns_of).await;
    // Prepared statements are not transactional.
    let _ = client.simple_query("ROLLBACK; DEALLOCATE ALL").await;
    result
}

async fn reading_in_transaction(
    client: &Client,
    sql: &str,
    columns_of: &dyn Fn(&Rel) -> Option<Vec<String>>,
) -> Result<(plan::PlanReads, BTreeSet<Rel>), String> {
    // A newline before what follows the statement: it may end in a `--` comment.
    rows(client, &format!("PREPARE pgp_diff AS {sql}\n")).await?;
    let types = rows(
        client,
        "SELECT coalesce(array_to_string(parameter_types::text[], ','), '') FROM pg_prepared_statements WHERE name = 'pgp_diff'",
    )
    .await?;
    let types: Vec<String> = types
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    rows(client, "SET LOCAL plan_cache_mode = force_generic_plan").await?;
    let args = if types.is_empty() {
        String::new()
    } else {
        format!(
            "({})",
            types
                .iter()
                .map(|t| format!("NULL::{t}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let explain = rows(
        client,
        &format!("EXPLAIN (VERBOSE, COSTS OFF, FORMAT JSON) EXECUTE pgp_diff{args}"),
    )
    .await?;
    let json = explain
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .ok_or("EXPLAIN returned nothing")?;
    let reads = plan::plan_reads(&json, columns_of)?;
    // Parse-analysis dependencies, through a SQL-standard function body. Not every statement
    // can be one (e.g. it returns rows of an unknown shape): then only the plan is compared.
    let mut deps = BTreeSet::new();
    rows(client, "SAVEPOINT body").await?;
    let created = rows(
        client,
        &format!(
            "CREATE FUNCTION pg_temp.pgp_diff_body({}) RETURNS void LANGUAGE sql BEGIN ATOMIC {sql}\n; END",
            types.join(", ")
        ),
    )
    .await;
    if created.is_ok() {
        let found = rows(
            client,
            "SELECT n.nspname, c.relname FROM pg_depend d \
             JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_class'::regclass \
             AND d.refobjsubid > 0 \
             AND d.objid = (SELECT oid FROM pg_proc WHERE proname = 'pgp_diff_body' \
                            AND pronamespace = pg_my_temp_schema())",
        )
        .await?;
        for r in found {
            if let (Some(Some(s)), Some(Some(n))) = (r.first(), r.get(1)) {
                deps.insert((s.clone(), n.clone()));
            }
        }
    } else {
        rows(client, "ROLLBACK TO SAVEPOINT body").await?;
    }
    Ok((reads, deps))
}

/// Columns the purpose's row filters of the scanned relations may read (the words of each
/// filter that name a column of its table): the policy's reads, whether the engine added the
/// filter or the statement already carried it.
fn filter_columns(
    relations: &BTreeSet<QualifiedName>,
    catalog: &Catalog,
    policy: &CompiledPolicy,
    purpose: &str,
) -> BTreeSet<(QualifiedName, String)> {
    let mut out = BTreeSet::new();
    for table in relations {
        let Some(rel) = catalog.relation(table) else {
            continue;
        };
        for f in policy.row_filters(table, purpose) {
            let words: BTreeSet<String> = f
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map(str::to_ascii_lowercase)
                .collect();
            for c in &rel.columns {
                if words.contains(&c.name) {
                    out.insert((table.clone(), c.name.clone()));
                }
            }
        }
    }
    out
}

async fn compare(
    client: &Client,
    probe: &Probe,
    catalog: &Catalog,
    policy: &CompiledPolicy,
    tally: &mut Tally,
) {
    tally.probes += 1;
    let Some(service) = policy.service(&probe.service) else {
        return;
    };
    let session = SessionView {
        service,
        purpose: &probe.purpose,
    };
    let d = decide(&probe.sql, catalog, policy, &session);
    let is_orm = probe.source.starts_with("orm ");
    let forwarded = match &d {
        Decision::Allow(_) => probe.sql.clone(),
        Decision::Rewrite { sql, .. } => sql.clone(),
        Decision::Block { report, .. } => {
            tally.blocked += 1;
            // Oracle control: would the oracle have seen the forbidden column?
            let single = lexing::lex(&probe.sql)
                .map(|l| lexing::split_statements(&l).len() == 1)
                .unwrap_or(false);
            if let (Some(Rule::ForbiddenColumn { table, column, .. }), true) =
                (report.statements.last().map(|s| &s.rule), single)
            {
                let columns_of = |r: &Rel| {
                    catalog
                        .relation(&qn(r))
                        .map(|rel| rel.columns.iter().map(|c| c.name.clone()).collect())
                };
                if let Ok((reads, _)) = postgres_reading(client, &probe.sql, &columns_of).await {
                    tally.control_blocked += 1;
                    let key = ((table.schema.clone(), table.name.clone()), column.clone());
                    if reads.columns.contains(&key) {
                        tally.control_detected += 1;
                    } else if std::env::var("PGPURPOSE_DIFF_VERBOSE").is_ok() {
                        println!(
                            "CONTROL MISS {}: {table}.{column}\n    {}",
                            probe.source, probe.sql
                        );
                    }
                }
            }
            if is_orm {
                // Still check that the corpus statement is valid Postgres.
                let columns_of = |_: &Rel| None;
                if let Err(e) = postgres_reading(client, &probe.sql, &columns_of).await {
                    if !is_utility_error(&e) {
                        tally
                            .orm_invalid
                            .push(format!("{}: {e}\n    {}", probe.source, probe.sql));
                    }
                }
            }
            return;
        }
    };
    let single = lexing::lex(&forwarded)
        .map(|l| lexing::split_statements(&l).len() == 1)
        .unwrap_or(false);
    if !single {
        tally.multi_statement += 1;
        return;
    }
    let analyses = match analyse_text(&probe.sql, catalog, policy, &probe.purpose) {
        Ok(a) => a,
        Err(e) => {
            tally.divergences.push(format!(
                "{}: decided {:?} but the analysis fails: {e}\n    {}",
                probe.source,
                kind(&d),
                probe.sql
            ));
            return;
        }
    };
    let columns_of = |r: &Rel| {
        catalog
            .relation(&qn(r))
            .map(|rel| rel.columns.iter().map(|c| c.name.clone()).collect())
    };
    let (reads, deps) = match postgres_reading(client, &forwarded, &columns_of).await {
        Ok(x) => x,
        Err(e) => {
            if is_utility_error(&e) {
                tally.not_preparable += 1;
            } else {
                tally.pg_rejects += 1;
                if std::env::var("PGPURPOSE_DIFF_VERBOSE").is_ok() {
                    println!("PG REJECTS {}: {e}\n    {forwarded}", probe.source);
                }
                if is_orm {
                    tally
                        .orm_invalid
                        .push(format!("{}: {e}\n    {}", probe.source, forwarded));
                }
            }
            return;
        }
    };
    tally.compared += 1;
    if !deps.is_empty() {
        tally.deps_compared += 1;
    }
    let src = probe
        .source
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned();
    *tally.compared_by_source.entry(src).or_default() += 1;
    let seen_rels = analysed_relations(&analyses);
    let used: BTreeSet<(QualifiedName, String)> = d
        .report()
        .statements
        .iter()
        .flat_map(|s| s.uses.iter())
        .map(|u| (u.table.clone(), u.column.clone()))
        .collect();
    let filtered = filter_columns(&seen_rels, catalog, policy, &probe.purpose);
    let mut problems = Vec::new();
    for rel in reads
        .relations
        .iter()
        .chain(deps.iter())
        .filter(|r| in_scope(r))
    {
        if !seen_rels.contains(&qn(rel)) {
            problems.push(format!("unseen relation {}.{}", rel.0, rel.1));
        }
    }
    for (rel, col) in reads.columns.iter().filter(|(r, _)| in_scope(r)) {
        let key = (qn(rel), col.clone());
        if filtered.contains(&key) {
            continue;
        }
        let access = policy.column_access(&key.0, col, &probe.purpose);
        if access != ColumnAccess::Allowed {
            problems.push(format!("leak: Postgres reads {}.{col}", key.0));
        } else if !used.contains(&key) {
            problems.push(format!("unseen column {}.{col}", key.0));
        }
    }
    if !problems.is_empty() {
        tally.divergences.push(format!(
            "{} [{} / {}] decided {}: {}\n    sql: {}\n    forwarded: {}",
            probe.source,
            probe.service,
            probe.purpose,
            kind(&d),
            problems.join("; "),
            probe.sql,
            forwarded
        ));
    }
}

/// Errors that mean "not a plannable statement" rather than "invalid SQL".
fn is_utility_error(e: &str) -> bool {
    // 42601 at PREPARE for SET / SHOW / COPY / DDL: PREPARE takes only plannable statements.
    e.starts_with("42601")
        && (e.contains("syntax error at or near") || e.contains("at end of input"))
        || e.contains("cannot be prepared")
        || e.contains("utility statement")
}

fn kind(d: &Decision) -> &'static str {
    match d {
        Decision::Allow(_) => "allow",
        Decision::Rewrite { .. } => "rewrite",
        Decision::Block { .. } => "block",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyser_and_postgres_read_the_same_relations_and_columns() {
    let catalog = connect_and_load(&conn_str("postgres"))
        .await
        .expect("catalog loads from the example database");
    let policy = fixtures::example_policy();
    let (client, conn) = tokio_postgres::connect(&conn_str("postgres"), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let probes = probes(&policy);
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    let mut by_source: BTreeMap<String, usize> = BTreeMap::new();
    for p in &probes {
        let before = tally.divergences.len();
        compare(&client, p, &catalog, &policy, &mut tally).await;
        if tally.divergences.len() > before {
            let src = p.source.split_whitespace().next().unwrap_or("").to_owned();
            *by_source.entry(src).or_default() += 1;
        }
    }
    println!(
        "parser differential: {} probes in {:.1}s: {} blocked by the engine, {} compared with Postgres, \
         {} multi-statement texts skipped, {} not plannable (utility), {} rejected by Postgres; \
         {} divergences {by_source:?}",
        tally.probes,
        started.elapsed().as_secs_f64(),
        tally.blocked,
        tally.compared,
        tally.multi_statement,
        tally.not_preparable,
        tally.pg_rejects,
        tally.divergences.len()
    );
    println!(
        "parser differential: {} compared with parse dependencies too; compared per source {:?}; oracle control: {} of {} statements blocked \
         for a forbidden column show that column in Postgres's plan",
        tally.deps_compared, tally.compared_by_source, tally.control_detected, tally.control_blocked
    );
    for d in &tally.divergences {
        println!("DIVERGENCE {d}");
    }
    for o in &tally.orm_invalid {
        println!("ORM INVALID {o}");
    }
    assert!(
        tally.compared > 300,
        "too few statements compared: {tally:?}"
    );
    // The oracle must be able to see what the engine blocks: most statements blocked for a
    // forbidden column read it in Postgres's plan (the rest only use it where the planner
    // folds it away, e.g. `count(phone_2fa)` over an empty join).
    assert!(
        tally.control_blocked > 100 && tally.control_detected * 10 >= tally.control_blocked * 8,
        "oracle control: only {} of {} forbidden uses visible",
        tally.control_detected,
        tally.control_blocked
    );
    assert!(
        tally.orm_invalid.is_empty(),
        "{} ORM corpus statements are not valid Postgres",
        tally.orm_invalid.len()
    );
    assert!(
        tally.divergences.is_empty(),
        "{} statements are read differently by the analyser and Postgres",
        tally.divergences.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orm_corpus_acceptance() {
    let catalog = connect_and_load(&conn_str("postgres"))
        .await
        .expect("catalog loads from the example database");
    orm::check_orm_acceptance(&catalog);
}

// The legitimate-query corpus: SQL as Django, Rails ActiveRecord, Hibernate, Prisma and
// SQLAlchemy emit it, written against the example schema (tests/corpus/orm/*.sql; the parser
// differential also runs every statement on the real Postgres, so they are valid SQL), decided
// with the catalog loaded from that database (ORMs introspect pg_catalog at startup).
//
// A statement is *accepted* when the engine decides it without a `Syntax` or `Unanalysable`
// rule: allowed, rewritten, or blocked by a policy rule (forbidden column, missing grant) all
// mean the analyser understood it. The test prints the share per ORM and asserts a floor.

use pgpurpose::catalog::Catalog;
use pgpurpose::engine::{decide, Decision, SessionView};

use crate::corpus::{accepted, orm_corpus as corpus};
use crate::fixtures::example_policy;

/// The service the corpus is decided for: an application service with every grant an ORM
/// may need (DDL for migrations, session control for SET), purpose analytics.
pub const ORM_SERVICE: &str = "ops-service";

/// Share of the corpus the analyser must accept.
const MIN_ACCEPTED: f64 = 0.98;

pub fn check_orm_acceptance(catalog: &Catalog) {
    let policy = example_policy();
    let service = policy.service(ORM_SERVICE).expect("service");
    let session = SessionView {
        service,
        purpose: &service.purposes[0],
    };
    let corpus = corpus();
    assert!(
        corpus.len() >= 100,
        "ORM corpus too small: {}",
        corpus.len()
    );
    let mut per_orm: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut refused = Vec::new();
    for st in &corpus {
        let d = decide(&st.sql, catalog, &policy, &session);
        let e = per_orm.entry(st.orm.clone()).or_default();
        e.1 += 1;
        if accepted(&d) {
            e.0 += 1;
        } else {
            let why = match &d {
                Decision::Block { error, .. } => error.message.clone(),
                _ => String::new(),
            };
            refused.push(format!("[{}] {}\n    -> {why}", st.orm, st.sql));
        }
    }
    let total: usize = per_orm.values().map(|v| v.1).sum();
    let ok: usize = per_orm.values().map(|v| v.0).sum();
    for (orm, (a, n)) in &per_orm {
        println!("orm corpus: {orm}: {a}/{n} accepted");
    }
    let share = ok as f64 / total as f64;
    println!("orm corpus: {ok}/{total} accepted ({:.1}%)", share * 100.0);
    for r in &refused {
        println!("not accepted: {r}");
    }
    assert!(
        share >= MIN_ACCEPTED,
        "only {:.1}% of the ORM corpus is accepted (floor {:.0}%)",
        share * 100.0,
        MIN_ACCEPTED * 100.0
    );
}

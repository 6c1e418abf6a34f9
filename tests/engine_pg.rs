//! The engine against a real Postgres 15 holding the example (examples/*.sql):
//!
//! - the hand-built catalog fixture matches what the catalog loader reads from the database
//!   (relations, columns, `format_type` spellings, `pg_get_viewdef` texts);
//! - every engine case decides the same with the catalog loaded from the database;
//! - every allowed or rewritten single statement is valid Postgres: the text forwarded
//!   (original or rewrite) is prepared, and run inside a rolled-back transaction, as the
//!   service's upstream role; a rewrite returns the same column names and types as the
//!   original.

#[path = "fixtures/cases.rs"]
mod cases;
mod common;
#[path = "fixtures/example.rs"]
mod fixtures;

use cases::{load_case_files, Case, Expect};
use pgpurpose::catalog::load::connect_and_load;
use pgpurpose::catalog::Catalog;
use pgpurpose::engine::{decide, lexing, Decision, SessionView};
use pgpurpose::policy::CompiledPolicy;

fn conn_str(user: &str) -> String {
    let pg = common::shared_cluster();
    format!(
        "host={} port={} user={user} dbname={}",
        pg.host(),
        pg.port(),
        common::APP_DB
    )
}

async fn real_catalog() -> Catalog {
    connect_and_load(&conn_str("postgres"))
        .await
        .expect("catalog loads from the example database")
}

#[tokio::test]
async fn fixture_catalog_matches_the_example_database() {
    let real = real_catalog().await;
    let fixture = fixtures::example_catalog();
    assert_eq!(real.search_path, fixture.search_path);
    let public: Vec<_> = real
        .relations
        .values()
        .filter(|r| r.name.schema == "public")
        .collect();
    for r in &public {
        let f = fixture
            .relation(&r.name)
            .unwrap_or_else(|| panic!("fixture lacks {}", r.name));
        assert_eq!(f.kind, r.kind, "{}", r.name);
        assert_eq!(f.columns, r.columns, "{}", r.name);
        assert_eq!(f.view_definition, r.view_definition, "{}", r.name);
    }
    assert_eq!(
        public.len(),
        fixture
            .relations
            .values()
            .filter(|r| r.name.schema == "public")
            .count()
    );
    // System relations of the fixture are subsets of the real ones.
    for f in fixture
        .relations
        .values()
        .filter(|r| r.name.schema != "public")
    {
        let r = real
            .relation(&f.name)
            .unwrap_or_else(|| panic!("database lacks {}", f.name));
        for c in &f.columns {
            assert!(r.columns.contains(c), "{}.{} differs", f.name, c.name);
        }
    }
}

fn session_purpose(policy: &CompiledPolicy, case: &Case) -> String {
    case.purpose
        .clone()
        .unwrap_or_else(|| policy.service(&case.service).expect("service").purposes[0].clone())
}

fn decide_case(case: &Case, catalog: &Catalog, policy: &CompiledPolicy) -> Decision {
    let service = policy.service(&case.service).expect("service");
    let purpose = session_purpose(policy, case);
    decide(
        &case.sql,
        catalog,
        policy,
        &SessionView {
            service,
            purpose: &purpose,
        },
    )
}

fn kind(d: &Decision) -> Expect {
    match d {
        Decision::Allow(_) => Expect::Allow,
        Decision::Rewrite { .. } => Expect::Rewrite,
        Decision::Block { .. } => Expect::Block,
    }
}

#[tokio::test]
async fn cases_decide_the_same_with_the_loaded_catalog() {
    let real = real_catalog().await;
    let policy = fixtures::example_policy();
    let mut failures = Vec::new();
    for (_, cases) in load_case_files() {
        for case in &cases {
            let with_fixture = decide_case(case, &fixtures::example_catalog(), &policy);
            let with_real = decide_case(case, &real, &policy);
            let same = match (&with_fixture, &with_real) {
                (Decision::Rewrite { sql: a, .. }, Decision::Rewrite { sql: b, .. }) => a == b,
                (a, b) => kind(a) == kind(b),
            };
            if !same {
                failures.push(format!(
                    "{}: fixture {:?} vs database {:?}",
                    case.name,
                    describe(&with_fixture),
                    describe(&with_real)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn describe(d: &Decision) -> String {
    match d {
        Decision::Allow(_) => "allow".into(),
        Decision::Rewrite { sql, .. } => format!("rewrite {sql}"),
        Decision::Block { error, .. } => format!("block {}", error.message),
    }
}

/// The upstream role a case's service connects as (the example roles; others run as the
/// superuser).
fn upstream_role(service: &str) -> &'static str {
    match service {
        "auth-service" => "app_auth",
        "ads-service" => "app_ads",
        "discovery-service" => "app_discovery",
        "analytics-service" => "app_analytics",
        "support-service" => "app_support",
        _ => "postgres",
    }
}

async fn connect(user: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&conn_str(user), tokio_postgres::NoTls)
        .await
        .expect("connect to the example database");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

type Columns = Vec<(String, String)>;

async fn describe_columns(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Columns, tokio_postgres::Error> {
    let st = client.prepare(sql).await?;
    Ok(st
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_().name().to_owned()))
        .collect())
}

/// Run `sql` inside a transaction that is rolled back.
async fn run_rolled_back(client: &tokio_postgres::Client, sql: &str) -> Result<(), String> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| e.to_string())?;
    let r = client.batch_execute(sql).await.map_err(|e| {
        e.as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_else(|| e.to_string())
    });
    let _ = client.batch_execute("ROLLBACK").await;
    // PREPARE outlives transactions.
    let _ = client.batch_execute("DEALLOCATE ALL").await;
    r
}

fn single_statement(sql: &str) -> bool {
    lexing::lex(sql)
        .map(|l| lexing::split_statements(&l).len() == 1)
        .unwrap_or(false)
}

/// Statements that cannot run inside the test's own transaction or need outside state.
fn runnable(sql: &str) -> bool {
    let first = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    !matches!(
        first.as_str(),
        "begin"
            | "start"
            | "commit"
            | "end"
            | "abort"
            | "rollback"
            | "savepoint"
            | "release"
            | "fetch"
            | "move"
            | "close"
            | "execute"
            | "deallocate"
            | "copy"
            | "vacuum"
            | "cluster"
            | "reindex"
            | "discard"
            | "do"
    )
}

#[tokio::test]
async fn forwarded_statements_are_valid_postgres_with_the_same_columns() {
    let policy = fixtures::example_policy();
    let catalog = fixtures::example_catalog();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (_, cases) in load_case_files() {
        for case in &cases {
            if case.expect == Expect::Block || !single_statement(&case.sql) {
                continue;
            }
            let decision = decide_case(case, &catalog, &policy);
            let forwarded = match &decision {
                Decision::Allow(_) => case.sql.clone(),
                Decision::Rewrite { sql, .. } => sql.clone(),
                Decision::Block { .. } => continue,
            };
            let client = connect(upstream_role(&case.service)).await;
            let original = describe_columns(&client, &case.sql).await;
            let Ok(original) = original else {
                // Statements Postgres cannot prepare (utility commands, references to objects
                // the cases assume) are only run below when the original runs.
                if runnable(&case.sql) && run_rolled_back(&client, &case.sql).await.is_ok() {
                    if let Err(e) = run_rolled_back(&client, &forwarded).await {
                        failures.push(format!(
                            "{}: forwarded text fails: {e}\n  {forwarded}",
                            case.name
                        ));
                    }
                    checked += 1;
                }
                continue;
            };
            checked += 1;
            match describe_columns(&client, &forwarded).await {
                Ok(cols) if cols == original => {}
                Ok(cols) => failures.push(format!(
                    "{}: columns differ: {original:?} vs {cols:?}\n  {forwarded}",
                    case.name
                )),
                Err(e) => failures.push(format!(
                    "{}: rewrite does not prepare: {}\n  {forwarded}",
                    case.name,
                    e.as_db_error()
                        .map(|d| d.message().to_owned())
                        .unwrap_or_else(|| e.to_string())
                )),
            }
            if runnable(&case.sql) && run_rolled_back(&client, &case.sql).await.is_ok() {
                if let Err(e) = run_rolled_back(&client, &forwarded).await {
                    failures.push(format!(
                        "{}: forwarded text fails: {e}\n  {forwarded}",
                        case.name
                    ));
                }
            }
        }
    }
    println!("checked {checked} forwarded statements against Postgres");
    assert!(checked > 100, "too few statements checked: {checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Queries drivers, ORMs and psql send on their own: with the catalog read from the database
/// (functions included) they must pass for a service that may read the tables involved.
#[tokio::test]
async fn typical_client_queries_pass_with_the_loaded_catalog() {
    let real = real_catalog().await;
    let policy = fixtures::example_policy();
    let service = policy.service("analytics-service").expect("service");
    let queries = [
        // psql \dt
        "SELECT n.nspname as \"Schema\", c.relname as \"Name\", \
         CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' \
         WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' \
         WHEN 'p' THEN 'partitioned table' END as \"Type\", \
         pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\" \
         FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam \
         WHERE c.relkind IN ('r','p','') AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' \
         AND n.nspname <> 'information_schema' AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2",
        // psql \d users (first query)
        "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c \
         LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname OPERATOR(pg_catalog.~) '^(users)$' COLLATE pg_catalog.default \
         AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3",
        // JDBC / libpq session setup
        "SET extra_float_digits = 3",
        "SET application_name = 'PostgreSQL JDBC Driver'",
        "SELECT version()",
        "SHOW TRANSACTION ISOLATION LEVEL",
        "SELECT typname, oid FROM pg_catalog.pg_type WHERE typname = ANY($1)",
        "SELECT t.oid, t.typname FROM pg_catalog.pg_type t WHERE t.oid = 'users'::regclass",
        // ORM-style statements
        "SELECT \"users\".\"id\", \"users\".\"handle\" FROM \"users\" WHERE \"users\".\"id\" = $1 LIMIT $2",
        "SELECT COUNT(*) AS \"__count\" FROM \"posts\" WHERE (\"posts\".\"user_id\" = 3)",
        "INSERT INTO \"posts\" (\"user_id\", \"body\") VALUES ($1, $2) RETURNING \"posts\".\"id\"",
        "UPDATE \"posts\" SET \"body\" = $1 WHERE \"posts\".\"id\" = $2",
        "SELECT EXISTS(SELECT 1 FROM users WHERE id = $1)",
        "SELECT information_schema.columns.column_name FROM information_schema.columns WHERE table_name = 'users'",
    ];
    let mut failures = Vec::new();
    for q in queries {
        let d = decide(
            q,
            &real,
            &policy,
            &SessionView {
                service,
                purpose: "analytics",
            },
        );
        if !d.is_allow() {
            failures.push(format!("{q}\n  -> {}", describe(&d)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! Non-interference, the product's oracle: what ads-service receives through the proxy must
//! not depend on data collected for `security`.
//!
//! Copies of the example database that differ only in the values of the security-tagged
//! columns ([`copies`]) each get their own proxy (catalog from that copy, `upstream.database`
//! fixed to it). The statements of `tests/non_interference/statements.sql` — allowed,
//! rewritten and refused alike — are sent as ads-service through each proxy ([`runner`]), and
//! everything the client receives is compared frame by frame: RowDescription (names, type
//! OIDs), every value, command tags, errors (SQLSTATE, message, every field), notices,
//! transaction status. Any difference is a leak.
//!
//! Controls keep the oracle honest: a twin copy with the same values as the first must answer
//! identically (otherwise a statement is not deterministic and proves nothing); the set must
//! contain many refusals, rows and clean answers; a proxy whose policy lets ads-service use
//! the 2FA phone and login email must show many differences; and the statements sent
//! directly to the copies as ads-service's upstream role must differ for many statements
//! (otherwise the copies or the statements could not reveal a leak).
//!
//! `ads_answers_do_not_depend_on_security_values` scrambles the values keeping their lengths
//! (the tables keep their sizes); `ads_answers_do_not_depend_on_security_value_sizes` changes
//! lengths and NULLs, so the size of the security data changes too.

mod common;

#[path = "non_interference/copies.rs"]
mod copies;
#[path = "non_interference/runner.rs"]
mod runner;

use copies::Values;
use std::path::Path;

use common::{ProxyConfig, ProxyProcess, WrittenConfig, ADS, APP_DB};
use pgpurpose::localpg::LocalCluster;
use runner::{Entry, Login, Transcript};

/// At least this many statements in the file (the issue asks for a large, varied set).
const MIN_STATEMENTS: usize = 150;

fn statements() -> Vec<Entry> {
    let path = common::repo_root().join("tests/non_interference/statements.sql");
    runner::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A proxy in front of `copy`, reading its catalog from it and sending every session to it,
/// with the repository's policies or those in `policies`.
fn proxy_for(copy: &LocalCluster, policies: Option<&Path>) -> (WrittenConfig, ProxyProcess) {
    let mut cfg = ProxyConfig::new(copy);
    if let Some(p) = policies {
        cfg.policies = p.to_path_buf();
    }
    cfg.upstream_database = Some(APP_DB.into());
    cfg.catalog_database = APP_DB.into();
    let written = common::write_config(&cfg);
    let proxy = common::spawn_proxy(&written.path);
    (written, proxy)
}

/// The repository's policies with the security-tagged columns of `users` also allowed for
/// advertising: a policy that leaks, which the oracle must catch.
fn leaking_policies() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgpurpose-leaking-policy-")
        .tempdir()
        .expect("temp dir");
    let source = common::repo_root().join("policies");
    for entry in std::fs::read_dir(&source).expect("policies/") {
        let path = entry.expect("policy file").path();
        // policies/tests/ holds policy tests, not policy.
        if !path.is_file() {
            continue;
        }
        let mut text = std::fs::read_to_string(&path).expect("read policy");
        if path.file_name().is_some_and(|n| n == "tables.yaml") {
            for column in ["email_login", "phone_2fa"] {
                let tagged = format!("{column}: [security]");
                assert!(text.contains(&tagged), "tables.yaml changed shape");
                text = text.replace(&tagged, &format!("{column}: [security, advertising]"));
            }
        }
        std::fs::write(dir.path().join(path.file_name().expect("name")), text)
            .expect("write policy");
    }
    dir
}

fn as_ads(port: u16) -> Login {
    Login {
        port,
        user: ADS.name.into(),
        password: Some(ADS.password.into()),
    }
}

fn as_upstream_role(copy: &LocalCluster) -> Login {
    Login {
        port: copy.port(),
        user: ADS.upstream_role.into(),
        password: None,
    }
}

/// Entries whose transcripts differ, each described with both (labelled) answers.
fn differences(
    entries: &[Entry],
    (label_a, a): (&str, &[Transcript]),
    (label_b, b): (&str, &[Transcript]),
) -> Vec<String> {
    entries
        .iter()
        .zip(a.iter().zip(b))
        .filter(|(_, (x, y))| x != y)
        .map(|(e, (x, y))| {
            format!(
                "{}\n{}",
                e.describe(),
                runner::explain_difference((label_a, x), (label_b, y), 12)
            )
        })
        .collect()
}

fn differing_lines(entries: &[Entry], a: &[Transcript], b: &[Transcript]) -> Vec<usize> {
    entries
        .iter()
        .zip(a.iter().zip(b))
        .filter(|(_, (x, y))| x != y)
        .map(|(e, _)| e.line)
        .collect()
}

/// The superuser's answer to `sql` on `copy`.
fn on(copy: &LocalCluster, sql: &str) -> String {
    copy.psql(APP_DB, sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .trim()
        .to_owned()
}

/// Makes a copy with the example's values, its twin and a copy with `values`, runs the
/// statements through a proxy in front of each, checks the controls, and returns the leaks
/// (differences between the example copy and the other one).
async fn leaks_against(values: Values) -> Vec<String> {
    let entries = statements();
    assert!(
        entries.len() >= MIN_STATEMENTS,
        "only {} statements in statements.sql",
        entries.len()
    );
    // Made in parallel: each is an initdb, a server start and the example loaded.
    let made = [Values::Example, Values::Example, values]
        .map(|v| tokio::task::spawn_blocking(move || copies::make_copy(v)));
    let mut made_copies = Vec::new();
    for m in made {
        made_copies.push(m.await.expect("making a copy"));
    }
    let [example, twin, other] = &made_copies[..] else {
        unreachable!("three copies")
    };

    // The copies really differ in their security data, statistics included.
    let matches =
        "SELECT count(*) FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa";
    assert_ne!(
        on(example, matches),
        on(other, matches),
        "Tailored Audiences matches"
    );
    let stats = "SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'users' AND attname = 'email_login'";
    assert_ne!(
        on(example, stats),
        on(other, stats),
        "pg_stats of email_login"
    );
    let open =
        "SELECT md5(string_agg(concat_ws('|', id, handle, marketing_email, marketing_phone, \
                ads_opt_in, discoverable, created_at), ',' ORDER BY id)) FROM users";
    assert_eq!(
        on(example, open),
        on(other, open),
        "untagged columns must be equal"
    );

    let (_ca, pa) = proxy_for(example, None);
    let (_ct, pt) = proxy_for(twin, None);
    let (_cb, pb) = proxy_for(other, None);
    let (ta, tt, tb) = tokio::join!(
        runner::run_all(as_ads(pa.port()), &entries),
        runner::run_all(as_ads(pt.port()), &entries),
        runner::run_all(as_ads(pb.port()), &entries),
    );

    // Control 1: identical data must give identical answers.
    let unstable = differences(&entries, ("example copy", &ta), ("its twin", &tt));
    assert!(
        unstable.is_empty(),
        "{} statements answer differently on two copies holding the same data; they are not \
         deterministic and cannot serve the test (fix statements.sql):\n\n{}",
        unstable.len(),
        unstable.join("\n\n")
    );

    // Control 2: the set exercises the proxy (refusals, rows, clean answers).
    let refused = ta.iter().filter(|t| runner::has_error(t, "42501")).count();
    let with_rows = ta.iter().filter(|t| runner::has_rows(t)).count();
    let clean = ta.iter().filter(|t| runner::is_clean(t)).count();
    assert!(refused >= 100, "only {refused} statements were refused");
    assert!(with_rows >= 70, "only {with_rows} statements returned rows");
    assert!(clean >= 70, "only {clean} statements ran without error");
    let leaks = differences(
        &entries,
        ("copy with the example's values", &ta),
        (&format!("copy with {values:?} values"), &tb),
    );

    // Control 3: through a proxy whose policy lets ads-service use the security columns, the
    // oracle sees the difference. (Run before the direct control below: sent directly, the
    // writes in the file change the two copies differently.)
    let policies = leaking_policies();
    let (_cla, pla) = proxy_for(example, Some(policies.path()));
    let (_clb, plb) = proxy_for(other, Some(policies.path()));
    let (la, lb) = tokio::join!(
        runner::run_all(as_ads(pla.port()), &entries),
        runner::run_all(as_ads(plb.port()), &entries),
    );
    let caught = differing_lines(&entries, &la, &lb);
    assert!(
        caught.len() >= 40,
        "a leaking policy shows in only {} answers (lines {caught:?})",
        caught.len()
    );

    // Control 4: sent directly (no proxy), many answers depend on the security data.
    let (da, db) = tokio::join!(
        runner::run_all(as_upstream_role(example), &entries),
        runner::run_all(as_upstream_role(other), &entries),
    );
    let sensitive = differing_lines(&entries, &da, &db);
    assert!(
        sensitive.len() >= 60,
        "only {} statements answer differently without the proxy (lines {sensitive:?})",
        sensitive.len()
    );
    eprintln!(
        "non-interference: {} statements; through the proxy {refused} refused, {with_rows} with \
         rows, {clean} clean; a leaking policy shows in {} answers; without the proxy {} answers \
         differ",
        entries.len(),
        caught.len(),
        sensitive.len()
    );
    leaks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_answers_do_not_depend_on_security_values() {
    let leaks = leaks_against(Values::Scrambled).await;
    assert!(
        leaks.is_empty(),
        "{} LEAKS: ads-service's answers differ between copies that differ only in \
         security-tagged values:\n\n{}",
        leaks.len(),
        leaks.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_answers_do_not_depend_on_security_value_sizes() {
    let leaks = leaks_against(Values::Resized).await;
    assert!(
        leaks.is_empty(),
        "{} LEAKS: ads-service's answers differ between copies whose security-tagged values \
         differ in length and NULLness:\n\n{}",
        leaks.len(),
        leaks.join("\n\n")
    );
}

/// The smallest form of the size leak (found by this oracle, fixed by refusing size functions,
/// protecting `pg_class` size columns and refusing EXPLAIN over relations with forbidden columns): one copy, ads-service asks for sizes, the security
/// data grows (a superuser lengthens `login_events.user_agent` and compacts the table), the
/// same questions get other answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_of_security_tagged_tables_do_not_reach_ads_service() {
    let copy = tokio::task::spawn_blocking(|| copies::make_copy(Values::Example))
        .await
        .expect("making a copy");
    let (_cfg, proxy) = proxy_for(&copy, None);
    let questions: Vec<Entry> = [
        "SELECT pg_relation_size('login_events');",
        "SELECT relpages FROM pg_class WHERE relname = 'login_events';",
        "EXPLAIN SELECT * FROM login_events;",
    ]
    .iter()
    .enumerate()
    .map(|(i, sql)| Entry {
        line: i + 1,
        mode: runner::Mode::Simple,
        sql: (*sql).to_owned(),
    })
    .collect();
    // The proxy now refuses or masks these questions; what matters is that the answers do
    // not change when the security data does.
    let before = runner::run_all(as_ads(proxy.port()), &questions).await;
    on(
        &copy,
        "UPDATE login_events SET user_agent = user_agent || repeat('x', 40); \
         VACUUM FULL login_events; ANALYZE login_events;",
    );
    let after = runner::run_all(as_ads(proxy.port()), &questions).await;
    let leaks = differences(
        &questions,
        ("before the security data grew", &before),
        ("after", &after),
    );
    assert!(
        leaks.is_empty(),
        "the size of login_events (tagged security) reaches ads-service:\n\n{}",
        leaks.join("\n\n")
    );
}

#[test]
fn the_statement_file_reads_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sql");
    std::fs::write(
        &path,
        "-- comment\nSELECT 1;\n\nSELECT\n  2;\n--@ extended binary params: 1, NULL | 2, x\n\
         SELECT $1, $2;\nBEGIN; SELECT 3; COMMIT;\n",
    )
    .unwrap();
    let entries = runner::load(&path).unwrap();
    let got: Vec<(usize, &str)> = entries.iter().map(|e| (e.line, e.sql.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "SELECT 1;"),
            (4, "SELECT\n  2;"),
            (7, "SELECT $1, $2;"),
            (8, "BEGIN; SELECT 3; COMMIT;")
        ]
    );
    assert_eq!(
        entries[2].mode,
        runner::Mode::Extended {
            params: vec![
                vec![Some("1".into()), None],
                vec![Some("2".into()), Some("x".into())]
            ],
            binary: true
        }
    );
    assert_eq!(entries[3].mode, runner::Mode::Simple);
    std::fs::write(&path, "SELECT 1\n").unwrap();
    assert!(
        runner::load(&path).is_err(),
        "an unterminated entry is an error"
    );
    std::fs::write(&path, "--@ something\nSELECT 1;\n").unwrap();
    assert!(
        runner::load(&path).is_err(),
        "an unknown directive is an error"
    );
}

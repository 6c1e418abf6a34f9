//! The DBA's subcommands through the binary: output and exit codes (0 clean, 1 findings,
//! 2 trouble).

use std::path::Path;

use pgpurpose::audit::record::{seal, Decision, Event, Record, StatementEvent, GENESIS};

use super::{pgpurpose, pgpurpose_in, policy_copy, shown, stdout, upstream_url};

#[test]
fn test_runs_the_shipped_policy_tests_from_the_repo_root_without_a_database() {
    let out = pgpurpose(&["test"], None);
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    let text = stdout(&out);
    assert!(text.contains("policies/tests/advertising.yaml"), "{text}");
    assert!(
        text.contains("  ok    ads-service cannot join advertisers' lists on the 2FA phone"),
        "{text}"
    );
    let summary = text.lines().last().unwrap_or("");
    assert!(
        summary.ends_with(" passed, 0 failed") && !summary.starts_with("0 "),
        "{text}"
    );
}

#[test]
fn a_failing_policy_test_exits_1_with_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.yaml");
    std::fs::write(
        &file,
        "- name: expects the 2FA join to be allowed\n  service: ads-service\n  sql: SELECT count(*) FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa\n  expect: allow\n",
    )
    .unwrap();
    let out = pgpurpose(&["test", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let text = stdout(&out);
    assert!(
        text.contains("  FAIL  expects the 2FA join to be allowed"),
        "{text}"
    );
    assert!(text.contains("- expected: ALLOW"), "{text}");
    assert!(
        text.contains(
            "+ got:      BLOCK (forbidden column public.users.phone_2fa in a join condition)"
        ),
        "{text}"
    );
    assert!(text.contains("0 passed, 1 failed"), "{text}");

    // Run from elsewhere, the default snapshot is not found: trouble, with a hint.
    let out = pgpurpose_in(
        dir.path(),
        &[
            "test",
            "--policies",
            common_policies().to_str().unwrap(),
            file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("examples/catalog.json"),
        "{}",
        shown(&out)
    );
}

fn common_policies() -> std::path::PathBuf {
    super::common::repo_root().join("policies")
}

#[test]
fn explain_reads_sql_from_an_argument_or_stdin() {
    let out = pgpurpose(
        &[
            "explain",
            "--service",
            "ads-service",
            "SELECT handle, phone_2fa FROM users",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    let text = stdout(&out);
    assert!(text.contains("decision:  REWRITE"), "{text}");
    assert!(text.contains("FORBIDDEN, masked"), "{text}");
    assert!(
        text.contains("rewritten SQL:\n  SELECT handle, NULL::text AS \"phone_2fa\" FROM (SELECT * FROM \"public\".\"users\" WHERE (ads_opt_in)) AS \"users\""),
        "{text}"
    );

    let out = pgpurpose(
        &["explain", "--service", "ads-service"],
        Some("SELECT handle FROM users WHERE phone_2fa = '+15550100'"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let text = stdout(&out);
    assert!(text.contains("decision:  BLOCK (ERROR 42501)"), "{text}");
    assert!(
        text.contains("rule:    forbidden column public.users.phone_2fa in WHERE"),
        "{text}"
    );

    let out = pgpurpose(
        &["explain", "--service", "support-service", "SELECT 1"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));
    assert!(stdout(&out).contains("several purposes"), "{}", shown(&out));
}

#[test]
fn diff_lists_statements_whose_decision_changes() {
    let new = policy_copy();
    let tables = new.path().join("tables.yaml");
    let text = std::fs::read_to_string(&tables).unwrap();
    // The mistake the tool exists to catch: the 2FA phone opened to advertising.
    std::fs::write(
        &tables,
        text.replace(
            "      phone_2fa: [security]\n",
            "      phone_2fa: [security, advertising]\n",
        ),
    )
    .unwrap();
    let out = pgpurpose(
        &[
            "diff",
            "policies",
            new.path().to_str().unwrap(),
            "--tests",
            "policies/tests",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let text = stdout(&out);
    assert!(
        text.contains("policies/tests/advertising.yaml: ads-service cannot join advertisers' lists on the 2FA phone"),
        "{text}"
    );
    assert!(
        text.contains(
            "  - old: BLOCK (forbidden column public.users.phone_2fa in a join condition)"
        ),
        "{text}"
    );
    assert!(text.contains("  + new: REWRITE"), "{text}");
    // Statements of other services do not change.
    assert!(!text.contains("auth-service uses the 2FA phone"), "{text}");
    let changed = text
        .lines()
        .find(|l| l.ends_with("statements change decision"))
        .unwrap_or_default();
    assert!(changed.starts_with("5 of 16"), "{text}");

    let same = pgpurpose(&["diff", "policies", "policies"], None);
    assert_eq!(same.status.code(), Some(0), "{}", shown(&same));
    assert!(stdout(&same).contains("0 of 16 statements change decision"));

    // From an audit log: statement records with normalised SQL.
    let log = audit_log(
        new.path(),
        &[
            (
                "ads-service",
                "advertising",
                "select count ( * ) from users u join advertiser_list_entries e on e . phone = u . phone_2fa where u . id > ?",
            ),
            ("analytics-service", "analytics", "select country from users limit ?"),
            (
                "ads-service",
                "advertising",
                "select count ( * ) from users u join advertiser_list_entries e on e . phone = u . phone_2fa where u . id > ?",
            ),
        ],
    );
    let out = pgpurpose(
        &[
            "diff",
            "policies",
            new.path().to_str().unwrap(),
            "--audit",
            log.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let text = stdout(&out);
    assert!(text.contains("(2 records)"), "{text}");
    assert!(
        text.contains("where u . id > '0'"),
        "placeholders are replayed as literals: {text}"
    );
    assert!(text.contains("1 of 2 statements change decision"), "{text}");
}

/// An audit log file in `dir` with one sealed statement record per (service, purpose, sql).
fn audit_log(dir: &Path, statements: &[(&str, &str, &str)]) -> std::path::PathBuf {
    let mut prev = GENESIS.to_owned();
    let mut lines = String::new();
    for (i, (service, purpose, sql)) in statements.iter().enumerate() {
        let record = Record {
            seq: i as u64 + 1,
            time: "2026-11-23T14:00:00.000000Z".into(),
            instance: "0011".into(),
            event: Event::Statement(StatementEvent {
                connection_id: 1,
                session_id: "0011-1".into(),
                service: (*service).into(),
                purpose: (*purpose).into(),
                client_addr: "127.0.0.1:1".into(),
                database: "app".into(),
                protocol: "simple".into(),
                fingerprint: format!("{:016x}", pgpurpose::engine::shape::fnv1a64(sql.as_bytes())),
                sql: (*sql).into(),
                decision: Decision::Allow,
                rule: "all column uses allowed".into(),
                statements: vec![],
                rewrite: None,
                sqlstate: None,
                cached: false,
                policy_version: "v".into(),
                catalog_version: 1,
            }),
            prev: prev.clone(),
        };
        let (line, hash) = seal(&serde_json::to_string(&record).unwrap());
        prev = hash;
        lines.push_str(&line);
        lines.push('\n');
    }
    lines.push_str("{\"torn\n");
    let path = dir.join("audit.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

#[test]
fn check_and_catalog_dump_against_a_live_database() {
    let url = upstream_url();
    let out = pgpurpose(&["check", "--upstream", &url], None);
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    let text = stdout(&out);
    assert!(text.contains("0 error(s)"), "{text}");
    assert!(
        text.contains(
            "warning: column `public.users.birth_year` (integer) looks like a date of birth"
        ),
        "{text}"
    );
    let out = pgpurpose(&["check", "--upstream", &url, "--deny-warnings"], None);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));

    // A tag on a column the database lacks and a service whose role does not exist.
    let bad = policy_copy();
    for (file, from, to) in [
        (
            "tables.yaml",
            "      marketing_phone: [advertising]\n",
            "      marketing_phone: [advertising]\n      fax_number: [advertising]\n",
        ),
        ("services.yaml", "user: app_ads\n", "user: app_adz\n"),
    ] {
        let path = bad.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} changed shape");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }
    let out = pgpurpose(
        &[
            "check",
            "--policies",
            bad.path().to_str().unwrap(),
            "--upstream",
            &url,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "tables.yaml:14:7: error: column `fax_number` does not exist in `public.users`"
        ),
        "{text}"
    );
    assert!(
        text.contains("error: service `ads-service` connects upstream as role `app_adz`, which does not exist"),
        "{text}"
    );
    assert!(text.contains("2 error(s)"), "{text}");

    // A policy file that does not load: file:line, exit 1.
    std::fs::write(
        bad.path().join("zz.yaml"),
        "tables:\n  users:\n    colums: {}\n",
    )
    .unwrap();
    let out = pgpurpose(&["check", "--policies", bad.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert!(stdout(&out).contains("zz.yaml:3:"), "{}", shown(&out));

    // The database cannot be reached: exit 2.
    let port = pgpurpose::localpg::free_port().unwrap();
    let out = pgpurpose(
        &[
            "check",
            "--upstream",
            &format!("host=127.0.0.1 port={port} user=postgres connect_timeout=2"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", shown(&out));

    // catalog dump writes a snapshot that explain can use offline, deciding as the live one.
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("catalog.json");
    let out = pgpurpose(
        &[
            "catalog",
            "dump",
            "--upstream",
            &url,
            "--output",
            snapshot.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    let sql =
        "SELECT count(*) FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa";
    let offline = pgpurpose(
        &[
            "explain",
            "--service",
            "ads-service",
            "--catalog",
            snapshot.to_str().unwrap(),
            sql,
        ],
        None,
    );
    let live = pgpurpose(
        &[
            "explain",
            "--service",
            "ads-service",
            "--upstream",
            &url,
            sql,
        ],
        None,
    );
    assert_eq!(offline.status.code(), Some(1), "{}", shown(&offline));
    assert_eq!(live.status.code(), Some(1), "{}", shown(&live));
    let body = |o: &std::process::Output| {
        stdout(o)
            .split_once("\n\n")
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default()
    };
    assert_eq!(body(&offline), body(&live));
    assert!(
        body(&live).contains("public.users.phone_2fa"),
        "{}",
        shown(&live)
    );
    // The shipped snapshot is the example schema's: same decisions as the live database.
    let shipped = pgpurpose(&["explain", "--service", "ads-service", sql], None);
    assert_eq!(body(&shipped), body(&live));
}

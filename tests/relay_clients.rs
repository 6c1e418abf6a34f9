//! Real clients through the proxy binary: `psql`, `pgbench` (simple, extended and prepared
//! protocol) and a foreign driver (Python psycopg 3, `tests/clients/psycopg_smoke.py`).
//!
//! The service used is `analytics-service` (purpose `analytics`, upstream role
//! `app_analytics`); the tables these tests create are untagged, so the example policy allows
//! them. They are created before the proxy starts so they are in its catalog snapshot.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{Service, ANALYTICS, APP_DB};
use pgpurpose::localpg::{LocalCluster, SUPERUSER};

/// The service every test here connects as.
const SERVICE: Service = ANALYTICS;

/// Creates the tables and grants the tests need, once per test binary.
fn prepared_cluster() -> &'static LocalCluster {
    static READY: OnceLock<()> = OnceLock::new();
    let pg = common::shared_cluster();
    READY.get_or_init(|| {
        let role = SERVICE.upstream_role;
        // The role normally comes from examples/roles.sql; create it if that file is absent.
        pg.psql(
            APP_DB,
            &format!(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                     CREATE ROLE {role} LOGIN PASSWORD '{role}';
                   END IF;
                 END $$;"
            ),
        )
        .unwrap();
        pg.psql(
            APP_DB,
            "CREATE TABLE client_smoke (id int PRIMARY KEY, t text, b bytea, ts timestamptz,
                                        n numeric, j jsonb);
             INSERT INTO client_smoke VALUES
               (1, 'one',   '\\x0102', '2024-01-02 03:04:05+00', 1.5,  '{\"a\": 1}'),
               (2, 'two',   '\\x',     '2024-02-03 04:05:06+00', -2,   '[1, 2]'),
               (3, 'three', NULL,      NULL,                     NULL, NULL);
             CREATE TABLE psql_smoke (id int PRIMARY KEY, t text);
             INSERT INTO psql_smoke SELECT g, 'row ' || g FROM generate_series(1, 10) g;",
        )
        .unwrap();
        // pgbench's tables, initialised directly upstream as the superuser.
        let out = Command::new(pg.bin("pgbench"))
            .args([
                "-i",
                "-s",
                "1",
                "-q",
                "-h",
                pg.host(),
                "-p",
                &pg.port().to_string(),
            ])
            .args(["-U", SUPERUSER, APP_DB])
            .env_remove("PGPASSWORD")
            .output()
            .unwrap();
        assert_success("pgbench -i", &out);
        pg.psql(
            APP_DB,
            &format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
                 GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};"
            ),
        )
        .unwrap();
    });
    pg
}

/// A proxy in front of the prepared cluster (its own config and process per test).
fn start_proxy() -> (common::WrittenConfig, common::ProxyProcess) {
    let pg = prepared_cluster();
    let config = common::write_config(&common::ProxyConfig::new(pg));
    let proxy = common::spawn_proxy(&config.path);
    (config, proxy)
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `psql` through the proxy as [`SERVICE`], with `ON_ERROR_STOP` and unaligned tuples-only output.
fn psql_via_proxy(pg: &LocalCluster, port: u16) -> Command {
    let mut cmd = Command::new(pg.bin("psql"));
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-U", SERVICE.name, "-d", APP_DB])
        .env("PGPASSWORD", SERVICE.password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGOPTIONS")
        .env_remove("PGSSLMODE");
    cmd
}

#[test]
fn psql_queries_copy_and_errors() {
    let pg = prepared_cluster();
    let (config, proxy) = start_proxy();
    let port = proxy.port();

    // Several -c: each its own simple Query.
    let out = psql_via_proxy(pg, port)
        .args(["-c", "select count(*) from psql_smoke"])
        .args(["-c", "select t from psql_smoke where id = 3"])
        .output()
        .unwrap();
    assert_success("psql -c", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "10\nrow 3\n");

    // \copy out (COPY TO STDOUT under the hood).
    let out = psql_via_proxy(pg, port)
        .args([
            "-c",
            "\\copy (select id, t from psql_smoke where id <= 2 order by id) to stdout",
        ])
        .output()
        .unwrap();
    assert_success("psql \\copy to", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\trow 1\n2\trow 2\n");

    // \copy in (COPY FROM STDIN) inside a transaction, checked, then rolled back.
    let data = config.dir.path().join("rows.tsv");
    std::fs::write(&data, "101\tcopied a\n102\tcopied b\n").unwrap();
    let script = config.dir.path().join("copy_in.sql");
    std::fs::write(
        &script,
        format!(
            "BEGIN;\n\\copy psql_smoke (id, t) from '{}'\n\
             SELECT count(*) FROM psql_smoke WHERE id > 100;\nROLLBACK;\n\
             SELECT count(*) FROM psql_smoke;\n",
            data.display()
        ),
    )
    .unwrap();
    let out = psql_via_proxy(pg, port)
        .arg("-f")
        .arg(&script)
        .output()
        .unwrap();
    assert_success("psql \\copy from", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n10\n");

    // An error: non-zero exit, the server's message, and the next session works.
    let out = psql_via_proxy(pg, port)
        .args(["-c", "select 1/0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "select 1/0 must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("division by zero"), "{stderr}");

    // Error inside a script: the session stays usable after ROLLBACK (without ON_ERROR_STOP).
    let out = psql_via_proxy(pg, port)
        .args(["-v", "ON_ERROR_STOP=0"])
        .args([
            "-c",
            "begin",
            "-c",
            "select 1/0",
            "-c",
            "rollback",
            "-c",
            "select 42",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n", "{out:?}");
    drop(proxy);
}

/// Runs `pgbench -n -T 5 -c 4` through the proxy in one protocol mode; returns the number of
/// processed transactions after checking that none failed.
fn pgbench_through_proxy(pg: &LocalCluster, port: u16, mode: Option<&str>) -> u64 {
    let mut cmd = Command::new(pg.bin("pgbench"));
    // -n: no VACUUM of the pgbench tables before the run (the service has no business running
    // maintenance); the tables were initialised upstream.
    cmd.args(["-n", "-T", "5", "-c", "4", "-j", "2", "-h", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-U", SERVICE.name])
        .env("PGPASSWORD", SERVICE.password)
        .env_remove("PGOPTIONS");
    if let Some(m) = mode {
        cmd.args(["-M", m]);
    }
    cmd.arg(APP_DB);
    let out = cmd.output().unwrap();
    let what = format!("pgbench -M {}", mode.unwrap_or("simple (default)"));
    assert_success(&what, &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let processed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| {
            v.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or_else(|| panic!("{what}: no processed count\n{stdout}\n{stderr}"));
    let failed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|v| v.split(' ').next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{what}: no failed count\n{stdout}\n{stderr}"));
    assert_eq!(failed, 0, "{what}: failed transactions\n{stdout}\n{stderr}");
    assert!(
        processed > 0,
        "{what}: nothing processed\n{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("ERROR") && !stderr.contains("FATAL"),
        "{what}: errors on stderr\n{stderr}"
    );
    eprintln!("{what}: {processed} transactions through the proxy");
    processed
}

#[test]
fn pgbench_simple_extended_prepared() {
    let pg = prepared_cluster();
    let (_config, proxy) = start_proxy();
    let before = pg
        .psql(APP_DB, "select count(*) from pgbench_history")
        .unwrap();
    let mut total = 0;
    for mode in [None, Some("extended"), Some("prepared")] {
        total += pgbench_through_proxy(pg, proxy.port(), mode);
    }
    // Every processed transaction inserted one history row upstream: the work really happened.
    let after = pg
        .psql(APP_DB, "select count(*) from pgbench_history")
        .unwrap();
    let inserted = after.trim().parse::<u64>().unwrap() - before.trim().parse::<u64>().unwrap();
    assert!(
        inserted >= total,
        "history rows {inserted} < processed transactions {total}"
    );
}

/// Runs the psycopg smoke script against `port` as `user`; `None` when skipped.
fn run_psycopg_smoke(port: u16, user: &str, password: Option<&str>) -> Option<Output> {
    let python = match common::find_python() {
        Ok(p) => p,
        Err(reason) if !common::client::python_required() => {
            eprintln!("SKIPPED psycopg smoke test: {reason}");
            return None;
        }
        Err(reason) => panic!("{reason}"),
    };
    let script = common::repo_root().join("tests/clients/psycopg_smoke.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--user", user, "--dbname", APP_DB]);
    if let Some(p) = password {
        cmd.args(["--password", p]);
    }
    for var in ["PGPASSWORD", "PGOPTIONS", "PGSSLMODE", "PGHOST", "PGPORT"] {
        cmd.env_remove(var);
    }
    Some(cmd.output().unwrap())
}

fn assert_smoke_passed(what: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{what}:\n{stdout}");
    assert_success(what, out);
    for check in [
        "connect",
        "simple_query",
        "parameterized",
        "prepared",
        "binary_fetch",
        "copy_to",
        "copy_from",
        "transaction_rollback",
        "error_then_usable",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l == format!("ok {check}") || l.starts_with(&format!("ok {check} "))),
            "{what}: check {check} did not pass\n{stdout}"
        );
    }
}

/// The script itself, directly against Postgres: if this fails, the script is wrong, not the
/// proxy.
#[test]
fn psycopg_smoke_script_direct_upstream() {
    let pg = prepared_cluster();
    if let Some(out) = run_psycopg_smoke(pg.port(), SUPERUSER, None) {
        assert_smoke_passed("psycopg smoke (direct)", &out);
    }
}

#[test]
fn psycopg_through_proxy() {
    let (_config, proxy) = start_proxy();
    if let Some(out) = run_psycopg_smoke(proxy.port(), SERVICE.name, Some(SERVICE.password)) {
        assert_smoke_passed("psycopg smoke (proxy)", &out);
    }
}

#[test]
fn tables_exist_for_the_client_tests() {
    // Guards the fixture itself (runs without the proxy).
    let pg = prepared_cluster();
    let counts = pg
        .psql(
            APP_DB,
            "select (select count(*) from client_smoke), (select count(*) from psql_smoke), \
             (select count(*) from pgbench_branches)",
        )
        .unwrap();
    assert_eq!(counts.trim(), "3|10|1");
    assert!(Path::new(&pg.bin("pgbench")).is_file());
}

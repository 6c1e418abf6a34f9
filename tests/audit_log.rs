//! The audit log of the real proxy binary: one record per SQL-bearing message with the right
//! facts, connection events, no literal anywhere in the log, `audit verify` on the result,
//! a full disk (blocked with 58030, then recovery), and kill -9 under load.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ProxyConfig, ADS, APP_DB};
use pgpurpose::audit::record::{
    parse_line, ConnectionEvent, ConnectionEventKind, Decision, Event, Record, StatementEvent,
};

const KEY: &str = "audit-test-key-0123456789abcdef";

struct Rig {
    config: common::WrittenConfig,
    audit_dir: PathBuf,
    key_file: PathBuf,
}

/// A proxy configuration with the audit log in `audit_dir` (default: inside the config's
/// directory) and `extra` appended to the `audit:` section.
fn rig(audit_dir: Option<&Path>, extra: &str) -> Rig {
    let pg = common::shared_cluster();
    let cfg = ProxyConfig::new(pg);
    let mut config = common::write_config(&cfg);
    let audit_dir = audit_dir.map_or_else(|| config.dir.path().join("audit"), Path::to_owned);
    let key_file = config.dir.path().join("audit.key");
    std::fs::write(&key_file, KEY).unwrap();
    let mut yaml = cfg.to_yaml();
    yaml.push_str(&format!(
        "audit:\n  dir: {:?}\n  checkpoint_key:\n    file: {:?}\n{extra}",
        audit_dir.display().to_string(),
        key_file.display().to_string()
    ));
    std::fs::write(&config.path, yaml).unwrap();
    config.listen_port = cfg.listen_port;
    Rig {
        config,
        audit_dir,
        key_file,
    }
}

fn client_config(port: u16, user: &str, password: &str, db: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    c
}

async fn connect(
    c: &tokio_postgres::Config,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = c.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("(no SQLSTATE: {e})"))
}

/// Every complete record in the directory, in log order, and the raw bytes of all files.
fn read_log(dir: &Path) -> (Vec<Record>, Vec<u8>) {
    let mut records = Vec::new();
    let mut raw = Vec::new();
    for path in pgpurpose::audit::writer::list_segments(dir).unwrap() {
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        for line in text.split_inclusive('\n') {
            if let Some(line) = line.strip_suffix('\n') {
                records.push(parse_line(line).unwrap().0);
            }
        }
        raw.extend_from_slice(&bytes);
    }
    (records, raw)
}

fn statements(records: &[Record]) -> Vec<&StatementEvent> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Statement(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn connections(records: &[Record]) -> Vec<&ConnectionEvent> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Connection(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// `pgpurpose audit verify` on `paths`: (exit code, stdout).
fn verify_cli(args: &[&str], paths: &[&Path]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpurpose"))
        .args(["audit", "verify"])
        .args(args)
        .args(paths)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Literals the first test sends; none may appear in any byte of the log.
const LITERALS: &[&str] = &[
    "+15550001111",
    "15550001111",
    "carol-secret@example.org",
    "987123",
    "55501",
    "insert-secret-4411",
    "syntax-secret-777",
    "mallory-9d3f",
    "wrong-password-x",
    "7778899",
    "bytes-secret-31",
];

#[tokio::test]
async fn every_message_is_recorded_once_with_its_facts_and_no_literal() {
    let rig = rig(None, "");
    let mut proxy = common::spawn_proxy(&rig.config.path);
    let port = proxy.port();
    let ads = connect(&client_config(port, ADS.name, ADS.password, APP_DB))
        .await
        .unwrap();
    let mut sent = 0;
    // Simple protocol: allowed, rewritten (masked), a cached repeat, blocked, multi-statement.
    ads.simple_query("SELECT handle FROM users WHERE marketing_email = 'carol-secret@example.org'")
        .await
        .unwrap();
    ads.simple_query("SELECT handle, phone_2fa FROM users WHERE id = 987123")
        .await
        .unwrap();
    ads.simple_query("SELECT handle, phone_2fa FROM users WHERE id = 7778899")
        .await
        .unwrap();
    sent += 3;
    let blocked = ads
        .simple_query("SELECT count(*) FROM users WHERE phone_2fa = '+15550001111'")
        .await
        .unwrap_err();
    assert_eq!(code(&blocked), "42501");
    let syntax = ads
        .simple_query("SELEC 'syntax-secret-777' FROM users")
        .await
        .unwrap_err();
    assert_eq!(code(&syntax), "42601");
    let _ = ads
        .simple_query("BEGIN; INSERT INTO users (handle) VALUES ('insert-secret-4411'); ROLLBACK")
        .await;
    let _ = ads.simple_query("ROLLBACK").await;
    sent += 4;
    // Extended protocol: one record per Parse.
    ads.query("SELECT handle FROM users WHERE id = 55501", &[])
        .await
        .unwrap();
    ads.query("SELECT handle FROM users WHERE id = $1", &[&1i64])
        .await
        .unwrap_or_default();
    sent += 2;
    drop(ads);

    // Messages the relay refuses before any decision: text that is not UTF-8, FunctionCall.
    let mut raw = common::raw::RawConn::login(port, ADS.name, Some(ADS.password)).await;
    let mut bad = b"SELECT 'bytes-secret-31 \xff\xfe' FROM users".to_vec();
    bad.push(0);
    raw.send(&common::raw::frame(b'Q', &bad)).await.unwrap();
    let frames = raw.until_ready(1).await;
    assert_eq!(
        common::frames::first_error(&frames)
            .and_then(|f| f.code())
            .as_deref(),
        Some("22021")
    );
    raw.send(&common::raw::frame(b'F', &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]))
        .await
        .unwrap();
    let frames = raw.until_ready(1).await;
    assert_eq!(
        common::frames::first_error(&frames)
            .and_then(|f| f.code())
            .as_deref(),
        Some("0A000")
    );
    raw.send(&common::raw::terminate()).await.unwrap();
    drop(raw);
    sent += 2;

    // Refused before the engine: a database whose catalog the proxy does not hold.
    let other = connect(&client_config(port, ADS.name, ADS.password, "postgres"))
        .await
        .unwrap();
    let refused = other.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&refused), "42501");
    sent += 1;
    drop(other);
    // Connection refusals: wrong password, unknown service.
    let bad = connect(&client_config(port, ADS.name, "wrong-password-x", APP_DB)).await;
    assert_eq!(code(&bad.err().unwrap()), "28P01");
    let unknown = connect(&client_config(port, "mallory-9d3f", "x", APP_DB)).await;
    assert_eq!(code(&unknown.err().unwrap()), "28P01");

    // Let the closes be recorded, then stop cleanly so the last segment is sealed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.signal("TERM");
    assert!(
        proxy.wait_exit(Duration::from_secs(20)).is_some(),
        "proxy did not stop"
    );

    let (records, raw) = read_log(&rig.audit_dir);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    for literal in LITERALS {
        assert!(
            !raw.contains(literal),
            "literal {literal} found in the audit log:\n{raw}"
        );
    }
    let stmts = statements(&records);
    assert_eq!(stmts.len(), sent, "{stmts:#?}");

    let allowed = stmts[0];
    // ads-service reads users through its row filter (opted-in users only).
    assert_eq!(allowed.decision, Decision::Rewrite, "{allowed:?}");
    assert_eq!(
        allowed.statements[0].row_filtered,
        ["public.users"],
        "{allowed:?}"
    );
    assert_eq!(
        allowed.sql,
        "select handle from users where marketing_email = ?"
    );
    assert_eq!(
        (allowed.service.as_str(), allowed.purpose.as_str()),
        ("ads-service", "advertising")
    );
    assert_eq!(
        (allowed.database.as_str(), allowed.protocol.as_str()),
        (APP_DB, "simple")
    );
    assert!(allowed.client_addr.starts_with("127.0.0.1:"));
    let email = allowed.statements[0]
        .uses
        .iter()
        .find(|u| u.column == "marketing_email")
        .unwrap();
    assert_eq!((email.clause.as_str(), email.allowed), ("predicate", true));
    assert!(
        email
            .tags
            .as_ref()
            .is_some_and(|t| t.iter().any(|t| t == "advertising")),
        "{email:?}"
    );

    let (fresh, hit) = (stmts[1], stmts[2]);
    assert_eq!(
        (fresh.decision, hit.decision),
        (Decision::Rewrite, Decision::Rewrite)
    );
    assert_eq!((fresh.cached, hit.cached), (false, true));
    assert_eq!(fresh.statements, hit.statements);
    assert_eq!(
        (&fresh.sql, &fresh.fingerprint, &fresh.rewrite),
        (&hit.sql, &hit.fingerprint, &hit.rewrite)
    );
    assert_eq!(fresh.statements[0].masked, ["phone_2fa"]);

    let block = stmts[3];
    assert_eq!(block.decision, Decision::Block);
    assert_eq!(block.sqlstate.as_deref(), Some("42501"));
    assert_eq!(
        block.rule,
        "forbidden_column:public.users.phone_2fa:predicate"
    );
    let syntax = stmts[4];
    assert_eq!(
        (syntax.rule.as_str(), syntax.sqlstate.as_deref()),
        ("syntax", Some("42601"))
    );
    assert_eq!(stmts[5].statements.len(), 3, "{:?}", stmts[5]);
    assert_eq!(stmts[7].protocol, "extended");
    assert_eq!(stmts[7].sql, "select handle from users where id = ?");
    assert_eq!(stmts[8].sql, "select handle from users where id = $1");
    let (not_utf8, call) = (stmts[9], stmts[10]);
    assert_eq!(
        (not_utf8.rule.as_str(), not_utf8.sqlstate.as_deref()),
        ("not_utf8", Some("22021"))
    );
    assert_eq!(
        (call.rule.as_str(), call.sqlstate.as_deref()),
        ("function_call", Some("0A000"))
    );
    assert_eq!(
        (not_utf8.sql.as_str(), not_utf8.decision),
        ("", Decision::Block)
    );
    let refused = stmts[11];
    assert_eq!(
        (refused.database.as_str(), refused.rule.as_str()),
        ("postgres", "refused_before_analysis")
    );
    // Every record of a session carries its id, and no two sessions share one.
    let sessions: BTreeSet<&str> = stmts.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(sessions.len(), 3);

    let conns = connections(&records);
    let kinds: Vec<ConnectionEventKind> = conns.iter().map(|c| c.event).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == ConnectionEventKind::Authenticated)
            .count(),
        3,
        "{conns:#?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == ConnectionEventKind::Closed)
            .count(),
        3
    );
    let refusals: Vec<_> = conns
        .iter()
        .filter(|c| c.event == ConnectionEventKind::Refused)
        .collect();
    assert_eq!(refusals.len(), 2);
    for r in &refusals {
        assert_eq!(r.sqlstate.as_deref(), Some("28P01"));
        assert_eq!(r.reason.as_deref(), Some("authentication failed"));
        assert_eq!(r.service, None);
    }
    let auth = conns[0];
    assert_eq!(
        (
            auth.service.as_deref(),
            auth.purpose.as_deref(),
            auth.database.as_deref()
        ),
        (Some("ads-service"), Some("advertising"), Some(APP_DB))
    );
    assert_eq!(auth.session_id, stmts[0].session_id);

    // The reviewer's tools read what the writer wrote.
    let report = Command::new(env!("CARGO_BIN_EXE_pgpurpose"))
        .args(["audit", "report", "--format", "json"])
        .arg(&rig.audit_dir)
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.contains("ads-service") && report.contains("phone_2fa"),
        "{report}"
    );

    // The CLI: intact and sealed; then tampering is named; usage errors exit 2.
    let key_arg = rig.key_file.display().to_string();
    let (status, out) = verify_cli(
        &["--key-file", &key_arg, "--require-sealed"],
        &[&rig.audit_dir],
    );
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("OK: ") && out.contains("sealed"), "{out}");
    let segment = pgpurpose::audit::writer::list_segments(&rig.audit_dir)
        .unwrap()
        .remove(0);
    let text = std::fs::read_to_string(&segment).unwrap();
    std::fs::write(&segment, text.replacen("ads-service", "ads-servicE", 1)).unwrap();
    let (status, out) = verify_cli(&["--key-file", &key_arg, "--json"], &[&rig.audit_dir]);
    assert_eq!(status, 1, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        json["error"]["reason"].as_str().unwrap().contains("edited"),
        "{out}"
    );
    assert!(json["error"]["line"].as_u64().unwrap() > 2);
    let (status, _) = verify_cli(&["--key-env", "PGPURPOSE_NO_SUCH_VAR"], &[&rig.audit_dir]);
    assert_eq!(status, 2);
}

/// A small tmpfs, so the audit directory can really fill up (root only; skipped otherwise).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?
            .success();
        ok.then_some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fill the file system holding `dir` with a file until writes fail.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.write_all(&[0]);
    path
}

#[tokio::test]
async fn a_full_disk_blocks_statements_with_58030_until_space_returns() {
    let Some(fs) = Tmpfs::mount("1m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root) for the disk-full test");
        return;
    };
    let audit_dir = fs.dir.path().join("audit");
    let rig = rig(Some(&audit_dir), "");
    let proxy = common::spawn_proxy(&rig.config.path);
    let client = connect(&client_config(proxy.port(), ADS.name, ADS.password, APP_DB))
        .await
        .unwrap();
    client
        .simple_query("SELECT handle FROM users LIMIT 1")
        .await
        .unwrap();
    let filler = fill(fs.dir.path());
    // The segment's last page may still hold a few records; then every write fails.
    let mut ran_after_fill = 0;
    let first_block = loop {
        match client
            .simple_query("SELECT handle FROM users LIMIT 2")
            .await
        {
            Ok(_) => ran_after_fill += 1,
            Err(e) => break e,
        }
        assert!(
            ran_after_fill < 20,
            "the full disk never blocked a statement"
        );
    };
    for e in [
        first_block,
        client
            .simple_query("SELECT handle FROM users LIMIT 2")
            .await
            .unwrap_err(),
    ] {
        assert_eq!(code(&e), "58030", "{e}");
        let db = e.as_db_error().unwrap();
        assert!(
            db.message().contains("cannot write its audit log"),
            "{db:?}"
        );
        assert!(db.hint().is_some());
    }
    // The session is still usable, and statements run again once there is room.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client
            .simple_query("SELECT handle FROM users LIMIT 3")
            .await
        {
            Ok(_) => break,
            Err(e) if code(&e) == "58030" && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("no recovery: {e}"),
        }
    }
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.signal("TERM");
    let mut proxy = proxy;
    assert!(proxy.wait_exit(Duration::from_secs(20)).is_some());
    assert!(
        proxy.stderr_text().contains("cannot write the audit log"),
        "{}",
        proxy.output()
    );

    let (records, _) = read_log(&audit_dir);
    let recovery = records.iter().any(|r| {
        matches!(&r.event, Event::SegmentStart(s) if s.reason == "recovery" && s.previous_segment.is_some())
    });
    assert!(recovery, "no recovery segment");
    let stmts = statements(&records);
    // The statements that ran were recorded; the blocked ones were not run.
    assert_eq!(stmts.len(), 2 + ran_after_fill, "{stmts:#?}");
    let key_arg = rig.key_file.display().to_string();
    let (status, out) = verify_cli(&["--key-file", &key_arg], &[&audit_dir]);
    assert_eq!(status, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_record_of_a_forwarded_statement() {
    const CLIENTS: usize = 6;
    let rig = rig(None, "  rotate_bytes: 65536\n");
    let proxy = common::spawn_proxy(&rig.config.path);
    let port = proxy.port();
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for k in 0..CLIENTS {
        let mut stop = done_rx.clone();
        let client = connect(&client_config(port, ADS.name, ADS.password, APP_DB))
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            // Each statement is unique by its column alias (identifiers survive normalising).
            let mut answered = Vec::new();
            for i in 0.. {
                let sql = format!("SELECT handle AS m_{k}_{i} FROM users WHERE id = {i}");
                tokio::select! {
                    r = client.simple_query(&sql) => match r {
                        Ok(_) => answered.push(format!("m_{k}_{i}")),
                        Err(_) => break,
                    },
                    _ = stop.changed() => break,
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.signal("KILL");
    let _ = done_tx.send(true);
    let mut answered = Vec::new();
    for t in tasks {
        answered.extend(t.await.unwrap());
    }
    drop(proxy);
    assert!(answered.len() > 50, "too little load: {}", answered.len());

    let (records, _) = read_log(&rig.audit_dir);
    let recorded: BTreeSet<String> = statements(&records)
        .iter()
        .filter_map(|s| s.sql.split_whitespace().nth(3).map(str::to_owned))
        .collect();
    let missing: Vec<&String> = answered.iter().filter(|a| !recorded.contains(*a)).collect();
    assert!(missing.is_empty(), "answered but not recorded: {missing:?}");
    let key_arg = rig.key_file.display().to_string();
    let (status, out) = verify_cli(&["--key-file", &key_arg], &[&rig.audit_dir]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("unsealed"), "{out}");

    // A restart continues the chain after the crash.
    let mut proxy = common::spawn_proxy(&rig.config.path);
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(20)).is_some());
    let (status, out) = verify_cli(
        &["--key-file", &key_arg, "--require-sealed"],
        &[&rig.audit_dir],
    );
    assert_eq!(status, 0, "{out}");
}

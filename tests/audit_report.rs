//! `pgpurpose audit report` and `audit tail` run as the real binary over a realistic fixture log
//! (several services and purposes, every common clause kind, masks, blocks, connection and
//! policy events, two segments joined by a rotation). The expected counts are tallied by this
//! test while it writes the fixture, independently of the report's aggregation.
//!
//! The HTML report is rendered in headless Chromium (`/usr/bin/chromium`, or
//! `$PGPURPOSE_CHROMIUM`); the counts in the rendered DOM must equal the JSON report's. Without
//! Chromium the test fails when `CI` or `PGPURPOSE_CHROMIUM` is set (`.ci/run` sets it) and is
//! skipped with a loud message otherwise.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pgpurpose::audit::record::{Event, SegmentStart};
use serde_json::{json, Value};

#[path = "audit_report/fixture.rs"]
mod fixture;
use fixture::{statement_event, time, write_fixture, Chain, SHAPES};

const BIN: &str = env!("CARGO_BIN_EXE_pgpurpose");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn report_json(dir: &Path, extra: &[&str]) -> Value {
    let d = dir.to_str().unwrap();
    let mut args = vec!["audit", "report", d, "--format", "json"];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn json_report_counts_equal_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write_fixture(dir.path());
    let r = report_json(dir.path(), &[]);
    assert_eq!(r["format"], "pgpurpose-audit-report/1");
    assert_eq!(r["log"]["chain_intact"], true, "{}", r["log"]);
    assert_eq!(r["log"]["segments"].as_array().unwrap().len(), 2);
    assert_eq!(r["totals"]["statements"], exp.statements);
    let services = r["services"].as_array().unwrap();
    assert_eq!(services.len(), exp.decisions.len());
    for s in services {
        let key = (
            s["service"].as_str().unwrap().to_owned(),
            s["purpose"].as_str().unwrap().to_owned(),
        );
        let d = exp.decisions[&key];
        assert_eq!(
            [
                s["allow"].as_u64().unwrap(),
                s["rewrite"].as_u64().unwrap(),
                s["block"].as_u64().unwrap()
            ],
            d,
            "{key:?}"
        );
    }
    let mut got_uses = BTreeMap::new();
    for c in r["columns"].as_array().unwrap() {
        for (clause, u) in c["clauses"].as_object().unwrap() {
            got_uses.insert(
                (
                    c["service"].as_str().unwrap().to_owned(),
                    c["table"].as_str().unwrap().to_owned(),
                    c["column"].as_str().unwrap().to_owned(),
                    clause.clone(),
                ),
                [
                    u["uses"].as_u64().unwrap(),
                    u["masked"].as_u64().unwrap(),
                    u["denied"].as_u64().unwrap(),
                    u["in_blocked"].as_u64().unwrap(),
                ],
            );
        }
    }
    assert_eq!(got_uses, exp.uses);
    let blocked: BTreeMap<String, u64> = r["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["fingerprint"].as_str().unwrap().to_owned(),
                b["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(blocked, exp.blocked);
    // The join block is sent by two services under two purposes.
    let join = r["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["fingerprint"] == "c3c3c3c3c3c3c3c3")
        .unwrap();
    assert_eq!(
        join["services"],
        json!(["ads-service/advertising", "analytics/analytics.reporting"])
    );
    assert_eq!(r["connections"]["authenticated"], exp.authenticated);
    assert_eq!(r["connections"]["refused"], exp.refused);
    assert_eq!(r["connections"]["closed"], exp.closed);
    let versions: Vec<&str> = r["policy_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, vec!["sha256:1111", "sha256:2222"]);
    assert_eq!(r["policy_events"], json!({"loaded": 1, "reloaded": 1}));

    // A sub-range, with the bounds given in another offset: [09:00Z, 10:00Z).
    let sub = report_json(
        dir.path(),
        &[
            "--since",
            "2026-11-23T10:00:00+01:00",
            "--until",
            "2026-11-23T10:00:00Z",
        ],
    );
    assert_eq!(sub["selection"]["since"], "2026-11-23T09:00:00.000000Z");
    assert_eq!(sub["totals"]["statements"], exp.range_statements);
    assert_eq!(sub["totals"]["block"], exp.range_block);
    // --service and --top.
    let ads = report_json(dir.path(), &["--service", "ads-service", "--top", "1"]);
    assert_eq!(ads["services"].as_array().unwrap().len(), 1);
    assert_eq!(ads["blocked"].as_array().unwrap().len(), 1);
    assert_eq!(ads["blocked_fingerprints"], 2);
}

/// RFC 4180 fields of one CSV document.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

#[test]
fn csv_and_table_formats() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write_fixture(dir.path());
    let d = dir.path().to_str().unwrap();
    let out_file = dir.path().join("report.csv");
    let (code, _, err) = run(&[
        "audit",
        "report",
        d,
        "--format",
        "csv",
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        csv.contains("\"note, private\""),
        "a comma in a name is quoted"
    );
    let rows = parse_csv(&csv);
    assert_eq!(
        rows[0].join(","),
        "service,purpose,table,column,tags,clause,uses,masked,denied,in_blocked"
    );
    let mut got = BTreeMap::new();
    for r in &rows[1..] {
        assert_eq!(r.len(), 10, "{r:?}");
        let n = |i: usize| r[i].parse::<u64>().unwrap();
        got.insert(
            (r[0].clone(), r[2].clone(), r[3].clone(), r[5].clone()),
            [n(6), n(7), n(8), n(9)],
        );
    }
    assert_eq!(got, exp.uses);

    let (code, table, err) = run(&["audit", "report", d]);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("chain:    intact"), "{table}");
    let total = table
        .lines()
        .find(|l| l.trim_start().starts_with("TOTAL"))
        .unwrap();
    assert_eq!(
        total.split_whitespace().nth(1).unwrap(),
        exp.statements.to_string(),
        "{total}"
    );
    assert!(table.contains("c3c3c3c3c3c3c3c3"));
}

#[test]
fn a_damaged_log_is_an_error_and_an_edited_one_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let seg = dir.path().join("pgpurpose-audit-20261123T080000Z.jsonl");
    let text = std::fs::read_to_string(&seg).unwrap();
    // Edited: the record still parses, its hash no longer matches.
    std::fs::write(
        &seg,
        text.replacen("\"decision\":\"block\"", "\"decision\":\"allow\"", 1),
    )
    .unwrap();
    let (code, out, err) = run(&[
        "audit",
        "report",
        dir.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("hash chain is broken"), "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["log"]["chain_intact"], false);
    // Damaged: a line that is not a record.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(3, "garbage");
    std::fs::write(&seg, lines.join("\n") + "\n").unwrap();
    let (code, out, err) = run(&["audit", "report", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "a malformed line is a problem of the log");
    assert!(out.is_empty());
    assert!(
        err.contains("pgpurpose-audit-20261123T080000Z.jsonl:4:"),
        "{err}"
    );
    assert!(err.contains("audit verify"), "{err}");
    let (code, _, err) = run(&[
        "audit",
        "report",
        dir.path().to_str().unwrap(),
        "--since",
        "yesterday",
    ]);
    assert_eq!(code, 2, "a bad argument is a usage error");
    assert!(err.contains("RFC 3339"), "{err}");
}

fn find_chromium() -> Option<PathBuf> {
    let candidate = std::env::var_os("PGPURPOSE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    candidate.is_file().then_some(candidate)
}

/// Run Chromium headless with a time limit; returns its standard output.
fn chromium(bin: &Path, profile: &Path, extra: &[&str], page: &Path) -> String {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// `attr` → text (or `data-value`) of every element carrying `attr` in a serialised DOM.
fn read_back(dom: &str, attr: &str, value_from: Option<&str>) -> Vec<(Value, String)> {
    let needle = format!("{attr}=\"");
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        let end = after.find('"').unwrap();
        let key: Value = serde_json::from_str(&unescape(&after[..end])).unwrap();
        let tag_end = after.find('>').unwrap();
        let value = match value_from {
            Some(v) => {
                let tag = &after[..tag_end];
                let p = tag.find(&format!("{v}=\"")).unwrap() + v.len() + 2;
                tag[p..p + tag[p..].find('"').unwrap()].to_owned()
            }
            None => {
                let text = &after[tag_end + 1..];
                unescape(&text[..text.find('<').unwrap()])
            }
        };
        out.push((key, value));
        rest = &after[end..];
    }
    out
}

/// Every count of a JSON report, keyed the way the page documents its `data-key`s.
fn json_counts(r: &Value) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    let mut put = |k: Value, v: &Value| {
        assert!(
            m.insert(k.to_string(), v.as_u64().unwrap()).is_none(),
            "duplicate {k}"
        );
    };
    let totals = [
        "statements",
        "allow",
        "rewrite",
        "block",
        "uses",
        "masked",
        "denied",
        "in_blocked",
    ];
    for f in totals {
        put(json!(["totals", f]), &r["totals"][f]);
    }
    for s in r["services"].as_array().unwrap() {
        for f in totals.iter().chain(&["sessions"]) {
            put(json!(["service", s["service"], s["purpose"], f]), &s[f]);
        }
    }
    let fields = ["uses", "masked", "denied", "in_blocked"];
    for c in r["columns"].as_array().unwrap() {
        let base = |clause: &str, f: &str| {
            json!([
                "column",
                c["service"],
                c["purpose"],
                c["table"],
                c["column"],
                c["tags"],
                clause,
                f
            ])
        };
        for f in fields {
            put(base("*", f), &c[f]);
        }
        for (clause, u) in c["clauses"].as_object().unwrap() {
            for f in fields {
                put(base(clause, f), &u[f]);
            }
        }
    }
    put(json!(["blocked_fingerprints"]), &r["blocked_fingerprints"]);
    for b in r["blocked"].as_array().unwrap() {
        put(json!(["blocked", b["fingerprint"], "count"]), &b["count"]);
    }
    for f in ["authenticated", "refused", "closed"] {
        put(json!(["connections", f]), &r["connections"][f]);
    }
    for (reason, v) in r["connections"]["refused_reasons"].as_object().unwrap() {
        put(json!(["refused_reason", reason]), v);
    }
    for p in r["policy_versions"].as_array().unwrap() {
        put(
            json!(["policy_version", p["version"], "statements"]),
            &p["statements"],
        );
    }
    for (e, v) in r["policy_events"].as_object().unwrap() {
        put(json!(["policy_event", e]), v);
    }
    m
}

#[test]
fn html_report_renders_in_chromium_with_the_json_counts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    std::fs::create_dir(&log).unwrap();
    write_fixture(&log);
    let json = report_json(&log, &[]);
    let page = dir.path().join("report.html");
    let (code, _, err) = run(&[
        "audit",
        "report",
        log.to_str().unwrap(),
        "--format",
        "html",
        "-o",
        page.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<script") && !html.contains("http:") && !html.contains("https:"),
        "self-contained, no scripts"
    );

    let Some(bin) = find_chromium() else {
        let msg = "Chromium not found (/usr/bin/chromium or $PGPURPOSE_CHROMIUM): the HTML report was NOT checked in a browser";
        if std::env::var_os("CI").is_some() || std::env::var_os("PGPURPOSE_CHROMIUM").is_some() {
            panic!("{msg}");
        }
        eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
        return;
    };
    let profile = dir.path().join("profile");
    let dom = chromium(&bin, &profile, &["--dump-dom"], &page);
    assert!(
        dom.contains("Audit report: purpose limitation"),
        "{}",
        &dom[..dom.len().min(500)]
    );
    assert!(dom.contains("data-chain=\"intact\""));

    let expected = json_counts(&json);
    let mut shown = BTreeMap::new();
    for (key, text) in read_back(&dom, "data-key", None) {
        let n: u64 = text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{key}: {text:?}"));
        assert!(
            shown.insert(key.to_string(), n).is_none(),
            "{key} shown twice"
        );
    }
    assert_eq!(
        shown, expected,
        "the rendered page's counts differ from the JSON report"
    );
    // The charts' bars carry the same numbers.
    let bars = read_back(&dom, "data-bar", Some("data-value"));
    let mut decision_bars = 0;
    for (key, value) in &bars {
        if key[0] == "service" || key[0] == "blocked" {
            let mut k = key.as_array().unwrap().clone();
            if k[0] == "blocked" {
                k[2] = json!("count");
            }
            assert_eq!(
                expected[&Value::Array(k).to_string()].to_string(),
                *value,
                "{key}"
            );
            decision_bars += 1;
        }
    }
    assert!(decision_bars >= 8, "{decision_bars} bars checked");

    let png = dir.path().join("report.png");
    chromium(
        &bin,
        &profile,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2200",
            "--hide-scrollbars",
        ],
        &page,
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
    if let Some(keep) = std::env::var_os("PGPURPOSE_KEEP_REPORT") {
        let keep = PathBuf::from(keep);
        std::fs::copy(&page, keep.with_extension("html")).unwrap();
        std::fs::copy(&png, keep.with_extension("png")).unwrap();
    }
}

#[test]
fn tail_filters_and_follows_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = run(&[
        "audit",
        "tail",
        d,
        "--lines",
        "all",
        "--service",
        "analytics",
        "--decision",
        "block",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.is_empty());
    for l in out.lines() {
        assert!(l.contains(" analytics/analytics.reporting BLOCK   rule=forbidden-use:join fp=c3c3c3c3c3c3c3c3 SELECT u.id"), "{l}");
    }
    let (_, out, _) = run(&["audit", "tail", d, "-n", "3", "--kind", "connection"]);
    assert_eq!(out.lines().count(), 3);
    assert!(out.lines().all(|l| l.contains(" connection ")), "{out}");

    // Follow: a live log in a fresh directory.
    let live = tempfile::tempdir().unwrap();
    let mut chain = Chain::new();
    let first = live.path().join("pgpurpose-audit-1.jsonl");
    let start = |reason: &str| {
        Event::SegmentStart(SegmentStart {
            previous_segment: None,
            reason: reason.into(),
        })
    };
    std::fs::write(&first, chain.line(&time(0), start("start")) + "\n").unwrap();
    let mut child = Command::new(BIN)
        .args([
            "audit",
            "tail",
            "--follow",
            "--decision",
            "block",
            "--table",
            "public.sessions",
        ])
        .arg(live.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    let join_block = &SHAPES[2];
    let other_block = &SHAPES[3];
    std::thread::sleep(Duration::from_millis(400));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&first)
        .unwrap();
    writeln!(
        f,
        "{}",
        chain.line(&time(1), statement_event(join_block, 1, "v"))
    )
    .unwrap();
    writeln!(
        f,
        "{}",
        chain.line(&time(2), statement_event(other_block, 1, "v"))
    )
    .unwrap();
    writeln!(
        f,
        "{}",
        chain.line(&time(3), statement_event(&SHAPES[0], 1, "v"))
    )
    .unwrap();
    drop(f);
    let got1 = rx.recv_timeout(Duration::from_secs(10));
    // Rotation to a second file; the name sorts before the first on purpose.
    let second = live.path().join("pgpurpose-audit-0.jsonl");
    let lines = [
        chain.line(&time(4), start("rotation")),
        chain.line(&time(5), statement_event(join_block, 2, "v")),
    ];
    std::fs::write(&second, lines.join("\n") + "\n").unwrap();
    let got2 = rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    let got1 = got1.expect("the first block was not printed within 10 s");
    let got2 = got2.expect("the block after the rotation was not printed within 10 s");
    assert!(got1.contains(" #2 ads-service/advertising BLOCK"), "{got1}");
    assert!(got2.contains(" #6 ads-service/advertising BLOCK"), "{got2}");
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing else matches"
    );
}

use super::*;
use crate::audit::reader::testlog::*;
use crate::audit::reader::ChainCheck;
use crate::audit::record::{ConnectionEventKind, Decision, Event, PolicyEvent};

const EMAIL: &[&str] = &["marketing"];
const PHONE: &[&str] = &["security.authentication"];

fn t(n: u32) -> String {
    format!("2026-11-23T10:{:02}:00.000000Z", n)
}

/// A small log: two services, masks, blocks, connections, a policy reload.
fn records() -> Vec<Record> {
    let mut log = LogBuilder::default();
    let mut out = vec![
        log.record(&t(0), segment_start()),
        log.record(
            &t(0),
            Event::Policy(PolicyEvent {
                event: "loaded".into(),
                policy_version: "v1".into(),
                error: None,
            }),
        ),
        log.record(
            &t(1),
            connection(ConnectionEventKind::Authenticated, Some("ads")),
        ),
        log.record(&t(1), connection(ConnectionEventKind::Refused, None)),
    ];
    // ads/advertising: allowed read of email in output and predicate.
    out.push(log.record(
        &t(2),
        statement(
            "ads",
            "advertising",
            Decision::Allow,
            "f-allow",
            "SELECT email FROM users WHERE email = ?",
            "allow",
            &[
                ("public.users", "email", "output", Some(EMAIL), true, false),
                (
                    "public.users",
                    "email",
                    "predicate",
                    Some(EMAIL),
                    true,
                    false,
                ),
            ],
        ),
    ));
    // ads/advertising: phone masked in output.
    out.push(log.record(
        &t(3),
        statement(
            "ads",
            "advertising",
            Decision::Rewrite,
            "f-mask",
            "SELECT email, phone FROM users",
            "mask",
            &[
                ("public.users", "email", "output", Some(EMAIL), true, false),
                ("public.users", "phone", "output", Some(PHONE), false, true),
            ],
        ),
    ));
    // ads/advertising: phone in a predicate, blocked, twice with the same fingerprint.
    for m in [4, 5] {
        out.push(log.record(
            &t(m),
            statement(
                "ads",
                "advertising",
                Decision::Block,
                "f-block",
                "SELECT id FROM users WHERE phone = ?",
                "forbidden-predicate",
                &[
                    ("public.users", "id", "output", None, true, false),
                    (
                        "public.users",
                        "phone",
                        "predicate",
                        Some(PHONE),
                        false,
                        false,
                    ),
                ],
            ),
        ));
    }
    out.push(log.record(
        &t(6),
        Event::Policy(PolicyEvent {
            event: "reloaded".into(),
            policy_version: "v2".into(),
            error: None,
        }),
    ));
    // auth/security.authentication: phone allowed; a different blocked fingerprint.
    let mut auth = statement(
        "auth",
        "security.authentication",
        Decision::Allow,
        "f-auth",
        "SELECT phone FROM users",
        "allow",
        &[("public.users", "phone", "output", Some(PHONE), true, false)],
    );
    if let Event::Statement(s) = &mut auth {
        s.policy_version = "v2".into();
        s.session_id = "a1b2c3-2".into();
    }
    out.push(log.record(&t(7), auth));
    out.push(log.record(
        &t(8),
        statement(
            "auth",
            "security.authentication",
            Decision::Block,
            "f-ddl",
            "ALTER TABLE users RENAME phone TO p",
            "ddl",
            &[("public.users", "phone", "ddl", Some(PHONE), false, false)],
        ),
    ));
    out.push(log.record(&t(9), connection(ConnectionEventKind::Closed, Some("ads"))));
    out
}

fn report(selection: Selection, top: usize) -> Report {
    let mut agg = Aggregator::new(selection, top);
    for r in records() {
        agg.add(&r);
    }
    agg.finish(vec!["seg".into()], &ChainCheck::default())
}

fn column<'a>(r: &'a Report, service: &str, column: &str) -> &'a ColumnRow {
    r.columns
        .iter()
        .find(|c| c.service == service && c.column == column)
        .unwrap()
}

#[test]
fn decisions_and_uses_are_counted_per_service_purpose_and_clause() {
    let r = report(Selection::default(), 10);
    assert_eq!(
        r.totals,
        Totals {
            statements: 6,
            allow: 2,
            rewrite: 1,
            block: 3,
            uses: 10,
            masked: 1,
            denied: 4,
            in_blocked: 5,
        }
    );
    let ads = &r.services[0];
    assert_eq!(
        (ads.service.as_str(), ads.purpose.as_str()),
        ("ads", "advertising")
    );
    assert_eq!(
        (
            ads.totals.statements,
            ads.totals.allow,
            ads.totals.rewrite,
            ads.totals.block
        ),
        (4, 1, 1, 2)
    );
    assert_eq!(ads.sessions, 1);
    assert_eq!(r.services[1].service, "auth");
    let phone = column(&r, "ads", "phone");
    assert_eq!(
        phone.tags.as_deref(),
        Some(&["security.authentication".to_owned()][..])
    );
    assert_eq!(
        phone.clauses["output"],
        UseCounts {
            uses: 1,
            masked: 1,
            denied: 1,
            in_blocked: 0
        }
    );
    assert_eq!(
        phone.clauses["predicate"],
        UseCounts {
            uses: 2,
            masked: 0,
            denied: 2,
            in_blocked: 2
        }
    );
    assert_eq!(
        phone.total,
        UseCounts {
            uses: 3,
            masked: 1,
            denied: 3,
            in_blocked: 2
        }
    );
    let email = column(&r, "ads", "email");
    assert_eq!(email.clauses["output"].uses, 2);
    assert_eq!(email.clauses["predicate"].uses, 1);
    assert_eq!(column(&r, "ads", "id").tags, None);
}

#[test]
fn blocked_fingerprints_are_ranked_and_cut_to_top_n() {
    let r = report(Selection::default(), 1);
    assert_eq!(r.blocked_fingerprints, 2);
    assert_eq!(r.blocked.len(), 1);
    let b = &r.blocked[0];
    assert_eq!(b.fingerprint, "f-block");
    assert_eq!(b.count, 2);
    assert_eq!(b.rules, vec!["forbidden-predicate"]);
    assert_eq!(b.services, vec!["ads/advertising"]);
    assert_eq!(b.sqlstates, vec!["42501"]);
    assert_eq!(
        (b.first_seen.as_str(), b.last_seen.as_str()),
        (t(4).as_str(), t(5).as_str())
    );
    assert_eq!(
        report(Selection::default(), 10).blocked[1].fingerprint,
        "f-ddl"
    );
}

#[test]
fn connections_policy_versions_and_span() {
    let r = report(Selection::default(), 10);
    assert_eq!(
        (
            r.connections.authenticated,
            r.connections.refused,
            r.connections.closed
        ),
        (1, 1, 1)
    );
    assert_eq!(r.connections.refused_reasons["authentication failed"], 1);
    let versions: Vec<(&str, u64)> = r
        .policy_versions
        .iter()
        .map(|p| (p.version.as_str(), p.statements))
        .collect();
    assert_eq!(versions, vec![("v1", 5), ("v2", 1)]);
    assert_eq!(r.policy_events["loaded"], 1);
    assert_eq!(r.policy_events["reloaded"], 1);
    assert_eq!(r.span.first.as_deref(), Some(t(0).as_str()));
    assert_eq!(r.span.last.as_deref(), Some(t(9).as_str()));
    assert_eq!(r.log.records, 12);
    assert_eq!((r.log.first_seq, r.log.last_seq), (Some(1), Some(12)));
}

#[test]
fn the_range_is_half_open_and_filters_apply() {
    let sel = Selection {
        since: Some(t(3)),
        until: Some(t(5)),
        ..Default::default()
    };
    let r = report(sel, 10);
    assert_eq!(
        (r.totals.statements, r.totals.rewrite, r.totals.block),
        (2, 1, 1)
    );
    assert_eq!(r.span.first.as_deref(), Some(t(3).as_str()));
    // The whole log was still read.
    assert_eq!(r.log.records, 12);

    let r = report(
        Selection {
            service: Some("auth".into()),
            ..Default::default()
        },
        10,
    );
    assert_eq!(r.totals.statements, 2);
    assert_eq!(r.services.len(), 1);
    // A refusal before authentication has no service: not counted under a service filter.
    assert_eq!(r.connections.refused, 0);
    assert_eq!(r.connections.authenticated, 0);

    let r = report(
        Selection {
            purpose: Some("security".into()),
            ..Default::default()
        },
        10,
    );
    assert_eq!(
        r.totals.statements, 2,
        "security includes security.authentication"
    );
    assert!(purpose_is_within("security.authentication", "security"));
    assert!(!purpose_is_within("securityx", "security"));
}

#[test]
fn times_are_normalised_to_the_records_form() {
    assert_eq!(
        normalize_time("2026-11-23").as_deref(),
        Some("2026-11-23T00:00:00.000000Z")
    );
    assert_eq!(
        normalize_time("2026-11-23T14:05:06Z").as_deref(),
        Some("2026-11-23T14:05:06.000000Z")
    );
    assert_eq!(
        normalize_time("2026-11-23T14:05:06.5Z").as_deref(),
        Some("2026-11-23T14:05:06.500000Z")
    );
    assert_eq!(
        normalize_time("2026-11-23T14:05:06.123456789Z").as_deref(),
        Some("2026-11-23T14:05:06.123456Z")
    );
    assert_eq!(
        normalize_time("2026-11-23T01:30:00+02:00").as_deref(),
        Some("2026-11-22T23:30:00.000000Z")
    );
    assert_eq!(
        normalize_time("2024-02-28T23:00:00-01:30").as_deref(),
        Some("2024-02-29T00:30:00.000000Z")
    );
    assert_eq!(
        normalize_time("2026-12-31T23:59:59-00:01").as_deref(),
        Some("2027-01-01T00:00:59.000000Z")
    );
    for bad in [
        "yesterday",
        "2026-13-01",
        "2026-02-29",
        "2026-11-23T14:05",
        "2026-11-23T25:00:00Z",
        "2026-11-23T14:05:06.Z",
        "2026-11-23T14:05:06+0200",
        "",
    ] {
        assert_eq!(normalize_time(bad), None, "{bad}");
    }
    assert_eq!(
        normalize_time("2026-11-23T14:05Z").as_deref(),
        Some("2026-11-23T14:05:00.000000Z")
    );
}

#[test]
fn csv_rows_are_one_per_column_and_clause_with_rfc4180_quoting() {
    let csv = text::csv(&report(Selection::default(), 10));
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[0], text::CSV_HEADER);
    assert!(lines
        .contains(&"ads,advertising,public.users,phone,security.authentication,predicate,2,0,2,2"));
    assert!(lines.contains(&"ads,advertising,public.users,id,,output,2,0,0,2"));
    // 7 data rows + header + the empty string after the final CRLF.
    assert_eq!(lines.len(), 9, "{csv}");
    assert_eq!(text::csv_field("a,b"), "\"a,b\"");
    assert_eq!(text::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(text::csv_field("x\ny"), "\"x\ny\"");
    assert_eq!(text::csv_field("plain"), "plain");
    assert_eq!(text::csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    assert_eq!(text::csv_field("@x,y"), "\"'@x,y\"");
}

#[test]
fn the_table_shows_every_section_and_neutralises_control_characters() {
    let mut r = report(Selection::default(), 10);
    r.blocked[0].sql = "SELECT \u{1b}[31mred".into();
    let table = text::table(&r);
    for needle in [
        "Decisions by service and purpose",
        "Column uses by clause kind",
        "Top blocked statements (2 of 2 fingerprints)",
        "Connections: 1 authenticated, 1 refused, 1 closed",
        "public.users.phone",
        "TOTAL",
    ] {
        assert!(table.contains(needle), "missing {needle}:\n{table}");
    }
    assert!(!table.contains('\u{1b}'));
    assert!(table.contains("\\u{1b}[31mred"));
    // Numbers are right-aligned under their header.
    let header = table.lines().find(|l| l.contains("STATEMENTS")).unwrap();
    let ads = table
        .lines()
        .find(|l| l.contains("ads  ") && l.contains("advertising"))
        .unwrap();
    assert_eq!(
        header.find("STATEMENTS").unwrap() + "STATEMENTS".len(),
        ads.find(" 4 ").unwrap() + 2,
        "\n{header}\n{ads}"
    );
}

#[test]
fn html_escapes_log_text_and_carries_every_count_once() {
    let mut r = report(Selection::default(), 10);
    r.blocked[0].sql = "SELECT \"<script>alert(1)</script>\" FROM t".into();
    r.services[0].service = "ads<b>&\"'".into();
    let page = html::page(&r);
    assert!(!page.contains("<script"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("ads<b>"));
    assert!(
        !page.contains("http"),
        "the page must not reference anything outside itself"
    );
    // Every count of the JSON side is on the page exactly once, with its value.
    let keys = html::count_keys(&r);
    assert!(keys.len() > 60, "{}", keys.len());
    for (key, value) in keys {
        let attr = format!("data-key=\"{}\">{value}<", html::esc(&key.to_string()));
        assert_eq!(page.matches(&attr).count(), 1, "{attr}");
    }
}

#[test]
fn render_json_is_the_documented_schema() {
    let r = report(Selection::default(), 10);
    let v: serde_json::Value = serde_json::from_str(&render(&r, Format::Json).unwrap()).unwrap();
    assert_eq!(v["format"], REPORT_FORMAT);
    assert_eq!(v["totals"]["block"], 3);
    assert_eq!(v["services"][0]["block"], 2);
    assert_eq!(v["columns"][0]["clauses"]["output"]["uses"], 2);
    assert!(v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["tags"].is_null()));
    assert_eq!(v["blocked"][0]["count"], 2);
    assert_eq!(
        v["connections"]["refused_reasons"]["authentication failed"],
        1
    );
    assert_eq!(v["log"]["chain_intact"], true);
}

#[test]
fn an_empty_selection_and_a_broken_chain_render_in_every_format() {
    let agg = Aggregator::new(
        Selection {
            service: Some("nobody".into()),
            ..Default::default()
        },
        10,
    );
    let chain = ChainCheck {
        records: 3,
        first_break: Some("seg:2: prev does not match".into()),
        abandoned_partial_lines: vec!["seg0:9".into()],
    };
    let r = agg.finish(vec!["seg".into()], &chain);
    let table = render(&r, Format::Table).unwrap();
    assert!(table.contains("BROKEN at seg:2"), "{table}");
    assert!(table.contains("(no column uses)"));
    assert!(table.contains("seg0:9 is a partial line abandoned"));
    assert_eq!(
        render(&r, Format::Csv).unwrap(),
        format!("{}\r\n", text::CSV_HEADER)
    );
    let page = render(&r, Format::Html).unwrap();
    assert!(page.contains("data-chain=\"broken\""));
    assert!(page.contains("No statements in the selection."));
    assert!(page.contains("Nothing was blocked in the selection."));
    let v: serde_json::Value = serde_json::from_str(&render(&r, Format::Json).unwrap()).unwrap();
    assert_eq!(v["log"]["chain_intact"], false);
    assert_eq!(v["log"]["abandoned_partial_lines"][0], "seg0:9");
    assert_eq!(v["totals"]["statements"], 0);
}

//! Plain-text renderings of a [`Report`]: aligned tables for a terminal, and CSV.
//!
//! Everything printed to a terminal goes through [`printable`]: names and SQL in the log come
//! from the catalog and from clients' statements (a quoted identifier may hold an escape
//! sequence), and must not be able to drive the reviewer's terminal.

use std::fmt::Write as _;

use super::{Report, UseCounts};

/// Replace control characters by `\u{..}` escapes so log text cannot drive a terminal.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Columns aligned with two spaces between them; numeric columns right-aligned. The last
/// column is never padded (it holds SQL, which may be long).
fn aligned(headers: &[&str], numeric: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let pad = w.saturating_sub(cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            let last = i + 1 == row.len();
            if numeric.get(i).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if !last {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `a;b`, or `-` when untagged.
pub fn tags_text(tags: &Option<Vec<String>>) -> String {
    match tags {
        Some(t) if !t.is_empty() => t.join(";"),
        Some(_) => "(none)".into(),
        None => "-".into(),
    }
}

fn n(v: u64) -> String {
    v.to_string()
}

/// The range and filters in words.
pub fn selection_text(report: &Report) -> String {
    let s = &report.selection;
    let mut out = format!(
        "[{}, {})",
        s.since.as_deref().unwrap_or("beginning"),
        s.until.as_deref().unwrap_or("end")
    );
    if let Some(svc) = &s.service {
        let _ = write!(out, ", service {}", printable(svc));
    }
    if let Some(p) = &s.purpose {
        let _ = write!(out, ", purpose {} and below", printable(p));
    }
    out
}

/// The report as aligned tables.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let log = &report.log;
    let _ = writeln!(out, "pgpurpose audit report ({})", report.format);
    let _ = writeln!(
        out,
        "  log:      {} segment file(s), {} records, seq {}..{}, {} .. {}",
        log.segments.len(),
        log.records,
        log.first_seq.map_or("-".into(), |v| v.to_string()),
        log.last_seq.map_or("-".into(), |v| v.to_string()),
        log.first_time.as_deref().unwrap_or("-"),
        log.last_time.as_deref().unwrap_or("-"),
    );
    let chain = match &log.chain_break {
        None => "intact (hashes and links; checkpoint MACs: run `pgpurpose audit verify`)".into(),
        Some(b) => format!("BROKEN at {} (run `pgpurpose audit verify`)", printable(b)),
    };
    let _ = writeln!(out, "  chain:    {chain}");
    for l in &log.abandoned_partial_lines {
        let _ = writeln!(
            out,
            "  note:     {} is a partial line abandoned after a failed write (not a record)",
            printable(l)
        );
    }
    let _ = writeln!(out, "  selected: {}", selection_text(report));
    let _ = writeln!(
        out,
        "  counted:  {} .. {}",
        report.span.first.as_deref().unwrap_or("-"),
        report.span.last.as_deref().unwrap_or("-")
    );

    out.push_str("\nDecisions by service and purpose\n");
    let mut rows: Vec<Vec<String>> = report
        .services
        .iter()
        .map(|r| {
            let t = &r.totals;
            vec![
                printable(&r.service),
                printable(&r.purpose),
                n(t.statements),
                n(t.allow),
                n(t.rewrite),
                n(t.block),
                n(t.uses),
                n(t.masked),
                n(t.denied),
                n(r.sessions),
            ]
        })
        .collect();
    let t = &report.totals;
    rows.push(vec![
        "TOTAL".into(),
        String::new(),
        n(t.statements),
        n(t.allow),
        n(t.rewrite),
        n(t.block),
        n(t.uses),
        n(t.masked),
        n(t.denied),
        String::new(),
    ]);
    out.push_str(&aligned(
        &[
            "SERVICE",
            "PURPOSE",
            "STATEMENTS",
            "ALLOW",
            "REWRITE",
            "BLOCK",
            "USES",
            "MASKED",
            "DENIED",
            "SESSIONS",
        ],
        &[false, false, true, true, true, true, true, true, true, true],
        &rows,
    ));

    out.push_str("\nColumn uses by clause kind\n");
    let mut rows = Vec::new();
    for c in &report.columns {
        for (clause, u) in &c.clauses {
            rows.push(vec![
                printable(&c.service),
                printable(&c.purpose),
                printable(&format!("{}.{}", c.table, c.column)),
                printable(&tags_text(&c.tags)),
                printable(clause),
                n(u.uses),
                n(u.masked),
                n(u.denied),
                n(u.in_blocked),
            ]);
        }
    }
    if rows.is_empty() {
        out.push_str("  (no column uses)\n");
    } else {
        out.push_str(&aligned(
            &[
                "SERVICE",
                "PURPOSE",
                "COLUMN",
                "TAGS",
                "CLAUSE",
                "USES",
                "MASKED",
                "DENIED",
                "IN_BLOCKED",
            ],
            &[false, false, false, false, false, true, true, true, true],
            &rows,
        ));
    }

    let _ = writeln!(
        out,
        "\nTop blocked statements ({} of {} fingerprints)",
        report.blocked.len(),
        report.blocked_fingerprints
    );
    if report.blocked.is_empty() {
        out.push_str("  (none blocked)\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .blocked
            .iter()
            .map(|b| {
                vec![
                    n(b.count),
                    printable(&b.fingerprint),
                    printable(&b.rules.join(",")),
                    printable(&b.services.join(",")),
                    printable(&b.sql),
                ]
            })
            .collect();
        out.push_str(&aligned(
            &["COUNT", "FINGERPRINT", "RULES", "SERVICES", "SQL"],
            &[true, false, false, false, false],
            &rows,
        ));
    }

    let c = &report.connections;
    let _ = writeln!(
        out,
        "\nConnections: {} authenticated, {} refused, {} closed",
        c.authenticated, c.refused, c.closed
    );
    for (reason, count) in &c.refused_reasons {
        let _ = writeln!(out, "  refused {count:>6}  {}", printable(reason));
    }

    out.push_str("\nPolicy versions\n");
    if report.policy_versions.is_empty() {
        out.push_str("  (none seen)\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .policy_versions
            .iter()
            .map(|p| {
                vec![
                    printable(&p.version),
                    n(p.statements),
                    p.first_seen.clone(),
                    p.last_seen.clone(),
                ]
            })
            .collect();
        out.push_str(&aligned(
            &["VERSION", "STATEMENTS", "FIRST_SEEN", "LAST_SEEN"],
            &[false, true, false, false],
            &rows,
        ));
    }
    if !report.policy_events.is_empty() {
        let events: Vec<String> = report
            .policy_events
            .iter()
            .map(|(e, c)| format!("{} {c}", printable(e)))
            .collect();
        let _ = writeln!(out, "  policy events: {}", events.join(", "));
    }
    out
}

/// One RFC 4180 field: quoted when it holds a comma, quote, CR or LF; quotes doubled. A text
/// field that a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, tab or
/// CR; a quoted identifier can be any text) gets a leading `'`, as OWASP advises for CSV
/// injection. Counts are written as numbers and never pass through here.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV header.
pub const CSV_HEADER: &str =
    "service,purpose,table,column,tags,clause,uses,masked,denied,in_blocked";

/// One row per service, purpose, table, column (and tags) and clause kind, CRLF line ends
/// (RFC 4180). `tags` is `;`-joined, empty when the column is untagged.
pub fn csv(report: &Report) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    for c in &report.columns {
        let tags = c.tags.as_ref().map(|t| t.join(";")).unwrap_or_default();
        for (
            clause,
            UseCounts {
                uses,
                masked,
                denied,
                in_blocked,
            },
        ) in &c.clauses
        {
            let fields = [
                csv_field(&c.service),
                csv_field(&c.purpose),
                csv_field(&c.table),
                csv_field(&c.column),
                csv_field(&tags),
                csv_field(clause),
                uses.to_string(),
                masked.to_string(),
                denied.to_string(),
                in_blocked.to_string(),
            ];
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        }
    }
    out
}

//! The report as ONE self-contained HTML page: inline CSS, inline SVG bar charts drawn here,
//! no scripts, no fonts or images from anywhere, so a reviewer can open it offline and archive it.
//!
//! Every piece of text from the log is HTML-escaped ([`esc`]); SQL in the log is literal-free
//! but identifiers can hold anything. Every count on the page sits in an element whose
//! `data-key` attribute is a JSON array naming it (e.g. `["service","ads","advertising","block"]`,
//! see [`count_keys`]), so a test, or a reviewer's script, can read the page back and compare
//! it with the JSON report. Chart bars carry `data-bar` (same naming) and `data-value`.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::text::selection_text;
use super::{Report, UseCounts};

/// Escape text for HTML element content and double- or single-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#xFFFD;");
            }
            c => out.push(c),
        }
    }
    out
}

const ALLOW: &str = "#2e7d32";
const REWRITE: &str = "#e6a100";
const BLOCK: &str = "#c62828";
const NEUTRAL: &str = "#3b6fb6";
/// Colours of clause kinds, in the order kinds are first met.
const PALETTE: [&str; 12] = [
    "#3b6fb6", "#e07b39", "#6a9f3a", "#8e5ea2", "#c9a227", "#3aa1a1", "#d45087", "#7f7f7f",
    "#a05d2c", "#4f5bd5", "#2f8f5b", "#b34242",
];

/// Every count of a report with the key the page gives it: the contract between the JSON
/// report and the page (`data-key` attributes).
pub fn count_keys(report: &Report) -> Vec<(Value, u64)> {
    let mut out = Vec::new();
    let t = &report.totals;
    for (name, v) in totals_fields(t) {
        out.push((json!(["totals", name]), v));
    }
    for s in &report.services {
        for (name, v) in totals_fields(&s.totals) {
            out.push((json!(["service", s.service, s.purpose, name]), v));
        }
        out.push((
            json!(["service", s.service, s.purpose, "sessions"]),
            s.sessions,
        ));
    }
    for c in &report.columns {
        let clauses =
            std::iter::once(("*", &c.total)).chain(c.clauses.iter().map(|(k, v)| (k.as_str(), v)));
        for (clause, u) in clauses {
            for (name, v) in use_fields(u) {
                out.push((
                    json!([
                        "column", c.service, c.purpose, c.table, c.column, c.tags, clause, name
                    ]),
                    v,
                ));
            }
        }
    }
    out.push((json!(["blocked_fingerprints"]), report.blocked_fingerprints));
    for b in &report.blocked {
        out.push((json!(["blocked", b.fingerprint, "count"]), b.count));
    }
    let c = &report.connections;
    out.push((json!(["connections", "authenticated"]), c.authenticated));
    out.push((json!(["connections", "refused"]), c.refused));
    out.push((json!(["connections", "closed"]), c.closed));
    for (reason, v) in &c.refused_reasons {
        out.push((json!(["refused_reason", reason]), *v));
    }
    for p in &report.policy_versions {
        out.push((
            json!(["policy_version", p.version, "statements"]),
            p.statements,
        ));
    }
    for (e, v) in &report.policy_events {
        out.push((json!(["policy_event", e]), *v));
    }
    out
}

fn totals_fields(t: &super::Totals) -> [(&'static str, u64); 8] {
    [
        ("statements", t.statements),
        ("allow", t.allow),
        ("rewrite", t.rewrite),
        ("block", t.block),
        ("uses", t.uses),
        ("masked", t.masked),
        ("denied", t.denied),
        ("in_blocked", t.in_blocked),
    ]
}

fn use_fields(u: &UseCounts) -> [(&'static str, u64); 4] {
    [
        ("uses", u.uses),
        ("masked", u.masked),
        ("denied", u.denied),
        ("in_blocked", u.in_blocked),
    ]
}

/// A `<td>` holding a count.
fn num_td(key: Value, v: u64, class: &str) -> String {
    let zero = if v == 0 { " zero" } else { "" };
    format!(
        "<td class=\"num{zero} {class}\" data-key=\"{}\">{v}</td>",
        esc(&key.to_string())
    )
}

/// One horizontal stacked bar chart.
struct Bar {
    label: String,
    /// Segments: (name for the key and legend, value, colour).
    segments: Vec<(String, u64, String)>,
    /// JSON key prefix of the bar's segments (segment name appended).
    key: Vec<Value>,
    /// Text after the bar.
    note: String,
}

fn svg_chart(id: &str, title: &str, bars: &[Bar], legend: &[(String, String)]) -> String {
    const LABEL_W: f64 = 250.0;
    const BAR_W: f64 = 560.0;
    const ROW_H: f64 = 26.0;
    const TOP: f64 = 8.0;
    let width = LABEL_W + BAR_W + 140.0;
    let max = bars
        .iter()
        .map(|b| b.segments.iter().map(|s| s.1).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let legend_h = if legend.is_empty() { 0.0 } else { 26.0 };
    let height = TOP + ROW_H * bars.len() as f64 + legend_h + 6.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure class=\"chart\" id=\"{id}\"><figcaption>{}</figcaption>\
         <svg role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\">",
        esc(title),
        esc(title)
    );
    for (i, bar) in bars.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let label = truncate(&bar.label, 38);
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"lbl\"><title>{}</title>{}</text>",
            LABEL_W - 8.0,
            y + 15.0,
            esc(&bar.label),
            esc(&label)
        );
        let _ = write!(
            s,
            "<rect x=\"{LABEL_W}\" y=\"{}\" width=\"{BAR_W}\" height=\"18\" class=\"track\"/>",
            y + 2.0
        );
        let mut x = LABEL_W;
        for (name, v, colour) in &bar.segments {
            if *v == 0 {
                continue;
            }
            let w = BAR_W * (*v as f64) / (max as f64);
            let mut key = bar.key.clone();
            key.push(json!(name));
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{}\" width=\"{w:.1}\" height=\"18\" fill=\"{colour}\" \
                 data-bar=\"{}\" data-value=\"{v}\"><title>{}: {v}</title></rect>",
                y + 2.0,
                esc(&Value::Array(key).to_string()),
                esc(name)
            );
            x += w;
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" class=\"val\">{}</text>",
            x + 6.0,
            y + 15.0,
            esc(&bar.note)
        );
    }
    let mut lx = LABEL_W;
    let ly = TOP + ROW_H * bars.len() as f64 + 10.0;
    for (name, colour) in legend {
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{ly}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{}\" class=\"leg\">{}</text>",
            lx + 16.0,
            ly + 10.5,
            esc(name)
        );
        lx += 16.0 + 7.2 * name.chars().count() as f64 + 18.0;
    }
    s.push_str("</svg></figure>\n");
    s
}

/// `2026-11-23T08:12:12.012156Z` as `2026-11-23 08:12:12Z` (the full time is the title).
fn short_time(t: &str) -> String {
    match (t.get(..10), t.get(11..19)) {
        (Some(date), Some(time)) => format!("{date} {time}Z"),
        _ => t.to_owned(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// The page's style, inlined into every report.
const CSS: &str = include_str!("report.css");

fn tags_html(tags: &Option<Vec<String>>) -> String {
    match tags {
        Some(t) if !t.is_empty() => t
            .iter()
            .map(|t| format!("<span class=\"tag\">{}</span>", esc(t)))
            .collect(),
        Some(_) => "<span class=\"tag none\">no tags</span>".to_owned(),
        None => "<span class=\"tag none\">untagged</span>".to_owned(),
    }
}

/// The whole page.
pub fn page(report: &Report) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>pgpurpose audit report</title><style>",
    );
    h.push_str(CSS);
    h.push_str("</style></head><body>\n");
    header(&mut h, report);
    h.push_str("<main>\n");
    integrity(&mut h, report);
    cards(&mut h, report);
    decisions(&mut h, report);
    columns(&mut h, report);
    blocked(&mut h, report);
    connections_and_policy(&mut h, report);
    h.push_str("</main>\n");
    let _ = writeln!(
        h,
        "<footer>Generated by <code>pgpurpose audit report</code> ({}). Every count on this page \
         is also in <code>--format json</code>.</footer>\n</body></html>",
        esc(&report.format)
    );
    h
}

fn header(h: &mut String, r: &Report) {
    let log = &r.log;
    let _ = writeln!(
        h,
        "<header><h1>Audit report: purpose limitation</h1><div class=\"meta\">\
         Selected <b id=\"selection\">{}</b> · counted <b id=\"span\">{} – {}</b> · \
         log of <b>{}</b> records in <b>{}</b> segment file(s), seq {}–{}</div></header>",
        esc(&selection_text(r)),
        esc(r.span.first.as_deref().unwrap_or("–")),
        esc(r.span.last.as_deref().unwrap_or("–")),
        log.records,
        log.segments.len(),
        log.first_seq.map_or("–".into(), |v| v.to_string()),
        log.last_seq.map_or("–".into(), |v| v.to_string()),
    );
}

fn integrity(h: &mut String, r: &Report) {
    match &r.log.chain_break {
        None => {
            let _ = writeln!(
                h,
                "<div class=\"banner ok\" id=\"chain\" data-chain=\"intact\">Hash chain intact \
                 over all {} records read (each record's hash and its link to the one before). \
                 Checkpoint MACs need the key: <code>pgpurpose audit verify</code>.</div>",
                r.log.records
            );
        }
        Some(b) => {
            let _ = writeln!(
                h,
                "<div class=\"banner bad\" id=\"chain\" data-chain=\"broken\">The hash chain is \
                 BROKEN at {}. The log was damaged or edited; the counts below are of the records \
                 as found. Run <code>pgpurpose audit verify</code>.</div>",
                esc(b)
            );
        }
    }
}

fn cards(h: &mut String, r: &Report) {
    for l in &r.log.abandoned_partial_lines {
        let _ = writeln!(
            h,
            "<div class=\"banner note\">Note: <code>{}</code> is a partial line the proxy \
             abandoned after a failed write (a recovery segment follows). It was never a record: \
             its statement was blocked.</div>",
            esc(l)
        );
    }
    let t = &r.totals;
    let c = &r.connections;
    h.push_str("<div class=\"cards\">");
    let items: [(&str, &str, Value, u64); 8] = [
        (
            "",
            "Statements",
            json!(["totals", "statements"]),
            t.statements,
        ),
        ("allow", "Allowed", json!(["totals", "allow"]), t.allow),
        (
            "rewrite",
            "Rewritten",
            json!(["totals", "rewrite"]),
            t.rewrite,
        ),
        ("block", "Blocked", json!(["totals", "block"]), t.block),
        (
            "rewrite",
            "Masked uses",
            json!(["totals", "masked"]),
            t.masked,
        ),
        (
            "block",
            "Denied uses",
            json!(["totals", "denied"]),
            t.denied,
        ),
        (
            "",
            "Sessions opened",
            json!(["connections", "authenticated"]),
            c.authenticated,
        ),
        (
            "block",
            "Connections refused",
            json!(["connections", "refused"]),
            c.refused,
        ),
    ];
    for (class, label, key, v) in items {
        // The cards repeat counts of the tables below; their keys are prefixed so that every
        // `data-key` on the page is unique.
        let mut k = vec![json!("card")];
        if let Value::Array(rest) = key {
            k.extend(rest);
        }
        let _ = write!(
            h,
            "<div class=\"card {class}\"><span class=\"n\" data-card=\"{}\">{v}</span>\
             <span class=\"k\">{}</span></div>",
            esc(&Value::Array(k).to_string()),
            esc(label)
        );
    }
    h.push_str("</div>\n");
}

fn decisions(h: &mut String, r: &Report) {
    h.push_str(
        "<section id=\"decisions\"><h2>Decisions by service and purpose</h2>\
         <p class=\"help\">One statement = one SQL-bearing message the proxy decided on. \
         <b>Allowed</b>: forwarded unchanged; <b>rewritten</b>: forwarded with forbidden output \
         columns masked as NULL or row filters added; <b>blocked</b>: answered with an error, \
         never reached the database.</p>\n",
    );
    let bars: Vec<Bar> = r
        .services
        .iter()
        .map(|s| Bar {
            label: format!("{} · {}", s.service, s.purpose),
            segments: vec![
                ("allow".into(), s.totals.allow, ALLOW.into()),
                ("rewrite".into(), s.totals.rewrite, REWRITE.into()),
                ("block".into(), s.totals.block, BLOCK.into()),
            ],
            key: vec![json!("service"), json!(s.service), json!(s.purpose)],
            note: format!("{} ({} blocked)", s.totals.statements, s.totals.block),
        })
        .collect();
    if bars.is_empty() {
        h.push_str("<p class=\"muted\">No statements in the selection.</p>");
    } else {
        h.push_str(&svg_chart(
            "chart-decisions",
            "Statements per service and purpose",
            &bars,
            &[
                ("allowed".into(), ALLOW.into()),
                ("rewritten".into(), REWRITE.into()),
                ("blocked".into(), BLOCK.into()),
            ],
        ));
    }
    h.push_str(
        "<table id=\"services\"><thead><tr><th>Service</th><th>Purpose</th>\
         <th class=\"num\">Statements</th><th class=\"num\">Allowed</th>\
         <th class=\"num\">Rewritten</th><th class=\"num\">Blocked</th>\
         <th class=\"num\">Column uses</th><th class=\"num\">Masked</th>\
         <th class=\"num\">Denied</th><th class=\"num\">Uses in blocked</th>\
         <th class=\"num\">Sessions</th></tr></thead><tbody>\n",
    );
    let row = |h: &mut String, prefix: Vec<Value>, t: &super::Totals, sessions: Option<u64>| {
        for (name, v) in totals_fields(t) {
            let mut key = prefix.clone();
            key.push(json!(name));
            h.push_str(&num_td(Value::Array(key), v, name));
        }
        match sessions {
            Some(n) => {
                let mut key = prefix;
                key.push(json!("sessions"));
                h.push_str(&num_td(Value::Array(key), n, ""));
            }
            None => h.push_str("<td></td>"),
        }
    };
    for s in &r.services {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td>",
            esc(&s.service),
            esc(&s.purpose)
        );
        row(
            h,
            vec![json!("service"), json!(s.service), json!(s.purpose)],
            &s.totals,
            Some(s.sessions),
        );
        h.push_str("</tr>\n");
    }
    h.push_str("<tr class=\"total\"><td>All</td><td></td>");
    row(h, vec![json!("totals")], &r.totals, None);
    h.push_str("</tr>\n</tbody></table></section>\n");
}

fn columns(h: &mut String, r: &Report) {
    h.push_str(
        "<section id=\"columns\"><h2>Column uses</h2>\
         <p class=\"help\">Which columns each service used under each purpose, in which clause \
         (output, predicate, join, ...). <b>Masked</b>: the use was an output column the policy \
         forbids, replaced by NULL. <b>Denied</b>: the policy did not allow this use (it was \
         masked, or it blocked the statement). <b>In blocked</b>: the use was in a statement \
         that was blocked. Tags are the column's as recorded.</p>\n",
    );
    // Chart 1: clause mix per service and purpose.
    let mut kinds: Vec<String> = Vec::new();
    for c in &r.columns {
        for k in c.clauses.keys() {
            if !kinds.contains(k) {
                kinds.push(k.clone());
            }
        }
    }
    kinds.sort();
    let colour = |k: &str| {
        let i = kinds.iter().position(|x| x == k).unwrap_or(0);
        PALETTE[i % PALETTE.len()].to_owned()
    };
    let mut per_service: Vec<(String, String, std::collections::BTreeMap<String, u64>)> =
        Vec::new();
    for c in &r.columns {
        let pos = per_service
            .iter()
            .position(|(s, p, _)| *s == c.service && *p == c.purpose);
        let idx = match pos {
            Some(i) => i,
            None => {
                per_service.push((c.service.clone(), c.purpose.clone(), Default::default()));
                per_service.len() - 1
            }
        };
        for (k, u) in &c.clauses {
            *per_service[idx].2.entry(k.clone()).or_default() += u.uses;
        }
    }
    if r.columns.is_empty() {
        h.push_str("<p class=\"muted\">No column uses in the selection.</p></section>\n");
        return;
    }
    let bars: Vec<Bar> = per_service
        .iter()
        .map(|(s, p, m)| Bar {
            label: format!("{s} · {p}"),
            segments: kinds
                .iter()
                .map(|k| (k.clone(), m.get(k).copied().unwrap_or(0), colour(k)))
                .collect(),
            key: vec![json!("clause_mix"), json!(s), json!(p)],
            note: format!("{} uses", m.values().sum::<u64>()),
        })
        .collect();
    let legend: Vec<(String, String)> = kinds.iter().map(|k| (k.clone(), colour(k))).collect();
    h.push_str(&svg_chart(
        "chart-clauses",
        "Column uses per service and purpose, by clause kind",
        &bars,
        &legend,
    ));
    // Chart 2: the most used columns, split by what happened to the use.
    let mut top: Vec<&super::ColumnRow> = r.columns.iter().collect();
    top.sort_by_key(|c| std::cmp::Reverse(c.total.uses));
    top.truncate(15);
    let bars: Vec<Bar> = top
        .iter()
        .map(|c| {
            let t = &c.total;
            let denied_unmasked = t.denied.saturating_sub(t.masked);
            Bar {
                label: format!("{}.{} · {}", c.table, c.column, c.service),
                segments: vec![
                    (
                        "allowed".into(),
                        t.uses.saturating_sub(t.denied),
                        NEUTRAL.into(),
                    ),
                    ("masked".into(), t.masked, REWRITE.into()),
                    ("denied".into(), denied_unmasked, BLOCK.into()),
                ],
                key: vec![
                    json!("column_use"),
                    json!(c.service),
                    json!(c.purpose),
                    json!(c.table),
                    json!(c.column),
                    json!(c.tags),
                ],
                note: format!("{} uses", t.uses),
            }
        })
        .collect();
    h.push_str(&svg_chart(
        "chart-top-columns",
        "Most used columns (top 15): allowed, masked, denied without mask",
        &bars,
        &[
            ("allowed".into(), NEUTRAL.into()),
            ("masked".into(), REWRITE.into()),
            ("denied (not masked)".into(), BLOCK.into()),
        ],
    ));
    h.push_str(
        "<table id=\"column-uses\"><thead><tr><th>Service</th><th>Purpose</th><th>Column</th>\
         <th>Tags</th><th>Clause</th><th class=\"num\">Uses</th><th class=\"num\">Masked</th>\
         <th class=\"num\">Denied</th><th class=\"num\">In blocked</th></tr></thead>\n",
    );
    for c in &r.columns {
        let span = c.clauses.len() + 1;
        let base = vec![
            json!("column"),
            json!(c.service),
            json!(c.purpose),
            json!(c.table),
            json!(c.column),
            json!(c.tags),
        ];
        let _ = write!(
            h,
            "<tbody class=\"group\"><tr class=\"coltotal\"><td rowspan=\"{span}\">{}</td>\
             <td rowspan=\"{span}\">{}</td><td rowspan=\"{span}\"><code>{}.{}</code></td>\
             <td rowspan=\"{span}\">{}</td><td>all clauses</td>",
            esc(&c.service),
            esc(&c.purpose),
            esc(&c.table),
            esc(&c.column),
            tags_html(&c.tags)
        );
        let cells = |h: &mut String, clause: &str, u: &UseCounts| {
            for (name, v) in use_fields(u) {
                let mut key = base.clone();
                key.push(json!(clause));
                key.push(json!(name));
                h.push_str(&num_td(Value::Array(key), v, name));
            }
        };
        cells(h, "*", &c.total);
        h.push_str("</tr>\n");
        for (clause, u) in &c.clauses {
            let _ = write!(h, "<tr><td>{}</td>", esc(clause));
            cells(h, clause, u);
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody>\n");
    }
    h.push_str("</table></section>\n");
}

fn blocked(h: &mut String, r: &Report) {
    let _ = writeln!(
        h,
        "<section id=\"blocked\"><h2>Top blocked statements</h2><p class=\"help\">Blocked \
         statements grouped by fingerprint (statements equal but for literal values share one). \
         Showing {} of <span data-key=\"{}\">{}</span> distinct fingerprints. SQL is normalised: \
         every literal is <code>?</code>.</p>",
        r.blocked.len(),
        esc(&json!(["blocked_fingerprints"]).to_string()),
        r.blocked_fingerprints
    );
    if r.blocked.is_empty() {
        h.push_str("<p class=\"muted\">Nothing was blocked in the selection.</p></section>\n");
        return;
    }
    let bars: Vec<Bar> = r
        .blocked
        .iter()
        .map(|b| Bar {
            label: b.fingerprint.clone(),
            segments: vec![("count".into(), b.count, BLOCK.into())],
            key: vec![json!("blocked"), json!(b.fingerprint)],
            note: format!("{} blocked", b.count),
        })
        .collect();
    h.push_str(&svg_chart(
        "chart-blocked",
        "Blocks per fingerprint",
        &bars,
        &[],
    ));
    h.push_str(
        "<div class=\"scroll\"><table id=\"blocked-statements\"><thead><tr><th class=\"num\">Count</th>\
         <th>Fingerprint</th><th>SQL (normalised)</th><th>Rule</th><th>SQLSTATE</th>\
         <th>Service · purpose</th><th>First / last seen</th></tr></thead><tbody>\n",
    );
    for b in &r.blocked {
        h.push_str("<tr>");
        h.push_str(&num_td(
            json!(["blocked", b.fingerprint, "count"]),
            b.count,
            "block",
        ));
        let _ = writeln!(
            h,
            "<td class=\"fp\"><code>{}</code></td><td class=\"sql\"><code>{}</code></td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"when\"><span title=\"{}\">{}</span><br><span title=\"{}\">{}</span></td>\
             </tr>",
            esc(&b.fingerprint),
            esc(&b.sql),
            esc(&b.rules.join(", ")),
            esc(&b.sqlstates.join(", ")),
            b.services
                .iter()
                .map(|s| esc(s))
                .collect::<Vec<_>>()
                .join("<br>"),
            esc(&b.first_seen),
            esc(&short_time(&b.first_seen)),
            esc(&b.last_seen),
            esc(&short_time(&b.last_seen))
        );
    }
    h.push_str("</tbody></table></div></section>\n");
}

fn connections_and_policy(h: &mut String, r: &Report) {
    let c = &r.connections;
    h.push_str(
        "<section id=\"connections\"><h2>Connections</h2><p class=\"help\">Authenticated: a \
         service proved its identity and a session began. Refused: the proxy turned the \
         connection away (reasons in the proxy's own words). Closed: a session ended.</p>\
         <table><thead><tr><th>Event</th><th class=\"num\">Count</th></tr></thead><tbody>",
    );
    for (name, v) in [
        ("authenticated", c.authenticated),
        ("refused", c.refused),
        ("closed", c.closed),
    ] {
        let _ = write!(h, "<tr><td>{name}</td>");
        h.push_str(&num_td(json!(["connections", name]), v, ""));
        h.push_str("</tr>");
    }
    for (reason, v) in &c.refused_reasons {
        let _ = write!(h, "<tr><td class=\"muted\">refused: {}</td>", esc(reason));
        h.push_str(&num_td(json!(["refused_reason", reason]), *v, "block"));
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></section>\n");

    h.push_str(
        "<section id=\"policy\"><h2>Policy versions</h2><p class=\"help\">The policy versions \
         statements were decided under, and policy load events, in the selection.</p>\
         <table><thead><tr><th>Version</th><th class=\"num\">Statements</th><th>First seen</th>\
         <th>Last seen</th></tr></thead><tbody>",
    );
    for p in &r.policy_versions {
        let _ = write!(h, "<tr><td><code>{}</code></td>", esc(&p.version));
        h.push_str(&num_td(
            json!(["policy_version", p.version, "statements"]),
            p.statements,
            "",
        ));
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td></tr>",
            esc(&p.first_seen),
            esc(&p.last_seen)
        );
    }
    h.push_str("</tbody></table>");
    if !r.policy_events.is_empty() {
        h.push_str("<table><thead><tr><th>Policy event</th><th class=\"num\">Count</th></tr></thead><tbody>");
        for (e, v) in &r.policy_events {
            let _ = write!(h, "<tr><td>{}</td>", esc(e));
            h.push_str(&num_td(json!(["policy_event", e]), *v, ""));
            h.push_str("</tr>");
        }
        h.push_str("</tbody></table>");
    }
    let log = &r.log;
    let _ = writeln!(
        h,
        "</section>\n<section id=\"log\"><h2>The log read</h2><dl class=\"kv\">\
         <dt>Records</dt><dd>{}</dd><dt>Sequence</dt><dd>{} – {}</dd>\
         <dt>Time</dt><dd>{} – {}</dd><dt>Segment files</dt><dd>{}</dd></dl></section>",
        log.records,
        log.first_seq.map_or("–".into(), |v| v.to_string()),
        log.last_seq.map_or("–".into(), |v| v.to_string()),
        esc(log.first_time.as_deref().unwrap_or("–")),
        esc(log.last_time.as_deref().unwrap_or("–")),
        log.segments
            .iter()
            .map(|s| format!("<code>{}</code>", esc(s)))
            .collect::<Vec<_>>()
            .join("<br>")
    );
}

//! `pgpurpose audit report`: what a compliance reviewer needs to know, from the log alone.
//!
//! This module owns the [`Report`] model (the JSON schema is the serialisation of these
//! structs, named by [`REPORT_FORMAT`]) and the aggregation over a log's records; the renderers
//! live in [`text`] (terminal table, CSV) and [`html`] (one self-contained page).
//!
//! What is counted, for records whose time is in `[since, until)`:
//!
//! - `statement` records (one per SQL-bearing message: a simple Query of several statements is
//!   one record): per service and purpose, how many were allowed, rewritten and blocked;
//! - every column use inside them, per (service, purpose, table, column, tags) and clause kind:
//!   `uses`, `masked` (the use was an output replaced by NULL), `denied` (the policy did not
//!   allow the use; a denied use is masked or it blocks) and `in_blocked` (the use was in a
//!   message that was blocked, whether or not this use was the cause);
//! - blocked statements grouped by fingerprint (top N by count);
//! - `connection` records by event; `policy` records and the policy versions statements ran
//!   under.
//!
//! Times in records are fixed-width UTC (`2026-11-23T14:09:51.123456Z`), so after the
//! arguments are normalised to the same form (see [`normalize_time`]) the range is a text
//! comparison.

pub mod html;
pub mod text;
mod timefmt;

pub use timefmt::normalize_time;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use super::reader::{self, Position, ReaderError};
use super::record::{ConnectionEventKind, Decision, Event, Record};

/// Names and versions the JSON schema; bumped on any incompatible change.
pub const REPORT_FORMAT: &str = "pgpurpose-audit-report/1";

/// Default number of blocked fingerprints listed.
pub const DEFAULT_TOP: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Read(#[from] ReaderError),
    #[error("{arg}: {value:?} is not an RFC 3339 time (e.g. 2026-11-23T14:00:00Z or 2026-11-23)")]
    BadTimeArg { arg: &'static str, value: String },
    #[error("--since {since} is not before --until {until}")]
    EmptyRange { since: String, until: String },
    #[error(
        "{pos}: the record's time {time:?} is not fixed-width UTC (run `pgpurpose audit verify`)"
    )]
    BadRecordTime { pos: Position, time: String },
    #[error("cannot write {what}: {source}")]
    Write {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot encode the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Output format of `audit report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned plain-text tables for a terminal.
    Table,
    /// The full report as one JSON document (schema: `pgpurpose-audit-report/1`).
    Json,
    /// One row per service, purpose, table, column and clause kind (RFC 4180).
    Csv,
    /// One self-contained HTML page with charts (no network, no scripts).
    Html,
}

/// Arguments of `pgpurpose audit report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Audit log directories and/or segment files (pgpurpose-audit-*.jsonl).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Count records at or after this time (RFC 3339, e.g. 2026-11-23T08:00:00Z or 2026-11-23).
    #[arg(long)]
    pub since: Option<String>,
    /// Count records strictly before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only this purpose and the purposes below it (`security` includes `security.auth`).
    #[arg(long)]
    pub purpose: Option<String>,
    /// How many blocked statement fingerprints to list.
    #[arg(long, default_value_t = DEFAULT_TOP)]
    pub top: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// What to count: the normalised range and the filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// Inclusive lower bound, normalised (`None`: from the beginning).
    pub since: Option<String>,
    /// Exclusive upper bound, normalised (`None`: to the end).
    pub until: Option<String>,
    pub service: Option<String>,
    pub purpose: Option<String>,
}

impl Selection {
    fn in_range(&self, time: &str) -> bool {
        self.since.as_deref().is_none_or(|s| time >= s)
            && self.until.as_deref().is_none_or(|u| time < u)
    }

    /// Whether a record of `service`/`purpose` passes the filters (`None`: not known, e.g. a
    /// connection refused before authentication, which passes only when there is no filter).
    fn matches(&self, service: Option<&str>, purpose: Option<&str>) -> bool {
        let service_ok = match (&self.service, service) {
            (None, _) => true,
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => false,
        };
        let purpose_ok = match (&self.purpose, purpose) {
            (None, _) => true,
            (Some(want), Some(got)) => purpose_is_within(got, want),
            (Some(_), None) => false,
        };
        service_ok && purpose_ok
    }
}

/// Whether `purpose` is `ancestor` or below it in the dotted tree.
pub fn purpose_is_within(purpose: &str, ancestor: &str) -> bool {
    purpose == ancestor
        || purpose
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The whole report; its JSON serialisation is the documented schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Always [`REPORT_FORMAT`].
    pub format: String,
    pub selection: Selection,
    pub log: LogInfo,
    /// Times of the first and last record counted (statements, connections, policy events).
    pub span: Span,
    pub totals: Totals,
    /// Per service and purpose, sorted by service then purpose.
    pub services: Vec<ServiceRow>,
    /// Per service, purpose, table, column and tags, sorted in that order.
    pub columns: Vec<ColumnRow>,
    /// Distinct fingerprints of blocked statements in the selection (`blocked` lists the top N).
    pub blocked_fingerprints: u64,
    /// Blocked statements by fingerprint, most frequent first (ties by fingerprint).
    pub blocked: Vec<BlockedRow>,
    pub connections: ConnectionCounts,
    /// Policy events (`loaded`, `reloaded`, `reload_refused`) by event.
    pub policy_events: BTreeMap<String, u64>,
    /// Policy versions seen in statements or policy events, by first appearance.
    pub policy_versions: Vec<PolicyVersionRow>,
}

/// The log that was read (all of it, whatever the selection).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogInfo {
    /// Segment files in reading order.
    pub segments: Vec<String>,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    /// Every record's hash matches its bytes and links to the previous one, seqs consecutive.
    /// Checkpoint MACs are not checked here (they need the key): `pgpurpose audit verify`.
    pub chain_intact: bool,
    /// `file:line: what` of the first break.
    pub chain_break: Option<String>,
    /// `file:line` of partial lines the writer abandoned after a failed write (a `recovery`
    /// segment follows each); they were never records and are not counted.
    pub abandoned_partial_lines: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Span {
    pub first: Option<String>,
    pub last: Option<String>,
}

/// Counts of decisions and column uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Statement records (SQL-bearing messages).
    pub statements: u64,
    pub allow: u64,
    pub rewrite: u64,
    pub block: u64,
    /// Column uses in those statements.
    pub uses: u64,
    /// Uses masked as NULL.
    pub masked: u64,
    /// Uses the policy did not allow.
    pub denied: u64,
    /// Uses in blocked statements.
    pub in_blocked: u64,
}

impl Totals {
    fn count_decision(&mut self, d: Decision) {
        self.statements += 1;
        match d {
            Decision::Allow => self.allow += 1,
            Decision::Rewrite => self.rewrite += 1,
            Decision::Block => self.block += 1,
        }
    }

    fn count_use(&mut self, u: &UseCounts) {
        self.uses += u.uses;
        self.masked += u.masked;
        self.denied += u.denied;
        self.in_blocked += u.in_blocked;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRow {
    pub service: String,
    pub purpose: String,
    #[serde(flatten)]
    pub totals: Totals,
    /// Distinct sessions that sent statements.
    pub sessions: u64,
}

/// Use counts of one column in one clause kind (or over all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UseCounts {
    pub uses: u64,
    pub masked: u64,
    pub denied: u64,
    pub in_blocked: u64,
}

impl UseCounts {
    fn add(&mut self, other: &UseCounts) {
        self.uses += other.uses;
        self.masked += other.masked;
        self.denied += other.denied;
        self.in_blocked += other.in_blocked;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnRow {
    pub service: String,
    pub purpose: String,
    /// `schema.table`.
    pub table: String,
    pub column: String,
    /// The column's tags as recorded; `null` when untagged.
    pub tags: Option<Vec<String>>,
    /// Over all clause kinds.
    #[serde(flatten)]
    pub total: UseCounts,
    /// Per clause kind (`output`, `predicate`, `join`, ...), sorted by name.
    pub clauses: BTreeMap<String, UseCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedRow {
    pub fingerprint: String,
    /// Normalised SQL (literals are `?`) as first seen.
    pub sql: String,
    pub count: u64,
    /// Deciding rules, sorted.
    pub rules: Vec<String>,
    /// SQLSTATEs answered, sorted.
    pub sqlstates: Vec<String>,
    /// `service/purpose` pairs that sent it, sorted.
    pub services: Vec<String>,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionCounts {
    pub authenticated: u64,
    pub refused: u64,
    pub closed: u64,
    /// Refusals by the proxy's reason (its own words, never client text).
    pub refused_reasons: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyVersionRow {
    pub version: String,
    /// Statement records decided under this version.
    pub statements: u64,
    pub first_seen: String,
    pub last_seen: String,
}

/// Accumulates a [`Report`] from records in log order.
#[derive(Debug, Default)]
pub struct Aggregator {
    selection: Selection,
    top: usize,
    log: LogInfo,
    span: Span,
    totals: Totals,
    services: BTreeMap<(String, String), (Totals, BTreeSet<String>)>,
    #[allow(clippy::type_complexity)]
    columns: BTreeMap<
        (String, String, String, String, Option<Vec<String>>),
        BTreeMap<String, UseCounts>,
    >,
    blocked: BTreeMap<String, BlockedAcc>,
    connections: ConnectionCounts,
    policy_events: BTreeMap<String, u64>,
    policy_versions: Vec<PolicyVersionRow>,
}

#[derive(Debug)]
struct BlockedAcc {
    sql: String,
    count: u64,
    rules: BTreeSet<String>,
    sqlstates: BTreeSet<String>,
    services: BTreeSet<String>,
    first_seen: String,
    last_seen: String,
}

impl Aggregator {
    pub fn new(selection: Selection, top: usize) -> Self {
        Aggregator {
            selection,
            top,
            ..Default::default()
        }
    }

    fn see_time(&mut self, time: &str) {
        if self.span.first.is_none() {
            self.span.first = Some(time.to_owned());
        }
        self.span.last = Some(time.to_owned());
    }

    fn see_policy_version(&mut self, version: &str, time: &str, statement: bool) {
        let row = match self
            .policy_versions
            .iter_mut()
            .find(|r| r.version == version)
        {
            Some(row) => row,
            None => {
                self.policy_versions.push(PolicyVersionRow {
                    version: version.to_owned(),
                    statements: 0,
                    first_seen: time.to_owned(),
                    last_seen: time.to_owned(),
                });
                let last = self.policy_versions.len() - 1;
                &mut self.policy_versions[last]
            }
        };
        row.last_seen = time.to_owned();
        if statement {
            row.statements += 1;
        }
    }

    /// Count one record (in log order).
    pub fn add(&mut self, record: &Record) {
        self.log.records += 1;
        if self.log.first_seq.is_none() {
            self.log.first_seq = Some(record.seq);
            self.log.first_time = Some(record.time.clone());
        }
        self.log.last_seq = Some(record.seq);
        self.log.last_time = Some(record.time.clone());
        if !self.selection.in_range(&record.time) {
            return;
        }
        let time = record.time.as_str();
        match &record.event {
            Event::Statement(s) => {
                if !self.selection.matches(Some(&s.service), Some(&s.purpose)) {
                    return;
                }
                self.see_time(time);
                self.see_policy_version(&s.policy_version, time, true);
                self.totals.count_decision(s.decision);
                let blocked = s.decision == Decision::Block;
                let (svc_totals, sessions) = self
                    .services
                    .entry((s.service.clone(), s.purpose.clone()))
                    .or_default();
                svc_totals.count_decision(s.decision);
                sessions.insert(s.session_id.clone());
                for detail in &s.statements {
                    for u in &detail.uses {
                        let counts = UseCounts {
                            uses: 1,
                            masked: u64::from(u.masked),
                            denied: u64::from(!u.allowed),
                            in_blocked: u64::from(blocked),
                        };
                        svc_totals.count_use(&counts);
                        self.totals.count_use(&counts);
                        self.columns
                            .entry((
                                s.service.clone(),
                                s.purpose.clone(),
                                u.table.clone(),
                                u.column.clone(),
                                u.tags.clone(),
                            ))
                            .or_default()
                            .entry(u.clause.clone())
                            .or_default()
                            .add(&counts);
                    }
                }
                if blocked {
                    let acc = self
                        .blocked
                        .entry(s.fingerprint.clone())
                        .or_insert_with(|| BlockedAcc {
                            sql: s.sql.clone(),
                            count: 0,
                            rules: BTreeSet::new(),
                            sqlstates: BTreeSet::new(),
                            services: BTreeSet::new(),
                            first_seen: time.to_owned(),
                            last_seen: time.to_owned(),
                        });
                    acc.count += 1;
                    acc.rules.insert(s.rule.clone());
                    if let Some(st) = &s.sqlstate {
                        acc.sqlstates.insert(st.clone());
                    }
                    acc.services.insert(format!("{}/{}", s.service, s.purpose));
                    acc.last_seen = time.to_owned();
                }
            }
            Event::Connection(c) => {
                if !self
                    .selection
                    .matches(c.service.as_deref(), c.purpose.as_deref())
                {
                    return;
                }
                self.see_time(time);
                match c.event {
                    ConnectionEventKind::Authenticated => self.connections.authenticated += 1,
                    ConnectionEventKind::Closed => self.connections.closed += 1,
                    ConnectionEventKind::Refused => {
                        self.connections.refused += 1;
                        let reason = c.reason.clone().unwrap_or_else(|| "(none)".to_owned());
                        *self.connections.refused_reasons.entry(reason).or_default() += 1;
                    }
                }
            }
            Event::Policy(p) => {
                self.see_time(time);
                *self.policy_events.entry(p.event.clone()).or_default() += 1;
                self.see_policy_version(&p.policy_version, time, false);
            }
            Event::Checkpoint(_) | Event::SegmentStart(_) => {}
        }
    }

    pub fn finish(self, segments: Vec<String>, chain: &reader::ChainCheck) -> Report {
        let services = self
            .services
            .into_iter()
            .map(|((service, purpose), (totals, sessions))| ServiceRow {
                service,
                purpose,
                totals,
                sessions: sessions.len() as u64,
            })
            .collect();
        let columns = self
            .columns
            .into_iter()
            .map(|((service, purpose, table, column, tags), clauses)| {
                let mut total = UseCounts::default();
                for c in clauses.values() {
                    total.add(c);
                }
                ColumnRow {
                    service,
                    purpose,
                    table,
                    column,
                    tags,
                    total,
                    clauses,
                }
            })
            .collect();
        let blocked_fingerprints = self.blocked.len() as u64;
        let mut blocked: Vec<BlockedRow> = self
            .blocked
            .into_iter()
            .map(|(fingerprint, a)| BlockedRow {
                fingerprint,
                sql: a.sql,
                count: a.count,
                rules: a.rules.into_iter().collect(),
                sqlstates: a.sqlstates.into_iter().collect(),
                services: a.services.into_iter().collect(),
                first_seen: a.first_seen,
                last_seen: a.last_seen,
            })
            .collect();
        // The map iterates by fingerprint, and the sort is stable: ties stay in that order.
        blocked.sort_by_key(|b| std::cmp::Reverse(b.count));
        blocked.truncate(self.top);
        Report {
            format: REPORT_FORMAT.to_owned(),
            selection: self.selection,
            log: LogInfo {
                segments,
                chain_intact: chain.intact(),
                chain_break: chain.first_break.clone(),
                abandoned_partial_lines: chain.abandoned_partial_lines.clone(),
                ..self.log
            },
            span: self.span,
            totals: self.totals,
            services,
            columns,
            blocked_fingerprints,
            blocked,
            connections: self.connections,
            policy_events: self.policy_events,
            policy_versions: self.policy_versions,
        }
    }
}

/// Whether a record's time has the fixed-width form the text comparison relies on.
fn is_fixed_width_utc(time: &str) -> bool {
    let b = time.as_bytes();
    b.len() == 27
        && b[26] == b'Z'
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
}

/// Read the log named by `paths` and aggregate it.
pub fn build(paths: &[PathBuf], selection: Selection, top: usize) -> Result<Report, ReportError> {
    let mut records = reader::open(paths)?;
    let segments = records
        .segments()
        .iter()
        .map(|s| s.path.display().to_string())
        .collect();
    let mut agg = Aggregator::new(selection, top);
    for item in records.by_ref() {
        let (pos, record) = item?;
        if !is_fixed_width_utc(&record.time) {
            return Err(ReportError::BadRecordTime {
                pos,
                time: record.time,
            });
        }
        agg.add(&record);
    }
    Ok(agg.finish(segments, records.chain_check()))
}

/// Render a report in a format.
pub fn render(report: &Report, format: Format) -> Result<String, ReportError> {
    Ok(match format {
        Format::Table => text::table(report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report)?;
            s.push('\n');
            s
        }
        Format::Csv => text::csv(report),
        Format::Html => html::page(report),
    })
}

/// Normalise the command line's range into a [`Selection`].
pub fn selection_from_args(args: &ReportArgs) -> Result<Selection, ReportError> {
    let since = normalize_arg("--since", args.since.as_deref())?;
    let until = normalize_arg("--until", args.until.as_deref())?;
    if let (Some(s), Some(u)) = (&since, &until) {
        if s >= u {
            return Err(ReportError::EmptyRange {
                since: s.clone(),
                until: u.clone(),
            });
        }
    }
    Ok(Selection {
        since,
        until,
        service: args.service.clone(),
        purpose: args.purpose.clone(),
    })
}

fn normalize_arg(arg: &'static str, value: Option<&str>) -> Result<Option<String>, ReportError> {
    value
        .map(|v| {
            normalize_time(v).ok_or_else(|| ReportError::BadTimeArg {
                arg,
                value: v.to_owned(),
            })
        })
        .transpose()
}

/// Exit status when the log has a problem: the chain check failed (the report is still
/// written) or a line is not a record (no report). Same meaning as in `audit verify`.
pub const EXIT_LOG_PROBLEM: u8 = 1;
/// Exit status of a usage or I/O error (bad arguments, unreadable or missing files), as clap
/// and `audit verify` use it.
pub const EXIT_USAGE_OR_IO: u8 = 2;

impl ReportError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReportError::Read(ReaderError::Malformed { .. })
            | ReportError::BadRecordTime { .. } => EXIT_LOG_PROBLEM,
            _ => EXIT_USAGE_OR_IO,
        }
    }
}

/// `pgpurpose audit report` as a command: errors to standard error, the exit status back.
pub fn command(args: &ReportArgs) -> std::process::ExitCode {
    match run_report(args) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("pgpurpose audit report: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

/// `pgpurpose audit report`: returns the process exit status (0, or [`EXIT_LOG_PROBLEM`] when
/// the report was written but the chain check failed).
pub fn run_report(args: &ReportArgs) -> Result<u8, ReportError> {
    let selection = selection_from_args(args)?;
    let report = build(&args.paths, selection, args.top)?;
    let out = render(&report, args.format)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, out.as_bytes()).map_err(|source| ReportError::Write {
                what: path.display().to_string(),
                source,
            })?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|source| ReportError::Write {
                    what: "standard output".into(),
                    source,
                })?;
        }
    }
    if let Some(brk) = &report.log.chain_break {
        eprintln!(
            "pgpurpose: WARNING: the audit log's hash chain is broken at {brk}; \
             the report counts the records as found. Run `pgpurpose audit verify`."
        );
        return Ok(EXIT_LOG_PROBLEM);
    }
    Ok(0)
}

#[cfg(test)]
mod tests;

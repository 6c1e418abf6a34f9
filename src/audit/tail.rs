//! `pgpurpose audit tail`: matching records as one readable line each, optionally following the
//! log as the proxy writes it, across segment rotations.
//!
//! This module owns the record filter ([`Filter`]), the one-line rendering ([`line()`]) and the
//! follow loop. Following polls every [`POLL`]: it reads the complete lines appended to the
//! newest segment (a line without its newline yet is left for the next poll), and when a new
//! segment file appears with a first record, it drains the current one and moves on.
//! With `--json` the log's own line is printed unchanged, so its hash can still be checked.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::reader::{self, LineRead, ReaderError};
use super::record::{ConnectionEventKind, Decision, Event, Record};
use super::report::purpose_is_within;
use super::report::text::printable;

/// How often `--follow` looks for new records.
pub const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error(transparent)]
    Read(#[from] ReaderError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write to standard output: {0}")]
    Write(std::io::Error),
    #[error("--lines takes a number or `all`, not {0:?}")]
    BadLines(String),
}

/// `--lines`: how many existing matching records to show first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    All,
    Last(usize),
}

impl std::str::FromStr for Lines {
    type Err = TailError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(Lines::All);
        }
        s.parse()
            .map(Lines::Last)
            .map_err(|_| TailError::BadLines(s.to_owned()))
    }
}

/// Record kinds, as `--kind` names them (the records' `kind` member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Kind {
    Statement,
    Connection,
    Policy,
    Checkpoint,
    SegmentStart,
}

/// `--decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecisionArg {
    Allow,
    Rewrite,
    Block,
}

impl From<DecisionArg> for Decision {
    fn from(d: DecisionArg) -> Self {
        match d {
            DecisionArg::Allow => Decision::Allow,
            DecisionArg::Rewrite => Decision::Rewrite,
            DecisionArg::Block => Decision::Block,
        }
    }
}

/// Arguments of `pgpurpose audit tail`.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// The audit log directory (or one segment file, which is then followed without rotation).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Keep running and print records as they are written, across segment rotations.
    #[arg(long, short)]
    pub follow: bool,
    /// Show this many existing matching records first (a number, or `all`).
    #[arg(long, short = 'n', default_value = "10")]
    pub lines: Lines,
    /// Only records of this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only records of this purpose and those below it.
    #[arg(long)]
    pub purpose: Option<String>,
    /// Only statements with this decision.
    #[arg(long, value_enum)]
    pub decision: Option<DecisionArg>,
    /// Only statements that use a column of this table (`schema.table`, or a bare name for any
    /// schema).
    #[arg(long)]
    pub table: Option<String>,
    /// Only records of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<Kind>,
    /// Print the log's own JSON lines instead of readable lines.
    #[arg(long)]
    pub json: bool,
}

/// Which records `tail` prints.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub service: Option<String>,
    pub purpose: Option<String>,
    pub decision: Option<Decision>,
    pub table: Option<String>,
    pub kind: Option<Kind>,
}

impl Filter {
    pub fn from_args(args: &TailArgs) -> Self {
        Filter {
            service: args.service.clone(),
            purpose: args.purpose.clone(),
            decision: args.decision.map(Into::into),
            table: args.table.clone(),
            kind: args.kind,
        }
    }

    pub fn matches(&self, record: &Record) -> bool {
        let (kind, service, purpose) = match &record.event {
            Event::Statement(s) => (
                Kind::Statement,
                Some(s.service.as_str()),
                Some(s.purpose.as_str()),
            ),
            Event::Connection(c) => (Kind::Connection, c.service.as_deref(), c.purpose.as_deref()),
            Event::Policy(_) => (Kind::Policy, None, None),
            Event::Checkpoint(_) => (Kind::Checkpoint, None, None),
            Event::SegmentStart(_) => (Kind::SegmentStart, None, None),
        };
        if self.kind.is_some_and(|k| k != kind) {
            return false;
        }
        if let Some(want) = &self.service {
            if service != Some(want.as_str()) {
                return false;
            }
        }
        if let Some(want) = &self.purpose {
            if !purpose.is_some_and(|p| purpose_is_within(p, want)) {
                return false;
            }
        }
        let statement = match &record.event {
            Event::Statement(s) => Some(s),
            _ => None,
        };
        if let Some(want) = self.decision {
            if statement.is_none_or(|s| s.decision != want) {
                return false;
            }
        }
        if let Some(want) = &self.table {
            let uses_table = statement.is_some_and(|s| {
                s.statements
                    .iter()
                    .flat_map(|d| &d.uses)
                    .any(|u| table_matches(&u.table, want))
            });
            if !uses_table {
                return false;
            }
        }
        true
    }
}

/// `schema.table` equals `want`, or `want` has no schema and names the table.
fn table_matches(table: &str, want: &str) -> bool {
    table == want
        || (!want.contains('.') && table.rsplit_once('.').is_some_and(|(_, name)| name == want))
}

/// One readable line for a record (control characters escaped).
pub fn line(record: &Record) -> String {
    let head = format!("{} #{}", record.time, record.seq);
    let body = match &record.event {
        Event::Statement(s) => {
            let decision = match s.decision {
                Decision::Allow => "ALLOW  ",
                Decision::Rewrite => "REWRITE",
                Decision::Block => "BLOCK  ",
            };
            let masked: Vec<&str> = s
                .statements
                .iter()
                .flat_map(|d| d.masked.iter().map(String::as_str))
                .collect();
            let mut text = format!(
                "{}/{} {decision} rule={} fp={} {}",
                s.service, s.purpose, s.rule, s.fingerprint, s.sql
            );
            if !masked.is_empty() {
                text.push_str(&format!("  [masked: {}]", masked.join(", ")));
            }
            if let Some(st) = &s.sqlstate {
                text.push_str(&format!("  [sqlstate {st}]"));
            }
            text
        }
        Event::Connection(c) => {
            let event = match c.event {
                ConnectionEventKind::Authenticated => "authenticated",
                ConnectionEventKind::Refused => "refused",
                ConnectionEventKind::Closed => "closed",
            };
            let mut text = format!(
                "connection {event} {}/{} from {} session {}",
                c.service.as_deref().unwrap_or("-"),
                c.purpose.as_deref().unwrap_or("-"),
                c.client_addr,
                c.session_id
            );
            if let Some(reason) = &c.reason {
                text.push_str(&format!("  [{reason}]"));
            }
            text
        }
        Event::Policy(p) => format!("policy {} version {}", p.event, p.policy_version),
        Event::Checkpoint(c) => format!(
            "checkpoint {} after {} records in segment (key {})",
            c.reason, c.records_in_segment, c.key_id
        ),
        Event::SegmentStart(s) => format!(
            "segment start ({}){}",
            s.reason,
            s.previous_segment
                .as_ref()
                .map(|p| format!(" after {p}"))
                .unwrap_or_default()
        ),
    };
    printable(&format!("{head} {body}"))
}

/// The file being read and how far.
struct Cursor {
    path: PathBuf,
    /// Bytes consumed (always at a line start).
    offset: u64,
    /// Lines consumed.
    line: u64,
    first_seq: Option<u64>,
}

impl Cursor {
    fn new(segment: &reader::Segment) -> Self {
        Cursor {
            path: segment.path.clone(),
            offset: 0,
            line: 0,
            first_seq: segment.first_seq,
        }
    }

    /// Read the complete lines appended since the last call and hand each to `each`.
    /// Returns whether a partial line (no newline yet) remains at the end; it is read again,
    /// whole, at the next call.
    fn read_new(
        &mut self,
        each: &mut dyn FnMut(&str, Record) -> Result<(), TailError>,
    ) -> Result<bool, TailError> {
        let io = |source| TailError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut lines = BufReader::new(file);
        let mut buf = Vec::new();
        loop {
            match reader::read_line_bounded(&mut lines, &mut buf).map_err(io)? {
                LineRead::Eof => return Ok(false),
                LineRead::Partial => return Ok(true),
                LineRead::Complete => {
                    self.line += 1;
                    let (record, _) = reader::parse_bytes(&buf, &self.path, self.line)?;
                    if self.first_seq.is_none() {
                        self.first_seq = Some(record.seq);
                    }
                    let text = String::from_utf8_lossy(&buf);
                    each(text.trim_end_matches('\r'), record)?;
                    self.offset += buf.len() as u64 + 1;
                }
            }
        }
    }
}

/// Print matching records to `out` (see [`TailArgs`]); with `follow`, until `stop` says so
/// (checked every [`POLL`]).
pub fn tail<W: Write>(
    args: &TailArgs,
    out: &mut W,
    stop: &dyn Fn() -> bool,
) -> Result<(), TailError> {
    let filter = Filter::from_args(args);
    let render = |raw: &str, record: &Record| {
        if args.json {
            printable(raw)
        } else {
            line(record)
        }
    };
    let is_file = args.path.is_file();
    let segments = reader::list_segments(std::slice::from_ref(&args.path))?;
    if segments.is_empty() && !args.follow {
        return Err(ReaderError::NoSegments {
            inputs: args.path.display().to_string(),
        }
        .into());
    }
    let mut seen: HashSet<PathBuf> = segments.iter().map(|s| s.path.clone()).collect();
    // Existing records: keep the last N matching lines.
    let mut shown: VecDeque<String> = VecDeque::new();
    let mut cursor: Option<Cursor> = None;
    let count = segments.len();
    for (i, segment) in segments.iter().enumerate() {
        let mut c = Cursor::new(segment);
        let partial = c.read_new(&mut |raw, record| {
            if filter.matches(&record) {
                shown.push_back(render(raw, &record));
                if let Lines::Last(n) = args.lines {
                    while shown.len() > n {
                        shown.pop_front();
                    }
                }
            }
            Ok(())
        })?;
        if partial && i + 1 < count && !reader::recovery_follows(segments.get(i + 1))? {
            return Err(ReaderError::Malformed {
                path: c.path.clone(),
                line: c.line + 1,
                problem: "the segment ends in the middle of a line".into(),
            }
            .into());
        }
        cursor = Some(c);
    }
    for l in shown {
        writeln!(out, "{l}").map_err(TailError::Write)?;
    }
    out.flush().map_err(TailError::Write)?;
    if !args.follow {
        return Ok(());
    }
    let mut print = |raw: &str, record: Record| -> Result<(), TailError> {
        if filter.matches(&record) {
            writeln!(out, "{}", render(raw, &record)).map_err(TailError::Write)?;
            out.flush().map_err(TailError::Write)?;
        }
        Ok(())
    };
    while !stop() {
        std::thread::sleep(POLL);
        if let Some(c) = cursor.as_mut() {
            c.read_new(&mut print)?;
        }
        if is_file {
            continue;
        }
        if let Some(next) = next_segment(&args.path, &mut seen, cursor.as_ref())? {
            if let Some(c) = cursor.as_mut() {
                // The writer finished the old segment before starting the new one: drain it.
                if c.read_new(&mut print)? {
                    eprintln!(
                        "pgpurpose: warning: {} ends in the middle of line {} (run `pgpurpose audit verify`)",
                        c.path.display(),
                        c.line + 1
                    );
                }
            }
            let mut c = Cursor::new(&next);
            c.read_new(&mut print)?;
            cursor = Some(c);
        }
    }
    Ok(())
}

/// A segment file that appeared after the current one and already has a first record.
fn next_segment(
    dir: &Path,
    seen: &mut HashSet<PathBuf>,
    current: Option<&Cursor>,
) -> Result<Option<reader::Segment>, TailError> {
    let entries = std::fs::read_dir(dir).map_err(|source| TailError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut best: Option<reader::Segment> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(reader::is_segment_name) {
            continue;
        }
        let Ok(path) = std::fs::canonicalize(entry.path()) else {
            continue;
        };
        if seen.contains(&path) {
            continue;
        }
        // Not complete yet: look again at the next poll.
        let Some(first) = reader::first_seq(&path)? else {
            continue;
        };
        if current
            .and_then(|c| c.first_seq)
            .is_some_and(|cur| first <= cur)
        {
            seen.insert(path);
            continue;
        }
        if best
            .as_ref()
            .and_then(|b| b.first_seq)
            .is_none_or(|b| first < b)
        {
            best = Some(reader::Segment {
                path,
                first_seq: Some(first),
            });
        }
    }
    if let Some(b) = &best {
        seen.insert(b.path.clone());
    }
    Ok(best)
}

impl TailError {
    /// The process exit status: 1 when the log has a problem (a line is not a record), 2 for
    /// usage and I/O errors, as in `audit verify` and `audit report`.
    pub fn exit_code(&self) -> u8 {
        match self {
            TailError::Read(ReaderError::Malformed { .. }) => 1,
            _ => 2,
        }
    }
}

/// `pgpurpose audit tail` as a command: errors to standard error, the exit status back.
pub fn command(args: &TailArgs) -> std::process::ExitCode {
    match run_tail(args) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("pgpurpose audit tail: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

/// `pgpurpose audit tail`: runs until done (or, with `--follow`, until interrupted).
pub fn run_tail(args: &TailArgs) -> Result<u8, TailError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    tail(args, &mut out, &|| false)?;
    Ok(0)
}

#[cfg(test)]
mod tests;

//! Reading an audit log back, for the reviewer's tools (`audit report`, `audit tail`).
//!
//! This module owns *finding and ordering* segment files and turning their lines into
//! [`Record`]s with the file and line each came from. It depends only on the record format
//! ([`super::record`]), never on the writer, so a reviewer can read a log copied off the proxy's
//! machine.
//!
//! - Inputs are files and/or directories; a directory contributes every
//!   `pgpurpose-audit-*.jsonl` file directly inside it (not recursively: one directory is one log).
//! - Segments are ordered by the `seq` of their first record, which is gapless across segments
//!   and restarts, so file names and modification times do not matter.
//! - A line that does not parse is an error naming the file and line: a summary that silently
//!   skipped records would mislead. The one exception is the last line of the *newest* segment
//!   when it has no newline yet: the writer may be in the middle of writing it, so it is left
//!   for the next read.
//! - While reading, the chain is checked cheaply (each line's hash over its bytes, `prev` equal
//!   to the previous hash, `seq` consecutive) and the first break is remembered in
//!   [`ChainCheck`]; checkpoint MACs need the key and are left to `audit verify`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::record::{self, Record, SEGMENT_PREFIX, SEGMENT_SUFFIX};

/// Longest line accepted (a record of a very long statement is long, but not unbounded).
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is neither an audit segment file nor a directory")]
    NotASegment { path: PathBuf },
    #[error("no audit segment files (pgpurpose-audit-*.jsonl) in {inputs}")]
    NoSegments { inputs: String },
    #[error(
        "{path}:{line}: {problem} (the log may be damaged or edited: run `pgpurpose audit verify`)"
    )]
    Malformed {
        path: PathBuf,
        line: u64,
        problem: String,
    },
}

impl ReaderError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ReaderError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Where a record was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub path: PathBuf,
    /// 1-based.
    pub line: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// One segment file and the seq of its first record (`None`: no complete line yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    pub first_seq: Option<u64>,
}

impl Segment {
    /// Where the segment goes in the log: its first record's seq, else the seq its name
    /// announces (a file the writer created but had not written to yet, e.g. before a crash).
    pub fn order_key(&self) -> Option<u64> {
        self.first_seq.or_else(|| {
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(record::segment_first_seq)
        })
    }
}

/// Whether the segment after a file that ends in a partial line starts with a `recovery`
/// segment_start: the writer abandoned that file after a failed write (the partial line was
/// never a record: its statement was blocked), and the chain continues in the next file.
pub(crate) fn recovery_follows(next: Option<&Segment>) -> Result<bool, ReaderError> {
    let Some(next) = next else {
        return Ok(false);
    };
    let file = File::open(&next.path).map_err(|e| ReaderError::io(&next.path, e))?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    if read_line_bounded(&mut reader, &mut buf).map_err(|e| ReaderError::io(&next.path, e))?
        != LineRead::Complete
    {
        return Ok(false);
    }
    let (record, _) = parse_bytes(&buf, &next.path, 1)?;
    Ok(matches!(&record.event, super::record::Event::SegmentStart(s) if s.reason == "recovery"))
}

/// Whether a file name is an audit segment's.
pub fn is_segment_name(name: &str) -> bool {
    name.starts_with(SEGMENT_PREFIX)
        && name.ends_with(SEGMENT_SUFFIX)
        && name.len() > SEGMENT_PREFIX.len() + SEGMENT_SUFFIX.len()
}

/// Every segment file named by `inputs` (files, or directories searched one level deep),
/// ordered by the seq of their first record (see [`Segment::order_key`]); files without any
/// come last, by name. Duplicates (a file named directly and through its directory) are read once.
pub fn list_segments(inputs: &[PathBuf]) -> Result<Vec<Segment>, ReaderError> {
    let mut paths = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| ReaderError::io(input, e))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(input).map_err(|e| ReaderError::io(input, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| ReaderError::io(input, e))?;
                let name = entry.file_name();
                if name.to_str().is_some_and(is_segment_name) && entry.path().is_file() {
                    paths.push(entry.path());
                }
            }
        } else if meta.is_file() {
            paths.push(input.clone());
        } else {
            return Err(ReaderError::NotASegment {
                path: input.clone(),
            });
        }
    }
    // Canonical paths so that `dir` and `dir/file` do not read a file twice.
    let mut canonical = Vec::with_capacity(paths.len());
    for p in paths {
        let c = std::fs::canonicalize(&p).map_err(|e| ReaderError::io(&p, e))?;
        if !canonical.contains(&c) {
            canonical.push(c);
        }
    }
    let mut segments = Vec::with_capacity(canonical.len());
    for path in canonical {
        let first_seq = first_seq(&path)?;
        segments.push(Segment { path, first_seq });
    }
    segments.sort_by(|a, b| match (a.order_key(), b.order_key()) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.path.cmp(&b.path)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.path.cmp(&b.path),
    });
    Ok(segments)
}

/// The seq of a segment's first complete line, `None` when it has none yet.
pub fn first_seq(path: &Path) -> Result<Option<u64>, ReaderError> {
    let file = File::open(path).map_err(|e| ReaderError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    match read_line_bounded(&mut reader, &mut buf).map_err(|e| ReaderError::io(path, e))? {
        LineRead::Complete => {
            let (record, _) = parse_bytes(&buf, path, 1)?;
            Ok(Some(record.seq))
        }
        LineRead::Partial | LineRead::Eof => Ok(None),
    }
}

/// What [`read_line_bounded`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// A whole line, newline stripped, is in the buffer.
    Complete,
    /// Bytes without a newline before end of file (in the buffer).
    Partial,
    /// Nothing more.
    Eof,
}

/// Read one line into `buf` (cleared first), refusing lines over [`MAX_LINE_BYTES`].
pub(crate) fn read_line_bounded<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<LineRead> {
    buf.clear();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Partial
            });
        }
        if let Some(i) = available.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&available[..i]);
            reader.consume(i + 1);
            return Ok(LineRead::Complete);
        }
        let n = available.len();
        buf.extend_from_slice(available);
        reader.consume(n);
        if buf.len() > MAX_LINE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line is longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
    }
}

/// Parse one line's bytes (without newline) into its record and claimed hash.
pub(crate) fn parse_bytes(
    bytes: &[u8],
    path: &Path,
    line: u64,
) -> Result<(Record, String), ReaderError> {
    let malformed = |problem: String| ReaderError::Malformed {
        path: path.to_owned(),
        line,
        problem,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("not valid UTF-8".into()))?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    record::parse_line(text).map_err(|e| malformed(e.to_string()))
}

/// The first place the chain did not hold, found while reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainCheck {
    /// Records whose hash and links were checked.
    pub records: u64,
    /// `file:line: what` of the first break, if any.
    pub first_break: Option<String>,
    /// `file:line` of partial last lines of segments the writer abandoned after a failed
    /// write (a `recovery` segment follows); they were never records.
    pub abandoned_partial_lines: Vec<String>,
}

impl ChainCheck {
    pub fn intact(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Incremental chain check over records in log order.
#[derive(Debug, Default)]
pub(crate) struct ChainState {
    last: Option<(u64, String)>,
    pub(crate) check: ChainCheck,
}

impl ChainState {
    /// Check one line: its own hash, then its link to the previous record.
    pub(crate) fn feed(&mut self, line: &str, record: &Record, claimed: &str, pos: &Position) {
        self.check.records += 1;
        if self.check.first_break.is_none() {
            let problem = match record::unseal(line) {
                Ok((unsealed, _)) if record::hash_unsealed(unsealed.as_bytes()) != claimed => {
                    Some("the record's hash does not match its bytes".to_owned())
                }
                Ok(_) => match &self.last {
                    Some((seq, hash)) if record.prev != *hash => Some(format!(
                        "prev does not match the hash of record {seq} before it"
                    )),
                    Some((seq, _)) if record.seq != seq + 1 => {
                        Some(format!("seq {} follows seq {seq}", record.seq))
                    }
                    None if record.seq == 1 && record.prev != record::GENESIS => {
                        Some("the first record's prev is not the genesis hash".to_owned())
                    }
                    _ => None,
                },
                Err(e) => Some(e.to_string()),
            };
            if let Some(p) = problem {
                self.check.first_break = Some(format!("{pos}: {p}"));
            }
        }
        self.last = Some((record.seq, claimed.to_owned()));
    }
}

/// Every record of a log, in order, with its position. Obtained from [`open`].
pub struct Records {
    segments: Vec<Segment>,
    /// Index into `segments` of the file being read.
    next_segment: usize,
    current: Option<(PathBuf, BufReader<File>, u64)>,
    buf: Vec<u8>,
    chain: ChainState,
    failed: bool,
}

/// Open the log named by `inputs` (see [`list_segments`]); an error when it has no segments.
pub fn open(inputs: &[PathBuf]) -> Result<Records, ReaderError> {
    let segments = list_segments(inputs)?;
    if segments.is_empty() {
        return Err(ReaderError::NoSegments {
            inputs: inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(Records {
        segments,
        next_segment: 0,
        current: None,
        buf: Vec::new(),
        chain: ChainState::default(),
        failed: false,
    })
}

impl Records {
    /// The segment files, in reading order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The chain check so far (complete once the iterator is exhausted).
    pub fn chain_check(&self) -> &ChainCheck {
        &self.chain.check
    }

    fn next_inner(&mut self) -> Result<Option<(Position, Record)>, ReaderError> {
        loop {
            if self.current.is_none() {
                let Some(segment) = self.segments.get(self.next_segment) else {
                    return Ok(None);
                };
                let path = segment.path.clone();
                let file = File::open(&path).map_err(|e| ReaderError::io(&path, e))?;
                self.current = Some((path, BufReader::new(file), 0));
                self.next_segment += 1;
            }
            let is_last_segment = self.next_segment == self.segments.len();
            let Some((path, reader, line)) = self.current.as_mut() else {
                continue;
            };
            let read =
                read_line_bounded(reader, &mut self.buf).map_err(|e| ReaderError::io(path, e))?;
            match read {
                LineRead::Eof => {
                    self.current = None;
                }
                // The writer may be writing this very line; it is not a record yet.
                LineRead::Partial if is_last_segment => {
                    self.current = None;
                }
                LineRead::Partial => {
                    if recovery_follows(self.segments.get(self.next_segment))? {
                        self.chain.check.abandoned_partial_lines.push(format!(
                            "{}:{}",
                            path.display(),
                            *line + 1
                        ));
                        self.current = None;
                        continue;
                    }
                    return Err(ReaderError::Malformed {
                        path: path.clone(),
                        line: *line + 1,
                        problem: "the segment ends in the middle of a line".into(),
                    });
                }
                LineRead::Complete => {
                    *line += 1;
                    let pos = Position {
                        path: path.clone(),
                        line: *line,
                    };
                    let (record, claimed) = parse_bytes(&self.buf, path, *line)?;
                    // parse_bytes checked UTF-8 already.
                    let text = String::from_utf8_lossy(&self.buf);
                    let text = text.strip_suffix('\r').unwrap_or(&text);
                    self.chain.feed(text, &record, &claimed, &pos);
                    return Ok(Some((pos, record)));
                }
            }
        }
    }
}

impl Iterator for Records {
    type Item = Result<(Position, Record), ReaderError>;

    /// After the first error the iterator ends: later records cannot be placed in the chain.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_inner() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testlog {
    //! A builder of sealed, correctly chained records for tests of the reviewer's tools.

    use crate::audit::record::*;

    pub struct LogBuilder {
        pub seq: u64,
        pub prev: String,
        pub instance: String,
    }

    impl Default for LogBuilder {
        fn default() -> Self {
            LogBuilder {
                seq: 0,
                prev: GENESIS.to_owned(),
                instance: "a1b2c3".to_owned(),
            }
        }
    }

    impl LogBuilder {
        /// Seal the next record of the chain and return its line (no newline).
        pub fn line(&mut self, time: &str, event: Event) -> String {
            self.seq += 1;
            let record = Record {
                seq: self.seq,
                time: time.to_owned(),
                instance: self.instance.clone(),
                event,
                prev: self.prev.clone(),
            };
            let unsealed = serde_json::to_string(&record).unwrap();
            let (line, hash) = seal(&unsealed);
            self.prev = hash;
            line
        }

        /// Like [`line`](Self::line), returning the parsed record.
        pub fn record(&mut self, time: &str, event: Event) -> Record {
            parse_line(&self.line(time, event)).unwrap().0
        }
    }

    pub fn segment_start() -> Event {
        Event::SegmentStart(SegmentStart {
            previous_segment: None,
            reason: "start".into(),
        })
    }

    /// A statement record; `uses` are `(table, column, clause, tags, allowed, masked)`.
    #[allow(clippy::type_complexity)]
    pub fn statement(
        service: &str,
        purpose: &str,
        decision: Decision,
        fingerprint: &str,
        sql: &str,
        rule: &str,
        uses: &[(&str, &str, &str, Option<&[&str]>, bool, bool)],
    ) -> Event {
        let uses: Vec<ColumnUseRecord> = uses
            .iter()
            .map(|(t, c, clause, tags, allowed, masked)| ColumnUseRecord {
                table: (*t).into(),
                column: (*c).into(),
                clause: (*clause).into(),
                tags: tags.map(|ts| ts.iter().map(|s| (*s).to_owned()).collect()),
                allowed: *allowed,
                masked: *masked,
            })
            .collect();
        let masked = uses
            .iter()
            .filter(|u| u.masked)
            .map(|u| u.column.clone())
            .collect();
        Event::Statement(StatementEvent {
            connection_id: 1,
            session_id: "a1b2c3-1".into(),
            service: service.into(),
            purpose: purpose.into(),
            client_addr: "127.0.0.1:40000".into(),
            database: "app".into(),
            protocol: "simple".into(),
            fingerprint: fingerprint.into(),
            sql: sql.into(),
            decision,
            rule: rule.into(),
            statements: vec![StatementDetail {
                statement_kind: "SELECT".into(),
                rule: rule.into(),
                uses,
                masked,
                row_filtered: vec![],
                grants_used: vec![],
            }],
            rewrite: (decision == Decision::Rewrite).then(|| format!("{sql} /* rewritten */")),
            sqlstate: (decision == Decision::Block).then(|| "42501".into()),
            cached: false,
            policy_version: "v1".into(),
            catalog_version: 1,
        })
    }

    pub fn connection(kind: ConnectionEventKind, service: Option<&str>) -> Event {
        Event::Connection(ConnectionEvent {
            connection_id: 1,
            session_id: "a1b2c3-1".into(),
            client_addr: "127.0.0.1:40000".into(),
            event: kind,
            service: service.map(Into::into),
            purpose: service.map(|_| "analytics".into()),
            database: None,
            sqlstate: (kind == ConnectionEventKind::Refused).then(|| "28P01".into()),
            reason: (kind == ConnectionEventKind::Refused).then(|| "authentication failed".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testlog::*;
    use super::*;
    use crate::audit::record::Decision;

    fn write(dir: &Path, name: &str, lines: &[String], trailing_newline: bool) -> PathBuf {
        let path = dir.join(name);
        let mut text = lines.join("\n");
        if trailing_newline {
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    fn two_segments(dir: &Path) -> (PathBuf, PathBuf) {
        let mut log = LogBuilder::default();
        let first: Vec<String> = vec![
            log.line("2026-11-23T10:00:00.000000Z", segment_start()),
            log.line(
                "2026-11-23T10:00:01.000000Z",
                statement("s", "p", Decision::Allow, "f1", "SELECT ?", "r", &[]),
            ),
        ];
        let second: Vec<String> = vec![
            log.line("2026-11-23T11:00:00.000000Z", segment_start()),
            log.line(
                "2026-11-23T11:00:01.000000Z",
                statement("s", "p", Decision::Block, "f2", "SELECT ?", "r", &[]),
            ),
        ];
        // Names sort the wrong way round on purpose: order comes from seq.
        let a = write(dir, "pgpurpose-audit-b.jsonl", &first, true);
        let b = write(dir, "pgpurpose-audit-a.jsonl", &second, true);
        (a, b)
    }

    #[test]
    fn segments_are_ordered_by_first_seq_and_records_carry_positions() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_segments(dir.path());
        std::fs::write(dir.path().join("other.jsonl"), "not a segment\n").unwrap();
        let segments = list_segments(&[dir.path().to_owned(), a.clone()]).unwrap();
        let paths: Vec<_> = segments.iter().map(|s| s.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                std::fs::canonicalize(&a).unwrap(),
                std::fs::canonicalize(&b).unwrap()
            ]
        );
        assert_eq!(segments[0].first_seq, Some(1));
        assert_eq!(segments[1].first_seq, Some(3));
        let mut records = open(&[dir.path().to_owned()]).unwrap();
        let items: Vec<_> = records.by_ref().map(|r| r.unwrap()).collect();
        let seqs: Vec<u64> = items.iter().map(|(_, r)| r.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        assert_eq!(items[3].0.line, 2);
        assert!(items[3].0.path.ends_with("pgpurpose-audit-a.jsonl"));
        assert!(
            records.chain_check().intact(),
            "{:?}",
            records.chain_check()
        );
        assert_eq!(records.chain_check().records, 4);
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = two_segments(dir.path());
        let text = std::fs::read_to_string(&a).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.insert(1, "{\"seq\": 99}");
        std::fs::write(&a, lines.join("\n") + "\n").unwrap();
        let err = open(&[dir.path().to_owned()])
            .unwrap()
            .find_map(|r| r.err())
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("pgpurpose-audit-b.jsonl:2:"), "{msg}");
        assert!(msg.contains("audit verify"), "{msg}");
    }

    #[test]
    fn a_torn_last_line_is_pending_only_in_the_newest_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_segments(dir.path());
        // Newest segment: a partial line is the writer at work, not an error.
        let mut text = std::fs::read_to_string(&b).unwrap();
        text.push_str("{\"seq\":5,");
        std::fs::write(&b, &text).unwrap();
        let n = open(&[dir.path().to_owned()])
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .len();
        assert_eq!(n, 4);
        // Older segment: the same is damage.
        let text = std::fs::read_to_string(&a).unwrap();
        std::fs::write(&a, text.trim_end()).unwrap();
        let err = open(&[dir.path().to_owned()])
            .unwrap()
            .find_map(|r| r.err())
            .unwrap();
        assert!(
            err.to_string().contains("pgpurpose-audit-b.jsonl:2:"),
            "{err}"
        );
    }

    #[test]
    fn a_partial_line_before_a_recovery_segment_is_noted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_segments(dir.path());
        let mut text = std::fs::read_to_string(&a).unwrap();
        text.push_str("{\"seq\":3,\"ti");
        std::fs::write(&a, text).unwrap();
        let second = std::fs::read_to_string(&b).unwrap();
        std::fs::write(
            &b,
            second.replacen("\"reason\":\"start\"", "\"reason\":\"recovery\"", 1),
        )
        .unwrap();
        let mut records = open(&[dir.path().to_owned()]).unwrap();
        assert_eq!(
            records
                .by_ref()
                .map(|r| r.unwrap().1.seq)
                .collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        let check = records.chain_check();
        assert_eq!(check.abandoned_partial_lines.len(), 1);
        assert!(check.abandoned_partial_lines[0].ends_with("pgpurpose-audit-b.jsonl:3"));
        // The edit of the segment_start broke its hash, which the chain check reports.
        assert!(check
            .first_break
            .as_deref()
            .unwrap()
            .contains("pgpurpose-audit-a.jsonl:1"));
    }

    #[test]
    fn an_empty_segment_is_placed_by_the_seq_its_name_announces() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogBuilder::default();
        let one = log.line("2026-11-23T10:00:00.000000Z", segment_start());
        let two = log.line("2026-11-23T10:00:01.000000Z", segment_start());
        let p = |n: &str| dir.path().join(n);
        std::fs::write(
            p("pgpurpose-audit-00000000000000000001-20261123T100000Z.jsonl"),
            one + "\n",
        )
        .unwrap();
        std::fs::write(
            p("pgpurpose-audit-00000000000000000002-20261123T100001Z.jsonl"),
            "",
        )
        .unwrap();
        std::fs::write(
            p("pgpurpose-audit-00000000000000000002-20261123T100002Z.jsonl"),
            two + "\n",
        )
        .unwrap();
        std::fs::write(p("pgpurpose-audit-zzz.jsonl"), "").unwrap();
        let names: Vec<String> = list_segments(&[dir.path().to_owned()])
            .unwrap()
            .iter()
            .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![
                "pgpurpose-audit-00000000000000000001-20261123T100000Z.jsonl",
                "pgpurpose-audit-00000000000000000002-20261123T100001Z.jsonl",
                "pgpurpose-audit-00000000000000000002-20261123T100002Z.jsonl",
                "pgpurpose-audit-zzz.jsonl",
            ]
        );
        assert_eq!(
            record::segment_first_seq("pgpurpose-audit-00000000000000000042-x.jsonl"),
            Some(42)
        );
        assert_eq!(record::segment_first_seq("pgpurpose-audit-42.jsonl"), None);
    }

    #[test]
    fn an_edited_or_deleted_record_breaks_the_chain_check() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = two_segments(dir.path());
        let text = std::fs::read_to_string(&a).unwrap();
        std::fs::write(&a, text.replace("\"service\":\"s\"", "\"service\":\"t\"")).unwrap();
        let mut records = open(&[dir.path().to_owned()]).unwrap();
        assert_eq!(records.by_ref().filter(|r| r.is_ok()).count(), 4);
        let brk = records.chain_check().first_break.clone().unwrap();
        assert!(
            brk.contains("pgpurpose-audit-b.jsonl:2: the record's hash"),
            "{brk}"
        );

        let dir = tempfile::tempdir().unwrap();
        let (a, _) = two_segments(dir.path());
        let text = std::fs::read_to_string(&a).unwrap();
        let first_line = text.lines().next().unwrap().to_owned();
        std::fs::write(&a, first_line + "\n").unwrap();
        let mut records = open(&[dir.path().to_owned()]).unwrap();
        assert_eq!(records.by_ref().filter(|r| r.is_ok()).count(), 3);
        let brk = records.chain_check().first_break.clone().unwrap();
        assert!(brk.contains("pgpurpose-audit-a.jsonl:1: prev"), "{brk}");
    }

    #[test]
    fn no_segments_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            open(&[dir.path().to_owned()]),
            Err(ReaderError::NoSegments { .. })
        ));
        assert!(!is_segment_name("pgpurpose-audit-.jsonl"));
        assert!(is_segment_name("pgpurpose-audit-000001.jsonl"));
    }
}

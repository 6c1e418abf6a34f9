//! `pgpurpose audit verify`: checks a set of segment files for tampering.
//!
//! Segments are ordered by their first record's seq. Every line must be a sealed record whose
//! hash matches its bytes, whose `prev` is the previous record's hash and whose `seq` is one
//! more than the previous record's, across files. A `segment_start` opens every segment and
//! appears nowhere else. With the key, every checkpoint's MAC is checked. Every segment but the
//! last must end with a checkpoint, except one cut short by a crash or a write failure (the
//! next segment then begins with reason `start` or `recovery`, and its link to the last
//! complete record proves nothing was removed before it).
//!
//! The first problem found is reported with its file, line and seq and ends the check (what
//! follows a break cannot be trusted). Situations that are not proof of tampering but limit
//! what can be proven are warnings: an unsealed last segment (the proxy is running, or crashed:
//! records after its last checkpoint cannot be proven complete, since truncating them leaves
//! a valid chain), a log that does not begin at seq 1, or no key to check MACs with.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::record::{self, Event, GENESIS};

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    /// 1-based line number in `file`.
    pub line: usize,
    /// The record's seq, when it could be read.
    pub seq: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Files checked, in log order.
    pub files: Vec<String>,
    /// Records checked before the check ended.
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Checkpoints seen (and, with a key, whose MAC matched).
    pub checkpoints: u64,
    /// Seq of the last checkpoint that proves completeness up to it.
    pub last_checkpoint_seq: Option<u64>,
    /// The last segment ends with a `shutdown` or `rotation` checkpoint.
    pub sealed: bool,
    pub key_checked: bool,
    pub error: Option<Problem>,
    pub warnings: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no audit segment files found in {0}")]
    NoFiles(String),
}

/// Expand directories into their segment files (files are taken as given).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, VerifyError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let found = super::writer::list_segments(path).map_err(|source| VerifyError::Read {
                path: path.clone(),
                source,
            })?;
            if found.is_empty() {
                return Err(VerifyError::NoFiles(path.display().to_string()));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

struct Segment {
    path: PathBuf,
    name: String,
    bytes: Vec<u8>,
    /// First seq (from the first line, else the file name), for ordering.
    order: u64,
}

/// Verify the given segment files (`key`: the checkpoint key, if known).
pub fn verify_files(files: &[PathBuf], key: Option<&[u8]>) -> Result<Verification, VerifyError> {
    let mut segments = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| VerifyError::Read {
            path: path.clone(),
            source,
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let order = first_seq(&bytes)
            .or_else(|| record::segment_first_seq(&name))
            .unwrap_or(u64::MAX);
        segments.push(Segment {
            path: path.clone(),
            name,
            bytes,
            order,
        });
    }
    segments.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.name.cmp(&b.name)));
    Ok(verify_segments(&segments, key))
}

fn first_seq(bytes: &[u8]) -> Option<u64> {
    let end = bytes.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&bytes[..end]).ok()?;
    record::parse_line(line).ok().map(|(r, _)| r.seq)
}

/// Chain state carried from record to record.
struct Walk<'a> {
    key: Option<&'a [u8]>,
    out: Verification,
    prev_hash: Option<String>,
    next_seq: Option<u64>,
}

fn verify_segments(segments: &[Segment], key: Option<&[u8]>) -> Verification {
    let mut walk = Walk {
        key,
        out: Verification {
            files: segments
                .iter()
                .map(|s| s.path.display().to_string())
                .collect(),
            key_checked: key.is_some(),
            ..Verification::default()
        },
        prev_hash: None,
        next_seq: None,
    };
    if key.is_none() {
        walk.out
            .warnings
            .push("no key given: checkpoint MACs were not checked".into());
    }
    // How the previous segment ended: (name, ended with a checkpoint, ended with a torn line).
    let mut previous: Option<(String, bool, bool)> = None;
    let mut last_reason = String::new();
    // Files skipped since the last real segment (a later segment_start may name them).
    let mut skipped: Vec<String> = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        if !segment.bytes.contains(&b'\n') {
            // Created just before a crash or a failed write, before its first record was
            // complete; the next segment's link proves nothing is missing here.
            walk.out.warnings.push(format!(
                "{} holds no complete record (created just before a crash or a failed write)",
                segment.name
            ));
            skipped.push(segment.name.clone());
            continue;
        }
        match walk_segment(&mut walk, segment, previous.as_ref(), &skipped, last) {
            Ok(end) => {
                previous = Some((segment.name.clone(), end.0, end.1));
                last_reason = end.2;
                skipped.clear();
            }
            Err(problem) => {
                walk.out.error = Some(problem);
                return walk.out;
            }
        }
    }
    if let Some((name, closed, torn)) = &previous {
        // A log that ends at a rotation lacks the segment that followed.
        walk.out.sealed = *closed && !*torn && last_reason == "shutdown";
        if !walk.out.sealed {
            let since = match walk.out.last_checkpoint_seq {
                Some(seq) => format!("records after checkpoint seq {seq}"),
                None => "no record".into(),
            };
            walk.out.warnings.push(format!(
                "last segment {name} is unsealed (proxy running or crashed): {since} can be proven complete only up to that checkpoint; truncation after it cannot be detected"
            ));
            if walk.out.last_checkpoint_seq.is_none() {
                walk.out.warnings.pop();
                walk.out.warnings.push(format!(
                    "last segment {name} is unsealed (proxy running or crashed) and no checkpoint was seen: the tail cannot be proven complete"
                ));
            }
        }
    }
    walk.out
}

/// Walk one segment; returns (ended with a checkpoint, ended with a torn line, the reason of
/// that checkpoint).
fn walk_segment(
    walk: &mut Walk<'_>,
    segment: &Segment,
    previous: Option<&(String, bool, bool)>,
    skipped: &[String],
    last: bool,
) -> Result<(bool, bool, String), Problem> {
    let problem = |line: usize, seq: Option<u64>, reason: String| Problem {
        file: segment.name.clone(),
        line,
        seq,
        reason,
    };
    let bytes = &segment.bytes;
    let mut records_in_segment: u64 = 0;
    let mut ended_with_checkpoint = false;
    let mut checkpoint_reason = String::new();
    let mut torn = false;
    let mut start = 0;
    let mut line_no = 0;
    while start < bytes.len() {
        line_no += 1;
        let Some(rel) = bytes[start..].iter().position(|b| *b == b'\n') else {
            // A final line without its newline: a write cut short.
            torn = true;
            if !last {
                walk.out.warnings.push(format!(
                    "{}:{line_no}: incomplete last line (a crash or failed write); the chain continues from the record before it",
                    segment.name
                ));
            } else {
                walk.out.warnings.push(format!(
                    "{}:{line_no}: incomplete last line (a crash or failed write)",
                    segment.name
                ));
            }
            break;
        };
        let line_bytes = &bytes[start..start + rel];
        start += rel + 1;
        let Ok(line) = std::str::from_utf8(line_bytes) else {
            return Err(problem(line_no, None, "not UTF-8".into()));
        };
        let (unsealed, claimed) = record::unseal(line)
            .map_err(|e| problem(line_no, None, format!("not a sealed record: {e}")))?;
        let (rec, _) =
            record::parse_line(line).map_err(|e| problem(line_no, None, e.to_string()))?;
        let seq = Some(rec.seq);
        if record::hash_unsealed(unsealed.as_bytes()) != claimed {
            return Err(problem(
                line_no,
                seq,
                "the record's bytes do not match its hash (edited)".into(),
            ));
        }
        match walk.next_seq {
            Some(expected) if rec.seq > expected => {
                return Err(problem(
                    line_no,
                    seq,
                    format!(
                        "records {expected}..{} are missing (deleted or truncated)",
                        rec.seq - 1
                    ),
                ))
            }
            Some(expected) if rec.seq < expected => {
                return Err(problem(
                    line_no,
                    seq,
                    format!(
                        "seq {} out of order: expected {expected} (reordered or duplicated)",
                        rec.seq
                    ),
                ))
            }
            Some(_) => {}
            None => {
                if rec.seq != 1 || rec.prev != GENESIS {
                    walk.out.warnings.push(format!(
                        "the log given begins at seq {} (earlier segments not given or removed by retention)",
                        rec.seq
                    ));
                }
                walk.out.first_seq = seq;
            }
        }
        if let Some(prev) = &walk.prev_hash {
            if &rec.prev != prev {
                return Err(problem(
                    line_no,
                    seq,
                    "prev does not match the previous record's hash (a record was removed, inserted or reordered)".into(),
                ));
            }
        } else if rec.seq == 1 && rec.prev != GENESIS {
            return Err(problem(
                line_no,
                seq,
                "the first record's prev is not the genesis hash".into(),
            ));
        }
        let is_start = matches!(rec.event, Event::SegmentStart(_));
        if line_no == 1 && !is_start {
            return Err(problem(
                line_no,
                seq,
                "a segment must begin with a segment_start record".into(),
            ));
        }
        if line_no > 1 && is_start {
            return Err(problem(
                line_no,
                seq,
                "segment_start in the middle of a segment".into(),
            ));
        }
        if let Event::SegmentStart(s) = &rec.event {
            check_segment_start(s, previous, skipped).map_err(|why| problem(line_no, seq, why))?;
            if let Some((name, false, _)) = previous {
                walk.out.warnings.push(format!(
                    "{name} ends without a checkpoint (the proxy crashed or could not write; next segment reason `{}`): records cannot have been removed before seq {}, but ones never written are not known",
                    s.reason, rec.seq
                ));
            }
        }
        ended_with_checkpoint = false;
        if let Event::Checkpoint(c) = &rec.event {
            if c.records_in_segment != records_in_segment {
                return Err(problem(
                    line_no,
                    seq,
                    format!(
                        "checkpoint counts {} records in this segment, found {records_in_segment}",
                        c.records_in_segment
                    ),
                ));
            }
            if let Some(key) = walk.key {
                if c.key_id != record::key_id(key) {
                    return Err(problem(
                        line_no,
                        seq,
                        format!("checkpoint made with another key (key_id {})", c.key_id),
                    ));
                }
                if c.mac != record::checkpoint_mac(key, rec.seq, &rec.prev) {
                    return Err(problem(
                        line_no,
                        seq,
                        "checkpoint MAC does not match (forged or wrong key)".into(),
                    ));
                }
            }
            walk.out.checkpoints += 1;
            walk.out.last_checkpoint_seq = seq;
            ended_with_checkpoint = c.reason == "rotation" || c.reason == "shutdown";
            checkpoint_reason.clone_from(&c.reason);
        }
        records_in_segment += 1;
        walk.out.records += 1;
        walk.out.last_seq = seq;
        walk.next_seq = Some(rec.seq + 1);
        walk.prev_hash = Some(claimed.to_owned());
    }
    Ok((ended_with_checkpoint, torn, checkpoint_reason))
}

/// A segment_start must name the previous segment, and may follow one that was not closed
/// only after a crash or failure (reason `start` or `recovery`).
fn check_segment_start(
    start: &record::SegmentStart,
    previous: Option<&(String, bool, bool)>,
    skipped: &[String],
) -> Result<(), String> {
    let Some((name, closed, torn)) = previous else {
        return Ok(());
    };
    let named = start.previous_segment.as_deref();
    let known = named == Some(name.as_str()) || skipped.iter().any(|s| Some(s.as_str()) == named);
    if !known && record::segment_first_seq(name).is_some() {
        return Err(format!(
            "segment_start names previous segment {:?}, but the previous file is {name}",
            start.previous_segment
        ));
    }
    // A segment cut short by a crash or failure may be followed by `start` or `recovery`
    // (the chain link just checked proves nothing before it is missing), never `rotation`.
    if (!closed || *torn) && start.reason == "rotation" {
        return Err(format!(
            "{name} does not end with a checkpoint, yet the next segment says it was rotated (truncated)"
        ));
    }
    Ok(())
}

/// Human-readable report.
pub fn render_human(v: &Verification) -> String {
    let mut out = String::new();
    for w in &v.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    match &v.error {
        Some(problem) => {
            out.push_str(&format!("FAILED: {problem}\n"));
            out.push_str(&format!(
                "  {} records were valid before it ({} files given)\n",
                v.records,
                v.files.len()
            ));
        }
        None => {
            let range = match (v.first_seq, v.last_seq) {
                (Some(a), Some(b)) => format!("seq {a}..{b}"),
                _ => "no records".into(),
            };
            out.push_str(&format!(
                "OK: {} records ({range}) in {} files, {} checkpoints{}{}\n",
                v.records,
                v.files.len(),
                v.checkpoints,
                if v.key_checked { " (MACs checked)" } else { "" },
                if v.sealed { ", sealed" } else { "" },
            ));
        }
    }
    out
}

/// Verify paths (files or directories) for the CLI.
pub fn verify_paths(paths: &[PathBuf], key: Option<&[u8]>) -> Result<Verification, VerifyError> {
    let files = collect_files(paths)?;
    verify_files(&files, key)
}

/// The file name part of a path, for messages.
pub fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests;

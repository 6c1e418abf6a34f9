//! The statement file and what a client receives for each entry of it.
//!
//! Format of `statements.sql` (so more statements can be added without touching code):
//! - lines starting with `--` are comments, blank lines separate nothing in particular;
//! - an entry is one or more lines up to a line ending with `;`. It is sent as it is, as one
//!   simple-protocol Query message (so `BEGIN; ...; COMMIT;` on one line is one message);
//! - a directive line `--@ extended [binary] [params: a, b | c, d]` just before an entry sends
//!   it with the extended protocol instead: Parse (named), Describe statement, then for each
//!   `|`-separated parameter set Bind (text parameters, `NULL` for null, results in text or
//!   `binary`) + Describe portal + Execute, then Close and a single Sync. Without `params:`
//!   it is bound once with no parameters. Parameter values cannot contain `,` or `|`.
//!
//! Everything the server sends for an entry is recorded frame by frame, including
//! ErrorResponse fields, notices, command tags, RowDescription type OIDs and ReadyForQuery
//! status. A COPY FROM STDIN that gets as far as CopyInResponse is answered with CopyFail (no
//! data is written). An entry that leaves a transaction open or aborted is followed by a
//! ROLLBACK, whose answer is recorded too, so every entry starts from an idle session.

use std::path::Path;

use crate::common::frames;
use crate::common::raw::{self, Frame, RawConn};

/// How an entry is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Simple,
    Extended {
        params: Vec<Vec<Option<String>>>,
        binary: bool,
    },
}

/// One entry of the statement file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// 1-based line of the entry's first line.
    pub line: usize,
    pub mode: Mode,
    pub sql: String,
}

impl Entry {
    pub fn describe(&self) -> String {
        match &self.mode {
            Mode::Simple => format!("line {}: {}", self.line, self.sql),
            Mode::Extended { params, binary } => format!(
                "line {} (extended{}, params {:?}): {}",
                self.line,
                if *binary { ", binary" } else { "" },
                params,
                self.sql
            ),
        }
    }
}

fn parse_directive(line: usize, text: &str) -> Result<Mode, String> {
    let mut rest = text.trim();
    rest = rest
        .strip_prefix("extended")
        .ok_or_else(|| format!("line {line}: unknown directive {text:?}"))?
        .trim_start();
    let mut binary = false;
    if let Some(r) = rest.strip_prefix("binary") {
        binary = true;
        rest = r.trim_start();
    }
    let mut params = Vec::new();
    if let Some(r) = rest.strip_prefix("params:") {
        for set in r.split('|') {
            params.push(
                set.split(',')
                    .map(|v| {
                        let v = v.trim();
                        (v != "NULL").then(|| v.to_owned())
                    })
                    .collect(),
            );
        }
    } else if !rest.is_empty() {
        return Err(format!("line {line}: cannot read directive {text:?}"));
    }
    Ok(Mode::Extended { params, binary })
}

/// Reads the statement file.
pub fn load(path: &Path) -> Result<Vec<Entry>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut entries = Vec::new();
    let mut mode = Mode::Simple;
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim();
        if current.is_none() {
            if let Some(d) = trimmed.strip_prefix("--@") {
                mode = parse_directive(n, d)?;
                continue;
            }
            if trimmed.is_empty() || trimmed.starts_with("--") {
                continue;
            }
        }
        let (_, sql) = current.get_or_insert_with(|| (n, String::new()));
        if !sql.is_empty() {
            sql.push('\n');
        }
        sql.push_str(line);
        if trimmed.ends_with(';') {
            let (start, sql) = current.take().expect("entry");
            entries.push(Entry {
                line: start,
                mode: std::mem::replace(&mut mode, Mode::Simple),
                sql,
            });
        }
    }
    if let Some((start, _)) = current {
        return Err(format!(
            "{}: the entry at line {start} does not end with `;`",
            path.display()
        ));
    }
    Ok(entries)
}

/// What the client received for one entry: every frame, or where the connection ended.
pub type Transcript = Vec<Frame>;

/// A marker frame for a connection that closed (or hung) mid-entry; never sent by a server.
fn closed_marker(why: &str) -> Frame {
    let mut body = b"Sclosed\0M".to_vec();
    body.extend_from_slice(why.as_bytes());
    body.extend_from_slice(b"\0\0");
    Frame(raw::frame(b'!', &body))
}

/// Reads frames until ReadyForQuery, answering CopyInResponse with CopyFail. `Err` carries
/// what arrived before the connection ended or hung.
async fn read_until_ready(conn: &mut RawConn, out: &mut Transcript) -> Result<u8, String> {
    loop {
        match conn.recv().await {
            Ok(Some(f)) => {
                let tag = f.tag();
                let status = f.status();
                out.push(f);
                match tag {
                    b'G' | b'W' => {
                        conn.send(&frames::copy_fail("non-interference test sends no data"))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    b'Z' => return Ok(status.unwrap_or(b'?')),
                    _ => {}
                }
            }
            Ok(None) => return Err("connection closed".into()),
            Err(e) => return Err(e),
        }
    }
}

fn extended_message(entry: &Entry, params: &[Vec<Option<String>>], binary: bool) -> Vec<u8> {
    let sql = entry.sql.trim_end().trim_end_matches(';');
    let mut msg = raw::parse("ni", sql);
    msg.extend(raw::describe(b'S', "ni"));
    let no_params: Vec<Vec<Option<String>>> = vec![Vec::new()];
    let sets = if params.is_empty() {
        &no_params
    } else {
        params
    };
    for set in sets {
        let values: Vec<Option<&str>> = set.iter().map(|v| v.as_deref()).collect();
        msg.extend(frames::bind_with_format(
            "",
            "ni",
            &values,
            i16::from(binary),
        ));
        msg.extend(raw::describe(b'P', ""));
        msg.extend(raw::execute("", 0));
    }
    msg.extend(raw::close(b'S', "ni"));
    msg.extend(raw::sync());
    msg
}

/// Sends one entry and records the answer; the flag is false when the session is gone (the
/// transcript then ends with a marker frame) and the caller must reconnect.
pub async fn run_entry(conn: &mut RawConn, entry: &Entry) -> (Transcript, bool) {
    let mut out = Vec::new();
    let msg = match &entry.mode {
        Mode::Simple => raw::query(&entry.sql),
        Mode::Extended { params, binary } => extended_message(entry, params, *binary),
    };
    if let Err(e) = conn.send(&msg).await {
        out.push(closed_marker(&format!("send failed: {e}")));
        return (out, false);
    }
    let status = match read_until_ready(conn, &mut out).await {
        Ok(s) => s,
        Err(why) => {
            out.push(closed_marker(&why));
            return (out, false);
        }
    };
    if status != b'I' {
        if let Err(e) = conn.send(&raw::query("ROLLBACK")).await {
            out.push(closed_marker(&format!("send failed: {e}")));
            return (out, false);
        }
        if let Err(why) = read_until_ready(conn, &mut out).await {
            out.push(closed_marker(&why));
            return (out, false);
        }
    }
    (out, true)
}

/// How to open a session: (port, user, password).
#[derive(Debug, Clone)]
pub struct Login {
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
}

/// Runs every entry in order on one session (a new one after a session ended).
pub async fn run_all(login: Login, entries: &[Entry]) -> Vec<Transcript> {
    let connect = || RawConn::login(login.port, &login.user, login.password.as_deref());
    let mut conn = connect().await;
    let mut transcripts = Vec::with_capacity(entries.len());
    for entry in entries {
        let (t, alive) = run_entry(&mut conn, entry).await;
        transcripts.push(t);
        if !alive {
            conn = connect().await;
        }
    }
    transcripts
}

/// The two answers, labelled, from their first difference (at most `window` frames each).
pub fn explain_difference(
    (label_a, a): (&str, &Transcript),
    (label_b, b): (&str, &Transcript),
    window: usize,
) -> String {
    let first = a
        .iter()
        .zip(b.iter())
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let show = |t: &Transcript| -> String {
        let end = (first + window).min(t.len());
        let mut s = frames::render_all(&t[first..end]);
        if end < t.len() {
            s.push_str(&format!("\n    ... {} more frames", t.len() - end));
        }
        s
    };
    format!(
        "  first difference at frame {first} of {} / {} (frames before it are equal)\n  {label_a}:\n{}\n  {label_b}:\n{}",
        a.len(),
        b.len(),
        show(a),
        show(b)
    )
}

/// Whether a transcript holds an error with SQLSTATE `code`.
pub fn has_error(t: &Transcript, code: &str) -> bool {
    t.iter()
        .any(|f| f.tag() == b'E' && f.code().as_deref() == Some(code))
}

/// Whether a transcript holds rows (DataRow or CopyData).
pub fn has_rows(t: &Transcript) -> bool {
    t.iter().any(|f| f.tag() == b'D' || f.tag() == b'd')
}

/// Whether a transcript holds no error at all.
pub fn is_clean(t: &Transcript) -> bool {
    !t.iter().any(|f| f.tag() == b'E' || f.tag() == b'!')
}

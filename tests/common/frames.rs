//! Decoding and building the protocol messages the enforcement and non-interference tests
//! look inside (RowDescription, DataRow, CommandComplete, Copy*), on top of [`super::raw`],
//! and a lossless one-line rendering of any backend frame for failure messages.

use super::raw::{frame, Frame};

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub table_oid: u32,
    pub column: i16,
    pub type_oid: u32,
    pub type_len: i16,
    pub type_mod: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// The fields of a RowDescription ('T') frame; panics on any other frame.
pub fn row_description(f: &Frame) -> Vec<Field> {
    assert_eq!(f.tag(), b'T', "not a RowDescription: {f:?}");
    let b = f.body();
    let n = be_i16(b, 0) as usize;
    let mut at = 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let end = at + b[at..].iter().position(|c| *c == 0).expect("name NUL");
        let name = String::from_utf8_lossy(&b[at..end]).into_owned();
        at = end + 1;
        out.push(Field {
            name,
            table_oid: be_u32(b, at),
            column: be_i16(b, at + 4),
            type_oid: be_u32(b, at + 6),
            type_len: be_i16(b, at + 10),
            type_mod: be_u32(b, at + 12) as i32,
            format: be_i16(b, at + 16),
        });
        at += 18;
    }
    out
}

/// The values of a DataRow ('D') frame (`None` = NULL); panics on any other frame.
pub fn data_row(f: &Frame) -> Vec<Option<Vec<u8>>> {
    assert_eq!(f.tag(), b'D', "not a DataRow: {f:?}");
    let b = f.body();
    let n = be_i16(b, 0) as usize;
    let mut at = 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = be_u32(b, at) as i32;
        at += 4;
        if len < 0 {
            out.push(None);
        } else {
            out.push(Some(b[at..at + len as usize].to_vec()));
            at += len as usize;
        }
    }
    out
}

/// A DataRow of text-format values as strings (`None` = NULL).
pub fn text_row(f: &Frame) -> Vec<Option<String>> {
    data_row(f)
        .into_iter()
        .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .collect()
}

/// The tag of a CommandComplete ('C') frame.
pub fn command_tag(f: &Frame) -> String {
    assert_eq!(f.tag(), b'C', "not a CommandComplete: {f:?}");
    let b = f.body();
    String::from_utf8_lossy(&b[..b.len().saturating_sub(1)]).into_owned()
}

/// Frames of one kind.
pub fn of_kind(frames: &[Frame], tag: u8) -> Vec<&Frame> {
    frames.iter().filter(|f| f.tag() == tag).collect()
}

/// The first ErrorResponse among `frames`.
pub fn first_error(frames: &[Frame]) -> Option<&Frame> {
    frames.iter().find(|f| f.tag() == b'E')
}

/// Every text-format DataRow among `frames`.
pub fn text_rows(frames: &[Frame]) -> Vec<Vec<Option<String>>> {
    of_kind(frames, b'D').into_iter().map(text_row).collect()
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Bind with text-format parameters (`None` = NULL) and one result format for every column
/// (0 text, 1 binary).
pub fn bind_with_format(
    portal: &str,
    statement: &str,
    params: &[Option<&str>],
    result_format: i16,
) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    cstr(&mut body, statement);
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v.as_bytes());
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&result_format.to_be_bytes());
    frame(b'B', &body)
}

pub fn copy_data(data: &[u8]) -> Vec<u8> {
    frame(b'd', data)
}

pub fn copy_done() -> Vec<u8> {
    frame(b'c', &[])
}

pub fn copy_fail(message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, message);
    frame(b'f', &body)
}

/// Printable form of bytes: UTF-8 text as a quoted string, anything else as hex.
fn show_bytes(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => format!("{s:?}"),
        _ => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

/// Every field of an ErrorResponse / NoticeResponse as `code=value` pairs.
fn error_fields(f: &Frame) -> String {
    let b = f.body();
    let mut parts = Vec::new();
    let mut at = 0;
    while at < b.len() && b[at] != 0 {
        let code = b[at] as char;
        let end = at + 1 + b[at + 1..].iter().position(|c| *c == 0).unwrap_or(0);
        parts.push(format!(
            "{code}={}",
            String::from_utf8_lossy(&b[at + 1..end]).into_owned()
        ));
        at = end + 1;
    }
    parts.join(" | ")
}

/// A one-line rendering of a backend frame that shows everything in it (two frames with the
/// same rendering have the same bytes, up to the text/hex choice for values).
pub fn render(f: &Frame) -> String {
    match f.tag() {
        b'T' => {
            let cols: Vec<String> = row_description(f)
                .iter()
                .map(|c| {
                    format!(
                        "{} type={} len={} mod={} table={}/{} fmt={}",
                        c.name, c.type_oid, c.type_len, c.type_mod, c.table_oid, c.column, c.format
                    )
                })
                .collect();
            format!("RowDescription[{}]", cols.join("; "))
        }
        b'D' => {
            let vals: Vec<String> = data_row(f)
                .iter()
                .map(|v| v.as_deref().map_or("NULL".into(), show_bytes))
                .collect();
            format!("DataRow({})", vals.join(", "))
        }
        b'C' => format!("CommandComplete({})", command_tag(f)),
        b'E' => format!("Error({})", error_fields(f)),
        b'N' => format!("Notice({})", error_fields(f)),
        b'Z' => format!("ReadyForQuery({})", f.0[5] as char),
        b'd' => format!("CopyData({})", show_bytes(f.body())),
        b'1' => "ParseComplete".into(),
        b'2' => "BindComplete".into(),
        b'3' => "CloseComplete".into(),
        b'n' => "NoData".into(),
        b'I' => "EmptyQueryResponse".into(),
        b's' => "PortalSuspended".into(),
        b'c' => "CopyDone".into(),
        t => format!("{}({})", t as char, show_bytes(f.body())),
    }
}

/// [`render`] of every frame, one per line.
pub fn render_all(frames: &[Frame]) -> String {
    frames
        .iter()
        .map(|f| format!("    {}", render(f)))
        .collect::<Vec<_>>()
        .join("\n")
}

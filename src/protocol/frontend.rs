//! The frontend messages the proxy must read: the SQL text of `Query` and `Parse`, and the
//! rebuilt forms it forwards when a statement is rewritten or blocked.
//!
//! Decoding works on raw bytes and refuses text that is not valid UTF-8 *before* anything turns
//! it into a `String` (a lossy decoder would let the analyser and Postgres see different text).

use thiserror::Error;

use super::frame::{put_frame, HEADER_LEN};
use bytes::BytesMut;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrontendError {
    #[error("invalid message format")]
    Malformed,
    #[error("statement text is not valid UTF-8")]
    NotUtf8,
}

/// A decoded `Parse` message: statement name, SQL text, and the raw parameter-type trailer.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseMessage<'a> {
    pub statement_name: &'a [u8],
    pub sql: &'a str,
    /// `Int16 count` followed by `count` Int32 OIDs, kept as bytes to forward unchanged.
    pub param_types: &'a [u8],
}

fn split_cstr(bytes: &[u8]) -> Result<(&[u8], &[u8]), FrontendError> {
    let nul = bytes
        .iter()
        .position(|b| *b == 0)
        .ok_or(FrontendError::Malformed)?;
    Ok((&bytes[..nul], &bytes[nul + 1..]))
}

fn utf8(bytes: &[u8]) -> Result<&str, FrontendError> {
    std::str::from_utf8(bytes).map_err(|_| FrontendError::NotUtf8)
}

/// The SQL of a whole `Query` frame (header included). Trailing bytes after the terminator are
/// a format error, as in Postgres.
pub fn query_text(frame: &[u8]) -> Result<&str, FrontendError> {
    let (sql, rest) = split_cstr(frame.get(HEADER_LEN..).ok_or(FrontendError::Malformed)?)?;
    if !rest.is_empty() {
        return Err(FrontendError::Malformed);
    }
    utf8(sql)
}

/// Decode a whole `Parse` frame (header included).
pub fn parse_message(frame: &[u8]) -> Result<ParseMessage<'_>, FrontendError> {
    let body = frame.get(HEADER_LEN..).ok_or(FrontendError::Malformed)?;
    let (statement_name, rest) = split_cstr(body)?;
    let (sql, param_types) = split_cstr(rest)?;
    let count = match param_types {
        [a, b, ..] => i16::from_be_bytes([*a, *b]),
        _ => return Err(FrontendError::Malformed),
    };
    if count < 0 || param_types.len() != 2 + 4 * count as usize {
        return Err(FrontendError::Malformed);
    }
    Ok(ParseMessage {
        statement_name,
        sql: utf8(sql)?,
        param_types,
    })
}

/// Append a `Query` frame carrying `sql`.
pub fn put_query(out: &mut BytesMut, sql: &str) {
    let mut body = Vec::with_capacity(sql.len() + 1);
    body.extend_from_slice(sql.as_bytes());
    body.push(0);
    put_frame(out, b'Q', &body);
}

/// Append a `Parse` frame like `original` but with `sql` as its text.
pub fn put_parse(out: &mut BytesMut, original: &ParseMessage<'_>, sql: &str) {
    let mut body = Vec::with_capacity(
        original.statement_name.len() + sql.len() + original.param_types.len() + 2,
    );
    body.extend_from_slice(original.statement_name);
    body.push(0);
    body.extend_from_slice(sql.as_bytes());
    body.push(0);
    body.extend_from_slice(original.param_types);
    put_frame(out, b'P', &body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        put_frame(&mut out, tag, body);
        out
    }

    #[test]
    fn query_text_is_checked_for_utf8_and_layout() {
        assert_eq!(query_text(&frame(b'Q', b"select 1\0")), Ok("select 1"));
        assert_eq!(
            query_text(&frame(b'Q', b"select '\xff'\0")),
            Err(FrontendError::NotUtf8)
        );
        assert_eq!(
            query_text(&frame(b'Q', b"select 1")),
            Err(FrontendError::Malformed)
        );
        assert_eq!(
            query_text(&frame(b'Q', b"select 1\0junk")),
            Err(FrontendError::Malformed)
        );
    }

    #[test]
    fn parse_round_trips_with_new_text() {
        let original = frame(b'P', b"s1\0select $1\0\x00\x01\x00\x00\x00\x17");
        let parsed = parse_message(&original).unwrap();
        assert_eq!(parsed.statement_name, b"s1");
        assert_eq!(parsed.sql, "select $1");
        let mut rebuilt = BytesMut::new();
        put_parse(&mut rebuilt, &parsed, "select $1");
        assert_eq!(rebuilt, original);
        let mut changed = BytesMut::new();
        put_parse(&mut changed, &parsed, "select $1::int");
        assert_eq!(parse_message(&changed).unwrap().sql, "select $1::int");
    }

    #[test]
    fn parse_with_bad_param_count_is_malformed() {
        assert_eq!(
            parse_message(&frame(b'P', b"\0select 1\0\x00\x02\x00\x00\x00\x17")),
            Err(FrontendError::Malformed)
        );
        assert_eq!(
            parse_message(&frame(b'P', b"\0select 1\0")),
            Err(FrontendError::Malformed)
        );
    }
}

//! A re-implementation of PostgreSQL 15's lexical rules (`src/backend/parser/scan.l`) for the
//! settings the proxy pins upstream (`standard_conforming_strings = on`, UTF-8).
//!
//! It only finds token boundaries and kinds; it is the reference the sqlparser tokenizer is
//! checked against in [`super::lex`]. Where Postgres would raise a lexical error, or where the
//! construct is one the analyser must not trust (Unicode escapes, string continuation across a
//! newline, identifiers Postgres truncates), this scanner fails with a [`LexError`].
//!
//! The scanner works on bytes: like flex, Postgres's scanner is byte-oriented, and every byte
//! `>= 0x80` is an identifier character (`ident_start`/`ident_cont` include `\200-\377`).

use super::{Construct, LexError, StrKind, Tok, TokKind};

/// `NAMEDATALEN - 1`: longer identifiers are truncated by Postgres (with only a NOTICE), so the
/// name the analyser sees would not be the name Postgres uses.
pub(super) const MAX_IDENTIFIER_BYTES: usize = 63;

/// Characters that may form multi-character operators (`op_chars` in scan.l).
fn is_op_char(c: u8) -> bool {
    matches!(
        c,
        b'~' | b'!'
            | b'@'
            | b'#'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
            | b'+'
            | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'<'
            | b'>'
            | b'='
    )
}

/// `ident_start` in scan.l.
pub(super) fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

/// `ident_cont` in scan.l (note: `$` is allowed inside identifiers).
pub(super) fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

/// `dolq_cont` in scan.l: like `ident_cont` but without `$`.
fn is_dolq_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// `space` in scan.l. Vertical tab is *not* whitespace in Postgres 15.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// Byte at `i`, or 0 past the end. The input never contains NUL (checked first), so 0 is a
/// safe "end" sentinel.
#[inline]
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// Skip a `--` comment starting at `i`; returns the index of the terminating newline (or end).
fn skip_line_comment(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
        i += 1;
    }
    i
}

/// Skip a (nesting) `/* */` comment starting at `i`.
fn skip_block_comment(b: &[u8], start: usize) -> Result<usize, LexError> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        if b[i] == b'/' && at(b, i + 1) == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && at(b, i + 1) == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Ok(i);
            }
        } else {
            i += 1;
        }
    }
    Err(LexError::Unterminated {
        offset: start,
        what: "block comment",
    })
}

/// Postgres concatenates two quoted strings separated only by whitespace (and `--` comments)
/// that contains at least one newline (`quotecontinue`), and reads the continuation in the
/// *first* string's mode (`E'a'<newline>'\''` is one escape string). sqlparser sees two
/// tokens, so this is always refused. `i` is the index just after a closing quote.
fn continues_string(b: &[u8], mut i: usize) -> bool {
    let mut saw_newline = false;
    loop {
        match at(b, i) {
            b' ' | b'\t' | 0x0c => i += 1,
            b'\n' | b'\r' => {
                saw_newline = true;
                i += 1;
            }
            b'-' if at(b, i + 1) == b'-' => i = skip_line_comment(b, i),
            b'\'' => return saw_newline,
            _ => return false,
        }
    }
}

/// Scan `sql` into `out`. Whitespace and comments are dropped.
pub(super) fn scan(sql: &str, out: &mut Vec<Tok>) -> Result<(), LexError> {
    let b = sql.as_bytes();
    if let Some(offset) = b.iter().position(|&c| c == 0) {
        return Err(LexError::Nul { offset });
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is_space(c) {
            i += 1;
            continue;
        }
        if c == b'-' && at(b, i + 1) == b'-' {
            i = skip_line_comment(b, i);
            continue;
        }
        if c == b'/' && at(b, i + 1) == b'*' {
            i = skip_block_comment(b, i)?;
            continue;
        }
        let (kind, end) = scan_token(b, i)?;
        if let TokKind::String(k) = kind {
            if k != StrKind::Dollar && continues_string(b, end) {
                return Err(LexError::Rejected {
                    offset: i,
                    construct: Construct::StringContinuation,
                });
            }
        }
        out.push(Tok {
            kind,
            start: i,
            end,
        });
        i = end;
    }
    Ok(())
}

fn rejected(offset: usize, construct: Construct) -> LexError {
    LexError::Rejected { offset, construct }
}

/// One token starting at `i` (which is not whitespace or a comment start).
fn scan_token(b: &[u8], i: usize) -> Result<(TokKind, usize), LexError> {
    let c = b[i];
    let next = at(b, i + 1);
    match c {
        b'\'' => Ok((
            TokKind::String(StrKind::Standard),
            scan_standard(b, i, i + 1)?,
        )),
        b'"' => Ok((TokKind::QuotedIdent, scan_quoted_ident(b, i)?)),
        b'$' => scan_dollar(b, i),
        b'0'..=b'9' => Ok((TokKind::Number, scan_number(b, i)?)),
        b'.' if next.is_ascii_digit() => Ok((TokKind::Number, scan_number(b, i)?)),
        // `..` is DOT_DOT (PL/pgSQL only); sqlparser reads two periods.
        b'.' if next == b'.' => Err(rejected(i, Construct::DotDot)),
        b'.' | b',' | b'(' | b')' | b'[' | b']' => Ok((TokKind::Punct, i + 1)),
        b';' => Ok((TokKind::Semicolon, i + 1)),
        b':' if next == b':' || next == b'=' => Ok((TokKind::Punct, i + 2)),
        b':' => Ok((TokKind::Punct, i + 1)),
        b'\\' => Err(rejected(i, Construct::Backslash)),
        _ if is_op_char(c) => scan_operator(b, i),
        _ if is_ident_start(c) => scan_word(b, i),
        _ => Err(rejected(i, Construct::OtherCharacter)),
    }
}

/// A word, or one of the prefixed string forms (`E'`, `B'`, `X'`, `N'`, `U&'`, `U&"`).
fn scan_word(b: &[u8], i: usize) -> Result<(TokKind, usize), LexError> {
    let lower = b[i].to_ascii_lowercase();
    let next = at(b, i + 1);
    if next == b'\'' {
        match lower {
            b'e' => return Ok((TokKind::String(StrKind::Escape), scan_escape(b, i)?)),
            b'b' => return Ok((TokKind::String(StrKind::Bit), scan_bit_or_hex(b, i, "bit")?)),
            b'x' => return Ok((TokKind::String(StrKind::Hex), scan_bit_or_hex(b, i, "hex")?)),
            // Postgres returns the keyword NCHAR and then an ordinary string; sqlparser reads
            // one national string token with the same boundaries and the same value.
            b'n' => {
                return Ok((
                    TokKind::String(StrKind::National),
                    scan_standard(b, i, i + 2)?,
                ))
            }
            _ => {}
        }
    }
    if lower == b'u' && next == b'&' {
        match at(b, i + 2) {
            b'\'' => return Err(rejected(i, Construct::UnicodeEscapeString)),
            b'"' => return Err(rejected(i, Construct::UnicodeEscapeIdentifier)),
            _ => {}
        }
    }
    let mut j = i + 1;
    while j < b.len() && is_ident_cont(b[j]) {
        j += 1;
    }
    if j - i > MAX_IDENTIFIER_BYTES {
        return Err(LexError::IdentifierTooLong {
            offset: i,
            len: j - i,
        });
    }
    Ok((TokKind::Word, j))
}

/// A standard-conforming string (`xq`): `''` is a quote, backslash is an ordinary character.
/// `body` is the index just after the opening quote.
fn scan_standard(b: &[u8], start: usize, body: usize) -> Result<usize, LexError> {
    let mut j = body;
    while j < b.len() {
        if b[j] == b'\'' {
            if at(b, j + 1) == b'\'' {
                j += 2;
                continue;
            }
            return Ok(j + 1);
        }
        j += 1;
    }
    Err(LexError::Unterminated {
        offset: start,
        what: "quoted string",
    })
}

/// An escape string (`xe`): backslash escapes, including `\'`.
fn scan_escape(b: &[u8], start: usize) -> Result<usize, LexError> {
    let mut j = start + 2;
    while j < b.len() {
        match b[j] {
            b'\'' => {
                if at(b, j + 1) == b'\'' {
                    j += 2;
                    continue;
                }
                return Ok(j + 1);
            }
            b'\\' => {
                let digits = match at(b, j + 1) {
                    b'u' => 4,
                    b'U' => 8,
                    _ => 0,
                };
                if digits > 0 {
                    // xeunicode needs exactly 4/8 hex digits; otherwise xeunicodefail (error).
                    let hex = b.get(j + 2..j + 2 + digits);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return Err(rejected(j, Construct::InvalidEscape));
                    }
                    j += 2 + digits;
                } else {
                    // Any other escape consumes exactly one more byte at the boundary level
                    // (octal/hex digits cannot contain a quote).
                    j += 2;
                }
            }
            _ => j += 1,
        }
    }
    Err(LexError::Unterminated {
        offset: start,
        what: "quoted string",
    })
}

/// `B'...'` / `X'...'`: no escapes at all, not even `''` (a second quote starts a new string).
fn scan_bit_or_hex(b: &[u8], start: usize, what: &'static str) -> Result<usize, LexError> {
    match b[start + 2..].iter().position(|&c| c == b'\'') {
        Some(p) => Ok(start + 2 + p + 1),
        None => Err(LexError::Unterminated {
            offset: start,
            what: if what == "bit" {
                "bit string"
            } else {
                "hexadecimal string"
            },
        }),
    }
}

/// `"..."`: `""` is a quote; empty and over-long names are refused.
fn scan_quoted_ident(b: &[u8], start: usize) -> Result<usize, LexError> {
    let mut j = start + 1;
    let mut len = 0usize;
    while j < b.len() {
        if b[j] == b'"' {
            if at(b, j + 1) == b'"' {
                j += 2;
                len += 1;
                continue;
            }
            if len == 0 {
                return Err(rejected(start, Construct::ZeroLengthIdentifier));
            }
            if len > MAX_IDENTIFIER_BYTES {
                return Err(LexError::IdentifierTooLong { offset: start, len });
            }
            return Ok(j + 1);
        }
        j += 1;
        len += 1;
    }
    Err(LexError::Unterminated {
        offset: start,
        what: "quoted identifier",
    })
}

/// `$n` parameters and `$tag$...$tag$` strings.
fn scan_dollar(b: &[u8], start: usize) -> Result<(TokKind, usize), LexError> {
    let next = at(b, start + 1);
    if next.is_ascii_digit() {
        let mut j = start + 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if is_ident_start(at(b, j)) {
            return Err(rejected(start, Construct::ParameterJunk));
        }
        return Ok((TokKind::Placeholder, j));
    }
    // dolqdelim: \$({dolq_start}{dolq_cont}*)?\$
    let mut j = start + 1;
    if is_ident_start(next) {
        j += 1;
        while j < b.len() && is_dolq_cont(b[j]) {
            j += 1;
        }
    }
    if at(b, j) != b'$' {
        // dolqfailed, or a lone `$`: Postgres returns `$` as a character the grammar rejects.
        return Err(rejected(start, Construct::Dollar));
    }
    // Searching for the closing delimiter is O(body * tag); long tags would let one statement
    // cost quadratic time here and in sqlparser. Postgres accepts them, nobody needs them.
    if j - start - 1 > MAX_IDENTIFIER_BYTES {
        return Err(rejected(start, Construct::LongDollarTag));
    }
    let delim = &b[start..=j];
    let body = j + 1;
    match find(&b[body..], delim) {
        Some(p) => Ok((TokKind::String(StrKind::Dollar), body + p + delim.len())),
        None => Err(LexError::Unterminated {
            offset: start,
            what: "dollar-quoted string",
        }),
    }
}

/// First occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&c| c == first) {
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
            None => return None,
        }
    }
    None
}

/// Numbers: `integer`, `decimal`, `real`. Postgres 15 rejects trailing identifier characters
/// (`123abc`, `0x1F`, `1_000`) and incomplete exponents (`1e`, `1e+`) as "trailing junk".
fn scan_number(b: &[u8], start: usize) -> Result<usize, LexError> {
    let mut j = start;
    while at(b, j).is_ascii_digit() {
        j += 1;
    }
    let had_int = j > start;
    if at(b, j) == b'.' {
        if had_int && at(b, j + 1) == b'.' {
            // decimalfail: `1..` is the integer 1 followed by DOT_DOT.
            return Ok(j);
        }
        j += 1;
        while at(b, j).is_ascii_digit() {
            j += 1;
        }
    }
    if matches!(at(b, j), b'e' | b'E') {
        let mut k = j + 1;
        if matches!(at(b, k), b'+' | b'-') {
            k += 1;
        }
        if !at(b, k).is_ascii_digit() {
            return Err(rejected(start, Construct::NumericJunk));
        }
        while at(b, k).is_ascii_digit() {
            k += 1;
        }
        // Postgres's junk rules are `{number}{identifier}`, and an unsigned exponent is itself
        // the start of an identifier (`e3$`): `1e3$1` and `1e3$$x$$` are "trailing junk"
        // because that match is longer than `{real}`.
        if k == j + 1 + count_digits(b, j + 1) && is_ident_cont(at(b, k)) {
            return Err(rejected(start, Construct::NumericJunk));
        }
        j = k;
    }
    if is_ident_start(at(b, j)) {
        return Err(rejected(start, Construct::NumericJunk));
    }
    Ok(j)
}

fn count_digits(b: &[u8], from: usize) -> usize {
    b.get(from..)
        .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count())
}

/// The `{operator}` rule: a run of op chars, cut at an embedded comment start, with trailing
/// `+`/`-` removed unless the operator contains one of `~!@#^&|`?%`.
fn scan_operator(b: &[u8], start: usize) -> Result<(TokKind, usize), LexError> {
    let mut j = start;
    while j < b.len() && is_op_char(b[j]) {
        j += 1;
    }
    let run = &b[start..j];
    let mut n = run.len();
    if let Some(p) = run.windows(2).position(|w| w == b"/*" || w == b"--") {
        n = p;
    }
    while n > 1 && matches!(run[n - 1], b'+' | b'-') {
        if run[..n - 1].iter().any(|c| b"~!@#^&|`?%".contains(c)) {
            break;
        }
        n -= 1;
    }
    if n > MAX_IDENTIFIER_BYTES {
        return Err(rejected(start, Construct::OperatorTooLong));
    }
    let kind = if &run[..n] == b"=>" {
        TokKind::Punct
    } else {
        TokKind::Operator
    };
    Ok((kind, start + n))
}

//! Tokens with byte spans, checked against Postgres 15's own lexical rules.
//!
//! This module owns the first line of defence against parser differentials (DESIGN.md, "Known
//! traps"): the decision engine parses SQL with sqlparser, but Postgres executes what *its*
//! scanner reads. [`lex`] therefore tokenizes every statement twice, with sqlparser's tokenizer
//! (PostgreSQL dialect, the same configuration the parser uses) and with `pgscan`, a
//! re-implementation of Postgres 15's `scan.l` for the pinned settings
//! (`standard_conforming_strings = on`, UTF-8). The two must agree on every token's boundaries,
//! class and literal value; any difference, and every construct whose reading we cannot be
//! sure of (Unicode escapes, string continuation across a newline, identifiers Postgres would
//! truncate, psql backslash commands, ...), fails closed with a [`LexError`].
//!
//! It also owns statement splitting ([`split_statements`]) and token-anchored splicing
//! ([`Edit`], [`apply_edits`]): rewrites are built by replacing whole tokens of the client's
//! original text, never by printing an AST, and an edit list computed for one statement applies
//! to every statement of the same [`shape`](super::shape).
//!
//! Errors never carry literal text: only byte offsets and the kind of construct (security
//! rule 8).

#[cfg(test)]
mod lookup_tests;
#[cfg(test)]
mod pg_differential;
mod pgscan;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

/// Which kind of quoted string literal a [`TokKind::String`] token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrKind {
    /// `'...'` (standard conforming: backslash is an ordinary character).
    Standard,
    /// `E'...'` (backslash escapes).
    Escape,
    /// `N'...'` (Postgres: the keyword NCHAR followed by a standard string).
    National,
    /// `B'...'` bit string.
    Bit,
    /// `X'...'` hexadecimal bit string.
    Hex,
    /// `$$...$$` or `$tag$...$tag$`.
    Dollar,
}

/// Token classes, as Postgres's scanner distinguishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokKind {
    /// An unquoted identifier or keyword.
    Word,
    /// A `"quoted"` identifier.
    QuotedIdent,
    /// A string literal of any kind.
    String(StrKind),
    /// A numeric literal (integer, decimal or real).
    Number,
    /// A positional parameter `$n`.
    Placeholder,
    /// An operator (`+`, `<=`, `->>`, `@@`, ...).
    Operator,
    /// Punctuation: `( ) [ ] , . : :: := =>`.
    Punct,
    /// `;`
    Semicolon,
}

/// One token: its class and its byte span in the statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tok {
    pub kind: TokKind,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

impl Tok {
    /// Literal values (strings and numbers); `TRUE`/`FALSE`/`NULL` are words, not literals.
    pub fn is_literal(&self) -> bool {
        matches!(self.kind, TokKind::String(_) | TokKind::Number)
    }

    /// The token's source text.
    pub fn text<'a>(&self, sql: &'a str) -> &'a str {
        sql.get(self.start..self.end).unwrap_or("")
    }
}

/// A statement's tokens. Whitespace and comments are not kept (but they separated tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexed<'a> {
    pub sql: &'a str,
    pub tokens: Vec<Tok>,
}

/// Constructs [`lex`] refuses, either because sqlparser reads them differently from Postgres or
/// because Postgres itself rejects them (so refusing costs nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Construct {
    /// `U&'...'`: sqlparser decodes escapes differently and ignores `UESCAPE`.
    UnicodeEscapeString,
    /// `U&"..."`: sqlparser reads `U & "..."` (a bitwise AND of two columns).
    UnicodeEscapeIdentifier,
    /// Two quoted strings separated by whitespace with a newline: one string to Postgres.
    StringContinuation,
    /// A backslash outside any literal (a psql meta-command, not SQL).
    Backslash,
    /// `$` that starts neither a parameter nor a dollar quote.
    Dollar,
    /// A number followed by identifier characters (`0x1F`, `1_000`, `1e`), rejected by Postgres 15.
    NumericJunk,
    /// A parameter followed by identifier characters (`$1a`).
    ParameterJunk,
    /// `..`
    DotDot,
    /// An escape sequence in an `E'...'` string that Postgres rejects or that yields bytes that
    /// are not valid UTF-8 (or a NUL).
    InvalidEscape,
    /// `""`
    ZeroLengthIdentifier,
    /// A dollar-quote tag longer than 63 bytes (bounds the cost of finding its end).
    LongDollarTag,
    /// An operator of 64 characters or more.
    OperatorTooLong,
    /// A character Postgres does not accept outside literals (`{`, `}`, vertical tab, controls).
    OtherCharacter,
}

impl fmt::Display for Construct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Construct::UnicodeEscapeString => "Unicode-escape string (U&'...')",
            Construct::UnicodeEscapeIdentifier => "Unicode-escape identifier (U&\"...\")",
            Construct::StringContinuation => "string literal continued across a newline",
            Construct::Backslash => "backslash outside a literal",
            Construct::Dollar => "stray '$'",
            Construct::NumericJunk => "trailing junk after numeric literal",
            Construct::ParameterJunk => "trailing junk after parameter",
            Construct::DotDot => "'..'",
            Construct::InvalidEscape => "invalid escape in E'...' string",
            Construct::ZeroLengthIdentifier => "zero-length quoted identifier",
            Construct::LongDollarTag => "dollar-quote tag longer than 63 bytes",
            Construct::OperatorTooLong => "operator too long",
            Construct::OtherCharacter => "character not valid in SQL",
        })
    }
}

/// Why a statement could not be tokenized with certainty. Offsets are byte offsets into the
/// statement; no variant carries statement text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("NUL byte at offset {offset}")]
    Nul { offset: usize },
    #[error("unterminated {what} starting at offset {offset}")]
    Unterminated { offset: usize, what: &'static str },
    #[error("{construct} at offset {offset}")]
    Rejected { offset: usize, construct: Construct },
    #[error("identifier of {len} bytes at offset {offset} (Postgres truncates names to 63 bytes)")]
    IdentifierTooLong { offset: usize, len: usize },
    #[error("sqlparser and Postgres read the text differently at offset {offset}")]
    Disagreement { offset: usize },
    #[error("sqlparser's tokenizer rejects text Postgres accepts (offset {offset:?})")]
    TokenizerFailed { offset: Option<usize> },
    #[error("invalid edit list: {what}")]
    InvalidEdit { what: &'static str },
}

/// Tokenize `sql`, failing closed wherever sqlparser and Postgres 15 could disagree.
pub fn lex(sql: &str) -> Result<Lexed<'_>, LexError> {
    lex_with_parser_tokens(sql).map(|(lexed, _)| lexed)
}

/// [`lex`], also handing back sqlparser's own tokens of `sql` (whitespace included, locations
/// relative to `sql`), which the cross-check found equal to Postgres's reading.
///
/// A caller that parses all of `sql` can give them to `Parser::with_tokens_with_locations`
/// instead of letting `Parser::try_with_sql` tokenize the text a second time: the parse is the
/// same (`try_with_sql` is exactly this tokenization followed by `with_tokens_with_locations`),
/// and one sqlparser tokenization is the largest single cost of an uncached decision of a short
/// statement (see `benches/engine.rs`, `parts/`).
pub fn lex_with_parser_tokens(sql: &str) -> Result<(Lexed<'_>, Vec<TokenWithSpan>), LexError> {
    let mut tokens = Vec::with_capacity(sql.len() / 4 + 1);
    pgscan::scan(sql, &mut tokens)?;
    let sp = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| LexError::TokenizerFailed {
            offset: LocCursor::new(sql).advance_to(e.location),
        })?;
    cross_check(sql, &tokens, &sp)?;
    Ok((Lexed { sql, tokens }, sp))
}

/// The Postgres-rules scan alone, without the sqlparser cross-check: the decision cache's
/// lookup path.
///
/// Returns the same tokens (kinds and spans) as [`lex`] and refuses everything [`lex`] refuses
/// on Postgres's grounds: every construct `pgscan` rejects, and `E'...'` strings whose escapes
/// Postgres would reject (which [`lex`] refuses through the value comparison). What it does not
/// check is whether sqlparser reads the text the same way; that costs ~20x the scan (sqlparser's
/// tokenizer allocates a `String` per token) and is only needed before the text is *parsed*.
///
/// # Why a lookup may skip the cross-check
///
/// Tokens from this function are only used to build a cache key and to splice a cached edit
/// list; they are never parsed. A cache entry is created only after the full pipeline ran on
/// some statement `A`: the cross-checked [`lex`], sqlparser's parse and the analysis. A hit
/// for statement `B` means `B`'s key equals `A`'s, and the key spells the whole token
/// sequence (kind and text of every token, unquoted words ASCII-folded as Postgres folds them,
/// string literals by kind) except literal values. Since this scanner is the reference for
/// how Postgres tokenizes, Postgres reads `B` as the very token sequence that was analysed for
/// `A`, apart from literal values; whatever sqlparser would make of `B`'s text is irrelevant,
/// because `A`'s reading, checked equal to Postgres's, is the one the decision was made on.
/// Decisions that depend on a literal's value are never cached, and the checks that read
/// literal values ([`pinned`](super::pinned)) run on every lookup.
pub fn lex_for_lookup(sql: &str) -> Result<Lexed<'_>, LexError> {
    let mut tokens = Vec::with_capacity(sql.len() / 4 + 1);
    pgscan::scan(sql, &mut tokens)?;
    for t in &tokens {
        // Postgres raises an error for these (NUL, invalid UTF-8, bad Unicode escapes); `lex`
        // refuses them because no value can be compared. Only E-strings can fail to decode.
        if t.kind == TokKind::String(StrKind::Escape)
            && string_value(StrKind::Escape, t.text(sql)).is_none()
        {
            return Err(LexError::Rejected {
                offset: t.start,
                construct: Construct::InvalidEscape,
            });
        }
    }
    Ok(Lexed { sql, tokens })
}

/// The Postgres-rules scan alone, for the timing test.
#[cfg(test)]
pub(crate) fn pg_scan_for_bench(sql: &str, out: &mut Vec<Tok>) -> Result<(), LexError> {
    pgscan::scan(sql, out)
}

/// Compare sqlparser's tokens with the Postgres scanner's, token by token.
fn cross_check(sql: &str, pg: &[Tok], sp: &[TokenWithSpan]) -> Result<(), LexError> {
    let mut cursor = LocCursor::new(sql);
    let mut k = 0;
    for t in sp {
        if matches!(t.token, Token::Whitespace(_)) {
            continue;
        }
        let start = cursor.advance_to(t.span.start);
        let end = cursor.advance_to(t.span.end);
        let Some(mine) = pg.get(k) else {
            return Err(LexError::Disagreement {
                offset: start.unwrap_or(sql.len()),
            });
        };
        if start != Some(mine.start) || end != Some(mine.end) || !agrees(sql, mine, &t.token) {
            return Err(LexError::Disagreement {
                offset: start.map_or(mine.start, |s| s.min(mine.start)),
            });
        }
        k += 1;
    }
    match pg.get(k) {
        Some(extra) => Err(LexError::Disagreement {
            offset: extra.start,
        }),
        None => Ok(()),
    }
}

/// Same class and same value (for literals and identifiers) in both readings.
fn agrees(sql: &str, tok: &Tok, sp: &Token) -> bool {
    let text = tok.text(sql);
    match (tok.kind, sp) {
        (TokKind::Word, Token::Word(w)) => w.quote_style.is_none() && w.value == text,
        (TokKind::QuotedIdent, Token::Word(w)) => {
            w.quote_style == Some('"') && Some(w.value.as_str()) == dequote_ident(text).as_deref()
        }
        (TokKind::String(k), _) => match (k, sp) {
            (StrKind::Standard, Token::SingleQuotedString(v))
            | (StrKind::National, Token::NationalStringLiteral(v))
            | (StrKind::Escape, Token::EscapedStringLiteral(v))
            | (StrKind::Bit, Token::SingleQuotedByteStringLiteral(v))
            | (StrKind::Hex, Token::HexStringLiteral(v)) => {
                string_value(k, text).is_some_and(|mine| mine == v.as_str())
            }
            (StrKind::Dollar, Token::DollarQuotedString(d)) => {
                let (tag, body) = split_dollar(text);
                d.value == body && d.tag.as_deref().unwrap_or("") == tag
            }
            _ => false,
        },
        (TokKind::Number, Token::Number(n, long)) => !long && n == text,
        (TokKind::Placeholder, Token::Placeholder(p)) => p == text,
        (TokKind::Semicolon, Token::SemiColon) => true,
        (TokKind::Operator | TokKind::Punct, t) => is_symbol(t),
        _ => false,
    }
}

/// sqlparser tokens that are operators or punctuation (everything else is a word, a literal,
/// whitespace, or a character Postgres would not accept there).
fn is_symbol(t: &Token) -> bool {
    !matches!(
        t,
        Token::EOF
            | Token::Word(_)
            | Token::Number(..)
            | Token::Char(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::Whitespace(_)
            | Token::SemiColon
            | Token::Backslash
            | Token::LBrace
            | Token::RBrace
            | Token::Placeholder(_)
    )
}

/// Converts sqlparser's 1-based (line, column-in-characters) locations to byte offsets. Lines
/// are counted at `\n` only (a lone `\r` is an ordinary column, as in sqlparser's `State`).
/// Locations must be requested in non-decreasing order (tokens come in order), which keeps the
/// whole conversion linear.
struct LocCursor<'a> {
    b: &'a [u8],
    line: u64,
    col: u64,
    pos: usize,
}

impl<'a> LocCursor<'a> {
    fn new(sql: &'a str) -> Self {
        LocCursor {
            b: sql.as_bytes(),
            line: 1,
            col: 1,
            pos: 0,
        }
    }

    fn advance_to(&mut self, loc: Location) -> Option<usize> {
        if (loc.line, loc.column) < (self.line, self.col) {
            return None;
        }
        while self.line < loc.line {
            let nl = self.b.get(self.pos..)?.iter().position(|&c| c == b'\n')?;
            self.pos += nl + 1;
            self.line += 1;
            self.col = 1;
        }
        while self.col < loc.column {
            let c = *self.b.get(self.pos)?;
            if c == b'\n' {
                return None;
            }
            self.pos += utf8_len(c);
            self.col += 1;
        }
        if self.pos > self.b.len() {
            return None;
        }
        Some(self.pos)
    }
}

/// Length of the UTF-8 sequence introduced by `lead` (input is valid UTF-8).
fn utf8_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// `"a""b"` → `a"b`.
fn dequote_ident(text: &str) -> Option<Cow<'_, str>> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    Some(if inner.contains("\"\"") {
        Cow::Owned(inner.replace("\"\"", "\""))
    } else {
        Cow::Borrowed(inner)
    })
}

/// `$tag$body$tag$` → (`tag`, `body`).
fn split_dollar(text: &str) -> (&str, &str) {
    let rest = text.strip_prefix('$').unwrap_or(text);
    let Some(p) = rest.find('$') else {
        return ("", "");
    };
    let tag = &rest[..p];
    let delim_len = tag.len() + 2;
    let body = text
        .get(delim_len..text.len().saturating_sub(delim_len))
        .unwrap_or("");
    (tag, body)
}

/// The value Postgres gives a string literal token (the text includes prefix and quotes).
/// `None` when the escape sequences are invalid for Postgres.
fn string_value(kind: StrKind, text: &str) -> Option<Cow<'_, str>> {
    match kind {
        StrKind::Standard => dequote_standard(text),
        StrKind::National => dequote_standard(text.get(1..)?),
        StrKind::Escape => decode_escape(text.get(2..text.len().checked_sub(1)?)?),
        StrKind::Bit | StrKind::Hex => {
            Some(Cow::Borrowed(text.get(2..text.len().checked_sub(1)?)?))
        }
        StrKind::Dollar => Some(Cow::Borrowed(split_dollar(text).1)),
    }
}

/// `'it''s'` → `it's`.
fn dequote_standard(text: &str) -> Option<Cow<'_, str>> {
    let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(if inner.contains("''") {
        Cow::Owned(inner.replace("''", "'"))
    } else {
        Cow::Borrowed(inner)
    })
}

/// Decode the body of an `E'...'` string the way Postgres 15 does (`xeescape`, `xeoctesc`,
/// `xehexesc`, `xeunicode`, `xqdouble`). Surrogate escapes are refused (Postgres combines pairs,
/// sqlparser cannot), as are results with NUL or invalid UTF-8 (Postgres raises an error).
fn decode_escape(inner: &str) -> Option<Cow<'_, str>> {
    if !inner.contains('\\') && !inner.contains("''") {
        return Some(Cow::Borrowed(inner));
    }
    let b = inner.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                // Only `''` can occur inside a scanned E-string body.
                out.push(b'\'');
                i += 2;
            }
            b'\\' => {
                let c = *b.get(i + 1)?;
                i += 2;
                match c {
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0c),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        let mut n = 1;
                        while n < 3 && matches!(b.get(i), Some(b'0'..=b'7')) {
                            v = v * 8 + u32::from(b[i] - b'0');
                            i += 1;
                            n += 1;
                        }
                        // Postgres stores `(unsigned char) strtoul(...)`.
                        out.push((v & 0xff) as u8);
                    }
                    b'x' if b.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                        let mut v = 0u32;
                        let mut n = 0;
                        while n < 2 && b.get(i).is_some_and(u8::is_ascii_hexdigit) {
                            v = v * 16 + char::from(b[i]).to_digit(16)?;
                            i += 1;
                            n += 1;
                        }
                        out.push((v & 0xff) as u8);
                    }
                    b'u' | b'U' => {
                        let n = if c == b'u' { 4 } else { 8 };
                        let hex = inner.get(i..i + n)?;
                        if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                            return None;
                        }
                        let cp = u32::from_str_radix(hex, 16).ok()?;
                        i += n;
                        // char::from_u32 refuses surrogates and values past U+10FFFF.
                        let ch = char::from_u32(cp)?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    other => out.push(other),
                }
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

impl<'a> Lexed<'a> {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the statement has no tokens (only whitespace and comments).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Source text of token `i` (empty if out of range).
    pub fn text(&self, i: usize) -> &'a str {
        self.tokens.get(i).map_or("", |t| t.text(self.sql))
    }

    /// Kind of token `i`.
    pub fn kind(&self, i: usize) -> Option<TokKind> {
        self.tokens.get(i).map(|t| t.kind)
    }

    /// True if token `i` is the unquoted word `kw` (ASCII case-insensitive, as Postgres matches
    /// keywords).
    pub fn is_word(&self, i: usize, kw: &str) -> bool {
        self.kind(i) == Some(TokKind::Word) && self.text(i).eq_ignore_ascii_case(kw)
    }

    /// The name an identifier token denotes to Postgres: unquoted words are folded to lower
    /// case for ASCII letters only (Postgres's `downcase_identifier` leaves other characters
    /// alone, unlike `str::to_lowercase`); quoted identifiers are dequoted. `None` for other
    /// tokens.
    pub fn ident_value(&self, i: usize) -> Option<Cow<'a, str>> {
        let tok = self.tokens.get(i)?;
        let text = tok.text(self.sql);
        match tok.kind {
            TokKind::Word => Some(if text.bytes().any(|c| c.is_ascii_uppercase()) {
                Cow::Owned(text.to_ascii_lowercase())
            } else {
                Cow::Borrowed(text)
            }),
            TokKind::QuotedIdent => dequote_ident(text),
            _ => None,
        }
    }

    /// The value Postgres gives string literal `i` (escapes decoded). `None` for other tokens.
    pub fn string_value(&self, i: usize) -> Option<Cow<'a, str>> {
        let tok = self.tokens.get(i)?;
        match tok.kind {
            TokKind::String(k) => string_value(k, tok.text(self.sql)),
            _ => None,
        }
    }

    /// The tokens `range` (e.g. one statement from [`split_statements`]) as a `Lexed` of their
    /// own, for per-statement shapes and edits. Spans stay offsets into the whole text:
    /// [`apply_edits`] on the part returns the whole text with that part edited (an insertion
    /// at the part's end goes before its `;`).
    pub fn sub(&self, range: Range<usize>) -> Lexed<'a> {
        Lexed {
            sql: self.sql,
            tokens: self.tokens.get(range).unwrap_or_default().to_vec(),
        }
    }

    /// Byte offset of a sqlparser [`Location`] (as found in AST spans) in this statement.
    pub fn byte_offset(&self, loc: Location) -> Option<usize> {
        LocCursor::new(self.sql).advance_to(loc)
    }

    /// Index of the token that starts exactly at byte `offset`.
    pub fn token_starting_at(&self, offset: usize) -> Option<usize> {
        self.tokens.binary_search_by_key(&offset, |t| t.start).ok()
    }

    /// Index of the token that ends exactly at byte `offset`.
    pub fn token_ending_at(&self, offset: usize) -> Option<usize> {
        self.tokens.binary_search_by_key(&offset, |t| t.end).ok()
    }
}

/// Split into statements at top-level `;`. Returns token index ranges (without the `;`);
/// empty statements are omitted.
///
/// A `;` inside parentheses or brackets does not split (Postgres would reject such text as a
/// whole anyway). Inside `CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ATOMIC ... END` the
/// body's semicolons do not split either, as in Postgres's grammar; this mirrors psql's
/// heuristic but only opens a block on `BEGIN ATOMIC`, so a function named `begin` cannot swallow
/// the statements that follow it.
pub fn split_statements(lexed: &Lexed) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut stmt_start = 0;
    let mut depth = 0usize;
    let mut atomic_depth = 0usize;
    let n = lexed.len();
    for i in 0..n {
        match lexed.tokens[i].kind {
            TokKind::Punct => match lexed.text(i) {
                "(" | "[" => depth += 1,
                ")" | "]" => depth = depth.saturating_sub(1),
                _ => {}
            },
            TokKind::Word => {
                if atomic_depth > 0 {
                    if lexed.is_word(i, "case") {
                        atomic_depth += 1;
                    } else if lexed.is_word(i, "end") {
                        atomic_depth -= 1;
                    }
                } else if lexed.is_word(i, "begin")
                    && lexed.is_word(i + 1, "atomic")
                    && is_create_routine(lexed, stmt_start)
                {
                    atomic_depth = 1;
                }
            }
            TokKind::Semicolon if depth == 0 && atomic_depth == 0 => {
                if i > stmt_start {
                    out.push(stmt_start..i);
                }
                stmt_start = i + 1;
            }
            _ => {}
        }
    }
    if n > stmt_start {
        out.push(stmt_start..n);
    }
    out
}

/// Does the statement starting at token `s` begin `CREATE [OR REPLACE] FUNCTION|PROCEDURE`?
fn is_create_routine(lexed: &Lexed, s: usize) -> bool {
    let routine = |i| lexed.is_word(i, "function") || lexed.is_word(i, "procedure");
    lexed.is_word(s, "create")
        && (routine(s + 1)
            || (lexed.is_word(s + 1, "or") && lexed.is_word(s + 2, "replace") && routine(s + 3)))
}

/// Replace tokens `start_tok..end_tok` with `replacement`; an empty range inserts before token
/// `start_tok` (or after the last token when `start_tok == len`).
///
/// Anchoring on token indices rather than bytes lets one edit list serve every statement of the
/// same shape. The replacement must be built from token texts and fixed SQL, never copied
/// from a literal of the statement the edits were computed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub start_tok: usize,
    pub end_tok: usize,
    pub replacement: String,
}

/// Could bytes `l` and `r`, written next to each other, become part of one token (or start a
/// comment)? Only whitespace and the characters that are always single tokens in Postgres
/// (`( ) , ; [ ]`) are safe neighbours.
fn could_fuse(l: u8, r: u8) -> bool {
    let safe =
        |c: u8| c.is_ascii_whitespace() || matches!(c, b'(' | b')' | b',' | b';' | b'[' | b']');
    !safe(l) && !safe(r)
}

/// Splice `edits` into the statement's original text. Every byte outside the edited token
/// ranges (whitespace, comments) is kept; a space is added where a replacement would otherwise
/// touch a neighbouring token, so it can never fuse with it (`-` + `-1` into a comment, `a` +
/// `b` into `ab`). Edits must be sorted and must not overlap.
///
/// The result must still be lexed, parsed and analysed again before it is forwarded.
pub fn apply_edits(lexed: &Lexed, edits: &[Edit]) -> Result<String, LexError> {
    let sql = lexed.sql;
    let n = lexed.len();
    let extra: usize = edits.iter().map(|e| e.replacement.len() + 2).sum();
    let mut out = String::with_capacity(sql.len() + extra);
    let mut copied_to = 0usize;
    let mut prev_end_tok = 0usize;
    for e in edits {
        if e.start_tok > e.end_tok || e.end_tok > n {
            return Err(LexError::InvalidEdit {
                what: "token range out of bounds",
            });
        }
        if e.start_tok < prev_end_tok {
            return Err(LexError::InvalidEdit {
                what: "edits overlap or are not sorted",
            });
        }
        prev_end_tok = e.end_tok;
        let (from, to) = if e.start_tok < e.end_tok {
            (
                lexed.tokens[e.start_tok].start,
                lexed.tokens[e.end_tok - 1].end,
            )
        } else if e.start_tok < n {
            let at = lexed.tokens[e.start_tok].start;
            (at, at)
        } else {
            let at = lexed.tokens.last().map_or(0, |t| t.end);
            (at, at)
        };
        if from < copied_to {
            // Two insertions at the same place: keep order, nothing to copy.
            return Err(LexError::InvalidEdit {
                what: "edits overlap or are not sorted",
            });
        }
        out.push_str(&sql[copied_to..from]);
        if let (Some(l), Some(r)) = (out.bytes().last(), e.replacement.bytes().next()) {
            if could_fuse(l, r) {
                out.push(' ');
            }
        }
        out.push_str(&e.replacement);
        if let (Some(l), Some(r)) = (out.bytes().last(), sql.as_bytes().get(to).copied()) {
            if could_fuse(l, r) {
                out.push(' ');
            }
        }
        copied_to = to;
    }
    out.push_str(&sql[copied_to..]);
    Ok(out)
}

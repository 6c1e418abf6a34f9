//! Statement shapes: the decision-cache key and the literal-free text written to logs.
//!
//! A shape is the token sequence of a statement with every literal (string of any kind,
//! number) replaced by `?`, unquoted words folded to lower case, quoted identifiers kept as
//! written, and single spaces between tokens. Two statements with the same shape have the same
//! tokens at the same indices apart from literal values, so token-anchored
//! [`Edit`](super::lexing::Edit)s computed for one apply to the other.
//!
//! The shape text is injective over token sequences (a literal renders as `?`, while the jsonb
//! operator `?` renders as `OPERATOR(?)`, which no single token can spell). Caches must key on
//! the text: the 64-bit [`Shape::fingerprint`] is FNV-1a, stable across runs and machines (it
//! goes to the audit log) but not collision resistant, so it must never be the only key.
//!
//! A shape erases literal values, so a decision may only be reused for another statement of the
//! same shape if it did not depend on a literal value (`'t'::regclass`, `set_config('...')`,
//! [`check_pinned_settings`](super::pinned::check_pinned_settings), ...). Those checks must
//! run on every statement.
//!
//! [`normalize_for_log`] never returns a literal, even for text that does not lex (security
//! rule 8).
//!
//! The decision cache keys on [`push_cache_key`], a finer rendering than the shape text: a
//! literal is `?` followed by a letter naming its kind, because some kinds are not
//! interchangeable to Postgres (`ORDER BY 2` names an output column, `ORDER BY '2'` is an
//! error). It is written into a caller's buffer, as bytes, so a lookup allocates only that.

use super::lexing::{lex, Lexed, StrKind, TokKind};

/// What a literal is rendered as.
pub const LITERAL_PLACEHOLDER: &str = "?";

/// How the operator `?` (jsonb key exists) is rendered, so it cannot be confused with a literal.
const QUESTION_OPERATOR: &str = "OPERATOR(?)";

/// The cache key of a statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Normalised text: literals → `?`, unquoted words lower-cased, single spaces.
    pub text: String,
    /// FNV-1a 64 of `text`: for logs and quick comparison, never a cache key on its own.
    pub fingerprint: u64,
    /// Indices (into [`Lexed::tokens`]) of the literal tokens, in order.
    pub literal_tokens: Vec<usize>,
}

/// The shape of a lexed statement.
pub fn shape(lexed: &Lexed) -> Shape {
    let mut text = String::with_capacity(lexed.sql.len());
    let mut literal_tokens = Vec::new();
    render(lexed, &mut text, Some(&mut literal_tokens));
    let fingerprint = fnv1a64(text.as_bytes());
    Shape {
        text,
        fingerprint,
        literal_tokens,
    }
}

/// Append the decision-cache key of `lexed` to `out`: the [`Shape::text`] rendering, except
/// that each literal is `?` plus a letter for its kind (`n` number, `s` standard string, `e`
/// `E'...'`, `N` national, `b` bit, `x` hex, `d` dollar-quoted).
///
/// Equal keys mean Postgres reads the same token sequence apart from literal *values*: every
/// non-literal token has the same kind and text (unquoted words up to ASCII case, which
/// Postgres folds), every literal the same kind. The rendering stays injective: tokens are
/// separated by one space and none contains a space except a quoted identifier, which is
/// self-delimiting; `?` plus a letter is no token's rendering (a word cannot start with `?`,
/// letters are not operator characters, the operator `?` renders as `OPERATOR(?)`).
///
/// Bytes rather than a `String`: this runs on every cache lookup, and byte pushes need no
/// char-boundary checks. The output is valid UTF-8 (token spans lie on char boundaries and
/// only ASCII bytes are changed or added).
pub fn push_cache_key(lexed: &Lexed, out: &mut Vec<u8>) {
    let sql = lexed.sql.as_bytes();
    for (i, tok) in lexed.tokens.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let text = sql.get(tok.start..tok.end).unwrap_or_default();
        match tok.kind {
            TokKind::String(_) | TokKind::Number => {
                out.push(b'?');
                out.push(literal_kind_letter(tok.kind));
            }
            TokKind::Word => out.extend(text.iter().map(u8::to_ascii_lowercase)),
            TokKind::Operator if text == b"?" => {
                out.extend_from_slice(QUESTION_OPERATOR.as_bytes())
            }
            TokKind::QuotedIdent
            | TokKind::Placeholder
            | TokKind::Operator
            | TokKind::Punct
            | TokKind::Semicolon => out.extend_from_slice(text),
        }
    }
}

/// The letter [`push_cache_key`] appends to a literal's `?`.
fn literal_kind_letter(kind: TokKind) -> u8 {
    match kind {
        TokKind::String(StrKind::Standard) => b's',
        TokKind::String(StrKind::Escape) => b'e',
        TokKind::String(StrKind::National) => b'N',
        TokKind::String(StrKind::Bit) => b'b',
        TokKind::String(StrKind::Hex) => b'x',
        TokKind::String(StrKind::Dollar) => b'd',
        _ => b'n',
    }
}

/// Append the normalised rendering of `lexed` to `out`.
fn render(lexed: &Lexed, out: &mut String, mut literals: Option<&mut Vec<usize>>) {
    let sql = lexed.sql;
    for (i, tok) in lexed.tokens.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let text = tok.text(sql);
        match tok.kind {
            TokKind::String(_) | TokKind::Number => {
                out.push_str(LITERAL_PLACEHOLDER);
                if let Some(l) = literals.as_deref_mut() {
                    l.push(i);
                }
            }
            // Postgres folds ASCII letters only; other characters stay as written.
            TokKind::Word => {
                let at = out.len();
                out.push_str(text);
                out[at..].make_ascii_lowercase();
            }
            TokKind::Operator if text == "?" => out.push_str(QUESTION_OPERATOR),
            TokKind::QuotedIdent
            | TokKind::Placeholder
            | TokKind::Operator
            | TokKind::Punct
            | TokKind::Semicolon => out.push_str(text),
        }
    }
}

/// FNV-1a, 64 bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SQL text safe to log: literals replaced by `?`, comments dropped. When the text does not
/// lex, a conservative redaction is returned instead (see [`redact_unlexable`]).
pub fn normalize_for_log(sql: &str) -> String {
    match lex(sql) {
        Ok(lexed) => {
            let mut out = String::with_capacity(sql.len());
            render(&lexed, &mut out, None);
            out
        }
        Err(_) => redact_unlexable(sql),
    }
}

/// Structure words kept by [`redact_unlexable`] after the first quote character, where it can
/// no longer tell literal text from SQL.
const STRUCTURE_WORDS: &[&str] = &[
    "all",
    "alter",
    "and",
    "as",
    "asc",
    "begin",
    "between",
    "by",
    "case",
    "commit",
    "copy",
    "create",
    "cross",
    "delete",
    "desc",
    "distinct",
    "do",
    "drop",
    "else",
    "end",
    "except",
    "exists",
    "explain",
    "false",
    "from",
    "full",
    "function",
    "group",
    "having",
    "in",
    "inner",
    "insert",
    "intersect",
    "into",
    "is",
    "join",
    "left",
    "like",
    "limit",
    "not",
    "null",
    "offset",
    "on",
    "or",
    "order",
    "outer",
    "prepare",
    "returning",
    "right",
    "rollback",
    "select",
    "set",
    "table",
    "then",
    "true",
    "union",
    "update",
    "using",
    "values",
    "when",
    "where",
    "with",
];

/// Redaction for text that does not lex. Before the first quote-like character (`'`, `"`, `$`,
/// `` ` ``, `\`) the text is plain SQL to any reader, so identifiers and keywords (ASCII words)
/// are kept; after it, quote pairing is uncertain, so only a fixed list of structure words
/// survives. Numbers, words with non-ASCII letters, quoted runs and comments always become `?`
/// or disappear.
pub fn redact_unlexable(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len().min(1024));
    let mut uncertain = false;
    let mut i = 0;
    let push = |out: &mut String, s: &str| {
        if s == LITERAL_PLACEHOLDER && out.ends_with(LITERAL_PLACEHOLDER) {
            return;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(s);
    };
    while i < b.len() {
        let c = b[i];
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = skip_to(b, i + 2, b"*/");
        } else if matches!(c, b'\'' | b'"' | b'`') {
            uncertain = true;
            push(&mut out, LITERAL_PLACEHOLDER);
            i = skip_to(b, i + 1, &[c]);
        } else if c == b'$' {
            uncertain = true;
            push(&mut out, LITERAL_PLACEHOLDER);
            // `$tag$`: skip to the closing delimiter (or the end); `$n`: skip the digits.
            let tag_end = b[i + 1..]
                .iter()
                .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_' || x >= 0x80))
                .map_or(b.len(), |p| i + 1 + p);
            if b.get(tag_end) == Some(&b'$') && tag_end - i <= 64 {
                let delim = &b[i..=tag_end];
                i = skip_to(b, tag_end + 1, delim);
            } else if b.get(tag_end) == Some(&b'$') {
                // Over-long tag: treat the rest as quoted (keeps this linear).
                i = b.len();
            } else {
                i = tag_end;
            }
        } else if c == b'\\' {
            uncertain = true;
            push(&mut out, LITERAL_PLACEHOLDER);
            i += 2;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
                i += 1;
            }
            let word = &sql[start..i];
            let lower = word.to_ascii_lowercase();
            let plain = !word.as_bytes()[0].is_ascii_digit() && word.is_ascii();
            if plain && (!uncertain || STRUCTURE_WORDS.contains(&lower.as_str())) {
                push(&mut out, &lower);
            } else {
                push(&mut out, LITERAL_PLACEHOLDER);
            }
        } else if c.is_ascii_punctuation() {
            let s = &sql[i..i + 1];
            push(&mut out, s);
            i += 1;
        } else {
            // Whitespace, controls.
            i += 1;
        }
    }
    out
}

/// Index just past the next occurrence of `delim` at or after `from` (or the end).
fn skip_to(b: &[u8], from: usize, delim: &[u8]) -> usize {
    if from >= b.len() {
        return b.len();
    }
    b[from..]
        .windows(delim.len())
        .position(|w| w == delim)
        .map_or(b.len(), |p| from + p + delim.len())
}

#[cfg(test)]
mod tests;

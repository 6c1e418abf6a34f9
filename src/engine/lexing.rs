//! TEMPORARY stand-in for the `lexing` branch (see /work/notes/lexing-api.md): the sqlparser
//! tokenizer with byte offsets, statement splitting and token-anchored edits. Replaced by the
//! real module on merge; it implements only what the engine needs and none of the
//! differential checks.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokKind {
    Word,
    QuotedIdent,
    String,
    Number,
    Placeholder,
    Operator,
    Punct,
    Semicolon,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tok {
    pub kind: TokKind,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone)]
pub struct Lexed<'a> {
    pub sql: &'a str,
    pub tokens: Vec<Tok>,
}

impl Lexed<'_> {
    pub fn text(&self, i: usize) -> &str {
        self.tokens
            .get(i)
            .map(|t| &self.sql[t.start..t.end])
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("cannot tokenize statement: {0}")]
    Tokenize(String),
    #[error("ambiguous construct: {what}")]
    Ambiguous { what: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Edit {
    pub start_tok: usize,
    pub end_tok: usize,
    pub replacement: String,
}

/// Maps parser locations (1-based line, 1-based character column) to byte offsets, walking
/// forward (tokens come in order).
struct Cursor<'a> {
    sql: &'a str,
    byte: usize,
    line: u64,
    col: u64,
}

impl Cursor<'_> {
    fn seek(&mut self, line: u64, col: u64) -> usize {
        if (line, col) < (self.line, self.col) {
            self.byte = 0;
            self.line = 1;
            self.col = 1;
        }
        while (self.line, self.col) < (line, col) {
            let Some(c) = self.sql[self.byte..].chars().next() else {
                break;
            };
            self.byte += c.len_utf8();
            if c == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
        }
        self.byte
    }
}

pub fn lex(sql: &str) -> Result<Lexed<'_>, LexError> {
    let dialect = PostgreSqlDialect {};
    let toks = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize_with_location()
        .map_err(|e| LexError::Tokenize(e.message))?;
    let mut cursor = Cursor {
        sql,
        byte: 0,
        line: 1,
        col: 1,
    };
    let mut tokens = Vec::new();
    for t in toks {
        let kind = match &t.token {
            Token::Whitespace(Whitespace::Space)
            | Token::Whitespace(Whitespace::Newline)
            | Token::Whitespace(Whitespace::Tab)
            | Token::Whitespace(_)
            | Token::EOF => continue,
            Token::Word(w) if w.quote_style.is_some() => TokKind::QuotedIdent,
            Token::Word(_) => TokKind::Word,
            Token::Number(..) => TokKind::Number,
            Token::Placeholder(_) => TokKind::Placeholder,
            Token::SemiColon => TokKind::Semicolon,
            Token::SingleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::UnicodeStringLiteral(_) => TokKind::String,
            Token::LParen | Token::RParen | Token::Comma | Token::Period => TokKind::Punct,
            _ => TokKind::Operator,
        };
        let start = cursor.seek(t.span.start.line, t.span.start.column);
        let end = cursor.seek(t.span.end.line, t.span.end.column);
        tokens.push(Tok { kind, start, end });
    }
    Ok(Lexed { sql, tokens })
}

pub fn split_statements(lexed: &Lexed) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, t) in lexed.tokens.iter().enumerate() {
        if t.kind == TokKind::Semicolon {
            if i > start {
                out.push(start..i);
            }
            start = i + 1;
        }
    }
    if start < lexed.tokens.len() {
        out.push(start..lexed.tokens.len());
    }
    out
}

pub fn apply_edits(lexed: &Lexed, edits: &[Edit]) -> String {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| (e.start_tok, e.end_tok));
    let pos = |i: usize| {
        lexed
            .tokens
            .get(i)
            .map(|t| t.start)
            .unwrap_or(lexed.sql.len())
    };
    let mut out = String::new();
    let mut cursor = 0;
    for e in sorted {
        let s = pos(e.start_tok);
        let end = if e.end_tok > e.start_tok {
            lexed
                .tokens
                .get(e.end_tok - 1)
                .map(|t| t.end)
                .unwrap_or(lexed.sql.len())
        } else {
            s
        };
        if s < cursor {
            continue;
        }
        out.push_str(&lexed.sql[cursor..s]);
        out.push_str(&e.replacement);
        cursor = end;
    }
    out.push_str(&lexed.sql[cursor..]);
    out
}

//! Refuses statements that could change the settings the proxy pins upstream.
//!
//! The lexer's agreement with Postgres holds only while `standard_conforming_strings = on` and
//! `client_encoding = UTF8` (DESIGN.md, "Known traps"): with the former off, `'\'` is an open
//! string to Postgres and a literal can swallow or expose a column. The proxy sets both in the
//! upstream startup packet, so `RESET` / `RESET ALL` / `DISCARD ALL` restore them (checked on
//! Postgres 15: startup values are the reset values). This module refuses, in any spelling,
//! every statement that could set them otherwise:
//!
//! - any identifier naming a pinned parameter (`SET`, `SET LOCAL`, `SET SESSION`, `RESET`,
//!   `ALTER SYSTEM|ROLE|DATABASE ... SET`, `CREATE|ALTER FUNCTION ... SET`, quoted and in any
//!   case: Postgres looks GUC names up case-insensitively, even quoted ones), except the
//!   read-only `SHOW <name>`;
//! - `SET [LOCAL|SESSION] NAMES ...` (sets `client_encoding`), also as a clause of
//!   `ALTER ROLE ... SET NAMES`;
//! - `set_config(...)` unless its first argument is a plain string literal naming another
//!   parameter;
//! - writes to `pg_settings` (its update rule calls `set_config`);
//! - any string literal (any kind, escapes decoded) mentioning a pinned parameter, except as
//!   the first argument of `current_setting(...)`: SQL hidden in strings (DO bodies, function
//!   bodies, prepared text) is refused rather than analysed here.
//!
//! This check depends on literal values, so it must run on every statement, never be served
//! from a cache keyed by [`shape`](super::shape).

use std::fmt;

use super::lexing::{split_statements, Lexed, TokKind};

/// A setting the proxy pins upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedParam {
    StandardConformingStrings,
    ClientEncoding,
}

impl PinnedParam {
    /// All pinned parameters.
    pub const ALL: [PinnedParam; 2] = [
        PinnedParam::StandardConformingStrings,
        PinnedParam::ClientEncoding,
    ];

    /// The parameter's name as Postgres spells it.
    pub fn name(self) -> &'static str {
        match self {
            PinnedParam::StandardConformingStrings => "standard_conforming_strings",
            PinnedParam::ClientEncoding => "client_encoding",
        }
    }
}

impl fmt::Display for PinnedParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The construct through which a statement could change a pinned setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedConstruct {
    /// `SET [LOCAL|SESSION] <param>`, also `ALTER ... SET <param>` and function `SET` clauses.
    Set,
    /// `RESET <param>` (and `ALTER ... RESET <param>`).
    Reset,
    /// `SET NAMES`.
    SetNames,
    /// Any other use of the parameter's name as an identifier.
    Identifier,
    /// `set_config('<param>', ...)`.
    SetConfig,
    /// `set_config(...)` whose first argument is not a plain string literal.
    SetConfigDynamic,
    /// `UPDATE`/`INSERT`/`DELETE`/`MERGE`/DDL on `pg_settings`.
    PgSettingsWrite,
    /// A string literal that mentions the parameter (SQL hidden in a string).
    StringLiteral,
}

impl fmt::Display for PinnedConstruct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PinnedConstruct::Set => "SET",
            PinnedConstruct::Reset => "RESET",
            PinnedConstruct::SetNames => "SET NAMES",
            PinnedConstruct::Identifier => "a reference to the setting",
            PinnedConstruct::SetConfig => "set_config()",
            PinnedConstruct::SetConfigDynamic => "set_config() with a computed setting name",
            PinnedConstruct::PgSettingsWrite => "a write to pg_settings",
            PinnedConstruct::StringLiteral => "a string literal naming the setting",
        })
    }
}

/// A statement that could change a pinned setting. Carries no statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinnedSettingError {
    #[error("{construct} could change {param}, which the proxy pins (offset {offset})")]
    Pinned {
        param: PinnedParam,
        construct: PinnedConstruct,
        offset: usize,
    },
    #[error("{construct} could change a pinned setting (offset {offset})")]
    Unknown {
        construct: PinnedConstruct,
        offset: usize,
    },
}

/// Refuse statements that could change `standard_conforming_strings` or `client_encoding`.
pub fn check_pinned_settings(lexed: &Lexed) -> Result<(), PinnedSettingError> {
    for range in split_statements(lexed) {
        check_statement(lexed, range.start, range.end)?;
    }
    Ok(())
}

/// The pinned parameter a GUC name denotes (case-insensitive, as Postgres's `guc_name_compare`).
fn pinned_name(name: &str) -> Option<PinnedParam> {
    PinnedParam::ALL
        .into_iter()
        .find(|p| name.eq_ignore_ascii_case(p.name()))
}

/// The first pinned parameter mentioned anywhere in `text` (ASCII case-insensitive).
fn mentions_pinned(text: &str) -> Option<PinnedParam> {
    PinnedParam::ALL
        .into_iter()
        .find(|p| contains_ignore_ascii_case(text.as_bytes(), p.name().as_bytes()))
}

fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

fn is_ident(lexed: &Lexed, i: usize) -> bool {
    matches!(lexed.kind(i), Some(TokKind::Word | TokKind::QuotedIdent))
}

/// An identifier's name without case folding: a word as written, a quoted identifier dequoted.
fn unfolded_name<'a>(lexed: &Lexed<'a>, i: usize) -> Option<std::borrow::Cow<'a, str>> {
    match lexed.kind(i)? {
        TokKind::Word => Some(std::borrow::Cow::Borrowed(lexed.text(i))),
        TokKind::QuotedIdent => lexed.ident_value(i),
        _ => None,
    }
}

/// Identifier `i` denotes `name`, compared case-insensitively (fail closed: also catches
/// `"SET_CONFIG"`, which Postgres would not resolve to the function).
fn ident_is(lexed: &Lexed, i: usize, name: &str) -> bool {
    lexed
        .ident_value(i)
        .is_some_and(|v| v.eq_ignore_ascii_case(name))
}

fn check_statement(lexed: &Lexed, s: usize, e: usize) -> Result<(), PinnedSettingError> {
    // `SHOW <param>` only reads the setting.
    if e - s == 2 && lexed.is_word(s, "show") && is_ident(lexed, s + 1) {
        return Ok(());
    }
    let word_at = |i: usize, w: &str| i >= s && i < e && lexed.is_word(i, w);
    let mut mentions_settings_view = false;
    let mut writes = false;
    for i in s..e {
        let offset = lexed.tokens[i].start;
        match lexed.tokens[i].kind {
            TokKind::Word | TokKind::QuotedIdent => {
                // Every comparison below ignores ASCII case, so the unfolded name will do (and
                // saves an allocation per upper-case keyword).
                let Some(name) = unfolded_name(lexed, i) else {
                    continue;
                };
                if let Some(param) = pinned_name(&name) {
                    let prev = i.checked_sub(1);
                    let construct = match prev {
                        Some(p) if word_at(p, "reset") => PinnedConstruct::Reset,
                        Some(p)
                            if word_at(p, "set")
                                || word_at(p, "local")
                                || word_at(p, "session") =>
                        {
                            PinnedConstruct::Set
                        }
                        _ => PinnedConstruct::Identifier,
                    };
                    return Err(PinnedSettingError::Pinned {
                        param,
                        construct,
                        offset,
                    });
                }
                if lexed.kind(i) == Some(TokKind::Word)
                    && name.eq_ignore_ascii_case("names")
                    && is_set_names(lexed, s, e, i)
                {
                    return Err(PinnedSettingError::Pinned {
                        param: PinnedParam::ClientEncoding,
                        construct: PinnedConstruct::SetNames,
                        offset,
                    });
                }
                if name.eq_ignore_ascii_case("set_config") && lexed.text(i + 1) == "(" && i + 1 < e
                {
                    check_set_config(lexed, i + 2, e)?;
                }
                if name.eq_ignore_ascii_case("pg_settings") {
                    mentions_settings_view = true;
                }
                if lexed.kind(i) == Some(TokKind::Word)
                    && ["update", "insert", "delete", "merge", "create", "alter"]
                        .iter()
                        .any(|w| name.eq_ignore_ascii_case(w))
                {
                    writes = true;
                }
            }
            TokKind::String(_) => {
                let value = lexed.string_value(i);
                let found = value
                    .as_deref()
                    .and_then(mentions_pinned)
                    .or_else(|| mentions_pinned(lexed.text(i)));
                if let Some(param) = found {
                    if !is_current_setting_arg(lexed, s, e, i) {
                        return Err(PinnedSettingError::Pinned {
                            param,
                            construct: PinnedConstruct::StringLiteral,
                            offset,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    if mentions_settings_view && writes {
        return Err(PinnedSettingError::Unknown {
            construct: PinnedConstruct::PgSettingsWrite,
            offset: lexed.tokens[s].start,
        });
    }
    Ok(())
}

/// `SET NAMES`, `SET LOCAL NAMES`, `SET SESSION NAMES` (also as an `ALTER ROLE ... SET`
/// clause), but not `UPDATE t SET names = ...` (a column called `names`).
fn is_set_names(lexed: &Lexed, s: usize, e: usize, i: usize) -> bool {
    let Some(p) = i.checked_sub(1).filter(|&p| p >= s) else {
        return false;
    };
    let after_set =
        lexed.is_word(p, "set") || lexed.is_word(p, "local") || lexed.is_word(p, "session");
    let next = if i + 1 < e { lexed.text(i + 1) } else { "" };
    after_set && !matches!(next, "=" | "." | "[" | "(" | ",")
}

/// `set_config(` was seen; `a` is the index of the first argument's first token.
fn check_set_config(lexed: &Lexed, a: usize, e: usize) -> Result<(), PinnedSettingError> {
    let offset = lexed.tokens.get(a).map_or(lexed.sql.len(), |t| t.start);
    let plain = matches!(lexed.kind(a), Some(TokKind::String(_)))
        && a + 1 < e
        && matches!(lexed.text(a + 1), "," | ")");
    if !plain {
        return Err(PinnedSettingError::Unknown {
            construct: PinnedConstruct::SetConfigDynamic,
            offset,
        });
    }
    let Some(value) = lexed.string_value(a) else {
        return Err(PinnedSettingError::Unknown {
            construct: PinnedConstruct::SetConfigDynamic,
            offset,
        });
    };
    match mentions_pinned(&value) {
        Some(param) => Err(PinnedSettingError::Pinned {
            param,
            construct: PinnedConstruct::SetConfig,
            offset,
        }),
        None => Ok(()),
    }
}

/// Literal `i` is exactly the first argument of `current_setting(...)` (read-only).
fn is_current_setting_arg(lexed: &Lexed, s: usize, e: usize, i: usize) -> bool {
    i >= s + 2
        && i + 1 < e
        && lexed.text(i - 1) == "("
        && ident_is(lexed, i - 2, "current_setting")
        && matches!(lexed.text(i + 1), ")" | ",")
}

#[cfg(test)]
mod tests;

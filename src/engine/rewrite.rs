//! Rewrites as token-anchored edits of the client's original text (never the parser's
//! `Display`): masks replace a bare output item (or expand a `*`), row filters wrap a scan in
//! `(SELECT * FROM t WHERE (f)) AS alias`, inline a view's definition with its scans wrapped,
//! add the filter to an UPDATE / DELETE WHERE, or turn `COPY t TO` into `COPY (SELECT ...) TO`.
//! Inserted text is built here only from policy and catalog facts, identifiers always quoted.
//! The caller re-analyses the result and blocks unless it comes out allowed.

use crate::engine::analyse::views::{filter_condition, filter_expr, ViewInfo};
use crate::engine::analyse::{quote_ident, ByteRange, Env, Scan, SlotTarget, StatementAnalysis};
use crate::engine::decide::{scan_needs_filter, Plan};
use crate::engine::lexing::{self, Edit, Lexed, TokKind};

/// Why a rewrite could not be built (the statement is then blocked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("a rewrite position does not fall on token boundaries")]
    Position,
    #[error("rewrite edits overlap")]
    Overlap,
    #[error("view {0} cannot be inlined: {1}")]
    View(String, String),
    #[error("row filter cannot be added: {0}")]
    Filter(String),
}

/// Token indices `[start, end)` covering exactly the byte range (offset by `base`).
pub fn token_span(
    lexed: &Lexed,
    base: usize,
    r: ByteRange,
) -> Result<(usize, usize), RewriteError> {
    let (s, e) = (r.0 + base, r.1 + base);
    // Tokens are in text order: a binary search keeps many edits (a select list of thousands
    // of masked columns) from costing quadratic time.
    let start = lexed
        .tokens
        .binary_search_by_key(&s, |t| t.start)
        .map_err(|_| RewriteError::Position)?;
    let last = lexed.tokens[start..]
        .iter()
        .position(|t| t.end == e)
        .ok_or(RewriteError::Position)?;
    Ok((start, start + last + 1))
}

fn mask_text(type_name: &str, name: &str) -> String {
    format!("NULL::{type_name} AS {}", quote_ident(name))
}

/// The filter condition of a table for the session's purpose, refused unless every filter is
/// one self-contained expression.
fn condition(env: &Env<'_>, table: &crate::catalog::QualifiedName) -> Result<String, RewriteError> {
    let filters = env.policy.row_filters(table, env.purpose);
    if filter_expr(&filters).is_none() {
        return Err(RewriteError::Filter(format!(
            "the row filter of {table} is not a single SQL expression"
        )));
    }
    Ok(filter_condition(&filters))
}

fn filtered_scan_text(s: &Scan, env: &Env<'_>) -> Result<String, RewriteError> {
    Ok(format!(
        "(SELECT * FROM {}.{} WHERE {})",
        quote_ident(&s.relation.schema),
        quote_ident(&s.relation.name),
        condition(env, &s.relation)?
    ))
}

/// The replacement for a scan that needs a filter: the wrapped table or the inlined view,
/// followed by an alias when the original had none.
fn scan_replacement(s: &Scan, env: &Env<'_>) -> Result<String, RewriteError> {
    let body = match &s.view {
        None => filtered_scan_text(s, env)?,
        Some(v) => format!("({})", inline_view(v, env)?),
    };
    Ok(match &s.alias {
        Some(_) => body,
        None => format!("{body} AS {}", quote_ident(&s.refname)),
    })
}

/// A view's definition with every scan inside it that needs a filter rewritten.
pub fn inline_view(v: &ViewInfo, env: &Env<'_>) -> Result<String, RewriteError> {
    let names: Vec<&str> = v.columns.iter().map(|c| c.name.as_str()).collect();
    if v.output_names
        .iter()
        .map(String::as_str)
        .ne(names.iter().copied())
    {
        return Err(RewriteError::View(
            v.name.to_string(),
            "its definition names its columns differently".into(),
        ));
    }
    let lexed =
        lexing::lex(&v.text).map_err(|e| RewriteError::View(v.name.to_string(), e.to_string()))?;
    let mut edits = Vec::new();
    for s in &v.scans {
        if !scan_needs_filter(s, env) {
            continue;
        }
        if s.unwrappable.is_some() {
            return Err(RewriteError::View(v.name.to_string(), "TABLESAMPLE".into()));
        }
        let (a, b) = token_span(&lexed, 0, s.name_range)?;
        edits.push(Edit {
            start_tok: a,
            end_tok: b,
            replacement: scan_replacement(s, env)?,
        });
    }
    check_overlap(&mut edits)?;
    lexing::apply_edits(&lexed, &edits)
        .map_err(|e| RewriteError::View(v.name.to_string(), e.to_string()))
}

fn check_overlap(edits: &mut [Edit]) -> Result<(), RewriteError> {
    edits.sort_by_key(|e| (e.start_tok, e.end_tok));
    for w in edits.windows(2) {
        if w[1].start_tok < w[0].end_tok {
            return Err(RewriteError::Overlap);
        }
    }
    Ok(())
}

fn is_word(lexed: &Lexed, i: usize, w: &str) -> bool {
    lexed.tokens.get(i).is_some_and(|t| {
        t.kind == TokKind::Word && lexed.sql[t.start..t.end].eq_ignore_ascii_case(w)
    })
}

fn is_punct(lexed: &Lexed, i: usize, p: &str) -> bool {
    lexed
        .tokens
        .get(i)
        .is_some_and(|t| &lexed.sql[t.start..t.end] == p)
}

/// Add the row filter to the WHERE of the UPDATE / DELETE starting at byte `start`.
fn where_edits(lexed: &Lexed, start: usize, cond: &str) -> Result<Vec<Edit>, RewriteError> {
    let first = lexed
        .tokens
        .iter()
        .position(|t| t.start == start)
        .ok_or(RewriteError::Position)?;
    let mut depth = 0i32;
    let mut end = lexed.tokens.len();
    let mut where_at = None;
    let mut returning_at = None;
    for i in first..lexed.tokens.len() {
        if is_punct(lexed, i, "(") {
            depth += 1;
        } else if is_punct(lexed, i, ")") {
            depth -= 1;
            if depth < 0 {
                end = i;
                break;
            }
        } else if depth == 0 {
            if lexed.tokens[i].kind == TokKind::Semicolon {
                end = i;
                break;
            }
            if is_word(lexed, i, "where") && where_at.is_none() {
                where_at = Some(i);
            }
            if is_word(lexed, i, "returning") {
                returning_at = Some(i);
            }
        }
    }
    let tail = returning_at.unwrap_or(end);
    let at_returning = returning_at.is_some();
    match where_at {
        Some(w) => {
            if is_word(lexed, w + 1, "current") && is_word(lexed, w + 2, "of") {
                return Err(RewriteError::Filter("WHERE CURRENT OF".into()));
            }
            let close = if at_returning {
                format!(") AND ({cond}) ")
            } else {
                format!(") AND ({cond})")
            };
            Ok(vec![
                Edit {
                    start_tok: w + 1,
                    end_tok: w + 1,
                    replacement: "(".into(),
                },
                Edit {
                    start_tok: tail,
                    end_tok: tail,
                    replacement: close,
                },
            ])
        }
        None => Ok(vec![Edit {
            start_tok: tail,
            end_tok: tail,
            replacement: if at_returning {
                format!("WHERE {cond} ")
            } else {
                format!(" WHERE {cond}")
            },
        }]),
    }
}

/// Build the edits for one statement whose text starts at byte `base` of the lexed SQL.
pub fn build_edits(
    lexed: &Lexed,
    base: usize,
    a: &StatementAnalysis,
    plan: &Plan,
    env: &Env<'_>,
) -> Result<Vec<Edit>, RewriteError> {
    let mut edits = Vec::new();
    // Masks of bare items.
    for &s in &plan.masks {
        let Some(slot) = a.slots.get(s) else { continue };
        if let (SlotTarget::Item(r), Some(t)) = (&slot.target, &slot.mask_type) {
            let (x, y) = token_span(lexed, base, *r)?;
            edits.push(Edit {
                start_tok: x,
                end_tok: y,
                replacement: mask_text(t, &slot.name),
            });
        }
    }
    // `*` expansions that contain a masked column.
    for g in &a.star_groups {
        if !g.columns.iter().any(|(_, _, s)| plan.masks.contains(s)) {
            continue;
        }
        let mut parts = Vec::new();
        for (q, name, s) in &g.columns {
            let slot = a.slots.get(*s).ok_or(RewriteError::Position)?;
            if plan.masks.contains(s) {
                let t = slot.mask_type.as_deref().ok_or(RewriteError::Position)?;
                parts.push(mask_text(t, &slot.name));
            } else {
                match q {
                    Some(q) => parts.push(format!("{}.{}", quote_ident(q), quote_ident(name))),
                    None => parts.push(quote_ident(name)),
                }
            }
        }
        let (x, y) = token_span(lexed, base, g.range)?;
        edits.push(Edit {
            start_tok: x,
            end_tok: y,
            replacement: parts.join(", "),
        });
    }
    // Row filters on scans (tables wrapped, views inlined).
    for s in &plan.scans {
        let (x, y) = token_span(lexed, base, s.name_range)?;
        edits.push(Edit {
            start_tok: x,
            end_tok: y,
            replacement: scan_replacement(s, env)?,
        });
    }
    // Row filters on UPDATE / DELETE targets.
    for w in &plan.writes {
        let filters = env.policy.row_filters(&w.relation, env.purpose);
        edits.extend(where_edits(
            lexed,
            base + w.stmt_start,
            &filter_condition(&filters),
        )?);
    }
    // COPY table TO -> COPY (SELECT ...) TO.
    if plan.copy {
        if let Some(c) = &a.copy {
            let cols: Vec<String> = c
                .columns
                .iter()
                .map(|(name, s)| {
                    let slot = a.slots.get(*s);
                    match (
                        plan.masks.contains(s),
                        slot.and_then(|x| x.mask_type.as_deref()),
                    ) {
                        (true, Some(t)) => Ok(mask_text(t, name)),
                        (true, None) => Err(RewriteError::Position),
                        (false, _) => Ok(quote_ident(name)),
                    }
                })
                .collect::<Result<_, _>>()?;
            let filters = env.policy.row_filters(&c.relation, env.purpose);
            let from = if filters.is_empty() {
                format!(
                    "{}.{}",
                    quote_ident(&c.relation.schema),
                    quote_ident(&c.relation.name)
                )
            } else {
                format!(
                    "(SELECT * FROM {}.{} WHERE {}) AS {}",
                    quote_ident(&c.relation.schema),
                    quote_ident(&c.relation.name),
                    condition(env, &c.relation)?,
                    quote_ident(&c.relation.name)
                )
            };
            let (x, y) = token_span(lexed, base, c.range)?;
            edits.push(Edit {
                start_tok: x,
                end_tok: y,
                replacement: format!("(SELECT {} FROM {from})", cols.join(", ")),
            });
        }
    }
    check_overlap(&mut edits)?;
    Ok(edits)
}

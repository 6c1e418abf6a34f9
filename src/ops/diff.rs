//! `pgpurpose diff OLD NEW`: which statements change decision between two policy versions.
//!
//! The statements come from policy test files (their service, purpose and SQL; the expected
//! decision is ignored) and/or from audit logs (every distinct service, purpose and statement
//! fingerprint of the log's statement records). Each is decided under both policies against
//! the same catalog snapshot; a statement is listed when the decision kind, the forwarded
//! rewrite or the block's SQLSTATE changes.
//!
//! # Statements from an audit log
//!
//! The audit log never holds literal values: its SQL is normalised with every literal replaced
//! by `?` (the jsonb operator `?` is written `OPERATOR(?)`, so a bare `?` token is always a
//! literal). To re-decide such a statement each placeholder is replaced by the string literal
//! `'0'`, of unknown type, which Postgres and the engine accept wherever a literal may stand
//! (`= '0'`, `LIMIT '0'`, `interval '0'`, `VALUES ('0')`). Limits: a decision that depended on
//! a literal's value (an `ORDER BY 2` ordinal, `set_config('name', ...)`, `'t'::regclass`) may
//! come out differently from the original; such statements are marked *approximate* when the
//! engine reports it. Statements the proxy refused before deciding (unlexable text) cannot be
//! replayed and are skipped, as are records of connections and other events.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::audit::record::{parse_line, Event};
use crate::catalog::Catalog;
use crate::engine::lexing::{lex, TokKind};
use crate::engine::{Decision, SessionView};
use crate::policy::CompiledPolicy;

use super::explain::short_version;
use super::policytest::{self, summary};
use super::{session_for, OpsError, Outcome, Status};

/// One statement to re-decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub service: String,
    pub purpose: Option<String>,
    pub sql: String,
    /// Where it came from, for the report.
    pub origin: String,
}

/// The statements of policy test files (one per case).
pub fn statements_from_tests(files: &[PathBuf]) -> Result<Vec<Statement>, OpsError> {
    let mut out = Vec::new();
    for (path, cases) in policytest::load_cases(files)? {
        for case in cases {
            out.push(Statement {
                service: case.service,
                purpose: case.purpose,
                sql: case.sql,
                origin: format!("{}: {}", path.display(), case.name),
            });
        }
    }
    Ok(out)
}

/// What reading audit logs produced.
#[derive(Debug, Default)]
pub struct AuditStatements {
    pub statements: Vec<Statement>,
    /// Lines that were not audit records (e.g. a torn last line after a crash).
    pub unreadable_lines: usize,
}

/// The distinct (service, purpose, fingerprint) statements of audit log files (a directory
/// stands for its files, in name order), with their placeholders replaced (module docs).
pub fn statements_from_audit(paths: &[PathBuf]) -> Result<AuditStatements, OpsError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| OpsError::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    // Keyed so the report is in a stable order and each statement appears once.
    let mut seen: BTreeMap<(String, String, String), (Statement, u64)> = BTreeMap::new();
    let mut result = AuditStatements::default();
    for file in files {
        // Streamed: audit logs can be far larger than memory.
        let io_error = |e: std::io::Error| OpsError::File {
            path: file.clone(),
            message: e.to_string(),
        };
        let reader = std::io::BufReader::new(std::fs::File::open(&file).map_err(io_error)?);
        for line in std::io::BufRead::lines(reader) {
            let line = match line {
                Ok(l) => l,
                // Not UTF-8 (a torn multi-byte write): not a record.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    result.unreadable_lines += 1;
                    continue;
                }
                Err(e) => return Err(io_error(e)),
            };
            let line = line.as_str();
            if line.trim().is_empty() {
                continue;
            }
            let Ok((record, _)) = parse_line(line) else {
                result.unreadable_lines += 1;
                continue;
            };
            let Event::Statement(st) = record.event else {
                continue;
            };
            let key = (
                st.service.clone(),
                st.purpose.clone(),
                st.fingerprint.clone(),
            );
            if let Some((_, count)) = seen.get_mut(&key) {
                *count += 1;
                continue;
            }
            let Some(sql) = placeholders_to_literals(&st.sql) else {
                continue;
            };
            seen.insert(
                key,
                (
                    Statement {
                        service: st.service,
                        purpose: Some(st.purpose),
                        sql,
                        origin: format!("audit fingerprint {}", st.fingerprint),
                    },
                    1,
                ),
            );
        }
    }
    result.statements = seen
        .into_values()
        .map(|(mut s, count)| {
            if count > 1 {
                s.origin.push_str(&format!(" ({count} records)"));
            }
            s
        })
        .collect();
    Ok(result)
}

/// Replace every literal placeholder `?` of normalised SQL by `'0'` (`OPERATOR(?)` is kept);
/// `None` when the text does not lex (it was redacted, not normalised).
pub fn placeholders_to_literals(normalised: &str) -> Option<String> {
    let lexed = lex(normalised).ok()?;
    let mut out = String::with_capacity(normalised.len() + 16);
    let mut last = 0;
    for (i, tok) in lexed.tokens.iter().enumerate() {
        let text = tok.text(normalised);
        if tok.kind != TokKind::Operator || text != "?" {
            continue;
        }
        let after_operator_paren = i >= 2
            && lexed.tokens[i - 1].text(normalised) == "("
            && lexed.tokens[i - 2]
                .text(normalised)
                .eq_ignore_ascii_case("operator");
        if after_operator_paren {
            continue;
        }
        out.push_str(&normalised[last..tok.start]);
        out.push_str("'0'");
        last = tok.end;
    }
    out.push_str(&normalised[last..]);
    Some(out)
}

/// What a statement came out as under one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Result_ {
    Decided {
        kind: &'static str,
        rewrite: Option<String>,
        sqlstate: Option<&'static str>,
        summary: String,
        approximate: bool,
    },
    /// The service or purpose is not in this policy.
    NoSession(String),
}

impl Result_ {
    fn same_decision(&self, other: &Result_) -> bool {
        match (self, other) {
            (
                Result_::Decided {
                    kind: a,
                    rewrite: ra,
                    sqlstate: sa,
                    ..
                },
                Result_::Decided {
                    kind: b,
                    rewrite: rb,
                    sqlstate: sb,
                    ..
                },
            ) => a == b && ra == rb && sa == sb,
            (Result_::NoSession(_), Result_::NoSession(_)) => true,
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Result_::Decided {
                summary, rewrite, ..
            } => match rewrite {
                Some(sql) => format!("{summary}\n      rewritten to: {sql}"),
                None => summary.clone(),
            },
            Result_::NoSession(why) => format!("no session: {why}"),
        }
    }
}

fn decide(st: &Statement, policy: &CompiledPolicy, catalog: &Catalog) -> Result_ {
    let (service, purpose) = match session_for(policy, &st.service, st.purpose.as_deref()) {
        Ok(found) => found,
        Err(why) => return Result_::NoSession(why),
    };
    let decision = crate::engine::decide(
        &st.sql,
        catalog,
        policy,
        &SessionView {
            service,
            purpose: &purpose,
        },
    );
    Result_::Decided {
        kind: super::explain::decision_word(&decision),
        rewrite: match &decision {
            Decision::Rewrite { sql, .. } => Some(sql.clone()),
            _ => None,
        },
        sqlstate: match &decision {
            Decision::Block { error, .. } => Some(error.code),
            _ => None,
        },
        summary: summary(&decision),
        approximate: decision.report().literal_sensitive,
    }
}

/// Decide every statement under both policies and list those whose decision changes.
/// [`Status::Findings`] when at least one changes (like `diff(1)`).
pub fn diff(
    old: (&Path, &CompiledPolicy),
    new: (&Path, &CompiledPolicy),
    catalog: &Catalog,
    statements: &[Statement],
) -> Outcome {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "old: {} (version {})",
        old.0.display(),
        short_version(&old.1.version)
    );
    let _ = writeln!(
        out,
        "new: {} (version {})",
        new.0.display(),
        short_version(&new.1.version)
    );
    let mut changed = 0usize;
    for st in statements {
        let before = decide(st, old.1, catalog);
        let after = decide(st, new.1, catalog);
        if before.same_decision(&after) {
            continue;
        }
        changed += 1;
        let approximate = [&before, &after].iter().any(|r| {
            matches!(
                r,
                Result_::Decided {
                    approximate: true,
                    ..
                }
            )
        });
        let _ = writeln!(out, "\n{}", st.origin);
        let _ = writeln!(
            out,
            "  service {}{}: {}",
            st.service,
            st.purpose
                .as_deref()
                .map(|p| format!(" (purpose {p})"))
                .unwrap_or_default(),
            st.sql.trim()
        );
        let _ = writeln!(out, "  - old: {}", before.describe());
        let _ = writeln!(out, "  + new: {}", after.describe());
        if approximate {
            let _ = writeln!(
                out,
                "  (approximate: the decision depends on a literal's value, which the audit log \
                 does not keep)"
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{changed} of {} statements change decision",
        statements.len()
    );
    Outcome {
        status: if changed > 0 {
            Status::Findings
        } else {
            Status::Clean
        },
        text: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_literals_but_the_jsonb_operator_stays() {
        assert_eq!(
            placeholders_to_literals("select id from users where id = ? limit ?").as_deref(),
            Some("select id from users where id = '0' limit '0'")
        );
        assert_eq!(
            placeholders_to_literals("select d OPERATOR(?) ? from t").as_deref(),
            Some("select d OPERATOR(?) '0' from t")
        );
        assert_eq!(
            placeholders_to_literals("select interval ? , $1 from t").as_deref(),
            Some("select interval '0' , $1 from t")
        );
    }

    fn example() -> (CompiledPolicy, Catalog) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        (
            crate::policy::load_dir(&root.join("policies")).unwrap(),
            crate::catalog::snapshot_file::load(&root.join("examples/catalog.json")).unwrap(),
        )
    }

    #[test]
    fn a_new_tag_changes_only_the_statements_it_touches() {
        let (old, catalog) = example();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sources = Vec::new();
        for f in ["purposes.yaml", "services.yaml", "tables.yaml"] {
            let path = root.join("policies").join(f);
            let mut text = std::fs::read_to_string(&path).unwrap();
            if f == "tables.yaml" {
                // Tag display_name for security only: analytics and ads lose it.
                text = text.replace(
                    "      email_login: [security]\n",
                    "      email_login: [security]\n      display_name: [security]\n",
                );
            }
            sources.push((path, text));
        }
        let new = crate::policy::load_sources(&sources).unwrap();
        let statements = vec![
            Statement {
                service: "analytics-service".into(),
                purpose: None,
                sql: "SELECT country, count(*) FROM users GROUP BY country".into(),
                origin: "unchanged".into(),
            },
            Statement {
                service: "analytics-service".into(),
                purpose: None,
                sql: "SELECT display_name FROM users".into(),
                origin: "masked now".into(),
            },
            Statement {
                service: "analytics-service".into(),
                purpose: None,
                sql: "SELECT id FROM users ORDER BY display_name".into(),
                origin: "blocked now".into(),
            },
        ];
        let out = diff(
            (Path::new("old"), &old),
            (Path::new("new"), &new),
            &catalog,
            &statements,
        );
        assert_eq!(out.status, Status::Findings, "{}", out.text);
        assert!(
            out.text.contains("2 of 3 statements change decision"),
            "{}",
            out.text
        );
        assert!(!out.text.contains("\nunchanged\n"), "{}", out.text);
        assert!(out.text.contains("\nmasked now\n"), "{}", out.text);
        assert!(out.text.contains("  - old: ALLOW"), "{}", out.text);
        assert!(
            out.text.contains(
                "  + new: BLOCK (forbidden column public.users.display_name in ORDER BY)"
            ),
            "{}",
            out.text
        );
        let same = diff(
            (Path::new("old"), &old),
            (Path::new("old"), &old),
            &catalog,
            &statements,
        );
        assert_eq!(same.status, Status::Clean);
        assert!(same.text.contains("0 of 3 statements change decision"));
    }
}

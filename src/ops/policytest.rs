//! `pgpurpose test`: policy tests, so a policy change is reviewed like code.
//!
//! Test files are YAML lists that sit next to the policies (by default `policies/tests/*.yaml`;
//! the policy loader does not descend into sub-directories, so they are never read as policy):
//!
//! ```yaml
//! - name: ads-service cannot join on the 2FA phone
//!   service: ads-service
//!   purpose: advertising          # optional when the service has one purpose
//!   sql: SELECT count(*) FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa
//!   expect: block                 # allow | rewrite | block
//!   rule: forbidden column public.users.phone_2fa   # optional: substring of the deciding rule
//!   message_contains: phone_2fa   # optional: substring of the block message
//!   rewritten: SELECT ...         # optional: the exact SQL a rewrite forwards
//! ```
//!
//! Unknown keys are errors (a misspelt `rewriten:` must not silently test nothing). A failing
//! case prints the expected and actual decision as a `-`/`+` diff, with the first differing
//! character of a rewrite marked.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::Catalog;
use crate::engine::{self, Decision, Report, Rule, SessionView};
use crate::policy::CompiledPolicy;

use super::explain::decision_word;
use super::{read_text, session_for, OpsError, Outcome, Status};

/// The expected decision of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Rewrite,
    Block,
}

impl Expect {
    pub fn word(self) -> &'static str {
        match self {
            Expect::Allow => "ALLOW",
            Expect::Rewrite => "REWRITE",
            Expect::Block => "BLOCK",
        }
    }

    pub fn of(decision: &Decision) -> Expect {
        match decision {
            Decision::Allow(_) => Expect::Allow,
            Decision::Rewrite { .. } => Expect::Rewrite,
            Decision::Block { .. } => Expect::Block,
        }
    }
}

/// One policy test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    pub service: String,
    #[serde(default)]
    pub purpose: Option<String>,
    pub sql: String,
    pub expect: Expect,
    /// Exact SQL forwarded by a rewrite (surrounding whitespace ignored).
    #[serde(default)]
    pub rewritten: Option<String>,
    /// Substring of the deciding rule as `explain` prints it.
    #[serde(default)]
    pub rule: Option<String>,
    /// Substring of the block message.
    #[serde(default)]
    pub message_contains: Option<String>,
}

/// Parse a test file.
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<TestCase>, OpsError> {
    serde_yaml::from_str(text).map_err(|e| OpsError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The test files named by `paths`: files as given, directories as their `*.yaml` / `*.yml`
/// files (not recursive, hidden files skipped), in name order.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, OpsError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| OpsError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                    name.is_some_and(|n| {
                        !n.starts_with('.') && (n.ends_with(".yaml") || n.ends_with(".yml"))
                    }) && p.is_file()
                })
                .collect();
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(OpsError::File {
                path: path.clone(),
                message: "no such test file or directory".into(),
            });
        }
    }
    if files.is_empty() {
        return Err(OpsError::Usage(
            "no test files found (policy tests are *.yaml files, by default in <policies>/tests)"
                .into(),
        ));
    }
    Ok(files)
}

/// Read every case of `files`, with the file it came from.
pub fn load_cases(files: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<TestCase>)>, OpsError> {
    files
        .iter()
        .map(|f| Ok((f.clone(), parse_file(f, &read_text(f)?)?)))
        .collect()
}

/// The rule that settled a report: the first statement that did not pass cleanly, else the
/// last statement's.
pub fn deciding_rule(report: &Report) -> Option<&Rule> {
    report
        .statements
        .iter()
        .find(|s| {
            !matches!(
                s.rule,
                Rule::AllUsesAllowed | Rule::NoDataAccess | Rule::Rewritten
            )
        })
        .or(report.statements.last())
        .map(|s| &s.rule)
}

/// Decide a case's statement under `policy` (an `Err` names an unknown service or purpose).
pub fn decide_case(
    case: &TestCase,
    policy: &CompiledPolicy,
    catalog: &Catalog,
) -> Result<Decision, String> {
    let (service, purpose) = session_for(policy, &case.service, case.purpose.as_deref())?;
    let session = SessionView {
        service,
        purpose: &purpose,
    };
    Ok(engine::decide(&case.sql, catalog, policy, &session))
}

/// A one-line summary of a decision: the kind and its deciding rule.
pub fn summary(decision: &Decision) -> String {
    match deciding_rule(decision.report()) {
        Some(rule) => format!("{} ({rule})", decision_word(decision)),
        None => decision_word(decision).to_owned(),
    }
}

/// Check one case; `Err` holds the readable diff.
pub fn check_case(
    case: &TestCase,
    policy: &CompiledPolicy,
    catalog: &Catalog,
) -> Result<(), String> {
    let decision = decide_case(case, policy, catalog)?;
    let mut diff = String::new();
    if Expect::of(&decision) != case.expect {
        let _ = writeln!(diff, "- expected: {}", case.expect.word());
        let _ = writeln!(diff, "+ got:      {}", summary(&decision));
        if let Decision::Block { error, .. } = &decision {
            let _ = writeln!(diff, "            {}", error.message);
        }
        if let Decision::Rewrite { sql, .. } = &decision {
            let _ = writeln!(diff, "            rewritten to: {sql}");
        }
        return Err(diff);
    }
    if let (Decision::Rewrite { sql, .. }, Some(want)) = (&decision, &case.rewritten) {
        if sql.trim() != want.trim() {
            let _ = writeln!(diff, "rewritten SQL differs:");
            let _ = writeln!(diff, "- {}", want.trim());
            let _ = writeln!(diff, "+ {}", sql.trim());
            let _ = writeln!(
                diff,
                "  {}^",
                " ".repeat(first_difference(want.trim(), sql.trim()))
            );
        }
    }
    if let Some(want) = &case.rule {
        let got = deciding_rule(decision.report())
            .map(ToString::to_string)
            .unwrap_or_default();
        if !got.contains(want.as_str()) {
            let _ = writeln!(diff, "deciding rule differs:");
            let _ = writeln!(diff, "- contains: {want}");
            let _ = writeln!(diff, "+ got:      {got}");
        }
    }
    if let Some(want) = &case.message_contains {
        match &decision {
            Decision::Block { error, .. } if error.message.contains(want.as_str()) => {}
            Decision::Block { error, .. } => {
                let _ = writeln!(diff, "block message differs:");
                let _ = writeln!(diff, "- contains: {want}");
                let _ = writeln!(diff, "+ got:      {}", error.message);
            }
            _ => {
                let _ = writeln!(
                    diff,
                    "message_contains is given but the statement is not blocked"
                );
            }
        }
    }
    if diff.is_empty() {
        Ok(())
    } else {
        Err(diff)
    }
}

/// Characters before the first difference of `a` and `b`.
fn first_difference(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// Run every case of `files` whose name contains `filter` (all when `None`).
pub fn run(
    policy: &CompiledPolicy,
    catalog: &Catalog,
    files: &[(PathBuf, Vec<TestCase>)],
    filter: Option<&str>,
) -> Outcome {
    let mut out = String::new();
    let (mut passed, mut failed) = (0usize, 0usize);
    for (path, cases) in files {
        let _ = writeln!(out, "{}", path.display());
        for case in cases {
            if filter.is_some_and(|f| !case.name.contains(f)) {
                continue;
            }
            match check_case(case, policy, catalog) {
                Ok(()) => {
                    passed += 1;
                    let _ = writeln!(out, "  ok    {}", case.name);
                }
                Err(diff) => {
                    failed += 1;
                    let _ = writeln!(out, "  FAIL  {}", case.name);
                    let _ = writeln!(
                        out,
                        "        service {}{}: {}",
                        case.service,
                        case.purpose
                            .as_deref()
                            .map(|p| format!(" (purpose {p})"))
                            .unwrap_or_default(),
                        case.sql.trim()
                    );
                    for line in diff.lines() {
                        let _ = writeln!(out, "        {line}");
                    }
                }
            }
        }
    }
    let _ = writeln!(out, "\n{passed} passed, {failed} failed");
    let status = if failed > 0 {
        Status::Findings
    } else if passed == 0 {
        // A filter that matches nothing must not look like a green run.
        let _ = writeln!(out, "no test case ran");
        Status::Trouble
    } else {
        Status::Clean
    };
    Outcome { status, text: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> (CompiledPolicy, Catalog) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        (
            crate::policy::load_dir(&root.join("policies")).unwrap(),
            crate::catalog::snapshot_file::load(&root.join("examples/catalog.json")).unwrap(),
        )
    }

    #[test]
    fn the_shipped_policy_tests_pass() {
        let (policy, catalog) = example();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let files = discover(&[root.join("policies/tests")]).unwrap();
        let cases = load_cases(&files).unwrap();
        let out = run(&policy, &catalog, &cases, None);
        assert_eq!(out.status, Status::Clean, "{}", out.text);
        assert!(out.text.contains(" passed, 0 failed"), "{}", out.text);
    }

    #[test]
    fn failures_show_a_readable_diff() {
        let (policy, catalog) = example();
        let text = "\
- name: wrong expectation
  service: ads-service
  sql: SELECT count(*) FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa
  expect: allow
- name: wrong rewrite
  service: ads-service
  sql: SELECT handle, phone_2fa FROM users
  expect: rewrite
  rewritten: SELECT handle, NULL::integer AS \"phone_2fa\" FROM users
- name: passes
  service: auth-service
  sql: SELECT phone_2fa FROM users WHERE id = 1
  expect: allow
";
        let cases = parse_file(Path::new("t.yaml"), text).unwrap();
        let out = run(&policy, &catalog, &[(PathBuf::from("t.yaml"), cases)], None);
        assert_eq!(out.status, Status::Findings);
        assert!(out.text.contains("1 passed, 2 failed"), "{}", out.text);
        assert!(out.text.contains("  ok    passes"), "{}", out.text);
        assert!(out.text.contains("- expected: ALLOW"), "{}", out.text);
        assert!(
            out.text.contains(
                "+ got:      BLOCK (forbidden column public.users.phone_2fa in a join condition)"
            ),
            "{}",
            out.text
        );
        assert!(out.text.contains("rewritten SQL differs:"), "{}", out.text);
        // The caret sits under the first differing character ("integer" vs "text").
        let lines: Vec<&str> = out.text.lines().collect();
        let caret = lines.iter().position(|l| l.trim() == "^").unwrap();
        let want = lines[caret - 2];
        let col = lines[caret].find('^').unwrap();
        assert_eq!(&want[col..col + 7], "integer", "{}", out.text);
    }

    #[test]
    fn unknown_keys_and_missing_files_are_refused() {
        let err = parse_file(
            Path::new("t.yaml"),
            "- name: x\n  service: s\n  sql: SELECT 1\n  expect: allow\n  rewriten: y\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("rewriten"), "{err}");
        assert!(discover(&[PathBuf::from("/nonexistent/tests")]).is_err());
        let (policy, catalog) = example();
        let out = run(&policy, &catalog, &[], Some("nothing"));
        assert_eq!(out.status, Status::Trouble);
    }
}

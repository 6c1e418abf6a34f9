//! `pgpurpose explain`: why the proxy would allow, rewrite or block a statement.
//!
//! Prints the decision, every column use with its tags and clause kind, masks and row filters,
//! the rule that decided each statement, and the SQL that would be forwarded. The text is the
//! DBA's own input on their own terminal, so it is printed as given (unlike logs and audit
//! records, which only ever see normalised SQL).

use std::fmt::Write as _;

use crate::catalog::Catalog;
use crate::engine::{self, Decision, Report, SessionView};
use crate::policy::CompiledPolicy;

use super::{session_for, Outcome, Status};

/// The decision kind in upper case, as printed by every tool.
pub fn decision_word(decision: &Decision) -> &'static str {
    match decision {
        Decision::Allow(_) => "ALLOW",
        Decision::Rewrite { .. } => "REWRITE",
        Decision::Block { .. } => "BLOCK",
    }
}

/// What `explain` needs: the policy, a catalog and who runs the statement.
pub struct ExplainRequest<'a> {
    pub policy: &'a CompiledPolicy,
    pub catalog: &'a Catalog,
    /// Where the catalog came from, for the header.
    pub catalog_label: &'a str,
    pub service: &'a str,
    pub purpose: Option<&'a str>,
    pub sql: &'a str,
}

/// Decide `req.sql` and render the explanation. The status is [`Status::Clean`] for an allowed
/// or rewritten statement, [`Status::Findings`] for a block (so scripts can test it), and
/// [`Status::Trouble`] when the service or purpose is unknown.
pub fn explain(req: &ExplainRequest<'_>) -> Outcome {
    let (service, purpose) = match session_for(req.policy, req.service, req.purpose) {
        Ok(found) => found,
        Err(message) => {
            return Outcome {
                status: Status::Trouble,
                text: format!("error: {message}\n"),
            }
        }
    };
    let session = SessionView {
        service,
        purpose: &purpose,
    };
    let decision = engine::decide(req.sql, req.catalog, req.policy, &session);
    let mut out = String::new();
    let _ = writeln!(out, "service:   {}", service.name);
    let _ = writeln!(out, "purpose:   {purpose}");
    let _ = writeln!(out, "policy:    {}", short_version(&req.policy.version));
    let _ = writeln!(
        out,
        "catalog:   {} (version {})",
        req.catalog_label, req.catalog.version
    );
    out.push('\n');
    render_decision(&decision, &mut out);
    Outcome {
        status: if decision.is_block() {
            Status::Findings
        } else {
            Status::Clean
        },
        text: out,
    }
}

/// The first 12 hex digits of a policy version (enough to tell versions apart on screen).
pub fn short_version(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// The decision, its report and the forwarded SQL.
pub fn render_decision(decision: &Decision, out: &mut String) {
    match decision {
        Decision::Allow(_) => {
            let _ = writeln!(out, "decision:  ALLOW (the original text is forwarded)");
        }
        Decision::Rewrite { .. } => {
            let _ = writeln!(out, "decision:  REWRITE");
        }
        Decision::Block { error, .. } => {
            let _ = writeln!(out, "decision:  BLOCK (ERROR {})", error.code);
            let _ = writeln!(out, "error:     {}", error.message);
            if let Some(detail) = &error.detail {
                let _ = writeln!(out, "detail:    {detail}");
            }
            if let Some(hint) = &error.hint {
                let _ = writeln!(out, "hint:      {hint}");
            }
        }
    }
    render_report(decision.report(), out);
    if let Decision::Rewrite { sql, .. } = decision {
        let _ = writeln!(out, "\nrewritten SQL:\n  {sql}");
    }
}

fn render_report(report: &Report, out: &mut String) {
    for (i, st) in report.statements.iter().enumerate() {
        let _ = writeln!(out, "\nstatement {} ({}):", i + 1, st.kind);
        let _ = writeln!(out, "  rule:    {}", st.rule);
        if st.uses.is_empty() {
            let _ = writeln!(out, "  column uses: none");
        } else {
            let _ = writeln!(out, "  column uses:");
            let width = st
                .uses
                .iter()
                .map(|u| u.table.to_string().len() + u.column.len() + 1)
                .max()
                .unwrap_or(0);
            for u in &st.uses {
                let name = format!("{}.{}", u.table, u.column);
                let tags = match &u.tags {
                    Some(t) => format!("[{}]", t.join(", ")),
                    None => "untagged".to_owned(),
                };
                let verdict = match (u.allowed, u.masked) {
                    (true, _) => "allowed",
                    (false, true) => "FORBIDDEN, masked",
                    (false, false) => "FORBIDDEN",
                };
                let _ = writeln!(
                    out,
                    "    {name:<width$}  {:<14} {:<24} {verdict}",
                    clause_name(u.clause),
                    tags,
                );
            }
        }
        for m in &st.masked {
            let sources: Vec<String> = m.sources.iter().map(|(t, c)| format!("{t}.{c}")).collect();
            let _ = writeln!(
                out,
                "  masked:  \"{}\" -> NULL::{} (from {})",
                m.output_name,
                m.type_name,
                sources.join(", ")
            );
        }
        for f in &st.row_filters {
            let _ = writeln!(
                out,
                "  row filter: {} WHERE ({}) at {}",
                f.table, f.filter, f.at
            );
        }
        if !st.grants_used.is_empty() {
            let grants: Vec<String> = st.grants_used.iter().map(|g| format!("{g:?}")).collect();
            let _ = writeln!(out, "  grants used: {}", grants.join(", "));
        }
    }
    if report.literal_sensitive {
        let _ = writeln!(
            out,
            "\nnote: a literal's value affected this decision; the proxy decides such statements \
             every time (no cache by shape)"
        );
    }
}

/// The clause kind in snake case (the audit log's spelling).
pub fn clause_name(clause: engine::Clause) -> &'static str {
    use engine::Clause::*;
    match clause {
        Output => "output",
        Predicate => "predicate",
        Join => "join",
        GroupBy => "group_by",
        OrderBy => "order_by",
        Window => "window",
        Distinct => "distinct",
        DistinctOn => "distinct_on",
        Limit => "limit",
        FunctionArg => "function_arg",
        WholeRow => "whole_row",
        Subquery => "subquery",
        Write => "write",
        WriteSource => "write_source",
        Ddl => "ddl",
        Copy => "copy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> (CompiledPolicy, Catalog) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let policy = crate::policy::load_dir(&root.join("policies")).unwrap();
        let catalog =
            crate::catalog::snapshot_file::load(&root.join("examples/catalog.json")).unwrap();
        (policy, catalog)
    }

    fn run(service: &str, purpose: Option<&str>, sql: &str) -> Outcome {
        let (policy, catalog) = example();
        explain(&ExplainRequest {
            policy: &policy,
            catalog: &catalog,
            catalog_label: "examples/catalog.json",
            service,
            purpose,
            sql,
        })
    }

    #[test]
    fn a_join_on_the_2fa_phone_is_explained_as_a_block() {
        let out = run(
            "ads-service",
            None,
            "SELECT count(*) FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa",
        );
        assert_eq!(out.status, Status::Findings, "{}", out.text);
        assert!(
            out.text.contains("decision:  BLOCK (ERROR 42501)"),
            "{}",
            out.text
        );
        assert!(out.text.contains("purpose:   advertising"), "{}", out.text);
        assert!(
            out.text
                .contains("rule:    forbidden column public.users.phone_2fa in a join condition"),
            "{}",
            out.text
        );
        let line = out
            .text
            .lines()
            .find(|l| l.trim_start().starts_with("public.users.phone_2fa"))
            .unwrap_or_else(|| panic!("{}", out.text));
        assert!(line.contains("join"), "{line}");
        assert!(line.contains("[security]"), "{line}");
        assert!(line.ends_with("FORBIDDEN"), "{line}");
    }

    #[test]
    fn a_masked_output_shows_the_rewrite_and_row_filter() {
        let out = run("ads-service", None, "SELECT handle, phone_2fa FROM users");
        assert_eq!(out.status, Status::Clean, "{}", out.text);
        assert!(out.text.contains("decision:  REWRITE"), "{}", out.text);
        assert!(
            out.text
                .contains("masked:  \"phone_2fa\" -> NULL::text (from public.users.phone_2fa)"),
            "{}",
            out.text
        );
        assert!(
            out.text
                .contains("row filter: public.users WHERE (ads_opt_in)"),
            "{}",
            out.text
        );
        assert!(out
            .text
            .contains("rewritten SQL:\n  SELECT handle, NULL::text AS \"phone_2fa\""));
    }

    #[test]
    fn unknown_service_or_purpose_is_trouble() {
        let out = run("nobody", None, "SELECT 1");
        assert_eq!(out.status, Status::Trouble);
        assert!(out.text.contains("service `nobody` is not in the policy"));
        let out = run("support-service", None, "SELECT 1");
        assert_eq!(out.status, Status::Trouble);
        assert!(out.text.contains("several purposes"), "{}", out.text);
        let out = run("support-service", Some("security"), "SELECT id FROM users");
        assert_eq!(out.status, Status::Clean, "{}", out.text);
        assert!(out.text.contains("decision:  ALLOW"), "{}", out.text);
    }
}

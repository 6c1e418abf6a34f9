//! The audit log as a [`DecisionObserver`]: one `statement` record per decided message, written
//! before the relay acts on the verdict, plus the records the relay writes itself (connection
//! events, messages it refuses before any decision).
//!
//! What is recorded comes from [`DecisionFacts`] only: the normalised text (literals as `?`),
//! the engine's column uses, and rule *kinds*. Free text the parser or analyser produced
//! (`Rule::Syntax` / `Unanalysable` / `Refused` reasons, error messages) may quote the
//! statement, so a block records its SQLSTATE and rule kind instead (security rule 8).
//!
//! The members that are equal for every hit of a cached decision (fingerprint, text, rule,
//! uses, versions) are rendered once into [`DecisionFacts::rendered`]; a hit only adds the
//! session's members around them.

use super::record::{self, ColumnUseRecord, ConnectionEvent, ConnectionEventKind, StatementDetail};
use super::writer::{AuditError, AuditLog};
use crate::config::AuditFailure;
use crate::enforce::{DecisionFacts, DecisionObserver, Outcome};
use crate::engine::report::{Clause, Report, Rule};
use crate::engine::{shape, Decision};
use crate::error::{sqlstate, PgError};
use crate::intercept::{Protocol, StatementContext, Verdict};

/// The error a client sees for a statement whose record could not be written.
pub fn unavailable_error() -> PgError {
    PgError::error(
        sqlstate::IO_ERROR,
        "pgpurpose cannot write its audit log; the statement was not run",
    )
    .with_hint(
        "the proxy's audit directory is not writable (disk full, permissions, I/O error); \
         statements run again as soon as it is, retry later or tell the proxy's operator",
    )
}

/// Snake-case clause name, as in [`ColumnUseRecord::clause`].
pub fn clause_name(clause: Clause) -> &'static str {
    match clause {
        Clause::Output => "output",
        Clause::Predicate => "predicate",
        Clause::Join => "join",
        Clause::GroupBy => "group_by",
        Clause::OrderBy => "order_by",
        Clause::Window => "window",
        Clause::Distinct => "distinct",
        Clause::DistinctOn => "distinct_on",
        Clause::Limit => "limit",
        Clause::FunctionArg => "function_arg",
        Clause::WholeRow => "whole_row",
        Clause::Subquery => "subquery",
        Clause::Write => "write",
        Clause::WriteSource => "write_source",
        Clause::Ddl => "ddl",
        Clause::Copy => "copy",
    }
}

/// A rule as recorded: its kind, plus the column or grant for policy verdicts. Never the
/// free-text reason of `Refused`, `Unanalysable` or `Syntax` (it may quote literals).
///
/// `all_uses_allowed`, `no_data_access`, `rewritten`,
/// `forbidden_column:<schema>.<table>.<column>:<clause>`, `grant_required:<grant>`,
/// `refused`, `unanalysable`, `syntax`.
pub fn rule_name(rule: &Rule) -> String {
    match rule {
        Rule::AllUsesAllowed => "all_uses_allowed".into(),
        Rule::NoDataAccess => "no_data_access".into(),
        Rule::Rewritten => "rewritten".into(),
        Rule::ForbiddenColumn {
            table,
            column,
            clause,
        } => format!("forbidden_column:{table}.{column}:{}", clause_name(*clause)),
        Rule::GrantRequired(g) => {
            format!("grant_required:{}", crate::engine::decide::grant_name(*g))
        }
        Rule::Refused(_) => "refused".into(),
        Rule::Unanalysable(_) => "unanalysable".into(),
        Rule::Syntax => "syntax".into(),
    }
}

fn is_blocking(rule: &Rule) -> bool {
    !matches!(
        rule,
        Rule::AllUsesAllowed | Rule::NoDataAccess | Rule::Rewritten
    )
}

/// The message's deciding rule: the first blocking statement's, else the last statement's.
fn message_rule(report: &Report, refused: bool) -> String {
    if refused {
        return "refused_before_analysis".into();
    }
    report
        .statements
        .iter()
        .find(|s| is_blocking(&s.rule))
        .or(report.statements.last())
        .map_or_else(|| "no_statement".into(), |s| rule_name(&s.rule))
}

fn details(report: &Report) -> Vec<StatementDetail> {
    report
        .statements
        .iter()
        .map(|s| StatementDetail {
            statement_kind: s.kind.clone(),
            rule: rule_name(&s.rule),
            uses: s
                .uses
                .iter()
                .map(|u| ColumnUseRecord {
                    table: u.table.to_string(),
                    column: u.column.clone(),
                    clause: clause_name(u.clause).to_owned(),
                    tags: u.tags.clone(),
                    allowed: u.allowed,
                    masked: u.masked,
                })
                .collect(),
            masked: s.masked.iter().map(|m| m.output_name.clone()).collect(),
            row_filtered: s.row_filters.iter().map(|f| f.table.to_string()).collect(),
            grants_used: s
                .grants_used
                .iter()
                .map(|g| crate::engine::decide::grant_name(*g).to_owned())
                .collect(),
        })
        .collect()
}

fn json_str(s: &str) -> String {
    // Serialising a str cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `"fingerprint":…,"sql":…,"rule":…,"statements":[…],"policy_version":…,"catalog_version":…`
fn render_facts(facts: &DecisionFacts, refused: bool) -> Box<str> {
    let fingerprint = format!("{:016x}", shape::fnv1a64(facts.normalized.as_bytes()));
    let statements = serde_json::to_string(&details(&facts.report)).unwrap_or_else(|_| "[]".into());
    format!(
        "\"fingerprint\":\"{fingerprint}\",\"sql\":{},\"rule\":{},\"statements\":{statements},\"policy_version\":{},\"catalog_version\":{}",
        json_str(&facts.normalized),
        json_str(&message_rule(&facts.report, refused)),
        json_str(&facts.policy_version),
        facts.catalog_version,
    )
    .into_boxed_str()
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Simple => "simple",
        Protocol::Extended => "extended",
    }
}

impl AuditLog {
    /// The members of a statement record that depend on the session.
    fn session_members(&self, ctx: &StatementContext<'_>, out: &mut String) {
        out.push_str("\"kind\":\"statement\",\"connection_id\":");
        out.push_str(&ctx.connection_id.to_string());
        out.push_str(",\"session_id\":");
        out.push_str(&json_str(&self.session_id(ctx.connection_id)));
        out.push_str(",\"service\":");
        out.push_str(&json_str(ctx.service));
        out.push_str(",\"purpose\":");
        out.push_str(&json_str(ctx.purpose));
        out.push_str(",\"client_addr\":");
        out.push_str(&json_str(ctx.client_addr));
        out.push_str(",\"database\":");
        out.push_str(&json_str(ctx.database));
        out.push_str(",\"protocol\":\"");
        out.push_str(protocol_name(ctx.protocol));
        out.push_str("\",");
    }

    /// Write one statement record; `decision`, `rewrite` and `sqlstate` describe the verdict.
    fn statement_record(
        &self,
        ctx: &StatementContext<'_>,
        facts: &DecisionFacts,
        refused: bool,
        verdict: (record::Decision, Option<&str>, Option<&str>),
        cached: bool,
    ) -> Result<u64, AuditError> {
        let (decision, rewrite, code) = verdict;
        let rendered = facts.rendered.get_or_init(|| render_facts(facts, refused));
        let mut fragment = String::with_capacity(rendered.len() + 400);
        self.session_members(ctx, &mut fragment);
        fragment.push_str(rendered);
        fragment.push_str(match decision {
            record::Decision::Allow => ",\"decision\":\"allow\"",
            record::Decision::Rewrite => ",\"decision\":\"rewrite\"",
            record::Decision::Block => ",\"decision\":\"block\"",
        });
        if let Some(rewrite) = rewrite {
            fragment.push_str(",\"rewrite\":");
            fragment.push_str(&json_str(rewrite));
        }
        if let Some(code) = code {
            fragment.push_str(",\"sqlstate\":");
            fragment.push_str(&json_str(code));
        }
        fragment.push_str(if cached {
            ",\"cached\":true"
        } else {
            ",\"cached\":false"
        });
        self.append_fragment(&fragment)
    }

    /// Turn a failed append into the verdict's error, or into a loud log line when the
    /// configuration chose to fail open.
    fn failed(&self, error: &AuditError) -> Result<(), PgError> {
        match self.on_failure() {
            AuditFailure::Block => {
                tracing::debug!(%error, "statement blocked: audit log not writable");
                Err(unavailable_error())
            }
            AuditFailure::Allow => {
                tracing::error!(%error, "audit record NOT written; the statement runs anyway (audit.on_failure: allow)");
                Ok(())
            }
        }
    }

    /// Record a message the relay refuses before any decision (text that is not UTF-8, a
    /// FunctionCall). The message is blocked whatever happens here; a failure is logged.
    pub fn relay_refusal(&self, ctx: &StatementContext<'_>, rule: &str, error: &PgError) {
        let facts = DecisionFacts::default();
        // Nothing of the message is recorded: its text could not be read safely.
        let rendered = format!(
            "\"fingerprint\":\"{:016x}\",\"sql\":\"\",\"rule\":{},\"statements\":[],\"policy_version\":\"\",\"catalog_version\":0",
            shape::fnv1a64(b""),
            json_str(rule)
        );
        let _ = facts.rendered.set(rendered.into_boxed_str());
        let verdict = (record::Decision::Block, None, Some(error.code));
        if let Err(error) = self.statement_record(ctx, &facts, true, verdict, false) {
            tracing::error!(%error, "cannot write the audit record of a refused message");
        }
    }

    /// A connection event of this log's instance, other members empty (the caller fills in
    /// what the proxy knows; never client-supplied text).
    pub fn connection_event_for(
        &self,
        event: ConnectionEventKind,
        connection_id: u64,
        client_addr: &str,
    ) -> ConnectionEvent {
        ConnectionEvent {
            connection_id,
            session_id: self.session_id(connection_id),
            client_addr: client_addr.to_owned(),
            event,
            service: None,
            purpose: None,
            database: None,
            sqlstate: None,
            reason: None,
        }
    }

    /// Record a connection event. `authenticated` fails with a FATAL 58030 (the caller refuses
    /// the session) when the log cannot be written, unless `on_failure: allow`; refusals and
    /// closes cannot be undone, so their failure is only logged.
    pub fn record_connection(&self, event: ConnectionEvent) -> Result<(), PgError> {
        let kind = event.event;
        match self.connection_event(event) {
            Ok(_) => Ok(()),
            Err(error) if kind == ConnectionEventKind::Authenticated => {
                self.failed(&error).map_err(|e| {
                    let fatal = PgError::fatal(sqlstate::IO_ERROR, e.message);
                    match e.hint {
                        Some(hint) => fatal.with_hint(hint),
                        None => fatal,
                    }
                })
            }
            Err(error) => {
                tracing::error!(%error, event = ?kind, "cannot write a connection event to the audit log");
                Ok(())
            }
        }
    }
}

/// Policy reloads. `loaded` is not repeated: [`AuditLog::open`] wrote it with the start
/// version. A failure is logged (a reload is not undone for want of a record).
impl crate::reload::PolicyEvents for AuditLog {
    fn policy_event(
        &self,
        kind: crate::reload::PolicyEventKind,
        version: &str,
        error: Option<&str>,
    ) {
        if kind == crate::reload::PolicyEventKind::Loaded {
            return;
        }
        if let Err(e) = AuditLog::policy_event(self, kind.as_str(), version, error) {
            tracing::error!(error = %e, event = kind.as_str(), "cannot write a policy event to the audit log");
        }
    }
}

impl DecisionObserver for AuditLog {
    fn observe(
        &self,
        ctx: &StatementContext<'_>,
        _sql: &str,
        outcome: &Outcome<'_>,
    ) -> Result<(), PgError> {
        let written = match outcome {
            Outcome::Decided(decision, facts) => {
                let verdict = match decision {
                    Decision::Allow(_) => (record::Decision::Allow, None, None),
                    Decision::Rewrite { .. } => (
                        record::Decision::Rewrite,
                        facts.rewrite_normalized.as_deref(),
                        None,
                    ),
                    Decision::Block { error, .. } => {
                        (record::Decision::Block, None, Some(error.code))
                    }
                };
                self.statement_record(ctx, facts, false, verdict, false)
            }
            Outcome::Cached(verdict, facts) => {
                let verdict = match verdict {
                    Verdict::Forward => (record::Decision::Allow, None, None),
                    Verdict::Rewrite(_) => (
                        record::Decision::Rewrite,
                        facts.rewrite_normalized.as_deref(),
                        None,
                    ),
                    Verdict::Block(error) => (record::Decision::Block, None, Some(error.code)),
                };
                self.statement_record(ctx, facts, false, verdict, true)
            }
            Outcome::Refused(error, facts) => self.statement_record(
                ctx,
                facts,
                true,
                (record::Decision::Block, None, Some(error.code)),
                false,
            ),
        };
        match written {
            Ok(_) => Ok(()),
            Err(error) => self.failed(&error),
        }
    }
}

#[cfg(test)]
mod tests;

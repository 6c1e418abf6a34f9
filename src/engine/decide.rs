//! From an analysis and the compiled policy to a per-statement verdict: refusals and missing
//! grants block; each column use is checked against the purpose; forbidden columns that only
//! reach a maskable top-level output are planned as masks, every other forbidden use blocks;
//! scans of row-filtered tables (directly, through views, as UPDATE/DELETE targets, in COPY)
//! are planned as filter rewrites.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::QualifiedName;
use crate::engine::analyse::views::ViewInfo;
use crate::engine::analyse::{
    Env, Scan, SlotTarget, StatementAnalysis, Use, WriteKind, WriteTarget,
};
use crate::engine::report::{
    Clause, ColumnUse, MaskedColumn, RowFilterApplied, Rule, StatementReport,
};
use crate::error::PgError;
use crate::policy::{ColumnAccess, Grant, OutputAction, Service};

/// What must be rewritten in one statement.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Output slots to replace by `NULL::<type>`.
    pub masks: BTreeSet<usize>,
    /// Scans to wrap in their row filter (tables) or inline with filters applied (views).
    pub scans: Vec<Scan>,
    /// UPDATE / DELETE targets that need the row filter in their WHERE.
    pub writes: Vec<WriteTarget>,
    /// Whether a `COPY table TO` must become `COPY (SELECT ...) TO`.
    pub copy: bool,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty() && self.scans.is_empty() && self.writes.is_empty() && !self.copy
    }
}

/// The verdict on one statement.
#[derive(Debug)]
pub enum Verdict {
    Allow(StatementReport),
    Rewrite(StatementReport, Plan),
    Block(PgError, StatementReport),
}

pub const FORBIDDEN_HINT: &str = "the column's tags do not include your purpose or a parent of it";

pub fn grant_name(g: Grant) -> &'static str {
    match g {
        Grant::Ddl => "ddl",
        Grant::CopyFrom => "copy_from",
        Grant::ProceduralCode => "procedural_code",
        Grant::SessionControl => "session_control",
    }
}

fn who(service: &Service, purpose: &str) -> String {
    format!("for service \"{}\" (purpose {purpose})", service.name)
}

/// Does a view's definition (or a view it reads) scan a table the purpose filters?
pub fn view_needs_filter(info: &ViewInfo, env: &Env<'_>) -> bool {
    info.scans.iter().any(|s| scan_needs_filter(s, env))
}

pub fn scan_needs_filter(s: &Scan, env: &Env<'_>) -> bool {
    match &s.view {
        Some(v) => view_needs_filter(v, env),
        None => !env.policy.row_filters(&s.relation, env.purpose).is_empty(),
    }
}

fn collect_filters(s: &Scan, env: &Env<'_>, at: &str, out: &mut Vec<RowFilterApplied>) {
    match &s.view {
        Some(v) => {
            for inner in &v.scans {
                collect_filters(inner, env, &format!("view {}", v.name), out);
            }
        }
        None => {
            for f in env.policy.row_filters(&s.relation, env.purpose) {
                out.push(RowFilterApplied {
                    table: s.relation.clone(),
                    filter: f.to_owned(),
                    at: at.to_owned(),
                });
            }
        }
    }
}

fn tagged_relation(env: &Env<'_>, q: &QualifiedName) -> bool {
    env.policy.relations.get(q).is_some_and(|r| {
        r.table_tags.is_some() || !r.column_tags.is_empty() || !r.row_filters.is_empty()
    })
}

/// Decide one analysed statement.
pub fn decide_statement(a: &StatementAnalysis, env: &Env<'_>, service: &Service) -> Verdict {
    let mut report = StatementReport::new(a.kind.clone());
    let purpose = env.purpose;
    let block = |mut report: StatementReport, rule: Rule, err: PgError| {
        report.rule = rule;
        Verdict::Block(err, report)
    };

    // Column uses with their policy facts (for the report, and the checks below).
    let mut forbidden_slots: BTreeSet<usize> = BTreeSet::new();
    let mut first_block: Option<(usize, Vec<String>)> = None;
    for (i, u) in a.uses.iter().enumerate() {
        let access = env
            .policy
            .column_access(&u.key.table, &u.key.column, purpose);
        let tags = env
            .policy
            .tags(&u.key.table, &u.key.column)
            .map(|t| t.to_vec());
        let allowed = access == ColumnAccess::Allowed;
        let mut masked = false;
        if let ColumnAccess::Forbidden {
            allowed_purposes,
            action,
        } = access
        {
            let maskable = u.clause == Clause::Output
                && action == OutputAction::Mask
                && u.slot.is_some_and(|s| {
                    a.slots.get(s).is_some_and(|slot| {
                        slot.mask_type.is_some() && slot.target != SlotTarget::Fixed
                    })
                });
            if maskable {
                if let Some(s) = u.slot {
                    forbidden_slots.insert(s);
                }
                masked = true;
            } else {
                // Prefer reporting a non-output use: it is the more telling one.
                let better = match &first_block {
                    None => true,
                    Some((j, _)) => {
                        a.uses[*j].clause == Clause::Output && u.clause != Clause::Output
                    }
                };
                if better {
                    first_block = Some((i, allowed_purposes));
                }
            }
        }
        report.uses.push(ColumnUse {
            table: u.key.table.clone(),
            column: u.key.column.clone(),
            clause: u.clause,
            place: u.place.to_owned(),
            tags,
            allowed,
            masked,
        });
    }
    for (g, _) in &a.grants {
        if service.grants.contains(g) && !report.grants_used.contains(g) {
            report.grants_used.push(*g);
        }
    }

    if let Some(why) = a.refusals.first() {
        let msg = format!("purpose policy refuses this statement: {why}");
        return block(report, Rule::Refused(why.clone()), PgError::forbidden(msg));
    }
    if let Some((g, why)) = a.grants.iter().find(|(g, _)| !service.grants.contains(g)) {
        let msg = format!(
            "purpose policy does not allow {why} {}: it needs the {} grant",
            who(service, purpose),
            grant_name(*g)
        );
        return block(
            report,
            Rule::GrantRequired(*g),
            PgError::forbidden(msg).with_hint("grants are given to services in the policy"),
        );
    }
    for (table, column) in &a.ddl_columns {
        let tagged = match column {
            Some(c) => env.policy.tags(table, c).is_some(),
            None => tagged_relation(env, table),
        };
        if tagged {
            let what = match column {
                Some(c) => format!("column {table}.{c}"),
                None => format!("relation {table}"),
            };
            let msg = format!(
                "purpose policy forbids renaming, dropping or altering tagged {what} {}",
                who(service, purpose)
            );
            return block(
                report,
                Rule::Refused(format!("DDL on tagged {what}")),
                PgError::forbidden(msg),
            );
        }
    }
    if let Some((i, allowed)) = first_block {
        let u = &a.uses[i];
        let allowed_txt = if allowed.is_empty() {
            "no purpose".to_owned()
        } else {
            allowed.join(", ")
        };
        let msg = format!(
            "purpose policy forbids using column {}.{} (allowed for: {allowed_txt}) in {} {}",
            u.key.table,
            u.key.column,
            u.place,
            who(service, purpose)
        );
        let rule = Rule::ForbiddenColumn {
            table: u.key.table.clone(),
            column: u.key.column.clone(),
            clause: u.clause,
        };
        return block(
            report,
            rule,
            PgError::forbidden(msg).with_hint(FORBIDDEN_HINT),
        );
    }

    // Masks.
    let mut plan = Plan {
        masks: forbidden_slots,
        ..Plan::default()
    };
    // Uses by output slot, gathered once (not one pass over every use per mask).
    let mut by_slot: BTreeMap<usize, Vec<&Use>> = BTreeMap::new();
    for u in &a.uses {
        if let Some(s) = u.slot.filter(|s| plan.masks.contains(s)) {
            by_slot.entry(s).or_default().push(u);
        }
    }
    for s in &plan.masks {
        if let Some(slot) = a.slots.get(*s) {
            let sources = by_slot
                .get(s)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|u| {
                    env.policy
                        .column_access(&u.key.table, &u.key.column, purpose)
                        != ColumnAccess::Allowed
                })
                .map(|u| (u.key.table.clone(), u.key.column.clone()))
                .collect();
            report.masked.push(MaskedColumn {
                output_name: slot.name.clone(),
                type_name: slot.mask_type.clone().unwrap_or_default(),
                sources,
            });
        }
    }

    // Row filters.
    for s in &a.scans {
        if !scan_needs_filter(s, env) {
            continue;
        }
        if let Some(why) = s.unwrappable {
            let msg = format!(
                "purpose policy cannot apply the row filter of {} to a scan with {why}",
                s.relation
            );
            return block(
                report,
                Rule::Refused(format!("row filter with {why}")),
                PgError::forbidden(msg),
            );
        }
        collect_filters(s, env, "scan", &mut report.row_filters);
        plan.scans.push(s.clone());
    }
    for w in &a.write_targets {
        let filters = env.policy.row_filters(&w.relation, purpose);
        if filters.is_empty() || w.already_filtered {
            continue;
        }
        match w.kind {
            WriteKind::Update | WriteKind::Delete => {
                let at = if w.kind == WriteKind::Update {
                    "UPDATE target"
                } else {
                    "DELETE target"
                };
                for f in filters {
                    report.row_filters.push(RowFilterApplied {
                        table: w.relation.clone(),
                        filter: f.to_owned(),
                        at: at.to_owned(),
                    });
                }
                plan.writes.push(w.clone());
            }
            WriteKind::InsertOnConflictUpdate | WriteKind::Merge => {
                let msg = format!(
                    "purpose policy cannot apply the row filter of {} to this write",
                    w.relation
                );
                return block(
                    report,
                    Rule::Refused("write to a row-filtered table".into()),
                    PgError::forbidden(msg),
                );
            }
        }
    }
    if let Some(c) = &a.copy {
        let filters = env.policy.row_filters(&c.relation, purpose);
        let masked = c.columns.iter().any(|(_, s)| plan.masks.contains(s));
        if !filters.is_empty() || masked {
            for f in filters {
                report.row_filters.push(RowFilterApplied {
                    table: c.relation.clone(),
                    filter: f.to_owned(),
                    at: "COPY".into(),
                });
            }
            plan.copy = true;
        }
    }

    if plan.is_empty() {
        report.rule = if a.no_data && a.uses.is_empty() {
            Rule::NoDataAccess
        } else {
            Rule::AllUsesAllowed
        };
        Verdict::Allow(report)
    } else {
        report.rule = Rule::Rewritten;
        Verdict::Rewrite(report, plan)
    }
}

//! Writes: INSERT (with ON CONFLICT), UPDATE, DELETE, MERGE and data-modifying CTEs. Written
//! columns are Write uses, values read to be written are WriteSource uses, conditions are
//! predicates, RETURNING is the statement's output; targets of row-filtered tables are noted
//! for the filter (or refused where a filter cannot be added).

use sqlparser::ast::{
    Assignment, AssignmentTarget, ConflictTarget, FromTable, Ident, ObjectName, OnConflictAction,
    OnInsert, SelectItem, SetExpr, Statement, TableFactor, TableObject, UpdateTableFromKind,
    Values,
};

use crate::catalog::{Relation, RelationKind};
use crate::engine::report::Clause;

use super::expr::Cx;
use super::query::{is_system_schema, RelOut, Role};
use super::scope::{ColInfo, Level, Node, Rte, RteKind};
use super::{fold, name_parts, AnalyseError, Analyser, WriteKind, WriteTarget};

fn unsupported(what: &str) -> AnalyseError {
    AnalyseError::Unsupported(what.to_owned())
}

/// `DEFAULT` in VALUES or SET (a reserved word: a column of that name must be quoted).
fn is_default(e: &sqlparser::ast::Expr) -> bool {
    matches!(e, sqlparser::ast::Expr::Identifier(i)
        if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// The target of a write, as a range-table entry plus what it is.
pub(super) struct Target<'e> {
    rel: &'e Relation,
    rte: usize,
}

impl<'e> Analyser<'e, '_> {
    /// A range-table entry for a catalog relation used as a write target or DDL subject:
    /// tables by their columns, views through their definitions.
    pub(super) fn plain_rte(&mut self, rel: &Relation, alias: Option<&Ident>) -> usize {
        let columns = self.relation_columns(rel, None);
        self.scopes.add_rte(Rte {
            refname: Some(alias.map(fold).unwrap_or_else(|| rel.name.name.clone())),
            schema: alias.is_none().then(|| rel.name.schema.clone()),
            columns,
            opaque: false,
            system_columns: true,
            kind: RteKind::Relation(rel.name.clone()),
        })
    }

    fn write_target(
        &mut self,
        name: &ObjectName,
        alias: Option<&Ident>,
    ) -> Result<Target<'e>, AnalyseError> {
        let rel = self.catalog_relation(&name_parts(name)?)?;
        if is_system_schema(&rel.name.schema) {
            self.refuse(format!("writing to system relation {}", rel.name));
        }
        let rte = match rel.kind {
            RelationKind::View | RelationKind::MaterializedView => {
                let info = self.view_info(rel)?;
                self.out.uses.extend(info.uses.iter().cloned());
                self.out.grants.extend(info.grants.iter().cloned());
                self.out.refusals.extend(info.refusals.iter().cloned());
                if info.scans.iter().any(|s| {
                    !self
                        .env
                        .policy
                        .row_filters(&s.relation, self.env.purpose)
                        .is_empty()
                }) {
                    self.refuse(format!(
                        "writing through view {} over a row-filtered table",
                        rel.name
                    ));
                }
                self.scopes.add_rte(Rte {
                    refname: Some(alias.map(fold).unwrap_or_else(|| rel.name.name.clone())),
                    schema: alias.is_none().then(|| rel.name.schema.clone()),
                    columns: info.columns.clone(),
                    opaque: false,
                    system_columns: false,
                    kind: RteKind::View(rel.name.clone()),
                })
            }
            _ => self.plain_rte(rel, alias),
        };
        Ok(Target { rel, rte })
    }

    /// The target's column named `name` (SET / INSERT column lists; `col.field` and
    /// `col[1]` write the column `col`).
    fn target_column(&self, t: &Target<'_>, name: &ObjectName) -> Result<ColInfo, AnalyseError> {
        let parts = name_parts(name)?;
        let first = parts
            .first()
            .ok_or_else(|| unsupported("empty column name"))?;
        self.scopes.rtes[t.rte]
            .columns
            .iter()
            .find(|c| &c.name == first)
            .cloned()
            .ok_or_else(|| AnalyseError::UnknownColumn(format!("{}.{first}", t.rel.name)))
    }

    fn filters_of(&self, rel: &Relation) -> Vec<&'e str> {
        self.env.policy.row_filters(&rel.name, self.env.purpose)
    }

    fn assignments(&mut self, t: &Target<'_>, list: &[Assignment]) -> Result<(), AnalyseError> {
        for a in list {
            let names: Vec<&ObjectName> = match &a.target {
                AssignmentTarget::ColumnName(n) => vec![n],
                AssignmentTarget::Tuple(ns) => ns.iter().collect(),
            };
            for n in names {
                let c = self.target_column(t, n)?;
                self.record(&c.sources, Clause::Write, "SET");
            }
            if !is_default(&a.value) {
                self.expr(&a.value, Cx::new(Clause::WriteSource, "a SET expression"))?;
            }
        }
        Ok(())
    }

    fn returning(&mut self, items: Option<&Vec<SelectItem>>) -> Result<RelOut, AnalyseError> {
        match items {
            None => Ok(RelOut::default()),
            Some(items) => {
                let (columns, outs) = self.projection(items)?;
                Ok(RelOut {
                    columns,
                    items: Some(outs),
                })
            }
        }
    }

    pub(super) fn insert(&mut self, ins: &sqlparser::ast::Insert) -> Result<RelOut, AnalyseError> {
        if !ins.optimizer_hints.is_empty()
            || ins.or.is_some()
            || ins.ignore
            || ins.overwrite
            || ins.partitioned.is_some()
            || !ins.after_columns.is_empty()
            || ins.output.is_some()
            || ins.replace_into
            || ins.priority.is_some()
            || ins.insert_alias.is_some()
            || ins.settings.is_some()
            || ins.format_clause.is_some()
            || ins.multi_table_insert_type.is_some()
            || !ins.multi_table_into_clauses.is_empty()
            || !ins.multi_table_when_clauses.is_empty()
            || ins.multi_table_else_clause.is_some()
            || !ins.assignments.is_empty()
        {
            return Err(unsupported("non-Postgres INSERT form"));
        }
        let TableObject::TableName(name) = &ins.table else {
            return Err(unsupported("INSERT INTO a function"));
        };
        let alias = ins.table_alias.as_ref().map(|a| &a.alias);
        let t = self.write_target(name, alias)?;
        // The source is analysed without the target in scope.
        let width = match &ins.source {
            None => 0,
            Some(q) => match q.body.as_ref() {
                SetExpr::Values(v) if q.with.is_none() => {
                    self.insert_values(v)?;
                    v.rows.first().map(|r| r.len()).unwrap_or(0)
                }
                _ => {
                    let out = self.query(q, Role::WriteSource)?;
                    self.emit(&out, Role::WriteSource);
                    out.columns.len()
                }
            },
        };
        let written: Vec<ColInfo> = if ins.columns.is_empty() {
            self.scopes.rtes[t.rte]
                .columns
                .iter()
                .take(width)
                .cloned()
                .collect()
        } else {
            ins.columns
                .iter()
                .map(|c| self.target_column(&t, c))
                .collect::<Result<_, _>>()?
        };
        for c in &written {
            self.record(&c.sources, Clause::Write, "INSERT");
        }
        let mut level_nodes = vec![Node::Rte(t.rte)];
        if let Some(on) = &ins.on {
            let OnInsert::OnConflict(oc) = on else {
                return Err(unsupported("ON DUPLICATE KEY"));
            };
            match &oc.conflict_target {
                None | Some(ConflictTarget::OnConstraint(_)) => {}
                Some(ConflictTarget::Columns(cols)) => {
                    for c in cols {
                        let col = self.target_column(&t, &ObjectName::from(c.clone()))?;
                        self.record(&col.sources, Clause::Predicate, "ON CONFLICT");
                    }
                }
            }
            if let OnConflictAction::DoUpdate(du) = &oc.action {
                if !self.filters_of(t.rel).is_empty() {
                    self.refuse(format!(
                        "INSERT ... ON CONFLICT DO UPDATE on row-filtered table {}",
                        t.rel.name
                    ));
                }
                self.out.write_targets.push(WriteTarget {
                    relation: t.rel.name.clone(),
                    kind: WriteKind::InsertOnConflictUpdate,
                    stmt_start: 0,
                    already_filtered: false,
                });
                let excluded = self.scopes.add_rte(Rte {
                    refname: Some("excluded".into()),
                    schema: None,
                    columns: self.scopes.rtes[t.rte].columns.clone(),
                    opaque: false,
                    system_columns: false,
                    kind: RteKind::Excluded,
                });
                level_nodes.push(Node::Rte(excluded));
                self.scopes.push_level(Level {
                    nodes: level_nodes.clone(),
                    hidden: false,
                });
                self.assignments(&t, &du.assignments)?;
                if let Some(w) = &du.selection {
                    self.expr(w, Cx::new(Clause::Predicate, "ON CONFLICT ... WHERE"))?;
                }
                self.scopes.pop_level();
                level_nodes.truncate(1);
            }
        }
        self.scopes.push_level(Level {
            nodes: level_nodes,
            hidden: false,
        });
        let out = self.returning(ins.returning.as_ref());
        self.scopes.pop_level();
        out
    }

    fn insert_values(&mut self, v: &Values) -> Result<(), AnalyseError> {
        self.scopes.push_level(Level::default());
        let cx = Cx::new(Clause::WriteSource, "INSERT ... VALUES");
        for row in &v.rows {
            for e in row.iter().filter(|e| !is_default(e)) {
                self.expr(e, cx)?;
            }
        }
        self.scopes.pop_level();
        Ok(())
    }

    fn already_filtered(
        &mut self,
        rel: &Relation,
        selection: Option<&sqlparser::ast::Expr>,
    ) -> Result<bool, AnalyseError> {
        let filters = self.filters_of(rel);
        if filters.is_empty() {
            return Ok(false);
        }
        let Some(expected) = super::views::filter_expr(&filters) else {
            return Err(unsupported("row filter does not parse"));
        };
        let Some(sel) = selection else {
            return Ok(false);
        };
        self.out.literal_sensitive |= super::views::filter_has_literals(&filters);
        use sqlparser::ast::{BinaryOperator, Expr};
        let filter_part = if *sel == expected {
            Some(sel)
        } else {
            match sel {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::And,
                    right,
                } if matches!(left.as_ref(), Expr::Nested(_))
                    && matches!(right.as_ref(), Expr::Nested(r) if **r == expected) =>
                {
                    Some(right.as_ref())
                }
                _ => None,
            }
        };
        match filter_part {
            Some(f) => {
                self.check_filter_resolves(rel, f)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The WHERE of a write, with the policy's filter part (if it is already there) not
    /// counted as the service's use.
    fn write_where(
        &mut self,
        rel: &Relation,
        selection: Option<&sqlparser::ast::Expr>,
        filtered: bool,
    ) -> Result<(), AnalyseError> {
        use sqlparser::ast::{BinaryOperator, Expr};
        let Some(sel) = selection else {
            return Ok(());
        };
        let cx = Cx::new(Clause::Predicate, "WHERE");
        if !filtered {
            self.expr(sel, cx)?;
            return Ok(());
        }
        let _ = rel;
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            ..
        } = sel
        {
            self.expr(left, cx)?;
        }
        Ok(())
    }

    pub(super) fn update(&mut self, u: &sqlparser::ast::Update) -> Result<RelOut, AnalyseError> {
        if !u.optimizer_hints.is_empty()
            || u.or.is_some()
            || u.output.is_some()
            || !u.order_by.is_empty()
            || u.limit.is_some()
            || !u.table.joins.is_empty()
        {
            return Err(unsupported("non-Postgres UPDATE form"));
        }
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = &u.table.relation
        else {
            return Err(unsupported("UPDATE target"));
        };
        if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
            return Err(unsupported("UPDATE alias with columns"));
        }
        let t = self.write_target(name, alias.as_ref().map(|a| &a.name))?;
        self.scopes.push_level(Level {
            nodes: vec![Node::Rte(t.rte)],
            hidden: true,
        });
        match &u.from {
            None => {}
            Some(UpdateTableFromKind::AfterSet(items)) => {
                for twj in items {
                    let node = self.from_item(twj)?;
                    if let Some(l) = self.scopes.current_mut() {
                        l.nodes.push(node);
                    }
                }
            }
            Some(UpdateTableFromKind::BeforeSet(_)) => {
                return Err(unsupported("UPDATE FROM before SET"))
            }
        }
        if let Some(l) = self.scopes.current_mut() {
            l.hidden = false;
        }
        self.assignments(&t, &u.assignments)?;
        let filtered = self.already_filtered(t.rel, u.selection.as_ref())?;
        self.write_where(t.rel, u.selection.as_ref(), filtered)?;
        let start = self.range(u.update_token.0.span)?.0;
        self.out.write_targets.push(WriteTarget {
            relation: t.rel.name.clone(),
            kind: WriteKind::Update,
            stmt_start: start,
            already_filtered: filtered,
        });
        let out = self.returning(u.returning.as_ref());
        self.scopes.pop_level();
        out
    }

    pub(super) fn delete(&mut self, d: &sqlparser::ast::Delete) -> Result<RelOut, AnalyseError> {
        if !d.optimizer_hints.is_empty()
            || !d.tables.is_empty()
            || d.output.is_some()
            || !d.order_by.is_empty()
            || d.limit.is_some()
        {
            return Err(unsupported("non-Postgres DELETE form"));
        }
        let items = match &d.from {
            FromTable::WithFromKeyword(v) => v,
            FromTable::WithoutKeyword(_) => return Err(unsupported("DELETE without FROM")),
        };
        let [twj] = items.as_slice() else {
            return Err(unsupported("DELETE from several tables"));
        };
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = &twj.relation
        else {
            return Err(unsupported("DELETE target"));
        };
        if !twj.joins.is_empty() || alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
            return Err(unsupported("DELETE target form"));
        }
        let t = self.write_target(name, alias.as_ref().map(|a| &a.name))?;
        self.scopes.push_level(Level {
            nodes: vec![Node::Rte(t.rte)],
            hidden: true,
        });
        if let Some(using) = &d.using {
            for twj in using {
                let node = self.from_item(twj)?;
                if let Some(l) = self.scopes.current_mut() {
                    l.nodes.push(node);
                }
            }
        }
        if let Some(l) = self.scopes.current_mut() {
            l.hidden = false;
        }
        let filtered = self.already_filtered(t.rel, d.selection.as_ref())?;
        self.write_where(t.rel, d.selection.as_ref(), filtered)?;
        let start = self.range(d.delete_token.0.span)?.0;
        self.out.write_targets.push(WriteTarget {
            relation: t.rel.name.clone(),
            kind: WriteKind::Delete,
            stmt_start: start,
            already_filtered: filtered,
        });
        let out = self.returning(d.returning.as_ref());
        self.scopes.pop_level();
        out
    }

    /// A data-modifying statement inside WITH: its RETURNING columns pass through.
    pub fn dml_in_cte(&mut self, stmt: &Statement) -> Result<RelOut, AnalyseError> {
        let out = match stmt {
            Statement::Insert(i) => self.insert(i)?,
            Statement::Update(u) => self.update(u)?,
            Statement::Delete(d) => self.delete(d)?,
            _ => return Err(unsupported("statement in WITH")),
        };
        Ok(RelOut {
            columns: out.columns,
            items: None,
        })
    }

    pub(super) fn merge(&mut self, m: &sqlparser::ast::Merge) -> Result<(), AnalyseError> {
        use sqlparser::ast::{MergeAction, MergeInsertKind, MergeUpdateKind};
        if !m.optimizer_hints.is_empty() || m.output.is_some() {
            return Err(unsupported("MERGE form"));
        }
        let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = &m.table
        else {
            return Err(unsupported("MERGE target"));
        };
        let t = self.write_target(name, alias.as_ref().map(|a| &a.name))?;
        if !self.filters_of(t.rel).is_empty() {
            self.refuse(format!("MERGE into row-filtered table {}", t.rel.name));
        }
        self.out.write_targets.push(WriteTarget {
            relation: t.rel.name.clone(),
            kind: WriteKind::Merge,
            stmt_start: 0,
            already_filtered: false,
        });
        self.scopes.push_level(Level {
            nodes: vec![Node::Rte(t.rte)],
            hidden: true,
        });
        let source = self.from_item(&sqlparser::ast::TableWithJoins {
            relation: m.source.clone(),
            joins: Vec::new(),
        })?;
        if let Some(l) = self.scopes.current_mut() {
            l.nodes.push(source);
            l.hidden = false;
        }
        self.expr(&m.on, Cx::new(Clause::Join, "MERGE ... ON"))?;
        for clause in &m.clauses {
            if let Some(p) = &clause.predicate {
                self.expr(p, Cx::new(Clause::Predicate, "MERGE ... WHEN"))?;
            }
            match &clause.action {
                MergeAction::Update(u) => {
                    if u.update_predicate.is_some() || u.delete_predicate.is_some() {
                        return Err(unsupported("MERGE UPDATE predicate"));
                    }
                    match &u.kind {
                        MergeUpdateKind::Set(list) => self.assignments(&t, list)?,
                        MergeUpdateKind::Wildcard => return Err(unsupported("UPDATE *")),
                    }
                }
                MergeAction::Insert(ins) => {
                    if ins.insert_predicate.is_some() {
                        return Err(unsupported("MERGE INSERT predicate"));
                    }
                    let cols: Vec<ColInfo> = if ins.columns.is_empty() {
                        self.scopes.rtes[t.rte].columns.clone()
                    } else {
                        ins.columns
                            .iter()
                            .map(|c| self.target_column(&t, c))
                            .collect::<Result<_, _>>()?
                    };
                    for c in &cols {
                        self.record(&c.sources, Clause::Write, "MERGE INSERT");
                    }
                    match &ins.kind {
                        MergeInsertKind::Values(v) => {
                            let cx = Cx::new(Clause::WriteSource, "MERGE INSERT VALUES");
                            for row in &v.rows {
                                for e in row.iter().filter(|e| !is_default(e)) {
                                    self.expr(e, cx)?;
                                }
                            }
                        }
                        _ => return Err(unsupported("MERGE INSERT form")),
                    }
                }
                MergeAction::Delete { .. } | MergeAction::DoNothing { .. } => {}
            }
        }
        self.scopes.pop_level();
        Ok(())
    }
}

//! Statements: the top-level read and its output slots, INSERT / UPDATE / DELETE / MERGE,
//! COPY, cursors, PREPARE / EXECUTE / EXPLAIN, session and transaction statements, and DDL.
//! Anything not listed is refused as an unknown statement kind.

use sqlparser::ast::{
    AlterSchemaOperation, AlterTableOperation, CopySource, CopyTarget, DeclareType, ObjectName,
    Reset, Set, SetExpr, Statement,
};

use crate::catalog::{QualifiedName, RelationKind};
use crate::engine::report::Clause;
use crate::policy::Grant;

use super::expr::{Cx, PINNED_PARAMETERS, SESSION_CONTROL_PARAMETERS};
use super::query::{is_system_schema, ItemOut, RelOut, Role};
use super::scope::{ColInfo, Level, Node};
use super::{
    fold, name_idents, name_parts, AnalyseError, Analyser, CopyPlan, Env, OutputSlot, SlotTarget,
    StarGroup, StatementAnalysis,
};

fn unsupported(what: &str) -> AnalyseError {
    AnalyseError::Unsupported(what.to_owned())
}

/// Analyse one parsed statement of `text`.
pub fn analyse_statement(
    env: &Env<'_>,
    text: &str,
    stmt: &Statement,
) -> Result<StatementAnalysis, AnalyseError> {
    let mut a = Analyser::new(env, text);
    a.statement(stmt)?;
    let mut out = a.out;
    out.uses.sort();
    out.uses.dedup();
    out.grants.sort();
    out.grants.dedup();
    Ok(out)
}

impl<'e> Analyser<'e, '_> {
    fn kind(&mut self, kind: &str) {
        if self.out.kind.is_empty() {
            self.out.kind = kind.to_owned();
        }
    }

    fn no_data(&mut self, kind: &str) -> Result<(), AnalyseError> {
        self.kind(kind);
        self.out.no_data = true;
        Ok(())
    }

    pub fn statement(&mut self, stmt: &Statement) -> Result<(), AnalyseError> {
        match stmt {
            Statement::Query(q) => {
                let select_into = matches!(q.body.as_ref(), SetExpr::Select(s) if s.into.is_some());
                if select_into {
                    self.kind("SELECT INTO");
                    self.need(Grant::Ddl, "SELECT INTO (it creates a table)");
                    let out = self.query(q, Role::Ddl)?;
                    self.emit(&out, Role::Ddl);
                    return Ok(());
                }
                self.kind("SELECT");
                let out = self.query(q, Role::Top)?;
                self.emit(&out, Role::Top);
                Ok(())
            }
            Statement::Insert(ins) => {
                self.kind("INSERT");
                let out = self.insert(ins)?;
                self.emit(&out, Role::Top);
                Ok(())
            }
            Statement::Update(u) => {
                self.kind("UPDATE");
                let out = self.update(u)?;
                self.emit(&out, Role::Top);
                Ok(())
            }
            Statement::Delete(d) => {
                self.kind("DELETE");
                let out = self.delete(d)?;
                self.emit(&out, Role::Top);
                Ok(())
            }
            Statement::Merge(m) => {
                self.kind("MERGE");
                self.merge(m)
            }
            Statement::Copy {
                source,
                to,
                target,
                options: _,
                legacy_options: _,
                values,
            } => {
                self.kind("COPY");
                if !values.is_empty() {
                    return Err(unsupported("COPY with inline data"));
                }
                self.copy(source, *to, target)
            }
            Statement::Explain {
                describe_alias,
                statement,
                ..
            } => {
                if !matches!(describe_alias, sqlparser::ast::DescribeAlias::Explain) {
                    return Err(unsupported("DESCRIBE"));
                }
                // Plans expose statistics and EXPLAIN ANALYZE executes: the inner statement is
                // judged as if it ran.
                self.kind("EXPLAIN");
                if matches!(**statement, Statement::Execute { .. }) {
                    // The prepared statement was decided (and possibly rewritten) at PREPARE;
                    // its plan would show the rows its row filters remove.
                    self.refuse(
                        "EXPLAIN of a prepared statement (its plan can reveal filtered rows)",
                    );
                    return Ok(());
                }
                self.statement(statement)
            }
            Statement::Prepare { statement, .. } => {
                self.kind("PREPARE");
                self.statement(statement)
            }
            Statement::Execute {
                name,
                parameters,
                immediate,
                into,
                using,
                output,
                default,
                ..
            } => {
                if *immediate || !into.is_empty() || !using.is_empty() || *output || *default {
                    return Err(unsupported("EXECUTE form"));
                }
                if name.is_none() {
                    return Err(unsupported("EXECUTE without a name"));
                }
                self.kind("EXECUTE");
                // The prepared statement was decided at PREPARE; its parameters are
                // expressions that may hold subqueries.
                self.scopes.push_level(Level::default());
                let cx = Cx::new(Clause::FunctionArg, "an EXECUTE parameter");
                for p in parameters {
                    self.expr(p, cx)?;
                }
                self.scopes.pop_level();
                Ok(())
            }
            Statement::Deallocate { .. } => self.no_data("DEALLOCATE"),
            Statement::Declare { stmts } => {
                self.kind("DECLARE");
                let [d] = stmts.as_slice() else {
                    return Err(unsupported("DECLARE of several names"));
                };
                match (&d.declare_type, &d.for_query) {
                    (Some(DeclareType::Cursor), Some(q)) if d.assignment.is_none() => {
                        let out = self.query(q, Role::Top)?;
                        self.emit(&out, Role::Top);
                        Ok(())
                    }
                    _ => Err(unsupported("DECLARE form")),
                }
            }
            Statement::Fetch { into: None, .. } => self.no_data("FETCH"),
            Statement::Close { .. } => self.no_data("CLOSE"),
            Statement::StartTransaction {
                statements,
                exception,
                ..
            } => {
                if !statements.is_empty() || exception.is_some() {
                    return Err(unsupported("BEGIN ... END block"));
                }
                self.no_data("BEGIN")
            }
            Statement::Commit { .. } => self.no_data("COMMIT"),
            Statement::Rollback { .. } => self.no_data("ROLLBACK"),
            Statement::Savepoint { .. } => self.no_data("SAVEPOINT"),
            Statement::ReleaseSavepoint { .. } => self.no_data("RELEASE"),
            Statement::ShowVariable { .. } => self.no_data("SHOW"),
            Statement::LISTEN { .. } => self.no_data("LISTEN"),
            Statement::UNLISTEN { .. } => self.no_data("UNLISTEN"),
            Statement::NOTIFY { .. } => self.no_data("NOTIFY"),
            Statement::Discard { .. } => self.no_data("DISCARD"),
            Statement::Set(set) => self.set(set),
            Statement::Reset(r) => self.reset(&r.reset),
            Statement::CreateView(cv) => {
                self.kind(if cv.materialized {
                    "CREATE MATERIALIZED VIEW"
                } else {
                    "CREATE VIEW"
                });
                self.need(Grant::Ddl, "CREATE VIEW");
                let out = self.query(&cv.query, Role::Ddl)?;
                self.emit(&out, Role::Ddl);
                Ok(())
            }
            Statement::CreateTable(ct) => {
                self.kind("CREATE TABLE");
                self.need(Grant::Ddl, "CREATE TABLE");
                if let Some(q) = &ct.query {
                    let out = self.query(q, Role::Ddl)?;
                    self.emit(&out, Role::Ddl);
                }
                Ok(())
            }
            Statement::CreateIndex(ci) => {
                self.kind("CREATE INDEX");
                self.need(Grant::Ddl, "CREATE INDEX");
                let rel = self.catalog_relation(&name_parts(&ci.table_name)?)?;
                let rte = self.plain_rte(rel, None);
                self.scopes.push_level(Level {
                    nodes: vec![Node::Rte(rte)],
                    hidden: false,
                });
                let cx = Cx::new(Clause::Ddl, "CREATE INDEX");
                for c in &ci.columns {
                    self.expr(&c.column.expr, cx)?;
                }
                for i in &ci.include {
                    self.expr(&sqlparser::ast::Expr::Identifier(i.clone()), cx)?;
                }
                if let Some(p) = &ci.predicate {
                    self.expr(p, cx)?;
                }
                self.scopes.pop_level();
                Ok(())
            }
            Statement::AlterTable(at) => {
                self.kind("ALTER TABLE");
                self.need(Grant::Ddl, "ALTER TABLE");
                self.alter_table(&at.name, &at.operations)
            }
            Statement::AlterSchema(s) => {
                self.kind("ALTER SCHEMA");
                self.need(Grant::Ddl, "ALTER SCHEMA");
                let parts = name_parts(&s.name)?;
                for op in &s.operations {
                    if matches!(op, AlterSchemaOperation::Rename { .. }) {
                        if let Some(schema) = parts.last() {
                            // Renaming a schema renames every relation in it.
                            let tagged: Vec<QualifiedName> = self
                                .env
                                .policy
                                .relations
                                .keys()
                                .filter(|q| &q.schema == schema)
                                .cloned()
                                .collect();
                            for q in tagged {
                                self.out.ddl_columns.push((q, None));
                            }
                        }
                    }
                }
                Ok(())
            }
            Statement::Drop { .. }
            | Statement::DropFunction(_)
            | Statement::DropDomain(_)
            | Statement::DropPolicy(_)
            | Statement::DropTrigger(_)
            | Statement::DropExtension(_)
            | Statement::DropOperator(_)
            | Statement::DropOperatorFamily(_)
            | Statement::DropOperatorClass(_)
            | Statement::DropProcedure { .. } => {
                self.kind("DROP");
                self.need(Grant::Ddl, "DROP");
                Ok(())
            }
            Statement::Truncate(_) => self.ddl("TRUNCATE"),
            Statement::Comment { .. } => self.ddl("COMMENT"),
            Statement::Grant(_) => self.ddl("GRANT"),
            Statement::Revoke(_) => self.ddl("REVOKE"),
            Statement::Vacuum(_) => self.ddl("VACUUM"),
            Statement::Analyze(_) => self.ddl("ANALYZE"),
            Statement::Lock(_) => self.ddl("LOCK"),
            Statement::CreateSchema { .. } => self.ddl("CREATE SCHEMA"),
            Statement::CreateSequence { .. } => self.ddl("CREATE SEQUENCE"),
            Statement::CreateType { .. } => self.ddl("CREATE TYPE"),
            Statement::CreateDomain(_) => self.ddl("CREATE DOMAIN"),
            Statement::CreateRole(_) => self.ddl("CREATE ROLE"),
            Statement::AlterRole { .. } => self.ddl("ALTER ROLE"),
            Statement::CreatePolicy(_) => self.ddl("CREATE POLICY"),
            Statement::AlterPolicy(_) => self.ddl("ALTER POLICY"),
            Statement::AlterType(_) => self.ddl("ALTER TYPE"),
            Statement::AlterIndex { .. } => self.ddl("ALTER INDEX"),
            Statement::CreateDatabase { .. } => self.ddl("CREATE DATABASE"),
            Statement::CreateFunction(_) => self.procedural("CREATE FUNCTION"),
            Statement::CreateProcedure { .. } => self.procedural("CREATE PROCEDURE"),
            Statement::CreateTrigger(_) => self.procedural("CREATE TRIGGER"),
            Statement::AlterFunction(_) => self.procedural("ALTER FUNCTION"),
            Statement::CreateExtension(_) => self.procedural("CREATE EXTENSION"),
            Statement::CreateServer(_) => self.procedural("CREATE SERVER"),
            Statement::Call(_) => self.procedural("CALL"),
            _ => Err(unsupported("this kind of statement")),
        }
    }

    fn ddl(&mut self, kind: &str) -> Result<(), AnalyseError> {
        self.kind(kind);
        self.need(Grant::Ddl, kind);
        Ok(())
    }

    fn procedural(&mut self, kind: &str) -> Result<(), AnalyseError> {
        self.kind(kind);
        self.need(Grant::ProceduralCode, kind);
        Ok(())
    }

    /// Record what the consumer of a query's output does with it.
    pub fn emit(&mut self, out: &RelOut, role: Role) {
        match role {
            Role::Derived => {}
            Role::SubqueryExpr | Role::WriteSource | Role::Ddl => {
                let (clause, place) = match role {
                    Role::SubqueryExpr => (Clause::Subquery, "a subquery"),
                    Role::WriteSource => (Clause::WriteSource, "INSERT ... SELECT"),
                    _ => (Clause::Ddl, "the query of a DDL statement"),
                };
                for c in &out.columns {
                    self.record(&c.sources, clause, place);
                }
            }
            Role::Top => self.emit_top(out),
        }
    }

    fn emit_top(&mut self, out: &RelOut) {
        let mut targets: Vec<SlotTarget> = Vec::new();
        match &out.items {
            Some(items) => {
                for item in items {
                    match item {
                        ItemOut::Bare(r) => targets.push(SlotTarget::Item(*r)),
                        ItemOut::Expr => targets.push(SlotTarget::Fixed),
                        ItemOut::Star { range, cols } => {
                            let group = self.out.star_groups.len();
                            let first_slot = self.out.slots.len() + targets.len();
                            self.out.star_groups.push(StarGroup {
                                range: *range,
                                columns: cols
                                    .iter()
                                    .enumerate()
                                    .map(|(i, (q, c))| (q.clone(), c.name.clone(), first_slot + i))
                                    .collect(),
                            });
                            targets.extend(cols.iter().map(|_| SlotTarget::Star(group)));
                        }
                    }
                }
            }
            None => targets.extend(out.columns.iter().map(|_| SlotTarget::Fixed)),
        }
        for (c, target) in out.columns.iter().zip(targets) {
            let slot = self.out.slots.len();
            let mask_type = if target == SlotTarget::Fixed {
                None
            } else {
                c.direct.clone()
            };
            self.out.slots.push(OutputSlot {
                name: c.name.clone(),
                mask_type,
                target,
            });
            self.out.output_names.push(c.name.clone());
            for key in &c.sources {
                self.out.uses.push(super::Use {
                    key: key.clone(),
                    clause: Clause::Output,
                    place: "the output",
                    slot: Some(slot),
                });
            }
        }
    }

    fn copy(
        &mut self,
        source: &CopySource,
        to: bool,
        target: &CopyTarget,
    ) -> Result<(), AnalyseError> {
        match target {
            CopyTarget::Stdout if to => {}
            CopyTarget::Stdin if !to => {}
            CopyTarget::File { .. } | CopyTarget::Program { .. } => {
                self.refuse("COPY to or from a server file or program");
                return Ok(());
            }
            _ => return Err(unsupported("COPY direction")),
        }
        match source {
            CopySource::Query(q) => {
                if !to {
                    return Err(unsupported("COPY (query) FROM"));
                }
                let out = self.query(q, Role::Top)?;
                self.emit(&out, Role::Top);
                Ok(())
            }
            CopySource::Table {
                table_name,
                columns,
            } => {
                let rel = self.catalog_relation(&name_parts(table_name)?)?;
                if !matches!(
                    rel.kind,
                    RelationKind::Table | RelationKind::PartitionedTable
                ) {
                    return Err(unsupported("COPY of a relation that is not a table"));
                }
                let all = self.relation_columns(rel, None);
                let chosen: Vec<ColInfo> = if columns.is_empty() {
                    all
                } else {
                    columns
                        .iter()
                        .map(|c| {
                            let n = fold(c);
                            all.iter().find(|x| x.name == n).cloned().ok_or_else(|| {
                                AnalyseError::UnknownColumn(format!("{}.{n}", rel.name))
                            })
                        })
                        .collect::<Result<_, _>>()?
                };
                if !to {
                    self.need(Grant::CopyFrom, "COPY ... FROM");
                    if is_system_schema(&rel.name.schema) {
                        self.refuse(format!("writing to system relation {}", rel.name));
                    }
                    for c in &chosen {
                        self.record(&c.sources, Clause::Write, "COPY ... FROM");
                    }
                    return Ok(());
                }
                let idents = name_idents(table_name)?;
                let mut span = idents
                    .iter()
                    .map(|i| i.span)
                    .reduce(|a, b| a.union(&b))
                    .ok_or_else(|| unsupported("empty table name"))?;
                if let Some(last) = columns.last() {
                    span = span.union(&last.span);
                }
                let mut range = self.range(span)?;
                if !columns.is_empty() {
                    // Include the closing parenthesis of the column list.
                    let rest = &self.text()[range.1..];
                    let skip = rest.len() - rest.trim_start().len();
                    if rest.trim_start().starts_with(')') {
                        range.1 += skip + 1;
                    } else {
                        return Err(unsupported("COPY column list"));
                    }
                }
                let mut plan_cols = Vec::new();
                for c in &chosen {
                    let slot = self.out.slots.len();
                    self.out.slots.push(OutputSlot {
                        name: c.name.clone(),
                        mask_type: c.direct.clone(),
                        target: SlotTarget::Copy,
                    });
                    self.out.output_names.push(c.name.clone());
                    for key in &c.sources {
                        self.out.uses.push(super::Use {
                            key: key.clone(),
                            clause: Clause::Output,
                            place: "COPY ... TO",
                            slot: Some(slot),
                        });
                    }
                    plan_cols.push((c.name.clone(), slot));
                }
                self.out.copy = Some(CopyPlan {
                    relation: rel.name.clone(),
                    range,
                    columns: plan_cols,
                });
                Ok(())
            }
        }
    }

    fn set(&mut self, set: &Set) -> Result<(), AnalyseError> {
        self.kind("SET");
        self.out.no_data = true;
        match set {
            Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = name_parts(variable)?.join(".");
                if PINNED_PARAMETERS.contains(&name.as_str()) {
                    // Allowed or refused depending on the value: 'UTF8' and 'LATIN1' have
                    // the same shape, so this decision must never be served from the cache.
                    self.out.literal_sensitive = true;
                }
                if !sets_pinned_value(&name, values) {
                    self.parameter(&name);
                }
                Ok(())
            }
            Set::SetRole { .. } => {
                self.need(Grant::SessionControl, "SET ROLE");
                Ok(())
            }
            Set::SetSessionAuthorization(_) => {
                self.need(Grant::SessionControl, "SET SESSION AUTHORIZATION");
                Ok(())
            }
            Set::SetTimeZone { .. } | Set::SetTransaction { .. } => Ok(()),
            Set::SetNames { .. } | Set::SetNamesDefault {} => {
                self.refuse("parameter client_encoding is pinned by the proxy");
                Ok(())
            }
            _ => Err(unsupported("SET form")),
        }
    }

    fn parameter(&mut self, name: &str) {
        if PINNED_PARAMETERS.contains(&name) {
            self.refuse(format!("parameter {name} is pinned by the proxy"));
        } else if SESSION_CONTROL_PARAMETERS.contains(&name) {
            self.need(Grant::SessionControl, format!("changing {name}"));
        }
    }

    fn reset(&mut self, r: &Reset) -> Result<(), AnalyseError> {
        self.kind("RESET");
        self.out.no_data = true;
        match r {
            Reset::ALL => Ok(()),
            Reset::SessionAuthorization => {
                self.need(Grant::SessionControl, "RESET SESSION AUTHORIZATION");
                Ok(())
            }
            Reset::ConfigurationParameter(n) => {
                let name = name_parts(n)?.join(".");
                self.parameter(&name);
                Ok(())
            }
        }
    }

    fn alter_table(
        &mut self,
        name: &ObjectName,
        ops: &[AlterTableOperation],
    ) -> Result<(), AnalyseError> {
        let parts = name_parts(name)?;
        // The table may not be in the snapshot yet (created in this transaction): judge every
        // relation the name could denote.
        let candidates: Vec<QualifiedName> = match parts.as_slice() {
            [n] => {
                let mut v: Vec<QualifiedName> = self
                    .env
                    .catalog
                    .search_path
                    .iter()
                    .map(|s| QualifiedName::new(s.as_str(), n.as_str()))
                    .collect();
                if let Some(r) = self.env.catalog.resolve_unqualified(n) {
                    v.push(r.name.clone());
                }
                v
            }
            [s, n] => vec![QualifiedName::new(s.as_str(), n.as_str())],
            _ => return Err(unsupported("ALTER TABLE name")),
        };
        for op in ops {
            let cols: Vec<Option<String>> = match op {
                AlterTableOperation::RenameColumn {
                    old_column_name, ..
                } => vec![Some(fold(old_column_name))],
                AlterTableOperation::RenameTable { .. } => vec![None],
                AlterTableOperation::DropColumn { column_names, .. } => {
                    column_names.iter().map(|c| Some(fold(c))).collect()
                }
                AlterTableOperation::AlterColumn { column_name, .. } => {
                    vec![Some(fold(column_name))]
                }
                AlterTableOperation::ChangeColumn { .. }
                | AlterTableOperation::ModifyColumn { .. } => {
                    return Err(unsupported("ALTER TABLE operation"))
                }
                _ => Vec::new(),
            };
            for c in cols {
                for q in &candidates {
                    self.out.ddl_columns.push((q.clone(), c.clone()));
                }
            }
        }
        Ok(())
    }
}

/// `SET client_encoding TO 'UTF8'` and `SET standard_conforming_strings = on` set a pinned
/// parameter to the value the proxy pins it to: a no-op drivers issue routinely. Only a single
/// plain literal or word qualifies (the token-level check in `engine::pinned` agrees).
fn sets_pinned_value(name: &str, values: &[sqlparser::ast::Expr]) -> bool {
    use sqlparser::ast::Expr;
    let [value] = values else {
        return false;
    };
    let text = match value {
        Expr::Value(v) => match &v.value {
            sqlparser::ast::Value::SingleQuotedString(s) => s.to_ascii_lowercase(),
            sqlparser::ast::Value::Boolean(b) => b.to_string(),
            sqlparser::ast::Value::Number(n, _) => n.to_string(),
            _ => return false,
        },
        Expr::Identifier(ident) if ident.quote_style.is_none() => ident.value.to_ascii_lowercase(),
        _ => return false,
    };
    match name {
        "client_encoding" => {
            let cleaned: String = text.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            matches!(cleaned.as_str(), "utf8" | "unicode")
        }
        "standard_conforming_strings" => matches!(text.as_str(), "on" | "true" | "yes" | "1"),
        _ => false,
    }
}

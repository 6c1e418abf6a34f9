//! Views: a view's columns carry the lineage of the base columns feeding them, and every use
//! inside its definition (WHERE, joins, GROUP BY, expressions) is a use by whoever scans the
//! view. Definitions are parsed from the catalog snapshot and analysed like derived tables,
//! with a depth limit and cycle detection. Also the row-filter condition text shared by the
//! rewriter and the recogniser of already-filtered scans.

use std::rc::Rc;

use sqlparser::ast::{Expr, SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::catalog::{QualifiedName, Relation};
use crate::engine::lexing;
use crate::policy::Grant;

use super::query::Role;
use super::scope::{ColInfo, ColumnKey};
use super::{AnalyseError, Analyser, Scan, Use, MAX_VIEW_DEPTH};

/// What scanning a view means, computed once per view and statement.
#[derive(Debug, Clone)]
pub struct ViewInfo {
    pub name: QualifiedName,
    /// The definition as it is inlined (`pg_get_viewdef` without the trailing semicolon).
    pub text: String,
    /// Per catalog column of the view: its lineage.
    pub columns: Vec<ColInfo>,
    /// Uses inside the definition.
    pub uses: Vec<Use>,
    /// Scans inside the definition (byte ranges within `text`).
    pub scans: Vec<Scan>,
    pub grants: Vec<(Grant, String)>,
    pub refusals: Vec<String>,
    pub literal_sensitive: bool,
    /// The definition's own output names (they must equal the view's column names for the
    /// definition to be inlined).
    pub output_names: Vec<String>,
}

/// `(f1) AND (f2)`: the condition a row-filtered scan carries, in policy order.
pub fn filter_condition(filters: &[&str]) -> String {
    filters
        .iter()
        .map(|f| format!("({f})"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The parsed form of [`filter_condition`], for recognising filtered scans.
pub fn filter_expr(filters: &[&str]) -> Option<Expr> {
    let sql = format!("SELECT 1 WHERE {}", filter_condition(filters));
    lexing::lex(&sql).ok()?;
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?;
    match stmts.pop()? {
        Statement::Query(q) => match *q.body {
            SetExpr::Select(s) => s.selection,
            _ => None,
        },
        _ => None,
    }
}

fn view_error(view: &QualifiedName, why: impl Into<String>) -> AnalyseError {
    AnalyseError::View {
        view: view.to_string(),
        why: why.into(),
    }
}

impl Analyser<'_, '_> {
    /// Analyse a view's definition (cached per statement).
    pub fn view_info(&mut self, rel: &Relation) -> Result<Rc<ViewInfo>, AnalyseError> {
        if let Some(info) = self.view_cache.borrow().get(&rel.name) {
            return Ok(info.clone());
        }
        if self.view_stack.contains(&rel.name) {
            return Err(view_error(&rel.name, "it refers to itself"));
        }
        if self.view_stack.len() >= MAX_VIEW_DEPTH {
            return Err(view_error(&rel.name, "views nest too deeply"));
        }
        let def = rel
            .view_definition
            .as_deref()
            .ok_or_else(|| view_error(&rel.name, "no definition in the catalog snapshot"))?;
        let text = def.trim().trim_end_matches(';').trim_end().to_owned();
        let mut info = self.analyse_view_text(rel, &text)?;
        info.text = text;
        let info = Rc::new(info);
        self.view_cache
            .borrow_mut()
            .insert(rel.name.clone(), info.clone());
        Ok(info)
    }

    fn analyse_view_text(&mut self, rel: &Relation, text: &str) -> Result<ViewInfo, AnalyseError> {
        lexing::lex(text).map_err(|e| view_error(&rel.name, e.to_string()))?;
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, text)
            .map_err(|e| view_error(&rel.name, format!("definition does not parse: {e}")))?;
        let (Some(Statement::Query(q)), true) = (stmts.pop(), stmts.is_empty()) else {
            return Err(view_error(&rel.name, "definition is not a single query"));
        };
        let mut sub = Analyser::new(self.env, text);
        sub.view_stack = self.view_stack.clone();
        sub.view_stack.push(rel.name.clone());
        sub.view_cache = self.view_cache.clone();
        let out = sub.query(&q, Role::Derived)?;
        if out.columns.len() != rel.columns.len() {
            return Err(view_error(
                &rel.name,
                "definition and catalog disagree on the number of columns",
            ));
        }
        let tagged_view = self.env.policy.relations.contains_key(&rel.name);
        let columns = rel
            .columns
            .iter()
            .zip(&out.columns)
            .map(|(cat, def)| {
                let mut sources = def.sources.clone();
                if tagged_view {
                    sources.insert(ColumnKey {
                        table: rel.name.clone(),
                        column: cat.name.clone(),
                    });
                }
                ColInfo {
                    name: cat.name.clone(),
                    sources,
                    direct: def.direct.as_ref().map(|_| cat.type_name.clone()),
                }
            })
            .collect();
        Ok(ViewInfo {
            name: rel.name.clone(),
            text: String::new(),
            columns,
            uses: sub.out.uses,
            scans: sub.out.scans,
            grants: sub.out.grants,
            refusals: sub.out.refusals,
            literal_sensitive: sub.out.literal_sensitive,
            output_names: out.columns.iter().map(|c| c.name.clone()).collect(),
        })
    }
}

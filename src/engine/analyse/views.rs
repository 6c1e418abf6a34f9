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

/// Whether any of the filters holds a literal (then recognising an already-filtered scan
/// depends on literal values of the statement).
pub fn filter_has_literals(filters: &[&str]) -> bool {
    filters.iter().any(|f| {
        lexing::lex(f)
            .map(|l| l.tokens.iter().any(|t| t.is_literal()))
            .unwrap_or(true)
    })
}

/// The parsed form of [`filter_condition`], for recognising filtered scans.
pub fn filter_expr(filters: &[&str]) -> Option<Expr> {
    // Each filter must be one self-contained expression: parentheses balanced and never
    // closing more than it opened, no statement separator.
    for f in filters {
        let lexed = lexing::lex(f).ok()?;
        let mut depth = 0i32;
        for i in 0..lexed.len() {
            match lexed.text(i) {
                "(" | "[" => depth += 1,
                ")" | "]" => depth -= 1,
                ";" => return None,
                _ => {}
            }
            if depth < 0 {
                return None;
            }
        }
        if depth != 0 || lexed.is_empty() {
            return None;
        }
    }
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
                // A view column is a catalog column: masking it at the top level replaces its
                // whole value, however the definition computes it (computations over
                // forbidden data are uses inside the definition and block on their own).
                ColInfo {
                    name: cat.name.clone(),
                    sources,
                    direct: Some(cat.type_name.clone()),
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

#[cfg(test)]
mod tests {
    use crate::catalog::{Catalog, Column, QualifiedName, Relation, RelationKind};
    use crate::engine::fixtures::{example_catalog, example_policy};
    use crate::engine::{decide, Decision, SessionView};
    use crate::policy::CompiledPolicy;

    fn view(c: &mut Catalog, name: &str, cols: &[(&str, &str)], def: &str) {
        c.insert(Relation {
            name: QualifiedName::new("public", name),
            kind: RelationKind::View,
            columns: cols
                .iter()
                .map(|(n, t)| Column {
                    name: (*n).into(),
                    type_name: (*t).into(),
                    type_oid: 0,
                })
                .collect(),
            view_definition: Some(def.into()),
        });
    }

    fn catalog() -> Catalog {
        let mut c = example_catalog();
        view(
            &mut c,
            "v_where",
            &[("id", "bigint")],
            " SELECT users.id\n   FROM users\n  WHERE users.phone_2fa IS NOT NULL;",
        );
        view(
            &mut c,
            "v_over_view",
            &[("id", "bigint"), ("p", "text")],
            " SELECT user_security_contacts.id,\n    user_security_contacts.phone_2fa AS p\n   FROM user_security_contacts;",
        );
        view(
            &mut c,
            "v_computed",
            &[("id", "bigint"), ("e", "text")],
            " SELECT users.id,\n    lower(users.email_login) AS e\n   FROM users;",
        );
        view(
            &mut c,
            "v_counts",
            &[("country", "character(2)"), ("n", "bigint")],
            " SELECT users.country,\n    count(*) AS n\n   FROM users\n  GROUP BY users.country;",
        );
        view(
            &mut c,
            "v_a",
            &[("id", "bigint")],
            " SELECT v_b.id FROM v_b;",
        );
        view(
            &mut c,
            "v_b",
            &[("id", "bigint")],
            " SELECT v_a.id FROM v_a;",
        );
        view(
            &mut c,
            "v_broken",
            &[("id", "bigint")],
            " SELEC id FROM users;",
        );
        c.insert(Relation {
            name: QualifiedName::new("public", "v_nodef"),
            kind: RelationKind::View,
            columns: vec![Column {
                name: "id".into(),
                type_name: "bigint".into(),
                type_oid: 20,
            }],
            view_definition: None,
        });
        let mut prev = "users".to_owned();
        for i in 0..20 {
            let name = format!("v_chain{i}");
            view(
                &mut c,
                &name,
                &[("id", "bigint")],
                &format!(" SELECT {prev}.id FROM {prev};"),
            );
            prev = name;
        }
        c
    }

    fn run_with(policy: &CompiledPolicy, service: &str, sql: &str) -> Decision {
        let svc = policy.service(service).unwrap();
        decide(
            sql,
            &catalog(),
            policy,
            &SessionView {
                service: svc,
                purpose: &svc.purposes[0],
            },
        )
    }

    fn run(service: &str, sql: &str) -> Decision {
        run_with(&example_policy(), service, sql)
    }

    fn rewritten(d: Decision) -> String {
        match d {
            Decision::Rewrite { sql, .. } => sql,
            other => panic!("expected a rewrite, got {other:?}"),
        }
    }

    fn block_message(d: Decision) -> String {
        match d {
            Decision::Block { error, .. } => error.message,
            other => panic!("expected a block, got {other:?}"),
        }
    }

    #[test]
    fn uses_inside_a_view_count_for_whoever_scans_it() {
        let msg = block_message(run("analytics-service", "SELECT id FROM v_where"));
        assert!(msg.contains("public.users.phone_2fa"), "{msg}");
        assert!(msg.contains("in WHERE"), "{msg}");
        assert!(run("support-service", "SELECT id FROM v_where").is_allow());
    }

    #[test]
    fn lineage_follows_views_over_views() {
        assert_eq!(
            rewritten(run("analytics-service", "SELECT id, p FROM v_over_view")),
            "SELECT id, NULL::text AS \"p\" FROM v_over_view"
        );
        let msg = block_message(run(
            "analytics-service",
            "SELECT id FROM v_over_view WHERE p LIKE '+31%'",
        ));
        assert!(msg.contains("public.users.phone_2fa"), "{msg}");
    }

    #[test]
    fn computed_view_columns_are_uses_and_aggregates_of_allowed_data_pass() {
        assert!(run("analytics-service", "SELECT id FROM v_computed").is_block());
        assert!(run("analytics-service", "SELECT country, n FROM v_counts").is_allow());
    }

    #[test]
    fn cycles_missing_and_broken_definitions_and_deep_chains_block() {
        assert!(
            block_message(run("analytics-service", "SELECT id FROM v_a"))
                .contains("refers to itself")
        );
        assert!(run("analytics-service", "SELECT id FROM v_nodef").is_block());
        assert!(run("analytics-service", "SELECT id FROM v_broken").is_block());
        assert!(run("analytics-service", "SELECT id FROM v_chain10").is_allow());
        assert!(
            block_message(run("analytics-service", "SELECT id FROM v_chain19"))
                .contains("too deeply")
        );
    }

    #[test]
    fn nested_views_are_inlined_with_filters() {
        assert_eq!(
            rewritten(run("discovery-service", "SELECT id FROM v_over_view")),
            "SELECT id FROM (SELECT user_security_contacts.id,\n    user_security_contacts.phone_2fa AS p\n   FROM (SELECT users.id,\n    users.handle,\n    users.email_login,\n    users.phone_2fa\n   FROM (SELECT * FROM \"public\".\"users\" WHERE (discoverable)) AS \"users\") AS \"user_security_contacts\") AS \"v_over_view\""
        );
    }

    #[test]
    fn a_view_tagged_in_the_policy_is_protected_by_its_own_tags() {
        let policy = crate::policy::PolicyBuilder::new()
            .purpose("analytics")
            .service("a", &["analytics"], &[])
            .tag_column(
                &QualifiedName::new("public", "v_counts"),
                "n",
                &["security"],
            )
            .build();
        assert!(run_with(&policy, "a", "SELECT country FROM v_counts").is_allow());
        assert!(run_with(&policy, "a", "SELECT country FROM v_counts WHERE n > 3").is_block());
        assert_eq!(
            rewritten(run_with(&policy, "a", "SELECT n FROM v_counts")),
            "SELECT NULL::bigint AS \"n\" FROM v_counts"
        );
    }

    #[test]
    fn filter_text_and_expression_agree() {
        let e = super::filter_expr(&["a", "b = 1"]).unwrap();
        assert_eq!(e.to_string(), "(a) AND (b = 1)");
        assert_eq!(super::filter_condition(&["x"]), "(x)");
        assert!(super::filter_expr(&["true) OR (1 = 1"]).is_none());
        assert!(super::filter_expr(&["a; DROP TABLE x"]).is_none());
        assert!(super::filter_expr(&[""]).is_none());
        assert!(super::filter_has_literals(&["a", "country = 'NL'"]));
        assert!(!super::filter_has_literals(&["discoverable"]));
    }
}

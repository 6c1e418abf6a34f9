//! Comparing a compiled policy with a catalog snapshot.
//!
//! A policy can be valid on its own and still not match the database: a tag on a column the
//! database does not have protects nothing and usually means a typo. These checks run
//! wherever a snapshot is available (proxy start, catalog refresh, offline with a snapshot
//! file) and point back at the policy file and line of each problem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::Expr;

use super::compiled::{CompiledPolicy, PolicyItem, SourceLocation};
use super::load::PolicyError;
use super::validate::parse_row_filter;
use crate::catalog::{Catalog, RelationKind};

/// How serious a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingLevel {
    /// The policy does not match the database; a proxy must not start with it.
    Error,
    /// Probably not what was meant, but safe.
    Warning,
}

/// A mismatch between a policy and a catalog snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: FindingLevel,
    pub item: PolicyItem,
    /// Where the item is defined, when the policy was loaded from files.
    pub location: Option<SourceLocation>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            FindingLevel::Error => "error",
            FindingLevel::Warning => "warning",
        };
        match &self.location {
            Some(l) => write!(f, "{l}: {level}: {}", self.message),
            None => write!(f, "{level}: {}", self.message),
        }
    }
}

/// Compare a policy with a catalog snapshot: tagged or filtered relations and tagged columns
/// that do not exist are errors (a tag on a column the database does not have protects
/// nothing and usually means a typo); so are row filters naming columns the relation lacks.
pub fn check_against_catalog(policy: &CompiledPolicy, catalog: &Catalog) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut push = |level, item: PolicyItem, message: String| {
        findings.push(Finding {
            level,
            location: policy.source_of(&item).cloned(),
            item,
            message,
        });
    };
    let relations: BTreeMap<_, _> = policy.relations.iter().collect();
    for (qname, rel_policy) in relations {
        let Some(relation) = catalog.relation(qname) else {
            push(
                FindingLevel::Error,
                PolicyItem::Relation(qname.clone()),
                format!("relation `{qname}` does not exist in the database"),
            );
            continue;
        };
        if relation.kind == RelationKind::View {
            push(
                FindingLevel::Warning,
                PolicyItem::Relation(qname.clone()),
                format!(
                    "`{qname}` is a view: its columns already carry the tags of the columns it \
                     reads; tag the underlying tables"
                ),
            );
        }
        for column in rel_policy.column_tags.keys() {
            if relation.column(column).is_none() {
                push(
                    FindingLevel::Error,
                    PolicyItem::Column(qname.clone(), column.clone()),
                    format!("column `{column}` does not exist in `{qname}`"),
                );
            }
        }
        for (purpose, filter) in &rel_policy.row_filters {
            let item = PolicyItem::RowFilter(qname.clone(), purpose.clone());
            let expr = match parse_row_filter(filter) {
                Ok(e) => e,
                Err(why) => {
                    push(FindingLevel::Error, item, why);
                    continue;
                }
            };
            let (columns, has_subquery) = filter_identifiers(&expr);
            if has_subquery {
                push(
                    FindingLevel::Warning,
                    item,
                    format!(
                        "row filter of `{qname}` for `{purpose}` has a subquery; its column \
                         names were not checked"
                    ),
                );
                continue;
            }
            for column in columns {
                if relation.column(&column).is_none() {
                    push(
                        FindingLevel::Error,
                        item.clone(),
                        format!(
                            "row filter of `{qname}` for `{purpose}` names column `{column}`, \
                             which `{qname}` does not have"
                        ),
                    );
                }
            }
        }
    }
    findings
}

/// True when any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.level == FindingLevel::Error)
}

/// [`check_against_catalog`], with errors turned into one [`PolicyError`]; returns the
/// warnings when there is no error.
pub fn ensure_matches_catalog(
    policy: &CompiledPolicy,
    catalog: &Catalog,
) -> Result<Vec<Finding>, PolicyError> {
    let (errors, warnings): (Vec<_>, Vec<_>) = check_against_catalog(policy, catalog)
        .into_iter()
        .partition(|f| f.level == FindingLevel::Error);
    let errors = errors
        .into_iter()
        .map(|f| PolicyError::Invalid {
            location: f
                .location
                .unwrap_or_else(|| SourceLocation::file_only("<policy>")),
            key: item_key(&f.item),
            message: f.message,
        })
        .collect();
    match PolicyError::collect(errors) {
        Some(e) => Err(e),
        None => Ok(warnings),
    }
}

fn item_key(item: &PolicyItem) -> String {
    match item {
        PolicyItem::Purpose(p) => format!("purposes.{p}"),
        PolicyItem::Service(s) => format!("services.{s}"),
        PolicyItem::Relation(r) => format!("tables.{r}"),
        PolicyItem::Column(r, c) => format!("tables.{r}.columns.{c}"),
        PolicyItem::RowFilter(r, p) => format!("tables.{r}.row_filters.{p}"),
        PolicyItem::Defaults => "defaults".into(),
    }
}

/// Unqualified column names a row filter reads (folded as Postgres folds them), and whether
/// it has a subquery (whose names belong to other relations).
fn filter_identifiers(expr: &Expr) -> (BTreeSet<String>, bool) {
    let mut names = BTreeSet::new();
    let mut has_subquery = false;
    let _ = sqlparser::ast::visit_expressions(expr, |e| {
        match e {
            Expr::Identifier(ident) => {
                names.insert(match ident.quote_style {
                    Some(_) => ident.value.clone(),
                    None => ident.value.to_lowercase(),
                });
            }
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                has_subquery = true;
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    (names, has_subquery)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::catalog::{Column, QualifiedName, Relation};
    use crate::policy::{load_dir, load_sources};

    const PURPOSES: &str = "purposes:\n  security:\n    description: s\n  advertising:\n    \
                            description: a\n  discovery:\n    description: d\n";

    fn load(files: &[(&str, &str)]) -> CompiledPolicy {
        let sources: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(n, t)| (PathBuf::from(format!("pol/{n}")), (*t).to_owned()))
            .collect();
        load_sources(&sources).unwrap()
    }

    fn relation(schema: &str, name: &str, kind: RelationKind, columns: &[&str]) -> Relation {
        Relation {
            name: QualifiedName::new(schema, name),
            kind,
            columns: columns
                .iter()
                .map(|c| Column {
                    name: (*c).into(),
                    type_name: "text".into(),
                    type_oid: 25,
                })
                .collect(),
            view_definition: None,
        }
    }

    #[test]
    fn catalog_check_names_missing_tables_columns_and_filter_columns() {
        let tables = "\
tables:
  users:
    columns:
      phone_2fa: [security]
      phone_2fa_typo: [security]
    row_filters:
      discovery: discoverable AND \"Opted\"
      advertising: id IN (SELECT user_id FROM consents)
  ghosts:
    tags: [security]
  user_contacts:
    columns:
      phone_2fa: [security]
";
        let policy = load(&[("p.yaml", PURPOSES), ("t.yaml", tables)]);
        let mut catalog = Catalog::default();
        catalog.insert(relation(
            "public",
            "users",
            RelationKind::Table,
            &["id", "phone_2fa", "discoverable"],
        ));
        catalog.insert(relation(
            "public",
            "user_contacts",
            RelationKind::View,
            &["phone_2fa"],
        ));
        let findings = check_against_catalog(&policy, &catalog);
        let shown: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert!(has_errors(&findings));
        assert_eq!(
            shown.iter().filter(|s| s.contains(": error: ")).count(),
            3,
            "{shown:#?}"
        );
        assert!(shown.contains(
            &"pol/t.yaml:9:3: error: relation `public.ghosts` does not exist in the database"
                .to_owned()
        ));
        assert!(shown.contains(
            &"pol/t.yaml:5:7: error: column `phone_2fa_typo` does not exist in `public.users`"
                .to_owned()
        ));
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("pol/t.yaml:7:7: error:") && s.contains("`Opted`")),
            "{shown:#?}"
        );
        assert!(shown
            .iter()
            .any(|s| s.starts_with("pol/t.yaml:8:7: warning:") && s.contains("subquery")));
        assert!(shown
            .iter()
            .any(|s| s.starts_with("pol/t.yaml:11:3: warning:") && s.contains("is a view")));

        let err = ensure_matches_catalog(&policy, &catalog).unwrap_err();
        assert_eq!(err.errors().len(), 3);
        assert!(err
            .to_string()
            .contains("tables.public.users.columns.phone_2fa_typo"));
    }

    #[test]
    fn example_policy_matches_a_catalog_with_the_example_columns() {
        let policy = load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
        let mut catalog = Catalog::default();
        catalog.insert(relation(
            "public",
            "users",
            RelationKind::Table,
            &[
                "email_login",
                "phone_2fa",
                "password_hash",
                "marketing_email",
                "marketing_phone",
                "discoverable",
                "ads_opt_in",
            ],
        ));
        catalog.insert(relation(
            "public",
            "login_events",
            RelationKind::Table,
            &["ip"],
        ));
        catalog.insert(relation(
            "public",
            "advertiser_list_entries",
            RelationKind::Table,
            &["phone"],
        ));
        assert_eq!(check_against_catalog(&policy, &catalog), vec![]);
        assert_eq!(ensure_matches_catalog(&policy, &catalog).unwrap(), vec![]);
    }
}

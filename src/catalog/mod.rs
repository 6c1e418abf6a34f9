//! The catalog snapshot: what relations and columns exist upstream, with their types and, for
//! views, their definitions. The decision engine resolves every name against a snapshot; it
//! never queries the database itself, so a snapshot can be built by hand in tests or loaded
//! from a file for offline use.
//!
//! Names are stored exactly as Postgres stores them (already case-folded: unquoted identifiers
//! are lower case in `pg_catalog`).

use std::collections::BTreeMap;

pub mod load;
pub mod snapshot_file;

use serde::{Deserialize, Serialize};

/// `schema.name` of a relation, as stored in `pg_class`/`pg_namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedName {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// The kind of relation (`pg_class.relkind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    Table,
    PartitionedTable,
    View,
    MaterializedView,
    ForeignTable,
}

/// A column with its Postgres type as `format_type(atttypid, atttypmod)` prints it, which is
/// the spelling a `NULL::<type>` mask must use to give the client the same type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub type_name: String,
    pub type_oid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    pub name: QualifiedName,
    pub kind: RelationKind,
    /// Columns in `attnum` order (dropped and system columns excluded).
    pub columns: Vec<Column>,
    /// `pg_get_viewdef` for views and materialized views.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_definition: Option<String>,
}

impl Relation {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A function or procedure (`pg_proc`). Functions are opaque to the analyser: their bodies can
/// read any column, so anything outside the built-in `pg_catalog` set is decided by policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    pub name: QualifiedName,
    /// `pg_proc.prokind`: `f` function, `p` procedure, `a` aggregate, `w` window.
    pub kind: char,
    /// Implementation language (`internal`, `c`, `sql`, `plpgsql`, ...).
    pub language: String,
    /// `SECURITY DEFINER`: runs with its owner's rights.
    pub security_definer: bool,
}

/// A consistent snapshot of the upstream catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Every user-visible relation, by qualified name.
    pub relations: BTreeMap<QualifiedName, Relation>,
    /// The effective search path services run with (schemas in order; `pg_catalog` is
    /// implicitly searched first by Postgres unless listed).
    pub search_path: Vec<String>,
    /// Every function by qualified name (overloads collapse to one entry: the analyser only
    /// needs to know whether a name exists and where).
    #[serde(default)]
    pub functions: BTreeMap<QualifiedName, Function>,
    /// Changes whenever the snapshot's content changes; part of the decision cache key.
    pub version: u64,
}

impl Catalog {
    pub fn relation(&self, name: &QualifiedName) -> Option<&Relation> {
        self.relations.get(name)
    }

    /// Resolve an unqualified relation name the way Postgres does: `pg_catalog` first (when it
    /// is not explicitly placed in the path), then each schema of the search path in order.
    pub fn resolve_unqualified(&self, name: &str) -> Option<&Relation> {
        let implicit_catalog = !self.search_path.iter().any(|s| s == "pg_catalog");
        let implicit = implicit_catalog.then_some("pg_catalog");
        implicit
            .into_iter()
            .chain(self.search_path.iter().map(String::as_str))
            .find_map(|schema| self.relations.get(&QualifiedName::new(schema, name)))
    }

    pub fn insert(&mut self, relation: Relation) {
        self.relations.insert(relation.name.clone(), relation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(schema: &str, name: &str) -> Relation {
        Relation {
            name: QualifiedName::new(schema, name),
            kind: RelationKind::Table,
            columns: vec![Column {
                name: "id".into(),
                type_name: "bigint".into(),
                type_oid: 20,
            }],
            view_definition: None,
        }
    }

    #[test]
    fn unqualified_names_follow_search_path_order() {
        let mut catalog = Catalog {
            search_path: vec!["app".into(), "public".into()],
            ..Default::default()
        };
        catalog.insert(rel("public", "users"));
        assert_eq!(
            catalog
                .resolve_unqualified("users")
                .map(|r| r.name.schema.as_str()),
            Some("public")
        );
        catalog.insert(rel("app", "users"));
        assert_eq!(
            catalog
                .resolve_unqualified("users")
                .map(|r| r.name.schema.as_str()),
            Some("app")
        );
        assert!(catalog.resolve_unqualified("missing").is_none());
    }

    #[test]
    fn pg_catalog_is_searched_first_unless_placed() {
        let mut catalog = Catalog {
            search_path: vec!["public".into()],
            ..Default::default()
        };
        catalog.insert(rel("public", "pg_stats"));
        catalog.insert(rel("pg_catalog", "pg_stats"));
        assert_eq!(
            catalog
                .resolve_unqualified("pg_stats")
                .map(|r| r.name.schema.as_str()),
            Some("pg_catalog")
        );
    }
}

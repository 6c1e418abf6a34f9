//! The compiled, indexed policy the engine and the relay consult.
//!
//! YAML files are parsed into raw structs, validated, and compiled into a [`CompiledPolicy`]
//! (see `policy::load`). Tests build one directly with [`PolicyBuilder`]. Nothing here does
//! I/O: credentials are kept as *sources* and resolved by the auth module when used.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use crate::catalog::QualifiedName;

/// True when data allowed for `allowed` may be used by a session whose purpose is `requested`:
/// `requested` is `allowed` itself or lies below it in the dotted tree.
pub fn purpose_covers(allowed: &str, requested: &str) -> bool {
    requested == allowed
        || (requested.len() > allowed.len()
            && requested.starts_with(allowed)
            && requested.as_bytes()[allowed.len()] == b'.')
}

/// Catalog and statistics views that expose column values, other sessions' statements or
/// server files (DESIGN.md security rule 6). Untagged, they are usable by no purpose.
pub const PROTECTED_SYSTEM_RELATIONS: &[(&str, &str)] = &[
    ("pg_catalog", "pg_stats"),
    ("pg_catalog", "pg_stats_ext"),
    ("pg_catalog", "pg_stats_ext_exprs"),
    ("pg_catalog", "pg_statistic"),
    ("pg_catalog", "pg_statistic_ext_data"),
    ("pg_catalog", "pg_stat_activity"),
    ("pg_catalog", "pg_stat_statements"),
    ("public", "pg_stat_statements"),
    ("pg_catalog", "pg_stat_statements_info"),
    ("pg_catalog", "pg_prepared_statements"),
    ("pg_catalog", "pg_cursors"),
    ("pg_catalog", "pg_authid"),
    ("pg_catalog", "pg_shadow"),
    ("pg_catalog", "pg_user_mappings"),
    ("pg_catalog", "pg_largeobject"),
    ("pg_catalog", "pg_hba_file_rules"),
    ("pg_catalog", "pg_file_settings"),
    ("pg_catalog", "pg_replication_slots"),
    ("pg_catalog", "pg_stat_replication"),
    // Live/dead tuple counts include rows that row filters hide.
    ("pg_catalog", "pg_stat_all_tables"),
    ("pg_catalog", "pg_stat_user_tables"),
    ("pg_catalog", "pg_stat_xact_all_tables"),
    ("pg_catalog", "pg_stat_xact_user_tables"),
];

/// Columns of otherwise harmless catalogs that reveal the size of stored data (pages and
/// tuple estimates move when protected values change length). Untagged, usable by no purpose.
pub const PROTECTED_SYSTEM_COLUMNS: &[(&str, &str, &str)] = &[
    ("pg_catalog", "pg_class", "relpages"),
    ("pg_catalog", "pg_class", "reltuples"),
    ("pg_catalog", "pg_class", "relallvisible"),
];

pub fn is_protected_system_column(table: &QualifiedName, column: &str) -> bool {
    PROTECTED_SYSTEM_COLUMNS
        .iter()
        .any(|(s, t, c)| table.schema == *s && table.name == *t && column == *c)
}

pub fn is_protected_system_relation(table: &QualifiedName) -> bool {
    PROTECTED_SYSTEM_RELATIONS
        .iter()
        .any(|(s, n)| table.schema == *s && table.name == *n)
}

/// Where a secret comes from. Plain secrets never appear in policy files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A SCRAM-SHA-256 verifier in Postgres's `SCRAM-SHA-256$iter:salt$stored:server` form.
    ScramVerifier(String),
    /// The name of an environment variable holding the secret (a verifier or a password).
    Env(String),
    /// A file holding the secret (a verifier or a password); surrounding whitespace is trimmed.
    File(PathBuf),
}

/// What a service may do beyond reading and writing allowed columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grant {
    /// CREATE/ALTER/DROP of schema objects (views, tables, indexes, ...).
    Ddl,
    /// `COPY ... FROM` (bulk writes).
    CopyFrom,
    /// SQL hidden in bodies or strings: DO blocks, CREATE FUNCTION/PROCEDURE/RULE/TRIGGER.
    ProceduralCode,
    /// SET ROLE, SET SESSION AUTHORIZATION, search_path changes and similar session control.
    SessionControl,
}

/// What happens when a forbidden column would only reach the output of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputAction {
    /// Replace it by `NULL::<type> AS <name>`.
    #[default]
    Mask,
    /// Block the statement.
    Block,
}

/// How untagged columns are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UntaggedMode {
    /// Untagged data may be used for any purpose.
    #[default]
    Allow,
    /// Strict mode: untagged data may be used for no purpose.
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamLogin {
    /// The database role the proxy connects as for this service.
    pub user: String,
    /// The role's password, when the server asks for one.
    pub password: Option<SecretSource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// The purposes the service is declared for; a session runs under exactly one of them.
    pub purposes: Vec<String>,
    pub credential: SecretSource,
    pub upstream: UpstreamLogin,
    pub grants: BTreeSet<Grant>,
}

impl Service {
    /// The purpose a session runs under: the requested one if the service is declared for it,
    /// the only declared one when none is requested, otherwise `None` (refuse the session).
    pub fn session_purpose(&self, requested: Option<&str>) -> Option<&str> {
        match requested {
            Some(p) => self
                .purposes
                .iter()
                .find(|d| d.as_str() == p)
                .map(String::as_str),
            None if self.purposes.len() == 1 => self.purposes.first().map(String::as_str),
            None => None,
        }
    }
}

/// Tags and filters of one relation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelationPolicy {
    /// Purposes allowed for every column of the relation (a whole-table tag).
    pub table_tags: Option<Vec<String>>,
    /// Purposes allowed per column; a column tag narrows the table tag.
    pub column_tags: BTreeMap<String, Vec<String>>,
    /// Row filter per purpose: a boolean SQL expression over the relation's columns.
    pub row_filters: BTreeMap<String, String>,
    /// Overrides the policy-wide output action for this relation.
    pub output_action: Option<OutputAction>,
}

/// Outcome of asking whether a column may be used under a purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnAccess {
    Allowed,
    Forbidden {
        /// The purposes that may use it (empty for untagged data in strict mode).
        allowed_purposes: Vec<String>,
        action: OutputAction,
    },
}

/// A place in a policy file: the file and the 1-based line and column of a key.
/// `line == 0` means the position is not known (only the file is).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceLocation {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl SourceLocation {
    pub fn new(file: impl Into<PathBuf>, line: usize, column: usize) -> Self {
        SourceLocation {
            file: file.into(),
            line,
            column,
        }
    }

    /// A location naming only the file (no key position known).
    pub fn file_only(file: impl Into<PathBuf>) -> Self {
        Self::new(file, 0, 0)
    }
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.file.display()),
            (line, 0) => write!(f, "{}:{line}", self.file.display()),
            (line, column) => write!(f, "{}:{line}:{column}", self.file.display()),
        }
    }
}

/// A policy element that has a place in a policy file, for messages that point back to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyItem {
    Purpose(String),
    Service(String),
    /// A `tables:` entry.
    Relation(QualifiedName),
    /// A column tag inside a `tables:` entry.
    Column(QualifiedName, String),
    /// A row filter of a relation for a purpose.
    RowFilter(QualifiedName, String),
    /// The `defaults:` section.
    Defaults,
}

#[derive(Debug, Clone, Default)]
pub struct CompiledPolicy {
    /// Hex hash of the policy files' contents; recorded in every audit record.
    pub version: String,
    pub purposes: BTreeSet<String>,
    /// What each purpose means, as the policy describes it (for reviewers and the CLI).
    pub purpose_descriptions: BTreeMap<String, String>,
    pub services: HashMap<String, Service>,
    pub relations: HashMap<QualifiedName, RelationPolicy>,
    pub untagged: UntaggedMode,
    pub output_action: OutputAction,
    /// Where each element was defined; empty for policies built in code.
    pub sources: BTreeMap<PolicyItem, SourceLocation>,
    /// The files the policy was loaded from, in the order they were read.
    pub files: Vec<PathBuf>,
}

impl CompiledPolicy {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    pub fn purpose_exists(&self, purpose: &str) -> bool {
        self.purposes.contains(purpose)
    }

    /// Where `item` was defined, when the policy was loaded from files.
    pub fn source_of(&self, item: &PolicyItem) -> Option<&SourceLocation> {
        self.sources.get(item)
    }

    /// The purposes tagged on a column: its own tag, else its table's, else `None` (untagged).
    /// System views that expose column values or other sessions' statements (security rule 6)
    /// are tagged for no purpose unless the policy tags them explicitly.
    pub fn tags(&self, table: &QualifiedName, column: &str) -> Option<&[String]> {
        match self.relations.get(table) {
            Some(rel) => rel
                .column_tags
                .get(column)
                .or(rel.table_tags.as_ref())
                .map(Vec::as_slice),
            None if is_protected_system_relation(table) => Some(&[]),
            None if is_protected_system_column(table, column) => Some(&[]),
            None => None,
        }
    }

    pub fn column_access(
        &self,
        table: &QualifiedName,
        column: &str,
        purpose: &str,
    ) -> ColumnAccess {
        let action = self.output_action_for(table);
        match self.tags(table, column) {
            Some(tags) if tags.iter().any(|t| purpose_covers(t, purpose)) => ColumnAccess::Allowed,
            Some(tags) => ColumnAccess::Forbidden {
                allowed_purposes: tags.to_vec(),
                action,
            },
            None => match self.untagged {
                UntaggedMode::Allow => ColumnAccess::Allowed,
                UntaggedMode::Deny => ColumnAccess::Forbidden {
                    allowed_purposes: Vec::new(),
                    action,
                },
            },
        }
    }

    pub fn output_action_for(&self, table: &QualifiedName) -> OutputAction {
        self.relations
            .get(table)
            .and_then(|r| r.output_action)
            .unwrap_or(self.output_action)
    }

    /// Every row filter that applies to a session of `purpose` scanning `table`: filters
    /// declared for the purpose or any purpose above it. All of them are ANDed.
    pub fn row_filters(&self, table: &QualifiedName, purpose: &str) -> Vec<&str> {
        self.relations
            .get(table)
            .map(|rel| {
                rel.row_filters
                    .iter()
                    .filter(|(p, _)| purpose_covers(p, purpose))
                    .map(|(_, f)| f.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Builds a [`CompiledPolicy`] in code (tests, examples).
#[derive(Debug, Default)]
pub struct PolicyBuilder {
    policy: CompiledPolicy,
}

impl PolicyBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn purpose(mut self, name: &str) -> Self {
        self.policy.purposes.insert(name.to_owned());
        self
    }

    pub fn service(mut self, name: &str, purposes: &[&str], grants: &[Grant]) -> Self {
        self.policy.services.insert(
            name.to_owned(),
            Service {
                name: name.to_owned(),
                purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
                credential: SecretSource::Env(format!("PGPURPOSE_TEST_{name}")),
                upstream: UpstreamLogin {
                    user: name.to_owned(),
                    password: None,
                },
                grants: grants.iter().copied().collect(),
            },
        );
        self
    }

    pub fn tag_column(mut self, table: &QualifiedName, column: &str, purposes: &[&str]) -> Self {
        self.relation(table).column_tags.insert(
            column.to_owned(),
            purposes.iter().map(|p| (*p).to_owned()).collect(),
        );
        self
    }

    pub fn tag_table(mut self, table: &QualifiedName, purposes: &[&str]) -> Self {
        self.relation(table).table_tags = Some(purposes.iter().map(|p| (*p).to_owned()).collect());
        self
    }

    pub fn row_filter(mut self, table: &QualifiedName, purpose: &str, filter: &str) -> Self {
        self.relation(table)
            .row_filters
            .insert(purpose.to_owned(), filter.to_owned());
        self
    }

    pub fn untagged(mut self, mode: UntaggedMode) -> Self {
        self.policy.untagged = mode;
        self
    }

    pub fn output_action(mut self, action: OutputAction) -> Self {
        self.policy.output_action = action;
        self
    }

    pub fn version(mut self, version: &str) -> Self {
        self.policy.version = version.to_owned();
        self
    }

    pub fn build(self) -> CompiledPolicy {
        self.policy
    }

    fn relation(&mut self, table: &QualifiedName) -> &mut RelationPolicy {
        self.policy.relations.entry(table.clone()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purpose_tree_is_dotted_prefix_on_segment_boundaries() {
        assert!(purpose_covers("security", "security"));
        assert!(purpose_covers("security", "security.authentication"));
        assert!(!purpose_covers("security", "securityx"));
        assert!(!purpose_covers("security.authentication", "security"));
        assert!(!purpose_covers("advertising", "security"));
    }

    #[test]
    fn column_tag_narrows_table_tag_and_untagged_follows_mode() {
        let users = QualifiedName::new("public", "users");
        let policy = PolicyBuilder::new()
            .tag_table(&users, &["security", "advertising"])
            .tag_column(&users, "phone_2fa", &["security"])
            .build();
        assert_eq!(
            policy.column_access(&users, "handle", "advertising"),
            ColumnAccess::Allowed
        );
        assert!(matches!(
            policy.column_access(&users, "phone_2fa", "advertising"),
            ColumnAccess::Forbidden { .. }
        ));
        assert_eq!(
            policy.column_access(&users, "phone_2fa", "security.authentication"),
            ColumnAccess::Allowed
        );
        let other = QualifiedName::new("public", "other");
        assert_eq!(
            policy.column_access(&other, "x", "advertising"),
            ColumnAccess::Allowed
        );
        let stats = QualifiedName::new("pg_catalog", "pg_stats");
        assert!(matches!(
            policy.column_access(&stats, "most_common_vals", "security"),
            ColumnAccess::Forbidden { .. }
        ));
        let strict = PolicyBuilder::new().untagged(UntaggedMode::Deny).build();
        assert!(matches!(
            strict.column_access(&other, "x", "advertising"),
            ColumnAccess::Forbidden { .. }
        ));
    }

    #[test]
    fn row_filters_of_parent_purposes_apply() {
        let users = QualifiedName::new("public", "users");
        let policy = PolicyBuilder::new()
            .row_filter(&users, "discovery", "discoverable")
            .row_filter(&users, "discovery.contacts", "country = 'NL'")
            .build();
        assert_eq!(policy.row_filters(&users, "discovery.contacts").len(), 2);
        assert_eq!(
            policy.row_filters(&users, "discovery"),
            vec!["discoverable"]
        );
        assert!(policy.row_filters(&users, "advertising").is_empty());
    }

    #[test]
    fn session_purpose_must_be_declared() {
        let policy = PolicyBuilder::new()
            .service("multi", &["a", "b"], &[])
            .service("one", &["a"], &[])
            .build();
        let multi = policy.service("multi").unwrap();
        assert_eq!(multi.session_purpose(Some("b")), Some("b"));
        assert_eq!(multi.session_purpose(Some("c")), None);
        assert_eq!(multi.session_purpose(None), None);
        assert_eq!(
            policy.service("one").unwrap().session_purpose(None),
            Some("a")
        );
    }
}

//! From parsed files to a [`CompiledPolicy`]: merging, cross-reference checks, compilation,
//! and the checks that need a catalog snapshot.
//!
//! Rules enforced here (the per-value shape rules live in `policy::raw`):
//! - a purpose, service or table is defined in one place only, and `defaults` at most once;
//! - purpose names are dotted lower-case words, and the parent of every purpose is declared;
//! - every purpose named by a service, a tag or a row filter is declared;
//! - a service has at least one purpose, an upstream user, and no duplicate purpose or grant;
//! - a column tag lies within its table's whole-table tag (it may narrow, never widen it);
//! - a row filter is one SQL expression (PostgreSQL dialect) with nothing after it and no
//!   comments (the engine splices it into statements, where a comment would swallow text).
//!
//! All rule violations of a load are reported together, each with file, line and key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use sqlparser::ast::Expr;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use super::compiled::{
    CompiledPolicy, Grant, OutputAction, PolicyItem, RelationPolicy, SecretSource, Service,
    SourceLocation, UntaggedMode, UpstreamLogin,
};
use super::load::{ParsedFile, PolicyError};
use super::raw::{
    RawCredential, RawGrant, RawOutputAction, RawSecretRef, RawService, RawTable, RawUntagged,
};
use crate::catalog::{Catalog, QualifiedName, RelationKind};

/// Merge, check and compile parsed policy files.
pub fn compile(files: &[ParsedFile], version: String) -> Result<CompiledPolicy, PolicyError> {
    let mut c = Compiler::default();
    c.merge(files);
    c.check_purposes();
    let mut policy = CompiledPolicy {
        version,
        files: files.iter().map(|f| f.path.clone()).collect(),
        ..CompiledPolicy::default()
    };
    for (name, def) in &c.purposes {
        policy.purposes.insert(name.clone());
        policy
            .purpose_descriptions
            .insert(name.clone(), def.description.clone());
        policy
            .sources
            .insert(PolicyItem::Purpose(name.clone()), def.location.clone());
    }
    if let Some((defaults, location)) = &c.defaults {
        policy.untagged = match defaults.untagged {
            RawUntagged::Allow => UntaggedMode::Allow,
            RawUntagged::Deny => UntaggedMode::Deny,
        };
        policy.output_action = output_action(defaults.output_action);
        policy
            .sources
            .insert(PolicyItem::Defaults, location.clone());
    }
    let services = std::mem::take(&mut c.services);
    for (name, (file, raw)) in &services {
        let file = &files[*file];
        if let Some(service) = c.compile_service(file, name, raw) {
            policy.sources.insert(
                PolicyItem::Service(name.clone()),
                file.location(&["services", name]),
            );
            policy.services.insert(name.clone(), service);
        }
    }
    let tables = std::mem::take(&mut c.tables);
    for (qname, (file, key, raw)) in &tables {
        let file = &files[*file];
        let rel = c.compile_table(file, key, qname, raw, &mut policy.sources);
        policy.sources.insert(
            PolicyItem::Relation(qname.clone()),
            file.location(&["tables", key]),
        );
        policy.relations.insert(qname.clone(), rel);
    }
    match PolicyError::collect(c.errors) {
        Some(e) => Err(e),
        None => Ok(policy),
    }
}

struct PurposeDef {
    description: String,
    location: SourceLocation,
}

/// Merged view of all files, plus the errors found so far.
#[derive(Default)]
struct Compiler<'a> {
    purposes: BTreeMap<String, PurposeDef>,
    /// Service name → (index of its file, definition).
    services: BTreeMap<String, (usize, &'a RawService)>,
    /// Relation → (index of its file, the key as written, definition).
    tables: BTreeMap<QualifiedName, (usize, &'a str, &'a RawTable)>,
    defaults: Option<(&'a super::raw::RawDefaults, SourceLocation)>,
    errors: Vec<PolicyError>,
}

impl<'a> Compiler<'a> {
    fn invalid(&mut self, location: SourceLocation, key: String, message: impl Into<String>) {
        self.errors.push(PolicyError::Invalid {
            location,
            key,
            message: message.into(),
        });
    }

    fn merge(&mut self, files: &'a [ParsedFile]) {
        let mut service_at: HashMap<String, SourceLocation> = HashMap::new();
        let mut table_at: HashMap<QualifiedName, SourceLocation> = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            for (name, def) in file.raw.purposes.iter().flat_map(|m| m.iter()) {
                let location = file.location(&["purposes", name]);
                if let Some(first) = self.purposes.get(name) {
                    self.errors.push(PolicyError::Redefined {
                        what: "purpose",
                        name: name.to_owned(),
                        location,
                        first: first.location.clone(),
                    });
                    continue;
                }
                self.purposes.insert(
                    name.to_owned(),
                    PurposeDef {
                        description: def.description.clone(),
                        location,
                    },
                );
            }
            for (name, def) in file.raw.services.iter().flat_map(|m| m.iter()) {
                let location = file.location(&["services", name]);
                if let Some(first) = service_at.get(name) {
                    self.errors.push(PolicyError::Redefined {
                        what: "service",
                        name: name.to_owned(),
                        location,
                        first: first.clone(),
                    });
                    continue;
                }
                service_at.insert(name.to_owned(), location);
                self.services.insert(name.to_owned(), (i, def));
            }
            for (key, def) in file.raw.tables.iter().flat_map(|m| m.iter()) {
                let location = file.location(&["tables", key]);
                let qname = match parse_relation_name(key) {
                    Ok(q) => q,
                    Err(why) => {
                        self.invalid(location, format!("tables.{key}"), why);
                        continue;
                    }
                };
                if let Some(first) = table_at.get(&qname) {
                    self.errors.push(PolicyError::Redefined {
                        what: "table",
                        name: qname.to_string(),
                        location,
                        first: first.clone(),
                    });
                    continue;
                }
                table_at.insert(qname.clone(), location);
                self.tables.insert(qname, (i, key, def));
            }
            if let Some(defaults) = &file.raw.defaults {
                let location = file.location(&["defaults"]);
                match &self.defaults {
                    Some((_, first)) => self.errors.push(PolicyError::Redefined {
                        what: "section",
                        name: "defaults".into(),
                        location,
                        first: first.clone(),
                    }),
                    None => self.defaults = Some((defaults, location)),
                }
            }
        }
    }

    fn check_purposes(&mut self) {
        let mut problems = Vec::new();
        for (name, def) in &self.purposes {
            let key = format!("purposes.{name}");
            if let Err(why) = check_purpose_name(name) {
                problems.push((def.location.clone(), key, why.to_owned()));
                continue;
            }
            if let Some((parent, _)) = name.rsplit_once('.') {
                if !self.purposes.contains_key(parent) {
                    problems.push((
                        def.location.clone(),
                        key.clone(),
                        format!("its parent purpose `{parent}` is not declared"),
                    ));
                }
            }
            if def.description.trim().is_empty() {
                problems.push((def.location.clone(), key, "description is empty".into()));
            }
        }
        for (location, key, message) in problems {
            self.invalid(location, key, message);
        }
    }

    /// Check a list of purposes: each declared, none twice. Returns them in order.
    fn purpose_list(
        &mut self,
        file: &ParsedFile,
        key_path: &[&str],
        purposes: &[String],
    ) -> Vec<String> {
        let location = file.location(key_path);
        let key = key_path.join(".");
        let mut seen = BTreeSet::new();
        for p in purposes {
            if !self.purposes.contains_key(p) {
                self.invalid(
                    location.clone(),
                    key.clone(),
                    format!("unknown purpose `{p}` (declare it under `purposes:`)"),
                );
            }
            if !seen.insert(p.as_str()) {
                self.invalid(
                    location.clone(),
                    key.clone(),
                    format!("purpose `{p}` is listed twice"),
                );
            }
        }
        purposes.to_vec()
    }

    fn compile_service(
        &mut self,
        file: &ParsedFile,
        name: &str,
        raw: &RawService,
    ) -> Option<Service> {
        let errors_before = self.errors.len();
        let key = format!("services.{name}");
        if let Err(why) = check_service_name(name) {
            self.invalid(file.location(&["services", name]), key.clone(), why);
        }
        if raw.purposes.is_empty() {
            self.invalid(
                file.location(&["services", name, "purposes"]),
                format!("{key}.purposes"),
                "a service must be declared for at least one purpose",
            );
        }
        let purposes = self.purpose_list(file, &["services", name, "purposes"], &raw.purposes);
        let credential = match &raw.credential {
            // The shape was checked while deserializing.
            RawCredential::ScramVerifier(v) => Some(SecretSource::ScramVerifier(v.clone())),
            RawCredential::Ref(r) => self.secret_ref(file, &["services", name, "credential"], r),
        };
        if raw.upstream.user.trim().is_empty() {
            self.invalid(
                file.location(&["services", name, "upstream", "user"]),
                format!("{key}.upstream.user"),
                "the upstream user is empty",
            );
        }
        let password = match &raw.upstream.password.0 {
            Some(r) => self.secret_ref(file, &["services", name, "upstream", "password"], r),
            None => None,
        };
        let mut grants = BTreeSet::new();
        for g in &raw.grants {
            if !grants.insert(grant(*g)) {
                self.invalid(
                    file.location(&["services", name, "grants"]),
                    format!("{key}.grants"),
                    format!("grant `{}` is listed twice", grant_name(*g)),
                );
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Service {
            name: name.to_owned(),
            purposes,
            credential: credential?,
            upstream: UpstreamLogin {
                user: raw.upstream.user.clone(),
                password,
            },
            grants,
        })
    }

    fn secret_ref(
        &mut self,
        file: &ParsedFile,
        key_path: &[&str],
        r: &RawSecretRef,
    ) -> Option<SecretSource> {
        match r {
            RawSecretRef::Env(var) => {
                if check_env_name(var) {
                    Some(SecretSource::Env(var.clone()))
                } else {
                    self.invalid(
                        file.location(key_path),
                        key_path.join("."),
                        format!("`{var}` is not a valid environment variable name"),
                    );
                    None
                }
            }
            RawSecretRef::File(path) if path.trim().is_empty() => {
                self.invalid(
                    file.location(key_path),
                    key_path.join("."),
                    "the secret file path is empty",
                );
                None
            }
            // Relative paths are relative to the policy file that names them.
            RawSecretRef::File(path) => Some(SecretSource::File(relative_to(&file.path, path))),
        }
    }

    fn compile_table(
        &mut self,
        file: &ParsedFile,
        key: &str,
        qname: &QualifiedName,
        raw: &RawTable,
        sources: &mut BTreeMap<PolicyItem, SourceLocation>,
    ) -> RelationPolicy {
        let mut rel = RelationPolicy {
            output_action: raw.output_action.map(output_action),
            ..RelationPolicy::default()
        };
        if let Some(tags) = &raw.tags {
            rel.table_tags = Some(self.purpose_list(file, &["tables", key, "tags"], tags));
        }
        for (column, tags) in raw.columns.iter().flat_map(|m| m.iter()) {
            let path = ["tables", key, "columns", column];
            let location = file.location(&path);
            if column.is_empty() {
                self.invalid(location.clone(), path.join("."), "empty column name");
            }
            let tags = self.purpose_list(file, &path, tags);
            if let Some(table_tags) = &rel.table_tags {
                // Unknown purposes were reported already by `purpose_list`.
                let declared: Vec<&String> = tags
                    .iter()
                    .filter(|t| self.purposes.contains_key(*t))
                    .collect();
                for t in declared {
                    if !table_tags.iter().any(|tt| super::purpose_covers(tt, t)) {
                        self.invalid(
                            location.clone(),
                            path.join("."),
                            format!(
                                "purpose `{t}` is not within the table's tags {table_tags:?}: a \
                                 column tag may narrow the whole-table tag, never widen it"
                            ),
                        );
                    }
                }
            }
            sources.insert(
                PolicyItem::Column(qname.clone(), column.to_owned()),
                location,
            );
            rel.column_tags.insert(column.to_owned(), tags);
        }
        for (purpose, filter) in raw.row_filters.iter().flat_map(|m| m.iter()) {
            let path = ["tables", key, "row_filters", purpose];
            let location = file.location(&path);
            if !self.purposes.contains_key(purpose) {
                self.invalid(
                    location.clone(),
                    path.join("."),
                    format!("unknown purpose `{purpose}` (declare it under `purposes:`)"),
                );
            }
            if let Err(why) = parse_row_filter(filter) {
                self.invalid(location.clone(), path.join("."), why);
            }
            sources.insert(
                PolicyItem::RowFilter(qname.clone(), purpose.to_owned()),
                location,
            );
            rel.row_filters
                .insert(purpose.to_owned(), filter.trim().to_owned());
        }
        rel
    }
}

fn output_action(a: RawOutputAction) -> OutputAction {
    match a {
        RawOutputAction::Mask => OutputAction::Mask,
        RawOutputAction::Block => OutputAction::Block,
    }
}

fn grant(g: RawGrant) -> Grant {
    match g {
        RawGrant::Ddl => Grant::Ddl,
        RawGrant::CopyFrom => Grant::CopyFrom,
        RawGrant::ProceduralCode => Grant::ProceduralCode,
        RawGrant::SessionControl => Grant::SessionControl,
    }
}

fn grant_name(g: RawGrant) -> &'static str {
    match g {
        RawGrant::Ddl => "ddl",
        RawGrant::CopyFrom => "copy_from",
        RawGrant::ProceduralCode => "procedural_code",
        RawGrant::SessionControl => "session_control",
    }
}

fn relative_to(policy_file: &Path, path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    match policy_file.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    }
}

/// `schema.name`, or `name` for a relation in `public`. Names are written as Postgres stores
/// them (unquoted identifiers are lower case).
pub fn parse_relation_name(key: &str) -> Result<QualifiedName, String> {
    let parts: Vec<&str> = key.split('.').collect();
    let ok = |s: &str| !s.is_empty() && s.trim() == s;
    match parts.as_slice() {
        [name] if ok(name) => Ok(QualifiedName::new("public", *name)),
        [schema, name] if ok(schema) && ok(name) => Ok(QualifiedName::new(*schema, *name)),
        _ => Err("a table is named `schema.name` or `name` (meaning `public.name`)".into()),
    }
}

fn check_purpose_name(name: &str) -> Result<(), &'static str> {
    let word_ok = |w: &str| {
        let mut chars = w.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if name.split('.').all(word_ok) {
        Ok(())
    } else {
        Err(
            "a purpose name is dot-separated words of lower-case letters, digits and `_`, \
             each starting with a letter (e.g. `security.authentication`)",
        )
    }
}

fn check_service_name(name: &str) -> Result<(), &'static str> {
    // Postgres truncates identifiers (and so user names) to NAMEDATALEN - 1 = 63 bytes.
    if name.is_empty() || name.len() > 63 || name.chars().any(char::is_control) {
        Err("a service name is 1 to 63 bytes without control characters")
    } else {
        Ok(())
    }
}

fn check_env_name(var: &str) -> bool {
    let mut chars = var.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parse a row filter as exactly one SQL expression, refusing comments and trailing text.
pub fn parse_row_filter(sql: &str) -> Result<Expr, String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| format!("row filter does not tokenize: {e}"))?;
    if tokens.iter().any(|t| {
        matches!(
            t,
            Token::Whitespace(
                Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)
            )
        )
    }) {
        return Err("row filters may not contain SQL comments".into());
    }
    if tokens
        .iter()
        .all(|t| matches!(t, Token::Whitespace(_) | Token::EOF))
    {
        return Err("row filter is empty".into());
    }
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(|e| format!("row filter does not parse: {e}"))?;
    let expr = parser
        .parse_expr()
        .map_err(|e| format!("row filter does not parse as an SQL expression: {e}"))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(format!(
            "row filter must be a single SQL expression; unexpected `{}` after it",
            next.token
        ));
    }
    Ok(expr)
}

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
    use super::*;
    use crate::catalog::{Column, Relation};
    use crate::policy::{load_dir, load_sources, ColumnAccess};

    const PURPOSES: &str = "\
purposes:
  security:
    description: s
  security.authentication:
    description: a
  advertising:
    description: ad
  discovery:
    description: d
";

    fn load(files: &[(&str, &str)]) -> Result<CompiledPolicy, PolicyError> {
        let sources: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(n, t)| (PathBuf::from(format!("pol/{n}")), (*t).to_owned()))
            .collect();
        load_sources(&sources)
    }

    fn service(purposes: &str) -> String {
        format!(
            "services:\n  svc:\n    credential: {{env: SVC_VERIFIER}}\n    purposes: {purposes}\n    \
             upstream:\n      user: app\n"
        )
    }

    /// The single `Invalid` error of a failed load: (line, key, message).
    fn invalid(err: &PolicyError) -> Vec<(String, usize, String, String)> {
        err.errors()
            .into_iter()
            .map(|e| match e {
                PolicyError::Invalid {
                    location,
                    key,
                    message,
                } => (
                    location.file.display().to_string(),
                    location.line,
                    key.clone(),
                    message.clone(),
                ),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn example_policy() -> CompiledPolicy {
        load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    #[test]
    fn example_policies_load() {
        let policy = example_policy();
        assert_eq!(policy.files.len(), 3);
        assert_eq!(policy.purposes.len(), 7);
        assert!(policy.purpose_exists("security.fraud_detection"));
        assert_eq!(policy.services.len(), 5);
        let support = policy.service("support-service").unwrap();
        assert_eq!(support.purposes, vec!["security", "analytics"]);
        assert_eq!(support.upstream.user, "app_support");
        assert!(support.grants.is_empty());
        assert!(matches!(
            &policy.service("ads-service").unwrap().credential,
            SecretSource::ScramVerifier(v) if v.starts_with("SCRAM-SHA-256$4096:")
        ));
        assert_eq!(policy.relations.len(), 3);
        assert_eq!(policy.untagged, UntaggedMode::Allow);
        assert_eq!(policy.output_action, OutputAction::Mask);
        let users = QualifiedName::new("public", "users");
        assert_eq!(
            policy.row_filters(&users, "discovery"),
            vec!["discoverable"]
        );
        assert_eq!(
            policy.row_filters(&users, "advertising.targeting"),
            vec!["ads_opt_in"]
        );
        let loc = policy
            .source_of(&PolicyItem::Column(users.clone(), "phone_2fa".into()))
            .unwrap();
        assert!(loc.file.ends_with("policies/tables.yaml"), "{loc}");
        assert_eq!((loc.line, loc.column), (9, 7));
        assert_eq!(policy.version.len(), 64);
    }

    #[test]
    fn example_tags_compile_into_column_access() {
        let policy = example_policy();
        let users = QualifiedName::new("public", "users");
        let login = QualifiedName::new("public", "login_events");
        let entries = QualifiedName::new("public", "advertiser_list_entries");
        let allowed = |t: &QualifiedName, c: &str, p: &str| {
            policy.column_access(t, c, p) == ColumnAccess::Allowed
        };
        // The 2FA phone: security and below, never advertising.
        assert!(allowed(&users, "phone_2fa", "security.authentication"));
        assert!(allowed(&users, "phone_2fa", "security"));
        assert_eq!(
            policy.column_access(&users, "phone_2fa", "advertising"),
            ColumnAccess::Forbidden {
                allowed_purposes: vec!["security".into()],
                action: OutputAction::Mask,
            }
        );
        assert!(!allowed(&users, "phone_2fa", "advertising.targeting"));
        // The password hash: authentication only, not the wider `security`.
        assert!(allowed(&users, "password_hash", "security.authentication"));
        assert!(!allowed(
            &users,
            "password_hash",
            "security.fraud_detection"
        ));
        assert!(!allowed(&users, "password_hash", "security"));
        assert!(allowed(&users, "marketing_phone", "advertising.targeting"));
        assert!(!allowed(&users, "marketing_phone", "security"));
        // Untagged columns: any purpose.
        assert!(allowed(&users, "handle", "analytics"));
        // Whole-table tags.
        assert!(allowed(&login, "ip", "security.fraud_detection"));
        assert!(!allowed(&login, "ip", "analytics"));
        assert!(allowed(&entries, "phone", "advertising"));
        assert!(!allowed(&entries, "phone", "discovery"));
    }

    #[test]
    fn table_tags_defaults_and_output_action_override() {
        let tables = "\
defaults:
  untagged: deny
  output_action: block
tables:
  audit.trail:
    tags: [security]
    columns:
      detail: [security.authentication]
    output_action: mask
";
        let policy = load(&[("p.yaml", PURPOSES), ("t.yaml", tables)]).unwrap();
        let trail = QualifiedName::new("audit", "trail");
        assert_eq!(policy.untagged, UntaggedMode::Deny);
        assert_eq!(
            policy.column_access(&trail, "detail", "security"),
            ColumnAccess::Forbidden {
                allowed_purposes: vec!["security.authentication".into()],
                action: OutputAction::Mask,
            }
        );
        assert_eq!(
            policy.column_access(&trail, "other", "security"),
            ColumnAccess::Allowed
        );
        let other = QualifiedName::new("public", "other");
        assert_eq!(
            policy.column_access(&other, "x", "security"),
            ColumnAccess::Forbidden {
                allowed_purposes: vec![],
                action: OutputAction::Block,
            }
        );
    }

    #[test]
    fn unknown_purposes_are_rejected_everywhere() {
        let tables = "\
tables:
  users:
    tags: [securty]
    columns:
      phone_2fa: [advertsing]
    row_filters:
      discovry: discoverable
";
        let err = load(&[
            ("p.yaml", PURPOSES),
            ("s.yaml", &service("[security, analytics]")),
            ("t.yaml", tables),
        ])
        .unwrap_err();
        let mut found = invalid(&err);
        found.sort();
        let keys: Vec<(&str, usize, &str)> = found
            .iter()
            .map(|(f, l, k, _)| (f.as_str(), *l, k.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("pol/s.yaml", 4, "services.svc.purposes"),
                ("pol/t.yaml", 3, "tables.users.tags"),
                ("pol/t.yaml", 5, "tables.users.columns.phone_2fa"),
                ("pol/t.yaml", 7, "tables.users.row_filters.discovry"),
            ]
        );
        assert!(found[0].3.contains("unknown purpose `analytics`"));
        assert!(found[1].3.contains("unknown purpose `securty`"));
    }

    #[test]
    fn purpose_parent_must_be_declared_and_names_are_checked() {
        let text = "\
purposes:
  security.authentication:
    description: a
  Marketing:
    description: m
  ops:
    description: '  '
";
        let err = load(&[("p.yaml", text)]).unwrap_err();
        let found = invalid(&err);
        assert_eq!(found.len(), 3, "{err}");
        assert!(found
            .iter()
            .any(|(_, l, k, m)| *l == 4 && k == "purposes.Marketing" && m.contains("lower-case")));
        assert!(found.iter().any(|(_, l, k, m)| *l == 2
            && k == "purposes.security.authentication"
            && m.contains("parent purpose `security` is not declared")));
        assert!(found
            .iter()
            .any(|(_, l, _, m)| *l == 6 && m.contains("description is empty")));
    }

    #[test]
    fn service_without_purposes_is_rejected() {
        let err = load(&[("p.yaml", PURPOSES), ("s.yaml", &service("[]"))]).unwrap_err();
        let found = invalid(&err);
        assert_eq!(found.len(), 1, "{err}");
        assert_eq!(found[0].1, 4);
        assert_eq!(found[0].2, "services.svc.purposes");
        assert!(found[0].3.contains("at least one purpose"));
    }

    #[test]
    fn service_secret_references_compile() {
        let text = "\
services:
  svc:
    credential: {file: secrets/svc.verifier}
    purposes: [security, discovery]
    upstream:
      user: app
      password: {env: APP_PASSWORD}
    grants: [ddl, session_control]
  bad:
    credential: {env: 'NOT A VAR'}
    purposes: [security]
    upstream: {user: app}
    grants: [ddl, ddl]
";
        let err = load(&[("p.yaml", PURPOSES), ("s.yaml", text)]).unwrap_err();
        let found = invalid(&err);
        assert_eq!(found.len(), 2, "{err}");
        assert!(found[0].3.contains("not a valid environment variable name"));
        assert!(found[1].3.contains("grant `ddl` is listed twice"));

        let good = &text[..text.find("  bad:").unwrap()];
        let policy = load(&[("p.yaml", PURPOSES), ("s.yaml", good)]).unwrap();
        let svc = policy.service("svc").unwrap();
        assert_eq!(
            svc.credential,
            SecretSource::File(PathBuf::from("pol/secrets/svc.verifier"))
        );
        assert_eq!(
            svc.upstream.password,
            Some(SecretSource::Env("APP_PASSWORD".into()))
        );
        assert_eq!(
            svc.grants.iter().copied().collect::<Vec<_>>(),
            vec![Grant::Ddl, Grant::SessionControl]
        );
        assert_eq!(svc.session_purpose(Some("discovery")), Some("discovery"));
    }

    #[test]
    fn plain_password_credential_is_a_load_error_with_line() {
        let text = service("[security]").replace("{env: SVC_VERIFIER}", "auth-pass");
        let err = load(&[("p.yaml", PURPOSES), ("s.yaml", &text)]).unwrap_err();
        let PolicyError::Yaml { location, message } = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(location.line, 3);
        assert!(message.contains("services.svc.credential"), "{message}");
        assert!(
            message.contains("plain passwords are not accepted"),
            "{message}"
        );
        assert!(!message.contains("auth-pass"), "{message}");
    }

    #[test]
    fn row_filters_must_be_one_expression() {
        for (filter, why) in [
            ("discoverable AND", "does not parse"),
            ("discoverable; DROP TABLE users", "unexpected `;`"),
            ("discoverable) OR (true", "unexpected `)`"),
            ("discoverable -- and more", "comments"),
            ("discoverable /* x */", "comments"),
            ("''", "single SQL expression"),
        ] {
            let tables = format!(
                "tables:\n  users:\n    row_filters:\n      discovery: {}\n",
                serde_json::to_string(filter).unwrap()
            );
            let result = load(&[("p.yaml", PURPOSES), ("t.yaml", &tables)]);
            if filter == "''" {
                // An empty string literal is an expression; Postgres rejects it at run time
                // (not boolean), which the engine's re-parse and Postgres both catch.
                assert!(result.is_ok());
                continue;
            }
            let err = result.unwrap_err();
            let found = invalid(&err);
            assert_eq!(found.len(), 1, "{filter}: {err}");
            assert_eq!(found[0].1, 4);
            assert_eq!(found[0].2, "tables.users.row_filters.discovery");
            assert!(found[0].3.contains(why), "{filter}: {}", found[0].3);
        }
        assert!(parse_row_filter("   ").unwrap_err().contains("empty"));
        assert!(parse_row_filter("country IN ('NL', 'BE') AND birth_year < 2000").is_ok());
    }

    #[test]
    fn same_table_in_two_files_names_both_places() {
        let a = "tables:\n  users:\n    tags: [security]\n";
        let b = "# other\ntables:\n  public.users:\n    columns:\n      x: [security]\n";
        let err = load(&[("p.yaml", PURPOSES), ("a.yaml", a), ("b.yaml", b)]).unwrap_err();
        match &err {
            PolicyError::Redefined {
                what,
                name,
                location,
                first,
            } => {
                assert_eq!(*what, "table");
                assert_eq!(name, "public.users");
                assert_eq!(location.to_string(), "pol/b.yaml:3:3");
                assert_eq!(first.to_string(), "pol/a.yaml:2:3");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "pol/b.yaml:3:3: table `public.users` is already defined at pol/a.yaml:2:3"
        );
    }

    #[test]
    fn same_purpose_service_or_defaults_twice_is_an_error() {
        let again = "purposes:\n  security:\n    description: again\n";
        let err = load(&[("p.yaml", PURPOSES), ("q.yaml", again)]).unwrap_err();
        assert!(
            matches!(&err, PolicyError::Redefined { what: "purpose", location, first, .. }
                if location.file.ends_with("q.yaml") && first.file.ends_with("p.yaml")),
            "{err}"
        );
        let svc = service("[security]");
        let err = load(&[("p.yaml", PURPOSES), ("a.yaml", &svc), ("b.yaml", &svc)]).unwrap_err();
        assert!(
            matches!(
                &err,
                PolicyError::Redefined {
                    what: "service",
                    ..
                }
            ),
            "{err}"
        );
        let d = "defaults:\n  untagged: deny\n";
        let err = load(&[("p.yaml", PURPOSES), ("a.yaml", d), ("b.yaml", d)]).unwrap_err();
        assert!(
            matches!(
                &err,
                PolicyError::Redefined {
                    what: "section",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn column_tag_may_not_widen_table_tag() {
        let tables = "\
tables:
  users:
    tags: [security]
    columns:
      password_hash: [security.authentication]
      marketing_phone: [advertising]
";
        let err = load(&[("p.yaml", PURPOSES), ("t.yaml", tables)]).unwrap_err();
        let found = invalid(&err);
        assert_eq!(found.len(), 1, "{err}");
        assert_eq!(found[0].1, 6);
        assert!(found[0].3.contains("never widen"));
    }

    #[test]
    fn bad_table_names_are_rejected() {
        for name in ["a.b.c", "'.users'", "'public.'"] {
            let tables = format!("tables:\n  {name}:\n    tags: [security]\n");
            let err = load(&[("p.yaml", PURPOSES), ("t.yaml", &tables)]).unwrap_err();
            assert!(err.to_string().contains("schema.name"), "{name}: {err}");
        }
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
        let policy = load(&[("p.yaml", PURPOSES), ("t.yaml", tables)]).unwrap();
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
        let policy = example_policy();
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

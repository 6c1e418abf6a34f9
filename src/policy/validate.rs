//! From parsed files to a [`CompiledPolicy`]: merging, cross-reference checks, compilation.
//! (Checks that need a catalog snapshot live in `policy::catalog_check`.)
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
use crate::catalog::QualifiedName;

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

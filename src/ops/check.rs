//! `pgpurpose check`: validate the policy files and compare them with the database.
//!
//! 1. The policy files are loaded exactly as the proxy loads them; every error names the file,
//!    line and key.
//! 2. With a catalog (`--upstream URL` or `--catalog FILE`): tags and row filters on tables or
//!    columns that do not exist are errors (`policy::catalog_check`), and untagged columns of
//!    tables that look like personal data by name or type ([`super::pii`]) are warnings with a
//!    suggested tag. In strict mode (`untagged: deny`) untagged columns are forbidden anyway,
//!    so they are not reported.
//! 3. With a live database (`--upstream`): services whose upstream role does not exist are
//!    errors.
//!
//! Exit status: 0 no errors (warnings allowed unless `--deny-warnings`), 1 errors, 2 the check
//! could not run (database unreachable, snapshot unreadable).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::catalog::{Catalog, RelationKind};
use crate::policy::{
    check_against_catalog, CompiledPolicy, Finding, FindingLevel, PolicyItem, UntaggedMode,
};

use super::explain::short_version;
use super::pii::{classify, PiiKind};
use super::{CatalogSource, OpsError, Outcome, Status};

/// What `check` is asked to do.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub policies: PathBuf,
    /// `None`: validate the files only.
    pub catalog: Option<CatalogSource>,
    /// Warnings make the exit status 1.
    pub deny_warnings: bool,
}

/// Run the check (connecting to the database when the source is live).
pub async fn check(opts: &CheckOptions) -> Outcome {
    let mut out = String::new();
    let policy = match crate::policy::load_dir(&opts.policies) {
        Ok(p) => p,
        Err(e) => {
            let errors = e.errors();
            for err in &errors {
                let _ = writeln!(out, "{err}");
            }
            let _ = writeln!(out, "\n{} error(s) in the policy files", errors.len());
            return Outcome {
                status: Status::Findings,
                text: out,
            };
        }
    };
    let _ = writeln!(
        out,
        "policy {}: {} files, version {}, {} purposes, {} services, {} tagged relations",
        opts.policies.display(),
        policy.files.len(),
        short_version(&policy.version),
        policy.purposes.len(),
        policy.services.len(),
        policy.relations.len()
    );
    let (catalog, roles) = match &opts.catalog {
        None => (None, None),
        Some(source) => match load(source).await {
            Ok(found) => found,
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                return Outcome {
                    status: Status::Trouble,
                    text: out,
                };
            }
        },
    };
    if let (Some(source), Some(c)) = (&opts.catalog, &catalog) {
        let _ = writeln!(
            out,
            "catalog {source}: {} relations, version {}",
            c.relations.len(),
            c.version
        );
        if matches!(source, CatalogSource::File(_)) {
            let _ = writeln!(
                out,
                "(upstream roles are checked against a live database only: --upstream URL)"
            );
        }
    }
    let findings = findings(&policy, catalog.as_ref(), roles.as_ref());
    let errors = findings
        .iter()
        .filter(|f| f.level == FindingLevel::Error)
        .count();
    let warnings = findings.len() - errors;
    if !findings.is_empty() {
        out.push('\n');
    }
    for f in &findings {
        let _ = writeln!(out, "{f}");
    }
    let _ = writeln!(out, "\n{errors} error(s), {warnings} warning(s)");
    let status = if errors > 0 || (opts.deny_warnings && warnings > 0) {
        Status::Findings
    } else {
        Status::Clean
    };
    Outcome { status, text: out }
}

/// The catalog, and the database's roles when the source is live.
async fn load(
    source: &CatalogSource,
) -> Result<(Option<Catalog>, Option<BTreeSet<String>>), OpsError> {
    let catalog = source.load().await?;
    let roles = match source {
        CatalogSource::Upstream(url) => Some(live_roles(url).await?),
        CatalogSource::File(_) => None,
    };
    Ok((Some(catalog), roles))
}

/// Names of every role in the database.
async fn live_roles(url: &str) -> Result<BTreeSet<String>, OpsError> {
    let connect_error = |e| OpsError::Catalog(crate::catalog::load::CatalogError::Connect(e));
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(connect_error)?;
    let driver = tokio::spawn(connection);
    let rows = client
        .query("SELECT rolname::text FROM pg_catalog.pg_roles", &[])
        .await
        .map_err(|e| OpsError::Catalog(crate::catalog::load::CatalogError::Query(e)));
    drop(client);
    let _ = driver.await;
    Ok(rows?.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// Every finding, errors first, in a stable order.
pub fn findings(
    policy: &CompiledPolicy,
    catalog: Option<&Catalog>,
    roles: Option<&BTreeSet<String>>,
) -> Vec<Finding> {
    let mut all = Vec::new();
    if let Some(catalog) = catalog {
        all.extend(check_against_catalog(policy, catalog));
    }
    if let Some(roles) = roles {
        let mut services: Vec<_> = policy.services.values().collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        for s in services {
            if !roles.contains(&s.upstream.user) {
                let item = PolicyItem::Service(s.name.clone());
                all.push(Finding {
                    level: FindingLevel::Error,
                    location: policy.source_of(&item).cloned(),
                    item,
                    message: format!(
                        "service `{}` connects upstream as role `{}`, which does not exist in \
                         the database",
                        s.name, s.upstream.user
                    ),
                });
            }
        }
    }
    if let Some(catalog) = catalog {
        if policy.untagged == UntaggedMode::Allow {
            all.extend(untagged_personal_data(policy, catalog));
        }
    }
    all.sort_by_key(|f| f.level);
    all
}

/// Schemas whose relations are Postgres's own, not the application's data.
fn is_system_schema(schema: &str) -> bool {
    schema == "pg_catalog" || schema == "information_schema" || schema.starts_with("pg_")
}

/// Warnings for untagged columns of tables that look like personal data.
fn untagged_personal_data(policy: &CompiledPolicy, catalog: &Catalog) -> Vec<Finding> {
    let mut out = Vec::new();
    for relation in catalog.relations.values() {
        // Views inherit the tags of the columns they read; tag the tables.
        let stores_data = matches!(
            relation.kind,
            RelationKind::Table | RelationKind::PartitionedTable | RelationKind::ForeignTable
        );
        if !stores_data || is_system_schema(&relation.name.schema) {
            continue;
        }
        for column in &relation.columns {
            if policy.tags(&relation.name, &column.name).is_some() {
                continue;
            }
            let Some(kind) = classify(&column.name, &column.type_name) else {
                continue;
            };
            let item = PolicyItem::Relation(relation.name.clone());
            out.push(Finding {
                level: FindingLevel::Warning,
                location: policy.source_of(&item).cloned(),
                item,
                message: format!(
                    "column `{}.{}` ({}) looks like {} and is untagged, so every purpose may \
                     use it; suggested tag: `tables: {{{}: {{columns: {{{}: {}}}}}}}`",
                    relation.name,
                    column.name,
                    column.type_name,
                    kind.describe(),
                    relation.name,
                    column.name,
                    suggested_tags(policy, catalog, kind)
                ),
            });
        }
    }
    out
}

/// The tags of a column of the same kind the policy already tags (its most common tag list),
/// else a placeholder for the DBA to fill in.
fn suggested_tags(policy: &CompiledPolicy, catalog: &Catalog, kind: PiiKind) -> String {
    let mut counts: std::collections::BTreeMap<Vec<String>, usize> = Default::default();
    for (table, rel) in &policy.relations {
        for (column, tags) in &rel.column_tags {
            let type_name = catalog
                .relation(table)
                .and_then(|r| r.column(column))
                .map(|c| c.type_name.as_str())
                .unwrap_or("");
            if classify(column, type_name) == Some(kind) {
                *counts.entry(tags.clone()).or_default() += 1;
            }
        }
    }
    match counts.into_iter().max_by_key(|(_, n)| *n) {
        Some((tags, _)) => format!("[{}]", tags.join(", ")),
        None => "[PURPOSE]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn example_catalog() -> Catalog {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        crate::catalog::snapshot_file::load(&root.join("examples/catalog.json")).unwrap()
    }

    #[tokio::test]
    async fn the_example_policy_checks_clean_with_warnings() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let opts = CheckOptions {
            policies: root.join("policies"),
            catalog: Some(CatalogSource::File(root.join("examples/catalog.json"))),
            deny_warnings: false,
        };
        let out = check(&opts).await;
        assert_eq!(out.status, Status::Clean, "{}", out.text);
        assert!(out.text.contains("0 error(s)"), "{}", out.text);
        assert!(
            out.text
                .contains("`public.users.birth_year` (integer) looks like a date of birth"),
            "{}",
            out.text
        );
        // Tagged columns are not reported.
        assert!(!out.text.contains("users.phone_2fa`"), "{}", out.text);
        let strict = check(&CheckOptions {
            deny_warnings: true,
            ..opts
        })
        .await;
        assert_eq!(strict.status, Status::Findings);
    }

    #[test]
    fn missing_roles_and_columns_are_errors_with_locations() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let policy = crate::policy::load_dir(&root.join("policies")).unwrap();
        let mut catalog = example_catalog();
        // The database lost a tagged column.
        if let Some(users) = catalog
            .relations
            .get_mut(&crate::catalog::QualifiedName::new("public", "users"))
        {
            users.columns.retain(|c| c.name != "marketing_phone");
        }
        let roles: BTreeSet<String> = ["app_auth", "app_discovery", "app_analytics", "app_support"]
            .into_iter()
            .map(String::from)
            .collect();
        let found = findings(&policy, Some(&catalog), Some(&roles));
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert!(
            shown.iter().any(|s| s.contains("services.yaml:")
                && s.contains("error: service `ads-service` connects upstream as role `app_ads`")),
            "{shown:#?}"
        );
        assert!(
            shown.iter().any(|s| s.contains("tables.yaml:")
                && s.contains("error: column `marketing_phone` does not exist")),
            "{shown:#?}"
        );
        assert_eq!(found[0].level, FindingLevel::Error);
    }

    #[tokio::test]
    async fn invalid_policy_files_are_reported_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.yaml"),
            "purposes:\n  security:\n    description: s\ntables:\n  users:\n    columns:\n      phone: [securty]\n",
        )
        .unwrap();
        let out = check(&CheckOptions {
            policies: dir.path().to_owned(),
            catalog: None,
            deny_warnings: false,
        })
        .await;
        assert_eq!(out.status, Status::Findings, "{}", out.text);
        assert!(out.text.contains("p.yaml:7:"), "{}", out.text);
        assert!(out.text.contains("securty"), "{}", out.text);
    }

    #[tokio::test]
    async fn an_unreachable_database_is_trouble() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let port = crate::localpg::free_port().unwrap();
        let out = check(&CheckOptions {
            policies: root.join("policies"),
            catalog: Some(CatalogSource::Upstream(format!(
                "host=127.0.0.1 port={port} user=postgres connect_timeout=2"
            ))),
            deny_warnings: false,
        })
        .await;
        assert_eq!(out.status, Status::Trouble, "{}", out.text);
        assert!(out.text.contains("cannot connect"), "{}", out.text);
    }
}

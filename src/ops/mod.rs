//! The DBA's and operator's tools behind the CLI: `check`, `explain`, `test`, `diff` and
//! `catalog dump`. Each subcommand is a function that returns its report as text plus an exit
//! status, so tests assert on exactly what a person (or CI) sees.
//!
//! Everything here runs the same pure engine as the proxy (`engine::decide`) against a catalog
//! snapshot that comes either from a live database (`--upstream URL`) or from a snapshot file
//! written by `pgpurpose catalog dump` (`--catalog FILE`), so the tools work offline and in CI.
//!
//! Exit statuses are shared by every subcommand (see [`Status`]): 0 clean, 1 the tool found
//! something (a policy error, a failing test, a changed decision), 2 the tool could not do its
//! job (unreadable file, unreachable database, bad arguments).

pub mod check;
pub mod cli;
pub mod diff;
pub mod explain;
pub mod pii;
pub mod policytest;

use std::path::{Path, PathBuf};

use crate::catalog::{self, Catalog};
use crate::policy::{CompiledPolicy, Service};

/// Errors that stop a tool before it can report (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Catalog(#[from] catalog::load::CatalogError),
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
}

/// How a tool ended; the process exit code is [`Status::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Nothing to report (warnings may have been printed).
    Clean,
    /// Findings: policy errors, failing tests, changed decisions.
    Findings,
    /// The tool could not run to completion.
    Trouble,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Clean => 0,
            Status::Findings => 1,
            Status::Trouble => 2,
        }
    }
}

/// What a tool printed and how it ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// The report (for standard output).
    pub text: String,
}

/// Where a catalog snapshot comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogSource {
    /// A snapshot file written by `pgpurpose catalog dump`.
    File(PathBuf),
    /// A live database: a libpq URL (`postgresql://user@host:port/db`) or key/value string.
    Upstream(String),
}

impl std::fmt::Display for CatalogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogSource::File(p) => write!(f, "{}", p.display()),
            // The connection string may hold a password: show only that it is live.
            CatalogSource::Upstream(_) => f.write_str("live database (--upstream)"),
        }
    }
}

/// The snapshot the offline tools use when given neither `--catalog` nor `--upstream`:
/// the example schema's snapshot shipped in the repository (relative to the working directory).
pub const DEFAULT_CATALOG: &str = "examples/catalog.json";

impl CatalogSource {
    /// From the `--catalog` / `--upstream` options; [`DEFAULT_CATALOG`] when neither is given.
    pub fn from_options(
        catalog: Option<PathBuf>,
        upstream: Option<String>,
    ) -> Result<CatalogSource, OpsError> {
        match (catalog, upstream) {
            (Some(_), Some(_)) => Err(OpsError::Usage(
                "give either --catalog FILE or --upstream URL, not both".into(),
            )),
            (Some(file), None) => Ok(CatalogSource::File(file)),
            (None, Some(url)) => Ok(CatalogSource::Upstream(url)),
            (None, None) => Ok(CatalogSource::File(PathBuf::from(DEFAULT_CATALOG))),
        }
    }

    /// Read the snapshot (connecting to the database for [`CatalogSource::Upstream`]).
    pub async fn load(&self) -> Result<Catalog, OpsError> {
        match self {
            CatalogSource::File(path) => Ok(catalog::snapshot_file::load(path)?),
            CatalogSource::Upstream(url) => Ok(catalog::load::connect_and_load(url).await?),
        }
    }
}

/// `pgpurpose catalog dump`: read the live catalog and write it as a snapshot file.
pub async fn catalog_dump(upstream: &str, output: &Path) -> Result<Outcome, OpsError> {
    let catalog = catalog::load::connect_and_load(upstream).await?;
    catalog::snapshot_file::save(&catalog, output)?;
    Ok(Outcome {
        status: Status::Clean,
        text: format!(
            "wrote {} ({} relations, {} functions, catalog version {})\n",
            output.display(),
            catalog.relations.len(),
            catalog.functions.len(),
            catalog.version
        ),
    })
}

/// The service `name` of `policy` and the purpose a session of it runs under: `purpose` when
/// the service is declared for it, else its only purpose.
pub fn session_for<'p>(
    policy: &'p CompiledPolicy,
    name: &str,
    purpose: Option<&str>,
) -> Result<(&'p Service, String), String> {
    let service = policy.service(name).ok_or_else(|| {
        let mut known: Vec<&str> = policy.services.keys().map(String::as_str).collect();
        known.sort_unstable();
        format!(
            "service `{name}` is not in the policy (services: {})",
            known.join(", ")
        )
    })?;
    match service.session_purpose(purpose) {
        Some(p) => Ok((service, p.to_owned())),
        None => Err(match purpose {
            Some(p) => format!(
                "service `{name}` is not declared for purpose `{p}` (declared: {})",
                service.purposes.join(", ")
            ),
            None => format!(
                "service `{name}` is declared for several purposes; choose one with a purpose \
                 (declared: {})",
                service.purposes.join(", ")
            ),
        }),
    }
}

/// Read a file as UTF-8 text, as an [`OpsError::File`] on failure.
pub(crate) fn read_text(path: &Path) -> Result<String, OpsError> {
    std::fs::read_to_string(path).map_err(|e| OpsError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

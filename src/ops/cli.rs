//! Command-line arguments of the DBA tools and their entry points, so `main.rs` only lists
//! the subcommands. Each entry point prints its report on standard output, any error that
//! stopped it on standard error, and returns the process exit code ([`super::Status`]).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{
    check, diff, explain, policytest, CatalogSource, OpsError, Outcome, Status, DEFAULT_CATALOG,
};

/// Where the catalog snapshot comes from (shared by explain, test, diff).
#[derive(Debug, Clone, Args)]
pub struct CatalogArgs {
    /// Catalog snapshot file written by `pgpurpose catalog dump` [default: examples/catalog.json
    /// when --upstream is not given either].
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Read the catalog from a live database (libpq URL or key=value string).
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
}

impl CatalogArgs {
    fn source(&self) -> Result<CatalogSource, OpsError> {
        CatalogSource::from_options(self.catalog.clone(), self.upstream.clone())
    }
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Policy directory.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// Compare with a live database: missing tables/columns/roles, untagged personal data.
    #[arg(long, value_name = "URL", conflicts_with = "catalog")]
    pub upstream: Option<String>,
    /// Compare with a catalog snapshot file instead (no role check).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Exit with status 1 when there are warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The service that would run the statement.
    #[arg(long)]
    pub service: String,
    /// The session's purpose (required when the service is declared for several).
    #[arg(long)]
    pub purpose: Option<String>,
    /// Policy directory.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// The SQL text; read from standard input when absent.
    pub sql: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// Policy directory.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Run only the cases whose name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Test files or directories [default: POLICIES/tests].
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The policy directory in force now.
    pub old: PathBuf,
    /// The proposed policy directory.
    pub new: PathBuf,
    /// Statements from policy test files or directories [default: NEW/tests, else OLD/tests,
    /// when --audit is not given].
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub tests: Vec<PathBuf>,
    /// Statements from audit log files or directories (normalised SQL; see the CLI reference
    /// for how placeholders are replayed).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub audit: Vec<PathBuf>,
    #[command(flatten)]
    pub catalog: CatalogArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CatalogCommand {
    /// Read the catalog of a live database and write it as a snapshot file.
    Dump {
        /// libpq URL or key=value string of the database.
        #[arg(long, value_name = "URL")]
        upstream: String,
        /// Snapshot file to write.
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime, OpsError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| OpsError::Usage(format!("cannot start the runtime: {e}")))
}

/// Print an outcome or an error and turn it into the exit code.
pub fn finish(result: Result<Outcome, OpsError>) -> ExitCode {
    match result {
        Ok(outcome) => {
            print!("{}", outcome.text);
            ExitCode::from(outcome.status.code())
        }
        Err(e) => {
            eprintln!("pgpurpose: {e}");
            ExitCode::from(Status::Trouble.code())
        }
    }
}

pub fn check(args: CheckArgs) -> ExitCode {
    let source = match (args.upstream, args.catalog) {
        (Some(url), _) => Some(CatalogSource::Upstream(url)),
        (None, Some(file)) => Some(CatalogSource::File(file)),
        (None, None) => None,
    };
    let opts = check::CheckOptions {
        policies: args.policies,
        catalog: source,
        deny_warnings: args.deny_warnings,
    };
    finish(runtime().map(|rt| rt.block_on(check::check(&opts))))
}

fn load_catalog(source: &CatalogSource) -> Result<crate::catalog::Catalog, OpsError> {
    let catalog = runtime()?.block_on(source.load());
    match (catalog, source) {
        (Err(OpsError::Catalog(e)), CatalogSource::File(p)) if p == Path::new(DEFAULT_CATALOG) => {
            Err(OpsError::Usage(format!(
                "{e}\n(no --catalog FILE or --upstream URL given; the default snapshot is \
                 {DEFAULT_CATALOG}, relative to the current directory)"
            )))
        }
        (result, _) => result,
    }
}

pub fn explain(args: ExplainArgs) -> ExitCode {
    finish((|| {
        let sql = match args.sql {
            Some(sql) => sql,
            None => {
                let mut sql = String::new();
                std::io::stdin()
                    .read_to_string(&mut sql)
                    .map_err(|e| OpsError::Usage(format!("cannot read SQL on stdin: {e}")))?;
                sql
            }
        };
        let policy = crate::policy::load_dir(&args.policies)?;
        let source = args.catalog.source()?;
        let catalog = load_catalog(&source)?;
        Ok(explain::explain(&explain::ExplainRequest {
            policy: &policy,
            catalog: &catalog,
            catalog_label: &source.to_string(),
            service: &args.service,
            purpose: args.purpose.as_deref(),
            sql: &sql,
        }))
    })())
}

pub fn test(args: TestArgs) -> ExitCode {
    finish((|| {
        let policy = crate::policy::load_dir(&args.policies)?;
        let files = if args.files.is_empty() {
            vec![args.policies.join("tests")]
        } else {
            args.files
        };
        let cases = policytest::load_cases(&policytest::discover(&files)?)?;
        let catalog = load_catalog(&args.catalog.source()?)?;
        Ok(policytest::run(
            &policy,
            &catalog,
            &cases,
            args.filter.as_deref(),
        ))
    })())
}

pub fn diff(args: DiffArgs) -> ExitCode {
    finish((|| {
        let old = crate::policy::load_dir(&args.old)?;
        let new = crate::policy::load_dir(&args.new)?;
        let mut statements = Vec::new();
        let mut notes = String::new();
        let mut tests = args.tests.clone();
        if tests.is_empty() && args.audit.is_empty() {
            let candidates = [args.new.join("tests"), args.old.join("tests")];
            tests.extend(candidates.into_iter().find(|d| d.is_dir()));
        }
        if !tests.is_empty() {
            statements.extend(diff::statements_from_tests(&policytest::discover(&tests)?)?);
        }
        if !args.audit.is_empty() {
            let from_audit = diff::statements_from_audit(&args.audit)?;
            if from_audit.unreadable_lines > 0 {
                notes.push_str(&format!(
                    "note: skipped {} line(s) that are not audit records\n",
                    from_audit.unreadable_lines
                ));
            }
            statements.extend(from_audit.statements);
        }
        if statements.is_empty() {
            return Err(OpsError::Usage(
                "no statements to compare: give --tests PATH or --audit PATH".into(),
            ));
        }
        let catalog = load_catalog(&args.catalog.source()?)?;
        let mut outcome = diff::diff((&args.old, &old), (&args.new, &new), &catalog, &statements);
        outcome.text.insert_str(0, &notes);
        Ok(outcome)
    })())
}

pub fn catalog(command: CatalogCommand) -> ExitCode {
    match command {
        CatalogCommand::Dump { upstream, output } => {
            finish(runtime().and_then(|rt| rt.block_on(super::catalog_dump(&upstream, &output))))
        }
    }
}

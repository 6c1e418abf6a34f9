//! The `pgpurpose` binary: parses the command line and calls into the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pgpurpose",
    version,
    about = "PostgreSQL proxy that enforces purpose limitation"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// Proxy configuration file (YAML).
        #[arg(long, short, default_value = "pgpurpose.yaml")]
        config: PathBuf,
    },
    /// Start a throwaway local Postgres with the example schema and data, and run the proxy in
    /// front of it with the example policies (the embedded default).
    Quickstart {
        /// Address the proxy listens on.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: std::net::SocketAddr,
        /// Also serve Prometheus `/metrics` and `/health` on this address.
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Read a password on standard input and print its SCRAM-SHA-256 verifier for a policy file.
    HashPassword,
    /// Validate the policy files and compare them with a database (exit 0 ok, 1 errors, 2 trouble).
    Check(pgpurpose::ops::cli::CheckArgs),
    /// Show how a statement would be decided: uses, tags, clauses, deciding rule, rewrite.
    Explain(pgpurpose::ops::cli::ExplainArgs),
    /// Run policy tests (service, SQL, expected decision) against a catalog snapshot.
    Test(pgpurpose::ops::cli::TestArgs),
    /// List the statements whose decision changes between two policy directories.
    Diff(pgpurpose::ops::cli::DiffArgs),
    /// Catalog snapshots for offline use.
    #[command(subcommand)]
    Catalog(pgpurpose::ops::cli::CatalogCommand),
    /// Review the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Summarise the log for a time range: per service, purpose, table and column, the uses of
    /// each clause kind, masks and blocks, the top blocked statements (table, JSON, CSV, HTML).
    Report(pgpurpose::audit::report::ReportArgs),
    /// Print matching records as one line each; with --follow, as they are written.
    Tail(pgpurpose::audit::tail::TailArgs),
}

fn block_on<F: std::future::Future<Output = Result<(), pgpurpose::app::AppError>>>(
    work: F,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgpurpose: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgpurpose: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    pgpurpose::app::init_logging(cli.log_json);
    match cli.command {
        Command::Run { config } => block_on(pgpurpose::app::run(&config)),
        Command::Quickstart { listen, metrics } => {
            let options = pgpurpose::quickstart::QuickstartOptions {
                listen,
                metrics,
                ..Default::default()
            };
            block_on(pgpurpose::quickstart::run(options))
        }
        Command::HashPassword => {
            let mut password = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut password) {
                eprintln!("pgpurpose: cannot read the password: {e}");
                return ExitCode::FAILURE;
            }
            let password = password.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                eprintln!("pgpurpose: empty password");
                return ExitCode::FAILURE;
            }
            println!("{}", pgpurpose::auth::hash_password(password));
            ExitCode::SUCCESS
        }
        Command::Check(args) => pgpurpose::ops::cli::check(args),
        Command::Explain(args) => pgpurpose::ops::cli::explain(args),
        Command::Test(args) => pgpurpose::ops::cli::test(args),
        Command::Diff(args) => pgpurpose::ops::cli::diff(args),
        Command::Catalog(command) => pgpurpose::ops::cli::catalog(command),
        Command::Audit { command } => match command {
            AuditCommand::Report(args) => pgpurpose::audit::report::command(&args),
            AuditCommand::Tail(args) => pgpurpose::audit::tail::command(&args),
        },
    }
}

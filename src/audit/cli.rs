//! The `pgpurpose audit ...` subcommands (the binary's `main.rs` holds only the variant):
//! `verify` (here and in [`super::verify`]), `report` and `tail` (in their modules).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::verify;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check segment files for tampering: hashes, chain, sequence and checkpoint MACs. Exit
    /// status 0: intact (warnings aside), 1: a problem was found (the first one is named),
    /// 2: usage or I/O error.
    Verify {
        /// Environment variable holding the checkpoint key.
        #[arg(long, conflicts_with = "key_file")]
        key_env: Option<String>,
        /// File holding the checkpoint key.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Treat an unsealed last segment (proxy running or crashed) as a failure.
        #[arg(long)]
        require_sealed: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Segment files or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Summarise the log for a time range: per service, purpose, table and column, the uses of
    /// each clause kind, masks and blocks, the top blocked statements (table, JSON, CSV, HTML).
    Report(super::report::ReportArgs),
    /// Print matching records as one line each; with --follow, as they are written.
    Tail(super::tail::TailArgs),
}

/// Run an `audit` subcommand; returns the process exit code.
pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify {
            key_env,
            key_file,
            require_sealed,
            json,
            paths,
        } => run_verify(key_env, key_file, require_sealed, json, &paths),
        AuditCommand::Report(args) => super::report::command(&args),
        AuditCommand::Tail(args) => super::tail::command(&args),
    }
}

fn run_verify(
    key_env: Option<String>,
    key_file: Option<PathBuf>,
    require_sealed: bool,
    json: bool,
    paths: &[PathBuf],
) -> ExitCode {
    let source = match (key_env, key_file) {
        (Some(var), _) => Some(crate::policy::SecretSource::Env(var)),
        (None, Some(path)) => Some(crate::policy::SecretSource::File(path)),
        (None, None) => None,
    };
    let key = match source
        .map(|s| crate::auth::resolve_password(&s))
        .transpose()
    {
        Ok(k) => k,
        Err(e) => {
            eprintln!("pgpurpose audit verify: checkpoint key: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match verify::verify_paths(paths, key.as_deref().map(str::as_bytes)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgpurpose audit verify: {e}");
            return ExitCode::from(2);
        }
    };
    let failed = !result.ok() || (require_sealed && !result.sealed);
    if json {
        match serde_json::to_string_pretty(&result) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("pgpurpose audit verify: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", verify::render_human(&result));
        if require_sealed && result.ok() && !result.sealed {
            println!("FAILED: the last segment is not sealed (--require-sealed)");
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

//! The DBA's and operator's workflow, end to end through the `pgpurpose` binary:
//!
//! - `cli`: `test`, `explain`, `diff` (test files and an audit log) offline with the shipped
//!   snapshot; `check` and `catalog dump` against a live database; output and exit codes.
//! - `reload`: a valid policy change takes effect in an open session at its next statement;
//!   an invalid one is refused and the policy in force keeps being enforced.
//! - `metrics`: `/metrics` values after a known workload, `/health`.
//! - `quickstart`: started, connected to, decisions shown live, stopped cleanly.

mod common;

#[path = "operator/cli.rs"]
mod cli;
#[path = "operator/proxy.rs"]
mod proxy;
#[path = "operator/quickstart.rs"]
mod quickstart;

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs the binary from the repository root with `args` (and `stdin`), returning its output.
pub fn pgpurpose(args: &[&str], stdin: Option<&str>) -> Output {
    pgpurpose_in(&common::repo_root(), args, stdin)
}

/// Runs the binary in `dir`.
pub fn pgpurpose_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgpurpose"));
    cmd.current_dir(dir)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("running pgpurpose");
    if let Some(text) = stdin {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(text.as_bytes()).expect("writing stdin");
    }
    child.wait_with_output().expect("pgpurpose output")
}

/// Stdout, stderr and the exit code, for assertion messages.
pub fn shown(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A libpq key/value connection string for the shared cluster's example database.
pub fn upstream_url() -> String {
    let pg = common::shared_cluster();
    format!(
        "host={} port={} user={} dbname={}",
        pg.host(),
        pg.port(),
        pgpurpose::localpg::SUPERUSER,
        common::APP_DB
    )
}

/// A copy of the repository's policy files (not the tests) in a new temporary directory.
pub fn policy_copy() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgpurpose-policies-")
        .tempdir()
        .expect("temp dir");
    for f in ["purposes.yaml", "services.yaml", "tables.yaml"] {
        std::fs::copy(
            common::repo_root().join("policies").join(f),
            dir.path().join(f),
        )
        .expect("copying a policy file");
    }
    dir
}

/// The value of the first sample line `name{labels} value` (or `name value`) of an
/// OpenMetrics text whose name-and-labels part equals `series`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok()).flatten()
    })
}

/// GET `path` from an HTTP endpoint on 127.0.0.1:`port`: (status line, body).
pub fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

//! Client-side helpers: tokio-postgres connections through the proxy, external client programs.

use std::path::PathBuf;
use std::process::Command;

use super::cluster::APP_DB;

/// Connects to the proxy on 127.0.0.1:`port` as `service`, database `app`, without TLS.
/// The connection task is spawned on the current tokio runtime.
pub async fn connect_as(
    service: &str,
    password: &str,
    port: u16,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_with_purpose(service, password, port, None).await
}

/// Like [`connect_as`], choosing the session's purpose with
/// `options=-c pgpurpose.purpose=NAME` when `purpose` is given.
pub async fn connect_with_purpose(
    service: &str,
    password: &str,
    port: u16,
    purpose: Option<&str>,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(service)
        .password(password)
        .dbname(APP_DB)
        .connect_timeout(std::time::Duration::from_secs(10));
    if let Some(p) = purpose {
        config.options(format!("-c pgpurpose.purpose={p}"));
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection ended with an error: {e}");
        }
    });
    Ok(client)
}

/// A Python interpreter with psycopg 3: `$PGPURPOSE_PYTHON` (set by `.ci/run` to
/// `.ci/venv/bin/python`), else `.ci/venv/bin/python` in the repository, else `python3`, each
/// only if `import psycopg` works. `Err` says why none was usable.
pub fn find_python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("PGPURPOSE_PYTHON") {
        // Set explicitly (CI): it must work, a broken one is an error, not a skip.
        let p = PathBuf::from(p);
        return if has_psycopg(&p) {
            Ok(p)
        } else {
            Err(format!(
                "PGPURPOSE_PYTHON={} cannot `import psycopg`",
                p.display()
            ))
        };
    }
    let candidates = [
        super::repo_root().join(".ci/venv/bin/python"),
        PathBuf::from("python3"),
    ];
    candidates
        .into_iter()
        .find(|p| has_psycopg(p))
        .ok_or_else(|| {
            "PGPURPOSE_PYTHON is unset and neither .ci/venv/bin/python nor python3 has psycopg \
             (run .ci/run, or pip install 'psycopg[binary]')"
                .to_string()
        })
}

/// Whether PGPURPOSE_PYTHON is set (then a missing psycopg fails the test instead of skipping).
pub fn python_required() -> bool {
    std::env::var_os("PGPURPOSE_PYTHON").is_some()
}

fn has_psycopg(python: &std::path::Path) -> bool {
    Command::new(python)
        .args(["-c", "import psycopg"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

//! TLS on both sides of the proxy binary: clients → proxy (`client_tls`, optional or
//! required) and proxy → upstream (`upstream.tls`, with certificate verification).
//! `psql` (libpq) is the TLS client: it is what services typically use, and it verifies the
//! proxy's certificate and host name with `sslmode=verify-full`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::proxy::{try_spawn_proxy, write_self_signed, ClientTls};
use common::{ProxyConfig, ANALYTICS, APP_DB};
use pgpurpose::localpg::{ClusterOptions, LocalCluster};

/// An upstream with TLS on (self-signed certificate for localhost / 127.0.0.1).
fn tls_cluster() -> &'static LocalCluster {
    static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        common::cluster::example_cluster(ClusterOptions {
            ssl: true,
            ..Default::default()
        })
    })
}

/// psql through the proxy on `port` as analytics-service with the given sslmode.
fn psql(
    pg: &LocalCluster,
    port: u16,
    sslmode: &str,
    root_cert: Option<&Path>,
    sql: &str,
) -> Output {
    let mut cmd = Command::new(pg.bin("psql"));
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
    ])
    .args(["-p", &port.to_string(), "-U", ANALYTICS.name, "-d", APP_DB])
    .args(["-c", sql])
    .env("PGPASSWORD", ANALYTICS.password)
    .env("PGSSLMODE", sslmode)
    .env("PGCONNECT_TIMEOUT", "10")
    .env_remove("PGOPTIONS");
    match root_cert {
        Some(c) => cmd.env("PGSSLROOTCERT", c),
        None => cmd.env_remove("PGSSLROOTCERT"),
    };
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn clients_can_use_tls_and_verify_the_proxy_certificate() {
    let pg = common::shared_cluster();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed(certs.path());
    let mut cfg = ProxyConfig::new(pg);
    cfg.client_tls = Some(ClientTls {
        cert_file: cert.clone(),
        key_file: key,
        required: false,
    });
    let config = common::write_config(&cfg);
    let proxy = common::spawn_proxy(&config.path);

    let out = psql(pg, proxy.port(), "verify-full", Some(&cert), "\\conninfo");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("SSL connection"),
        "{}",
        text(&out.stdout)
    );

    let out = psql(
        pg,
        proxy.port(),
        "verify-full",
        Some(&cert),
        "select current_user",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), ANALYTICS.upstream_role);

    // Not required: plaintext still works.
    let out = psql(pg, proxy.port(), "disable", None, "select 1");
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A client that trusts another CA refuses the proxy.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = write_self_signed(other.path());
    let out = psql(
        pg,
        proxy.port(),
        "verify-full",
        Some(&other_cert),
        "select 1",
    );
    assert!(
        !out.status.success(),
        "verification against a foreign CA must fail"
    );
}

#[test]
fn required_client_tls_refuses_plaintext() {
    let pg = common::shared_cluster();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed(certs.path());
    let mut cfg = ProxyConfig::new(pg);
    cfg.client_tls = Some(ClientTls {
        cert_file: cert.clone(),
        key_file: key,
        required: true,
    });
    let config = common::write_config(&cfg);
    let proxy = common::spawn_proxy(&config.path);

    let out = psql(pg, proxy.port(), "disable", None, "select 1");
    assert!(!out.status.success(), "plaintext must be refused");
    assert!(text(&out.stderr).contains("FATAL"), "{}", text(&out.stderr));
    let out = psql(pg, proxy.port(), "require", None, "select 1");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "1");
}

#[test]
fn upstream_tls_verify_full() {
    let pg = tls_cluster();
    let ca = pg.ssl_ca_file().unwrap().to_path_buf();
    let mut cfg = ProxyConfig::new(pg);
    cfg.upstream_tls = "verify-full".into();
    cfg.upstream_ca_file = Some(ca);
    let config = common::write_config(&cfg);
    let proxy = common::spawn_proxy(&config.path);

    // The session the proxy opened upstream is encrypted.
    let out = psql(
        pg,
        proxy.port(),
        "disable",
        None,
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "t");
}

#[test]
fn upstream_tls_verification_failure_is_not_bypassed() {
    let pg = tls_cluster();
    let other = tempfile::tempdir().unwrap();
    let (wrong_ca, _) = write_self_signed(other.path());
    let mut cfg = ProxyConfig::new(pg);
    cfg.upstream_tls = "verify-full".into();
    cfg.upstream_ca_file = Some(wrong_ca);
    let config = common::write_config(&cfg);
    // The proxy may refuse to start (its catalog connection cannot be verified either) or
    // refuse sessions at startup, naming the TLS failure; it must never run a query.
    let proxy = match try_spawn_proxy(&config.path, &[]) {
        Ok(p) => p,
        Err(output) => {
            eprintln!("the proxy refused to start (acceptable):\n{output}");
            return;
        }
    };
    let out = psql(pg, proxy.port(), "disable", None, "select 1");
    assert!(
        !out.status.success(),
        "query ran over an unverified upstream connection\n{}",
        proxy.output()
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("FATAL") && stderr.contains("certificate"),
        "{stderr}"
    );
}

#[test]
fn upstream_tls_require_fails_against_a_plaintext_server() {
    let pg = common::shared_cluster(); // no TLS
    let mut cfg = ProxyConfig::new(pg);
    cfg.upstream_tls = "require".into();
    let config = common::write_config(&cfg);
    let proxy = match try_spawn_proxy(&config.path, &[]) {
        Ok(p) => p,
        Err(output) => {
            eprintln!("the proxy refused to start (acceptable):\n{output}");
            return;
        }
    };
    let out = psql(pg, proxy.port(), "disable", None, "select 1");
    assert!(
        !out.status.success(),
        "query ran without the required upstream TLS\n{}",
        proxy.output()
    );
    assert!(text(&out.stderr).contains("FATAL"), "{}", text(&out.stderr));
}

//! Authentication and session setup: passwords, unknown services, session purposes, startup
//! parameters that must be refused, and TLS for clients (checked with `psql`).

use std::process::{Command, Output};
use std::time::Duration;

use crate::common::pgclient::{self, code_of, severity_of};
use crate::common::proxy::{write_self_signed, ClientTls};
use crate::common::raw::{Frame, RawConn};
use crate::common::{connect_as, connect_with_purpose, DISCOVERY, SUPPORT};
use crate::{cluster, start_proxy, start_proxy_with, SERVICE};

/// The field codes of an ErrorResponse, in order (the "shape" of the message).
fn field_codes(frame: &Frame) -> Vec<u8> {
    let mut codes = Vec::new();
    let mut rest = frame.body();
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        codes.push(code);
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        rest = &tail[(end + 1).min(tail.len())..];
    }
    codes
}

#[tokio::test]
async fn wrong_password_and_unknown_service_are_indistinguishable() {
    let (_cfg, proxy) = start_proxy();
    let port = proxy.port();

    let wrong = connect_as(SERVICE.name, "not-the-password", port)
        .await
        .expect_err("a wrong password was accepted");
    let unknown = connect_as("no-such-service", "not-the-password", port)
        .await
        .expect_err("an unknown service was accepted");
    for (what, e) in [("wrong password", &wrong), ("unknown service", &unknown)] {
        assert_eq!(code_of(e), "28P01", "{what}: {e}");
        assert_eq!(severity_of(e), "FATAL", "{what}: {e}");
    }
    let (w, u) = (wrong.as_db_error().unwrap(), unknown.as_db_error().unwrap());
    assert_eq!(
        w.message(),
        format!(
            "password authentication failed for user \"{}\"",
            SERVICE.name
        )
    );
    assert_eq!(
        u.message().replace("no-such-service", SERVICE.name),
        w.message()
    );
    assert_eq!((u.detail(), u.hint()), (w.detail(), w.hint()));

    // On the wire: both get the full SASL exchange and an error of the same shape.
    let mut errors = Vec::new();
    for user in [SERVICE.name, "no-such-service"] {
        let mut conn = RawConn::connect(port).await;
        let params = [("user", user), ("database", crate::common::APP_DB)];
        let error = conn
            .startup(&params, Some("not-the-password"))
            .await
            .expect_err("login succeeded");
        assert_eq!(error.code().as_deref(), Some("28P01"), "{user}: {error:?}");
        errors.push(field_codes(&error));
        let rest = conn.until_closed(Duration::from_secs(5)).await.unwrap();
        assert!(rest.is_empty(), "{user}: frames after the FATAL: {rest:?}");
    }
    assert_eq!(errors[0], errors[1]);

    // The right password works.
    let c = connect_as(SERVICE.name, SERVICE.password, port)
        .await
        .unwrap();
    let role: String = c
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, SERVICE.upstream_role);
}

#[tokio::test]
async fn multi_purpose_service_must_choose_one_of_its_purposes() {
    let (_cfg, proxy) = start_proxy();
    let port = proxy.port();

    let none = connect_with_purpose(SUPPORT.name, SUPPORT.password, port, None)
        .await
        .expect_err("support-service without a purpose was accepted");
    assert_eq!(severity_of(&none), "FATAL", "{none}");
    assert_eq!(code_of(&none), "28000", "{none}");
    assert!(
        none.as_db_error()
            .unwrap()
            .message()
            .contains("several purposes"),
        "{none}"
    );

    for purpose in ["security", "analytics"] {
        let c = connect_with_purpose(SUPPORT.name, SUPPORT.password, port, Some(purpose))
            .await
            .unwrap_or_else(|e| panic!("support-service for {purpose}: {e}"));
        let role: String = c
            .query_one("SELECT current_user", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(role, SUPPORT.upstream_role);
    }

    // Purposes the service was not declared for, including ones other services have.
    for (service, purpose) in [
        (SUPPORT, "advertising"),
        (SUPPORT, "security.authentication.extra"),
        (SERVICE, "security"),
    ] {
        let e = connect_with_purpose(service.name, service.password, port, Some(purpose))
            .await
            .expect_err("an undeclared purpose was accepted");
        assert_eq!(code_of(&e), "28000", "{} for {purpose}: {e}", service.name);
        assert_eq!(severity_of(&e), "FATAL");
    }
    // A single-purpose service may name its own purpose.
    connect_with_purpose(SERVICE.name, SERVICE.password, port, Some("analytics"))
        .await
        .unwrap();
}

async fn sessions_of(role: &str) -> i64 {
    let reference = pgclient::direct(cluster(), "postgres").await;
    reference
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn refused_startup_parameters_open_no_session() {
    // Only this test connects as discovery-service, so its upstream sessions can be counted.
    let service = DISCOVERY;
    let (_cfg, proxy) = start_proxy();
    let port = proxy.port();

    // Through tokio-postgres's `options`.
    for options in [
        "-c role=postgres",
        "-c search_path=evil,public",
        "-c client_encoding=LATIN1",
        "-c standard_conforming_strings=off",
        "-c session_authorization=postgres",
        "--search-path=evil",
    ] {
        let mut config = pgclient::proxy_config(service.name, service.password, port, None);
        config.options(options);
        let e = pgclient::connect_watched(&config)
            .await
            .err()
            .unwrap_or_else(|| panic!("options {options:?} were accepted"));
        assert_eq!(severity_of(&e), "FATAL", "{options}: {e}");
        assert_eq!(code_of(&e), "0A000", "{options}: {e}");
    }
    // As startup parameters of their own, on the wire: FATAL and closed, no authentication.
    for bad in [
        ("role", "postgres"),
        ("search_path", "evil,public"),
        ("client_encoding", "LATIN1"),
        ("standard_conforming_strings", "off"),
        ("replication", "database"),
        ("replication", "true"),
        ("session_authorization", "postgres"),
        ("options", "-c role=postgres"),
    ] {
        let mut conn = RawConn::connect(port).await;
        let params = [
            ("user", service.name),
            ("database", crate::common::APP_DB),
            bad,
        ];
        let error = conn
            .startup(&params, Some(service.password))
            .await
            .expect_err("refused parameter accepted");
        assert_eq!(
            error.severity().as_deref(),
            Some("FATAL"),
            "{bad:?}: {error:?}"
        );
        assert_eq!(error.code().as_deref(), Some("0A000"), "{bad:?}: {error:?}");
        let rest = conn.until_closed(Duration::from_secs(5)).await.unwrap();
        assert!(rest.is_empty(), "{bad:?}: frames after the FATAL: {rest:?}");
    }
    assert_eq!(
        sessions_of(service.upstream_role).await,
        0,
        "a refused startup opened an upstream session"
    );

    // Harmless settings pass through to the upstream session.
    let mut config = pgclient::proxy_config(service.name, service.password, port, None);
    config
        .application_name("proto-test")
        .options("-c statement_timeout=1234 -c DateStyle=German");
    let (c, _events) = pgclient::connect_watched(&config).await.unwrap();
    for (setting, want) in [
        ("application_name", "proto-test"),
        ("statement_timeout", "1234ms"),
        ("DateStyle", "German, DMY"),
        ("client_encoding", "UTF8"),
        ("standard_conforming_strings", "on"),
    ] {
        let got: String = c
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, want, "{setting}");
    }
}

/// `psql` through the proxy with a libpq connection string (sslmode etc. appended).
fn psql(port: u16, conninfo: &str, commands: &[&str]) -> Output {
    let mut cmd = Command::new(cluster().bin("psql"));
    cmd.arg(format!(
        "host=127.0.0.1 port={port} user={} dbname={} connect_timeout=10 {conninfo}",
        SERVICE.name,
        crate::common::APP_DB
    ))
    .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
    .env("PGPASSWORD", SERVICE.password);
    for var in [
        "PGSSLMODE",
        "PGOPTIONS",
        "PGCHANNELBINDING",
        "PGSSLROOTCERT",
    ] {
        cmd.env_remove(var);
    }
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.output().expect("running psql")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn tls_for_clients_with_psql() {
    let certs = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = write_self_signed(certs.path());
    let tls = ClientTls {
        cert_file: cert_file.clone(),
        key_file,
        required: false,
    };
    let (_cfg, proxy) = start_proxy_with(|c| c.client_tls = Some(tls));
    let port = proxy.port();

    let out = psql(port, "sslmode=require", &["\\conninfo", "SELECT 42"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("SSL connection (protocol: TLSv1."),
        "{}",
        text(&out)
    );
    assert!(stdout.ends_with("42\n"), "{}", text(&out));

    // SCRAM-SHA-256-PLUS: the channel is bound to the proxy's certificate.
    let out = psql(
        port,
        "sslmode=require channel_binding=require",
        &["SELECT 1"],
    );
    assert!(out.status.success(), "channel binding: {}", text(&out));
    // The certificate verifies as its own root (names: localhost, 127.0.0.1).
    let out = psql(
        port,
        &format!("sslmode=verify-full sslrootcert={}", cert_file.display()),
        &["SELECT 1"],
    );
    assert!(out.status.success(), "verify-full: {}", text(&out));
    // Plaintext is still allowed when TLS is not required.
    let out = psql(port, "sslmode=disable", &["SELECT 1"]);
    assert!(out.status.success(), "plaintext: {}", text(&out));

    // Without client_tls the proxy answers 'N', and sslmode=require fails on the client side.
    let (_cfg2, plain) = start_proxy();
    let out = psql(plain.port(), "sslmode=require", &["SELECT 1"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server does not support SSL"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn tls_required_refuses_plaintext_clients() {
    let certs = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = write_self_signed(certs.path());
    let tls = ClientTls {
        cert_file,
        key_file,
        required: true,
    };
    let (_cfg, proxy) = start_proxy_with(|c| c.client_tls = Some(tls));
    let port = proxy.port();

    let out = psql(port, "sslmode=require", &["SELECT 1"]);
    assert!(out.status.success(), "{}", text(&out));

    let out = psql(port, "sslmode=disable", &["SELECT 1"]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FATAL") && stderr.contains("requires an encrypted connection"),
        "{}",
        text(&out)
    );

    // tokio-postgres without TLS: FATAL 28000.
    let e = connect_as(SERVICE.name, SERVICE.password, port)
        .await
        .expect_err("plaintext accepted although TLS is required");
    assert_eq!(code_of(&e), "28000", "{e}");
    assert_eq!(severity_of(&e), "FATAL", "{e}");
}

#[tokio::test]
async fn unknown_database_is_reported_like_postgres() {
    let (_cfg, proxy) = start_proxy();
    let mut via = pgclient::proxy_config(SERVICE.name, SERVICE.password, proxy.port(), None);
    via.dbname("no_such_db");
    let mut direct = pgclient::direct_config(cluster(), SERVICE.upstream_role);
    direct.dbname("no_such_db");
    let Err(got) = pgclient::connect_watched(&via).await else {
        panic!("connected through the proxy to a database that does not exist")
    };
    let Err(want) = pgclient::connect_watched(&direct).await else {
        panic!("connected directly to a database that does not exist")
    };
    assert_eq!(code_of(&got), "3D000", "{got}");
    assert_eq!(severity_of(&got), "FATAL");
    assert_eq!(
        got.as_db_error().map(|e| e.message()),
        want.as_db_error().map(|e| e.message())
    );
}

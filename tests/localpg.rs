//! The throwaway-cluster harness itself, against a real Postgres: start, query, restart on the
//! same port, stop; TLS; caller pg_hba lines; failure messages.

use pgpurpose::localpg::{ClusterOptions, LocalCluster, LocalPgError};

#[test]
fn start_query_restart_stop() {
    let mut pg = LocalCluster::start(ClusterOptions::default()).unwrap();
    let port = pg.port();
    assert_eq!(pg.host(), "127.0.0.1");
    assert!(pg.data_dir().join("PG_VERSION").is_file());
    assert!(pg.bindir().join("postgres").is_file());
    assert_eq!(pg.psql("postgres", "select 1").unwrap().trim(), "1");

    // Durability settings are off for speed, and our socket dir is in use.
    let settings = pg
        .psql(
            "postgres",
            "select current_setting('fsync'), current_setting('synchronous_commit'), \
             current_setting('full_page_writes'), current_setting('listen_addresses')",
        )
        .unwrap();
    assert_eq!(settings.trim(), "off|off|off|127.0.0.1");

    pg.create_database("app").unwrap();
    pg.psql(
        "app",
        "create table t(x int); insert into t values (41), (1);",
    )
    .unwrap();

    pg.stop().unwrap();
    assert!(
        pg.psql("postgres", "select 1").is_err(),
        "server still answers after stop"
    );
    pg.start_again().unwrap();
    assert_eq!(pg.port(), port, "restart must keep the port");
    assert_eq!(pg.psql("app", "select sum(x) from t").unwrap().trim(), "42");

    let data_dir = pg.data_dir().to_path_buf();
    drop(pg);
    assert!(!data_dir.exists(), "drop must remove the data directory");
}

#[test]
fn sql_errors_name_the_command_and_server_message() {
    let pg = LocalCluster::start(ClusterOptions::default()).unwrap();
    let err = pg.psql("postgres", "select 1/0").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LocalPgError::CommandFailed { .. }), "{text}");
    assert!(text.contains("psql"), "{text}");
    assert!(text.contains("division by zero"), "{text}");
    // ON_ERROR_STOP: the script stops at the first error.
    let err = pg
        .psql(
            "postgres",
            "create table a(x int);\nselect nope;\ncreate table b(x int);",
        )
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let tables = pg
        .psql(
            "postgres",
            "select string_agg(relname, ',' order by relname) from pg_class \
             where relname in ('a','b')",
        )
        .unwrap();
    assert_eq!(tables.trim(), "a");
}

#[test]
fn ssl_settings_and_hba_lines() {
    let pg = LocalCluster::start(ClusterOptions {
        hba: vec!["host all scram_user 127.0.0.1/32 scram-sha-256".into()],
        settings: vec![("work_mem".into(), "8MB".into())],
        ssl: true,
    })
    .unwrap();
    assert!(pg.ssl_cert_file().expect("server cert path").is_file());
    let ca = pg.ssl_ca_file().expect("ssl CA path").to_path_buf();
    assert!(ca.is_file());
    assert_eq!(
        pg.psql("postgres", "show work_mem").unwrap().trim(),
        "8MB",
        "caller settings apply"
    );
    // The caller's hba line comes first: scram_user needs its password, others are trusted.
    pg.psql(
        "postgres",
        "set password_encryption = 'scram-sha-256'; \
         create role scram_user login password 'right'; \
         create role trusted_user login;",
    )
    .unwrap();
    let psql = |user: &str, password: &str| {
        std::process::Command::new(pg.bin("psql"))
            .args(["-X", "-At", "-h", pg.host(), "-p", &pg.port().to_string()])
            .args(["-U", user, "-d", "postgres", "-c"])
            .arg("select current_user || ' ' || ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", &ca)
            .output()
            .unwrap()
    };
    let ok = psql("scram_user", "right");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = psql("scram_user", "wrong");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let trusted = psql("trusted_user", "");
    assert!(trusted.status.success());
    // verify-full against the generated CA, and the session really uses TLS.
    assert_eq!(
        String::from_utf8_lossy(&trusted.stdout).trim(),
        "trusted_user true"
    );
}

#[test]
fn caller_hba_demanding_passwords_on_tcp_does_not_lock_out_the_harness() {
    let mut pg = LocalCluster::start(ClusterOptions {
        hba: vec!["host all all 127.0.0.1/32 scram-sha-256".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(pg.psql("postgres", "select 2").unwrap().trim(), "2");
    let out = std::process::Command::new(pg.bin("psql"))
        .args(["-X", "-At", "-h", pg.host(), "-p", &pg.port().to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-c", "select 1"])
        .env("PGPASSWORD", "nothing-set")
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap();
    assert!(!out.status.success(), "TCP must demand a password now");
    pg.stop().unwrap();
    pg.start_again().unwrap();
    assert_eq!(pg.psql("postgres", "select 3").unwrap().trim(), "3");
}

#[test]
fn bad_setting_fails_with_log_tail() {
    let err = LocalCluster::start(ClusterOptions {
        settings: vec![("shared_buffers".into(), "not-a-size".into())],
        ..Default::default()
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LocalPgError::NotReady { .. }), "{text}");
    assert!(text.contains("server.log"), "{text}");
    assert!(text.contains("shared_buffers"), "{text}");
}

mod common;

#[test]
fn shared_cluster_has_the_example_database() {
    let pg = common::shared_cluster();
    assert!(std::ptr::eq(pg, common::shared_cluster()), "one per binary");
    let tables = pg
        .psql(
            common::APP_DB,
            "select count(*) from information_schema.tables \
             where table_schema = 'public' and table_name in ('users', 'login_events', 'posts')",
        )
        .unwrap();
    assert_eq!(tables.trim(), "3");
    if common::cluster::example_has("roles.sql") {
        let roles = pg
            .psql(
                "postgres",
                "select count(*) from pg_roles where rolname in \
                 ('app_auth','app_ads','app_discovery','app_analytics','app_support')",
            )
            .unwrap();
        assert_eq!(roles.trim(), "5");
    }
}

#[test]
fn written_config_is_the_documented_yaml() {
    let pg = common::shared_cluster();
    let mut cfg = common::ProxyConfig::new(pg);
    cfg.upstream_database = Some("app".into());
    cfg.extra_yaml = "limits:\n  max_connections: 7\n".into();
    let written = common::write_config(&cfg);
    let text = std::fs::read_to_string(&written.path).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(
        v["listen"].as_str().unwrap(),
        format!("127.0.0.1:{}", written.listen_port)
    );
    assert_eq!(
        v["upstream"]["port"].as_u64().unwrap(),
        u64::from(pg.port())
    );
    assert_eq!(v["upstream"]["database"].as_str().unwrap(), "app");
    assert_eq!(v["upstream"]["tls"].as_str().unwrap(), "disable");
    assert_eq!(v["catalog"]["database"].as_str().unwrap(), "app");
    assert_eq!(v["limits"]["max_connections"].as_u64().unwrap(), 7);
    assert!(v["policies"].as_str().unwrap().ends_with("/policies"));
}

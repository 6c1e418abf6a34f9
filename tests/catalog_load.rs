//! Loads a catalog snapshot from a real, throwaway PostgreSQL 15 holding the example schema,
//! roles and seed data, and checks the example policy against it.
//!
//! The cluster is started by a small private helper below (initdb as the `postgres` OS user,
//! a free port, a socket directory inside the cluster's temporary directory) and torn down
//! (`pg_ctl stop -m immediate`, directory removed) when the test ends, pass or fail.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgpurpose::catalog::load::{connect_and_load, content_version};
use pgpurpose::catalog::snapshot_file;
use pgpurpose::catalog::{QualifiedName, RelationKind};
use pgpurpose::policy::{check_against_catalog, has_errors, load_dir, load_sources, PolicyItem};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throwaway cluster; stopped and deleted on drop.
struct TempPg {
    dir: tempfile::TempDir,
    port: u16,
}

impl TempPg {
    fn start() -> TempPg {
        assert!(
            Path::new(PG_BIN).join("initdb").exists(),
            "PostgreSQL 15 binaries not found in {PG_BIN}"
        );
        let dir = tempfile::Builder::new()
            .prefix("pgpurpose-catalog-")
            .tempdir()
            .unwrap();
        run(Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.path()));
        let data = dir.path().join("data");
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"]));
        // One role authenticates with SCRAM so the example verifiers can be checked for real.
        let hba = data.join("pg_hba.conf");
        let trust = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("host all svc_check 127.0.0.1/32 scram-sha-256\n{trust}"),
        )
        .unwrap();
        let port = free_port();
        let pg = TempPg { dir, port };
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(pg.dir.path().join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                pg.dir.path().display()
            ))
            .args(["-w", "start"]));
        pg
    }

    fn conn_str(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres",
            self.port
        )
    }

    fn psql_files(&self, files: &[PathBuf]) {
        let mut cmd = Command::new(Path::new(PG_BIN).join("psql"));
        cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q"])
            .args(["-p", &self.port.to_string()])
            .args(["-v", "ON_ERROR_STOP=1"]);
        for f in files {
            cmd.arg("-f").arg(f);
        }
        run(&mut cmd);
    }
}

impl Drop for TempPg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        // TempDir removes the directory itself.
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

async fn execute(conn_str: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn_str, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    let result = client.batch_execute(sql).await;
    drop(client);
    let _ = driver.await;
    result
}

#[tokio::test]
async fn catalog_of_the_example_database() {
    let pg = TempPg::start();
    pg.psql_files(&[
        repo("examples/schema.sql"),
        repo("examples/roles.sql"),
        repo("examples/seed.sql"),
    ]);
    // Extra objects exercising every relation kind and dropped columns.
    execute(
        &pg.conn_str("postgres"),
        "CREATE SCHEMA extra;
         CREATE TABLE extra.t (a int, b int, c varchar(20));
         ALTER TABLE extra.t DROP COLUMN b;
         CREATE MATERIALIZED VIEW extra.mv AS SELECT a FROM extra.t;
         CREATE TABLE extra.p (id int, at date) PARTITION BY RANGE (at);
         CREATE TEMPORARY TABLE invisible (x int);",
    )
    .await
    .unwrap();

    let catalog = connect_and_load(&pg.conn_str("postgres")).await.unwrap();

    let users = catalog
        .relation(&QualifiedName::new("public", "users"))
        .unwrap();
    assert_eq!(users.kind, RelationKind::Table);
    let names: Vec<&str> = users.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "handle",
            "display_name",
            "country",
            "birth_year",
            "created_at",
            "email_login",
            "phone_2fa",
            "password_hash",
            "marketing_email",
            "marketing_phone",
            "ads_opt_in",
            "discoverable"
        ]
    );
    let phone = users.column("phone_2fa").unwrap();
    assert_eq!((phone.type_name.as_str(), phone.type_oid), ("text", 25));
    assert_eq!(users.column("country").unwrap().type_name, "character(2)");
    assert_eq!(users.column("id").unwrap().type_name, "bigint");
    assert_eq!(
        users.column("created_at").unwrap().type_name,
        "timestamp with time zone"
    );
    assert!(users.view_definition.is_none());

    let contacts = catalog
        .relation(&QualifiedName::new("public", "user_security_contacts"))
        .unwrap();
    assert_eq!(contacts.kind, RelationKind::View);
    assert!(contacts
        .view_definition
        .as_deref()
        .unwrap()
        .contains("phone_2fa"));

    let stats = catalog
        .relation(&QualifiedName::new("pg_catalog", "pg_stats"))
        .unwrap();
    assert_eq!(stats.kind, RelationKind::View);
    assert!(stats.column("most_common_vals").is_some());
    assert!(catalog
        .relation(&QualifiedName::new("pg_catalog", "pg_class"))
        .is_some());
    assert!(catalog
        .relation(&QualifiedName::new("information_schema", "columns"))
        .is_some());

    let t = catalog.relation(&QualifiedName::new("extra", "t")).unwrap();
    let t_cols: Vec<(&str, &str)> = t
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str()))
        .collect();
    assert_eq!(t_cols, [("a", "integer"), ("c", "character varying(20)")]);
    let mv = catalog
        .relation(&QualifiedName::new("extra", "mv"))
        .unwrap();
    assert_eq!(mv.kind, RelationKind::MaterializedView);
    assert!(mv.view_definition.as_deref().unwrap().contains("extra.t"));
    assert_eq!(
        catalog
            .relation(&QualifiedName::new("extra", "p"))
            .unwrap()
            .kind,
        RelationKind::PartitionedTable
    );
    // Other sessions' temporary tables and toast tables are not part of the snapshot.
    assert!(catalog
        .relations
        .values()
        .all(|r| r.name.name != "invisible"
            && !r.name.schema.starts_with("pg_toast")
            && !r.name.schema.starts_with("pg_temp")));

    // "$user" (postgres) has no schema, so the effective path is just public.
    assert_eq!(catalog.search_path, ["public"]);
    assert_eq!(catalog.version, content_version(&catalog));

    // Same database, same snapshot version; a change moves it.
    let again = connect_and_load(&pg.conn_str("postgres")).await.unwrap();
    assert_eq!(again.version, catalog.version);
    execute(
        &pg.conn_str("postgres"),
        "ALTER TABLE extra.t ADD COLUMN d int",
    )
    .await
    .unwrap();
    let changed = connect_and_load(&pg.conn_str("postgres")).await.unwrap();
    assert_ne!(changed.version, catalog.version);

    // The snapshot file round-trips a real catalog.
    let file = pg.dir.path().join("catalog.json");
    snapshot_file::save(&catalog, &file).unwrap();
    assert_eq!(snapshot_file::load(&file).unwrap(), catalog);

    // The example policy matches the example database exactly.
    let policy = load_dir(&repo("policies")).unwrap();
    let findings = check_against_catalog(&policy, &catalog);
    assert!(findings.is_empty(), "{findings:#?}");

    // A tag on a column the database does not have is an error pointing at the policy line.
    let bad = load_sources(&[(
        PathBuf::from("bad/tables.yaml"),
        "purposes:\n  security:\n    description: s\ntables:\n  users:\n    columns:\n      \
         phone_3fa: [security]\n  public.nowhere:\n    tags: [security]\n"
            .to_owned(),
    )])
    .unwrap();
    let findings = check_against_catalog(&bad, &catalog);
    assert!(has_errors(&findings));
    let shown: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "bad/tables.yaml:8:3: error: relation `public.nowhere` does not exist in the database",
            "bad/tables.yaml:7:7: error: column `phone_3fa` does not exist in `public.users`",
        ]
    );
    assert_eq!(
        findings[1].item,
        PolicyItem::Column(QualifiedName::new("public", "users"), "phone_3fa".into())
    );
}

#[tokio::test]
async fn example_verifiers_and_roles_work_against_postgres() {
    let pg = TempPg::start();
    pg.psql_files(&[repo("examples/schema.sql"), repo("examples/roles.sql")]);
    let admin = pg.conn_str("postgres");
    execute(&admin, "CREATE ROLE svc_check LOGIN")
        .await
        .unwrap();
    let policy = load_dir(&repo("policies")).unwrap();
    assert_eq!(policy.services.len(), 5);
    for (name, service) in &policy.services {
        let pgpurpose::policy::SecretSource::ScramVerifier(verifier) = &service.credential else {
            panic!("{name}: example credentials are verifiers");
        };
        execute(
            &admin,
            &format!("ALTER ROLE svc_check PASSWORD '{verifier}'"),
        )
        .await
        .unwrap();
        // The example password of `x-service` is `x-pass`.
        let password = name.replace("-service", "-pass");
        let check = format!("{} password={password}", pg.conn_str("svc_check"));
        execute(&check, "SELECT 1")
            .await
            .unwrap_or_else(|e| panic!("{name}: verifier does not match {password}: {e}"));
        let wrong = format!("{} password=not-{password}", pg.conn_str("svc_check"));
        assert!(execute(&wrong, "SELECT 1").await.is_err(), "{name}");

        // The upstream role exists and can read the example tables.
        execute(
            &pg.conn_str(&service.upstream.user),
            "SELECT count(*) FROM users; SELECT count(*) FROM advertiser_list_entries;",
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: upstream role {}: {e}", service.upstream.user));
    }
}

//! `pgpurpose quickstart`: starts its own throwaway Postgres and the proxy, prints how to
//! connect, shows decisions live (normalised, never with literals), and stops cleanly on
//! SIGINT, removing the database.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{connect_as, ADS};
use super::http_get;

fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what}\n{}", context());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_starts_shows_decisions_live_and_stops_cleanly() {
    let port = pgpurpose::localpg::free_port().unwrap();
    let metrics_port = pgpurpose::localpg::free_port().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let out_path = logs.path().join("stdout");
    let err_path = logs.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgpurpose"))
        .args([
            "quickstart",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let context = || {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            read(&out_path),
            read(&err_path)
        )
    };

    wait_until(
        "the quickstart banner",
        Duration::from_secs(60),
        || read(&out_path).contains("Decisions appear below"),
        context,
    );
    let banner = read(&out_path);
    assert!(
        banner.contains(&format!("proxy listening on 127.0.0.1:{port}")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!(
            "PGPASSWORD=ads-pass psql \"host=127.0.0.1 port={port} dbname=app user=ads-service\""
        )),
        "{banner}"
    );
    let pg_port: u16 = banner
        .split("throwaway Postgres: 127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no Postgres port in the banner:\n{banner}"));

    // The proxy binds after reading the catalog: retry until it accepts.
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match connect_as(ADS.name, ADS.password, port).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!(
                "cannot connect through the quickstart proxy: {e}\n{}",
                context()
            ),
        }
    };
    let err = client
        .simple_query(
            "SELECT count(*) FROM users u JOIN advertiser_list_entries e ON e.phone = u.phone_2fa \
             WHERE u.handle <> 'do-not-print-this-literal'",
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err}"
    );
    client
        .simple_query("SELECT handle, phone_2fa FROM users LIMIT 3")
        .await
        .unwrap();
    wait_until(
        "live decision lines",
        Duration::from_secs(10),
        || {
            read(&out_path).contains(
                "REWRITE  ads-service/advertising: select handle , phone_2fa from users limit ?",
            )
        },
        context,
    );
    let live = read(&out_path);
    assert!(
        live.contains(
            "BLOCK    ads-service/advertising: select count ( * ) from users u join \
             advertiser_list_entries e on e . phone = u . phone_2fa where u . handle <> ?   \
             -- forbidden column public.users.phone_2fa in a join condition"
        ),
        "{live}"
    );
    assert!(!live.contains("do-not-print-this-literal"), "{live}");
    let (status, _) = http_get(metrics_port, "/health");
    assert_eq!(status, "HTTP/1.1 200 OK");
    drop(client);

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("quickstart did not stop on SIGINT\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "quickstart exit {exit}\n{}", context());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_err(),
        "the throwaway Postgres still accepts connections after quickstart stopped"
    );
}

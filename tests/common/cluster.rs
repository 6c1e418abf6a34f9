//! One Postgres cluster per test binary, shared by its tests, with the example loaded into
//! database [`APP_DB`].
//!
//! A `static` is never dropped, so the cluster cannot clean up through `Drop`; instead a small
//! watchdog shell process waits for the test process to exit and then stops the server
//! (immediate shutdown) and removes its directory. This also cleans up after a test binary
//! that was killed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use pgpurpose::localpg::{ClusterOptions, LocalCluster};

/// The database holding the example schema, roles and seed data.
pub const APP_DB: &str = "app";

/// The shared cluster of this test binary, started on first use.
pub fn shared_cluster() -> &'static LocalCluster {
    static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| example_cluster(ClusterOptions::default()))
}

/// A new cluster with the example in [`APP_DB`], cleaned up when this process exits even if
/// it is kept in a `static` (see [`stop_when_process_exits`]).
pub fn example_cluster(opts: ClusterOptions) -> LocalCluster {
    let pg = LocalCluster::start(opts).unwrap_or_else(|e| panic!("starting a test cluster: {e}"));
    stop_when_process_exits(&pg);
    pg.create_database(APP_DB)
        .unwrap_or_else(|e| panic!("creating database {APP_DB}: {e}"));
    pg.load_example(APP_DB)
        .unwrap_or_else(|e| panic!("loading the example into {APP_DB}: {e}"));
    pg
}

/// Which example files were loaded (roles.sql and seed.sql are optional in `load_example`).
pub fn example_has(file: &str) -> bool {
    pgpurpose::localpg::examples_dir().join(file).is_file()
}

/// Starts a detached watchdog that stops `pg` once this process has exited.
pub fn stop_when_process_exits(pg: &LocalCluster) {
    let data = pg.data_dir();
    let root = data.parent().unwrap_or(data);
    spawn_watchdog(std::process::id(), data, root);
}

fn spawn_watchdog(pid: u32, data: &Path, root: &Path) {
    // SIGQUIT to the postmaster is an immediate shutdown; root may signal the postgres user's
    // process, and this needs no pg_ctl (which refuses to run as root).
    let script = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        if [ -f "$2/postmaster.pid" ]; then kill -QUIT "$(head -n 1 "$2/postmaster.pid")" 2>/dev/null; fi
        sleep 2
        rm -rf "$3"
    "#;
    let spawned = Command::new("sh")
        .args(["-c", script, "pgpurpose-test-watchdog"])
        .arg(pid.to_string())
        .arg(data)
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("could not start the cluster watchdog ({e}); the cluster will outlive the tests");
    }
}

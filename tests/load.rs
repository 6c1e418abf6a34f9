//! Bounded load test of the proxy binary: many concurrent clients of `analytics-service` run a
//! fixed mix of allowed, rewritten (masked) and blocked statements, over the simple and the
//! extended protocol, for a fixed time. Asserts zero unexpected errors (every blocked statement
//! gets 42501, every rewritten one comes back masked, every allowed one as is), and that the
//! proxy's memory is flat: no growth between the first quarter and the end of the run, every
//! descriptor released and RSS within an allowance of the baseline once the clients are gone
//! (glibc keeps freed memory, so RSS does not fall back by itself). Prints a table.
//!
//! Default (what `cargo test` and `.ci/run` do): 100 clients for 10 s. Opt-in long run:
//! `PGPURPOSE_LOAD_SECONDS=60 cargo test --release --test load -- --nocapture` (500 clients
//! unless `PGPURPOSE_LOAD_CLIENTS` says otherwise).
//!
//! Every statement is one policy decision (one Query, or one Parse: tokio-postgres prepares
//! each `query` call), so the per-class counts in [`Totals`] are also the number of decisions
//! of each class the proxy made for these clients. The proxy runs with its audit log on, and
//! the test asserts that the log holds exactly that many records of each decision and that
//! `audit verify` (with the checkpoint key) passes on it afterwards.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::faults::{fd_count, rss_kib};
use common::{ProxyConfig, ANALYTICS};
use pgpurpose::localpg::ClusterOptions;
use tokio_postgres::{Client, SimpleQueryMessage};

/// The decision a statement of the mix gets from the example policy for `analytics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    Allowed,
    Rewritten,
    Blocked,
}

const CLASSES: [Class; 3] = [Class::Allowed, Class::Rewritten, Class::Blocked];

#[derive(Debug, Clone, Copy)]
enum Protocol {
    /// `Client::query` with a bigint parameter (Parse/Bind/Execute).
    Extended,
    /// `Client::simple_query`.
    Simple,
}

/// One statement of the mix and how to check its answer.
struct Statement {
    class: Class,
    protocol: Protocol,
    sql: &'static str,
    /// For rewritten statements: the column index that must be NULL (masked) in every row.
    masked: Option<usize>,
}

const MIX: &[Statement] = &[
    Statement {
        class: Class::Allowed,
        protocol: Protocol::Extended,
        sql: "select id, handle, country from users where id = $1",
        masked: None,
    },
    Statement {
        class: Class::Allowed,
        protocol: Protocol::Simple,
        sql: "select count(*) from posts",
        masked: None,
    },
    Statement {
        class: Class::Rewritten,
        protocol: Protocol::Extended,
        sql: "select id, email_login from users where id = $1",
        masked: Some(1),
    },
    Statement {
        class: Class::Rewritten,
        protocol: Protocol::Simple,
        sql: "select handle, phone_2fa from users order by id limit 5",
        masked: Some(1),
    },
    Statement {
        class: Class::Blocked,
        protocol: Protocol::Extended,
        sql: "select id from users where email_login = $1::bigint::text",
        masked: None,
    },
    Statement {
        class: Class::Blocked,
        protocol: Protocol::Simple,
        sql: "select id from users where phone_2fa is not null",
        masked: None,
    },
];

/// What the clients saw.
#[derive(Debug, Default)]
struct Totals {
    /// Statements run, per class (index of [`CLASSES`]).
    per_class: [u64; 3],
    /// Answers that were not what the class demands, with a sample message.
    unexpected: u64,
    first_unexpected: Option<String>,
    /// Client-side latency of each statement, in microseconds.
    latencies_us: Vec<u32>,
}

fn class_index(c: Class) -> usize {
    CLASSES.iter().position(|x| *x == c).unwrap_or(0)
}

/// Runs one statement; `Err` describes an unexpected answer.
async fn run_one(client: &Client, st: &Statement, param: i64) -> Result<(), String> {
    match (st.protocol, st.class) {
        (Protocol::Extended, Class::Blocked) => match client.query(st.sql, &[&param]).await {
            Err(e) if e.code().map(|c| c.code()) == Some("42501") => Ok(()),
            Err(e) => Err(format!("{}: expected 42501, got {e}", st.sql)),
            Ok(_) => Err(format!("{}: expected 42501, got rows", st.sql)),
        },
        (Protocol::Simple, Class::Blocked) => match client.simple_query(st.sql).await {
            Err(e) if e.code().map(|c| c.code()) == Some("42501") => Ok(()),
            Err(e) => Err(format!("{}: expected 42501, got {e}", st.sql)),
            Ok(_) => Err(format!("{}: expected 42501, got rows", st.sql)),
        },
        (Protocol::Extended, _) => {
            let rows = client
                .query(st.sql, &[&param])
                .await
                .map_err(|e| format!("{}: {e}", st.sql))?;
            if let Some(i) = st.masked {
                for row in &rows {
                    if row.get::<_, Option<String>>(i).is_some() {
                        return Err(format!("{}: column {i} not masked", st.sql));
                    }
                }
            }
            Ok(())
        }
        (Protocol::Simple, _) => {
            let msgs = client
                .simple_query(st.sql)
                .await
                .map_err(|e| format!("{}: {e}", st.sql))?;
            let mut rows = 0;
            for m in &msgs {
                if let SimpleQueryMessage::Row(row) = m {
                    rows += 1;
                    if let Some(i) = st.masked {
                        if row.get(i).is_some() {
                            return Err(format!("{}: column {i} not masked", st.sql));
                        }
                    }
                }
            }
            if rows == 0 {
                return Err(format!("{}: no rows", st.sql));
            }
            Ok(())
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_mixed_statements() {
    let opted_in = env_number("PGPURPOSE_LOAD_SECONDS");
    let seconds = opted_in.unwrap_or(10);
    let clients =
        env_number("PGPURPOSE_LOAD_CLIENTS").unwrap_or(if opted_in.is_some() { 500 } else { 100 })
            as usize;
    common::faults::raise_fd_limit();
    let pg = common::cluster::example_cluster(ClusterOptions {
        settings: vec![("max_connections".into(), (clients + 30).to_string())],
        ..ClusterOptions::default()
    });
    let mut cfg = ProxyConfig::new(&pg);
    // The audit log is on (default fsync cadence): every decision must be recorded under load.
    let audit = tempfile::tempdir().unwrap();
    let audit_dir = audit.path().join("audit");
    let key_file = audit.path().join("audit.key");
    std::fs::write(&key_file, AUDIT_KEY).unwrap();
    cfg.extra_yaml = format!(
        "limits:\n  max_connections: {}\naudit:\n  dir: {:?}\n  checkpoint_key:\n    file: {:?}\n",
        clients + 30,
        audit_dir.display().to_string(),
        key_file.display().to_string()
    );
    let written = common::write_config(&cfg);
    // Warnings only: a log line per session would put the log writer into the measurement.
    let proxy = tokio::task::block_in_place(|| {
        common::proxy::try_spawn_proxy(&written.path, &[("RUST_LOG", "warn")])
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (port, pid) = (proxy.port(), proxy.pid());

    // Warm-up: every statement once (also checks the mix is classified as this test assumes).
    let warm = common::connect_as(ANALYTICS.name, ANALYTICS.password, port)
        .await
        .unwrap();
    for st in MIX {
        run_one(&warm, st, 1)
            .await
            .unwrap_or_else(|e| panic!("warm-up: {e}"));
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_baseline, fds_baseline) = (rss_kib(pid), fd_count(pid));

    // Connect 8 at a time: the client side's SCRAM key derivation is CPU-bound (and slow in a
    // debug build), and all at once would hold the later logins past the startup timeout.
    let connect_started = Instant::now();
    let mut sessions = Vec::with_capacity(clients);
    while sessions.len() < clients {
        let batch = (clients - sessions.len()).min(8);
        let connecting: Vec<_> = (0..batch)
            .map(|_| {
                tokio::spawn(async move {
                    common::connect_as(ANALYTICS.name, ANALYTICS.password, port).await
                })
            })
            .collect();
        for c in connecting {
            sessions.push(c.await.unwrap().unwrap_or_else(|e| panic!("connect: {e}")));
        }
    }
    let connect_time = connect_started.elapsed();
    let rss_connected = rss_kib(pid);

    // Memory samples once a second while the load runs.
    let running = Arc::new(AtomicBool::new(true));
    let samples: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sampler = {
        let (running, samples) = (Arc::clone(&running), Arc::clone(&samples));
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                samples.lock().unwrap().push(rss_kib(pid));
            }
        })
    };

    let totals = Arc::new(Mutex::new(Totals::default()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let run_started = Instant::now();
    let mut workers = Vec::new();
    for (n, client) in sessions.into_iter().enumerate() {
        let totals = Arc::clone(&totals);
        workers.push(tokio::spawn(async move {
            let mut mine = Totals::default();
            let mut i = n;
            while Instant::now() < deadline {
                let st = &MIX[i % MIX.len()];
                let started = Instant::now();
                let result = run_one(&client, st, (i % 50) as i64 + 1).await;
                mine.latencies_us
                    .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                mine.per_class[class_index(st.class)] += 1;
                if let Err(e) = result {
                    mine.unexpected += 1;
                    mine.first_unexpected.get_or_insert(e);
                }
                i += 1;
            }
            let mut t = totals.lock().unwrap();
            for k in 0..3 {
                t.per_class[k] += mine.per_class[k];
            }
            t.unexpected += mine.unexpected;
            if t.first_unexpected.is_none() {
                t.first_unexpected = mine.first_unexpected;
            }
            t.latencies_us.extend(mine.latencies_us);
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let ran_for = run_started.elapsed();
    running.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let rss_end = rss_kib(pid);

    // Clients gone: descriptors back, memory back near the baseline.
    let mut settled = false;
    for _ in 0..100 {
        if fd_count(pid) <= fds_baseline {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib(pid);

    let mut t = std::mem::take(&mut *totals.lock().unwrap());
    t.latencies_us.sort_unstable();
    let total: u64 = t.per_class.iter().sum();
    let samples = samples.lock().unwrap().clone();
    let quarter = samples
        .get(samples.len() / 4)
        .copied()
        .unwrap_or(rss_connected);
    let peak = samples.iter().copied().max().unwrap_or(rss_end);
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!();
    println!("load test ({build} build of the proxy)");
    println!("| clients | duration | connect | statements | stmt/s | allowed | rewritten | blocked (42501) | unexpected | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {clients} | {:.1} s | {:.1} s | {total} | {:.0} | {} | {} | {} | {} | {:.2} | {:.2} |",
        ran_for.as_secs_f64(),
        connect_time.as_secs_f64(),
        total as f64 / ran_for.as_secs_f64(),
        t.per_class[0],
        t.per_class[1],
        t.per_class[2],
        t.unexpected,
        percentile(&t.latencies_us, 0.50),
        percentile(&t.latencies_us, 0.99),
    );
    println!("| proxy RSS (MiB) | before clients | connected | 1/4 of run | peak | end of run | clients gone |");
    println!("|---|---|---|---|---|---|---|");
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "| | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        mib(rss_baseline),
        mib(rss_connected),
        mib(quarter),
        mib(peak),
        mib(rss_end),
        mib(rss_after)
    );

    assert_eq!(
        t.unexpected,
        0,
        "unexpected answers; first: {}",
        t.first_unexpected.unwrap_or_default()
    );
    for (k, c) in CLASSES.iter().enumerate() {
        assert!(t.per_class[k] > 0, "no {c:?} statements ran");
    }
    assert!(
        settled,
        "descriptors: {} after the run, {fds_baseline} before",
        fd_count(pid)
    );
    // Flat under steady load: no growth from the first quarter of the run to its end beyond
    // allocator noise (a per-statement leak of even 100 bytes would show over 10^5 statements).
    assert!(
        rss_end <= quarter + 16 * 1024,
        "RSS grew during the run: {quarter} KiB at 1/4, {rss_end} KiB at the end"
    );
    // And the sessions' memory is returned (allowing what the allocator keeps cached).
    assert!(
        rss_after <= rss_baseline + (rss_connected.saturating_sub(rss_baseline)) / 2 + 32 * 1024,
        "RSS after the clients left: {rss_after} KiB (baseline {rss_baseline} KiB, {rss_connected} KiB connected)"
    );

    // Every decision is in the audit log, and the log verifies. The warm-up ran the mix once.
    let recorded = recorded_decisions(&audit_dir);
    let warm_up = |class| MIX.iter().filter(|st| st.class == class).count() as u64;
    for (k, class) in CLASSES.iter().enumerate() {
        assert_eq!(
            recorded[k],
            t.per_class[k] + warm_up(*class),
            "audit records of {class:?} decisions vs statements the clients ran"
        );
    }
    println!(
        "audit: {} statement records ({} allow, {} rewrite, {} block), all accounted for",
        recorded.iter().sum::<u64>(),
        recorded[0],
        recorded[1],
        recorded[2]
    );
    drop(proxy);
    let verification =
        pgpurpose::audit::verify::verify_paths(&[audit_dir], Some(AUDIT_KEY)).unwrap();
    assert!(
        verification.ok(),
        "audit verify after the load: {:?}",
        verification.error
    );
}

const AUDIT_KEY: &[u8] = b"load-test-audit-checkpoint-key-0123456789";

/// Statement records of `analytics-service` in the audit log, per class (index of
/// [`CLASSES`]): allow, rewrite, block.
fn recorded_decisions(dir: &std::path::Path) -> [u64; 3] {
    use pgpurpose::audit::record::{parse_line, Decision, Event};
    let mut counts = [0u64; 3];
    for path in pgpurpose::audit::writer::list_segments(dir).unwrap() {
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let (record, _) = parse_line(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if let Event::Statement(st) = record.event {
                if st.service != ANALYTICS.name {
                    continue;
                }
                counts[match st.decision {
                    Decision::Allow => 0,
                    Decision::Rewrite => 1,
                    Decision::Block => 2,
                }] += 1;
            }
        }
    }
    counts
}

//! Engine and wire hardening without a database: time-boxed fuzzing of the SQL decision path
//! and of frontend message framing, and resource limits of the analyser. (The parser
//! differential and the ORM corpus, which need Postgres, are in tests/parser_differential.rs.)
//!
//! - [`fuzz_sql`]: generated and mutated SQL through `engine::decide` and the caching
//!   `Enforcer` (no panic, no hang, no allow with a forbidden use, cache = engine);
//! - [`fuzz_frames`]: random and mutated byte streams through the real startup and message
//!   framing functions (`protocol::startup`, `protocol::frame`, `protocol::frontend`);
//! - [`limits`]: deeply nested SQL blocks instead of overflowing the stack, huge IN lists and
//!   VALUES decide in bounded, near-linear time.
//!
//! Fuzz budgets: `PGPURPOSE_FUZZ_SECONDS` seconds per target (default 20 for SQL, 10 for
//! frames; CI runs the defaults), `PGPURPOSE_FUZZ_SEED` to replay a run.

#[path = "fuzz/corpus.rs"]
#[allow(dead_code)]
mod corpus;
#[path = "fixtures/example.rs"]
mod fixtures;
#[path = "hardening/fuzz_frames.rs"]
mod fuzz_frames;
#[path = "hardening/fuzz_sql.rs"]
mod fuzz_sql;
#[path = "hardening/limits.rs"]
mod limits;
#[path = "fuzz/sqlgen.rs"]
#[allow(dead_code)]
mod sqlgen;

use std::time::Duration;

pub use corpus::corpus_files;

/// The time budget of one fuzz target: `PGPURPOSE_FUZZ_SECONDS` or `default_secs`.
pub fn fuzz_budget(default_secs: u64) -> Duration {
    let secs = std::env::var("PGPURPOSE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(default_secs as f64);
    Duration::from_secs_f64(secs.max(0.1))
}

/// The seed of a fuzz run: `PGPURPOSE_FUZZ_SEED` or one from the clock (printed, to replay).
pub fn fuzz_seed() -> u64 {
    std::env::var("PGPURPOSE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// Run `f` on a thread with the stack size of a tokio worker (2 MiB), so a stack overflow
/// shows up here as it would in the proxy, and wait for it.
pub fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

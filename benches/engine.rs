//! Criterion benchmarks of the decision engine and the decision cache (issue 3's targets:
//! median parse+decide under 10 µs for pgbench's statement uncached, under 60 µs for a 3-way
//! join with a CTE, a cache hit (shape extraction plus lookup) under 3 µs for a 200-byte
//! statement).
//!
//! The catalog is the example schema plus pgbench's four tables (untagged); the policy is the
//! example policy (tagged security and advertising columns, row filters on `users`). Run with
//! `cargo bench --bench engine`; `-- --quick` for a fast look.
//!
//! Clocks: wall time by default (criterion's usual measurement). On a shared, loaded machine
//! wall time mostly measures how often the benchmark thread was descheduled; with
//! `PGPURPOSE_BENCH_CLOCK=thread-cpu` the thread's own CPU time is measured instead
//! (`CLOCK_THREAD_CPUTIME_ID`), which excludes the time other processes ran.

use std::hint::black_box;
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::Criterion;

use pgpurpose::enforce::Enforcer;
use pgpurpose::engine::{self, lexing, pinned, shape, Decision, SessionView};
use pgpurpose::intercept::{Interceptor, Protocol, StatementContext, Verdict};

#[allow(dead_code)]
mod fixtures {
    include!("../tests/fixtures/example.rs");

    /// The example catalog plus pgbench's tables, as `pgbench -i` creates them.
    pub fn bench_catalog() -> Catalog {
        let mut c = example_catalog();
        let t = |name: &str, cols: &[(&str, &str)]| {
            relation("public", name, RelationKind::Table, cols, None)
        };
        c.insert(t(
            "pgbench_accounts",
            &[
                ("aid", "integer"),
                ("bid", "integer"),
                ("abalance", "integer"),
                ("filler", "character(84)"),
            ],
        ));
        c.insert(t(
            "pgbench_branches",
            &[
                ("bid", "integer"),
                ("bbalance", "integer"),
                ("filler", "character(88)"),
            ],
        ));
        c.insert(t(
            "pgbench_tellers",
            &[
                ("tid", "integer"),
                ("bid", "integer"),
                ("tbalance", "integer"),
                ("filler", "character(84)"),
            ],
        ));
        c.insert(t(
            "pgbench_history",
            &[
                ("tid", "integer"),
                ("bid", "integer"),
                ("aid", "integer"),
                ("delta", "integer"),
                ("mtime", "timestamp without time zone"),
                ("filler", "character(22)"),
            ],
        ));
        c
    }
}

/// pgbench's select-only statement (`-S`), with a literal as the simple protocol sends it.
const PGBENCH_SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345";
/// pgbench's TPC-B-like update.
const PGBENCH_UPDATE: &str =
    "UPDATE pgbench_accounts SET abalance = abalance + -4120 WHERE aid = 80621";
/// A 3-way join with a CTE, as the ads service writes it. `users` carries the advertising
/// row filter, so the decision is a rewrite (filtered scan) that is parsed and analysed again.
const JOIN_CTE_REWRITE: &str = "WITH recent AS (SELECT user_id, advertiser_id, count(*) AS shown \
     FROM ad_impressions WHERE shown_at > now() - interval '7 days' GROUP BY user_id, advertiser_id) \
     SELECT u.id, u.country, a.name, r.shown FROM recent r JOIN users u ON u.id = r.user_id \
     JOIN advertisers a ON a.id = r.advertiser_id WHERE u.country = 'NL' \
     ORDER BY r.shown DESC LIMIT 100";
/// The same kind of query over tables without row filters: allowed unchanged.
const JOIN_CTE_ALLOW: &str = "WITH recent AS (SELECT user_id, advertiser_id, count(*) AS shown \
     FROM ad_impressions WHERE shown_at > now() - interval '7 days' GROUP BY user_id, advertiser_id) \
     SELECT l.id, l.name, a.name, r.shown FROM recent r JOIN advertisers a ON a.id = r.advertiser_id \
     JOIN advertiser_lists l ON l.advertiser_id = a.id WHERE r.shown > 3 \
     ORDER BY r.shown DESC LIMIT 100";
/// `SELECT *` on `users` as the ads service: security columns masked, `*` expanded, row
/// filter added.
const MASKED_STAR: &str = "SELECT * FROM users WHERE id = 42";
/// ~200 bytes, allowed for the ads service.
const HIT_200: &str = "SELECT i.id, i.user_id, i.advertiser_id, i.shown_at, i.clicked \
     FROM ad_impressions i JOIN advertisers a ON a.id = i.advertiser_id \
     WHERE i.user_id = 123456 AND i.shown_at > '2024-01-01' ORDER BY i.shown_at DESC LIMIT 50";

fn engine_benches<M: Measurement>(c: &mut Criterion<M>) {
    let catalog = fixtures::bench_catalog();
    let policy = fixtures::example_policy();
    let ads = policy.service("ads-service").expect("example policy");
    let session = SessionView {
        service: ads,
        purpose: "advertising",
    };
    let decide = |sql: &str| engine::decide(sql, &catalog, &policy, &session);

    // Make sure each benchmark measures the decision it claims to.
    assert!(decide(PGBENCH_SELECT).is_allow());
    assert!(decide(PGBENCH_UPDATE).is_allow());
    assert!(matches!(decide(JOIN_CTE_REWRITE), Decision::Rewrite { .. }));
    assert!(decide(JOIN_CTE_ALLOW).is_allow());
    assert!(matches!(decide(MASKED_STAR), Decision::Rewrite { .. }));
    assert!(decide(HIT_200).is_allow());

    let mut g = c.benchmark_group("decide_uncached");
    for (name, sql) in [
        ("pgbench_select", PGBENCH_SELECT),
        ("pgbench_update", PGBENCH_UPDATE),
        ("join3_cte_allow", JOIN_CTE_ALLOW),
        ("join3_cte_rewrite", JOIN_CTE_REWRITE),
        ("masked_select_star", MASKED_STAR),
        ("stmt_200b", HIT_200),
    ] {
        g.bench_function(name, |b| b.iter(|| decide(black_box(sql))));
    }
    g.finish();

    // The pieces of a decision, to see where the time goes.
    let mut g = c.benchmark_group("parts");
    for (name, sql) in [("pgbench_select", PGBENCH_SELECT), ("stmt_200b", HIT_200)] {
        g.bench_function(format!("lex/{name}"), |b| {
            b.iter(|| lexing::lex(black_box(sql)).map(|l| l.len()))
        });
        g.bench_function(format!("lex_for_lookup/{name}"), |b| {
            b.iter(|| lexing::lex_for_lookup(black_box(sql)).map(|l| l.len()))
        });
        let lexed = lexing::lex_for_lookup(sql).expect("lexes");
        g.bench_function(format!("cache_key/{name}"), |b| {
            b.iter(|| {
                let mut key = Vec::with_capacity(sql.len() + 64);
                shape::push_cache_key(black_box(&lexed), &mut key);
                key
            })
        });
        g.bench_function(format!("pinned_check/{name}"), |b| {
            b.iter(|| pinned::check_pinned_settings(black_box(&lexed)).is_ok())
        });
        // The parse alone, from the tokens `lex` already produced (what a second
        // tokenization inside `Parser::try_with_sql` costs is the difference).
        g.bench_function(format!("sqlparser_parse_pretokenized/{name}"), |b| {
            b.iter_batched(
                || lexing::lex_with_parser_tokens(sql).expect("lexes").1,
                |tokens| {
                    sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
                        .with_tokens_with_locations(tokens)
                        .parse_statements()
                        .map(|s| s.len())
                },
                criterion::BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("sqlparser_parse/{name}"), |b| {
            b.iter(|| {
                sqlparser::parser::Parser::parse_sql(
                    &sqlparser::dialect::PostgreSqlDialect {},
                    black_box(sql),
                )
                .map(|s| s.len())
            })
        });
    }
    g.finish();
}

fn cache_benches<M: Measurement>(c: &mut Criterion<M>) {
    let policy = Arc::new(ArcSwap::from_pointee(fixtures::example_policy()));
    let enforcer = Enforcer::new(policy, "bench");
    enforcer.set_catalog(fixtures::bench_catalog());
    let ctx = StatementContext {
        service: "ads-service",
        purpose: "advertising",
        connection_id: 1,
        client_addr: "127.0.0.1",
        database: "bench",
        protocol: Protocol::Simple,
    };
    let mut g = c.benchmark_group("cache_hit");
    for (name, sql, other) in [
        ("stmt_200b", HIT_200, HIT_200.replace("123456", "654321")),
        (
            "pgbench_select",
            PGBENCH_SELECT,
            PGBENCH_SELECT.replace("12345", "777"),
        ),
        (
            "masked_select_star",
            MASKED_STAR,
            MASKED_STAR.replace("42", "7"),
        ),
    ] {
        // Fill the cache with one statement; time another of the same shape.
        let first = enforcer.decide(&ctx, sql);
        assert!(!matches!(first, Verdict::Block(_)), "{name}: {first:?}");
        let before = enforcer.cached_decisions();
        assert!(before > 0, "{name} was not cached");
        let hit = enforcer.decide(&ctx, &other);
        assert_eq!(
            std::mem::discriminant(&hit),
            std::mem::discriminant(&first),
            "{name}"
        );
        assert_eq!(
            enforcer.cached_decisions(),
            before,
            "{name} missed the cache"
        );
        g.bench_function(name, |b| {
            b.iter(|| enforcer.decide(black_box(&ctx), black_box(&other)))
        });
    }
    g.finish();
}

/// The calling thread's CPU time (criterion runs each routine on the calling thread).
struct ThreadCpuTime;

fn thread_cpu_now() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is always available
    // on Linux. On failure `ts` stays zero and the sample is visibly wrong, not undefined.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = std::time::Duration;
    type Value = std::time::Duration;

    fn start(&self) -> Self::Intermediate {
        thread_cpu_now()
    }
    fn end(&self, i: Self::Intermediate) -> Self::Value {
        thread_cpu_now().saturating_sub(i)
    }
    fn add(&self, v1: &Self::Value, v2: &Self::Value) -> Self::Value {
        *v1 + *v2
    }
    fn zero(&self) -> Self::Value {
        std::time::Duration::ZERO
    }
    fn to_f64(&self, value: &Self::Value) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

fn run<M: Measurement>(mut c: Criterion<M>) {
    engine_benches(&mut c);
    cache_benches(&mut c);
    c.final_summary();
}

fn main() {
    match std::env::var("PGPURPOSE_BENCH_CLOCK").as_deref() {
        Ok("thread-cpu") => run(Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args()),
        _ => run(Criterion::default().configure_from_args()),
    }
}

//! Resource limits of the decision engine: deeply nested SQL of every nesting form is blocked
//! (recursion limits) instead of overflowing a 2 MiB worker stack, and wide statements (huge IN
//! lists, VALUES, select lists, long chains) are decided in bounded time that grows about
//! linearly with their size.

use std::time::{Duration, Instant};

use pgpurpose::engine::{decide, Decision, Rule, SessionView};

use crate::fixtures::{example_catalog, example_policy};

/// Decide `sql` as analytics-service on a worker-sized stack; return the decision and time.
fn timed_decide(sql: String) -> (Decision, Duration) {
    crate::on_worker_stack(move || {
        let catalog = example_catalog();
        let policy = example_policy();
        let service = policy.service("analytics-service").expect("service");
        let session = SessionView {
            service,
            purpose: "analytics",
        };
        let start = Instant::now();
        let d = decide(&sql, &catalog, &policy, &session);
        (d, start.elapsed())
    })
}

fn nest(depth: usize, open: &str, inner: &str, close: &str) -> String {
    let mut s = String::with_capacity(depth * (open.len() + close.len()) + inner.len());
    for _ in 0..depth {
        s.push_str(open);
    }
    s.push_str(inner);
    for _ in 0..depth {
        s.push_str(close);
    }
    s
}

fn nested_ctes(depth: usize) -> String {
    nest(
        depth,
        "WITH c AS (",
        "SELECT id FROM users",
        ") SELECT id FROM c",
    )
}

fn nested_joins(depth: usize) -> String {
    let mut s = String::from("SELECT p.id FROM ");
    for i in 0..depth {
        s.push_str(&format!("(users AS u{i} JOIN "));
    }
    s.push_str("posts AS p");
    for _ in 0..depth {
        s.push_str(" ON true)");
    }
    s
}

/// Every nesting form the grammar has, at a given depth.
fn nested_forms(depth: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "parentheses",
            format!("SELECT {}", nest(depth, "(", "id", ")") + " FROM users"),
        ),
        (
            "scalar subqueries",
            format!("SELECT {}", nest(depth, "(SELECT ", "1", ")")),
        ),
        (
            "derived tables",
            format!(
                "SELECT id FROM {}",
                nest(depth, "(SELECT id FROM ", "users", ") AS d")
            ),
        ),
        (
            "function calls",
            format!("SELECT {} FROM users", nest(depth, "lower(", "handle", ")")),
        ),
        (
            "CASE",
            format!(
                "SELECT {} FROM users",
                nest(depth, "CASE WHEN id > 0 THEN ", "handle", " END")
            ),
        ),
        (
            "arrays",
            format!("SELECT {}", nest(depth, "ARRAY[", "1", "]")),
        ),
        (
            "EXISTS",
            format!(
                "SELECT id FROM users WHERE {}",
                nest(depth, "EXISTS (SELECT 1 WHERE ", "true", ")")
            ),
        ),
        ("CTEs", nested_ctes(depth)),
        ("parenthesised joins", nested_joins(depth)),
        ("unary minus", format!("SELECT {}1", "- ".repeat(depth))),
        ("NOT", format!("SELECT {}true", "NOT ".repeat(depth))),
        (
            "casts",
            format!("SELECT id{} FROM users", "::text".repeat(depth)),
        ),
        (
            "JSON operators",
            format!("SELECT '{{}}'::jsonb{} FROM users", "->'a'".repeat(depth)),
        ),
        (
            "UNION chain",
            vec!["SELECT id FROM users"; depth.max(1)].join(" UNION "),
        ),
        (
            "AND chain",
            format!(
                "SELECT id FROM users WHERE {}",
                vec!["id = 1"; depth.max(1)].join(" AND ")
            ),
        ),
        (
            "join chain",
            format!(
                "SELECT u0.id FROM users AS u0{}",
                (1..=depth)
                    .map(|i| format!(" JOIN users AS u{i} ON true"))
                    .collect::<String>()
            ),
        ),
    ]
}

#[test]
fn deep_nesting_blocks_without_overflowing_the_stack() {
    // Shallow forms are analysed normally (so the deep ones test the limit, not a typo).
    for (form, sql) in nested_forms(3) {
        let (d, _) = timed_decide(sql.clone());
        let syntax = d
            .report()
            .statements
            .iter()
            .any(|s| matches!(s.rule, Rule::Syntax | Rule::Unanalysable(_)));
        assert!(!syntax, "{form} at depth 3 is not analysed: {d:?}\n{sql}");
    }
    for depth in [100, 1_000, 10_000] {
        for (form, sql) in nested_forms(depth) {
            let len = sql.len();
            let (d, took) = timed_decide(sql);
            println!(
                "nesting {form} x{depth} ({len} bytes): {} in {took:?}",
                if d.is_block() { "block" } else { "decided" }
            );
            assert!(
                took < Duration::from_secs(5),
                "{form} x{depth} took {took:?}"
            );
            // Chains (operators, set operations, joins) are left-deep lists, not nesting: they
            // must only decide safely and in time.
            let chain = form.contains("chain") || form == "JSON operators";
            if depth >= 1_000 && !chain {
                assert!(d.is_block(), "{form} x{depth} was not blocked");
            }
        }
    }
}

/// Time to decide `build(n)`, best of two runs (the machine is shared).
fn best_time(build: &dyn Fn(usize) -> String, n: usize) -> (Decision, Duration) {
    let (d, a) = timed_decide(build(n));
    let (_, b) = timed_decide(build(n));
    (d, a.min(b))
}

#[test]
fn wide_statements_decide_in_near_linear_time() {
    type Build = Box<dyn Fn(usize) -> String>;
    let cases: Vec<(&str, Build)> = vec![
        (
            "IN list",
            Box::new(|n| {
                format!(
                    "SELECT id FROM users WHERE id IN ({})",
                    (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
                )
            }),
        ),
        (
            "IN list of strings",
            Box::new(|n| {
                format!(
                    "SELECT id FROM users WHERE handle IN ({})",
                    (0..n)
                        .map(|i| format!("'h{i}'"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }),
        ),
        (
            "VALUES rows",
            Box::new(|n| {
                format!(
                    "INSERT INTO follows (follower_id, followee_id) VALUES {}",
                    (0..n)
                        .map(|i| format!("({i}, {i})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        ),
        (
            "select list",
            Box::new(|n| {
                format!(
                    "SELECT {} FROM users",
                    (0..n)
                        .map(|i| format!("id AS c{i}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        ),
        (
            "masked select list",
            Box::new(|n| format!("SELECT {} FROM users", vec!["phone_2fa"; n].join(", "))),
        ),
        (
            "ANY array",
            Box::new(|n| {
                format!(
                    "SELECT id FROM users WHERE id = ANY(ARRAY[{}])",
                    (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
                )
            }),
        ),
    ];
    for (name, build) in &cases {
        let (d_small, small) = best_time(build.as_ref(), 1_000);
        let (d_big, big) = timed_decide(build(20_000));
        println!("{name}: 1k items {small:?}, 20k items {big:?}");
        assert!(
            !d_small.is_block() || name.starts_with("masked"),
            "{name} (1k) blocked: {d_small:?}"
        );
        let _ = d_big;
        assert!(
            big < Duration::from_secs(10),
            "{name}: 20k items took {big:?}"
        );
        // 20x the items may cost at most ~60x the time (linear with slack for a busy machine;
        // quadratic would be 400x).
        let ratio = big.as_secs_f64() / small.as_secs_f64().max(1e-4);
        assert!(
            ratio < 60.0,
            "{name}: 20x the items took {ratio:.0}x the time ({small:?} -> {big:?})"
        );
    }
}

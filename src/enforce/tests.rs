//! The decision cache through [`Enforcer`]: hits for same-shape statements, and never a hit
//! where a literal's value changes the verdict.

use std::sync::Mutex;

use super::*;
use crate::catalog::QualifiedName;
use crate::engine::fixtures::{example_catalog, example_policy};
use crate::intercept::Protocol;
use crate::policy::PolicyBuilder;

/// Records whether each statement was decided by the engine or served from the cache.
#[derive(Default)]
struct Seen(Mutex<Vec<&'static str>>);

impl DecisionObserver for Seen {
    fn observe(
        &self,
        _: &StatementContext<'_>,
        _: &str,
        outcome: &Outcome<'_>,
    ) -> Result<(), PgError> {
        let what = match outcome {
            Outcome::Decided(..) => "decided",
            Outcome::Cached(..) => "cached",
            Outcome::Refused(..) => "refused",
        };
        self.0.lock().unwrap().push(what);
        Ok(())
    }
}

impl Seen {
    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Rig {
    enforcer: Enforcer,
    seen: Arc<Seen>,
}

fn rig_with(policy: CompiledPolicy) -> Rig {
    let seen = Arc::new(Seen::default());
    let enforcer =
        Enforcer::new(Arc::new(ArcSwap::from_pointee(policy)), "app").with_observer(seen.clone());
    enforcer.set_catalog(example_catalog());
    Rig { enforcer, seen }
}

fn rig() -> Rig {
    rig_with(example_policy())
}

impl Rig {
    fn run_as(&self, service: &str, purpose: &str, sql: &str) -> Verdict {
        let ctx = StatementContext {
            service,
            purpose,
            connection_id: 1,
            client_addr: "test",
            database: "app",
            protocol: Protocol::Simple,
        };
        self.enforcer.decide(&ctx, sql)
    }

    fn ads(&self, sql: &str) -> Verdict {
        self.run_as("ads-service", "advertising", sql)
    }

    fn analytics(&self, sql: &str) -> Verdict {
        self.run_as("analytics-service", "analytics", sql)
    }
}

fn is_block(v: &Verdict) -> bool {
    matches!(v, Verdict::Block(_))
}

#[test]
fn same_shape_statements_hit_and_keep_their_own_literals() {
    let r = rig();
    let a = r.ads("SELECT id, phone_2fa FROM users WHERE id = 1");
    let b = r.ads("select ID, phone_2fa\nFROM users WHERE id = 987654 -- other");
    assert_eq!(r.seen.take(), ["decided", "cached"]);
    let (Verdict::Rewrite(a), Verdict::Rewrite(b)) = (a, b) else {
        panic!("expected two rewrites")
    };
    assert!(a.contains("NULL::text") && a.contains("= 1"), "{a}");
    assert!(b.contains("NULL::text") && b.contains("987654"), "{b}");
    assert!(!b.contains("= 1 "), "{b}");
    // Allowed statements too; and the entries are per service.
    assert_eq!(
        r.analytics("SELECT body FROM posts WHERE id = 5"),
        Verdict::Forward
    );
    assert_eq!(
        r.analytics("SELECT body FROM posts WHERE id = 6"),
        Verdict::Forward
    );
    assert!(is_block(&r.ads(
        "SELECT body FROM posts WHERE user_id IN (SELECT id FROM users WHERE phone_2fa = '1')"
    )));
    assert!(is_block(
        &r.analytics("SELECT id FROM users WHERE phone_2fa = '2'")
    ));
    assert!(is_block(
        &r.analytics("SELECT id FROM users WHERE phone_2fa = '3'")
    ));
    assert_eq!(
        r.seen.take(),
        ["decided", "cached", "decided", "decided", "cached"]
    );
    assert_eq!(r.enforcer.cached_decisions(), 4);
}

#[test]
fn pinned_setting_values_are_checked_on_every_hit() {
    let r = rig();
    assert_eq!(r.ads("SET client_encoding TO 'UTF8'"), Verdict::Forward);
    // Decisions on pinned parameters depend on the value, so the engine marks them
    // literal-sensitive and they are never cached; the pinned check on hits is a second line.
    assert_eq!(
        r.enforcer.cached_decisions(),
        0,
        "a pinned-value SET is not cached"
    );
    // Same shape, another value: no cached Allow may be served.
    assert!(is_block(&r.ads("SET client_encoding TO 'LATIN1'")));
    assert!(is_block(&r.ads("set client_encoding to 'sql_ascii'")));
    assert_eq!(r.ads("SET client_encoding TO 'utf-8'"), Verdict::Forward);
    assert_eq!(r.seen.take(), ["decided", "decided", "decided", "decided"]);

    assert_eq!(
        r.ads("SET standard_conforming_strings = 1"),
        Verdict::Forward
    );
    assert!(is_block(&r.ads("SET standard_conforming_strings = 0")));
    assert_eq!(
        r.ads("SET standard_conforming_strings = 'on'"),
        Verdict::Forward
    );
    assert!(is_block(&r.ads("SET standard_conforming_strings = 'off'")));

    // The other order: a refused value is not cached against the pinned value.
    let r = rig();
    assert!(is_block(&r.ads("SET client_encoding = 'LATIN1'")));
    assert_eq!(r.ads("SET client_encoding = 'UTF8'"), Verdict::Forward);
}

#[test]
fn string_literals_naming_pinned_settings_are_checked_on_every_hit() {
    let r = rig();
    assert_eq!(
        r.analytics("SELECT body FROM posts WHERE body = 'hello'"),
        Verdict::Forward
    );
    assert!(is_block(&r.analytics(
        "SELECT body FROM posts WHERE body = 'set client_encoding to latin1'"
    )));
}

#[test]
fn set_config_depends_on_its_literal() {
    let r = rig();
    assert_eq!(
        r.ads("SELECT set_config('application_name', 'x', false)"),
        Verdict::Forward
    );
    assert!(is_block(
        &r.ads("SELECT set_config('client_encoding', 'LATIN1', false)")
    ));
    assert!(is_block(
        &r.ads("SELECT set_config('search_path', 'evil', false)")
    ));
    assert!(is_block(&r.ads(
        "SELECT set_config('standard_conforming_strings', 'off', false)"
    )));
    assert_eq!(
        r.ads("SELECT set_config('application_name', 'y', false)"),
        Verdict::Forward
    );
    assert!(r.seen.take().iter().all(|s| *s == "decided"));
}

#[test]
fn order_and_group_by_ordinals_depend_on_their_literal() {
    let r = rig();
    let first = r.ads("SELECT id, phone_2fa FROM users ORDER BY 1");
    assert!(matches!(first, Verdict::Rewrite(_)), "{first:?}");
    // Ordinal 2 is the forbidden column: a use in ORDER BY, which cannot be masked.
    assert!(is_block(
        &r.ads("SELECT id, phone_2fa FROM users ORDER BY 2")
    ));
    let first = r.ads("SELECT country, phone_2fa FROM users GROUP BY 1, 1");
    assert!(matches!(first, Verdict::Rewrite(_)), "{first:?}");
    assert!(is_block(
        &r.ads("SELECT country, phone_2fa FROM users GROUP BY 1, 2")
    ));
    // A failed analysis (ordinal out of range) is not cached against the valid ordinals.
    assert!(is_block(
        &r.analytics("SELECT id, body FROM posts ORDER BY 3")
    ));
    assert_eq!(
        r.analytics("SELECT id, body FROM posts ORDER BY 1"),
        Verdict::Forward
    );
    // A string constant is not an ordinal: its (cacheable) decision must not be served for
    // an ordinal in the same place.
    let constant = r.analytics("SELECT id, phone_2fa FROM users ORDER BY 'x'");
    assert!(matches!(constant, Verdict::Rewrite(_)), "{constant:?}");
    assert!(is_block(
        &r.analytics("SELECT id, phone_2fa FROM users ORDER BY 2")
    ));
}

#[test]
fn regclass_literals_are_not_cached() {
    let r = rig();
    let a = r.analytics("SELECT 'posts'::regclass");
    let b = r.analytics("SELECT 'users'::regclass");
    assert_eq!(a, b, "{a:?}");
    assert_eq!(r.seen.take(), ["decided", "decided"]);
    assert_eq!(r.enforcer.cached_decisions(), 0);
}

#[test]
fn row_filters_written_with_literals_depend_on_them() {
    let users = QualifiedName::new("public", "users");
    let policy = PolicyBuilder::new()
        .purpose("advertising")
        .service("t", &["advertising"], &[])
        .row_filter(&users, "advertising", "country = 'NL'")
        .build();
    let r = rig_with(policy);
    let t = |sql: &str| r.run_as("t", "advertising", sql);
    let same = "SELECT id FROM (SELECT * FROM public.users WHERE (country = 'NL')) u";
    assert_eq!(t(same), Verdict::Forward);
    let other = t("SELECT id FROM (SELECT * FROM public.users WHERE (country = 'DE')) u");
    assert!(matches!(other, Verdict::Rewrite(_)), "{other:?}");
}

#[test]
fn text_the_lookup_scan_refuses_goes_to_the_engine() {
    let r = rig();
    for sql in [
        "SELECT U&\"a\" FROM posts",
        "SELECT 'open",
        "SELECT E'\\xff'",
    ] {
        let v = r.analytics(sql);
        let Verdict::Block(e) = &v else {
            panic!("{sql:?}: {v:?}")
        };
        assert_eq!(e.code, "42601", "{sql:?}: {e:?}");
    }
    assert_eq!(r.seen.take(), ["decided", "decided", "decided"]);
    assert_eq!(r.enforcer.cached_decisions(), 0);
}

/// A text sqlparser reads differently from Postgres is refused by the engine, but served from
/// the cache when a Postgres-equivalent statement was decided first: Postgres runs exactly the
/// token sequence that decision was made on.
#[test]
fn hits_follow_postgres_reading() {
    let r = rig();
    // Postgres: `id > - 1`; sqlparser: a custom operator `>-` (refused by the cross-check).
    assert!(is_block(
        &r.analytics("SELECT body FROM posts WHERE id >-1")
    ));
    assert_eq!(
        r.analytics("SELECT body FROM posts WHERE id > - 1"),
        Verdict::Forward
    );
    assert_eq!(
        r.analytics("SELECT body FROM posts WHERE id >-7"),
        Verdict::Forward
    );
    assert_eq!(r.seen.take(), ["decided", "decided", "cached"]);
    // The forbidden column stays forbidden however it is spelled.
    assert!(is_block(
        &r.analytics("SELECT id FROM users WHERE phone_2fa >-1")
    ));
    assert!(is_block(
        &r.analytics("SELECT id FROM users WHERE phone_2fa > - 1")
    ));
    assert!(is_block(
        &r.analytics("SELECT id FROM users WHERE phone_2fa >-1")
    ));
}

#[test]
fn ddl_is_not_cached() {
    let r = rig();
    let ops = |sql: &str| r.run_as("ops-service", "analytics", sql);
    assert_eq!(
        ops("CREATE TABLE scratch (a int DEFAULT 1)"),
        Verdict::Forward
    );
    assert_eq!(
        ops("CREATE TABLE scratch (a int DEFAULT 2)"),
        Verdict::Forward
    );
    assert_eq!(r.seen.take(), ["decided", "decided"]);
}

#[test]
fn policy_and_catalog_versions_are_part_of_the_key() {
    let r = rig();
    assert_eq!(r.analytics("SELECT body FROM posts"), Verdict::Forward);
    let mut catalog = example_catalog();
    catalog.version = 2;
    r.enforcer.set_catalog(catalog);
    assert_eq!(r.analytics("SELECT body FROM posts"), Verdict::Forward);
    assert_eq!(r.seen.take(), ["decided", "decided"]);
}

#[test]
fn key_fields_cannot_run_into_each_other() {
    let lexed = lexing::lex_for_lookup("SELECT 1").unwrap();
    let ctx = |service, purpose| StatementContext {
        service,
        purpose,
        connection_id: 1,
        client_addr: "",
        database: "app",
        protocol: Protocol::Simple,
    };
    let a = cache_key(&ctx("ab", "c"), "v", 1, &lexed);
    let b = cache_key(&ctx("a", "bc"), "v", 1, &lexed);
    assert_ne!(a, b);
    let mut expected = Vec::new();
    for f in ["ab", "c", "v"] {
        expected.extend_from_slice(&(f.len() as u64).to_le_bytes());
        expected.extend_from_slice(f.as_bytes());
    }
    expected.extend_from_slice(&1u64.to_le_bytes());
    expected.extend_from_slice(b"select ?n");
    assert_eq!(a, expected);
}

/// Fails every observation, as an audit log that cannot be written does.
struct Failing;

impl DecisionObserver for Failing {
    fn observe(&self, _: &StatementContext<'_>, _: &str, _: &Outcome<'_>) -> Result<(), PgError> {
        Err(PgError::error(
            crate::error::sqlstate::IO_ERROR,
            "cannot record",
        ))
    }
}

#[test]
fn a_failing_observer_blocks_fresh_cached_and_refused_statements() {
    let seen = Arc::new(Seen::default());
    let enforcer = Enforcer::new(Arc::new(ArcSwap::from_pointee(example_policy())), "app")
        .with_observer(seen.clone())
        .with_observer(Arc::new(Failing));
    let ctx = StatementContext {
        service: "analytics-service",
        purpose: "analytics",
        connection_id: 1,
        client_addr: "test",
        database: "app",
        protocol: Protocol::Simple,
    };
    let blocked_by_observer =
        |v: Verdict| matches!(v, Verdict::Block(e) if e.message == "cannot record");
    // No catalog yet: refused before the engine runs.
    assert!(blocked_by_observer(enforcer.decide(&ctx, "SELECT 1")));
    enforcer.set_catalog(example_catalog());
    assert!(blocked_by_observer(
        enforcer.decide(&ctx, "SELECT body FROM posts")
    ));
    assert!(blocked_by_observer(
        enforcer.decide(&ctx, "SELECT body FROM posts")
    ));
    // The first observer saw all three, in order.
    assert_eq!(seen.take(), ["refused", "decided", "cached"]);
}

//! The observer through a real [`Enforcer`] on the example policy and catalog: one record per
//! message with the engine's facts, cached hits as complete as fresh decisions, and no literal.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::*;
use crate::audit::record::{parse_line, Event, Record, StatementEvent};
use crate::audit::writer::{list_segments, AuditSettings};
use crate::enforce::Enforcer;
use crate::engine::fixtures::{example_catalog, example_policy};
use crate::intercept::Interceptor;

fn rig() -> (tempfile::TempDir, Arc<AuditLog>, Enforcer) {
    let dir = tempfile::tempdir().unwrap();
    let policy = example_policy();
    let log = AuditLog::open(
        AuditSettings::new(dir.path(), b"0123456789abcdef".to_vec()),
        &policy.version,
    )
    .unwrap();
    let enforcer =
        Enforcer::new(Arc::new(ArcSwap::from_pointee(policy)), "app").with_observer(log.clone());
    enforcer.set_catalog(example_catalog());
    (dir, log, enforcer)
}

fn ctx(protocol: Protocol) -> StatementContext<'static> {
    StatementContext {
        service: "ads-service",
        purpose: "advertising",
        connection_id: 7,
        client_addr: "127.0.0.1:5555",
        database: "app",
        protocol,
    }
}

fn statements(dir: &std::path::Path) -> (Vec<StatementEvent>, String) {
    let mut out = Vec::new();
    let mut raw = String::new();
    for path in list_segments(dir).unwrap() {
        let text = std::fs::read_to_string(path).unwrap();
        for line in text.lines() {
            let (rec, _): (Record, _) = parse_line(line).unwrap();
            if let Event::Statement(s) = rec.event {
                out.push(s);
            }
        }
        raw.push_str(&text);
    }
    (out, raw)
}

#[test]
fn each_message_yields_one_complete_record_and_hits_match_fresh_ones() {
    let (dir, log, enforcer) = rig();
    let simple = ctx(Protocol::Simple);
    let sent = [
        "SELECT id, phone_2fa FROM users WHERE id = 4242",
        "SELECT id, phone_2fa FROM users WHERE id = 31337",
        "SELECT count(*) FROM users WHERE phone_2fa = '+15551234567'",
        "SELECT count(*) FROM users WHERE phone_2fa = '+15559876543'",
        "SELECT handle FROM users WHERE marketing_email = 'alice@example.com'; SELECT 8675309",
        "SELEC 'oops@example.com' FROM",
    ];
    let verdicts: Vec<Verdict> = sent.iter().map(|s| enforcer.decide(&simple, s)).collect();
    enforcer.decide(
        &ctx(Protocol::Extended),
        "SELECT handle FROM users WHERE id = $1",
    );
    log.close().unwrap();

    let (recs, raw) = statements(dir.path());
    assert_eq!(recs.len(), sent.len() + 1);
    for literal in [
        "4242",
        "31337",
        "15551234567",
        "15559876543",
        "alice@example.com",
        "8675309",
        "oops",
    ] {
        assert!(!raw.contains(literal), "literal {literal} in the log");
    }
    let (fresh, hit) = (&recs[0], &recs[1]);
    assert!(matches!(verdicts[0], Verdict::Rewrite(_)));
    assert_eq!((fresh.cached, hit.cached), (false, true));
    assert_eq!(fresh.decision, record::Decision::Rewrite);
    assert_eq!(fresh.statements, hit.statements);
    assert_eq!(
        (&fresh.sql, &fresh.fingerprint, &fresh.rule),
        (&hit.sql, &hit.fingerprint, &hit.rule)
    );
    assert_eq!(fresh.sql, "select id , phone_2fa from users where id = ?");
    assert_eq!(fresh.fingerprint.len(), 16);
    assert!(
        fresh
            .rewrite
            .as_deref()
            .is_some_and(|r| r.contains("null") || r.contains("NULL")),
        "{fresh:?}"
    );
    assert_eq!(hit.rewrite, fresh.rewrite);
    let phone = fresh.statements[0]
        .uses
        .iter()
        .find(|u| u.column == "phone_2fa")
        .expect("phone_2fa use");
    assert_eq!(
        (phone.table.as_str(), phone.clause.as_str()),
        ("public.users", "output")
    );
    assert!(phone.masked && !phone.allowed);
    assert!(phone.tags.as_ref().is_some_and(|t| !t.is_empty()));
    assert_eq!(fresh.statements[0].masked, ["phone_2fa"]);
    assert_eq!(
        (
            fresh.connection_id,
            fresh.service.as_str(),
            fresh.purpose.as_str(),
            fresh.protocol.as_str()
        ),
        (7, "ads-service", "advertising", "simple")
    );
    assert_eq!(fresh.session_id, format!("{}-7", log.instance()));
    assert_eq!(fresh.policy_version, example_policy().version);

    let (blocked, blocked_hit) = (&recs[2], &recs[3]);
    assert_eq!(blocked.decision, record::Decision::Block);
    assert_eq!(blocked.sqlstate.as_deref(), Some("42501"));
    assert_eq!(
        blocked.rule,
        "forbidden_column:public.users.phone_2fa:predicate"
    );
    assert!(blocked_hit.cached && blocked_hit.statements == blocked.statements);

    let multi = &recs[4];
    assert_eq!(multi.statements.len(), 2);
    assert_eq!(
        multi.sql,
        "select handle from users where marketing_email = ? ; select ?"
    );

    let syntax = &recs[5];
    assert_eq!(
        (syntax.decision, syntax.rule.as_str()),
        (record::Decision::Block, "syntax")
    );
    assert_eq!(syntax.sqlstate.as_deref(), Some("42601"));
    assert_eq!(recs[6].protocol, "extended");
    assert_eq!(recs[6].sql, "select handle from users where id = $1");
}

#[test]
fn a_refused_statement_is_recorded_and_an_unwritable_log_blocks() {
    let (dir, log, enforcer) = rig();
    let other_db = StatementContext {
        database: "other",
        ..ctx(Protocol::Simple)
    };
    assert!(matches!(
        enforcer.decide(&other_db, "SELECT 1"),
        Verdict::Block(_)
    ));
    {
        let full = std::fs::OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .unwrap();
        log.lock_for_tests().file = Some(Arc::new(full));
    }
    let Verdict::Block(error) = enforcer.decide(&ctx(Protocol::Simple), "SELECT handle FROM users")
    else {
        panic!("not blocked")
    };
    assert_eq!(error.code, "58030");
    assert!(error.message.contains("audit log"));
    drop(enforcer);
    drop(log);
    let (recs, _) = statements(dir.path());
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].rule, "refused_before_analysis");
    assert_eq!(recs[0].database, "other");
    assert!(recs[0].statements.is_empty());
}

#[test]
fn reloads_are_recorded_and_the_initial_load_only_once() {
    use crate::reload::{PolicyEventKind, PolicyEvents};
    let (dir, log, _enforcer) = rig();
    PolicyEvents::policy_event(&*log, PolicyEventKind::Loaded, "v1", None);
    PolicyEvents::policy_event(&*log, PolicyEventKind::Reloaded, "v2", None);
    PolicyEvents::policy_event(
        &*log,
        PolicyEventKind::ReloadRefused,
        "v2",
        Some("tables.yaml:3: unknown purpose"),
    );
    log.close().unwrap();
    let mut events = Vec::new();
    for path in list_segments(dir.path()).unwrap() {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            if let Event::Policy(p) = parse_line(line).unwrap().0.event {
                events.push((p.event, p.policy_version, p.error));
            }
        }
    }
    let start = example_policy().version;
    assert_eq!(
        events,
        [
            ("loaded".to_owned(), start, None),
            ("reloaded".to_owned(), "v2".to_owned(), None),
            (
                "reload_refused".to_owned(),
                "v2".to_owned(),
                Some("tables.yaml:3: unknown purpose".to_owned())
            ),
        ]
    );
}

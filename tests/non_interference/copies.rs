//! Copies of the example database that differ only in the values of the columns tagged for
//! `security` (users.email_login, users.phone_2fa, users.password_hash, all of login_events),
//! each in its own throwaway cluster so that everything else — transaction ids, OIDs,
//! relfilenodes, physical row order, statistics of other columns — is the same in all copies.

use pgpurpose::localpg::{ClusterOptions, LocalCluster};

use crate::common::cluster::example_cluster;
use crate::common::APP_DB;

/// Which values the security-tagged columns hold in a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// The example's own values (rewritten to themselves, so the history matches).
    Example,
    /// Every value replaced by another of the same length (digits and letters permuted,
    /// login events moved to other ids, users, times and addresses); NULLs stay NULL.
    Scrambled,
    /// Values of other lengths: longer emails, NULL and non-NULL 2FA phones swapped, shorter
    /// hashes, IPv6 addresses, longer user agents. The tables' sizes change.
    Resized,
}

/// The expressions `scramble.sql` puts in each placeholder.
fn expressions(values: Values) -> [(&'static str, &'static str); 9] {
    match values {
        Values::Example => [
            ("email_login", "email_login"),
            ("phone_2fa", "phone_2fa"),
            ("password_hash", "password_hash"),
            ("event_id", "-id"),
            ("event_user_id", "user_id"),
            ("event_at", "at"),
            ("event_ip", "ip"),
            ("event_user_agent", "user_agent"),
            ("event_success", "success"),
        ],
        Values::Scrambled => [
            (
                "email_login",
                "translate(email_login, 'abcdefghijklmnopqrstuvwxyz0123456789', \
                 'qwertyuiopasdfghjklzxcvbnm7394051826')",
            ),
            (
                "phone_2fa",
                "translate(phone_2fa, '0123456789', '5820719364')",
            ),
            (
                "password_hash",
                "translate(password_hash, '0123456789abcdef', 'f1e2d3c4b5a69780')",
            ),
            ("event_id", "((-id - 1) * 7 + 3) % 5000 + 1"),
            ("event_user_id", "((user_id - 1) * 13 + 5) % 1000 + 1"),
            ("event_at", "at + interval '3 days 5 hours 7 minutes'"),
            ("event_ip", "ip + 777"),
            (
                "event_user_agent",
                "translate(user_agent, 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', \
                 'zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA')",
            ),
            ("event_success", "NOT success"),
        ],
        Values::Resized => [
            ("email_login", "'renamed.' || email_login || '.example'"),
            (
                "phone_2fa",
                "CASE WHEN phone_2fa IS NULL THEN '+4477' || lpad(id::text, 8, '0') END",
            ),
            ("password_hash", "md5(password_hash)"),
            ("event_id", "((-id - 1) * 7 + 3) % 5000 + 1"),
            ("event_user_id", "((user_id - 1) * 13 + 5) % 1000 + 1"),
            ("event_at", "at - interval '400 days'"),
            ("event_ip", "('2001:db8::' || (-id)::text)::inet"),
            ("event_user_agent", "user_agent || ' (resized copy)'"),
            ("event_success", "NOT success"),
        ],
    }
}

/// The script that gives a copy its values.
pub fn scramble_sql(values: Values) -> String {
    let template = include_str!("scramble.sql");
    let mut sql = template.to_owned();
    for (name, expr) in expressions(values) {
        let placeholder = format!("{{{name}}}");
        assert!(
            sql.contains(&placeholder),
            "scramble.sql lacks {placeholder}"
        );
        sql = sql.replace(&placeholder, expr);
    }
    assert!(
        !sql.contains("{"),
        "scramble.sql has an unfilled placeholder"
    );
    sql
}

/// A new cluster with the example in `app` and the security columns set to `values`
/// (stopped and removed when dropped). Each test makes its own copies: a copy's state changes
/// with the statements it is sent (sequences, dead tuples), so copies are never shared.
/// Autovacuum (which would analyse and vacuum at its own moments) and JIT (whose use shows in
/// EXPLAIN ANALYZE depending on costs) are off, so that copies evolve only by what the test
/// sends them.
pub fn make_copy(values: Values) -> LocalCluster {
    let pg = example_cluster(ClusterOptions {
        settings: vec![
            ("autovacuum".into(), "off".into()),
            ("jit".into(), "off".into()),
        ],
        ..ClusterOptions::default()
    });
    pg.psql(APP_DB, &scramble_sql(values))
        .unwrap_or_else(|e| panic!("giving the copy its {values:?} values: {e}"));
    pg
}

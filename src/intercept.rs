//! The interception seam: the single point every SQL-bearing frontend message passes through.
//!
//! The relay hands each statement text (from a simple `Query`, a `Parse`, or the text of a
//! `COPY` inside them) to an [`Interceptor`], which returns a [`Verdict`]. The relay then
//! forwards the client's original bytes, forwards a rewrite, or answers with the block, keeping
//! Postgres's own error semantics. The policy engine is one implementation; the relay's tests
//! use [`RecordingInterceptor`] to prove that every statement reaches the seam.

use std::sync::Mutex;

use crate::error::PgError;

/// Which protocol path carried the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A `Query` ('Q') message; may hold several statements.
    Simple,
    /// A `Parse` ('P') message; exactly one statement, decided once for the prepared statement.
    Extended,
}

/// Who is asking, as established by authentication (never by what the client claims).
#[derive(Debug, Clone)]
pub struct StatementContext<'a> {
    pub service: &'a str,
    pub purpose: &'a str,
    /// Proxy-wide unique id of the client connection.
    pub connection_id: u64,
    pub client_addr: &'a str,
    /// The upstream database the session is connected to.
    pub database: &'a str,
    pub protocol: Protocol,
}

/// What to do with a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward the client's original bytes unchanged.
    Forward,
    /// Forward this SQL text in place of the original.
    Rewrite(String),
    /// Do not run it; answer the client with this error.
    Block(PgError),
}

/// Decides what happens to each statement. Implementations must be pure with respect to the
/// session (no I/O on the relay's hot path beyond what they own, such as the audit log) and
/// must fail closed: any internal error is a [`Verdict::Block`].
pub trait Interceptor: Send + Sync + 'static {
    fn decide(&self, ctx: &StatementContext<'_>, sql: &str) -> Verdict;
}

/// Allows everything and records what it saw. Used by the relay's own tests to prove the seam
/// is on every path; not a production policy.
#[derive(Debug, Default)]
pub struct RecordingInterceptor {
    seen: Mutex<Vec<(Protocol, String)>>,
}

impl RecordingInterceptor {
    pub fn seen(&self) -> Vec<(Protocol, String)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Interceptor for RecordingInterceptor {
    fn decide(&self, ctx: &StatementContext<'_>, sql: &str) -> Verdict {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((ctx.protocol, sql.to_owned()));
        }
        Verdict::Forward
    }
}

/// The relay's own guard, used until (and underneath) the policy engine: refuses statements
/// whose text cannot be tokenized with certainty and statements that could change the settings
/// the proxy pins upstream (`standard_conforming_strings`, `client_encoding`). Everything else
/// is forwarded unchanged.
#[derive(Debug, Default)]
pub struct PinnedSettingsGuard;

impl PinnedSettingsGuard {
    /// `Some(error)` when the statement must be refused.
    pub fn check(sql: &str) -> Option<PgError> {
        use crate::engine::{lexing, pinned};
        match lexing::lex(sql) {
            Err(error) => Some(
                PgError::error(
                    crate::error::sqlstate::SYNTAX_ERROR,
                    format!("pgpurpose cannot analyse this statement: {error}"),
                )
                .with_hint(
                    "the proxy refuses SQL whose meaning it cannot determine with certainty",
                ),
            ),
            Ok(lexed) => pinned::check_pinned_settings(&lexed).err().map(|error| {
                PgError::forbidden(format!("pgpurpose refuses this statement: {error}")).with_hint(
                    "client_encoding and standard_conforming_strings are pinned by the proxy",
                )
            }),
        }
    }
}

impl Interceptor for PinnedSettingsGuard {
    fn decide(&self, _ctx: &StatementContext<'_>, sql: &str) -> Verdict {
        match Self::check(sql) {
            Some(error) => Verdict::Block(error),
            None => Verdict::Forward,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> StatementContext<'static> {
        StatementContext {
            service: "s",
            purpose: "p",
            connection_id: 1,
            client_addr: "127.0.0.1:1",
            database: "app",
            protocol: Protocol::Simple,
        }
    }

    #[test]
    fn guard_blocks_pinned_setting_changes_and_undecidable_text() {
        let guard = PinnedSettingsGuard;
        for sql in [
            "SET client_encoding TO 'LATIN1'",
            "set standard_conforming_strings = off",
            "RESET client_encoding",
            "SELECT set_config('standard_conforming_strings', 'off', false)",
            "select 1; SET NAMES 'SQL_ASCII'",
            "SELECT U&\"s\\0065cret\" FROM t",
        ] {
            assert!(
                matches!(guard.decide(&ctx(), sql), Verdict::Block(_)),
                "{sql}"
            );
        }
        for sql in [
            "SELECT 1",
            "SET statement_timeout = '5s'",
            "RESET ALL",
            "BEGIN; SELECT now(); COMMIT",
        ] {
            assert_eq!(guard.decide(&ctx(), sql), Verdict::Forward, "{sql}");
        }
    }
}

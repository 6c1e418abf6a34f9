//! The interception seam: the single point every SQL-bearing frontend message passes through.
//!
//! The relay hands each statement text (from a simple `Query`, a `Parse`, or the text of a
//! `COPY` inside them) to an [`Interceptor`], which returns a [`Verdict`]. The relay then
//! forwards the client's original bytes, forwards a rewrite, or answers with the block, keeping
//! Postgres's own error semantics. The production implementation is `enforce::Enforcer`, which
//! decides with the policy engine.

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

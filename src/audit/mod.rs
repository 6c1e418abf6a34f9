//! The tamper-evident audit log: one hash-chained record per decision and connection event,
//! written before the statement is forwarded or the block answered.
//!
//! - [`record`]: the JSON Lines format, the hash chain and checkpoint MACs (shared by the
//!   writer and the reviewer's tools).
//! - [`writer`]: [`AuditLog`], appending sealed records to rotating segment files, with
//!   group-committed syncs and a fail-closed failed state.
//! - [`observer`]: the log as the Enforcer's decision observer, and the relay's connection
//!   events.
//! - [`verify`]: checking segment files (`pgpurpose audit verify`).
//! - [`reader`]: finding, ordering and reading segment files back, with file and line.
//! - [`report`]: `audit report`, the reviewer's summary (table, JSON, CSV, HTML).
//! - [`tail`]: `audit tail`, filtered live review of new records.
//! - [`cli`]: the `pgpurpose audit` subcommands.

pub mod cli;
pub mod observer;
pub mod reader;
pub mod record;
pub mod report;
pub mod tail;
pub mod verify;
pub mod writer;

pub use writer::{AuditError, AuditLog, AuditSettings};

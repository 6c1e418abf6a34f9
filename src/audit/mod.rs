//! The tamper-evident audit log: one hash-chained record per decision and connection event,
//! written before the statement is forwarded or the block answered.
//!
//! - [`record`]: the JSON Lines format, the hash chain and checkpoint MACs (shared by the
//!   writer and the reviewer's tools).
//! - [`reader`]: finding, ordering and reading segment files back, with file and line.
//! - [`report`]: `audit report`, the reviewer's summary (table, JSON, CSV, HTML).
//! - [`tail`]: `audit tail`, filtered live review of new records.

pub mod reader;
pub mod record;
pub mod report;
pub mod tail;

//! The tamper-evident audit log: one hash-chained record per decision and connection event,
//! written before the statement is forwarded or the block answered.
//!
//! - [`record`]: the JSON Lines format, the hash chain and checkpoint MACs (shared by the
//!   writer and the reviewer's tools).

pub mod record;

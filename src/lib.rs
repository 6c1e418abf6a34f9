//! pgpurpose: a PostgreSQL wire-protocol proxy that enforces purpose limitation.
//!
//! A tour, in the order a statement travels:
//!
//! - [`relay`]: the listener, one task per client session, the startup/authentication phase
//!   and the relay loop that frames messages and forwards backend traffic as raw bytes.
//! - [`protocol`]: wire framing and the few messages the proxy builds or inspects.
//! - [`auth`]: SCRAM-SHA-256 for clients (who are *services*), and upstream authentication.
//! - [`intercept`]: the single seam every SQL-bearing message passes through; returns a verdict.
//! - [`enforce`]: the production interceptor: engine decisions, shape-keyed cache, catalog upkeep.
//! - [`engine`]: the pure decision engine (parse, resolve every column use, decide, rewrite).
//! - [`policy`]: the YAML policy model and its compiled, indexed form.
//! - [`catalog`]: the snapshot of upstream relations, columns and views the engine resolves against.
//! - [`audit`]: the hash-chained audit log of every decision and connection event.
//! - [`error`]: errors as clients see them (`ErrorResponse` with a SQLSTATE).
//! - [`reload`]: hot reload of the policy (SIGHUP, file changes); [`metrics`]: Prometheus and
//!   health endpoint.
//! - [`ops`]: the DBA's tools (`check`, `explain`, `test`, `diff`, `catalog dump`).

pub mod app;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod enforce;
pub mod engine;
pub mod error;
pub mod intercept;
pub mod localpg;
pub mod metrics;
pub mod ops;
pub mod policy;
pub mod protocol;
pub mod quickstart;
pub mod relay;
pub mod reload;

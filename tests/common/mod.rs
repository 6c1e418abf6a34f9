//! Shared helpers for the integration tests (each `tests/*.rs` binary does `mod common;`).
//!
//! - [`cluster`]: one throwaway Postgres per test binary with the example database `app`.
//! - [`proxy`]: proxy configuration files and the proxy binary as a child process.
//! - [`client`]: connecting through the proxy with tokio-postgres, and finding external
//!   clients (Python with psycopg).
//! - [`frames`]: decoding RowDescription / DataRow / CommandComplete frames of [`raw`], and
//!   rendering any backend frame for failure messages.
//!
//! Not every test binary uses every helper, hence the `dead_code` and `unused_imports` allowance.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod cluster;
pub mod faults;
pub mod frames;
pub mod pgclient;
pub mod proxy;
pub mod raw;

pub use client::{connect_as, connect_with_purpose, find_python};
pub use cluster::{shared_cluster, APP_DB};
pub use proxy::{spawn_proxy, write_config, ProxyConfig, ProxyProcess, WrittenConfig};

/// An example service from the example policy (`/policies`, see the notes on the example).
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// Startup `user` name the service connects with.
    pub name: &'static str,
    /// Its password (the policy holds only the SCRAM verifier).
    pub password: &'static str,
    /// The Postgres role the proxy connects upstream as.
    pub upstream_role: &'static str,
}

pub const AUTH: Service = Service {
    name: "auth-service",
    password: "auth-pass",
    upstream_role: "app_auth",
};
pub const ADS: Service = Service {
    name: "ads-service",
    password: "ads-pass",
    upstream_role: "app_ads",
};
pub const DISCOVERY: Service = Service {
    name: "discovery-service",
    password: "discovery-pass",
    upstream_role: "app_discovery",
};
pub const ANALYTICS: Service = Service {
    name: "analytics-service",
    password: "analytics-pass",
    upstream_role: "app_analytics",
};
pub const SUPPORT: Service = Service {
    name: "support-service",
    password: "support-pass",
    upstream_role: "app_support",
};

/// The crate root (for `policies/`, `examples/`, `tests/clients/`).
pub fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

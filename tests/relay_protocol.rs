//! The wire protocol through the real proxy binary against a real Postgres 15: every test
//! asserts on what the client actually received, and wherever Postgres itself defines the
//! right answer the proxied result is compared with the same exchange made directly against
//! the cluster (byte for byte where the protocol allows).
//!
//! - `data_path`: simple and extended queries, binary formats, 30 MB values, COPY in three
//!   formats, notices, LISTEN/NOTIFY, transactions, errors inside pipelines, cancel.
//! - `auth`: passwords, unknown services, session purposes, refused startup parameters, TLS.
//! - `pinned`: statements that would change the pinned `client_encoding` /
//!   `standard_conforming_strings`.
//! - `raw_wire`: hand-built frames (FunctionCall, unknown types, size limits, broken startup
//!   packets, SSLRequest with pipelined bytes).
//! - `lifecycle`: upstream down or restarted, graceful shutdown, the connection limit.
//!
//! Most tests connect as `analytics-service` (upstream role `app_analytics`); the tables they
//! use are untagged and created here before any proxy starts.

mod common;

#[path = "relay_protocol/auth.rs"]
mod auth;
#[path = "relay_protocol/data_path.rs"]
mod data_path;
#[path = "relay_protocol/lifecycle.rs"]
mod lifecycle;
#[path = "relay_protocol/pinned.rs"]
mod pinned;
#[path = "relay_protocol/raw_wire.rs"]
mod raw_wire;

use std::sync::OnceLock;

use common::{ProxyConfig, ProxyProcess, Service, WrittenConfig, ANALYTICS, APP_DB};
use pgpurpose::localpg::LocalCluster;

/// The service most tests connect as.
pub const SERVICE: Service = ANALYTICS;

/// The shared cluster with this binary's tables, functions and grants, set up once.
pub fn cluster() -> &'static LocalCluster {
    static READY: OnceLock<()> = OnceLock::new();
    let pg = common::shared_cluster();
    READY.get_or_init(|| {
        let role = SERVICE.upstream_role;
        pg.psql(
            APP_DB,
            &format!(
                "CREATE TABLE proto_tx (id int PRIMARY KEY, v text);
                 CREATE TABLE proto_big (id int PRIMARY KEY, b bytea, t text);
                 CREATE TABLE proto_copy_text (id int PRIMARY KEY, t text, n numeric, b bytea,
                                               ts timestamptz, a int[], j jsonb);
                 CREATE TABLE proto_copy_csv (LIKE proto_copy_text INCLUDING ALL);
                 CREATE TABLE proto_copy_bin (LIKE proto_copy_text INCLUDING ALL);
                 CREATE TABLE proto_copy_fail (LIKE proto_copy_text INCLUDING ALL);
                 CREATE FUNCTION proto_notice(msg text) RETURNS int LANGUAGE plpgsql AS
                   $$ BEGIN RAISE NOTICE 'proto notice: %', msg; RETURN 1; END $$;
                 CREATE FUNCTION proto_warning(msg text) RETURNS int LANGUAGE plpgsql AS
                   $$ BEGIN RAISE WARNING 'proto warning: %', msg; RETURN 2; END $$;
                 GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE
                   ON ALL TABLES IN SCHEMA public TO {role};"
            ),
        )
        .unwrap_or_else(|e| panic!("preparing the relay_protocol fixture: {e}"));
    });
    pg
}

/// A proxy with the default configuration in front of the shared cluster.
pub fn start_proxy() -> (WrittenConfig, ProxyProcess) {
    start_proxy_with(|_| {})
}

/// A proxy in front of the shared cluster, configuration adjusted by `adjust`.
pub fn start_proxy_with(adjust: impl FnOnce(&mut ProxyConfig)) -> (WrittenConfig, ProxyProcess) {
    let mut cfg = ProxyConfig::new(cluster());
    adjust(&mut cfg);
    let written = common::write_config(&cfg);
    let proxy = common::spawn_proxy(&written.path);
    (written, proxy)
}

/// Connects through the proxy as [`SERVICE`]; panics on failure.
pub async fn proxied(port: u16) -> tokio_postgres::Client {
    common::connect_as(SERVICE.name, SERVICE.password, port)
        .await
        .unwrap_or_else(|e| panic!("connecting through the proxy: {e}"))
}

/// Connects directly to the cluster as [`SERVICE`]'s upstream role.
pub async fn direct() -> tokio_postgres::Client {
    common::pgclient::direct(cluster(), SERVICE.upstream_role).await
}

//! End-to-end enforcement: the real proxy binary with the example policies (`policies/`) in
//! front of a real Postgres 15 holding the example schema and data (`examples/`). Every test
//! asserts on what the client actually received, usually next to what the same question
//! answers when asked directly (as the service's upstream role, with the policy's row filter
//! written out by hand), so "masked" and "filtered" are checked against Postgres itself.
//!
//! - `masking`: masked columns are NULL of the same type under the same name, in text and
//!   binary formats and in the raw RowDescription; `*` keeps order, names and types.
//! - `blocking`: 42501 naming the column; session usable; transactions aborted; pipelines
//!   recover at Sync; one blocked statement blocks its whole Query message.
//! - `row_filters`: discovery-service and ads-service see only their users, through joins,
//!   subqueries, CTEs, LATERAL, set operations and views; writes are filtered too.
//! - `prepared`: protocol-level and SQL-level prepared statements, decided once, executed
//!   many times.
//! - `copy`: COPY TO (table, query, csv, binary) masked and filtered; COPY FROM refused.
//! - `attacks`: the Tailored Audiences match in many spellings, refused for ads-service,
//!   while auth-service runs the same shapes against an allowed list.
//! - `system_views`: pg_stats, pg_stat_activity and friends do not leak values.
//! - `side_channels`: what EXPLAIN ANALYZE tells about rows a row filter hides.

mod common;

#[path = "enforcement/attacks.rs"]
mod attacks;
#[path = "enforcement/blocking.rs"]
mod blocking;
#[path = "enforcement/copy.rs"]
mod copy;
#[path = "enforcement/masking.rs"]
mod masking;
#[path = "enforcement/prepared.rs"]
mod prepared;
#[path = "enforcement/row_filters.rs"]
mod row_filters;
#[path = "enforcement/side_channels.rs"]
mod side_channels;
#[path = "enforcement/system_views.rs"]
mod system_views;

use common::raw::RawConn;
use common::{ProxyConfig, ProxyProcess, Service, WrittenConfig};
use tokio_postgres::{Client, SimpleQueryMessage};

/// A proxy with the repository's policies in front of this binary's shared cluster.
pub fn start_proxy() -> (WrittenConfig, ProxyProcess) {
    let cfg = ProxyConfig::new(common::shared_cluster());
    let written = common::write_config(&cfg);
    let proxy = common::spawn_proxy(&written.path);
    (written, proxy)
}

/// A tokio-postgres session through the proxy as `service`; panics on failure.
pub async fn proxied(port: u16, service: Service) -> Client {
    common::connect_as(service.name, service.password, port)
        .await
        .unwrap_or_else(|e| panic!("connecting as {} through the proxy: {e}", service.name))
}

/// A tokio-postgres session straight to the cluster as `role` (no policy).
pub async fn direct(role: &str) -> Client {
    common::pgclient::direct(common::shared_cluster(), role).await
}

/// A raw wire session through the proxy as `service`.
pub async fn raw_proxied(port: u16, service: Service) -> RawConn {
    RawConn::login(port, service.name, Some(service.password)).await
}

/// A raw wire session straight to the cluster as `role`.
pub async fn raw_direct(role: &str) -> RawConn {
    RawConn::login(common::shared_cluster().port(), role, None).await
}

/// Rows of a simple query as text values (`None` = NULL); panics on error.
pub async fn simple_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The single bigint of `sql` (e.g. a count), through the extended protocol.
pub async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get::<_, i64>(0)
}

/// Asserts that `result` is the proxy's refusal: SQLSTATE 42501, a message naming every
/// string of `names`, and the hint every policy refusal carries.
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, tokio_postgres::Error>,
    names: &[&str],
    what: &str,
) {
    let err = match result {
        Ok(v) => panic!("{what}: expected a 42501 refusal, got {v:?}"),
        Err(e) => e,
    };
    let Some(db) = err.as_db_error() else {
        panic!("{what}: expected a server error, got {err}");
    };
    assert_eq!(db.code().code(), "42501", "{what}: {db:?}");
    for n in names {
        assert!(
            db.message().contains(n),
            "{what}: message does not name {n}: {}",
            db.message()
        );
    }
    assert!(
        db.message().contains("purpose policy"),
        "{what}: not a policy refusal: {}",
        db.message()
    );
    assert!(
        db.hint().is_some(),
        "{what}: refusal without a hint: {db:?}"
    );
}

/// The users ads-service may see, written out by hand (the policy's row filter).
pub const ADS_FILTER: &str = "ads_opt_in";
/// The users discovery-service may see.
pub const DISCOVERY_FILTER: &str = "discoverable";

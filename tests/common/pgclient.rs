//! tokio-postgres helpers for protocol tests: direct connections to the cluster (the reference
//! a proxied result is compared with), connections whose asynchronous messages (notices,
//! notifications, unsolicited errors) are captured, and a column type that keeps a value's
//! raw wire bytes so results can be compared byte for byte.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use pgpurpose::localpg::LocalCluster;

use super::cluster::APP_DB;

/// Something the server sent outside a request/response exchange, or the connection's end.
#[derive(Debug)]
pub enum Event {
    Notice(Box<tokio_postgres::error::DbError>),
    Notification(tokio_postgres::Notification),
    /// The connection ended with this error (e.g. an unsolicited FATAL).
    Error(tokio_postgres::Error),
    /// The connection ended cleanly.
    Closed,
}

/// Connection parameters for the proxy on 127.0.0.1:`port`, database `app`.
pub fn proxy_config(service: &str, password: &str, port: u16, purpose: Option<&str>) -> Config {
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(service)
        .password(password)
        .dbname(APP_DB)
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = purpose {
        config.options(format!("-c pgpurpose.purpose={p}"));
    }
    config
}

/// Connection parameters for the cluster itself, as `role` (trusted on 127.0.0.1).
pub fn direct_config(pg: &LocalCluster, role: &str) -> Config {
    let mut config = Config::new();
    config
        .host(pg.host())
        .port(pg.port())
        .user(role)
        .dbname(APP_DB)
        .connect_timeout(Duration::from_secs(10));
    config
}

/// Connects and spawns a task that drives the connection, forwarding every asynchronous
/// message to the returned channel.
pub async fn connect_watched(
    config: &Config,
) -> Result<(Client, mpsc::UnboundedReceiver<Event>), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let message = futures_util::future::poll_fn(|cx| connection.poll_message(cx)).await;
            let event = match message {
                Some(Ok(AsyncMessage::Notice(n))) => Event::Notice(Box::new(n)),
                Some(Ok(AsyncMessage::Notification(n))) => Event::Notification(n),
                Some(Ok(_)) => continue,
                Some(Err(e)) => Event::Error(e),
                None => Event::Closed,
            };
            let last = matches!(event, Event::Error(_) | Event::Closed);
            // Keep driving the connection even when nobody listens: the client needs it.
            let _ = tx.send(event);
            if last {
                return;
            }
        }
    });
    Ok((client, rx))
}

/// Connects directly to the cluster as `role`; panics on failure.
pub async fn direct(pg: &LocalCluster, role: &str) -> Client {
    let (client, _events) = connect_watched(&direct_config(pg, role))
        .await
        .unwrap_or_else(|e| panic!("direct connection as {role}: {e}"));
    client
}

/// The next event within `within`, if any.
pub async fn next_event(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    within: Duration,
) -> Option<Event> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

/// A column value as its raw bytes in whatever format the server sent (binary for
/// tokio-postgres's extended queries); `None` for NULL. Accepts every type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawValue(pub Option<Vec<u8>>);

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(Some(raw.to_vec())))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// Every row of `rows` as (column name, type, raw value) triples.
pub fn raw_rows(rows: &[tokio_postgres::Row]) -> Vec<Vec<(String, Type, RawValue)>> {
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name().to_owned(), c.type_().clone(), row.get(i)))
                .collect()
        })
        .collect()
}

/// SQLSTATE of a server error, or a description of a client-side error.
pub fn code_of(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.code().code().to_owned(),
        None => format!("not a server error: {e}"),
    }
}

/// Severity (ERROR, FATAL, ...) of a server error.
pub fn severity_of(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|db| db.severity().to_owned())
        .unwrap_or_default()
}

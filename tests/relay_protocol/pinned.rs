//! The pinned session settings (`client_encoding = UTF8`, `standard_conforming_strings = on`):
//! statements that would change them are refused with an error, the session stays usable,
//! inside a transaction the refusal aborts it, and in the extended protocol the Parse fails.

use tokio_postgres::Client;

use crate::common::pgclient::{code_of, severity_of};
use crate::common::raw::{self, RawConn};
use crate::{proxied, start_proxy, SERVICE};

/// Statements that change (or reset to something the proxy did not choose) a pinned setting.
const REFUSED: &[&str] = &[
    "SET client_encoding TO 'LATIN1'",
    "SET standard_conforming_strings = off",
    "RESET client_encoding",
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    "SELECT set_config('client_encoding', 'LATIN1', false)",
    "SET SESSION client_encoding = 'SQL_ASCII'",
    "SET LOCAL standard_conforming_strings TO off",
    "SET NAMES 'LATIN1'",
    "RESET standard_conforming_strings",
    // Other spellings of the same.
    "SELECT set_config(lower('CLIENT_ENCODING'), 'LATIN1', false)",
    "SET \"Client_Encoding\" = 'LATIN1'",
    "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
    "SELECT 1; SET client_encoding = 'LATIN1'",
];

async fn pinned_values(c: &Client) -> (String, String) {
    let enc = c.query_one("SHOW client_encoding", &[]).await;
    let scs = c.query_one("SHOW standard_conforming_strings", &[]).await;
    match (enc, scs) {
        (Ok(e), Ok(s)) => (e.get(0), s.get(0)),
        (e, s) => panic!("session unusable after a refusal: {e:?} {s:?}"),
    }
}

/// Checks one refused statement on its own connection; describes what went wrong, if anything.
async fn check_simple(port: u16, sql: &str) -> Option<String> {
    let c = proxied(port).await;
    let result = c.simple_query(sql).await;
    let (enc, scs) = pinned_values(&c).await;
    let mut problems = Vec::new();
    match &result {
        Ok(_) => problems.push("was not refused".to_owned()),
        Err(e) => {
            if severity_of(e) != "ERROR" {
                problems.push(format!(
                    "refused with {} instead of ERROR: {e}",
                    severity_of(e)
                ));
            }
            let message = e.as_db_error().map(|d| d.message()).unwrap_or_default();
            if message.contains("pgpurpose_blocked_") {
                problems.push(format!("the stand-in leaked to the client: {message}"));
            }
        }
    }
    if (enc.as_str(), scs.as_str()) != ("UTF8", "on") {
        problems.push(format!(
            "settings changed: client_encoding={enc}, standard_conforming_strings={scs}"
        ));
    }
    (!problems.is_empty()).then(|| format!("{sql:?}: {}", problems.join("; ")))
}

#[tokio::test]
async fn statements_changing_pinned_settings_are_refused() {
    let (_cfg, proxy) = start_proxy();
    let mut failures = Vec::new();
    for sql in REFUSED {
        if let Some(problem) = check_simple(proxy.port(), sql).await {
            failures.push(problem);
        }
    }
    // Other settings still work, and RESET ALL / DISCARD ALL (allowed: the startup values the
    // proxy sent are the reset values) leave the pinned settings as they were.
    let c = proxied(proxy.port()).await;
    for sql in [
        "SET client_encoding TO 'UTF8'",
        "SET statement_timeout = '5s'",
        "RESET ALL",
        "DISCARD ALL",
    ] {
        match c.batch_execute(sql).await {
            Ok(()) => {
                let values = pinned_values(&c).await;
                if values != ("UTF8".to_owned(), "on".to_owned()) {
                    failures.push(format!("{sql:?} changed the pinned settings: {values:?}"));
                }
            }
            Err(e) => failures.push(format!("{sql:?} refused: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "pinned settings not enforced:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn refusal_inside_a_transaction_aborts_it() {
    let (_cfg, proxy) = start_proxy();
    let c = proxied(proxy.port()).await;
    c.batch_execute("BEGIN").await.unwrap();
    let refused = c.simple_query("SET client_encoding TO 'LATIN1'").await;
    assert!(refused.is_err(), "SET client_encoding was not refused");
    let next = c
        .simple_query("SELECT 1")
        .await
        .expect_err("the transaction was not aborted");
    assert_eq!(code_of(&next), "25P02", "{next}");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        pinned_values(&c).await,
        ("UTF8".to_owned(), "on".to_owned())
    );

    // The same on the wire: status bytes T, E, E, I.
    let mut conn = RawConn::login(proxy.port(), SERVICE.name, Some(SERVICE.password)).await;
    let mut statuses = String::new();
    let mut frames = Vec::new();
    for sql in [
        "BEGIN",
        "SET standard_conforming_strings = off",
        "SELECT 1",
        "ROLLBACK",
    ] {
        let reply = conn.simple(sql).await;
        statuses.push(reply.last().and_then(|f| f.status()).unwrap() as char);
        frames.push(reply);
    }
    assert_eq!(statuses, "TEEI", "{frames:?}");
    assert_eq!(frames[1][0].severity().as_deref(), Some("ERROR"));
    assert_eq!(frames[2][0].code().as_deref(), Some("25P02"));
}

#[tokio::test]
async fn refusal_in_the_extended_protocol_fails_the_parse() {
    let (_cfg, proxy) = start_proxy();
    let c = proxied(proxy.port()).await;
    let mut failures = Vec::new();
    for sql in [
        "SET standard_conforming_strings = off",
        "SET client_encoding TO 'LATIN1'",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        // The setting's name is only known at Bind: must be refused at Parse all the same.
        "SELECT set_config($1, $2, false)",
    ] {
        if c.prepare(sql).await.is_ok() {
            failures.push(format!("{sql:?}: Parse succeeded"));
        }
    }
    let (enc, scs) = pinned_values(&c).await;
    if (enc.as_str(), scs.as_str()) != ("UTF8", "on") {
        failures.push(format!("settings changed: {enc} {scs}"));
    }

    // On the wire: the Parse answers ErrorResponse (no ParseComplete), the Bind and Execute
    // behind it are skipped up to Sync, then the session goes on.
    let mut conn = RawConn::login(proxy.port(), SERVICE.name, Some(SERVICE.password)).await;
    let mut batch = raw::parse("", "SET client_encoding TO 'LATIN1'");
    batch.extend(raw::bind("", "", &[]));
    batch.extend(raw::execute("", 0));
    batch.extend(raw::sync());
    conn.send(&batch).await.unwrap();
    let reply = conn.until_ready(1).await;
    let tags: String = reply.iter().map(|f| f.tag() as char).collect();
    if tags != "EZ" {
        failures.push(format!("raw Parse/Bind/Execute/Sync answered {reply:?}"));
    }
    let after = conn.simple("SHOW client_encoding").await;
    let shown = after
        .iter()
        .find(|f| f.tag() == b'D')
        .map(|f| String::from_utf8_lossy(&f.body()[6..]).into_owned());
    if shown.as_deref() != Some("UTF8") {
        failures.push(format!("after the raw batch: {after:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

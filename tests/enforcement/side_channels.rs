//! What a session learns about rows its row filter hides, through answers that are not rows.
//! A hidden user and a user that does not exist must be indistinguishable.

use crate::common::{Service, ADS, DISCOVERY};
use crate::{proxied, simple_rows, start_proxy};

/// The answer to `template` (with `{h}` for a handle) as text lines, with the handle replaced
/// by a placeholder so the answers for two handles can be compared.
async fn answer_for(client: &tokio_postgres::Client, template: &str, handle: &str) -> Vec<String> {
    let sql = template.replace("{h}", handle);
    match client.simple_query(&sql).await {
        Ok(_) => simple_rows(client, &sql)
            .await
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| v.unwrap_or_else(|| "NULL".into()).replace(handle, "<h>"))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect(),
        Err(e) => vec![format!(
            "error {}",
            e.code().map(|c| c.code().to_owned()).unwrap_or_default()
        )],
    }
}

async fn hidden_and_missing_look_alike(service: Service, hidden: &str) {
    let (_cfg, proxy) = start_proxy();
    let client = proxied(proxy.port(), service).await;
    // The hidden user exists, and the proxy hides it from ordinary reads.
    let visible = simple_rows(
        &client,
        &format!("SELECT id FROM users WHERE handle = '{hidden}'"),
    )
    .await;
    assert!(
        visible.is_empty(),
        "{hidden} should be hidden from {}",
        service.name
    );
    let mut leaks = Vec::new();
    for template in [
        "SELECT id FROM users WHERE handle = '{h}'",
        "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF, COSTS OFF) SELECT id FROM users WHERE handle = '{h}'",
        "EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF, COSTS OFF) SELECT count(*) FROM user_profiles WHERE handle = '{h}'",
    ] {
        let a = answer_for(&client, template, hidden).await;
        let b = answer_for(&client, template, "user9999").await;
        if a != b {
            leaks.push(format!(
                "{template}\n  hidden user {hidden}: {a:#?}\n  no such user: {b:#?}"
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} tells a hidden user from a missing one:\n{}",
        service.name,
        leaks.join("\n")
    );
}

#[tokio::test]
async fn discovery_cannot_tell_a_hidden_user_from_a_missing_one() {
    // user0002: 2 % 3 <> 1, not discoverable.
    hidden_and_missing_look_alike(DISCOVERY, "user0002").await;
}

#[tokio::test]
async fn ads_cannot_tell_a_hidden_user_from_a_missing_one() {
    // user0001: odd id, not opted in to ads.
    hidden_and_missing_look_alike(ADS, "user0001").await;
}

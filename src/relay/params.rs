//! Startup parameters: which the proxy consumes (`user`, `database`, the session purpose),
//! which it passes upstream, and which it refuses. Startup parameters are settings applied
//! before any statement is seen, so an unchecked one (`role`, `search_path`,
//! `standard_conforming_strings`, ...) could defeat the policy: only a fixed list of harmless
//! settings passes (DESIGN.md rule 7, "Startup parameters never raise privileges").

use crate::error::{sqlstate, PgError};

/// The startup parameter (or `options=-c` setting) that selects the session purpose.
pub const PURPOSE_PARAMETER: &str = "pgpurpose.purpose";

/// Settings a client may pass at startup; compared case-insensitively like Postgres GUC names.
const ALLOWED_SETTINGS: &[&str] = &[
    "application_name",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "bytea_output",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "default_transaction_deferrable",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "geqo",
    "jit",
    "work_mem",
    "xmloption",
];

/// What the client asked for at startup, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupRequest {
    pub service: String,
    pub database: String,
    pub purpose: Option<String>,
    /// Settings forwarded to the upstream StartupMessage.
    pub settings: Vec<(String, String)>,
    /// `_pq_.*` protocol options to report as unsupported (NegotiateProtocolVersion).
    pub unsupported_protocol_options: Vec<String>,
}

fn refuse(message: String) -> PgError {
    PgError::fatal(sqlstate::FEATURE_NOT_SUPPORTED, message)
}

/// Validate the startup packet's parameters.
pub fn interpret(params: &[(String, String)]) -> Result<StartupRequest, PgError> {
    let mut service = None;
    let mut database = None;
    let mut purpose = None;
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut unsupported = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "user" => service = Some(value.clone()),
            "database" => database = Some(value.clone()),
            "replication" => {
                if !matches!(
                    value.to_ascii_lowercase().as_str(),
                    "false" | "off" | "no" | "0"
                ) {
                    return Err(refuse(
                        "replication connections are not supported by pgpurpose".into(),
                    ));
                }
            }
            "options" => {
                for (k, v) in parse_options(value)? {
                    accept_setting(&k, v, &mut purpose, &mut settings)?;
                }
            }
            n if n.starts_with("_pq_.") => unsupported.push(n.to_owned()),
            n => accept_setting(n, value.clone(), &mut purpose, &mut settings)?,
        }
    }
    let service = service.filter(|s| !s.is_empty()).ok_or_else(|| {
        PgError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            "no PostgreSQL user name specified in startup packet",
        )
    })?;
    let database = database
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| service.clone());
    Ok(StartupRequest {
        service,
        database,
        purpose,
        settings,
        unsupported_protocol_options: unsupported,
    })
}

fn accept_setting(
    name: &str,
    value: String,
    purpose: &mut Option<String>,
    settings: &mut Vec<(String, String)>,
) -> Result<(), PgError> {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        PURPOSE_PARAMETER => *purpose = Some(value),
        // Pinned by the proxy: accepted only when they ask for the pinned value.
        "client_encoding" => {
            let v = value.to_ascii_lowercase().replace(['-', '_'], "");
            if v != "utf8" && v != "unicode" {
                return Err(refuse(format!(
                    "pgpurpose pins client_encoding to UTF8; \"{value}\" was requested"
                )));
            }
        }
        "standard_conforming_strings" => {
            if !matches!(
                value.to_ascii_lowercase().as_str(),
                "on" | "true" | "yes" | "1"
            ) {
                return Err(refuse(
                    "pgpurpose pins standard_conforming_strings to on".into(),
                ));
            }
        }
        n if ALLOWED_SETTINGS.contains(&n) => settings.push((n.to_owned(), value)),
        _ => {
            return Err(refuse(format!(
                "startup parameter \"{name}\" is not allowed through pgpurpose (allowed: {})",
                ALLOWED_SETTINGS.join(", ")
            )))
        }
    }
    Ok(())
}

/// Parse the `options` startup parameter the way Postgres does (`pg_split_opts`: words split
/// on unescaped white space, backslash escapes the next character), accepting only settings
/// (`-c name=value`, `-cname=value`, `--name=value`); any other command-line switch is refused.
fn parse_options(options: &str) -> Result<Vec<(String, String)>, PgError> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    current.push(next);
                    in_word = true;
                }
            }
            c if c.is_ascii_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    let mut out = Vec::new();
    let mut iter = words.into_iter();
    while let Some(word) = iter.next() {
        let setting = if word == "-c" {
            iter.next()
                .ok_or_else(|| refuse("startup options: -c without a setting".into()))?
        } else if let Some(rest) = word.strip_prefix("-c") {
            rest.to_owned()
        } else if let Some(rest) = word.strip_prefix("--") {
            rest.to_owned()
        } else {
            return Err(refuse(format!(
                "startup option \"{word}\" is not allowed through pgpurpose"
            )));
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| refuse(format!("startup option \"{setting}\" has no value")))?;
        // Postgres accepts dashes for underscores in option names.
        out.push((name.replace('-', "_"), value.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn consumes_identity_and_purpose_and_passes_harmless_settings() {
        let req = interpret(&p(&[
            ("user", "ads-service"),
            ("database", "app"),
            ("application_name", "psql"),
            ("client_encoding", "UTF8"),
            (
                "options",
                "-c pgpurpose.purpose=advertising --statement-timeout=5s",
            ),
        ]))
        .unwrap();
        assert_eq!(req.service, "ads-service");
        assert_eq!(req.database, "app");
        assert_eq!(req.purpose.as_deref(), Some("advertising"));
        assert_eq!(
            req.settings,
            p(&[("application_name", "psql"), ("statement_timeout", "5s")])
        );
    }

    #[test]
    fn refuses_settings_that_could_defeat_the_policy() {
        for bad in [
            ("role", "postgres"),
            ("search_path", "evil,public"),
            ("session_authorization", "postgres"),
            ("client_encoding", "SQL_ASCII"),
            ("standard_conforming_strings", "off"),
            ("replication", "database"),
            ("options", "-c role=postgres"),
            ("options", "-c\\ role=postgres"),
            ("options", "-cstandard_conforming_strings=off"),
            ("options", "-d 5"),
            ("options", "--search_path=x"),
        ] {
            let params = p(&[("user", "s"), bad]);
            assert!(interpret(&params).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn database_defaults_to_user_and_user_is_required() {
        assert_eq!(interpret(&p(&[("user", "s")])).unwrap().database, "s");
        assert!(interpret(&p(&[("database", "d")])).is_err());
        let req = interpret(&p(&[("user", "s"), ("_pq_.compression", "on")])).unwrap();
        assert_eq!(
            req.unsupported_protocol_options,
            vec!["_pq_.compression".to_owned()]
        );
    }

    #[test]
    fn options_escapes_follow_postgres() {
        let opts = parse_options(r"-c application_name=a\ b   -cdatestyle=ISO").unwrap();
        assert_eq!(
            opts,
            p(&[("application_name", "a b"), ("datestyle", "ISO")])
        );
    }
}

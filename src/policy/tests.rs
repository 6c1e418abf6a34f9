//! End-to-end tests of policy loading: YAML text in, compiled policy or located errors out.
//! (Per-value shape rules are tested in `raw`, file-level parsing in `load`.)

use std::path::{Path, PathBuf};

use super::compiled::*;
use super::validate::parse_row_filter;
use super::{load_dir, load_sources, PolicyError};
use crate::catalog::QualifiedName;

const PURPOSES: &str = "\
purposes:
  security:
    description: s
  security.authentication:
    description: a
  advertising:
    description: ad
  discovery:
    description: d
";

fn load(files: &[(&str, &str)]) -> Result<CompiledPolicy, PolicyError> {
    let sources: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(n, t)| (PathBuf::from(format!("pol/{n}")), (*t).to_owned()))
        .collect();
    load_sources(&sources)
}

fn service(purposes: &str) -> String {
    format!(
        "services:\n  svc:\n    credential: {{env: SVC_VERIFIER}}\n    purposes: {purposes}\n    \
             upstream:\n      user: app\n"
    )
}

/// The `Invalid` errors of a failed load as (file, line, key, message); panics on any other kind.
fn invalid(err: &PolicyError) -> Vec<(String, usize, String, String)> {
    err.errors()
        .into_iter()
        .map(|e| match e {
            PolicyError::Invalid {
                location,
                key,
                message,
            } => (
                location.file.display().to_string(),
                location.line,
                key.clone(),
                message.clone(),
            ),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn example_policy() -> CompiledPolicy {
    load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
}

#[test]
fn example_policies_load() {
    let policy = example_policy();
    assert_eq!(policy.files.len(), 3);
    assert_eq!(policy.purposes.len(), 7);
    assert!(policy.purpose_exists("security.fraud_detection"));
    assert_eq!(policy.services.len(), 5);
    let support = policy.service("support-service").unwrap();
    assert_eq!(support.purposes, vec!["security", "analytics"]);
    assert_eq!(support.upstream.user, "app_support");
    assert!(support.grants.is_empty());
    assert!(matches!(
        &policy.service("ads-service").unwrap().credential,
        SecretSource::ScramVerifier(v) if v.starts_with("SCRAM-SHA-256$4096:")
    ));
    assert_eq!(policy.relations.len(), 3);
    assert_eq!(policy.untagged, UntaggedMode::Allow);
    assert_eq!(policy.output_action, OutputAction::Mask);
    let users = QualifiedName::new("public", "users");
    assert_eq!(
        policy.row_filters(&users, "discovery"),
        vec!["discoverable"]
    );
    assert_eq!(
        policy.row_filters(&users, "advertising.targeting"),
        vec!["ads_opt_in"]
    );
    let loc = policy
        .source_of(&PolicyItem::Column(users.clone(), "phone_2fa".into()))
        .unwrap();
    assert!(loc.file.ends_with("policies/tables.yaml"), "{loc}");
    assert_eq!((loc.line, loc.column), (9, 7));
    assert_eq!(policy.version.len(), 64);
}

#[test]
fn example_tags_compile_into_column_access() {
    let policy = example_policy();
    let users = QualifiedName::new("public", "users");
    let login = QualifiedName::new("public", "login_events");
    let entries = QualifiedName::new("public", "advertiser_list_entries");
    let allowed = |t: &QualifiedName, c: &str, p: &str| {
        policy.column_access(t, c, p) == ColumnAccess::Allowed
    };
    // The 2FA phone: security and below, never advertising.
    assert!(allowed(&users, "phone_2fa", "security.authentication"));
    assert!(allowed(&users, "phone_2fa", "security"));
    assert_eq!(
        policy.column_access(&users, "phone_2fa", "advertising"),
        ColumnAccess::Forbidden {
            allowed_purposes: vec!["security".into()],
            action: OutputAction::Mask,
        }
    );
    assert!(!allowed(&users, "phone_2fa", "advertising.targeting"));
    // The password hash: authentication only, not the wider `security`.
    assert!(allowed(&users, "password_hash", "security.authentication"));
    assert!(!allowed(
        &users,
        "password_hash",
        "security.fraud_detection"
    ));
    assert!(!allowed(&users, "password_hash", "security"));
    assert!(allowed(&users, "marketing_phone", "advertising.targeting"));
    assert!(!allowed(&users, "marketing_phone", "security"));
    // Untagged columns: any purpose.
    assert!(allowed(&users, "handle", "analytics"));
    // Whole-table tags.
    assert!(allowed(&login, "ip", "security.fraud_detection"));
    assert!(!allowed(&login, "ip", "analytics"));
    assert!(allowed(&entries, "phone", "advertising"));
    assert!(!allowed(&entries, "phone", "discovery"));
}

#[test]
fn table_tags_defaults_and_output_action_override() {
    let tables = "\
defaults:
  untagged: deny
  output_action: block
tables:
  audit.trail:
    tags: [security]
    columns:
      detail: [security.authentication]
    output_action: mask
";
    let policy = load(&[("p.yaml", PURPOSES), ("t.yaml", tables)]).unwrap();
    let trail = QualifiedName::new("audit", "trail");
    assert_eq!(policy.untagged, UntaggedMode::Deny);
    assert_eq!(
        policy.column_access(&trail, "detail", "security"),
        ColumnAccess::Forbidden {
            allowed_purposes: vec!["security.authentication".into()],
            action: OutputAction::Mask,
        }
    );
    assert_eq!(
        policy.column_access(&trail, "other", "security"),
        ColumnAccess::Allowed
    );
    let other = QualifiedName::new("public", "other");
    assert_eq!(
        policy.column_access(&other, "x", "security"),
        ColumnAccess::Forbidden {
            allowed_purposes: vec![],
            action: OutputAction::Block,
        }
    );
}

#[test]
fn unknown_purposes_are_rejected_everywhere() {
    let tables = "\
tables:
  users:
    tags: [securty]
    columns:
      phone_2fa: [advertsing]
    row_filters:
      discovry: discoverable
";
    let err = load(&[
        ("p.yaml", PURPOSES),
        ("s.yaml", &service("[security, analytics]")),
        ("t.yaml", tables),
    ])
    .unwrap_err();
    let mut found = invalid(&err);
    found.sort();
    let keys: Vec<(&str, usize, &str)> = found
        .iter()
        .map(|(f, l, k, _)| (f.as_str(), *l, k.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("pol/s.yaml", 4, "services.svc.purposes"),
            ("pol/t.yaml", 3, "tables.users.tags"),
            ("pol/t.yaml", 5, "tables.users.columns.phone_2fa"),
            ("pol/t.yaml", 7, "tables.users.row_filters.discovry"),
        ]
    );
    assert!(found[0].3.contains("unknown purpose `analytics`"));
    assert!(found[1].3.contains("unknown purpose `securty`"));
}

#[test]
fn purpose_parent_must_be_declared_and_names_are_checked() {
    let text = "\
purposes:
  security.authentication:
    description: a
  Marketing:
    description: m
  ops:
    description: '  '
";
    let err = load(&[("p.yaml", text)]).unwrap_err();
    let found = invalid(&err);
    assert_eq!(found.len(), 3, "{err}");
    assert!(found
        .iter()
        .any(|(_, l, k, m)| *l == 4 && k == "purposes.Marketing" && m.contains("lower-case")));
    assert!(found.iter().any(|(_, l, k, m)| *l == 2
        && k == "purposes.security.authentication"
        && m.contains("parent purpose `security` is not declared")));
    assert!(found
        .iter()
        .any(|(_, l, _, m)| *l == 6 && m.contains("description is empty")));
}

#[test]
fn service_without_purposes_is_rejected() {
    let err = load(&[("p.yaml", PURPOSES), ("s.yaml", &service("[]"))]).unwrap_err();
    let found = invalid(&err);
    assert_eq!(found.len(), 1, "{err}");
    assert_eq!(found[0].1, 4);
    assert_eq!(found[0].2, "services.svc.purposes");
    assert!(found[0].3.contains("at least one purpose"));
}

#[test]
fn service_secret_references_compile() {
    let text = "\
services:
  svc:
    credential: {file: secrets/svc.verifier}
    purposes: [security, discovery]
    upstream:
      user: app
      password: {env: APP_PASSWORD}
    grants: [ddl, session_control]
  bad:
    credential: {env: 'NOT A VAR'}
    purposes: [security]
    upstream: {user: app}
    grants: [ddl, ddl]
";
    let err = load(&[("p.yaml", PURPOSES), ("s.yaml", text)]).unwrap_err();
    let found = invalid(&err);
    assert_eq!(found.len(), 2, "{err}");
    assert!(found[0].3.contains("not a valid environment variable name"));
    assert!(found[1].3.contains("grant `ddl` is listed twice"));

    let good = &text[..text.find("  bad:").unwrap()];
    let policy = load(&[("p.yaml", PURPOSES), ("s.yaml", good)]).unwrap();
    let svc = policy.service("svc").unwrap();
    assert_eq!(
        svc.credential,
        SecretSource::File(PathBuf::from("pol/secrets/svc.verifier"))
    );
    assert_eq!(
        svc.upstream.password,
        Some(SecretSource::Env("APP_PASSWORD".into()))
    );
    assert_eq!(
        svc.grants.iter().copied().collect::<Vec<_>>(),
        vec![Grant::Ddl, Grant::SessionControl]
    );
    assert_eq!(svc.session_purpose(Some("discovery")), Some("discovery"));
}

#[test]
fn plain_password_credential_is_a_load_error_with_line() {
    let text = service("[security]").replace("{env: SVC_VERIFIER}", "auth-pass");
    let err = load(&[("p.yaml", PURPOSES), ("s.yaml", &text)]).unwrap_err();
    let PolicyError::Yaml { location, message } = &err else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(location.line, 3);
    assert!(message.contains("services.svc.credential"), "{message}");
    assert!(
        message.contains("plain passwords are not accepted"),
        "{message}"
    );
    assert!(!message.contains("auth-pass"), "{message}");
}

#[test]
fn row_filters_must_be_one_expression() {
    for (filter, why) in [
        ("discoverable AND", "does not parse"),
        ("discoverable; DROP TABLE users", "unexpected `;`"),
        ("discoverable) OR (true", "unexpected `)`"),
        ("discoverable -- and more", "comments"),
        ("discoverable /* x */", "comments"),
        ("''", "single SQL expression"),
    ] {
        let tables = format!(
            "tables:\n  users:\n    row_filters:\n      discovery: {}\n",
            serde_json::to_string(filter).unwrap()
        );
        let result = load(&[("p.yaml", PURPOSES), ("t.yaml", &tables)]);
        if filter == "''" {
            // An empty string literal is an expression; Postgres rejects it at run time
            // (not boolean), which the engine's re-parse and Postgres both catch.
            assert!(result.is_ok());
            continue;
        }
        let err = result.unwrap_err();
        let found = invalid(&err);
        assert_eq!(found.len(), 1, "{filter}: {err}");
        assert_eq!(found[0].1, 4);
        assert_eq!(found[0].2, "tables.users.row_filters.discovery");
        assert!(found[0].3.contains(why), "{filter}: {}", found[0].3);
    }
    assert!(parse_row_filter("   ").unwrap_err().contains("empty"));
    assert!(parse_row_filter("country IN ('NL', 'BE') AND birth_year < 2000").is_ok());
}

#[test]
fn same_table_in_two_files_names_both_places() {
    let a = "tables:\n  users:\n    tags: [security]\n";
    let b = "# other\ntables:\n  public.users:\n    columns:\n      x: [security]\n";
    let err = load(&[("p.yaml", PURPOSES), ("a.yaml", a), ("b.yaml", b)]).unwrap_err();
    match &err {
        PolicyError::Redefined {
            what,
            name,
            location,
            first,
        } => {
            assert_eq!(*what, "table");
            assert_eq!(name, "public.users");
            assert_eq!(location.to_string(), "pol/b.yaml:3:3");
            assert_eq!(first.to_string(), "pol/a.yaml:2:3");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "pol/b.yaml:3:3: table `public.users` is already defined at pol/a.yaml:2:3"
    );
}

#[test]
fn same_purpose_service_or_defaults_twice_is_an_error() {
    let again = "purposes:\n  security:\n    description: again\n";
    let err = load(&[("p.yaml", PURPOSES), ("q.yaml", again)]).unwrap_err();
    assert!(
        matches!(&err, PolicyError::Redefined { what: "purpose", location, first, .. }
                if location.file.ends_with("q.yaml") && first.file.ends_with("p.yaml")),
        "{err}"
    );
    let svc = service("[security]");
    let err = load(&[("p.yaml", PURPOSES), ("a.yaml", &svc), ("b.yaml", &svc)]).unwrap_err();
    assert!(
        matches!(
            &err,
            PolicyError::Redefined {
                what: "service",
                ..
            }
        ),
        "{err}"
    );
    let d = "defaults:\n  untagged: deny\n";
    let err = load(&[("p.yaml", PURPOSES), ("a.yaml", d), ("b.yaml", d)]).unwrap_err();
    assert!(
        matches!(
            &err,
            PolicyError::Redefined {
                what: "section",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn column_tag_may_not_widen_table_tag() {
    let tables = "\
tables:
  users:
    tags: [security]
    columns:
      password_hash: [security.authentication]
      marketing_phone: [advertising]
";
    let err = load(&[("p.yaml", PURPOSES), ("t.yaml", tables)]).unwrap_err();
    let found = invalid(&err);
    assert_eq!(found.len(), 1, "{err}");
    assert_eq!(found[0].1, 6);
    assert!(found[0].3.contains("never widen"));
}

#[test]
fn bad_table_names_are_rejected() {
    for name in ["a.b.c", "'.users'", "'public.'"] {
        let tables = format!("tables:\n  {name}:\n    tags: [security]\n");
        let err = load(&[("p.yaml", PURPOSES), ("t.yaml", &tables)]).unwrap_err();
        assert!(err.to_string().contains("schema.name"), "{name}: {err}");
    }
}

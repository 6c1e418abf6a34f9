//! Every refused spelling below was checked to work on Postgres 15 where noted.

use super::*;
use crate::engine::lexing::lex;

use PinnedConstruct as C;
use PinnedParam::{ClientEncoding as CE, StandardConformingStrings as SCS};

fn check(sql: &str) -> Result<(), PinnedSettingError> {
    check_pinned_settings(&lex(sql).expect("lexes"))
}

fn refused(sql: &str) -> (Option<PinnedParam>, PinnedConstruct) {
    match check(sql) {
        Ok(()) => panic!("{sql:?} was not refused"),
        Err(PinnedSettingError::Pinned {
            param, construct, ..
        }) => (Some(param), construct),
        Err(PinnedSettingError::Unknown { construct, .. }) => (None, construct),
    }
}

#[test]
fn refused_spellings() {
    #[rustfmt::skip]
    let cases: &[(&str, Option<PinnedParam>, PinnedConstruct)] = &[
        ("SET standard_conforming_strings = off", Some(SCS), C::Set),
        ("SET standard_conforming_strings TO off", Some(SCS), C::Set),
        ("set Standard_Conforming_Strings=off", Some(SCS), C::Set),
        ("SET SESSION standard_conforming_strings = off", Some(SCS), C::Set),
        ("BEGIN; SET LOCAL standard_conforming_strings = off; SELECT 1", Some(SCS), C::Set),
        ("SET client_encoding = 'LATIN1'", Some(CE), C::Set),
        ("SET client_encoding TO DEFAULT", Some(CE), C::Set),
        // Postgres looks GUC names up case-insensitively, even quoted: `SET "CLIENT_ENCODING"
        // TO latin1` works on Postgres 15.
        ("SET \"client_encoding\" TO latin1", Some(CE), C::Set),
        ("SET \"CLIENT_ENCODING\" TO latin1", Some(CE), C::Set),
        ("SET \"Standard_Conforming_Strings\" TO off", Some(SCS), C::Set),
        // SET NAMES sets client_encoding (Postgres 15: `SET NAMES 'WIN1252'`, also SESSION).
        ("SET NAMES 'WIN1252'", Some(CE), C::SetNames),
        ("set session names 'LATIN3'", Some(CE), C::SetNames),
        ("SET LOCAL NAMES DEFAULT", Some(CE), C::SetNames),
        ("SET NAMES", Some(CE), C::SetNames),
        // ALTER ROLE ... SET NAMES stores {client_encoding=LATIN1} (checked on Postgres 15).
        ("ALTER ROLE r SET NAMES 'LATIN1'", Some(CE), C::SetNames),
        ("RESET client_encoding", Some(CE), C::Reset),
        ("RESET standard_conforming_strings", Some(SCS), C::Reset),
        ("ALTER SYSTEM SET standard_conforming_strings = off", Some(SCS), C::Set),
        ("ALTER SYSTEM RESET client_encoding", Some(CE), C::Reset),
        ("ALTER ROLE app SET client_encoding = 'SQL_ASCII'", Some(CE), C::Set),
        ("ALTER ROLE app IN DATABASE d SET standard_conforming_strings TO off", Some(SCS), C::Set),
        ("ALTER DATABASE d SET client_encoding TO 'LATIN1'", Some(CE), C::Set),
        ("ALTER ROLE app RESET standard_conforming_strings", Some(SCS), C::Reset),
        // Function-level SET clauses apply while the function runs.
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql SET client_encoding = 'LATIN1' \
          AS $$ SELECT 1 $$", Some(CE), C::Set),
        ("ALTER FUNCTION f() SET standard_conforming_strings FROM CURRENT", Some(SCS), C::Set),
        ("CREATE PROCEDURE p() LANGUAGE sql SET client_encoding TO 'LATIN1' AS 'SELECT 1'",
         Some(CE), C::Set),
        // Other identifier uses (fail closed).
        ("SELECT client_encoding FROM t", Some(CE), C::Identifier),
        ("SHOW client_encoding; SET client_encoding = 'LATIN1'", Some(CE), C::Set),
        // set_config: Postgres 15 accepts the name in any case (`set_config('CLIENT_ENCODING',
        // 'LATIN2', false)` changes it).
        ("SELECT set_config('client_encoding', 'LATIN1', false)", Some(CE), C::SetConfig),
        ("SELECT set_config('CLIENT_ENCODING', 'LATIN2', false)", Some(CE), C::SetConfig),
        ("SELECT pg_catalog.set_config('standard_conforming_strings', 'off', true)",
         Some(SCS), C::SetConfig),
        ("SELECT set_config(E'client\\x5fencoding', 'LATIN1', false)", Some(CE), C::SetConfig),
        ("SELECT set_config($$client_encoding$$, 'LATIN1', false)", Some(CE), C::SetConfig),
        ("SELECT set_config(' client_encoding ', 'LATIN1', false)", Some(CE), C::SetConfig),
        ("SELECT \"set_config\"('client_encoding', 'x', false)", Some(CE), C::SetConfig),
        ("EXPLAIN ANALYZE SELECT set_config('client_encoding', 'LATIN1', false)",
         Some(CE), C::SetConfig),
        ("PREPARE p AS SELECT set_config('standard_conforming_strings', 'off', false)",
         Some(SCS), C::SetConfig),
        // The name is not a literal: cannot know which setting it changes.
        ("SELECT set_config(name, 'x', false) FROM t", None, C::SetConfigDynamic),
        ("SELECT set_config('client_' || 'encoding', 'LATIN1', false)", None, C::SetConfigDynamic),
        ("SELECT set_config($1, $2, false)", None, C::SetConfigDynamic),
        ("SELECT set_config(('client_encoding'), 'x', false)", None, C::SetConfigDynamic),
        ("SELECT set_config(setting_name => 'work_mem', new_value => '1MB', is_local => false)",
         None, C::SetConfigDynamic),
        ("SELECT set_config('work_mem'::text, '1MB', false)", None, C::SetConfigDynamic),
        // UPDATE pg_settings calls set_config through a rule (Postgres 15: `UPDATE pg_settings
        // SET setting = 'LATIN5' WHERE name = 'client_encoding'` changes it).
        ("UPDATE pg_settings SET setting = 'LATIN5' WHERE name = 'client_encoding'",
         Some(CE), C::StringLiteral),
        ("UPDATE pg_catalog.pg_settings SET setting = $1 WHERE name = $2", None, C::PgSettingsWrite),
        ("WITH u AS (UPDATE \"pg_settings\" SET setting = $1 WHERE name = $2 RETURNING 1) \
          SELECT * FROM u", None, C::PgSettingsWrite),
        ("CREATE VIEW v AS SELECT * FROM pg_settings", None, C::PgSettingsWrite),
        // SQL hidden in strings and bodies (DO is also blocked elsewhere).
        ("DO $$ BEGIN EXECUTE 'SET client_encoding = ''LATIN1'''; END $$", Some(CE), C::StringLiteral),
        ("DO $x$ BEGIN PERFORM set_config('standard_conforming_strings','off',false); END $x$",
         Some(SCS), C::StringLiteral),
        ("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'SET CLIENT_ENCODING TO latin1'",
         Some(CE), C::StringLiteral),
        ("SELECT query_to_xml(E'SET client\\x5fencoding TO latin1', true, true, '')",
         Some(CE), C::StringLiteral),
        ("SELECT set_config('work_mem', 'client_encoding', false)", Some(CE), C::StringLiteral),
        ("SELECT * FROM pg_settings WHERE name = 'standard_conforming_strings'",
         Some(SCS), C::StringLiteral),
    ];
    for (sql, param, construct) in cases {
        assert_eq!(refused(sql), (*param, *construct), "for {sql:?}");
    }
}

#[test]
fn allowed_statements() {
    #[rustfmt::skip]
    let cases: &[&str] = &[
        "SELECT 1",
        // RESET ALL and DISCARD ALL restore the startup values, which the proxy pins (checked on
        // Postgres 15: after `SET client_encoding = 'UTF8'; RESET ALL` the startup LATIN1 is back).
        "RESET ALL",
        "DISCARD ALL",
        "ALTER SYSTEM RESET ALL",
        "SHOW client_encoding",
        "SHOW standard_conforming_strings",
        "SHOW ALL",
        "SELECT current_setting('client_encoding')",
        "SELECT pg_catalog.current_setting('standard_conforming_strings', true)",
        "SET work_mem = '64MB'",
        "SET search_path TO public",
        "SELECT set_config('application_name', 'x', false)",
        "UPDATE t SET names = 'x' WHERE id = 1",
        "UPDATE t SET names.first = 'x'",
        "INSERT INTO t (names) VALUES ('a') ON CONFLICT (id) DO UPDATE SET names = 'b'",
        "SELECT names FROM t",
        "SELECT name, setting FROM pg_settings WHERE name = 'work_mem'",
        "SELECT pg_client_encoding()",
        "SET TIME ZONE 'UTC'",
        "SET SESSION AUTHORIZATION DEFAULT",
        "SELECT 'encoding', 'client', 'standard_conforming'",
    ];
    for sql in cases {
        assert_eq!(check(sql), Ok(()), "for {sql:?}");
    }
}

#[test]
fn error_names_parameter_and_construct_but_no_text() {
    let err =
        check("SELECT set_config('client_encoding', 'SECRET-VALUE', false)").expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("client_encoding") && msg.contains("set_config"),
        "{msg}"
    );
    assert!(!msg.contains("SECRET"), "{msg}");
    assert_eq!(
        err,
        PinnedSettingError::Pinned {
            param: CE,
            construct: C::SetConfig,
            offset: 18
        }
    );
}

#[test]
fn setting_a_pinned_parameter_to_its_pinned_value_is_allowed() {
    for sql in [
        "SET client_encoding TO 'UTF8'",
        "SET client_encoding = 'utf-8'",
        "set session client_encoding to unicode",
        "SET standard_conforming_strings = on",
        "SET LOCAL standard_conforming_strings TO 'true'",
    ] {
        let lexed = lex(sql).unwrap();
        assert_eq!(check_pinned_settings(&lexed), Ok(()), "{sql}");
    }
    for sql in [
        "SET client_encoding TO 'LATIN1'",
        "SET client_encoding TO 'UTF8', 'x'",
        "SET standard_conforming_strings = off",
        "SET client_encoding TO 'UTF8'; SET standard_conforming_strings = off",
        "SET client_encoding TO (SELECT 'UTF8')",
    ] {
        let lexed = lex(sql).unwrap();
        assert!(check_pinned_settings(&lexed).is_err(), "{sql}");
    }
}

#[test]
fn engine_allows_setting_pinned_parameters_to_their_pinned_value() {
    use crate::engine::fixtures::{example_catalog, example_policy};
    use crate::engine::{decide, SessionView};
    let policy = example_policy();
    let catalog = example_catalog();
    let service = policy.service("ads-service").unwrap();
    let session = SessionView {
        service,
        purpose: "advertising",
    };
    for sql in [
        "SET client_encoding TO 'UTF8'",
        "SET standard_conforming_strings = on",
    ] {
        let allowed = decide(sql, &catalog, &policy, &session);
        assert!(allowed.is_allow(), "{sql}: {allowed:?}");
    }
    for sql in [
        "SET client_encoding TO 'LATIN1'",
        "SET standard_conforming_strings = off",
    ] {
        let refused = decide(sql, &catalog, &policy, &session);
        assert!(refused.is_block(), "{sql}: {refused:?}");
        assert!(
            refused.report().literal_sensitive,
            "{sql}: pinned-value decisions must not be cached by shape"
        );
    }
}

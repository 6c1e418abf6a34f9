//! [`lex_for_lookup`] against [`lex`]: same tokens whenever both accept, and never an accept
//! where `lex` refuses on Postgres's grounds (only sqlparser disagreements may differ).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// Is this refusal one sqlparser causes (the lookup scan is allowed to accept the text)?
fn sqlparser_only(e: &LexError) -> bool {
    matches!(
        e,
        LexError::Disagreement { .. } | LexError::TokenizerFailed { .. }
    )
}

/// Check the contract on one text; returns whether `lex` accepted it.
fn check(sql: &str) -> bool {
    let full = lex(sql);
    let quick = lex_for_lookup(sql);
    match (&full, &quick) {
        (Ok(f), Ok(q)) => {
            assert_eq!(f.tokens, q.tokens, "different tokens for {sql:?}");
            true
        }
        (Ok(_), Err(e)) => panic!("lookup refuses {sql:?} ({e}) which lex accepts"),
        (Err(e), Ok(_)) => {
            // The text passes the Postgres-rules scan; lex may only have refused it because
            // sqlparser reads it differently (never on Postgres's own grounds).
            assert!(
                sqlparser_only(e),
                "lookup accepts {sql:?} which lex refuses on Postgres's grounds: {e:?}"
            );
            false
        }
        (Err(_), Err(_)) => false,
    }
}

#[test]
fn same_tokens_on_ordinary_statements() {
    for sql in [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 12345",
        "UPDATE pgbench_accounts SET abalance = abalance + -4120 WHERE aid = 80621;",
        "SELECT 'a\\', b, E'x\\'y', $$q$$, $t$ a $t$, B'01', X'1f', N'n' FROM t -- c\n",
        "WITH r AS (SELECT id FROM users) SELECT * FROM r /* c /* nested */ */ ORDER BY 1",
        "SELECT \"Quoted\"\"Id\", t.* FROM s.t WHERE a @> '{}'::jsonb AND b ? 'k' AND c <= $1",
        "SELECT 1e5, .5, 1., 1.5E-3, 007, a::text, x[1:2] FROM t; SELECT 2",
        "SELECT E'\\u00e9\\x41\\101\\n'",
    ] {
        assert!(check(sql), "{sql:?} should lex");
    }
}

#[test]
fn refuses_what_postgres_refuses() {
    for sql in [
        "SELECT U&'\\0061'",
        "SELECT U&\"a\"",
        "SELECT 'a'\n'b'",
        "SELECT \\d",
        "SELECT $ 1",
        "SELECT 0x1F",
        "SELECT $1a",
        "SELECT 1..2",
        "SELECT \"\"",
        "SELECT 'open",
        "SELECT /* open",
        "SELECT a\0",
        "SELECT {",
        "SELECT \u{b}1",
        // Escapes Postgres rejects: NUL, invalid UTF-8, a surrogate, a bad \u.
        "SELECT E'\\0'",
        "SELECT E'\\xff'",
        "SELECT E'\\ud800'",
        "SELECT E'\\u12'",
        &format!("SELECT {}", "a".repeat(64)),
    ] {
        assert!(lex(sql).is_err(), "lex accepts {sql:?}");
        assert!(lex_for_lookup(sql).is_err(), "lookup accepts {sql:?}");
    }
}

/// A sqlparser disagreement the lookup scan does not see: such a text can only hit the cache
/// if a Postgres-equivalent text was decided through `lex` (see `lex_for_lookup`'s docs).
#[test]
fn sqlparser_only_refusals_are_the_only_difference() {
    // Postgres reads `a > - 1`; sqlparser reads a custom operator `>-`.
    let sql = "SELECT a FROM t WHERE a >-1";
    assert!(matches!(lex(sql), Err(LexError::Disagreement { .. })));
    let quick = lex_for_lookup(sql).unwrap();
    let texts: Vec<&str> = quick.tokens.iter().map(|t| t.text(sql)).collect();
    assert_eq!(
        texts,
        ["SELECT", "a", "FROM", "t", "WHERE", "a", ">", "-", "1"]
    );
    // Postgres reads 'é'; sqlparser's tokenizer fails on the byte escapes.
    let sql = "SELECT E'\\xc3\\xa9'";
    assert!(matches!(lex(sql), Err(LexError::TokenizerFailed { .. })));
    assert_eq!(lex_for_lookup(sql).unwrap().len(), 2);
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// Random fragment soups, mostly garbage: the contract must hold on every one.
#[test]
fn random_texts_keep_the_contract() {
    const FRAGMENTS: &[&str] = &[
        "'", "''", "\"", "$", "$$", "$a$", "E'", "e'", "B'", "X'", "N'", "U&'", "u&\"", "\\", "--",
        "/*", "*/", "\n", "\r", "\r\n", "\t", " ", "  ", "-", "+", "*", "/", "<", ">", "=", "!",
        "~", "@", "#", "%", "^", "&", "|", "`", "?", ".", "..", "::", ":", ",", "(", ")", "[", "]",
        "1", "0", "7", "e", "E", "a", "x", "é", "_", "1.5", "1e3", "'a'", "||", "::text", "\\'",
        "''''", "'b'", "$$c$$", "e3", "1e", "_1", ".5", "$a", "$1", "\x0c", "\x0b", "U&", "\u{a0}",
        "日", "\\x41", "'\n'", "E'\\'", "\\u00e9", "\\0", "\\xff", "{", ";", "\"\"", "=>", ":=",
    ];
    let mut rng = StdRng::seed_from_u64(0x5eed_1001);
    let mut accepted = 0;
    for _ in 0..40_000 {
        let mut s = String::from("SELECT ");
        for _ in 0..rng.random_range(1..14) {
            s.push_str(pick(&mut rng, FRAGMENTS));
        }
        if check(&s) {
            accepted += 1;
        }
    }
    // The soup must exercise the accepting path too, or the token comparison proves nothing.
    assert!(accepted > 2_000, "only {accepted} random texts lexed");
}

/// Parsing from the tokens `lex_with_parser_tokens` hands back is parsing the text.
#[test]
fn parser_tokens_parse_like_the_text() {
    use sqlparser::parser::Parser;
    for sql in [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 12345",
        "WITH r AS (SELECT id FROM users) SELECT * FROM r /* c */ ORDER BY 1;",
        "select a,\n  b -- c\nfrom t where x = E'\\n' and y = $$z$$",
        "UPDATE t SET a = a + -1 WHERE b IN (SELECT c FROM d) RETURNING *",
        "SELECT 1; SELECT 2",
    ] {
        let (lexed, tokens) = lex_with_parser_tokens(sql).unwrap();
        assert_eq!(lexed, lex(sql).unwrap());
        let from_tokens = Parser::new(&PostgreSqlDialect {})
            .with_tokens_with_locations(tokens)
            .parse_statements()
            .unwrap();
        let from_text = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statements())
            .unwrap();
        // Debug output includes every span, so locations must agree too.
        assert_eq!(
            format!("{from_tokens:?}"),
            format!("{from_text:?}"),
            "{sql}"
        );
    }
}

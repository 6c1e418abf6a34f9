//! Differential test against a real Postgres 15 (ignored by default).
//!
//! Generates random statements full of tricky literals, comments and whitespace. For every one
//! that [`lex`] accepts, Postgres must agree on where each literal starts and ends and on its
//! value. Boundaries come from `pg_stat_statements`, whose normalised query text replaces each
//! constant by `$n` using Postgres's own scanner; values come from the result row.
//!
//! Needs a server started with `shared_preload_libraries = pg_stat_statements`:
//! `PGPURPOSE_TEST_PG='host=/tmp/x port=5432 user=postgres' cargo test pg_differential -- --ignored`

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// One random literal.
fn literal(rng: &mut StdRng) -> String {
    let body = |rng: &mut StdRng, parts: &[&str]| {
        (0..rng.random_range(0..6))
            .map(|_| pick(rng, parts))
            .collect::<String>()
    };
    const PLAIN: &[&str] = &[
        "a", " ", "\\", "''", "\"", "$", "$$", "$a$", "-", "--", "/*", "*/", ";", "é", "\n",
        "\r\n", "E", "U&", "\t", "?", ":",
    ];
    const ESC: &[&str] = &[
        "a",
        " ",
        "\\'",
        "\\\\",
        "\\n",
        "\\x41",
        "\\x4",
        "\\101",
        "\\7",
        "\\u00e9",
        "\\U0001F600",
        "''",
        "\\q",
        "\\xZ",
        "é",
        "--",
        "/*",
        "$$",
        "\\\"",
        "\\b",
        "\\\n",
    ];
    match rng.random_range(0..7) {
        0 | 1 => format!("'{}'", body(rng, PLAIN)),
        2 => format!("{}'{}'", pick(rng, &["E", "e"]), body(rng, ESC)),
        3 => {
            let tag = pick(rng, &["", "a", "tag", "_x1", "é"]);
            let inner: String = body(rng, PLAIN).replace(&format!("${tag}$"), "");
            // Keep the body from closing the quote early.
            let inner = if inner.ends_with('$') || inner.contains(&format!("${tag}$")) {
                format!("{inner}x")
            } else {
                inner
            };
            format!("${tag}${inner}${tag}$")
        }
        4 => pick(
            rng,
            &[
                "1",
                "1.5",
                ".5",
                "1.",
                "1e3",
                "1.e2",
                "007",
                "2.5E-3",
                "99999999999",
            ],
        )
        .into(),
        5 => format!("N'{}'", body(rng, PLAIN)),
        _ => pick(rng, &["B'0101'", "X'1F'", "b''", "x'a'"]).into(),
    }
}

/// A random fragment soup: mostly garbage to Postgres, but whatever both accept must agree.
fn soup(rng: &mut StdRng) -> String {
    const FRAGMENTS: &[&str] = &[
        "'", "''", "\"", "$", "$$", "$a$", "E'", "e'", "B'", "X'", "N'", "U&'", "u&\"", "\\", "--",
        "/*", "*/", "\n", "\r", "\r\n", "\t", " ", "  ", "-", "+", "*", "/", "<", ">", "=", "!",
        "~", "@", "#", "%", "^", "&", "|", "`", "?", ".", "..", "::", ":", ",", "(", ")", "[", "]",
        "1", "0", "7", "e", "E", "a", "x", "é", "_", "1.5", "1e3", "'a'", "||", "::text", "\\'",
        "''''", "'b'", "$$c$$", "e3", "1e", "_1", ".5", "$a", "$1", "\x0c", "\x0b", "U&", "\u{a0}",
        "日", "\\x41", "'\n'", "E'\\'",
    ];
    let mut s = String::from("SELECT ");
    for _ in 0..rng.random_range(1..12) {
        s.push_str(pick(rng, FRAGMENTS));
    }
    s
}

/// Text between two select items.
fn separator(rng: &mut StdRng) -> &'static str {
    pick(
        rng,
        &[
            ", ",
            ",",
            " ,\n",
            ",\r\n\t",
            ", -- c ' $$ \n",
            ", /* a /* b */ ' */ ",
            ",/**/",
            " -- x\n,",
            "\n,\n",
        ],
    )
}

/// Our expectation of pg_stat_statements' text for a single statement: literals replaced by $1.. (an N'' string's
/// constant starts after the N, which Postgres reads as the keyword NCHAR).
fn expected_normalised(lexed: &Lexed) -> String {
    let sql = lexed.sql;
    let mut out = String::new();
    let mut copied = lexed.tokens.first().map_or(0, |t| t.start);
    let mut n = 0;
    for t in &lexed.tokens {
        if t.is_literal() {
            let start = if t.kind == TokKind::String(StrKind::National) {
                t.start + 1
            } else {
                t.start
            };
            out.push_str(&sql[copied..start]);
            n += 1;
            out.push_str(&format!("${n}"));
            copied = t.end;
        }
    }
    // A lone statement runs to the end of the text (trailing comments included); Postgres
    // trims trailing whitespace only.
    let end = sql.trim_end_matches([' ', '\t', '\n', '\r', '\x0c']).len();
    out.push_str(&sql[copied..end]);
    out
}

/// Split a normalised text at its `$n` placeholders.
fn gaps(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut last = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            out.push(&text[last..i]);
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            last = i;
        } else {
            i += 1;
        }
    }
    out.push(&text[last..]);
    out
}

/// Same text between constants. Postgres folds a unary minus into the constant (`-1` is one
/// constant starting at `-`), so our gap may end with a `-` (and whitespace) that Postgres's
/// lacks.
fn same_boundaries(ours: &str, pg: &str) -> bool {
    let (a, b) = (gaps(ours), gaps(pg));
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            x == y
                || x.strip_prefix(*y)
                    .is_some_and(|rest| rest.starts_with('-') && rest[1..].trim().is_empty())
        })
}

#[test]
#[ignore]
fn pg_differential() {
    let Ok(conn_str) = std::env::var("PGPURPOSE_TEST_PG") else {
        panic!("set PGPURPOSE_TEST_PG to a libpq connection string");
    };
    let cases: u64 = std::env::var("PGPURPOSE_TEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (client, conn) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SET standard_conforming_strings = on")
            .await
            .expect("setup");
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let (mut accepted, mut refused, mut pg_errors, mut refused_but_valid) = (0, 0, 0, 0);
        let show_refused = std::env::var_os("PGPURPOSE_TEST_SHOW_REFUSED").is_some();
        for _ in 0..cases {
            // Soup statements are checked for boundaries only; structured ones (one select item
            // per literal) also for values.
            let structured = rng.random_bool(0.5);
            let sql = if !structured {
                soup(&mut rng)
            } else {
                let items: Vec<String> =
                    (0..rng.random_range(1..5)).map(|_| literal(&mut rng)).collect();
                let mut sql = String::from("SELECT ");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(separator(&mut rng));
                    }
                    sql.push_str(item);
                }
                sql
            };
            let lexed = match lex(&sql) {
                Ok(l) => l,
                Err(e) => {
                    refused += 1;
                    // Refusing costs nothing when Postgres rejects the text too; count and show
                    // the ones Postgres would have run (false refusals).
                    if client.simple_query(&sql).await.is_ok() {
                        refused_but_valid += 1;
                        if show_refused {
                            println!("refused, Postgres accepts: {sql:?}: {e}");
                        }
                    }
                    continue;
                }
            };
            client
                .simple_query("SELECT pg_stat_statements_reset()")
                .await
                .expect("reset");
            let rows = match client.simple_query(&sql).await {
                Ok(r) => r,
                Err(e) => {
                    // Postgres rejecting text we accepted is safe (nothing runs), but report it.
                    pg_errors += 1;
                    println!("postgres refused accepted text {sql:?}: {:?}", e.as_db_error().map(|d| d.message()));
                    continue;
                }
            };
            accepted += 1;
            let row = rows
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                    _ => None,
                })
                .expect("one row");
            let mut col = 0;
            for (i, t) in lexed.tokens.iter().enumerate() {
                if !t.is_literal() || !structured {
                    continue;
                }
                if let TokKind::String(k) = t.kind {
                    if !matches!(k, StrKind::Bit | StrKind::Hex) {
                        let ours = lexed.string_value(i).expect("value");
                        assert_eq!(row.get(col), Some(ours.as_ref()), "value of literal {col} in {sql:?}");
                    }
                }
                col += 1;
            }
            let stored = client
                .simple_query(
                    "SELECT query FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'",
                )
                .await
                .expect("pgss");
            let texts: Vec<String> = stored
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .collect();
            if !lexed.tokens.iter().any(Tok::is_literal) {
                // No constants: pg_stat_statements keeps no normalised text to compare.
                continue;
            }
            let expected = expected_normalised(&lexed);
            assert_eq!(texts.len(), 1, "{sql:?}: {texts:?}");
            assert!(
                same_boundaries(&expected, &texts[0]),
                "boundaries for {sql:?}: ours {expected:?}, postgres {:?}",
                texts[0]
            );
        }
        println!(
            "pg_differential: {cases} statements, {accepted} accepted and confirmed by Postgres, \
             {refused} refused by lex ({refused_but_valid} of them valid for Postgres), \
             {pg_errors} accepted by lex but refused by Postgres"
        );
        assert!(accepted > cases / 3, "too few accepted cases to be meaningful");
    });
}

//! Lexer tests. Every case that documents a differential says what Postgres 15 does (checked
//! with `psql -c` against a throwaway Postgres 15.18 cluster) and what sqlparser 0.63 does.

use super::*;

/// Kind shorthand for the tables.
const W: TokKind = TokKind::Word;
const Q: TokKind = TokKind::QuotedIdent;
const N: TokKind = TokKind::Number;
const P: TokKind = TokKind::Placeholder;
const O: TokKind = TokKind::Operator;
const U: TokKind = TokKind::Punct;
const SC: TokKind = TokKind::Semicolon;
const S: TokKind = TokKind::String(StrKind::Standard);
const E: TokKind = TokKind::String(StrKind::Escape);
const NS: TokKind = TokKind::String(StrKind::National);
const B: TokKind = TokKind::String(StrKind::Bit);
const X: TokKind = TokKind::String(StrKind::Hex);
const D: TokKind = TokKind::String(StrKind::Dollar);

fn toks(sql: &str) -> Vec<(TokKind, &str)> {
    match lex(sql) {
        Ok(l) => l.tokens.iter().map(|t| (t.kind, t.text(sql))).collect(),
        Err(e) => panic!("lex({sql:?}) failed: {e:?}"),
    }
}

/// Text that lexes, with the exact tokens (kind and source text) Postgres reads.
#[test]
fn accepted_token_streams() {
    #[rustfmt::skip]
    let cases: &[(&str, &[(TokKind, &str)])] = &[
        ("SELECT a, b FROM t WHERE x = 1;",
         &[(W, "SELECT"), (W, "a"), (U, ","), (W, "b"), (W, "FROM"), (W, "t"), (W, "WHERE"),
           (W, "x"), (O, "="), (N, "1"), (SC, ";")]),
        // standard_conforming_strings = on: backslash is an ordinary character, so '\' is a
        // complete string in Postgres (`SELECT 'a\'` returns `a\`); sqlparser agrees.
        ("SELECT 'a\\', b", &[(W, "SELECT"), (S, "'a\\'"), (U, ","), (W, "b")]),
        ("'it''s'", &[(S, "'it''s'")]),
        // E-strings: `\'` escapes the quote in both readings (Postgres returns `a'b`).
        ("E'a\\'b' x", &[(E, "E'a\\'b'"), (W, "x")]),
        ("e'a''b'", &[(E, "e'a''b'")]),
        ("E'\\\\' x", &[(E, "E'\\\\'"), (W, "x")]),
        // Identifiers may contain `$`; `$1` is a parameter.
        ("a$b $1 x$$abc$$", &[(W, "a$b"), (P, "$1"), (W, "x$$abc$$")]),
        // Dollar quoting, with and without tags; a different tag inside does not close.
        ("$$x$$", &[(D, "$$x$$")]),
        ("$a$ it's $b$ \\ $a$ y", &[(D, "$a$ it's $b$ \\ $a$"), (W, "y")]),
        ("$$ a$b$$", &[(D, "$$ a$b$$")]),
        // Numbers Postgres 15 accepts.
        ("1e5 .5 1. 1.e2 1.5E-3 007", &[(N, "1e5"), (N, ".5"), (N, "1."), (N, "1.e2"),
                                        (N, "1.5E-3"), (N, "007")]),
        ("a.b.c", &[(W, "a"), (U, "."), (W, "b"), (U, "."), (W, "c")]),
        ("t.*", &[(W, "t"), (U, "."), (O, "*")]),
        // Nested block comments: Postgres nests (`SELECT 1 /* /* */ */` returns 1), and so does
        // sqlparser's PostgreSQL dialect.
        ("/* a /* b */ c */ SELECT 1", &[(W, "SELECT"), (N, "1")]),
        ("SELECT/**/1", &[(W, "SELECT"), (N, "1")]),
        // `--` comment at the very end, without a newline.
        ("SELECT 1 -- trailing", &[(W, "SELECT"), (N, "1")]),
        // An operator run is cut at an embedded `--`: `2 *-- c\n3` is 2 * 3 = 6 in Postgres.
        ("2 *-- c\n3", &[(N, "2"), (O, "*"), (N, "3")]),
        ("2 +/* c */3", &[(N, "2"), (O, "+"), (N, "3")]),
        // Bit, hex and national strings.
        ("B'101' X'1F' N'abc' n'x'", &[(B, "B'101'"), (X, "X'1F'"), (NS, "N'abc'"), (NS, "n'x'")]),
        // Words that merely start like a prefixed string.
        ("ee'x' xe nb u", &[(W, "ee"), (S, "'x'"), (W, "xe"), (W, "nb"), (W, "u")]),
        ("U &'x'", &[(W, "U"), (O, "&"), (S, "'x'")]),
        // Casts, named arguments, assignment, arrays.
        ("a::text f(x => 1) y := 2 a[1:2]",
         &[(W, "a"), (U, "::"), (W, "text"), (W, "f"), (U, "("), (W, "x"), (U, "=>"), (N, "1"),
           (U, ")"), (W, "y"), (U, ":="), (N, "2"), (W, "a"), (U, "["), (N, "1"), (U, ":"),
           (N, "2"), (U, "]")]),
        // Operators both tokenizers read alike.
        ("a <-> b", &[(W, "a"), (O, "<->"), (W, "b")]),
        ("a->>'k'", &[(W, "a"), (O, "->>"), (S, "'k'")]),
        ("a @> b || c !~~* d", &[(W, "a"), (O, "@>"), (W, "b"), (O, "||"), (W, "c"),
                                 (O, "!~~*"), (W, "d")]),
        ("a ? 'k' AND a ?| b", &[(W, "a"), (O, "?"), (S, "'k'"), (W, "AND"), (W, "a"),
                                 (O, "?|"), (W, "b")]),
        ("|/ 4 #- 1", &[(O, "|/"), (N, "4"), (O, "#-"), (N, "1")]),
        // `=-`, `<-`, `<=-`, `*-`, `+-`: Postgres strips a trailing +/- from a multi-char
        // operator made only of SQL operator characters, and sqlparser splits them the same.
        ("a=-1 a<-1 a<=-1 a*-1 a+-1",
         &[(W, "a"), (O, "="), (O, "-"), (N, "1"), (W, "a"), (O, "<"), (O, "-"), (N, "1"),
           (W, "a"), (O, "<="), (O, "-"), (N, "1"), (W, "a"), (O, "*"), (O, "-"), (N, "1"),
           (W, "a"), (O, "+"), (O, "-"), (N, "1")]),
        ("a <> b != c", &[(W, "a"), (O, "<>"), (W, "b"), (O, "!="), (W, "c")]),
        // Multiple statements.
        ("SELECT 1; SELECT 2", &[(W, "SELECT"), (N, "1"), (SC, ";"), (W, "SELECT"), (N, "2")]),
        // Form feed is whitespace in Postgres 15.
        ("SELECT\x0c1", &[(W, "SELECT"), (N, "1")]),
        // `'a' 'b'` on one line is two tokens to both (Postgres: syntax error).
        ("'a' 'b'", &[(S, "'a'"), (S, "'b'")]),
        // A signed exponent cannot continue an identifier, and `1$` is not junk: Postgres
        // reads `1e+3` `$1` and `1` `$1` here (then: syntax error).
        ("1e+3$1 1$1", &[(N, "1e+3"), (P, "$1"), (N, "1"), (P, "$1")]),
        // A block comment breaks string continuation in Postgres (then: syntax error).
        ("'a' /* c */\n'b'", &[(S, "'a'"), (S, "'b'")]),
    ];
    for (sql, expected) in cases {
        assert_eq!(toks(sql), expected.to_vec(), "for {sql:?}");
    }
}

/// Spans are byte offsets, also with multi-byte UTF-8, CRLF, lone CR and tabs: `&sql[start..end]`
/// is exactly each token's source text.
#[test]
fn spans_are_byte_offsets() {
    #[rustfmt::skip]
    let cases: &[(&str, &[&str])] = &[
        ("SELECT\r\n'é',\r\n  \"naïve\"\r\nFROM t", &["SELECT", "'é'", ",", "\"naïve\"", "FROM", "t"]),
        ("SELECT 日本, 'ü'||x FROM \"表\"", &["SELECT", "日本", ",", "'ü'", "||", "x", "FROM", "\"表\""]),
        ("SELECT\r1\r\r2", &["SELECT", "1", "2"]),
        // A `--` comment ends at a lone CR in both readings.
        ("SELECT 1 -- c\r, x", &["SELECT", "1", ",", "x"]),
        ("\tSELECT\t$$é\r\nü$$ , E'\\n€'", &["SELECT", "$$é\r\nü$$", ",", "E'\\n€'"]),
        ("/* é\r\n */ 'a\r\nb' -- ü\r\n x", &["'a\r\nb'", "x"]),
        ("SELECT 'x' -- é\n, 😀y", &["SELECT", "'x'", ",", "😀y"]),
        // Every token kind after multi-byte text.
        ("SELECT é,\"ü\",'ö',E'ä\\'',N'ß',B'1',X'f',$ü$ä$ü$,$1,1.5e3,ö::text;ö<->ü",
         &["SELECT", "é", ",", "\"ü\"", ",", "'ö'", ",", "E'ä\\''", ",", "N'ß'", ",", "B'1'", ",",
           "X'f'", ",", "$ü$ä$ü$", ",", "$1", ",", "1.5e3", ",", "ö", "::", "text", ";", "ö",
           "<->", "ü"]),
        // Non-ASCII whitespace is an identifier character in Postgres (every byte >= 0x80 is).
        ("SELECT\u{a0}1", &["SELECT\u{a0}1"]),
    ];
    for (sql, expected) in cases {
        let got: Vec<&str> = toks(sql).into_iter().map(|(_, t)| t).collect();
        assert_eq!(got, expected.to_vec(), "for {sql:?}");
    }
}

/// Every accepted token re-lexes on its own to exactly one token of the same kind.
#[test]
fn tokens_relex_to_themselves() {
    let sql = "SELECT a$b, \"x\"\"y\", 'it''s', E'\\'', N'n', B'1', X'f', $q$ $ $q$, 1.5e3, $2, \
               a <-> b, c::int, f(x => 1); /* c */ -- d";
    let lexed = lex(sql).expect("lexes");
    for t in &lexed.tokens {
        let text = t.text(sql);
        let again = lex(text).expect("token lexes alone");
        assert_eq!(again.tokens.len(), 1, "{text:?}");
        assert_eq!(again.tokens[0].kind, t.kind, "{text:?}");
        assert_eq!(
            (again.tokens[0].start, again.tokens[0].end),
            (0, text.len())
        );
    }
}

fn err(sql: &str) -> LexError {
    match lex(sql) {
        Ok(l) => panic!("lex({sql:?}) unexpectedly succeeded: {:?}", l.tokens),
        Err(e) => e,
    }
}

fn rejected(sql: &str) -> Construct {
    match err(sql) {
        LexError::Rejected { construct, .. } => construct,
        other => panic!("lex({sql:?}): expected Rejected, got {other:?}"),
    }
}

/// Constructs refused outright because sqlparser reads them differently or Postgres rejects them.
#[test]
fn rejected_constructs() {
    use Construct::*;
    #[rustfmt::skip]
    let cases: &[(&str, Construct)] = &[
        // Postgres: U&"s\0065cret" is the column `secret`; sqlparser: `U & "s\0065cret"`.
        ("SELECT U&\"s\\0065cret\" FROM t", UnicodeEscapeIdentifier),
        ("SELECT u&\"a\" UESCAPE '!'", UnicodeEscapeIdentifier),
        // Postgres decodes U&'\0061' = 'a' and honours UESCAPE; sqlparser ignores UESCAPE.
        ("SELECT U&'\\0061'", UnicodeEscapeString),
        ("SELECT U&'!0061' UESCAPE '!'", UnicodeEscapeString),
        // Postgres concatenates strings separated by whitespace containing a newline
        // (`SELECT 'a'\n'b'` returns `ab`, also across `--` comments); sqlparser: two tokens.
        ("SELECT 'a'\n'b'", StringContinuation),
        ("SELECT 'a'\r\n\t 'b'", StringContinuation),
        ("SELECT 'a' -- c\n'b'", StringContinuation),
        ("SELECT 'a'\n-- c\n  'b'", StringContinuation),
        // ... and reads the continuation in the first string's mode: Postgres returns `a'` for
        // E'a'\n'\'' (one escape string), sqlparser sees E'a' then the standard string '\'.
        ("SELECT E'a'\n'\\''", StringContinuation),
        ("SELECT B'1'\n'0'", StringContinuation),
        ("SELECT X'1'\r'2'", StringContinuation),
        ("SELECT N'a'\n'b'", StringContinuation),
        // psql meta-commands are not SQL (Postgres: syntax error at "\").
        ("\\d t", Backslash),
        ("SELECT 1 \\g", Backslash),
        ("SELECT 1 \\gexec", Backslash),
        // Postgres 15 has no hex integers or digit separators: "trailing junk after numeric
        // literal". sqlparser reads 0x1F as the hex string X'1F', 1_000 as 1000, 1L as a long.
        ("SELECT 0x1F", NumericJunk),
        ("SELECT 1_000", NumericJunk),
        ("SELECT 1L", NumericJunk),
        ("SELECT 123abc", NumericJunk),
        ("SELECT 0.a", NumericJunk),
        ("SELECT 1e", NumericJunk),
        ("SELECT 1e+", NumericJunk),
        ("SELECT 1.5e", NumericJunk),
        ("SELECT 1e5x", NumericJunk),
        // Found by the differential test: Postgres's junk rules are `{number}{identifier}` and
        // `e3$` is an identifier, so `1e3$1` and `1e3$$c$$` are junk (not 1e3 then $1 / $$c$$).
        ("SELECT 1e3$1", NumericJunk),
        ("SELECT 1e3$$c$$", NumericJunk),
        ("SELECT 1.5e3$", NumericJunk),
        ("SELECT 1e$", NumericJunk),
        // Postgres: "trailing junk after parameter".
        ("SELECT $1a", ParameterJunk),
        // Postgres: syntax error at "$"; sqlparser: placeholder `$abc` or a dollar quote `$1$`.
        ("SELECT $1$", Dollar),
        ("SELECT $abc", Dollar),
        ("SELECT $", Dollar),
        // Postgres: DOT_DOT (syntax error outside PL/pgSQL); sqlparser: `1.` then `.2`.
        ("SELECT 1..2", DotDot),
        ("SELECT a..b", DotDot),
        // Characters Postgres does not accept (vertical tab is not whitespace in Postgres 15;
        // sqlparser treats it as a space).
        ("SELECT {a}", OtherCharacter),
        ("SELECT\x0b1", OtherCharacter),
        ("SELECT\x011", OtherCharacter),
        // Invalid Unicode escapes: Postgres "invalid Unicode escape"; sqlparser accepts
        // `\u+041` as 'A' (Rust's from_str_radix takes a sign).
        ("SELECT E'\\u+041'", InvalidEscape),
        ("SELECT E'\\u12'", InvalidEscape),
        ("SELECT E'\\U0001F60'", InvalidEscape),
        // Postgres: "zero-length delimited identifier"; sqlparser: an empty identifier.
        ("SELECT \"\" FROM t", ZeroLengthIdentifier),
    ];
    for (sql, expected) in cases {
        assert_eq!(rejected(sql), *expected, "for {sql:?}");
    }
}

/// Text both tokenizers accept but read differently: the cross-check refuses it.
#[test]
fn disagreements_are_refused() {
    #[rustfmt::skip]
    let cases: &[&str] = &[
        // Postgres: B'10' then '01' (bit strings have no '' escape: syntax error);
        // sqlparser: one bit string `10'01`.
        "SELECT B'10''01'",
        // Postgres: X'\' is a complete (invalid) hex string; sqlparser applies backslash escapes
        // inside X'' and reads `X'\'', secret FROM t --'` as one literal followed by `secret`.
        "SELECT X'\\'', secret FROM t --'",
        // Postgres: `~` then a comment (2 ~ 3); sqlparser: operator `~--` and the comment's
        // text as tokens. Comment text must never become SQL.
        "SELECT 2 ~-- , secret\n3",
        "SELECT a @-- x\n FROM t",
        "SELECT a ~/* x */ b",
        // Postgres: `>` `-` (a > -1 is true); sqlparser: custom operator `>-`. Refused even
        // though harmless (write `a > -1`).
        "SELECT 1 >-1",
        "SELECT 1 >=-1",
        "SELECT 1 <>-1",
        // Postgres: one operator `!=-` / `^-` (operator does not exist); sqlparser splits.
        "SELECT 1 !=-1",
        "SELECT 2^-1",
        "SELECT a ?&& b",
        // Postgres: `==` is one (nonexistent) operator, `!==` too; sqlparser: `!=` then `=`.
        "SELECT a !== b",
        // Postgres: dollar quote with tag `€`; sqlparser: placeholder `$` then a word.
        "SELECT $€$x$€$",
        // Postgres: identifier `b` then quoted identifier "x" (an alias); sqlparser: a
        // double-quoted byte string b"x".
        "SELECT b\"x\"",
        // Postgres: backquote is an operator character; sqlparser: an unknown character.
        "SELECT a ` b",
    ];
    for sql in cases {
        assert!(
            matches!(err(sql), LexError::Disagreement { .. }),
            "expected a disagreement for {sql:?}, got {:?}",
            lex(sql)
        );
    }
}

/// Text Postgres accepts that sqlparser's tokenizer cannot read at all: refused.
#[test]
fn sqlparser_tokenizer_failures_are_refused() {
    #[rustfmt::skip]
    let cases: &[&str] = &[
        // Postgres: 'é' (bytes C3 A9 form valid UTF-8); sqlparser refuses bytes > 0x7F.
        "SELECT E'\\xc3\\xa9'",
        // Postgres combines the surrogate pair into U+1F600; sqlparser fails.
        "SELECT E'\\uD83D\\uDE00'",
        // Postgres: "invalid byte sequence for encoding UTF8: 0x00"; sqlparser also fails.
        "SELECT E'\\0'",
    ];
    for sql in cases {
        let e = err(sql);
        assert!(
            matches!(
                e,
                LexError::TokenizerFailed { .. } | LexError::Rejected { .. }
            ),
            "for {sql:?}: {e:?}"
        );
    }
}

#[test]
fn unterminated_and_nul() {
    #[rustfmt::skip]
    let cases: &[&str] = &[
        "SELECT 'abc", "SELECT E'abc\\'", "SELECT \"abc", "SELECT $$abc", "SELECT $a$abc$b$",
        "SELECT 1 /* abc", "SELECT 1 /* /* */", "SELECT B'01", "SELECT X'1", "SELECT N'x",
        "SELECT E'\\",
    ];
    for sql in cases {
        assert!(
            matches!(err(sql), LexError::Unterminated { .. }),
            "for {sql:?}"
        );
    }
    assert_eq!(err("SELECT 1\0; DROP TABLE t"), LexError::Nul { offset: 8 });
    assert!(matches!(err("SELECT '\0'"), LexError::Nul { .. }));
}

/// Postgres truncates identifiers to 63 bytes (NOTICE only), so `"<64 bytes>"` names a
/// different relation than the analyser would see.
#[test]
fn long_identifiers() {
    let ok63 = "a".repeat(63);
    assert_eq!(toks(&format!("SELECT {ok63}"))[1], (W, ok63.as_str()));
    assert_eq!(toks(&format!("SELECT \"{ok63}\""))[1].0, Q);
    for sql in [
        format!("SELECT {}", "a".repeat(64)),
        format!("SELECT \"{}\"", "a".repeat(64)),
        // 32 two-byte characters = 64 bytes.
        format!("SELECT \"{}\"", "é".repeat(32)),
        format!("SELECT {}", "é".repeat(32)),
    ] {
        assert!(
            matches!(err(&sql), LexError::IdentifierTooLong { len: 64, .. }),
            "{sql}"
        );
    }
    // `""` counts as one byte of the name.
    let quoted = format!("\"{}\"\"\"", "a".repeat(62));
    assert_eq!(toks(&quoted)[0].0, Q);
    // (`+` runs are split into single `+` operators, so use `~`.)
    assert_eq!(rejected(&"~".repeat(64)), Construct::OperatorTooLong);
    let tag63 = "t".repeat(63);
    assert_eq!(toks(&format!("${tag63}$x${tag63}$"))[0].0, D);
    let tag64 = "t".repeat(64);
    assert_eq!(
        rejected(&format!("${tag64}$x${tag64}$")),
        Construct::LongDollarTag
    );
    assert_eq!(toks(&"~".repeat(63)).len(), 1);
}

/// Error messages carry offsets and construct kinds, never statement text.
#[test]
fn errors_carry_no_literal_text() {
    for sql in [
        "SELECT 'secret-555-1234",
        "SELECT U&'secret'",
        "SELECT X'\\'', secret_col FROM t --'",
        "SELECT E'secret\\xff'",
        "SELECT 1e5secret",
    ] {
        let msg = err(sql).to_string();
        assert!(!msg.contains("secret") && !msg.contains("555"), "{msg}");
    }
}

#[test]
fn values() {
    let sql = "SELECT 'it''s', E'a\\'b\\n\\x41\\101\\u00e9\\U0001F600\\q', N'n''x', $t$ 'x' $t$, \
               \"Qu\"\"ote\", MiXeD, \"MiXeD\", ÉCOLE, B'101', X'1F', E'\\xZ', E'\\v'";
    let l = lex(sql).expect("lexes");
    let strings: Vec<String> = (0..l.len())
        .filter_map(|i| l.string_value(i).map(|v| v.into_owned()))
        .collect();
    // Values as Postgres 15 returns them (`SELECT E'\v' = 'v'` is true: no \v escape in 15).
    assert_eq!(
        strings,
        [
            "it's",
            "a'b\nAAé😀q",
            "n'x",
            " 'x' ",
            "101",
            "1F",
            "xZ",
            "v"
        ]
    );
    let idents: Vec<String> = (0..l.len())
        .filter_map(|i| l.ident_value(i).map(|v| v.into_owned()))
        .collect();
    // Postgres folds ASCII letters only: ÉCOLE stays ÉCOLE except for its ASCII letters.
    assert_eq!(idents, ["select", "Qu\"ote", "mixed", "MiXeD", "École"]);
}

#[test]
fn byte_offsets_of_locations() {
    let sql = "SELECT\r\n  'é', x";
    let l = lex(sql).expect("lexes");
    assert_eq!(l.byte_offset(Location::new(1, 1)), Some(0));
    // Line 2, column 3 is the quote after two spaces.
    let off = l.byte_offset(Location::new(2, 3)).expect("in range");
    assert_eq!(&sql[off..off + 1], "'");
    assert_eq!(l.token_starting_at(off), Some(1));
    // Column 8 on line 2 is `x` ('é' is 2 bytes but one column).
    let x = l.byte_offset(Location::new(2, 8)).expect("in range");
    assert_eq!(l.token_starting_at(x), Some(3));
    assert_eq!(l.token_ending_at(x + 1), Some(3));
    assert_eq!(l.byte_offset(Location::new(9, 1)), None);
}

#[test]
fn split_statements_cases() {
    #[rustfmt::skip]
    let cases: &[(&str, &[&str])] = &[
        ("SELECT 1; SELECT 2;", &["SELECT 1", "SELECT 2"]),
        (";; SELECT 1 ;;", &["SELECT 1"]),
        ("SELECT ';', $$;$$ -- ;\n, \";\" /* ; */", &["SELECT ';', $$;$$ -- ;\n, \";\""]),
        // Inside parentheses a `;` does not split (Postgres rejects such text as a whole).
        ("SELECT (1; 2); SELECT 3", &["SELECT (1; 2)", "SELECT 3"]),
        // SQL-standard function bodies keep their semicolons, CASE ... END included.
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; \
          SELECT CASE WHEN true THEN 1 END; END; SELECT 2",
         &["CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; \
           SELECT CASE WHEN true THEN 1 END; END", "SELECT 2"]),
        ("create or replace procedure p() begin atomic insert into t values (1); end; select 1",
         &["create or replace procedure p() begin atomic insert into t values (1); end", "select 1"]),
        // A function named `begin` does not open a block (psql's heuristic would).
        ("CREATE FUNCTION begin() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql; SELECT 2",
         &["CREATE FUNCTION begin() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", "SELECT 2"]),
        // BEGIN ATOMIC outside CREATE FUNCTION/PROCEDURE does not open a block.
        ("BEGIN; SELECT 1; COMMIT", &["BEGIN", "SELECT 1", "COMMIT"]),
    ];
    for (sql, expected) in cases {
        let l = lex(sql).expect("lexes");
        let got: Vec<&str> = split_statements(&l)
            .into_iter()
            .map(|r| &sql[l.tokens[r.start].start..l.tokens[r.end - 1].end])
            .collect();
        assert_eq!(got, expected.to_vec(), "for {sql:?}");
    }
    assert!(split_statements(&lex("  -- nothing\n").expect("lexes")).is_empty());
}

fn edit(start_tok: usize, end_tok: usize, replacement: &str) -> Edit {
    Edit {
        start_tok,
        end_tok,
        replacement: replacement.to_string(),
    }
}

#[test]
fn apply_edits_keeps_original_bytes() {
    let sql = "SELECT phone, /* keep */ name\r\nFROM users -- tail";
    let l = lex(sql).expect("lexes");
    // Tokens: 0 SELECT, 1 phone, 2 ',', 3 name, 4 FROM, 5 users.
    let out = apply_edits(
        &l,
        &[
            edit(1, 2, "NULL::text AS phone"),
            edit(6, 6, "WHERE opted_in"),
        ],
    )
    .expect("valid edits");
    assert_eq!(
        out,
        "SELECT NULL::text AS phone, /* keep */ name\r\nFROM users WHERE opted_in -- tail"
    );
    // Insertion before a token, after the comment that precedes it.
    let out = apply_edits(&l, &[edit(4, 4, "\n")]).expect("valid edit");
    assert_eq!(out, "SELECT phone, /* keep */ name\r\n\nFROM users -- tail");
    // No edits: identical text.
    assert_eq!(apply_edits(&l, &[]).expect("no edits"), sql);
}

#[test]
fn apply_edits_never_fuses_tokens() {
    let sql = "SELECT a-b, f(x)y FROM t";
    let l = lex(sql).expect("lexes");
    // 0 SELECT 1 a 2 - 3 b 4 , 5 f 6 ( 7 x 8 ) 9 y ...
    let out = apply_edits(&l, &[edit(3, 4, "-1"), edit(6, 9, "")]).expect("valid");
    assert_eq!(out, "SELECT a- -1, f y FROM t");
    let relexed: Vec<&str> = lex(&out)
        .expect("still lexes")
        .tokens
        .iter()
        .map(|t| t.text(&out))
        .collect();
    assert_eq!(
        relexed,
        ["SELECT", "a", "-", "-", "1", ",", "f", "y", "FROM", "t"]
    );
    // Quotes, words and operators never run together.
    let l = lex("SELECT 'a'||'b', x.y").expect("lexes");
    let out = apply_edits(
        &l,
        &[edit(1, 2, "'c'"), edit(3, 4, "E'd'"), edit(5, 6, "z")],
    )
    .expect("valid");
    assert_eq!(out, "SELECT 'c' || E'd', z .y");
}

#[test]
fn apply_edits_applies_to_same_shape() {
    let a = "SELECT phone FROM users WHERE id = 1";
    let b = "select phone\nfrom users where id = 'x''y'  -- c";
    let edits = [edit(1, 2, "NULL::text AS phone")];
    let la = lex(a).expect("lexes");
    let lb = lex(b).expect("lexes");
    assert_eq!(
        apply_edits(&la, &edits).expect("valid"),
        "SELECT NULL::text AS phone FROM users WHERE id = 1"
    );
    assert_eq!(
        apply_edits(&lb, &edits).expect("valid"),
        "select NULL::text AS phone\nfrom users where id = 'x''y'  -- c"
    );
}

#[test]
fn edits_on_one_statement() {
    let sql = "SELECT a FROM t; SELECT phone FROM users -- c\n;";
    let l = lex(sql).expect("lexes");
    let parts = split_statements(&l);
    assert_eq!(parts, vec![0..4, 5..9]);
    let second = l.sub(parts[1].clone());
    assert_eq!(second.text(1), "phone");
    let out = apply_edits(
        &second,
        &[edit(1, 2, "NULL AS phone"), edit(4, 4, "WHERE opted_in")],
    )
    .expect("valid");
    assert_eq!(
        out,
        "SELECT a FROM t; SELECT NULL AS phone FROM users WHERE opted_in -- c\n;"
    );
}

#[test]
fn apply_edits_rejects_bad_lists() {
    let l = lex("SELECT a, b").expect("lexes");
    for bad in [
        vec![edit(2, 1, "x")],
        vec![edit(0, 5, "x")],
        vec![edit(2, 3, "x"), edit(1, 2, "y")],
        vec![edit(1, 3, "x"), edit(2, 4, "y")],
    ] {
        assert!(
            matches!(apply_edits(&l, &bad), Err(LexError::InvalidEdit { .. })),
            "{bad:?}"
        );
    }
}

/// Debug helper: `PROBE='sql1@@sql2' cargo test probe_sqlparser -- --ignored --nocapture`
/// prints sqlparser's tokens and this module's reading side by side.
#[test]
#[ignore]
fn probe_sqlparser() {
    let cases = std::env::var("PROBE").unwrap_or_default();
    for sql in cases.split("@@") {
        let sp = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location();
        println!("== {sql:?}");
        match sp {
            Ok(toks) => {
                for t in toks
                    .iter()
                    .filter(|t| !matches!(t.token, Token::Whitespace(_)))
                {
                    println!("   {:?} {:?}", t.token, t.span);
                }
            }
            Err(e) => println!("   ERR {e}"),
        }
        let mine = lex(sql).map(|l| {
            l.tokens
                .iter()
                .map(|t| (t.kind, t.text(sql)))
                .collect::<Vec<_>>()
        });
        println!("   lex: {mine:?}");
    }
}

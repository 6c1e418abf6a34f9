// Structure-aware SQL generation over the example schema, plus byte-level mutation, for the
// engine fuzzer (tests/hardening/fuzz_sql.rs) and the parser differential
// (tests/parser_differential.rs).
//
// Generated statements are mostly valid Postgres (names come from a scope of the relations in
// FROM, correlated subqueries see the outer scope) and dense in the constructs where sqlparser
// and Postgres could read the text differently: quoting, Unicode escapes, dollar quotes, E''
// strings, comments between tokens, casts, JSON operators, OPERATOR(...), COLLATE, AT TIME
// ZONE, row constructors, subscripts, LATERAL, WITH ORDINALITY, FILTER, WITHIN GROUP,
// GROUPING SETS, set operations, CTEs, ONLY / `t*`, FOR UPDATE OF and DML with RETURNING.
// Every loop and every recursion is bounded (depth and width budgets).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A relation the generator may name: schema-qualified name and its columns.
#[derive(Clone, Debug)]
pub struct GenRelation {
    pub name: String,
    pub columns: Vec<String>,
    pub is_view: bool,
}

/// The example schema (examples/schema.sql), as the generator needs it.
pub fn example_relations() -> Vec<GenRelation> {
    let r = |name: &str, cols: &[&str], is_view: bool| GenRelation {
        name: name.into(),
        columns: cols.iter().map(|c| (*c).into()).collect(),
        is_view,
    };
    vec![
        r(
            "users",
            &[
                "id",
                "handle",
                "display_name",
                "country",
                "birth_year",
                "created_at",
                "email_login",
                "phone_2fa",
                "password_hash",
                "marketing_email",
                "marketing_phone",
                "ads_opt_in",
                "discoverable",
            ],
            false,
        ),
        r(
            "login_events",
            &["id", "user_id", "at", "ip", "user_agent", "success"],
            false,
        ),
        r("posts", &["id", "user_id", "body", "created_at"], false),
        r(
            "follows",
            &["follower_id", "followee_id", "created_at"],
            false,
        ),
        r("advertisers", &["id", "name"], false),
        r(
            "advertiser_lists",
            &["id", "advertiser_id", "name", "uploaded_at"],
            false,
        ),
        r(
            "advertiser_list_entries",
            &["list_id", "phone", "email"],
            false,
        ),
        r(
            "ad_impressions",
            &["id", "user_id", "advertiser_id", "shown_at", "clicked"],
            false,
        ),
        r(
            "user_profiles",
            &["id", "handle", "display_name", "country"],
            true,
        ),
        r(
            "user_security_contacts",
            &["id", "handle", "email_login", "phone_2fa"],
            true,
        ),
    ]
}

/// One FROM entry visible to expressions: the name to qualify with and its columns.
#[derive(Clone, Debug)]
struct Visible {
    qualifier: String,
    columns: Vec<String>,
}

/// The generator: a seeded RNG, the schema, and depth / size budgets.
pub struct SqlGen {
    pub rng: StdRng,
    relations: Vec<GenRelation>,
    depth: u32,
    /// Expression nodes left for the current statement (bounds its size).
    budget: u32,
    aliases: u32,
}

/// Deepest subquery / expression nesting generated.
const MAX_DEPTH: u32 = 4;
/// Expression nodes per statement.
const NODE_BUDGET: u32 = 60;

impl SqlGen {
    pub fn new(seed: u64) -> Self {
        SqlGen {
            rng: StdRng::seed_from_u64(seed),
            relations: example_relations(),
            depth: 0,
            budget: NODE_BUDGET,
            aliases: 0,
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("a{}", self.aliases)
    }

    /// One statement: mostly queries, some DML.
    pub fn statement(&mut self) -> String {
        self.depth = 0;
        self.budget = NODE_BUDGET;
        self.aliases = 0;
        let sql = match self.rng.random_range(0..20) {
            0 => self.insert(),
            1 => self.update(),
            2 => self.delete(),
            3 => {
                let t = self
                    .pick(&["users", "posts", "user_profiles", "follows"])
                    .to_string();
                format!("TABLE {t}")
            }
            _ => self.query(&[]),
        };
        self.noise(&sql)
    }

    /// A full query (WITH, set operations, ORDER BY, LIMIT, locking).
    fn query(&mut self, outer: &[Visible]) -> String {
        self.depth += 1;
        let mut out = String::new();
        let mut ctes: Vec<Visible> = Vec::new();
        if self.depth <= 2 && self.chance(0.15) {
            let name = format!("c{}", self.depth);
            let (body, cols) = self.select_core(outer, &[]);
            let recursive = if self.chance(0.2) { "RECURSIVE " } else { "" };
            out.push_str(&format!("WITH {recursive}{name} AS ({body}) "));
            ctes.push(Visible {
                qualifier: name,
                columns: cols,
            });
        }
        let (core, cols) = self.select_core(outer, &ctes);
        out.push_str(&core);
        if self.depth <= 2 && self.chance(0.12) {
            let op = self
                .pick(&[
                    "UNION",
                    "UNION ALL",
                    "INTERSECT",
                    "EXCEPT",
                    "EXCEPT ALL",
                    "UNION DISTINCT",
                ])
                .to_string();
            // Same arity on both sides: a VALUES row or another core with that many columns.
            let other = if self.chance(0.5) {
                let vals: Vec<String> = (0..cols.len().max(1)).map(|_| "NULL".into()).collect();
                format!("VALUES ({})", vals.join(", "))
            } else {
                let (c, _) = self.select_core_arity(outer, cols.len().max(1));
                c
            };
            out.push_str(&format!(" {op} {other}"));
        } else if !cols.is_empty() && self.chance(0.3) {
            let n = self.rng.random_range(1..=cols.len());
            let dir = self
                .pick(&["", " DESC", " ASC NULLS FIRST", " USING <"])
                .to_string();
            out.push_str(&format!(" ORDER BY {n}{dir}"));
        }
        if self.chance(0.2) {
            let l = self
                .pick(&[
                    "LIMIT 5",
                    "LIMIT ALL",
                    "OFFSET 1",
                    "LIMIT $1",
                    "FETCH FIRST 3 ROWS ONLY",
                    "LIMIT 2 OFFSET 1",
                ])
                .to_string();
            out.push(' ');
            out.push_str(&l);
        }
        if self.depth == 1 && self.chance(0.05) {
            out.push_str(" FOR UPDATE");
        }
        self.depth -= 1;
        out
    }

    /// A select core with exactly `n` output columns.
    fn select_core_arity(&mut self, outer: &[Visible], n: usize) -> (String, Vec<String>) {
        let (from, vis) = self.build_from(outer, &[]);
        let mut scope = vis.clone();
        scope.extend_from_slice(outer);
        let items: Vec<String> = (0..n).map(|_| self.expr(&scope)).collect();
        let names = (0..n).map(|i| format!("x{i}")).collect();
        (format!("SELECT {} {from}", items.join(", ")), names)
    }

    /// SELECT ... FROM ... [WHERE] [GROUP BY] [HAVING]; returns the text and output names.
    fn select_core(&mut self, outer: &[Visible], ctes: &[Visible]) -> (String, Vec<String>) {
        let (from, vis) = self.build_from(outer, ctes);
        let mut scope = vis.clone();
        scope.extend_from_slice(outer);
        let mut sql = String::from("SELECT ");
        if self.chance(0.08) {
            sql.push_str("DISTINCT ");
        } else if self.chance(0.04) {
            let e = self.expr(&scope);
            sql.push_str(&format!("DISTINCT ON ({e}) "));
        }
        let mut names = Vec::new();
        let n_items = self.rng.random_range(1..4);
        let mut items = Vec::new();
        for i in 0..n_items {
            if self.chance(0.08) {
                items.push("*".to_string());
                names.extend(vis.iter().flat_map(|v| v.columns.clone()));
                continue;
            }
            if self.chance(0.06) && !vis.is_empty() {
                let v = self.pick(&vis).clone();
                items.push(format!("{}.*", v.qualifier));
                names.extend(v.columns.clone());
                continue;
            }
            let e = if self.chance(0.1) {
                self.aggregate(&scope)
            } else {
                self.expr(&scope)
            };
            if self.chance(0.4) {
                let name = format!("o{i}");
                items.push(format!("{e} AS {name}"));
                names.push(name);
            } else {
                items.push(e);
                names.push(format!("?column{i}?"));
            }
        }
        sql.push_str(&items.join(", "));
        if !from.is_empty() {
            sql.push(' ');
            sql.push_str(&from);
        }
        if self.chance(0.5) {
            let p = self.predicate(&scope);
            sql.push_str(&format!(" WHERE {p}"));
        }
        if self.chance(0.1) && !scope.is_empty() {
            let g = self.column(&scope);
            let form = self.rng.random_range(0..4);
            sql.push_str(&match form {
                0 => format!(" GROUP BY {g}"),
                1 => format!(" GROUP BY GROUPING SETS (({g}), ())"),
                2 => format!(" GROUP BY ROLLUP ({g})"),
                _ => format!(" GROUP BY CUBE ({g})"),
            });
            if self.chance(0.4) {
                let a = self.aggregate(&scope);
                sql.push_str(&format!(" HAVING {a} IS NOT NULL"));
            }
        }
        if self.chance(0.05) && !scope.is_empty() {
            let w = self.column(&scope);
            sql.push_str(&format!(" WINDOW w AS (PARTITION BY {w})"));
        }
        // Names of `*` of derived tables are not tracked precisely; never mind: only the
        // arity matters to callers.
        (sql, names)
    }

    /// FROM clause (possibly empty) and the entries it makes visible.
    fn build_from(&mut self, outer: &[Visible], ctes: &[Visible]) -> (String, Vec<Visible>) {
        if self.chance(0.05) {
            return (String::new(), Vec::new());
        }
        let mut vis = Vec::new();
        let first = self.range_item(outer, ctes, &mut vis);
        let mut sql = format!("FROM {first}");
        let joins = if self.depth <= 2 {
            self.rng.random_range(0..3)
        } else {
            0
        };
        for _ in 0..joins {
            let before = vis.clone();
            let item = self.range_item(outer, ctes, &mut vis);
            let kind = self.rng.random_range(0..8);
            match kind {
                0 => sql.push_str(&format!(", {item}")),
                1 => sql.push_str(&format!(" CROSS JOIN {item}")),
                2 => sql.push_str(&format!(" NATURAL JOIN {item}")),
                3 => {
                    // USING a column name both sides have, when there is one.
                    let right = vis.last().cloned();
                    let shared = right.and_then(|r| {
                        before
                            .iter()
                            .flat_map(|v| v.columns.iter())
                            .find(|c| r.columns.contains(c))
                            .cloned()
                    });
                    match shared {
                        Some(c) => sql.push_str(&format!(" JOIN {item} USING ({c})")),
                        None => sql.push_str(&format!(" JOIN {item} ON true")),
                    }
                }
                _ => {
                    let jt = self
                        .pick(&[
                            "JOIN",
                            "LEFT JOIN",
                            "RIGHT JOIN",
                            "FULL JOIN",
                            "INNER JOIN",
                            "LEFT OUTER JOIN",
                        ])
                        .to_string();
                    let p = self.predicate(&vis);
                    sql.push_str(&format!(" {jt} {item} ON {p}"));
                }
            }
        }
        (sql, vis)
    }

    /// One FROM item, pushing what it makes visible.
    fn range_item(
        &mut self,
        outer: &[Visible],
        ctes: &[Visible],
        vis: &mut Vec<Visible>,
    ) -> String {
        let kind = self.rng.random_range(0..20);
        match kind {
            0 | 1 if self.depth < MAX_DEPTH => {
                let a = self.alias();
                let lateral = if self.chance(0.3) { "LATERAL " } else { "" };
                let mut scope = vis.clone();
                scope.extend_from_slice(outer);
                let inner_outer = if lateral.is_empty() {
                    outer.to_vec()
                } else {
                    scope
                };
                let (q, cols) = self.subquery_with_names(&inner_outer);
                vis.push(Visible {
                    qualifier: a.clone(),
                    columns: cols,
                });
                format!("{lateral}({q}) {a}")
            }
            2 => {
                let a = self.alias();
                let f = self
                    .pick(&[
                        "generate_series(1, 3)",
                        "unnest(ARRAY[1, 2])",
                        "generate_series(1, 2) WITH ORDINALITY",
                        "jsonb_each('{\"a\": 1}'::jsonb)",
                    ])
                    .to_string();
                let cols = if f.contains("ORDINALITY") {
                    vec!["g".into(), "n".into()]
                } else if f.starts_with("jsonb_each") {
                    vec!["key".into(), "value".into()]
                } else {
                    vec!["g".into()]
                };
                let collist = if f.contains("ORDINALITY") {
                    "(g, n)"
                } else if f.starts_with("jsonb_each") {
                    ""
                } else {
                    "(g)"
                };
                vis.push(Visible {
                    qualifier: a.clone(),
                    columns: cols,
                });
                format!("{f} AS {a}{collist}")
            }
            3 => {
                let a = self.alias();
                vis.push(Visible {
                    qualifier: a.clone(),
                    columns: vec!["v1".into(), "v2".into()],
                });
                format!("(VALUES (1, 'x'), (2, 'y')) AS {a}(v1, v2)")
            }
            4 if !ctes.is_empty() => {
                let c = self.pick(ctes).clone();
                vis.push(c.clone());
                c.qualifier
            }
            _ => {
                let rel = self.pick(&self.relations.clone()).clone();
                let spelled = self.relation_name(&rel);
                let modifier: &str = if rel.is_view {
                    ""
                } else {
                    // ONLY and `t*` are refused (sqlparser misreads them); rare here.
                    match self.rng.random_range(0..60) {
                        0 => "ONLY ",
                        1 => "*",
                        _ => "",
                    }
                };
                let (prefix, suffix) = if modifier == "*" {
                    ("", "*")
                } else {
                    (modifier, "")
                };
                let sample = if !rel.is_view && self.chance(0.03) {
                    " TABLESAMPLE SYSTEM (50)"
                } else {
                    ""
                };
                if self.chance(0.6) {
                    let a = self.alias();
                    vis.push(Visible {
                        qualifier: a.clone(),
                        columns: rel.columns.clone(),
                    });
                    let as_kw = if self.chance(0.5) { "AS " } else { "" };
                    format!("{prefix}{spelled}{suffix} {as_kw}{a}{sample}")
                } else {
                    vis.push(Visible {
                        qualifier: rel.name.clone(),
                        columns: rel.columns.clone(),
                    });
                    format!("{prefix}{spelled}{suffix}{sample}")
                }
            }
        }
    }

    fn relation_name(&mut self, rel: &GenRelation) -> String {
        match self.rng.random_range(0..10) {
            0 => format!("public.{}", rel.name),
            1 => format!("\"public\".\"{}\"", rel.name),
            2 => format!("\"{}\"", rel.name),
            3 => rel.name.to_uppercase(),
            _ => rel.name.clone(),
        }
    }

    /// A subquery whose output names are known (every item aliased).
    fn subquery_with_names(&mut self, outer: &[Visible]) -> (String, Vec<String>) {
        self.depth += 1;
        let (from, vis) = self.build_from(outer, &[]);
        let mut scope = vis.clone();
        scope.extend_from_slice(outer);
        let n = self.rng.random_range(1..4);
        let mut items = Vec::new();
        let mut names = Vec::new();
        for i in 0..n {
            if self.chance(0.3) && !scope.is_empty() {
                // A bare column keeps its own name: pass-through lineage.
                let (q, c) =
                    self.column_parts(&vis.iter().chain(outer.iter()).cloned().collect::<Vec<_>>());
                match q {
                    Some(q) if !names.contains(&c) => {
                        items.push(format!("{q}.{c}"));
                        names.push(c);
                        continue;
                    }
                    _ => {}
                }
            }
            let e = self.expr(&scope);
            let name = format!("s{}_{i}", self.depth);
            items.push(format!("{e} AS {name}"));
            names.push(name);
        }
        let mut sql = format!("SELECT {} {from}", items.join(", "));
        if self.chance(0.4) {
            let p = self.predicate(&scope);
            sql.push_str(&format!(" WHERE {p}"));
        }
        self.depth -= 1;
        (sql, names)
    }

    fn column_parts(&mut self, scope: &[Visible]) -> (Option<String>, String) {
        if scope.is_empty() {
            return (None, "1".into());
        }
        let v = self.pick(scope).clone();
        if v.columns.is_empty() {
            return (None, "1".into());
        }
        let c = self.pick(&v.columns).clone();
        (Some(v.qualifier), c)
    }

    /// A column reference in one of its spellings.
    fn column(&mut self, scope: &[Visible]) -> String {
        let (q, c) = self.column_parts(scope);
        let Some(q) = q else { return c };
        // Spellings the lexer refuses (U&"...") are rare here, so that most statements get
        // past it to the parser and the analyser; the trap corpus has them all.
        match self.rng.random_range(0..60) {
            0 => c,
            1 => format!("\"{q}\".\"{c}\""),
            2 => format!("{q}.\"{c}\""),
            3 => format!("{q} . {c}"),
            4 => format!("{q}./**/{c}"),
            5 => format!("({q}).{c}"),
            6 => format!("{c}({q})"),
            7 => format!("U&\"{}\"", unicode_escape(&c)),
            8 => format!("{q}.{}", c.to_uppercase()),
            _ => format!("{q}.{c}"),
        }
    }

    fn literal(&mut self) -> String {
        self.pick(&[
            "1",
            "0.5",
            "'x'",
            "NULL",
            "true",
            "E'a\\'b'",
            "$$d$$",
            "$t$--$t$",
            "'a' 'b'",
            "U&'\\0041'",
            "B'101'",
            "X'1F'",
            "'{\"k\": [1, 2]}'::jsonb",
            "ARRAY[1, 2, 3]",
            "'2024-01-01'::date",
            "interval '1 day'",
            "'1.2.3.4'::inet",
            "$1",
            "1e3",
            "'a''b'",
            "E'\\x41'",
            "n'x'",
        ])
        .to_string()
    }

    /// A scalar expression over `scope`.
    fn expr(&mut self, scope: &[Visible]) -> String {
        if self.budget == 0 || self.depth > MAX_DEPTH {
            return if self.chance(0.5) {
                self.column(scope)
            } else {
                self.literal()
            };
        }
        self.budget -= 1;
        let k = self.rng.random_range(0..40);
        match k {
            0..=11 => self.column(scope),
            12..=15 => self.literal(),
            16 => {
                let (a, b) = (self.expr(scope), self.expr(scope));
                let op = self
                    .pick(&[
                        "+",
                        "-",
                        "*",
                        "||",
                        "->>",
                        "->",
                        "#>",
                        "#>>",
                        "@>",
                        "<@",
                        "&",
                        "|",
                        "#",
                        "<<",
                        "^",
                        "%",
                        "OPERATOR(pg_catalog.=)",
                        "OPERATOR(pg_catalog.||)",
                        "~~",
                        "!~",
                        "?",
                        "?|",
                        "@@",
                    ])
                    .to_string();
                format!("({a} {op} {b})")
            }
            17 => {
                let e = self.expr(scope);
                let t = self
                    .pick(&[
                        "text",
                        "int",
                        "bigint",
                        "regclass",
                        "jsonb",
                        "varchar(3)",
                        "\"char\"",
                        "name",
                        "numeric(5, 2)",
                        "text[]",
                        "oid",
                        "bool",
                        "users",
                        "record",
                    ])
                    .to_string();
                if self.chance(0.5) {
                    format!("{e}::{t}")
                } else {
                    format!("CAST({e} AS {t})")
                }
            }
            18 => {
                let f = self
                    .pick(&[
                        "lower",
                        "upper",
                        "length",
                        "md5",
                        "coalesce",
                        "quote_literal",
                        "to_json",
                        "row_to_json",
                        "pg_catalog.lower",
                        "concat",
                        "format",
                        "left",
                        "nullif",
                        "greatest",
                        "textlen",
                        "char_length",
                        "octet_length",
                        "to_char",
                        "pg_typeof",
                        "jsonb_build_object",
                        "hashtext",
                        "current_setting",
                        "set_config",
                        "pg_sleep",
                        "txid_current",
                    ])
                    .to_string();
                let n = match f.as_str() {
                    "coalesce" | "concat" | "greatest" | "nullif" | "left" | "to_char"
                    | "jsonb_build_object" => 2,
                    "current_setting" | "txid_current" => 0,
                    "set_config" => 3,
                    _ => 1,
                };
                let args: Vec<String> = (0..n).map(|_| self.expr(scope)).collect();
                format!("{f}({})", args.join(", "))
            }
            19 => {
                let (c, a, b) = (self.predicate(scope), self.expr(scope), self.expr(scope));
                format!("CASE WHEN {c} THEN {a} ELSE {b} END")
            }
            20 => {
                let e = self.expr(scope);
                format!("CASE {e} WHEN 1 THEN 'a' END")
            }
            21 if self.depth < MAX_DEPTH => {
                let (q, _) = self.select_core_arity(scope, 1);
                format!("({q} LIMIT 1)")
            }
            22 => {
                let (a, b) = (self.expr(scope), self.expr(scope));
                format!("ROW({a}, {b})")
            }
            23 => {
                let e = self.expr(scope);
                format!("(ARRAY[{e}])[1]")
            }
            24 => {
                let e = self.expr(scope);
                format!("{e} COLLATE \"C\"")
            }
            25 => {
                let e = self.expr(scope);
                format!("({e})::timestamptz AT TIME ZONE 'UTC'")
            }
            26 if !scope.is_empty() => {
                let v = self.pick(scope).clone();
                self.pick(&[
                    format!("row_to_json({})", v.qualifier),
                    format!("to_jsonb({}.*)", v.qualifier),
                    v.qualifier.to_string(),
                    format!("({}.*)::text", v.qualifier),
                    format!("hstore({})", v.qualifier),
                    format!("count({})", v.qualifier),
                ])
                .clone()
            }
            27 => {
                let e = self.expr(scope);
                format!("{e} IS DISTINCT FROM NULL")
            }
            28 => {
                let e = self.expr(scope);
                let w = if scope.is_empty() {
                    String::new()
                } else {
                    let c = self.column(scope);
                    format!("PARTITION BY {c}")
                };
                let f = self
                    .pick(&[
                        "row_number()",
                        "rank()",
                        "lag(x)",
                        "first_value(x)",
                        "count(*)",
                        "sum(x)",
                    ])
                    .to_string();
                format!(
                    "{} OVER ({w} ORDER BY {e})",
                    f.replace('x', &self.column(scope))
                )
            }
            29 => {
                let e = self.expr(scope);
                format!("{e}[1:2]")
            }
            30 => {
                let e = self.expr(scope);
                format!("jsonb_path_query_first({e}::jsonb, '$.a ? (@ > 1)')")
            }
            31 => {
                let e = self.expr(scope);
                format!("-{e}")
            }
            32 if self.chance(0.2) => {
                let e = self.expr(scope);
                format!("({e} ISNULL)")
            }
            _ => self.column(scope),
        }
    }

    /// An aggregate call with the clauses Postgres allows on it.
    fn aggregate(&mut self, scope: &[Visible]) -> String {
        let e = self.expr(scope);
        match self.rng.random_range(0..8) {
            0 => "count(*)".into(),
            1 => format!("count(DISTINCT {e})"),
            2 => {
                let p = self.predicate(scope);
                format!("count(*) FILTER (WHERE {p})")
            }
            3 => {
                let o = self.expr(scope);
                format!("string_agg({e}::text, ',' ORDER BY {o})")
            }
            4 => format!("percentile_cont(0.5) WITHIN GROUP (ORDER BY length({e}::text))"),
            5 => format!("array_agg({e})"),
            6 => format!("max({e})"),
            _ => format!("bool_or({e} IS NULL)"),
        }
    }

    /// A boolean expression.
    fn predicate(&mut self, scope: &[Visible]) -> String {
        if self.budget == 0 {
            return "true".into();
        }
        self.budget -= 1;
        match self.rng.random_range(0..16) {
            0..=2 => {
                let (a, b) = (self.expr(scope), self.expr(scope));
                let op = self
                    .pick(&[
                        "=",
                        "<>",
                        "<",
                        ">=",
                        "!=",
                        "LIKE",
                        "ILIKE",
                        "~",
                        "IS NOT DISTINCT FROM",
                        "SIMILAR TO",
                    ])
                    .to_string();
                format!("{a} {op} {b}")
            }
            3 => {
                let (a, b) = (self.predicate(scope), self.predicate(scope));
                format!("({a} AND {b})")
            }
            4 => {
                let (a, b) = (self.predicate(scope), self.predicate(scope));
                format!("({a} OR {b})")
            }
            5 => {
                let a = self.predicate(scope);
                format!("NOT ({a})")
            }
            6 if self.depth < MAX_DEPTH => {
                let (q, _) = self.select_core_arity(scope, 1);
                format!("EXISTS ({q})")
            }
            7 if self.depth < MAX_DEPTH => {
                let e = self.expr(scope);
                let (q, _) = self.select_core_arity(scope, 1);
                let form = self.pick(&["IN", "NOT IN", "= ANY", "<> ALL"]).to_string();
                format!("{e} {form} ({q})")
            }
            8 => {
                let e = self.expr(scope);
                format!("{e} IN (1, 2, 'x')")
            }
            9 => {
                let e = self.expr(scope);
                format!("{e} IS NULL")
            }
            10 => {
                let e = self.expr(scope);
                format!("{e} BETWEEN 1 AND 5")
            }
            11 => {
                let (a, b) = (self.expr(scope), self.expr(scope));
                format!("ROW({a}, 1) = ROW({b}, 1)")
            }
            12 => {
                let e = self.expr(scope);
                format!("{e}::text ~ '^a'")
            }
            _ => {
                let (a, b) = (self.expr(scope), self.expr(scope));
                format!("{a} = {b}")
            }
        }
    }

    fn insert(&mut self) -> String {
        let (table, cols) = self
            .pick(&[
                ("posts", vec!["user_id", "body"]),
                ("follows", vec!["follower_id", "followee_id"]),
                ("users", vec!["handle", "email_login"]),
            ])
            .clone();
        let source = if self.chance(0.5) {
            let vals: Vec<String> = cols.iter().map(|_| self.literal()).collect();
            format!("VALUES ({})", vals.join(", "))
        } else {
            let (q, _) = self.select_core_arity(&[], cols.len());
            q
        };
        let mut sql = format!("INSERT INTO {table} ({}) {source}", cols.join(", "));
        if self.chance(0.3) {
            sql.push_str(" ON CONFLICT DO NOTHING");
        }
        if self.chance(0.5) {
            let scope = [Visible {
                qualifier: table.to_string(),
                columns: self
                    .relations
                    .iter()
                    .find(|r| r.name == table)
                    .map(|r| r.columns.clone())
                    .unwrap_or_default(),
            }];
            let e = self.expr(&scope);
            sql.push_str(&format!(" RETURNING {e}"));
        }
        sql
    }

    fn update(&mut self) -> String {
        let table = self
            .pick(&["posts", "users", "follows", "ad_impressions"])
            .to_string();
        let rel = self
            .relations
            .iter()
            .find(|r| r.name == table)
            .cloned()
            .unwrap_or_else(|| self.relations[0].clone());
        let mut vis = vec![Visible {
            qualifier: "t".into(),
            columns: rel.columns.clone(),
        }];
        let mut from = String::new();
        if self.chance(0.3) {
            let item = self.range_item(&[], &[], &mut vis);
            from = format!(" FROM {item}");
        }
        let col = self.pick(&rel.columns).clone();
        let v = self.expr(&vis);
        let mut sql = format!("UPDATE {table} AS t SET {col} = {v}{from}");
        let p = self.predicate(&vis);
        sql.push_str(&format!(" WHERE {p}"));
        if self.chance(0.4) {
            let e = self.expr(&vis);
            sql.push_str(&format!(" RETURNING {e}"));
        }
        sql
    }

    fn delete(&mut self) -> String {
        let table = self
            .pick(&["posts", "follows", "ad_impressions", "users"])
            .to_string();
        let rel = self
            .relations
            .iter()
            .find(|r| r.name == table)
            .cloned()
            .unwrap_or_else(|| self.relations[0].clone());
        let mut vis = vec![Visible {
            qualifier: table.clone(),
            columns: rel.columns.clone(),
        }];
        let mut using = String::new();
        if self.chance(0.3) {
            let item = self.range_item(&[], &[], &mut vis);
            using = format!(" USING {item}");
        }
        let p = self.predicate(&vis);
        let mut sql = format!("DELETE FROM {table}{using} WHERE {p}");
        if self.chance(0.3) {
            let e = self.expr(&vis);
            sql.push_str(&format!(" RETURNING {e}"));
        }
        sql
    }

    /// Comments, line breaks and case changes between tokens (outside literals: only at
    /// spaces that are not inside quotes).
    fn noise(&mut self, sql: &str) -> String {
        if !self.chance(0.3) {
            return sql.to_string();
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut quote: Option<char> = None;
        for ch in sql.chars() {
            match quote {
                Some(q) if ch == q => quote = None,
                Some(_) => {}
                None if ch == '\'' || ch == '"' || ch == '$' => quote = Some(ch),
                None => {}
            }
            if quote.is_none() && ch == ' ' && self.chance(0.08) {
                let n = self
                    .pick(&[
                        " /* c */ ",
                        "\n",
                        " -- c\n",
                        "\t",
                        " /* /* nested */ */ ",
                        "\r\n",
                    ])
                    .to_string();
                out.push_str(&n);
            } else {
                out.push(ch);
            }
        }
        out
    }
}

/// `U&"..."` body spelling every character as `\XXXX`.
fn unicode_escape(s: &str) -> String {
    s.chars().map(|c| format!("\\{:04x}", c as u32)).collect()
}

/// Fragments the byte mutator inserts: the characters and tokens lexers disagree about.
const DICTIONARY: &[&str] = &[
    "'",
    "\"",
    "$$",
    "$a$",
    "U&",
    "\\",
    "--",
    "/*",
    "*/",
    ";",
    "E'",
    "\n",
    "::",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "..",
    "e",
    "0x",
    "$1",
    "ó",
    "\u{feff}",
    "\u{0}",
    " UESCAPE '!'",
    "->>",
    "#>",
    "@>",
    "||",
    "OPERATOR(",
    "*",
    " ONLY ",
    " TABLE ",
    " phone_2fa ",
    " email_login ",
    " users ",
    " SELECT ",
    " FROM ",
    " WHERE ",
    " AS ",
    " (SELECT ",
    " UNION ",
    "'a'\n'b'",
    "N'",
    "B'",
    "X'",
    "\t",
    "\r",
    "+",
    "-",
    "1e",
    "&",
];

/// Mutate `input` with a few random byte-level edits (insertions from the dictionary,
/// deletions, duplications, truncation). The result is valid UTF-8.
pub fn mutate(rng: &mut StdRng, input: &str) -> String {
    let mut s: Vec<char> = input.chars().collect();
    let edits = rng.random_range(1..5);
    for _ in 0..edits {
        let len = s.len();
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..=len)
        };
        match rng.random_range(0..6) {
            0 | 1 => {
                let frag = DICTIONARY[rng.random_range(0..DICTIONARY.len())];
                for (i, c) in frag.chars().enumerate() {
                    s.insert(at + i, c);
                }
            }
            2 if len > 0 => {
                let end = (at + rng.random_range(1..8)).min(len);
                s.drain(at.min(end)..end);
            }
            3 if len > 0 => {
                let end = (at + rng.random_range(1..16)).min(len);
                let piece: Vec<char> = s[at.min(end)..end].to_vec();
                for (i, c) in piece.into_iter().enumerate() {
                    s.insert(at + i, c);
                }
            }
            4 if len > 0 => {
                s.truncate(at);
            }
            _ if len > 0 => {
                let i = at.min(len - 1);
                s[i] = char::from(rng.random_range(0x20u8..0x7f));
            }
            _ => {}
        }
        if s.len() > 4096 {
            s.truncate(4096);
        }
    }
    s.into_iter().collect()
}

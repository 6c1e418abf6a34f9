// Postgres's own reading of a statement, from a real server: the relations and columns its
// planner reads (EXPLAIN (VERBOSE, FORMAT JSON) of the prepared statement, generic plan) and
// the relations and columns its parse-analysis depends on (pg_depend of a temporary SQL
// function whose body is the statement).
//
// Reading columns from a plan: every expression field of every node is scanned for column
// references. A reference is `alias.column` (the alias of a relation scan in the same plan),
// `alias.*` (a whole-row reference: every column), or a bare `column` where the plan scans one
// relation only (EXPLAIN leaves references unqualified then) or inside that relation's own scan
// node. String literals, function names (followed by `(`) and type names (after `::`) are not
// references. A reference through a CTE or subquery scan (`c.col`) is followed into the
// subplan's output column of that name. In the Output of a scan or pass-through node (Hash,
// Sort, ...) below a join or aggregate, and in the stored rows of a CTE, an item that is one
// bare column reference only carries the value up (for example the planner's *physical tlist*:
// a scan passing whole tuples to avoid a projection, or a materialized CTE storing a column
// nobody reads); it is a read only where a consumer references it, so only computed items
// count there. Everywhere else (the root, set-operation branches, rows to insert, subquery
// expressions) every output item is a read.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A base relation scanned by the plan: (schema, name).
pub type Rel = (String, String);

/// What the plan reads.
#[derive(Debug, Default, Clone)]
pub struct PlanReads {
    pub relations: BTreeSet<Rel>,
    /// (relation, column) pairs read by some expression.
    pub columns: BTreeSet<(Rel, String)>,
}

/// Keys of plan nodes that hold no expression.
const NOT_EXPRESSIONS: &[&str] = &[
    "Node Type",
    "Parent Relationship",
    "Relation Name",
    "Schema",
    "Alias",
    "Join Type",
    "Strategy",
    "Partial Mode",
    "Scan Direction",
    "Index Name",
    "CTE Name",
    "Subplan Name",
    "Operation",
    "Command",
    "Sort Method",
    "Sort Space Type",
    "Conflict Resolution",
    "Conflict Arbiter Indexes",
    "Function Name",
    "Setop",
    "Plans",
];

/// Parse `EXPLAIN (VERBOSE, FORMAT JSON)` output; `columns_of` lists a relation's columns.
pub fn plan_reads(
    json: &str,
    columns_of: &dyn Fn(&Rel) -> Option<Vec<String>>,
) -> Result<PlanReads, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("plan JSON: {e}"))?;
    let plan = v
        .get(0)
        .and_then(|p| p.get("Plan"))
        .ok_or("plan JSON has no Plan")?;
    // First pass: every relation scan with its alias, and what CTE / subquery scans carry.
    let mut aliases: BTreeMap<String, Rel> = BTreeMap::new();
    collect_scans(plan, &mut aliases);
    let mut ctes: BTreeMap<String, Vec<Ref>> = BTreeMap::new();
    collect_cte_outputs(plan, &mut ctes);
    let mut derived: BTreeMap<String, Vec<Ref>> = BTreeMap::new();
    collect_derived(plan, &ctes, &mut derived);
    let mut reads = PlanReads {
        relations: aliases.values().cloned().collect(),
        ..Default::default()
    };
    // Bare references belong to the only relation *scanned* (a write target without a scan,
    // as in INSERT ... SELECT over other tables, owns none of them).
    let mut scanned: BTreeMap<String, Rel> = BTreeMap::new();
    collect_scans_only(plan, &mut scanned);
    let single = if scanned.len() == 1 {
        scanned.values().next().cloned()
    } else {
        None
    };
    let cx = Cx {
        aliases: &aliases,
        derived: &derived,
        single: single.as_ref(),
        columns_of,
    };
    collect_reads(plan, None, &cx, &mut reads);
    Ok(reads)
}

/// What resolving a reference needs.
struct Cx<'a> {
    aliases: &'a BTreeMap<String, Rel>,
    /// CTE / subquery scan alias → the references of its subplan's output items.
    derived: &'a BTreeMap<String, Vec<Ref>>,
    single: Option<&'a Rel>,
    columns_of: &'a dyn Fn(&Rel) -> Option<Vec<String>>,
}

/// The references of a node's output items; a node without an Output list (Append, Recursive
/// Union) outputs what its children do.
fn output_refs(node: &Value) -> Vec<Ref> {
    let mut texts = Vec::new();
    match node.get("Output") {
        Some(o) => strings_of(o, &mut texts),
        None => {
            return node
                .get("Plans")
                .and_then(Value::as_array)
                .map(|c| c.iter().flat_map(output_refs).collect())
                .unwrap_or_default()
        }
    }
    texts.iter().flat_map(|t| references(t)).collect()
}

/// Nodes whose output only carries their input up to a consumer that names it itself.
const PASS_THROUGH_NODES: &[&str] = &[
    "Hash",
    "Sort",
    "Incremental Sort",
    "Materialize",
    "Memoize",
    "Gather",
    "Gather Merge",
];
/// Parents whose children's output *is* a result (set operation rows, rows to insert).
const RESULT_PARENTS: &[&str] = &[
    "Append",
    "Merge Append",
    "Recursive Union",
    "SetOp",
    "ModifyTable",
];

/// Whether the bare references in this node's Output only carry values to a consumer (which
/// is then where they are read): scans and pass-through nodes below a join or aggregate, and
/// the stored rows of a CTE. Not under a set operation or a write, not the root of a subquery
/// expression (its output is the value of `(SubPlan n)`).
fn output_is_carried(node: &Value, parent_type: Option<&str>) -> bool {
    let ty = node.get("Node Type").and_then(Value::as_str).unwrap_or("");
    if node
        .get("Subplan Name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.starts_with("CTE "))
    {
        return true;
    }
    let relationship = node.get("Parent Relationship").and_then(Value::as_str);
    if matches!(relationship, Some("SubPlan") | Some("InitPlan")) {
        return false;
    }
    if parent_type.is_some_and(|p| RESULT_PARENTS.contains(&p)) {
        return false;
    }
    node.get("Relation Name").is_some() || PASS_THROUGH_NODES.contains(&ty)
}

fn collect_cte_outputs(node: &Value, out: &mut BTreeMap<String, Vec<Ref>>) {
    if let Some(name) = node
        .get("Subplan Name")
        .and_then(Value::as_str)
        .and_then(|n| n.strip_prefix("CTE "))
    {
        out.insert(name.to_owned(), output_refs(node));
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for c in children {
            collect_cte_outputs(c, out);
        }
    }
}

fn collect_derived(
    node: &Value,
    ctes: &BTreeMap<String, Vec<Ref>>,
    out: &mut BTreeMap<String, Vec<Ref>>,
) {
    let alias = node.get("Alias").and_then(Value::as_str);
    let is_relation = node.get("Relation Name").is_some();
    if let (Some(alias), false) = (alias, is_relation) {
        if let Some(cte) = node.get("CTE Name").and_then(Value::as_str) {
            out.insert(alias.to_owned(), ctes.get(cte).cloned().unwrap_or_default());
        } else if node.get("Node Type").and_then(Value::as_str) == Some("Subquery Scan") {
            let refs = node
                .get("Plans")
                .and_then(Value::as_array)
                .and_then(|c| c.first())
                .map(output_refs)
                .unwrap_or_default();
            out.insert(alias.to_owned(), refs);
        }
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for c in children {
            collect_derived(c, ctes, out);
        }
    }
}

fn collect_scans_only(node: &Value, out: &mut BTreeMap<String, Rel>) {
    if node.get("Node Type").and_then(Value::as_str) != Some("ModifyTable") {
        if let (Some(rel), Some(schema), Some(alias)) = (
            node.get("Relation Name").and_then(Value::as_str),
            node.get("Schema").and_then(Value::as_str),
            node.get("Alias").and_then(Value::as_str),
        ) {
            out.insert(alias.to_owned(), (schema.to_owned(), rel.to_owned()));
        }
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for c in children {
            collect_scans_only(c, out);
        }
    }
}

fn collect_scans(node: &Value, out: &mut BTreeMap<String, Rel>) {
    if let (Some(rel), Some(schema), Some(alias)) = (
        node.get("Relation Name").and_then(Value::as_str),
        node.get("Schema").and_then(Value::as_str),
        node.get("Alias").and_then(Value::as_str),
    ) {
        out.insert(alias.to_owned(), (schema.to_owned(), rel.to_owned()));
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for c in children {
            collect_scans(c, out);
        }
    }
}

fn strings_of(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings_of(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings_of(x, out)),
        _ => {}
    }
}

fn collect_reads(node: &Value, parent_type: Option<&str>, cx: &Cx<'_>, out: &mut PlanReads) {
    let root = parent_type.is_none();
    let carried = !root && output_is_carried(node, parent_type);
    let own: Option<Rel> = match (
        node.get("Relation Name").and_then(Value::as_str),
        node.get("Schema").and_then(Value::as_str),
    ) {
        (Some(r), Some(s)) => Some((s.to_owned(), r.to_owned())),
        _ => None,
    };
    let bare_owner = own.as_ref().or(cx.single);
    if let Some(obj) = node.as_object() {
        for (key, value) in obj {
            if NOT_EXPRESSIONS.contains(&key.as_str()) {
                continue;
            }
            let mut texts = Vec::new();
            strings_of(value, &mut texts);
            for text in &texts {
                let item = references(text);
                // Below the root, an Output item that is one bare reference carries a value
                // up; its consumers (or the root) are where it is read.
                if key == "Output" && carried && is_bare_reference(text) {
                    continue;
                }
                for r in &item {
                    resolve(r, cx, bare_owner, out, 0);
                }
            }
        }
    }
    let ty = node.get("Node Type").and_then(Value::as_str).unwrap_or("?");
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for c in children {
            collect_reads(c, Some(ty), cx, out);
        }
    }
}

/// `col`, `q.col`, `q.*` (possibly quoted) and nothing else.
fn is_bare_reference(text: &str) -> bool {
    let refs = references(text);
    refs.len() == 1
        && !text.contains(['(', ' ', ':', '\''])
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '"' | '*' | '$'))
}

/// A column reference found in an expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Qualified(String, String),
    WholeRow(String),
    Bare(String),
}

/// Deepest chain of CTE / subquery scans a reference is followed through.
const MAX_DERIVED_DEPTH: usize = 16;

fn resolve(r: &Ref, cx: &Cx<'_>, bare_owner: Option<&Rel>, out: &mut PlanReads, depth: usize) {
    if depth > MAX_DERIVED_DEPTH {
        return;
    }
    let add = |rel: &Rel, col: &str, out: &mut PlanReads| {
        if (cx.columns_of)(rel).is_some_and(|cols| cols.iter().any(|c| c == col)) {
            out.columns.insert((rel.clone(), col.to_owned()));
        }
    };
    match r {
        Ref::Qualified(q, c) => {
            if let Some(rel) = cx.aliases.get(q) {
                add(rel, c, out);
            } else if let Some(refs) = cx.derived.get(q) {
                // The subplan's output item of that name (bare references keep their name).
                for inner in refs.iter().filter(|i| ref_column(i) == Some(c.as_str())) {
                    resolve(inner, cx, cx.single, out, depth + 1);
                }
            }
        }
        Ref::WholeRow(q) => {
            if let Some(rel) = cx.aliases.get(q) {
                for c in (cx.columns_of)(rel).unwrap_or_default() {
                    out.columns.insert((rel.clone(), c));
                }
            } else if let Some(refs) = cx.derived.get(q) {
                for inner in refs {
                    resolve(inner, cx, cx.single, out, depth + 1);
                }
            }
        }
        Ref::Bare(c) => {
            if let Some(rel) = bare_owner {
                add(rel, c, out);
            }
        }
    }
}

fn ref_column(r: &Ref) -> Option<&str> {
    match r {
        Ref::Qualified(_, c) | Ref::Bare(c) => Some(c),
        Ref::WholeRow(_) => None,
    }
}

/// Column references in one deparsed expression (see the module comment).
pub fn references(text: &str) -> Vec<Ref> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Previous significant characters, to skip type names after `::`.
    let mut after_cast = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' {
            // String literal with '' escapes.
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            after_cast = false;
            continue;
        }
        if c == b':' && b.get(i + 1) == Some(&b':') {
            after_cast = true;
            i += 2;
            continue;
        }
        if c == b'$' {
            // Parameter $n.
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'"' {
            // A dotted name: ident(.ident)* possibly ending in .*
            let mut parts: Vec<String> = Vec::new();
            let mut star = false;
            loop {
                let (ident, next) = ident_at(text, i);
                let Some(ident) = ident else { break };
                parts.push(ident);
                i = next;
                if b.get(i) == Some(&b'.') {
                    if b.get(i + 1) == Some(&b'*') {
                        star = true;
                        i += 2;
                        break;
                    }
                    i += 1;
                    continue;
                }
                break;
            }
            let is_call = b.get(i) == Some(&b'(');
            if after_cast || is_call {
                after_cast = after_cast && !parts.is_empty() && b.get(i) == Some(&b' ');
                // Multi-word type names continue after a space (`timestamp with time zone`);
                // keep skipping words until punctuation.
                if b.get(i) != Some(&b' ') {
                    after_cast = false;
                }
                continue;
            }
            match (parts.as_slice(), star) {
                ([q], true) => out.push(Ref::WholeRow(q.clone())),
                ([q, c], false) => out.push(Ref::Qualified(q.clone(), c.clone())),
                ([_, q, c], false) => out.push(Ref::Qualified(q.clone(), c.clone())),
                ([c], false) => out.push(Ref::Bare(c.clone())),
                _ => {}
            }
            continue;
        }
        if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            after_cast = false;
            continue;
        }
        if c != b' ' {
            after_cast = false;
        }
        i += 1;
    }
    out
}

/// An identifier at byte `i` (plain or double-quoted) and the offset after it.
fn ident_at(text: &str, i: usize) -> (Option<String>, usize) {
    let b = text.as_bytes();
    match b.get(i) {
        Some(b'"') => {
            let mut s = String::new();
            let mut j = i + 1;
            while j < b.len() {
                if b[j] == b'"' {
                    if b.get(j + 1) == Some(&b'"') {
                        s.push('"');
                        j += 2;
                        continue;
                    }
                    return (Some(s), j + 1);
                }
                let ch = text[j..].chars().next().unwrap_or('\0');
                s.push(ch);
                j += ch.len_utf8();
            }
            (None, j)
        }
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'$') {
                j += 1;
            }
            (Some(text[i..j].to_owned()), j)
        }
        _ => (None, i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_skip_literals_functions_and_types() {
        assert_eq!(
            references("(u.phone_2fa = 'a.b c'::text) AND (lower(u.\"Handle\") ~~ $1)"),
            vec![
                Ref::Qualified("u".into(), "phone_2fa".into()),
                // Keywords come out as bare words; they resolve to nothing.
                Ref::Bare("AND".into()),
                Ref::Qualified("u".into(), "Handle".into()),
            ]
        );
        assert_eq!(
            references("row_to_json(u.*), id, (created_at)::timestamp with time zone"),
            vec![
                Ref::WholeRow("u".into()),
                Ref::Bare("id".into()),
                Ref::Bare("created_at".into()),
            ]
        );
    }

    #[test]
    fn physical_tlists_are_not_uses() {
        let cols = |r: &Rel| (r.1 == "t").then(|| vec!["a".to_string(), "b".to_string()]);
        let json = r#"[{"Plan": {"Node Type": "Aggregate", "Output": ["count(*)"],
            "Plans": [{"Node Type": "Seq Scan", "Relation Name": "t", "Schema": "public",
                       "Alias": "t", "Output": ["a", "b"], "Filter": "(a > 1)"}]}}]"#;
        let r = plan_reads(json, &cols).expect("parses");
        let got: Vec<_> = r.columns.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(got, vec!["a"]);
    }

    #[test]
    fn references_through_ctes_are_followed_to_the_base_column() {
        let cols = |r: &Rel| (r.1 == "t").then(|| vec!["a".to_string(), "b".to_string()]);
        // WITH c AS MATERIALIZED (SELECT a, b FROM t) SELECT 1 FROM c x WHERE x.b = 1:
        // the CTE stores a and b, only b is read (by the filter).
        let json = r#"[{"Plan": {"Node Type": "CTE Scan", "CTE Name": "c", "Alias": "x",
            "Output": ["1"], "Filter": "(x.b = 1)",
            "Plans": [{"Node Type": "Seq Scan", "Parent Relationship": "InitPlan",
                       "Subplan Name": "CTE c", "Relation Name": "t", "Schema": "public",
                       "Alias": "t", "Output": ["t.a", "t.b"]}]}}]"#;
        let r = plan_reads(json, &cols).expect("parses");
        let got: Vec<_> = r.columns.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(got, vec!["b"]);
        // A computed output item below the root is a read.
        let json = json.replace(r#""t.a", "t.b""#, r#""lower(t.a)", "t.b""#);
        let r = plan_reads(&json, &cols).expect("parses");
        assert_eq!(r.columns.len(), 2);
    }
}

//! The analyser: from a parsed statement and a catalog snapshot to every use of every catalog
//! column (with the clause it is used in), the scans row filters must wrap, the output items a
//! mask could replace, and the grants the statement needs. No policy decision is taken here
//! beyond what resolution itself needs (which scans are already filtered).
//!
//! - [`scope`]: range-table entries, query levels, name resolution and lineage.
//! - [`query`]: queries, set operations, SELECT, CTEs.
//! - [`from`]: FROM items (tables, views, CTE references, derived tables, functions, joins).
//! - [`expr`]: expressions and function calls.
//! - [`statements`]: statement dispatch, the top-level output, COPY, SET/RESET, DDL.
//! - [`dml`]: INSERT / UPDATE / DELETE / MERGE and data-modifying CTEs.
//! - [`views`]: view definitions (lineage and uses inside them).
//! - [`functions`]: which functions may be called.
//! - [`naming`]: the output column names Postgres gives select-list items.

pub mod dml;
pub mod expr;
pub mod from;
pub mod functions;
pub mod naming;
pub mod query;
pub mod scope;
pub mod statements;
pub mod views;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};
use sqlparser::tokenizer::Span;

use crate::catalog::{Catalog, QualifiedName};
use crate::engine::report::Clause;
use crate::policy::{CompiledPolicy, Grant};

pub use scope::{ColInfo, ColumnKey, Sources};

use scope::Scopes;
use views::ViewInfo;

/// Postgres truncates identifiers to NAMEDATALEN - 1 bytes.
const MAX_IDENT_BYTES: usize = 63;
/// Deepest nesting of views inside views the analyser follows.
pub const MAX_VIEW_DEPTH: usize = 16;
/// Deepest expression / subquery nesting the analyser walks (the parser has its own limit;
/// left-deep operator chains are walked iteratively).
pub const MAX_NESTING: usize = 256;

/// Why a statement could not be analysed with certainty. Every variant blocks (fail closed).
/// Messages carry identifiers from the statement, never literal values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalyseError {
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("relation {0} is not in the catalog snapshot")]
    UnknownRelation(String),
    #[error("no FROM-clause entry named {0} is in scope")]
    UnknownQualifier(String),
    #[error("column {0} does not exist in the statement's scope")]
    UnknownColumn(String),
    #[error("reference {0} is ambiguous")]
    Ambiguous(String),
    #[error("cannot tell which relation column {0} belongs to")]
    Unresolvable(String),
    #[error("function {0} is not known")]
    UnknownFunction(String),
    #[error("unsupported construct: {0}")]
    Unsupported(String),
    #[error("statement nesting is too deep")]
    TooDeep,
    #[error("view {view} cannot be analysed: {why}")]
    View { view: String, why: String },
}

/// Byte range in the text being analysed.
pub type ByteRange = (usize, usize);

/// One use of one catalog column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Use {
    pub key: ColumnKey,
    pub clause: Clause,
    pub place: &'static str,
    /// The top-level output slot the use reaches (only for [`Clause::Output`]).
    pub slot: Option<usize>,
}

/// Where a top-level output column comes from in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotTarget {
    /// A bare column reference item, possibly aliased: the whole item's text.
    Item(ByteRange),
    /// One column of a `*` / `t.*` expansion (index into `star_groups`).
    Star(usize),
    /// A column of `COPY table (cols) TO`.
    Copy,
    /// Not replaceable (set operations, expressions): a forbidden use here blocks.
    Fixed,
}

/// A top-level output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSlot {
    pub name: String,
    /// The catalog type when the value is an unmodified catalog column (maskable).
    pub mask_type: Option<String>,
    pub target: SlotTarget,
}

/// A `*` or `t.*` item of the top-level select list, with what it expands to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarGroup {
    pub range: ByteRange,
    /// (qualifier, column name, slot) per expanded column; the qualifier is `None` for merged
    /// USING columns.
    pub columns: Vec<(Option<String>, String, usize)>,
}

/// A scan of a catalog relation written in the text (candidate for a row filter).
#[derive(Debug, Clone)]
pub struct Scan {
    pub relation: QualifiedName,
    /// The relation name's text.
    pub name_range: ByteRange,
    /// `None` when the scan has no alias (one must be added when wrapping it).
    pub alias: Option<String>,
    pub refname: String,
    /// TABLESAMPLE, ONLY or another modifier that a subquery cannot carry.
    pub unwrappable: Option<&'static str>,
    /// For views resolved through their definition.
    pub view: Option<Rc<ViewInfo>>,
}

/// The kind of write whose target may need a row filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Update,
    Delete,
    InsertOnConflictUpdate,
    Merge,
}

/// UPDATE / DELETE / MERGE / upsert target.
#[derive(Debug, Clone)]
pub struct WriteTarget {
    pub relation: QualifiedName,
    pub kind: WriteKind,
    /// Byte offset of the statement's first keyword (UPDATE / DELETE).
    pub stmt_start: usize,
    /// The target is already restricted by exactly the policy's filter (re-analysis).
    pub already_filtered: bool,
}

/// `COPY table [(cols)] TO STDOUT`, which masks and filters turn into `COPY (SELECT ...)`.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    pub relation: QualifiedName,
    /// From the table name to the end of the column list.
    pub range: ByteRange,
    /// (column name, slot).
    pub columns: Vec<(String, usize)>,
}

/// Everything analysis found in one statement.
#[derive(Debug, Clone, Default)]
pub struct StatementAnalysis {
    pub kind: String,
    pub uses: Vec<Use>,
    pub slots: Vec<OutputSlot>,
    pub star_groups: Vec<StarGroup>,
    pub scans: Vec<Scan>,
    pub write_targets: Vec<WriteTarget>,
    pub copy: Option<CopyPlan>,
    /// Grants the statement needs, with the reason.
    pub grants: Vec<(Grant, String)>,
    /// Reasons the statement is refused whatever the grants.
    pub refusals: Vec<String>,
    /// Columns named by DDL that renames / drops / alters them (tagged → refused).
    pub ddl_columns: Vec<(QualifiedName, Option<String>)>,
    pub literal_sensitive: bool,
    /// Names of the top-level output columns, in order (empty for statements without output).
    pub output_names: Vec<String>,
    /// The statement reads or writes no column data.
    pub no_data: bool,
}

/// The fixed inputs of an analysis.
pub struct Env<'a> {
    pub catalog: &'a Catalog,
    pub policy: &'a CompiledPolicy,
    pub purpose: &'a str,
}

/// A CTE visible by name.
#[derive(Debug, Clone)]
pub struct CteDef {
    pub name: String,
    pub columns: Vec<ColInfo>,
}

pub struct Analyser<'e, 't> {
    pub env: &'e Env<'e>,
    pub scopes: Scopes,
    /// CTE scopes, innermost last.
    pub ctes: Vec<Vec<CteDef>>,
    pub out: StatementAnalysis,
    /// Start byte of each line of the text, to map parser spans to bytes.
    line_starts: Vec<usize>,
    /// For text that is not all ASCII: the byte offset of every character (and one past the
    /// end), and the character index at which each line starts. Precomputed so that mapping a
    /// span costs O(1), not a scan of the text: a statement with many items would otherwise
    /// take quadratic time (a 40 000-item select list took minutes).
    char_index: Option<(Vec<u32>, Vec<u32>)>,
    text: &'t str,
    /// Views being expanded (cycle detection).
    pub view_stack: Vec<QualifiedName>,
    pub view_cache: Rc<RefCell<HashMap<QualifiedName, Rc<ViewInfo>>>>,
    pub depth: usize,
}

impl<'e, 't> Analyser<'e, 't> {
    pub fn new(env: &'e Env<'e>, text: &'t str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        // Protocol messages are below 2^31 bytes, so offsets fit in u32; a longer text gets
        // no index and every span fails to map (the statement is blocked).
        let char_index = (!text.is_ascii() && text.len() < u32::MAX as usize).then(|| {
            let mut offsets = Vec::with_capacity(text.len() + 1);
            let mut line_chars = vec![0u32];
            for (i, (b, c)) in text.char_indices().enumerate() {
                offsets.push(b as u32);
                if c == '\n' {
                    line_chars.push(i as u32 + 1);
                }
            }
            offsets.push(text.len() as u32);
            (offsets, line_chars)
        });
        Analyser {
            env,
            scopes: Scopes::default(),
            ctes: Vec::new(),
            out: StatementAnalysis::default(),
            line_starts,
            char_index,
            text,
            view_stack: Vec::new(),
            view_cache: Rc::new(RefCell::new(HashMap::new())),
            depth: 0,
        }
    }

    pub fn text(&self) -> &'t str {
        self.text
    }

    /// Byte offset of a parser location (1-based line, 1-based character column), at most one
    /// past the last character of that line. O(1).
    pub fn offset(&self, line: u64, column: u64) -> Option<usize> {
        let line = (line as usize).checked_sub(1)?;
        let col = (column as usize).checked_sub(1)?;
        let start = *self.line_starts.get(line)?;
        // The line's end: its '\n', or the end of the text.
        let end = self
            .line_starts
            .get(line + 1)
            .map_or(self.text.len(), |next| next - 1);
        match &self.char_index {
            None if self.text.len() < u32::MAX as usize => {
                (col <= end - start).then_some(start + col)
            }
            None => None,
            Some((offsets, line_chars)) => {
                let first = *line_chars.get(line)? as usize;
                let last = line_chars
                    .get(line + 1)
                    .map_or(offsets.len() - 1, |next| *next as usize - 1);
                let at = first.checked_add(col)?;
                (at <= last).then(|| offsets.get(at).map(|o| *o as usize))?
            }
        }
    }

    /// Byte range of a span; an error when the parser left the span empty.
    pub fn range(&self, span: Span) -> Result<ByteRange, AnalyseError> {
        let bad = || AnalyseError::Unsupported("a construct without source position".into());
        if span.start.line == 0 {
            return Err(bad());
        }
        let s = self
            .offset(span.start.line, span.start.column)
            .ok_or_else(bad)?;
        let e = self
            .offset(span.end.line, span.end.column)
            .ok_or_else(bad)?;
        if e < s {
            return Err(bad());
        }
        Ok((s, e))
    }

    /// Enter one level of nesting; fails when too deep.
    pub fn enter(&mut self) -> Result<(), AnalyseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(AnalyseError::TooDeep);
        }
        Ok(())
    }

    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    pub fn record(&mut self, sources: &Sources, clause: Clause, place: &'static str) {
        for key in sources {
            self.out.uses.push(Use {
                key: key.clone(),
                clause,
                place,
                slot: None,
            });
        }
    }

    pub fn need(&mut self, grant: Grant, why: impl Into<String>) {
        self.out.grants.push((grant, why.into()));
    }

    pub fn refuse(&mut self, why: impl Into<String>) {
        self.out.refusals.push(why.into());
    }

    /// Resolve a relation name written in FROM / DML: CTEs first (unqualified only), then the
    /// catalog.
    pub fn find_cte(&self, name: &str) -> Option<&CteDef> {
        self.ctes
            .iter()
            .rev()
            .find_map(|scope| scope.iter().rev().find(|c| c.name == name))
    }

    /// Resolve a catalog relation name (`name`, `schema.name`).
    pub fn catalog_relation(
        &self,
        parts: &[String],
    ) -> Result<&'e crate::catalog::Relation, AnalyseError> {
        let catalog = self.env.catalog;
        match parts {
            [name] => catalog
                .resolve_unqualified(name)
                .ok_or_else(|| AnalyseError::UnknownRelation(name.clone())),
            [schema, name] => catalog
                .relation(&QualifiedName::new(schema.as_str(), name.as_str()))
                .ok_or_else(|| AnalyseError::UnknownRelation(format!("{schema}.{name}"))),
            [db, schema, name] => Err(AnalyseError::UnknownRelation(format!(
                "{db}.{schema}.{name}"
            ))),
            _ => Err(AnalyseError::Unsupported("relation name".into())),
        }
    }
}

/// Fold an identifier the way Postgres does: unquoted names are lower-cased (ASCII only) and
/// every name is truncated to 63 bytes.
pub fn fold(ident: &Ident) -> String {
    let mut s = match ident.quote_style {
        Some('"') => ident.value.clone(),
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    };
    if s.len() > MAX_IDENT_BYTES {
        let mut cut = MAX_IDENT_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The folded parts of an object name; function-call parts are unsupported.
pub fn name_parts(name: &ObjectName) -> Result<Vec<String>, AnalyseError> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(fold(i)),
            ObjectNamePart::Function(_) => Err(AnalyseError::Unsupported(
                "function in an object name".into(),
            )),
        })
        .collect()
}

/// Idents of an object name.
pub fn name_idents(name: &ObjectName) -> Result<Vec<&Ident>, AnalyseError> {
    name.0
        .iter()
        .map(|p| {
            p.as_ident()
                .ok_or_else(|| AnalyseError::Unsupported("function in an object name".into()))
        })
        .collect()
}

/// Quote an identifier for generated SQL: always double quotes, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_follows_postgres() {
        assert_eq!(fold(&Ident::new("Phone_2FA")), "phone_2fa");
        assert_eq!(fold(&Ident::with_quote('"', "Phone")), "Phone");
        let long = "a".repeat(70);
        assert_eq!(fold(&Ident::new(long)).len(), 63);
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn offsets_map_lines_and_characters() {
        let catalog = crate::catalog::Catalog::default();
        let policy = crate::policy::PolicyBuilder::new().build();
        let env = Env {
            catalog: &catalog,
            policy: &policy,
            purpose: "p",
        };
        let a = Analyser::new(&env, "ab\ncd");
        assert_eq!(a.offset(1, 1), Some(0));
        assert_eq!(a.offset(1, 3), Some(2));
        assert_eq!(a.offset(1, 4), None);
        assert_eq!(a.offset(2, 2), Some(4));
        assert_eq!(a.offset(2, 3), Some(5));
        assert_eq!(a.offset(3, 1), None);
        let a = Analyser::new(&env, "é'x'\nñb");
        assert_eq!(a.offset(1, 2), Some(2));
        assert_eq!(a.offset(1, 5), Some(5));
        assert_eq!(a.offset(1, 6), None);
        assert_eq!(a.offset(2, 2), Some(8));
        assert_eq!(a.offset(2, 3), Some(9));
        assert_eq!(a.offset(2, 4), None);
        assert_eq!(a.offset(0, 1), None);
    }
}

//! Plain-data results of the decision engine: every column use found in a statement, what the
//! engine did about it, and the final [`Decision`]. These types are printed in tests, logged,
//! and written to the audit log; they hold names and policy facts, never literal values.

use std::fmt;

use crate::catalog::QualifiedName;
use crate::engine::lexing::Edit;
use crate::error::PgError;
use crate::policy::Grant;

/// Where in a statement a column's value is used. Every kind except [`Clause::Output`] is a use
/// the policy can only allow or block: the value takes part in computing something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Clause {
    /// Returned to the client as is: the top-level select list, RETURNING, COPY TO.
    Output,
    /// WHERE, HAVING, QUALIFY, aggregate FILTER, ON CONFLICT targets.
    Predicate,
    /// JOIN ON, USING, NATURAL JOIN.
    Join,
    GroupBy,
    OrderBy,
    /// PARTITION BY / ORDER BY of a window.
    Window,
    /// DISTINCT, or a set operation that compares rows (UNION, INTERSECT, EXCEPT).
    Distinct,
    DistinctOn,
    /// LIMIT / OFFSET / FETCH expressions.
    Limit,
    /// Any expression other than a bare column reference: function and operator arguments,
    /// casts, CASE, aggregates.
    FunctionArg,
    /// A whole-row reference (`t`, `t.*` inside an expression, `row_to_json(t)`).
    WholeRow,
    /// The select list of a subquery used as an expression (scalar, IN, EXISTS, ANY).
    Subquery,
    /// A column written by INSERT, UPDATE, MERGE or COPY FROM.
    Write,
    /// A value read to be written somewhere (INSERT ... SELECT, UPDATE SET expressions).
    WriteSource,
    /// Named by a DDL statement, or read by the query of CREATE VIEW / TABLE AS / SELECT INTO.
    Ddl,
    /// Read by COPY ... TO in a way that cannot be masked.
    Copy,
}

impl Clause {
    /// How the clause reads in a message: "... in WHERE ...".
    pub fn describe(self) -> &'static str {
        match self {
            Clause::Output => "the output",
            Clause::Predicate => "WHERE",
            Clause::Join => "a join condition",
            Clause::GroupBy => "GROUP BY",
            Clause::OrderBy => "ORDER BY",
            Clause::Window => "a window clause",
            Clause::Distinct => "DISTINCT or a set operation",
            Clause::DistinctOn => "DISTINCT ON",
            Clause::Limit => "LIMIT/OFFSET",
            Clause::FunctionArg => "an expression",
            Clause::WholeRow => "a whole-row reference",
            Clause::Subquery => "a subquery",
            Clause::Write => "a write target",
            Clause::WriteSource => "a value being written",
            Clause::Ddl => "a DDL statement",
            Clause::Copy => "COPY",
        }
    }
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// One use of one catalog column, after resolution through aliases, CTEs, derived tables and
/// views (a view column used in WHERE is a WHERE use of every base column feeding it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnUse {
    pub table: QualifiedName,
    pub column: String,
    pub clause: Clause,
    /// More precise place than the clause kind, for messages ("HAVING", "JOIN ... USING").
    pub place: String,
    /// The column's tags (`None`: untagged).
    pub tags: Option<Vec<String>>,
    /// Whether the session's purpose may use it.
    pub allowed: bool,
    /// The use was neutralised by masking the output column.
    pub masked: bool,
}

/// An output column replaced by `NULL::<type> AS "<name>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedColumn {
    pub output_name: String,
    pub type_name: String,
    /// The forbidden base columns that fed it.
    pub sources: Vec<(QualifiedName, String)>,
}

/// A row filter added to a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilterApplied {
    pub table: QualifiedName,
    pub filter: String,
    /// `scan`, `UPDATE target`, `DELETE target`, `view <name>`, `COPY`.
    pub at: String,
}

/// Which rule settled the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Every column use is allowed and nothing needed rewriting.
    AllUsesAllowed,
    /// A statement kind that touches no column data (transaction control, SHOW, ...).
    NoDataAccess,
    /// Forbidden columns that only reached the output were masked and/or row filters added.
    Rewritten,
    /// A forbidden column was used where it cannot be masked.
    ForbiddenColumn {
        table: QualifiedName,
        column: String,
        clause: Clause,
    },
    /// The statement kind needs a grant the service does not have.
    GrantRequired(Grant),
    /// The statement is refused whatever the grants (COPY to a file, renaming a tagged column, ...).
    Refused(String),
    /// The engine could not analyse the statement with certainty (fail closed).
    Unanalysable(String),
    /// The text could not be parsed (or is read differently by Postgres and the parser).
    Syntax,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::AllUsesAllowed => f.write_str("all column uses allowed"),
            Rule::NoDataAccess => f.write_str("no data access"),
            Rule::Rewritten => f.write_str("rewritten (masks / row filters)"),
            Rule::ForbiddenColumn {
                table,
                column,
                clause,
            } => write!(f, "forbidden column {table}.{column} in {clause}"),
            Rule::GrantRequired(g) => write!(f, "grant required: {g:?}"),
            Rule::Refused(why) => write!(f, "refused: {why}"),
            Rule::Unanalysable(why) => write!(f, "unanalysable: {why}"),
            Rule::Syntax => f.write_str("syntax error"),
        }
    }
}

/// What the engine found and decided for one statement of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementReport {
    /// The statement kind ("SELECT", "UPDATE", "COPY", "SET", ...).
    pub kind: String,
    pub uses: Vec<ColumnUse>,
    pub masked: Vec<MaskedColumn>,
    pub row_filters: Vec<RowFilterApplied>,
    /// Grants the statement relied on.
    pub grants_used: Vec<Grant>,
    pub rule: Rule,
}

impl StatementReport {
    pub fn new(kind: impl Into<String>) -> Self {
        StatementReport {
            kind: kind.into(),
            uses: Vec::new(),
            masked: Vec::new(),
            row_filters: Vec::new(),
            grants_used: Vec::new(),
            rule: Rule::AllUsesAllowed,
        }
    }
}

/// Everything the engine found in one SQL text (one or several statements).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub statements: Vec<StatementReport>,
    /// A literal's value affected the analysis (ORDER BY / GROUP BY ordinals, `'t'::regclass`,
    /// `set_config` names, ...): the decision must not be cached by shape with literals stripped.
    pub literal_sensitive: bool,
}

/// The engine's verdict on a SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward the original text unchanged.
    Allow(Report),
    /// Forward `sql` instead: the original text with `edits` applied at token boundaries.
    Rewrite {
        sql: String,
        edits: Vec<Edit>,
        report: Report,
    },
    /// Refuse, answering with `error`.
    Block { error: PgError, report: Report },
}

impl Decision {
    pub fn report(&self) -> &Report {
        match self {
            Decision::Allow(r) => r,
            Decision::Rewrite { report, .. } => report,
            Decision::Block { report, .. } => report,
        }
    }

    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    pub fn is_block(&self) -> bool {
        matches!(self, Decision::Block { .. })
    }
}

//! Expressions: every column reference is resolved and recorded as a use in the clause the
//! expression sits in; subqueries are analysed with their own scope; function calls are
//! checked against the function rules. Each call returns the lineage of the expression's
//! value (the catalog columns it is computed from).

use sqlparser::ast::{
    AccessExpr, BinaryOperator, CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, Ident, Query, Subscript, Value, WindowFrameBound,
    WindowSpec, WindowType,
};

use crate::engine::report::Clause;
use crate::policy::Grant;

use super::functions::{classify, FunctionClass};
use super::query::Role;
use super::scope::{Resolved, Sources};
use super::{fold, name_parts, AnalyseError, Analyser};

/// The clause an expression is evaluated in.
#[derive(Debug, Clone, Copy)]
pub struct Cx {
    pub clause: Clause,
    pub place: &'static str,
}

impl Cx {
    pub fn new(clause: Clause, place: &'static str) -> Self {
        Cx { clause, place }
    }
}

fn unsupported(what: &str) -> AnalyseError {
    AnalyseError::Unsupported(what.to_owned())
}

/// Session parameters Postgres must keep pinned (DESIGN.md, "Session settings").
pub const PINNED_PARAMETERS: &[&str] = &["standard_conforming_strings", "client_encoding"];
/// Parameters that change who the session is or how names resolve.
pub const SESSION_CONTROL_PARAMETERS: &[&str] = &["role", "session_authorization", "search_path"];

fn is_reg_type(t: &DataType) -> bool {
    match t {
        DataType::Regclass => true,
        DataType::Custom(name, _) => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.to_ascii_lowercase().starts_with("reg")),
        _ => false,
    }
}

impl Analyser<'_, '_> {
    #[recursive::recursive]
    pub fn expr(&mut self, e: &Expr, cx: Cx) -> Result<Sources, AnalyseError> {
        self.enter()?;
        let r = self.expr_inner(e, cx);
        self.leave();
        r
    }

    fn exprs<'e>(
        &mut self,
        es: impl IntoIterator<Item = &'e Expr>,
        cx: Cx,
    ) -> Result<Sources, AnalyseError> {
        let mut s = Sources::new();
        for e in es {
            s.extend(self.expr(e, cx)?);
        }
        Ok(s)
    }

    /// `e` as a bare column reference (not a whole-row reference), if it is one.
    pub fn bare_column(&mut self, e: &Expr) -> Result<Option<super::ColInfo>, AnalyseError> {
        let parts: Vec<&Ident> = match e {
            Expr::Identifier(i) => vec![i],
            Expr::CompoundIdentifier(p) => p.iter().collect(),
            _ => return Ok(None),
        };
        match self.resolve_parts(&parts)? {
            Resolved::Column(c) => Ok(Some(c)),
            Resolved::WholeRow(_) => Ok(None),
        }
    }

    fn resolve_parts(&self, parts: &[&Ident]) -> Result<Resolved, AnalyseError> {
        let names: Vec<String> = parts.iter().map(|i| fold(i)).collect();
        match names.as_slice() {
            [c] => self.scopes.resolve_unqualified(c),
            [t, c] => Ok(Resolved::Column(self.scopes.resolve_qualified(None, t, c)?)),
            [s, t, c] => Ok(Resolved::Column(self.scopes.resolve_qualified(
                Some(s),
                t,
                c,
            )?)),
            _ => Err(unsupported("column reference with more than three parts")),
        }
    }

    fn column_ref(&mut self, parts: &[&Ident], cx: Cx) -> Result<Sources, AnalyseError> {
        match self.resolve_parts(parts)? {
            Resolved::Column(c) => {
                self.record(&c.sources, cx.clause, cx.place);
                Ok(c.sources)
            }
            Resolved::WholeRow(id) => Ok(self.whole_row(id)),
        }
    }

    fn whole_row(&mut self, id: usize) -> Sources {
        let w = self.scopes.rtes[id].whole_row();
        self.record(&w, Clause::WholeRow, "a whole-row reference");
        w
    }

    /// A subquery used as an expression: its output is a Subquery use.
    pub fn subquery_expr(&mut self, q: &Query) -> Result<Sources, AnalyseError> {
        let out = self.query(q, Role::SubqueryExpr)?;
        let mut all = Sources::new();
        for c in &out.columns {
            self.record(&c.sources, Clause::Subquery, "a subquery");
            all.extend(c.sources.iter().cloned());
        }
        Ok(all)
    }

    fn expr_inner(&mut self, e: &Expr, cx: Cx) -> Result<Sources, AnalyseError> {
        match e {
            Expr::Identifier(i) => self.column_ref(&[i], cx),
            Expr::CompoundIdentifier(parts) => {
                let p: Vec<&Ident> = parts.iter().collect();
                self.column_ref(&p, cx)
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.field_access(root, access_chain, cx)
            }
            Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x)
            | Expr::UnaryOp { expr: x, .. }
            | Expr::Nested(x)
            | Expr::IsJson { expr: x, .. }
            | Expr::IsNormalized { expr: x, .. }
            | Expr::Collate { expr: x, .. }
            | Expr::Extract { expr: x, .. }
            | Expr::Ceil { expr: x, .. }
            | Expr::Floor { expr: x, .. } => self.expr(x, cx),
            Expr::IsDistinctFrom(a, b)
            | Expr::IsNotDistinctFrom(a, b)
            | Expr::AtTimeZone {
                timestamp: a,
                time_zone: b,
            }
            | Expr::Position { expr: a, r#in: b } => self.exprs([a.as_ref(), b.as_ref()], cx),
            Expr::AnyOp {
                left,
                right,
                compare_op,
                ..
            }
            | Expr::AllOp {
                left,
                right,
                compare_op,
            } => {
                self.check_operator(compare_op)?;
                self.exprs([left.as_ref(), right.as_ref()], cx)
            }
            Expr::InList { expr, list, .. } => {
                let mut s = self.expr(expr, cx)?;
                s.extend(self.exprs(list, cx)?);
                Ok(s)
            }
            Expr::InSubquery { expr, subquery, .. } => {
                let mut s = self.expr(expr, cx)?;
                s.extend(self.subquery_expr(subquery)?);
                Ok(s)
            }
            Expr::Between {
                expr, low, high, ..
            } => self.exprs([expr.as_ref(), low.as_ref(), high.as_ref()], cx),
            Expr::BinaryOp { .. } => self.binary_chain(e, cx),
            Expr::Like {
                any,
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                any,
                expr,
                pattern,
                escape_char,
                ..
            } => {
                if *any {
                    return Err(unsupported("LIKE ANY"));
                }
                let mut s = self.exprs([expr.as_ref(), pattern.as_ref()], cx)?;
                if let Some(esc) = escape_char {
                    s.extend(self.expr(esc, cx)?);
                }
                Ok(s)
            }
            Expr::SimilarTo {
                expr,
                pattern,
                escape_char,
                ..
            } => {
                let mut s = self.exprs([expr.as_ref(), pattern.as_ref()], cx)?;
                if let Some(esc) = escape_char {
                    s.extend(self.expr(esc, cx)?);
                }
                Ok(s)
            }
            Expr::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if format.is_some() || !matches!(kind, CastKind::Cast | CastKind::DoubleColon) {
                    return Err(unsupported("cast form"));
                }
                if is_reg_type(data_type) && matches!(expr.as_ref(), Expr::Value(_)) {
                    self.out.literal_sensitive = true;
                }
                self.expr(expr, cx)
            }
            Expr::TypedString(t) => {
                if is_reg_type(&t.data_type) {
                    self.out.literal_sensitive = true;
                }
                Ok(Sources::new())
            }
            Expr::Value(_) => Ok(Sources::new()),
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut s = self.expr(expr, cx)?;
                for x in [substring_from, substring_for].into_iter().flatten() {
                    s.extend(self.expr(x, cx)?);
                }
                Ok(s)
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                let mut s = self.expr(expr, cx)?;
                if let Some(w) = trim_what {
                    s.extend(self.expr(w, cx)?);
                }
                if let Some(cs) = trim_characters {
                    s.extend(self.exprs(cs, cx)?);
                }
                Ok(s)
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                let mut s = self.exprs(
                    [expr.as_ref(), overlay_what.as_ref(), overlay_from.as_ref()],
                    cx,
                )?;
                if let Some(f) = overlay_for {
                    s.extend(self.expr(f, cx)?);
                }
                Ok(s)
            }
            Expr::Function(f) => self.function(f, cx),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut s = Sources::new();
                if let Some(o) = operand {
                    s.extend(self.expr(o, cx)?);
                }
                for w in conditions {
                    s.extend(self.expr(&w.condition, cx)?);
                    s.extend(self.expr(&w.result, cx)?);
                }
                if let Some(x) = else_result {
                    s.extend(self.expr(x, cx)?);
                }
                Ok(s)
            }
            Expr::Exists { subquery, .. } => {
                // EXISTS ignores its subquery's select list (Postgres drops it): only the uses
                // inside the subquery count, not its output.
                self.query(subquery, Role::Derived)?;
                Ok(Sources::new())
            }
            Expr::Subquery(q) => self.subquery_expr(q),
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                let mut s = Sources::new();
                for set in sets {
                    s.extend(self.exprs(set, cx)?);
                }
                Ok(s)
            }
            Expr::Tuple(items) => self.exprs(items, cx),
            Expr::Named { expr, .. } => self.expr(expr, cx),
            Expr::Array(a) => self.exprs(&a.elem, cx),
            Expr::Interval(i) => self.expr(&i.value, cx),
            Expr::QualifiedWildcard(name, _) => {
                let parts = name_parts(name)?;
                let id = match parts.as_slice() {
                    [t] => self.scopes.find_rte(None, t)?,
                    [s, t] => self.scopes.find_rte(Some(s), t)?,
                    _ => return Err(unsupported("qualified wildcard")),
                };
                Ok(self.whole_row(id))
            }
            Expr::JsonAccess { .. }
            | Expr::InUnnest { .. }
            | Expr::RLike { .. }
            | Expr::Convert { .. }
            | Expr::Prefixed { .. }
            | Expr::Struct { .. }
            | Expr::Dictionary(_)
            | Expr::Map(_)
            | Expr::MatchAgainst { .. }
            | Expr::Wildcard(_)
            | Expr::OuterJoin(_)
            | Expr::Prior(_)
            | Expr::Lambda(_)
            | Expr::MemberOf(_) => Err(unsupported("expression kind")),
        }
    }

    /// Binary operators, walked iteratively along both sides so that long `a OR b OR ...`
    /// chains do not grow the stack.
    fn binary_chain(&mut self, e: &Expr, cx: Cx) -> Result<Sources, AnalyseError> {
        let mut stack = vec![e];
        let mut s = Sources::new();
        while let Some(x) = stack.pop() {
            match x {
                Expr::BinaryOp { left, op, right } => {
                    self.check_operator(op)?;
                    stack.push(right);
                    stack.push(left);
                }
                other => s.extend(self.expr(other, cx)?),
            }
        }
        Ok(s)
    }

    fn check_operator(&mut self, op: &BinaryOperator) -> Result<(), AnalyseError> {
        match op {
            BinaryOperator::PGCustomBinaryOperator(parts) => {
                // OPERATOR(schema.op): only pg_catalog operators are known to be built in.
                match parts.as_slice() {
                    [schema, _] if schema.eq_ignore_ascii_case("pg_catalog") => Ok(()),
                    [_] => Ok(()),
                    _ => {
                        self.need(
                            Grant::ProceduralCode,
                            "a user-defined operator (its function is opaque)",
                        );
                        Ok(())
                    }
                }
            }
            BinaryOperator::DuckIntegerDivide
            | BinaryOperator::MyIntegerDivide
            | BinaryOperator::Custom(_)
            | BinaryOperator::Spaceship
            | BinaryOperator::Match
            | BinaryOperator::Regexp
            | BinaryOperator::Assignment
            | BinaryOperator::Xor
            | BinaryOperator::Glob => Err(unsupported("operator")),
            _ => Ok(()),
        }
    }

    /// `t.a[1]`, `(t).col`, `(expr).field`, `arr[1:2]`.
    fn field_access(
        &mut self,
        root: &Expr,
        chain: &[AccessExpr],
        cx: Cx,
    ) -> Result<Sources, AnalyseError> {
        // Leading `.name` parts on an identifier root form a column name.
        let mut rest = chain;
        let mut sources = match root {
            Expr::Identifier(i) => {
                let mut parts = vec![i];
                while let Some(AccessExpr::Dot(Expr::Identifier(n))) = rest.first() {
                    parts.push(n);
                    rest = &rest[1..];
                }
                self.column_ref(&parts, cx)?
            }
            Expr::Nested(inner) => match (inner.as_ref(), rest.first()) {
                (Expr::Identifier(t), Some(AccessExpr::Dot(Expr::Identifier(c)))) => {
                    // `(t).c`: a column of the entry `t`, or a field of the column `t`.
                    match self.scopes.resolve_unqualified(&fold(t))? {
                        Resolved::WholeRow(id) => {
                            rest = &rest[1..];
                            let col = fold(c);
                            let rte = &self.scopes.rtes[id];
                            let found: Vec<_> = rte
                                .columns
                                .iter()
                                .filter(|x| x.name == col)
                                .cloned()
                                .collect();
                            match found.as_slice() {
                                [one] => {
                                    self.record(&one.sources, cx.clause, cx.place);
                                    one.sources.clone()
                                }
                                [] => return Err(AnalyseError::UnknownColumn(col)),
                                _ => return Err(AnalyseError::Ambiguous(col)),
                            }
                        }
                        Resolved::Column(c) => {
                            self.record(&c.sources, cx.clause, cx.place);
                            c.sources
                        }
                    }
                }
                _ => self.expr(root, cx)?,
            },
            other => self.expr(other, cx)?,
        };
        for a in rest {
            match a {
                AccessExpr::Dot(Expr::Identifier(_)) => {}
                AccessExpr::Dot(_) => return Err(unsupported("field access")),
                AccessExpr::Subscript(Subscript::Index { index }) => {
                    sources.extend(self.expr(index, cx)?);
                }
                AccessExpr::Subscript(Subscript::Slice {
                    lower_bound,
                    upper_bound,
                    stride,
                }) => {
                    for b in [lower_bound, upper_bound, stride].into_iter().flatten() {
                        sources.extend(self.expr(b, cx)?);
                    }
                }
            }
        }
        Ok(sources)
    }

    /// Check a function name against the function rules (grants recorded on the analysis).
    pub fn check_function(&mut self, parts: &[String]) -> Result<(), AnalyseError> {
        let (schema, name) = match parts {
            [n] => (None, n.as_str()),
            [s, n] => (Some(s.as_str()), n.as_str()),
            _ => return Err(unsupported("function name")),
        };
        match classify(self.env.catalog, schema, name) {
            FunctionClass::Builtin => Ok(()),
            FunctionClass::DeniedBuiltin => {
                self.need(
                    Grant::ProceduralCode,
                    format!("calling {name}(), which runs SQL or reads data, files or other sessions by name"),
                );
                Ok(())
            }
            FunctionClass::UserDefined(q) => {
                self.need(
                    Grant::ProceduralCode,
                    format!("calling user-defined function {q} (its body is opaque)"),
                );
                Ok(())
            }
            FunctionClass::Unknown => Err(AnalyseError::UnknownFunction(parts.join("."))),
        }
    }

    fn function(&mut self, f: &Function, cx: Cx) -> Result<Sources, AnalyseError> {
        if f.uses_odbc_syntax || !matches!(f.parameters, FunctionArguments::None) {
            return Err(unsupported("function syntax"));
        }
        let parts = name_parts(&f.name)?;
        let lname = parts.last().cloned().unwrap_or_default();
        let constructor = parts.len() == 1 && (lname == "row" || lname == "array");
        if !constructor {
            self.check_function(&parts)?;
        }
        if lname == "set_config" {
            self.set_config(f)?;
        }
        let mut sources = Sources::new();
        match &f.args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(q) => sources.extend(self.subquery_expr(q)?),
            FunctionArguments::List(list) => {
                for arg in &list.args {
                    let a = match arg {
                        FunctionArg::Unnamed(a) => a,
                        FunctionArg::Named { arg, .. } => arg,
                        FunctionArg::ExprNamed { .. } => {
                            return Err(unsupported("named argument form"))
                        }
                    };
                    match a {
                        FunctionArgExpr::Expr(e) => sources.extend(self.expr(e, cx)?),
                        FunctionArgExpr::Wildcard => {}
                        FunctionArgExpr::QualifiedWildcard(n) => {
                            let parts = name_parts(n)?;
                            let id = match parts.as_slice() {
                                [t] => self.scopes.find_rte(None, t)?,
                                [s, t] => self.scopes.find_rte(Some(s), t)?,
                                _ => return Err(unsupported("qualified wildcard")),
                            };
                            sources.extend(self.whole_row(id));
                        }
                        FunctionArgExpr::WildcardWithOptions(_) => {
                            return Err(unsupported("* with options"))
                        }
                    }
                }
                for clause in &list.clauses {
                    match clause {
                        FunctionArgumentClause::OrderBy(items) => {
                            for i in items {
                                self.expr(
                                    &i.expr,
                                    Cx::new(Clause::OrderBy, "ORDER BY in an aggregate"),
                                )?;
                            }
                        }
                        FunctionArgumentClause::IgnoreOrRespectNulls(_) => {}
                        _ => return Err(unsupported("function argument clause")),
                    }
                }
            }
        }
        for i in &f.within_group {
            self.expr(&i.expr, Cx::new(Clause::OrderBy, "WITHIN GROUP"))?;
        }
        if let Some(filter) = &f.filter {
            self.expr(filter, Cx::new(Clause::Predicate, "FILTER"))?;
        }
        match &f.over {
            None | Some(WindowType::NamedWindow(_)) => {}
            Some(WindowType::WindowSpec(spec)) => self.window_spec(spec)?,
        }
        Ok(sources)
    }

    pub fn window_spec(&mut self, spec: &WindowSpec) -> Result<(), AnalyseError> {
        let cx = Cx::new(Clause::Window, "a window clause");
        self.exprs(&spec.partition_by, cx)?;
        for o in &spec.order_by {
            self.expr(&o.expr, cx)?;
        }
        if let Some(frame) = &spec.window_frame {
            for b in std::iter::once(&frame.start_bound).chain(frame.end_bound.as_ref()) {
                if let WindowFrameBound::Preceding(Some(x)) | WindowFrameBound::Following(Some(x)) =
                    b
                {
                    self.expr(x, cx)?;
                }
            }
        }
        Ok(())
    }

    /// `set_config(name, value, is_local)`: the name must be a literal; pinned parameters are
    /// refused and session-control ones need the grant.
    fn set_config(&mut self, f: &Function) -> Result<(), AnalyseError> {
        self.out.literal_sensitive = true;
        let FunctionArguments::List(list) = &f.args else {
            return Err(unsupported("set_config call"));
        };
        let first = list.args.first().and_then(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
                Value::SingleQuotedString(s) => Some(s.to_ascii_lowercase()),
                _ => None,
            },
            _ => None,
        });
        let Some(name) = first else {
            return Err(unsupported("set_config with a computed parameter name"));
        };
        if PINNED_PARAMETERS.contains(&name.as_str()) {
            self.refuse(format!("parameter {name} is pinned by the proxy"));
        } else if SESSION_CONTROL_PARAMETERS.contains(&name.as_str()) {
            self.need(
                Grant::SessionControl,
                format!("changing {name} with set_config()"),
            );
        }
        Ok(())
    }
}

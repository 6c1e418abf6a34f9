//! Queries: WITH, set operations, SELECT (FROM, WHERE, select list, GROUP BY, HAVING,
//! windows, DISTINCT, ORDER BY, LIMIT), VALUES, and FROM items (tables, views, CTE
//! references, derived tables, table functions, joins).

use sqlparser::ast::{
    Distinct, Expr, GroupByExpr, LimitClause, NamedWindowExpr, ObjectName, OrderBy, OrderByKind,
    Query, Select, SelectFlavor, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator,
    SetQuantifier, Spanned, TableAlias, Value, Values, WildcardAdditionalOptions, With,
};

use crate::engine::report::Clause;

use super::expr::Cx;
use super::naming::figure_colname;
use super::scope::{ColInfo, Level, Sources};
use super::{fold, name_idents, name_parts, AnalyseError, Analyser, ByteRange, CteDef};

/// What the consumer of a query does with its output columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The statement's own result, returned to the client (maskable).
    Top,
    /// A derived table, CTE or view body: output columns pass their lineage through.
    Derived,
    /// A subquery used as an expression.
    SubqueryExpr,
    /// The source of an INSERT.
    WriteSource,
    /// The query of CREATE VIEW / TABLE AS / SELECT INTO.
    Ddl,
}

/// One select-list item of a SELECT, for rewriting the top-level output.
#[derive(Debug, Clone)]
pub enum ItemOut {
    /// A bare column reference (with its alias): the item's text.
    Bare(ByteRange),
    /// `*` / `t.*`: the item's text and (qualifier, column) per expanded column.
    Star {
        range: ByteRange,
        cols: Vec<(Option<String>, ColInfo)>,
    },
    /// Any other expression.
    Expr,
}

/// The output of a query: its columns, and for a plain SELECT, its items.
#[derive(Debug, Clone, Default)]
pub struct RelOut {
    pub columns: Vec<ColInfo>,
    pub items: Option<Vec<ItemOut>>,
}

fn unsupported(what: &str) -> AnalyseError {
    AnalyseError::Unsupported(what.to_owned())
}

pub(super) fn is_plain_wildcard(o: &WildcardAdditionalOptions) -> bool {
    o.opt_ilike.is_none()
        && o.opt_exclude.is_none()
        && o.opt_except.is_none()
        && o.opt_replace.is_none()
        && o.opt_rename.is_none()
        && o.opt_alias.is_none()
}

/// Rename columns by an alias column list (`AS t(a, b)`); more names than columns is an error.
pub(super) fn apply_alias_columns(
    mut cols: Vec<ColInfo>,
    alias: Option<&TableAlias>,
) -> Result<Vec<ColInfo>, AnalyseError> {
    if let Some(a) = alias {
        if a.columns.len() > cols.len() {
            return Err(unsupported("more column aliases than columns"));
        }
        for (c, def) in cols.iter_mut().zip(&a.columns) {
            if def.data_type.is_some() {
                return Err(unsupported("typed column alias"));
            }
            c.name = fold(&def.name);
        }
    }
    Ok(cols)
}

/// The integer of an ordinal (`ORDER BY 2`), if the expression is one.
fn ordinal(e: &Expr) -> Option<Result<usize, AnalyseError>> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(
                n.parse::<usize>()
                    .map_err(|_| unsupported("non-integer constant in ORDER BY / GROUP BY")),
            ),
            _ => None,
        },
        _ => None,
    }
}

impl<'e> Analyser<'e, '_> {
    /// Analyse a query; the caller decides what its output columns mean (see [`Role`]).
    #[recursive::recursive]
    pub fn query(&mut self, q: &Query, role: Role) -> Result<RelOut, AnalyseError> {
        self.enter()?;
        let r = self.query_inner(q, role);
        self.leave();
        r
    }

    fn query_inner(&mut self, q: &Query, role: Role) -> Result<RelOut, AnalyseError> {
        if q.for_clause.is_some()
            || q.settings.is_some()
            || q.format_clause.is_some()
            || !q.pipe_operators.is_empty()
        {
            return Err(unsupported("non-Postgres query clause"));
        }
        let pushed = match &q.with {
            Some(with) => {
                self.with_clause(with)?;
                true
            }
            None => false,
        };
        let out = match q.body.as_ref() {
            SetExpr::Select(s) => self.select(s, q.order_by.as_ref(), role)?,
            body => {
                let out = self.set_expr(body, role)?;
                if let Some(ob) = &q.order_by {
                    self.order_by(ob, &out.columns, false)?;
                }
                out
            }
        };
        self.limits(q)?;
        if pushed {
            self.ctes.pop();
        }
        Ok(out)
    }

    fn limits(&mut self, q: &Query) -> Result<(), AnalyseError> {
        let cx = Cx::new(Clause::Limit, "LIMIT/OFFSET");
        match &q.limit_clause {
            None => {}
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if !limit_by.is_empty() {
                    return Err(unsupported("LIMIT BY"));
                }
                if let Some(l) = limit {
                    self.expr(l, cx)?;
                }
                if let Some(o) = offset {
                    self.expr(&o.value, cx)?;
                }
            }
            Some(LimitClause::OffsetCommaLimit { .. }) => return Err(unsupported("LIMIT a, b")),
        }
        if let Some(f) = &q.fetch {
            if f.percent {
                return Err(unsupported("FETCH PERCENT"));
            }
            if let Some(qty) = &f.quantity {
                self.expr(qty, cx)?;
            }
        }
        for lock in &q.locks {
            if lock.of.is_some() {
                // FOR UPDATE OF t names a FROM item; nothing is read through it.
            }
        }
        Ok(())
    }

    /// WITH [RECURSIVE]: each CTE sees the ones before it (and itself when recursive).
    fn with_clause(&mut self, with: &With) -> Result<(), AnalyseError> {
        self.ctes.push(Vec::new());
        for cte in &with.cte_tables {
            if cte.from.is_some() {
                return Err(unsupported("CTE FROM"));
            }
            let name = fold(&cte.alias.name);
            let alias_cols: Vec<String> = cte.alias.columns.iter().map(|c| fold(&c.name)).collect();
            if cte.alias.columns.iter().any(|c| c.data_type.is_some()) {
                return Err(unsupported("typed CTE column"));
            }
            let columns = if with.recursive && self.refers_to_self(&cte.query) {
                self.recursive_cte(&name, &alias_cols, &cte.query)?
            } else {
                let out = self.query(&cte.query, Role::Derived)?;
                rename(out.columns, &alias_cols)?
            };
            if let Some(scope) = self.ctes.last_mut() {
                scope.push(CteDef { name, columns });
            }
        }
        Ok(())
    }

    /// A recursive CTE is a set operation whose right branch reads the CTE itself: analyse the
    /// non-recursive branch, then the recursive one until the lineage stops growing.
    fn recursive_cte(
        &mut self,
        name: &str,
        alias_cols: &[String],
        q: &Query,
    ) -> Result<Vec<ColInfo>, AnalyseError> {
        let SetExpr::SetOperation {
            left,
            op: SetOperator::Union,
            set_quantifier,
            right,
        } = q.body.as_ref()
        else {
            return Err(unsupported("recursive CTE that is not a UNION"));
        };
        if q.order_by.is_some() || q.limit_clause.is_some() || q.with.is_some() {
            return Err(unsupported("recursive CTE with ORDER BY/LIMIT/WITH"));
        }
        let base = self.set_expr(left, Role::Derived)?;
        let mut columns = rename(base.columns, alias_cols)?;
        for c in &mut columns {
            c.direct = None;
        }
        let dedup = !matches!(set_quantifier, SetQuantifier::All);
        for _ in 0..8 {
            if let Some(scope) = self.ctes.last_mut() {
                scope.retain(|c| c.name != name);
                scope.push(CteDef {
                    name: name.to_owned(),
                    columns: columns.clone(),
                });
            }
            let rec = self.set_expr(right, Role::Derived)?;
            if rec.columns.len() != columns.len() {
                return Err(unsupported("recursive CTE branches differ in width"));
            }
            let mut grew = false;
            for (c, r) in columns.iter_mut().zip(&rec.columns) {
                let before = c.sources.len();
                c.sources.extend(r.sources.iter().cloned());
                grew |= c.sources.len() != before;
            }
            if dedup {
                for c in columns.clone() {
                    self.record(&c.sources, Clause::Distinct, "UNION in a recursive CTE");
                }
            }
            if !grew {
                if let Some(scope) = self.ctes.last_mut() {
                    scope.retain(|c| c.name != name);
                }
                return Ok(columns);
            }
        }
        Err(unsupported("recursive CTE lineage does not converge"))
    }

    fn refers_to_self(&self, q: &Query) -> bool {
        // A recursive CTE's body is a UNION; Postgres treats WITH RECURSIVE entries that do
        // not reference themselves as ordinary CTEs, which the ordinary path handles too. The
        // recursive path is only needed (and only valid) for UNION bodies.
        matches!(
            q.body.as_ref(),
            SetExpr::SetOperation {
                op: SetOperator::Union,
                ..
            }
        )
    }

    #[recursive::recursive]
    pub fn set_expr(&mut self, body: &SetExpr, role: Role) -> Result<RelOut, AnalyseError> {
        match body {
            SetExpr::Select(s) => self.select(s, None, role),
            SetExpr::Query(q) => self.query(q, role),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let l = self.set_expr(left, Role::Derived)?;
                let r = self.set_expr(right, Role::Derived)?;
                if l.columns.len() != r.columns.len() {
                    return Err(unsupported("set operation branches differ in width"));
                }
                let compares = match (op, set_quantifier) {
                    (SetOperator::Union, SetQuantifier::All) => false,
                    (
                        SetOperator::Union | SetOperator::Intersect | SetOperator::Except,
                        SetQuantifier::All | SetQuantifier::Distinct | SetQuantifier::None,
                    ) => true,
                    _ => return Err(unsupported("set operation")),
                };
                let place = match op {
                    SetOperator::Union => "UNION",
                    SetOperator::Intersect => "INTERSECT",
                    _ => "EXCEPT",
                };
                if compares {
                    for c in l.columns.iter().chain(&r.columns) {
                        self.record(&c.sources, Clause::Distinct, place);
                    }
                }
                let columns = l
                    .columns
                    .iter()
                    .zip(&r.columns)
                    .map(|(a, b)| {
                        let mut s = a.sources.clone();
                        s.extend(b.sources.iter().cloned());
                        ColInfo::computed(a.name.clone(), s)
                    })
                    .collect();
                Ok(RelOut {
                    columns,
                    items: None,
                })
            }
            SetExpr::Values(v) => self.values(v),
            SetExpr::Insert(stmt) | SetExpr::Update(stmt) | SetExpr::Delete(stmt) => {
                if role != Role::Derived {
                    return Err(unsupported("data-modifying statement in this position"));
                }
                self.dml_in_cte(stmt)
            }
            SetExpr::Merge(_) => Err(unsupported("MERGE in a CTE")),
            SetExpr::Table(_) => Err(unsupported("TABLE command")),
        }
    }

    fn values(&mut self, v: &Values) -> Result<RelOut, AnalyseError> {
        if v.explicit_row {
            return Err(unsupported("VALUES ROW(...)"));
        }
        let width = v.rows.first().map(|r| r.len()).unwrap_or(0);
        let mut cols: Vec<Sources> = vec![Sources::new(); width];
        let cx = Cx::new(Clause::FunctionArg, "VALUES");
        for row in &v.rows {
            if row.len() != width {
                return Err(unsupported("VALUES rows differ in width"));
            }
            for (i, e) in row.iter().enumerate() {
                let s = self.expr(e, cx)?;
                cols[i].extend(s);
            }
        }
        Ok(RelOut {
            columns: cols
                .into_iter()
                .enumerate()
                .map(|(i, s)| ColInfo::computed(format!("column{}", i + 1), s))
                .collect(),
            items: None,
        })
    }

    fn select(
        &mut self,
        s: &Select,
        order_by: Option<&OrderBy>,
        role: Role,
    ) -> Result<RelOut, AnalyseError> {
        if !s.optimizer_hints.is_empty()
            || s.select_modifiers.is_some()
            || s.top.is_some()
            || s.exclude.is_some()
            || !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || s.value_table_mode.is_some()
            || s.flavor != SelectFlavor::Standard
        {
            return Err(unsupported("non-Postgres SELECT clause"));
        }
        if s.into.is_some() && role != Role::Ddl {
            return Err(unsupported("SELECT INTO in this position"));
        }
        self.scopes.push_level(Level {
            nodes: Vec::new(),
            hidden: true,
        });
        for twj in &s.from {
            let node = self.from_item(twj)?;
            if let Some(l) = self.scopes.current_mut() {
                l.nodes.push(node);
            }
        }
        if let Some(l) = self.scopes.current_mut() {
            l.hidden = false;
        }
        if let Some(w) = &s.selection {
            self.expr(w, Cx::new(Clause::Predicate, "WHERE"))?;
        }
        let (columns, items) = self.projection(&s.projection)?;
        self.group_by(&s.group_by, &columns)?;
        if let Some(h) = &s.having {
            self.expr(h, Cx::new(Clause::Predicate, "HAVING"))?;
        }
        if let Some(q) = &s.qualify {
            self.expr(q, Cx::new(Clause::Predicate, "QUALIFY"))?;
        }
        for w in &s.named_window {
            match &w.1 {
                NamedWindowExpr::NamedWindow(_) => {}
                NamedWindowExpr::WindowSpec(spec) => self.window_spec(spec)?,
            }
        }
        match &s.distinct {
            None | Some(Distinct::All) => {}
            Some(Distinct::Distinct) => {
                for c in &columns {
                    self.record(&c.sources, Clause::Distinct, "DISTINCT");
                }
            }
            Some(Distinct::On(exprs)) => {
                for e in exprs {
                    self.output_or_input(e, &columns, Cx::new(Clause::DistinctOn, "DISTINCT ON"))?;
                }
            }
        }
        if let Some(ob) = order_by {
            self.order_by(ob, &columns, true)?;
        }
        self.scopes.pop_level();
        Ok(RelOut {
            columns,
            items: Some(items),
        })
    }

    /// A select list (also RETURNING): bare column references pass their lineage through;
    /// any other expression is a use where it is computed.
    pub fn projection(
        &mut self,
        items: &[SelectItem],
    ) -> Result<(Vec<ColInfo>, Vec<ItemOut>), AnalyseError> {
        let mut columns = Vec::new();
        let mut outs = Vec::new();
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let (c, o) = self.select_expr(e, None)?;
                    columns.push(c);
                    outs.push(o);
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let (c, o) = self.select_expr(expr, Some(alias))?;
                    columns.push(c);
                    outs.push(o);
                }
                SelectItem::ExprWithAliases { .. } => return Err(unsupported("multiple aliases")),
                SelectItem::Wildcard(opts) => {
                    if !is_plain_wildcard(opts) {
                        return Err(unsupported("* with options"));
                    }
                    let range = self.range(opts.wildcard_token.0.span)?;
                    let expanded = self.scopes.expand_star()?;
                    let cols: Vec<(Option<String>, ColInfo)> = expanded
                        .into_iter()
                        .map(|(rte, c)| {
                            (rte.and_then(|id| self.scopes.rtes[id].refname.clone()), c)
                        })
                        .collect();
                    columns.extend(cols.iter().map(|(_, c)| c.clone()));
                    outs.push(ItemOut::Star { range, cols });
                }
                SelectItem::QualifiedWildcard(kind, opts) => {
                    if !is_plain_wildcard(opts) {
                        return Err(unsupported("t.* with options"));
                    }
                    let SelectItemQualifiedWildcardKind::ObjectName(name) = kind else {
                        return Err(unsupported("expression.*"));
                    };
                    let id = self.rte_by_name(name)?;
                    let rte = &self.scopes.rtes[id];
                    if rte.opaque {
                        return Err(unsupported(
                            "t.* over a table function with unknown columns",
                        ));
                    }
                    let q = rte.refname.clone();
                    let cols: Vec<(Option<String>, ColInfo)> =
                        rte.columns.iter().map(|c| (q.clone(), c.clone())).collect();
                    let first = name_idents(name)?
                        .first()
                        .map(|i| i.span)
                        .ok_or_else(|| unsupported("empty name"))?;
                    let range = self.range(first.union(&opts.wildcard_token.0.span))?;
                    columns.extend(cols.iter().map(|(_, c)| c.clone()));
                    outs.push(ItemOut::Star { range, cols });
                }
            }
        }
        Ok((columns, outs))
    }

    fn select_expr(
        &mut self,
        e: &Expr,
        alias: Option<&sqlparser::ast::Ident>,
    ) -> Result<(ColInfo, ItemOut), AnalyseError> {
        // `x ISNULL` / `x NOTNULL` are postfix operators to Postgres; sqlparser may read the
        // keyword as an alias.
        if alias.is_some_and(|a| {
            a.quote_style.is_none()
                && (a.value.eq_ignore_ascii_case("isnull")
                    || a.value.eq_ignore_ascii_case("notnull"))
        }) {
            return Err(unsupported("ISNULL / NOTNULL after a select item"));
        }
        let name = alias.map(fold).unwrap_or_else(|| figure_colname(e));
        if let Some(mut c) = self.bare_column(e)? {
            c.name = name;
            let span = match alias {
                Some(a) => e.span().union(&a.span),
                None => e.span(),
            };
            let range = self.range(span)?;
            return Ok((c, ItemOut::Bare(range)));
        }
        let sources = self.expr(
            e,
            Cx::new(Clause::FunctionArg, "an expression in the select list"),
        )?;
        Ok((ColInfo::computed(name, sources), ItemOut::Expr))
    }

    /// The entry `t` / `schema.t` of a `t.*`.
    pub(super) fn rte_by_name(&self, name: &ObjectName) -> Result<usize, AnalyseError> {
        let parts = name_parts(name)?;
        match parts.as_slice() {
            [t] => self.scopes.find_rte(None, t),
            [s, t] => self.scopes.find_rte(Some(s), t),
            _ => Err(unsupported("qualified wildcard name")),
        }
    }

    fn group_by(&mut self, g: &GroupByExpr, outputs: &[ColInfo]) -> Result<(), AnalyseError> {
        let GroupByExpr::Expressions(exprs, modifiers) = g else {
            return Err(unsupported("GROUP BY ALL"));
        };
        if !modifiers.is_empty() {
            return Err(unsupported("GROUP BY modifiers"));
        }
        let cx = Cx::new(Clause::GroupBy, "GROUP BY");
        for e in exprs {
            if let Some(n) = ordinal(e) {
                let c = self.output_at(outputs, n?)?;
                self.out.literal_sensitive = true;
                self.record(&c, cx.clause, cx.place);
                continue;
            }
            // GROUP BY prefers input columns; an output name is used only when no input
            // column has it.
            if let Expr::Identifier(i) = e {
                let n = fold(i);
                if self.scopes.resolve_unqualified(&n).is_err() {
                    if let Some(s) = self.output_named(outputs, &n) {
                        self.record(&s, cx.clause, cx.place);
                        continue;
                    }
                }
            }
            self.expr(e, cx)?;
        }
        Ok(())
    }

    fn output_at(&self, outputs: &[ColInfo], n: usize) -> Result<Sources, AnalyseError> {
        n.checked_sub(1)
            .and_then(|i| outputs.get(i))
            .map(|c| c.sources.clone())
            .ok_or_else(|| unsupported("position out of range in ORDER BY / GROUP BY"))
    }

    fn output_named(&self, outputs: &[ColInfo], name: &str) -> Option<Sources> {
        let matches: Vec<&ColInfo> = outputs.iter().filter(|c| c.name == name).collect();
        if matches.is_empty() {
            return None;
        }
        Some(
            matches
                .iter()
                .flat_map(|c| c.sources.iter().cloned())
                .collect(),
        )
    }

    /// ORDER BY / DISTINCT ON item: an ordinal or a bare output name refers to an output
    /// column; anything else is an expression over the input.
    fn output_or_input(
        &mut self,
        e: &Expr,
        outputs: &[ColInfo],
        cx: Cx,
    ) -> Result<(), AnalyseError> {
        if let Some(n) = ordinal(e) {
            let s = self.output_at(outputs, n?)?;
            self.out.literal_sensitive = true;
            self.record(&s, cx.clause, cx.place);
            return Ok(());
        }
        if let Expr::Identifier(i) = e {
            if let Some(s) = self.output_named(outputs, &fold(i)) {
                self.record(&s, cx.clause, cx.place);
                return Ok(());
            }
        }
        self.expr(e, cx)?;
        Ok(())
    }

    fn order_by(
        &mut self,
        ob: &OrderBy,
        outputs: &[ColInfo],
        input_visible: bool,
    ) -> Result<(), AnalyseError> {
        if ob.interpolate.is_some() {
            return Err(unsupported("INTERPOLATE"));
        }
        let OrderByKind::Expressions(items) = &ob.kind else {
            return Err(unsupported("ORDER BY ALL"));
        };
        let cx = Cx::new(Clause::OrderBy, "ORDER BY");
        for item in items {
            if item.with_fill.is_some() {
                return Err(unsupported("WITH FILL"));
            }
            if !input_visible {
                // ORDER BY of a set operation may only name output columns.
                let named = match &item.expr {
                    Expr::Identifier(i) => self.output_named(outputs, &fold(i)),
                    e => match ordinal(e) {
                        Some(n) => {
                            self.out.literal_sensitive = true;
                            Some(self.output_at(outputs, n?)?)
                        }
                        None => None,
                    },
                };
                let s =
                    named.ok_or_else(|| unsupported("ORDER BY expression on a set operation"))?;
                self.record(&s, cx.clause, cx.place);
                continue;
            }
            self.output_or_input(&item.expr, outputs, cx)?;
        }
        Ok(())
    }
}

fn rename(mut cols: Vec<ColInfo>, names: &[String]) -> Result<Vec<ColInfo>, AnalyseError> {
    if names.len() > cols.len() {
        return Err(unsupported("more CTE column names than columns"));
    }
    for (c, n) in cols.iter_mut().zip(names) {
        c.name = n.clone();
    }
    Ok(cols)
}

/// Relations in these schemas are used as they are (their view definitions are Postgres
/// internals); the policy protects the ones that expose values.
pub fn is_system_schema(schema: &str) -> bool {
    schema == "pg_catalog" || schema == "information_schema"
}

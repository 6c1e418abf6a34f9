//! FROM items: tables, views (through their definitions), CTE references, derived tables,
//! table functions, joins with their ON / USING / NATURAL conditions and LATERAL visibility,
//! and the recognition of scans already wrapped in the policy's row filter.

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, GroupByExpr, Join, JoinConstraint, JoinOperator,
    ObjectName, Query, SelectItem, SetExpr, TableAlias, TableFactor, TableWithJoins,
};

use crate::catalog::{Relation, RelationKind};
use crate::engine::report::Clause;

use super::expr::Cx;
use super::query::{apply_alias_columns, is_plain_wildcard, is_system_schema, Role};
use super::scope::{ColInfo, ColumnKey, Level, Node, Rte, RteKind, Sources};
use super::{fold, name_idents, name_parts, AnalyseError, Analyser, Scan};

fn unsupported(what: &str) -> AnalyseError {
    AnalyseError::Unsupported(what.to_owned())
}

impl<'e> Analyser<'e, '_> {
    /// A FROM item with its joins. Each join's right side sees the left side when LATERAL;
    /// its ON condition sees exactly the two sides (and outer query levels).
    #[recursive::recursive]
    pub fn from_item(&mut self, twj: &TableWithJoins) -> Result<Node, AnalyseError> {
        let mut node = self.table_factor(&twj.relation)?;
        for join in &twj.joins {
            node = self.join(node, join)?;
        }
        Ok(node)
    }

    fn join(&mut self, left: Node, join: &Join) -> Result<Node, AnalyseError> {
        if join.global {
            return Err(unsupported("GLOBAL JOIN"));
        }
        // The in-progress left side is visible to a LATERAL right side.
        if let Some(l) = self.scopes.current_mut() {
            l.nodes.push(left);
        }
        let right = self.table_factor(&join.relation);
        let left = self
            .scopes
            .current_mut()
            .and_then(|l| l.nodes.pop())
            .ok_or_else(|| unsupported("join scope"))?;
        let right = right?;
        #[derive(PartialEq)]
        enum Side {
            Inner,
            Left,
            Right,
            Full,
        }
        let (constraint, side) = match &join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (c, Side::Inner),
            JoinOperator::CrossJoin(c) => (c, Side::Inner),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (c, Side::Left),
            JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (c, Side::Right),
            JoinOperator::FullOuter(c) => (c, Side::Full),
            _ => return Err(unsupported("join type")),
        };
        let names: Vec<String> = match constraint {
            JoinConstraint::None => Vec::new(),
            JoinConstraint::On(e) => {
                let hidden_before = self.scopes.current_mut().map(|l| l.hidden);
                if let Some(l) = self.scopes.current_mut() {
                    l.hidden = true;
                }
                self.scopes.push_level(Level {
                    nodes: vec![left.clone(), right.clone()],
                    hidden: false,
                });
                let r = self.expr(e, Cx::new(Clause::Join, "JOIN ... ON"));
                self.scopes.pop_level();
                if let (Some(l), Some(h)) = (self.scopes.current_mut(), hidden_before) {
                    l.hidden = h;
                }
                r?;
                Vec::new()
            }
            JoinConstraint::Using(cols) => cols
                .iter()
                .map(|c| match name_parts(c)?.as_slice() {
                    [n] => Ok(n.clone()),
                    _ => Err(unsupported("qualified USING column")),
                })
                .collect::<Result<_, _>>()?,
            JoinConstraint::Natural => {
                let l: Vec<String> = self
                    .scopes
                    .expand_node(&left)?
                    .into_iter()
                    .map(|(_, c)| c.name)
                    .collect();
                let r: Vec<String> = self
                    .scopes
                    .expand_node(&right)?
                    .into_iter()
                    .map(|(_, c)| c.name)
                    .collect();
                let mut common: Vec<String> = Vec::new();
                for n in l {
                    if r.contains(&n) && !common.contains(&n) {
                        common.push(n);
                    }
                }
                common
            }
        };
        let place = if matches!(constraint, JoinConstraint::Natural) {
            "NATURAL JOIN"
        } else {
            "JOIN ... USING"
        };
        let mut merged = Vec::new();
        for n in names {
            let lc = self.scopes.side_column(&left, &n)?;
            let rc = self.scopes.side_column(&right, &n)?;
            self.record(&lc.sources, Clause::Join, place);
            self.record(&rc.sources, Clause::Join, place);
            let mut sources = lc.sources.clone();
            sources.extend(rc.sources.iter().cloned());
            let direct = match side {
                Side::Inner | Side::Left => lc.direct.clone(),
                Side::Right => rc.direct.clone(),
                Side::Full => None,
            };
            merged.push(ColInfo {
                name: n,
                sources,
                direct,
            });
        }
        Ok(Node::Join {
            left: Box::new(left),
            right: Box::new(right),
            merged,
        })
    }

    /// Run `f` with the current level's sibling FROM items visible (LATERAL).
    fn with_lateral<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, AnalyseError>,
    ) -> Result<T, AnalyseError> {
        let before = self.scopes.current_mut().map(|l| l.hidden);
        if let Some(l) = self.scopes.current_mut() {
            l.hidden = false;
        }
        let r = f(self);
        if let (Some(l), Some(h)) = (self.scopes.current_mut(), before) {
            l.hidden = h;
        }
        r
    }

    #[recursive::recursive]
    fn table_factor(&mut self, tf: &TableFactor) -> Result<Node, AnalyseError> {
        match tf {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_hints,
            } => {
                if !with_hints.is_empty()
                    || version.is_some()
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || !index_hints.is_empty()
                {
                    return Err(unsupported("non-Postgres table modifier"));
                }
                if let Some(a) = args {
                    if a.settings.is_some() {
                        return Err(unsupported("table function settings"));
                    }
                    return self.function_factor(name, &a.args, alias.as_ref(), *with_ordinality);
                }
                if *with_ordinality {
                    return Err(unsupported("WITH ORDINALITY on a table"));
                }
                self.relation_factor(name, alias.as_ref(), sample.is_some())
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                sample,
            } => {
                if sample.is_some() {
                    return Err(unsupported("TABLESAMPLE on a subquery"));
                }
                if let Some(rel) = self.filtered_scan(subquery)? {
                    let cols = self.relation_columns(rel, None);
                    let refname = alias.as_ref().map(|a| fold(&a.name));
                    let columns = apply_alias_columns(cols, alias.as_ref())?;
                    let id = self.scopes.add_rte(Rte {
                        refname,
                        schema: None,
                        columns,
                        opaque: false,
                        system_columns: false,
                        kind: RteKind::FilteredScan(rel.name.clone()),
                    });
                    return Ok(Node::Rte(id));
                }
                let out = if *lateral {
                    self.with_lateral(|a| a.query(subquery, Role::Derived))?
                } else {
                    self.query(subquery, Role::Derived)?
                };
                let columns = apply_alias_columns(out.columns, alias.as_ref())?;
                let id = self.scopes.add_rte(Rte {
                    refname: alias.as_ref().map(|a| fold(&a.name)),
                    schema: None,
                    columns,
                    opaque: false,
                    system_columns: false,
                    kind: RteKind::Derived,
                });
                Ok(Node::Rte(id))
            }
            TableFactor::Function {
                lateral: _,
                name,
                args,
                with_ordinality,
                alias,
            } => self.function_factor(name, args, alias.as_ref(), *with_ordinality),
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset,
                with_offset_alias,
                with_ordinality,
            } => {
                if *with_offset || with_offset_alias.is_some() {
                    return Err(unsupported("UNNEST WITH OFFSET"));
                }
                let cx = Cx::new(Clause::FunctionArg, "a function in FROM");
                let mut per_arg = Vec::new();
                self.with_lateral(|a| {
                    for e in array_exprs {
                        per_arg.push(a.expr(e, cx)?);
                    }
                    Ok(())
                })?;
                let single = per_arg.len() == 1;
                let mut cols: Vec<ColInfo> = per_arg
                    .into_iter()
                    .map(|s| {
                        let name = match (single, alias) {
                            (true, Some(a)) if a.columns.is_empty() => fold(&a.name),
                            _ => "unnest".to_owned(),
                        };
                        ColInfo::computed(name, s)
                    })
                    .collect();
                if *with_ordinality {
                    cols.push(ColInfo::computed("ordinality", Sources::new()));
                }
                let columns = apply_alias_columns(cols, alias.as_ref())?;
                let id = self.scopes.add_rte(Rte {
                    refname: Some(
                        alias
                            .as_ref()
                            .map(|a| fold(&a.name))
                            .unwrap_or_else(|| "unnest".into()),
                    ),
                    schema: None,
                    columns,
                    opaque: false,
                    system_columns: false,
                    kind: RteKind::Function,
                });
                Ok(Node::Rte(id))
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let node = self.from_item(table_with_joins)?;
                match alias {
                    None => Ok(node),
                    Some(a) => {
                        let cols: Vec<ColInfo> = self
                            .scopes
                            .expand_node(&node)?
                            .into_iter()
                            .map(|(_, c)| c)
                            .collect();
                        let columns = apply_alias_columns(cols, Some(a))?;
                        let id = self.scopes.add_rte(Rte {
                            refname: Some(fold(&a.name)),
                            schema: None,
                            columns,
                            opaque: false,
                            system_columns: false,
                            kind: RteKind::Join,
                        });
                        Ok(Node::Rte(id))
                    }
                }
            }
            _ => Err(unsupported("FROM item")),
        }
    }

    /// The catalog columns of a relation as lineage sources.
    pub fn relation_columns(&self, rel: &Relation, _alias: Option<&TableAlias>) -> Vec<ColInfo> {
        rel.columns
            .iter()
            .map(|c| ColInfo {
                name: c.name.clone(),
                sources: [ColumnKey {
                    table: rel.name.clone(),
                    column: c.name.clone(),
                }]
                .into(),
                direct: Some(c.type_name.clone()),
            })
            .collect()
    }

    /// A relation name in FROM: a CTE, a view (resolved through its definition) or a table.
    fn relation_factor(
        &mut self,
        name: &ObjectName,
        alias: Option<&TableAlias>,
        sampled: bool,
    ) -> Result<Node, AnalyseError> {
        let parts = name_parts(name)?;
        if let [single] = parts.as_slice() {
            if let Some(cte) = self.find_cte(single).cloned() {
                let columns = apply_alias_columns(cte.columns, alias)?;
                let id = self.scopes.add_rte(Rte {
                    refname: Some(alias.map(|a| fold(&a.name)).unwrap_or(cte.name)),
                    schema: None,
                    columns,
                    opaque: false,
                    system_columns: false,
                    kind: RteKind::Cte,
                });
                return Ok(Node::Rte(id));
            }
        }
        let rel = self.catalog_relation(&parts)?;
        let idents = name_idents(name)?;
        let span = idents
            .iter()
            .map(|i| i.span)
            .reduce(|a, b| a.union(&b))
            .ok_or_else(|| unsupported("empty relation name"))?;
        let name_range = self.range(span)?;
        let refname = alias
            .map(|a| fold(&a.name))
            .unwrap_or_else(|| rel.name.name.clone());
        let expand_view = matches!(
            rel.kind,
            RelationKind::View | RelationKind::MaterializedView
        ) && !is_system_schema(&rel.name.schema);
        let (columns, kind, view) = if expand_view {
            let info = self.view_info(rel)?;
            // What the definition does with the data is done by whoever scans the view.
            self.out.uses.extend(info.uses.iter().cloned());
            self.out.grants.extend(info.grants.iter().cloned());
            self.out.refusals.extend(info.refusals.iter().cloned());
            self.out.literal_sensitive |= info.literal_sensitive;
            (
                info.columns.clone(),
                RteKind::View(rel.name.clone()),
                Some(info),
            )
        } else {
            (
                self.relation_columns(rel, alias),
                RteKind::Relation(rel.name.clone()),
                None,
            )
        };
        self.out.scans.push(Scan {
            relation: rel.name.clone(),
            name_range,
            alias: alias.map(|a| fold(&a.name)),
            refname: refname.clone(),
            unwrappable: sampled.then_some("TABLESAMPLE"),
            view,
        });
        let columns = apply_alias_columns(columns, alias)?;
        let system = matches!(kind, RteKind::Relation(_));
        let id = self.scopes.add_rte(Rte {
            refname: Some(refname),
            schema: alias.is_none().then(|| rel.name.schema.clone()),
            columns,
            opaque: false,
            system_columns: system,
            kind,
        });
        Ok(Node::Rte(id))
    }

    /// A function in FROM (always able to see preceding FROM items, like LATERAL).
    fn function_factor(
        &mut self,
        name: &ObjectName,
        args: &[FunctionArg],
        alias: Option<&TableAlias>,
        with_ordinality: bool,
    ) -> Result<Node, AnalyseError> {
        let parts = name_parts(name)?;
        let fname = parts.last().cloned().unwrap_or_default();
        self.check_function(&parts)?;
        let cx = Cx::new(Clause::FunctionArg, "a function in FROM");
        let sources = self.with_lateral(|a| {
            let mut s = Sources::new();
            for arg in args {
                let e = match arg {
                    FunctionArg::Unnamed(e) => e,
                    FunctionArg::Named { arg, .. } => arg,
                    FunctionArg::ExprNamed { .. } => return Err(unsupported("named argument")),
                };
                match e {
                    FunctionArgExpr::Expr(e) => s.extend(a.expr(e, cx)?),
                    FunctionArgExpr::QualifiedWildcard(n) => {
                        let id = a.rte_by_name(n)?;
                        let w = a.scopes.rtes[id].whole_row();
                        a.record(&w, Clause::WholeRow, "a whole-row reference");
                        s.extend(w);
                    }
                    _ => return Err(unsupported("* as a function argument in FROM")),
                }
            }
            Ok(s)
        })?;
        let known = super::functions::table_function_columns(&fname, args.len());
        let refname = alias
            .map(|a| fold(&a.name))
            .unwrap_or_else(|| fname.clone());
        // A column definition list (`AS t(a int, b text)`) names every column exactly.
        let defined = alias.is_some_and(|a| {
            !a.columns.is_empty() && a.columns.iter().all(|c| c.data_type.is_some())
        });
        let known = match (known, defined) {
            (_, true) => alias.map(|a| vec![""; a.columns.len()]),
            (k, false) => k,
        };
        let (mut cols, opaque) = match known {
            Some(names) => {
                let single = names.len() == 1;
                let cols = names
                    .into_iter()
                    .map(|n| {
                        let name = if !n.is_empty() {
                            n.to_owned()
                        } else if single && alias.is_some_and(|a| a.columns.is_empty()) {
                            refname.clone()
                        } else {
                            fname.clone()
                        };
                        ColInfo::computed(name, sources.clone())
                    })
                    .collect::<Vec<_>>();
                (cols, false)
            }
            None => {
                let cols = alias
                    .map(|a| {
                        a.columns
                            .iter()
                            .map(|c| ColInfo::computed(fold(&c.name), sources.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                (cols, true)
            }
        };
        if with_ordinality && !opaque {
            cols.push(ColInfo::computed("ordinality", Sources::new()));
        }
        let columns = if opaque {
            cols
        } else if defined {
            let mut cols = cols;
            for (c, def) in cols
                .iter_mut()
                .zip(alias.map(|a| a.columns.as_slice()).unwrap_or_default())
            {
                c.name = fold(&def.name);
            }
            cols
        } else {
            apply_alias_columns(cols, alias)?
        };
        let id = self.scopes.add_rte(Rte {
            refname: Some(refname),
            schema: None,
            columns,
            opaque,
            system_columns: false,
            kind: RteKind::Function,
        });
        Ok(Node::Rte(id))
    }

    /// Recognise `SELECT * FROM <table> WHERE <exactly the policy's row filter>`: a scan the
    /// row filter already restricts (what the rewrite produces). Its filter is the policy's,
    /// not the service's, so its column uses are not recorded; its names must resolve to the
    /// table alone.
    fn filtered_scan(&mut self, q: &Query) -> Result<Option<&'e Relation>, AnalyseError> {
        let SetExpr::Select(s) = q.body.as_ref() else {
            return Ok(None);
        };
        let plain_query = q.with.is_none()
            && q.order_by.is_none()
            && q.limit_clause.is_none()
            && q.fetch.is_none()
            && q.locks.is_empty();
        let plain_select = s.distinct.is_none()
            && s.into.is_none()
            && s.having.is_none()
            && s.named_window.is_empty()
            && s.qualify.is_none()
            && matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
            && matches!(s.projection.as_slice(), [SelectItem::Wildcard(o)] if is_plain_wildcard(o))
            && s.from.len() == 1
            && s.from[0].joins.is_empty();
        if !plain_query || !plain_select {
            return Ok(None);
        }
        let (Some(selection), Some(twj)) = (&s.selection, s.from.first()) else {
            return Ok(None);
        };
        let TableFactor::Table {
            name,
            alias: None,
            args: None,
            sample: None,
            with_ordinality: false,
            ..
        } = &twj.relation
        else {
            return Ok(None);
        };
        let parts = name_parts(name)?;
        if parts.len() != 2 {
            return Ok(None);
        }
        let Ok(rel) = self.catalog_relation(&parts) else {
            return Ok(None);
        };
        let filters = self.env.policy.row_filters(&rel.name, self.env.purpose);
        if filters.is_empty() {
            return Ok(None);
        }
        let Some(expected) = super::views::filter_expr(&filters) else {
            return Err(AnalyseError::Unsupported(format!(
                "row filter of {} does not parse",
                rel.name
            )));
        };
        // Whether the scan counts as filtered depends on the literals of the WHERE when the
        // policy's filter has literals of its own.
        self.out.literal_sensitive |= super::views::filter_has_literals(&filters);
        if *selection != expected {
            return Ok(None);
        }
        self.check_filter_resolves(rel, selection)?;
        Ok(Some(rel))
    }

    /// A policy filter must resolve against its own table only.
    pub fn check_filter_resolves(&mut self, rel: &Relation, e: &Expr) -> Result<(), AnalyseError> {
        let saved_scopes = std::mem::take(&mut self.scopes);
        let saved_out = std::mem::take(&mut self.out);
        let saved_ctes = std::mem::take(&mut self.ctes);
        let columns = self.relation_columns(rel, None);
        let id = self.scopes.add_rte(Rte {
            refname: Some(rel.name.name.clone()),
            schema: Some(rel.name.schema.clone()),
            columns,
            opaque: false,
            system_columns: true,
            kind: RteKind::Relation(rel.name.clone()),
        });
        self.scopes.push_level(Level {
            nodes: vec![Node::Rte(id)],
            hidden: false,
        });
        let r = self.expr(e, Cx::new(Clause::Predicate, "row filter"));
        self.scopes = saved_scopes;
        self.out = saved_out;
        self.ctes = saved_ctes;
        r.map(|_| ())
    }
}

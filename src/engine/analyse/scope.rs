//! Name resolution the way Postgres does it: range-table entries (tables, views, CTE
//! references, derived tables, functions, VALUES), join trees with merged USING/NATURAL
//! columns, query levels for correlated subqueries, and the lineage each visible column
//! carries (the catalog columns whose values flow into it).

use std::collections::BTreeSet;

use crate::catalog::QualifiedName;

use super::AnalyseError;

/// A catalog column (of a table, or of a view when the policy tags the view itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnKey {
    pub table: QualifiedName,
    pub column: String,
}

pub type Sources = BTreeSet<ColumnKey>;

/// A column visible in a scope, with its lineage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColInfo {
    pub name: String,
    /// Catalog columns whose values flow into this column.
    pub sources: Sources,
    /// `Some(type)` when the column is an unmodified catalog column value (possibly passed
    /// through derived tables, CTEs and views): the type a `NULL::<type>` mask must carry.
    pub direct: Option<String>,
}

impl ColInfo {
    pub fn computed(name: impl Into<String>, sources: Sources) -> Self {
        ColInfo {
            name: name.into(),
            sources,
            direct: None,
        }
    }
}

/// What a range-table entry stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RteKind {
    /// A catalog table (or a view or system relation treated as one).
    Relation(QualifiedName),
    /// A view resolved through its definition.
    View(QualifiedName),
    /// A scan already wrapped in the policy's row filter: `(SELECT * FROM t WHERE (f)) AS a`.
    FilteredScan(QualifiedName),
    Cte,
    Derived,
    Function,
    Values,
    /// A join with an alias: `(a JOIN b USING (x)) AS j`.
    Join,
    /// `EXCLUDED` in `INSERT ... ON CONFLICT DO UPDATE`.
    Excluded,
}

#[derive(Debug, Clone)]
pub struct Rte {
    /// The name the entry is referenced by: its alias, or the relation's own name.
    pub refname: Option<String>,
    /// Schema of a catalog relation referenced without an alias (`schema.table.column`).
    pub schema: Option<String>,
    pub columns: Vec<ColInfo>,
    /// The entry may have columns the analyser does not know (a table function without a
    /// column list): names that resolve nowhere else might resolve here.
    pub opaque: bool,
    /// System columns (`ctid`, `xmin`, ...) are available.
    pub system_columns: bool,
    pub kind: RteKind,
}

impl Rte {
    /// Every column's sources: what a whole-row reference reads.
    pub fn whole_row(&self) -> Sources {
        self.columns
            .iter()
            .flat_map(|c| c.sources.iter().cloned())
            .collect()
    }
}

/// System columns every table has; they expose no column data.
pub const SYSTEM_COLUMNS: &[&str] = &["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

/// A FROM item: a range-table entry or a join of two items.
#[derive(Debug, Clone)]
pub enum Node {
    Rte(usize),
    Join {
        left: Box<Node>,
        right: Box<Node>,
        /// Columns merged by USING / NATURAL, in output order.
        merged: Vec<ColInfo>,
    },
}

/// One query level's FROM namespace.
#[derive(Debug, Clone, Default)]
pub struct Level {
    pub nodes: Vec<Node>,
    /// While the FROM list is being built, sibling items are invisible except to LATERAL
    /// items and table functions.
    pub hidden: bool,
}

/// How a name resolved.
#[derive(Debug, Clone)]
pub enum Resolved {
    Column(ColInfo),
    /// A whole-row reference to the entry.
    WholeRow(usize),
}

/// The range-table arena and the stack of query levels (outermost first).
#[derive(Debug, Default)]
pub struct Scopes {
    pub rtes: Vec<Rte>,
    pub levels: Vec<Level>,
}

impl Scopes {
    pub fn add_rte(&mut self, rte: Rte) -> usize {
        self.rtes.push(rte);
        self.rtes.len() - 1
    }

    pub fn push_level(&mut self, level: Level) {
        self.levels.push(level);
    }

    pub fn pop_level(&mut self) -> Level {
        self.levels.pop().unwrap_or_default()
    }

    pub fn current_mut(&mut self) -> Option<&mut Level> {
        self.levels.last_mut()
    }

    fn collect_rtes(node: &Node, out: &mut Vec<usize>) {
        match node {
            Node::Rte(id) => out.push(*id),
            Node::Join { left, right, .. } => {
                Self::collect_rtes(left, out);
                Self::collect_rtes(right, out);
            }
        }
    }

    /// Range-table entries visible for qualified references at a level.
    pub fn level_rtes(level: &Level) -> Vec<usize> {
        let mut out = Vec::new();
        for n in &level.nodes {
            Self::collect_rtes(n, &mut out);
        }
        out
    }

    /// Matches of an unqualified column name inside a FROM item.
    fn collect_matches(&self, node: &Node, name: &str, out: &mut Vec<ColInfo>, opaque: &mut bool) {
        match node {
            Node::Rte(id) => {
                let Some(rte) = self.rtes.get(*id) else {
                    return;
                };
                let before = out.len();
                out.extend(rte.columns.iter().filter(|c| c.name == name).cloned());
                if out.len() == before {
                    if rte.system_columns && SYSTEM_COLUMNS.contains(&name) {
                        out.push(ColInfo::computed(name, Sources::new()));
                    } else if rte.opaque {
                        *opaque = true;
                    }
                }
            }
            Node::Join {
                left,
                right,
                merged,
            } => {
                if let Some(m) = merged.iter().find(|c| c.name == name) {
                    out.push(m.clone());
                } else {
                    self.collect_matches(left, name, out, opaque);
                    self.collect_matches(right, name, out, opaque);
                }
            }
        }
    }

    /// Resolve an unqualified name: a column at the innermost level that has one, else a
    /// whole-row reference to an entry of that name.
    pub fn resolve_unqualified(&self, name: &str) -> Result<Resolved, AnalyseError> {
        let visible: Vec<&Level> = self.levels.iter().rev().filter(|l| !l.hidden).collect();
        for (depth, level) in visible.iter().enumerate() {
            let mut matches = Vec::new();
            let mut opaque = false;
            for node in &level.nodes {
                self.collect_matches(node, name, &mut matches, &mut opaque);
            }
            if matches.len() > 1 {
                return Err(AnalyseError::Ambiguous(name.to_owned()));
            }
            if let Some(m) = matches.pop() {
                if opaque {
                    // Postgres would report an ambiguity if the unknown columns hold the name too.
                    return Err(AnalyseError::Unresolvable(name.to_owned()));
                }
                return Ok(Resolved::Column(m));
            }
            if opaque {
                // The name may belong to the table function's unknown columns, or to an
                // outer level: only safe when no outer level could claim it.
                let outer_claims = visible[depth + 1..].iter().any(|l| {
                    let mut m = Vec::new();
                    let mut o = false;
                    for node in &l.nodes {
                        self.collect_matches(node, name, &mut m, &mut o);
                    }
                    !m.is_empty() || o
                });
                let relation_named = visible.iter().any(|l| {
                    Self::level_rtes(l)
                        .iter()
                        .any(|id| self.rtes[*id].refname.as_deref() == Some(name))
                });
                if outer_claims || relation_named {
                    return Err(AnalyseError::Unresolvable(name.to_owned()));
                }
                return Ok(Resolved::Column(ColInfo::computed(name, Sources::new())));
            }
        }
        for level in &visible {
            let found: Vec<usize> = Self::level_rtes(level)
                .into_iter()
                .filter(|id| self.rtes[*id].refname.as_deref() == Some(name))
                .collect();
            match found.len() {
                0 => continue,
                1 => return Ok(Resolved::WholeRow(found[0])),
                _ => return Err(AnalyseError::Ambiguous(name.to_owned())),
            }
        }
        Err(AnalyseError::UnknownColumn(name.to_owned()))
    }

    /// Find the entry a qualifier (`t` or `schema.t`) names, innermost level first.
    pub fn find_rte(&self, schema: Option<&str>, name: &str) -> Result<usize, AnalyseError> {
        for level in self.levels.iter().rev().filter(|l| !l.hidden) {
            let found: Vec<usize> = Self::level_rtes(level)
                .into_iter()
                .filter(|id| {
                    let rte = &self.rtes[*id];
                    rte.refname.as_deref() == Some(name)
                        && schema.is_none_or(|s| rte.schema.as_deref() == Some(s))
                })
                .collect();
            match found.len() {
                0 => continue,
                1 => return Ok(found[0]),
                _ => return Err(AnalyseError::Ambiguous(qualified(schema, name))),
            }
        }
        Err(AnalyseError::UnknownQualifier(qualified(schema, name)))
    }

    /// Resolve `qualifier.column`.
    pub fn resolve_qualified(
        &self,
        schema: Option<&str>,
        rel: &str,
        column: &str,
    ) -> Result<ColInfo, AnalyseError> {
        let id = self.find_rte(schema, rel)?;
        let rte = &self.rtes[id];
        let matches: Vec<&ColInfo> = rte.columns.iter().filter(|c| c.name == column).collect();
        match matches.len() {
            1 => Ok(matches[0].clone()),
            0 if rte.system_columns && SYSTEM_COLUMNS.contains(&column) => {
                Ok(ColInfo::computed(column, Sources::new()))
            }
            0 if rte.opaque => Ok(ColInfo::computed(column, Sources::new())),
            0 => Err(AnalyseError::UnknownColumn(format!(
                "{}.{column}",
                qualified(schema, rel)
            ))),
            _ => Err(AnalyseError::Ambiguous(format!(
                "{}.{column}",
                qualified(schema, rel)
            ))),
        }
    }

    /// The columns `*` expands to for a FROM item, in Postgres's order.
    pub fn expand_node(&self, node: &Node) -> Result<Vec<(Option<usize>, ColInfo)>, AnalyseError> {
        match node {
            Node::Rte(id) => {
                let rte = &self.rtes[*id];
                if rte.opaque {
                    return Err(AnalyseError::Unsupported(
                        "* over a table function whose columns are unknown".into(),
                    ));
                }
                Ok(rte.columns.iter().map(|c| (Some(*id), c.clone())).collect())
            }
            Node::Join {
                left,
                right,
                merged,
            } => {
                let mut out: Vec<(Option<usize>, ColInfo)> =
                    merged.iter().map(|c| (None, c.clone())).collect();
                let is_merged = |c: &ColInfo| merged.iter().any(|m| m.name == c.name);
                for side in [left, right] {
                    out.extend(
                        self.expand_node(side)?
                            .into_iter()
                            .filter(|(_, c)| !is_merged(c)),
                    );
                }
                Ok(out)
            }
        }
    }

    /// `*` over the current level: every FROM item in order.
    pub fn expand_star(&self) -> Result<Vec<(Option<usize>, ColInfo)>, AnalyseError> {
        let level = self
            .levels
            .last()
            .ok_or_else(|| AnalyseError::Unsupported("* without FROM".into()))?;
        if level.nodes.is_empty() {
            return Err(AnalyseError::Unsupported("* without FROM".into()));
        }
        let mut out = Vec::new();
        for n in &level.nodes {
            out.extend(self.expand_node(n)?);
        }
        Ok(out)
    }

    /// The single column named `name` on one side of a join (for USING / NATURAL).
    pub fn side_column(&self, node: &Node, name: &str) -> Result<ColInfo, AnalyseError> {
        let mut matches = Vec::new();
        let mut opaque = false;
        self.collect_matches(node, name, &mut matches, &mut opaque);
        if opaque {
            return Err(AnalyseError::Unresolvable(name.to_owned()));
        }
        match matches.len() {
            1 => Ok(matches.remove(0)),
            0 => Err(AnalyseError::UnknownColumn(name.to_owned())),
            _ => Err(AnalyseError::Ambiguous(name.to_owned())),
        }
    }
}

fn qualified(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(s) => format!("{s}.{name}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(scopes: &mut Scopes, name: &str, cols: &[&str]) -> usize {
        let q = QualifiedName::new("public", name);
        scopes.add_rte(Rte {
            refname: Some(name.into()),
            schema: Some("public".into()),
            columns: cols
                .iter()
                .map(|c| ColInfo {
                    name: (*c).into(),
                    sources: [ColumnKey {
                        table: q.clone(),
                        column: (*c).into(),
                    }]
                    .into(),
                    direct: Some("text".into()),
                })
                .collect(),
            opaque: false,
            system_columns: true,
            kind: RteKind::Relation(q),
        })
    }

    #[test]
    fn inner_level_wins_and_ambiguity_is_an_error() {
        let mut s = Scopes::default();
        let a = table(&mut s, "a", &["x", "y"]);
        let b = table(&mut s, "b", &["x", "z"]);
        s.push_level(Level {
            nodes: vec![Node::Rte(a)],
            hidden: false,
        });
        s.push_level(Level {
            nodes: vec![Node::Rte(b)],
            hidden: false,
        });
        let Resolved::Column(c) = s.resolve_unqualified("x").unwrap() else {
            panic!()
        };
        assert_eq!(c.sources.iter().next().unwrap().table.name, "b");
        let Resolved::Column(c) = s.resolve_unqualified("y").unwrap() else {
            panic!()
        };
        assert_eq!(c.sources.iter().next().unwrap().table.name, "a");
        s.levels[1].nodes.push(Node::Rte(a));
        assert!(matches!(
            s.resolve_unqualified("x"),
            Err(AnalyseError::Ambiguous(_))
        ));
        assert!(matches!(
            s.resolve_unqualified("a"),
            Ok(Resolved::WholeRow(id)) if id == a
        ));
        assert!(s.resolve_unqualified("nope").is_err());
    }

    #[test]
    fn using_merges_columns_and_star_puts_them_first() {
        let mut s = Scopes::default();
        let a = table(&mut s, "a", &["x", "y"]);
        let b = table(&mut s, "b", &["z", "x"]);
        let merged = ColInfo::computed("x", Sources::new());
        s.push_level(Level {
            nodes: vec![Node::Join {
                left: Box::new(Node::Rte(a)),
                right: Box::new(Node::Rte(b)),
                merged: vec![merged],
            }],
            hidden: false,
        });
        assert!(matches!(
            s.resolve_unqualified("x"),
            Ok(Resolved::Column(_))
        ));
        let names: Vec<String> = s
            .expand_star()
            .unwrap()
            .into_iter()
            .map(|(_, c)| c.name)
            .collect();
        assert_eq!(names, ["x", "y", "z"]);
    }
}

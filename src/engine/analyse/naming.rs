//! The name Postgres gives a select-list item without an alias (`FigureColname` in
//! parse_target.c): the last name of a column reference, a function's name, the argument's
//! name through casts, `case`, `exists`, `array`, `row`, and `?column?` otherwise.

use sqlparser::ast::{AccessExpr, DataType, Expr, ObjectNamePart};

use super::fold;

const UNKNOWN: &str = "?column?";

pub fn figure_colname(expr: &Expr) -> String {
    figure(expr).unwrap_or_else(|| UNKNOWN.to_owned())
}

fn figure(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(i) => Some(fold(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(fold),
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain.last() {
            Some(AccessExpr::Dot(Expr::Identifier(i))) => Some(fold(i)),
            Some(AccessExpr::Subscript(_)) => figure(root),
            _ => None,
        },
        Expr::Function(f) => f.name.0.last().and_then(|p| match p {
            ObjectNamePart::Identifier(i) => Some(fold(i)),
            ObjectNamePart::Function(_) => None,
        }),
        Expr::Cast {
            expr, data_type, ..
        } => figure(expr).or_else(|| type_colname(data_type)),
        Expr::Nested(e) => figure(e),
        Expr::Case { .. } => Some("case".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::Tuple(_) => Some("row".into()),
        Expr::Subquery(q) => match q.body.as_ref() {
            sqlparser::ast::SetExpr::Select(s) => match s.projection.first() {
                Some(sqlparser::ast::SelectItem::ExprWithAlias { alias, .. }) => Some(fold(alias)),
                Some(sqlparser::ast::SelectItem::UnnamedExpr(e)) => figure(e),
                _ => None,
            },
            _ => None,
        },
        Expr::Substring { .. } => Some("substring".into()),
        Expr::Trim { .. } => Some("btrim".into()),
        Expr::Position { .. } => Some("position".into()),
        Expr::Overlay { .. } => Some("overlay".into()),
        Expr::Extract { .. } => Some("extract".into()),
        Expr::Ceil { .. } => Some("ceil".into()),
        Expr::Floor { .. } => Some("floor".into()),
        Expr::Collate { expr, .. } => figure(expr),
        Expr::TypedString(t) => type_colname(&t.data_type),
        Expr::Interval(_) => Some("interval".into()),
        Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) => None,
        _ => None,
    }
}

fn type_colname(t: &DataType) -> Option<String> {
    // Postgres names a cast of an unnamed value after the type's internal name; the analyser
    // only needs names to be stable between the original and the rewrite, so the printed
    // type name, lower-cased, is enough.
    Some(t.to_string().to_ascii_lowercase())
}

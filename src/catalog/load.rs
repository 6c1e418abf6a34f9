//! Reading a [`Catalog`] snapshot from a live database.
//!
//! What is read, and why:
//! - every relation of kind table, partitioned table, view, materialized view and foreign
//!   table (`relkind` r, p, v, m, f) in every schema, `pg_catalog` and `information_schema`
//!   included (the engine must resolve `pg_stats` and friends to protect them). Left out:
//!   `pg_toast` and the per-session temporary schemas (`pg_temp_N`, `pg_toast_temp_N`), whose
//!   contents belong to other sessions;
//! - columns in `attnum` order, without dropped and system columns, typed with
//!   `format_type(atttypid, atttypmod)` (the spelling a `NULL::<type>` mask needs) and the oid;
//! - `pg_get_viewdef(oid)` for views and materialized views (tag lineage);
//! - the search path as `current_schemas(false)` of the loading session: the schemas of the
//!   effective `search_path` that exist, in order, with `"$user"` expanded and without the
//!   implicit `pg_catalog` (which `Catalog::resolve_unqualified` adds). It is the catalog
//!   user's path: services whose upstream roles have another (`ALTER ROLE ... SET
//!   search_path`, or a schema named after the role) resolve differently, so the catalog user
//!   should share the services' default path. The engine tracks per-session changes.
//!
//! All queries run in one `REPEATABLE READ READ ONLY` transaction, so columns and relations
//! come from the same moment. The snapshot's `version` is a hash of its content.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{Catalog, Column, Function, QualifiedName, Relation, RelationKind};

/// Errors reading, writing or decoding a catalog snapshot.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot connect to read the catalog: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("catalog query failed: {0}")]
    Query(#[source] tokio_postgres::Error),
    #[error("catalog snapshot {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog snapshot {path}: {source}")]
    Json {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("catalog snapshot {path}: {message}")]
    Format {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("unexpected relation kind `{kind}` for {name}")]
    UnknownKind { name: QualifiedName, kind: char },
}

const RELATIONS_SQL: &str = "\
SELECT c.oid, n.nspname::text, c.relname::text, c.relkind,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname <> 'pg_toast'
   AND n.nspname NOT LIKE 'pg\\_temp\\_%'
   AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
 ORDER BY n.nspname, c.relname";

const COLUMNS_SQL: &str = "\
SELECT a.attrelid, a.attname::text,
       pg_catalog.format_type(a.atttypid, a.atttypmod), a.atttypid
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND a.attnum > 0
   AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum";

const FUNCTIONS_SQL: &str = "\
SELECT n.nspname::text, p.proname::text, p.prokind, l.lanname::text, p.prosecdef
  FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_catalog.pg_language l ON l.oid = p.prolang
 WHERE n.nspname <> 'pg_toast'
   AND n.nspname NOT LIKE 'pg\\_temp\\_%'
 ORDER BY n.nspname, p.proname";

const SEARCH_PATH_SQL: &str = "SELECT pg_catalog.current_schemas(false)::text[]";

/// Read a snapshot over an open connection. The connection must not be inside a transaction.
pub async fn load_catalog(client: &tokio_postgres::Client) -> Result<Catalog, CatalogError> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(CatalogError::Query)?;
    let result = read_in_transaction(client).await;
    // The transaction only read; end it whatever happened so the connection stays usable.
    let end = client
        .batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await
        .map_err(CatalogError::Query);
    let catalog = result?;
    end?;
    Ok(catalog)
}

async fn read_in_transaction(client: &tokio_postgres::Client) -> Result<Catalog, CatalogError> {
    let rows = client
        .query(RELATIONS_SQL, &[])
        .await
        .map_err(CatalogError::Query)?;
    let mut by_oid: BTreeMap<u32, Relation> = BTreeMap::new();
    for row in rows {
        let oid: u32 = row.try_get(0).map_err(CatalogError::Query)?;
        let name = QualifiedName::new(
            row.try_get::<_, String>(1).map_err(CatalogError::Query)?,
            row.try_get::<_, String>(2).map_err(CatalogError::Query)?,
        );
        let kind_byte: i8 = row.try_get(3).map_err(CatalogError::Query)?;
        let kind_char = char::from(kind_byte as u8);
        let kind = relation_kind(kind_char).ok_or_else(|| CatalogError::UnknownKind {
            name: name.clone(),
            kind: kind_char,
        })?;
        let view_definition: Option<String> = row.try_get(4).map_err(CatalogError::Query)?;
        by_oid.insert(
            oid,
            Relation {
                name,
                kind,
                columns: Vec::new(),
                view_definition,
            },
        );
    }
    let rows = client
        .query(COLUMNS_SQL, &[])
        .await
        .map_err(CatalogError::Query)?;
    for row in rows {
        let relid: u32 = row.try_get(0).map_err(CatalogError::Query)?;
        let column = Column {
            name: row.try_get(1).map_err(CatalogError::Query)?,
            type_name: row.try_get(2).map_err(CatalogError::Query)?,
            type_oid: row.try_get(3).map_err(CatalogError::Query)?,
        };
        match by_oid.get_mut(&relid) {
            Some(rel) => rel.columns.push(column),
            // Columns of relations in skipped schemas (temporary, toast) have no entry.
            None => continue,
        }
    }
    let search_path: Vec<String> = client
        .query_one(SEARCH_PATH_SQL, &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(CatalogError::Query)?;
    let mut functions: BTreeMap<QualifiedName, Function> = BTreeMap::new();
    for row in client
        .query(FUNCTIONS_SQL, &[])
        .await
        .map_err(CatalogError::Query)?
    {
        let name = QualifiedName::new(
            row.try_get::<_, String>(0).map_err(CatalogError::Query)?,
            row.try_get::<_, String>(1).map_err(CatalogError::Query)?,
        );
        let kind = char::from(row.try_get::<_, i8>(2).map_err(CatalogError::Query)? as u8);
        let language: String = row.try_get(3).map_err(CatalogError::Query)?;
        let security_definer: bool = row.try_get(4).map_err(CatalogError::Query)?;
        // Overloads share one entry; any SECURITY DEFINER overload marks the name, so the
        // entry errs on the side of caution.
        functions
            .entry(name.clone())
            .and_modify(|f| f.security_definer |= security_definer)
            .or_insert(Function {
                name,
                kind,
                language,
                security_definer,
            });
    }
    let mut catalog = Catalog {
        relations: by_oid.into_values().map(|r| (r.name.clone(), r)).collect(),
        search_path,
        functions,
        version: 0,
    };
    catalog.version = content_version(&catalog);
    Ok(catalog)
}

fn relation_kind(kind: char) -> Option<RelationKind> {
    Some(match kind {
        'r' => RelationKind::Table,
        'p' => RelationKind::PartitionedTable,
        'v' => RelationKind::View,
        'm' => RelationKind::MaterializedView,
        'f' => RelationKind::ForeignTable,
        _ => return None,
    })
}

/// Connect with `conn_str` (libpq key/value or URL form, no TLS) and read a snapshot.
pub async fn connect_and_load(conn_str: &str) -> Result<Catalog, CatalogError> {
    let (client, connection) = tokio_postgres::connect(conn_str, tokio_postgres::NoTls)
        .await
        .map_err(CatalogError::Connect)?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "catalog connection ended with an error");
        }
    });
    let result = load_catalog(&client).await;
    drop(client);
    // The connection task ends once the client is dropped; wait so nothing outlives us.
    let _ = driver.await;
    result
}

/// A stable hash of a snapshot's content (relations and search path, not `version` itself):
/// the first 8 bytes of SHA-256 over a canonical JSON form (relations in name order).
pub fn content_version(catalog: &Catalog) -> u64 {
    #[derive(serde::Serialize)]
    struct Content<'a> {
        search_path: &'a [String],
        relations: Vec<&'a Relation>,
        functions: Vec<&'a Function>,
    }
    // Relations as a list: JSON object keys must be strings, and `QualifiedName` is a struct.
    // Serializing plain structs with string keys to a Vec cannot fail.
    let json = serde_json::to_vec(&Content {
        search_path: &catalog.search_path,
        relations: catalog.relations.values().collect(),
        functions: catalog.functions.values().collect(),
    })
    .unwrap_or_default();
    let digest = Sha256::digest(&json);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_follows_content_only() {
        let mut a = Catalog {
            search_path: vec!["public".into()],
            ..Default::default()
        };
        a.insert(Relation {
            name: QualifiedName::new("public", "t"),
            kind: RelationKind::Table,
            columns: vec![Column {
                name: "id".into(),
                type_name: "bigint".into(),
                type_oid: 20,
            }],
            view_definition: None,
        });
        let v = content_version(&a);
        a.version = 42;
        assert_eq!(content_version(&a), v);
        let mut b = a.clone();
        b.search_path = vec!["app".into(), "public".into()];
        assert_ne!(content_version(&b), v);
        let mut c = a.clone();
        if let Some(rel) = c.relations.values_mut().next() {
            rel.columns[0].type_name = "integer".into();
        }
        assert_ne!(content_version(&c), v);
    }

    #[test]
    fn relkinds_map() {
        assert_eq!(relation_kind('m'), Some(RelationKind::MaterializedView));
        assert_eq!(relation_kind('i'), None);
    }
}

//! Catalog snapshots on disk, as JSON: written by `pgpurpose catalog dump`, read for offline
//! `explain` and tests without a database.
//!
//! The file wraps the catalog with a format marker and version so a file of another kind (or
//! a future incompatible layout) is refused instead of misread. The catalog's `version` is
//! recomputed from the content on load: it is derived data, and a hand-edited snapshot must
//! not keep the version (and so the decision-cache entries) of the original.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::load::{content_version, CatalogError};
use super::{Catalog, Function, Relation};

/// Marker in every snapshot file.
pub const FORMAT: &str = "pgpurpose-catalog";
/// Layout version of the snapshot file.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
struct FileOut<'a> {
    format: &'a str,
    format_version: u32,
    search_path: &'a [String],
    version: u64,
    /// A list, not a map: JSON keys must be strings and each relation carries its name.
    relations: Vec<&'a Relation>,
    functions: Vec<&'a Function>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    format: String,
    format_version: u32,
    search_path: Vec<String>,
    /// Informational; recomputed from the content on load.
    #[allow(dead_code)]
    version: u64,
    relations: Vec<Relation>,
    /// Absent in snapshots written before functions were recorded.
    #[serde(default)]
    functions: Vec<Function>,
}

/// The snapshot as pretty-printed JSON.
pub fn to_json(catalog: &Catalog) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&FileOut {
        format: FORMAT,
        format_version: FORMAT_VERSION,
        search_path: &catalog.search_path,
        version: catalog.version,
        relations: catalog.relations.values().collect(),
        functions: catalog.functions.values().collect(),
    })
}

/// Parse a snapshot; `path` is only used in messages.
pub fn from_json(path: &Path, text: &str) -> Result<Catalog, CatalogError> {
    let file: FileIn = serde_json::from_str(text).map_err(|source| CatalogError::Json {
        path: path.to_owned(),
        source,
    })?;
    if file.format != FORMAT || file.format_version != FORMAT_VERSION {
        return Err(CatalogError::Format {
            path: path.to_owned(),
            message: format!(
                "expected format `{FORMAT}` version {FORMAT_VERSION}, found `{}` version {}",
                file.format, file.format_version
            ),
        });
    }
    let mut catalog = Catalog {
        search_path: file.search_path,
        ..Catalog::default()
    };
    for rel in file.relations {
        if catalog.relations.contains_key(&rel.name) {
            return Err(CatalogError::Format {
                path: path.to_owned(),
                message: format!("relation `{}` appears twice", rel.name),
            });
        }
        catalog.insert(rel);
    }
    catalog.functions = file
        .functions
        .into_iter()
        .map(|f| (f.name.clone(), f))
        .collect();
    catalog.version = content_version(&catalog);
    Ok(catalog)
}

/// Write a snapshot atomically (a temporary file in the same directory, then a rename).
pub fn save(catalog: &Catalog, path: &Path) -> Result<(), CatalogError> {
    let json = to_json(catalog).map_err(|source| CatalogError::Json {
        path: path.to_owned(),
        source,
    })?;
    let io = |source| CatalogError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, json + "\n").map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Read a snapshot written by [`save`].
pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
        path: path.to_owned(),
        source,
    })?;
    from_json(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Column, QualifiedName, Relation, RelationKind};

    fn sample() -> Catalog {
        let mut c = Catalog {
            search_path: vec!["public".into()],
            ..Default::default()
        };
        c.insert(Relation {
            name: QualifiedName::new("public", "user_profiles"),
            kind: RelationKind::View,
            columns: vec![Column {
                name: "country".into(),
                type_name: "character(2)".into(),
                type_oid: 1042,
            }],
            view_definition: Some(" SELECT users.country\n   FROM users;".into()),
        });
        c.version = content_version(&c);
        c
    }

    #[test]
    fn round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.json");
        let catalog = sample();
        save(&catalog, &path).unwrap();
        assert_eq!(load(&path).unwrap(), catalog);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"format\": \"pgpurpose-catalog\""), "{text}");
        assert!(text.contains("\"kind\": \"view\""), "{text}");
    }

    #[test]
    fn version_is_recomputed_and_bad_files_are_refused() {
        let path = Path::new("mem.json");
        let catalog = sample();
        let edited = to_json(&catalog).unwrap().replace("character(2)", "text");
        let loaded = from_json(path, &edited).unwrap();
        assert_ne!(loaded.version, catalog.version);
        assert_eq!(loaded.version, content_version(&loaded));

        let other = to_json(&catalog)
            .unwrap()
            .replace("pgpurpose-catalog", "something-else");
        assert!(matches!(
            from_json(path, &other),
            Err(CatalogError::Format { .. })
        ));
        let json = to_json(&catalog).unwrap();
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let rel = value["relations"][0].clone();
        value["relations"].as_array_mut().unwrap().push(rel);
        assert!(matches!(
            from_json(path, &value.to_string()),
            Err(CatalogError::Format { message, .. }) if message.contains("appears twice")
        ));
        assert!(matches!(
            from_json(path, "{\"format\": 1}"),
            Err(CatalogError::Json { .. })
        ));
        assert!(matches!(
            load(Path::new("/nonexistent/catalog.json")),
            Err(CatalogError::Io { .. })
        ));
    }
}

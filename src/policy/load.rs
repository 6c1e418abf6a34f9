//! Reading policy files: directory listing, strict YAML parsing, and the policy version.
//!
//! Each file is read twice over the same text. A pre-pass walks the YAML event stream
//! (`yaml-rust2`, which reports positions) to record the line and column of every mapping
//! key and to refuse duplicate keys, naming both lines. Then `serde_yaml` deserializes the
//! text into the strict structs of `policy::raw`; its errors carry their own position. The
//! raw files are handed to `policy::validate`, which merges them and compiles the policy.
//!
//! The pre-pass is advisory for positions only: duplicate keys are refused again by the
//! `serde_yaml` pass itself (see `raw::UniqueMap`), so the two parsers can never disagree
//! into accepting a duplicate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use yaml_rust2::parser::{Event, Parser};

use super::compiled::{CompiledPolicy, SourceLocation};
use super::raw::RawPolicyFile;
use super::validate;

/// Everything that can go wrong loading a policy. Each variant names the file and, where
/// known, the line, column and key.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{}: cannot read policy: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: policy file is not valid UTF-8", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("{}: no policy files (*.yaml, *.yml) found", dir.display())]
    NoFiles { dir: PathBuf },
    /// YAML syntax, a wrong type, an unknown field, a malformed credential.
    #[error("{location}: {message}")]
    Yaml {
        location: SourceLocation,
        message: String,
    },
    #[error("{location}: duplicate key `{key}` (first given at line {})", first.line)]
    DuplicateKey {
        location: SourceLocation,
        key: String,
        first: SourceLocation,
    },
    /// A value that parses but breaks a rule (unknown purpose, bad row filter, ...).
    #[error("{location}: `{key}`: {message}")]
    Invalid {
        location: SourceLocation,
        key: String,
        message: String,
    },
    /// The same purpose, service, table or the `defaults` section defined twice.
    #[error("{location}: {what} `{name}` is already defined at {first}")]
    Redefined {
        what: &'static str,
        name: String,
        location: SourceLocation,
        first: SourceLocation,
    },
    #[error("{} policy errors:\n{}", .0.len(), join_lines(.0))]
    Many(Vec<PolicyError>),
}

fn join_lines(errors: &[PolicyError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl PolicyError {
    /// One error as is, several as [`PolicyError::Many`]; `None` when there are none.
    pub(crate) fn collect(mut errors: Vec<PolicyError>) -> Option<PolicyError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(PolicyError::Many(errors)),
        }
    }

    /// The individual errors (a [`PolicyError::Many`] flattened).
    pub fn errors(&self) -> Vec<&PolicyError> {
        match self {
            PolicyError::Many(all) => all.iter().flat_map(PolicyError::errors).collect(),
            e => vec![e],
        }
    }
}

/// Load every `*.yaml` / `*.yml` file directly in `dir` (not recursive; names starting with
/// `.` are skipped, so editor swap and lock files are never read).
pub fn load_dir(dir: &Path) -> Result<CompiledPolicy, PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PolicyError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if is_yaml && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(PolicyError::NoFiles {
            dir: dir.to_owned(),
        });
    }
    files.sort();
    load_files(&files)
}

/// Load and merge the given files.
pub fn load_files(files: &[PathBuf]) -> Result<CompiledPolicy, PolicyError> {
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Io {
            path: path.clone(),
            source,
        })?;
        let text =
            String::from_utf8(bytes).map_err(|_| PolicyError::NotUtf8 { path: path.clone() })?;
        sources.push((path.clone(), text));
    }
    load_sources(&sources)
}

/// Load and merge policy texts given in memory as `(path, content)`; the path is used in
/// messages, to resolve relative `{file: PATH}` references, and (its file name) in the version.
pub fn load_sources(sources: &[(PathBuf, String)]) -> Result<CompiledPolicy, PolicyError> {
    let mut parsed = Vec::with_capacity(sources.len());
    let mut errors = Vec::new();
    for (path, text) in sources {
        match parse_file(path, text) {
            Ok(file) => parsed.push(file),
            Err(e) => errors.push(e),
        }
    }
    if let Some(e) = PolicyError::collect(errors) {
        return Err(e);
    }
    validate::compile(&parsed, policy_version(sources))
}

/// Hex SHA-256 over the `(file name, content)` pairs sorted by name (then content), each part
/// length-prefixed so that no two different sets of files hash alike.
pub fn policy_version(sources: &[(PathBuf, String)]) -> String {
    let mut pairs: Vec<(String, &str)> = sources
        .iter()
        .map(|(path, text)| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.to_string_lossy().into_owned());
            (name, text.as_str())
        })
        .collect();
    pairs.sort();
    let mut hasher = Sha256::new();
    for (name, text) in pairs {
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One policy file, parsed, with the positions of its keys.
#[derive(Debug)]
pub struct ParsedFile {
    pub path: PathBuf,
    pub raw: RawPolicyFile,
    keys: KeyIndex,
}

impl ParsedFile {
    /// The position of the key at `key_path` (e.g. `["tables", "users", "columns", "x"]`),
    /// or of its nearest ancestor that has one, or the file alone.
    pub fn location(&self, key_path: &[&str]) -> SourceLocation {
        for len in (1..=key_path.len()).rev() {
            let prefix: Vec<String> = key_path[..len].iter().map(|s| (*s).to_owned()).collect();
            if let Some(&(line, column)) = self.keys.positions.get(&prefix) {
                return SourceLocation::new(&self.path, line, column);
            }
        }
        SourceLocation::file_only(&self.path)
    }
}

/// Parse one file's text: key pre-pass, then strict deserialization.
pub fn parse_file(path: &Path, text: &str) -> Result<ParsedFile, PolicyError> {
    let keys = index_keys(path, text)?;
    let raw = if keys.has_content {
        serde_yaml::from_str::<RawPolicyFile>(text).map_err(|e| yaml_error(path, &e))?
    } else {
        // Only comments (or nothing): a valid, empty policy file.
        RawPolicyFile::default()
    };
    Ok(ParsedFile {
        path: path.to_owned(),
        raw,
        keys,
    })
}

fn yaml_error(path: &Path, e: &serde_yaml::Error) -> PolicyError {
    let mut message = e.to_string();
    let location = match e.location() {
        Some(l) => {
            // serde_yaml appends the position; it is already in the location prefix.
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
            SourceLocation::new(path, l.line(), l.column())
        }
        None => SourceLocation::file_only(path),
    };
    PolicyError::Yaml { location, message }
}

/// Line and column (1-based) of every mapping key, by the path of keys leading to it
/// (sequence items appear as `[i]`).
#[derive(Debug, Default)]
struct KeyIndex {
    positions: HashMap<Vec<String>, (usize, usize)>,
    /// False for a file with no document (empty or only comments).
    has_content: bool,
}

enum Frame {
    /// The document root: holds one value.
    Root,
    Map {
        path: Vec<String>,
        /// The key whose value comes next; `None` when a key comes next.
        pending_key: Option<String>,
        seen: HashMap<String, (usize, usize)>,
    },
    Seq {
        path: Vec<String>,
        next_index: usize,
    },
}

fn index_keys(path: &Path, text: &str) -> Result<KeyIndex, PolicyError> {
    let at = |line: usize, column: usize| SourceLocation::new(path, line, column);
    let mut parser = Parser::new_from_str(text);
    let mut index = KeyIndex::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut documents = 0;
    loop {
        let (event, marker) = parser.next_token().map_err(|e| PolicyError::Yaml {
            location: at(e.marker().line(), e.marker().col() + 1),
            message: e.info().to_owned(),
        })?;
        let (line, column) = (marker.line(), marker.col() + 1);
        // Where the value that starts with this event sits, when it is a value.
        let value_path: Option<Vec<String>> = match stack.last_mut() {
            Some(Frame::Map {
                path: map_path,
                pending_key,
                seen,
            }) if pending_key.is_none() => {
                // This event is a key.
                let key = match &event {
                    Event::Scalar(key, ..) => key.clone(),
                    Event::MappingEnd => String::new(),
                    _ => {
                        return Err(PolicyError::Yaml {
                            location: at(line, column),
                            message: "only plain scalar mapping keys are allowed".into(),
                        })
                    }
                };
                if !matches!(event, Event::MappingEnd) {
                    if key == "<<" {
                        return Err(PolicyError::Yaml {
                            location: at(line, column),
                            message: "YAML merge keys (`<<`) are not supported in policies".into(),
                        });
                    }
                    if let Some(&(first_line, first_column)) = seen.get(&key) {
                        return Err(PolicyError::DuplicateKey {
                            location: at(line, column),
                            key: dotted(map_path, &key),
                            first: at(first_line, first_column),
                        });
                    }
                    seen.insert(key.clone(), (line, column));
                    let mut key_path = map_path.clone();
                    key_path.push(key.clone());
                    index.positions.insert(key_path, (line, column));
                    *pending_key = Some(key);
                    continue;
                }
                None
            }
            Some(Frame::Map {
                path: map_path,
                pending_key,
                ..
            }) => pending_key.take().map(|k| {
                let mut p = map_path.clone();
                p.push(k);
                p
            }),
            Some(Frame::Seq { path, next_index }) => {
                if matches!(event, Event::SequenceEnd) {
                    None
                } else {
                    let mut p = path.clone();
                    p.push(format!("[{next_index}]"));
                    *next_index += 1;
                    Some(p)
                }
            }
            Some(Frame::Root) => Some(Vec::new()),
            None => None,
        };
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(PolicyError::Yaml {
                        location: at(line, column),
                        message: "a policy file holds one YAML document (found a second `---`)"
                            .into(),
                    });
                }
                stack.push(Frame::Root);
            }
            Event::DocumentEnd => {
                stack.pop();
            }
            Event::MappingStart(..) => {
                index.has_content = true;
                stack.push(Frame::Map {
                    path: value_path.unwrap_or_default(),
                    pending_key: None,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceStart(..) => {
                index.has_content = true;
                stack.push(Frame::Seq {
                    path: value_path.unwrap_or_default(),
                    next_index: 0,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::Scalar(..) | Event::Alias(..) => index.has_content = true,
            Event::StreamStart | Event::Nothing => {}
        }
    }
    Ok(index)
}

fn dotted(path: &[String], key: &str) -> String {
    let mut parts: Vec<&str> = path.iter().map(String::as_str).collect();
    parts.push(key);
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(files: &[(&str, &str)]) -> Result<CompiledPolicy, PolicyError> {
        let sources: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(n, t)| (PathBuf::from(format!("pol/{n}")), (*t).to_owned()))
            .collect();
        load_sources(&sources)
    }

    const PURPOSES: &str = "purposes:\n  security:\n    description: s\n";

    #[test]
    fn duplicate_column_key_is_rejected_with_both_lines() {
        let tables = "\
tables:
  users:
    columns:
      phone_2fa: [security]
      email_login: [security]
      phone_2fa: [security]
";
        let err = load(&[("p.yaml", PURPOSES), ("t.yaml", tables)]).unwrap_err();
        match &err {
            PolicyError::DuplicateKey {
                location,
                key,
                first,
            } => {
                assert_eq!(location.file, PathBuf::from("pol/t.yaml"));
                assert_eq!((location.line, location.column), (6, 7));
                assert_eq!(first.line, 4);
                assert_eq!(key, "tables.users.columns.phone_2fa");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "pol/t.yaml:6:7: duplicate key `tables.users.columns.phone_2fa` (first given at line 4)"
        );
    }

    #[test]
    fn duplicate_section_and_quoted_duplicates_are_rejected() {
        let text = "purposes:\n  a:\n    description: x\npurposes:\n  b:\n    description: y\n";
        let err = load(&[("p.yaml", text)]).unwrap_err();
        assert!(
            matches!(&err, PolicyError::DuplicateKey { location, .. } if location.line == 4),
            "{err}"
        );
        // A quoted and a plain spelling of the same key are the same key.
        let text = "purposes:\n  a:\n    description: x\n  \"a\":\n    description: y\n";
        let err = load(&[("p.yaml", text)]).unwrap_err();
        assert!(
            matches!(&err, PolicyError::DuplicateKey { location, .. } if location.line == 4),
            "{err}"
        );
    }

    #[test]
    fn unknown_field_is_rejected_with_line_and_key() {
        let services = "\
services:
  svc:
    credential: {env: SVC_VERIFIER}
    purposes: [security]
    upstream:
      user: app
      pasword: {env: PW}
";
        let err = load(&[("p.yaml", PURPOSES), ("s.yaml", services)]).unwrap_err();
        let PolicyError::Yaml { location, message } = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(location.file, PathBuf::from("pol/s.yaml"));
        assert_eq!(location.line, 7);
        assert!(message.contains("unknown field `pasword`"), "{message}");
        assert!(message.contains("services.svc.upstream"), "{message}");
        assert!(
            !message.contains(" at line "),
            "position given twice: {message}"
        );
    }

    #[test]
    fn unknown_top_level_section_is_rejected() {
        let err = load(&[("p.yaml", "purpose:\n  a:\n    description: x\n")]).unwrap_err();
        assert!(
            matches!(&err, PolicyError::Yaml { location, message }
                if location.line == 1 && message.contains("unknown field `purpose`")),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = load(&[("p.yaml", "purposes:\n  a: [x\n  b: 1\n")]).unwrap_err();
        let PolicyError::Yaml { location, .. } = &err else {
            panic!("unexpected {err:?}");
        };
        assert!(location.line >= 2, "{err}");
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_policies() {
        let policy = load(&[
            ("a.yaml", ""),
            ("b.yaml", "# nothing yet\n"),
            ("c.yaml", PURPOSES),
        ])
        .unwrap();
        assert!(policy.purpose_exists("security"));
        assert_eq!(policy.files.len(), 3);
    }

    #[test]
    fn second_document_and_merge_keys_are_rejected() {
        let err = load(&[("a.yaml", "---\npurposes: {}\n---\ntables: {}\n")]).unwrap_err();
        assert!(err.to_string().contains("one YAML document"), "{err}");
        let text = "\
tables:
  a: &base
    tags: [security]
  b:
    <<: *base
";
        let err = load(&[("p.yaml", PURPOSES), ("t.yaml", text)]).unwrap_err();
        assert!(err.to_string().contains("merge keys"), "{err}");
    }

    #[test]
    fn version_is_content_hash_independent_of_order() {
        let a = (PathBuf::from("x/a.yaml"), "purposes: {}\n".to_owned());
        let b = (PathBuf::from("x/b.yaml"), "tables: {}\n".to_owned());
        let v1 = policy_version(&[a.clone(), b.clone()]);
        assert_eq!(v1.len(), 64);
        assert_eq!(v1, policy_version(&[b.clone(), a.clone()]));
        // Same content in another directory: same version (only file names count).
        let a2 = (PathBuf::from("y/a.yaml"), a.1.clone());
        assert_eq!(v1, policy_version(&[a2, b.clone()]));
        let changed = (PathBuf::from("x/b.yaml"), "tables: {} \n".to_owned());
        assert_ne!(v1, policy_version(&[a.clone(), changed]));
        let renamed = (PathBuf::from("x/c.yaml"), b.1.clone());
        assert_ne!(v1, policy_version(&[a, renamed]));
    }

    #[test]
    fn load_dir_reads_yaml_files_only_and_versions_change_with_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("purposes.yaml"), PURPOSES).unwrap();
        std::fs::write(dir.path().join("README.md"), "not: [policy").unwrap();
        std::fs::write(dir.path().join(".purposes.yaml.swp"), "garbage: [").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "garbage: [").unwrap();
        let first = load_dir(dir.path()).unwrap();
        assert_eq!(first.files, vec![dir.path().join("purposes.yaml")]);
        std::fs::write(
            dir.path().join("more.yml"),
            "purposes:\n  analytics:\n    description: a\n",
        )
        .unwrap();
        let second = load_dir(dir.path()).unwrap();
        assert!(second.purpose_exists("analytics"));
        assert_ne!(first.version, second.version);
        assert_eq!(second.version, load_dir(dir.path()).unwrap().version);

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_dir(empty.path()),
            Err(PolicyError::NoFiles { .. })
        ));
        assert!(matches!(
            load_dir(&empty.path().join("missing")),
            Err(PolicyError::Io { .. })
        ));
    }

    #[test]
    fn non_utf8_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yaml"), b"purposes: {}\n\xff\n").unwrap();
        assert!(matches!(
            load_dir(dir.path()),
            Err(PolicyError::NotUtf8 { .. })
        ));
    }
}

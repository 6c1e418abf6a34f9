// Corpus loaders shared by the hardening tests and the parser differential: files of a corpus
// directory, and the ORM corpus of tests/corpus/orm/*.sql.

use std::path::{Path, PathBuf};

use pgpurpose::engine::{Decision, Rule};

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Every file of a corpus directory, sorted by name, with its bytes.
pub fn corpus_files(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = repo_path(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// One corpus statement: which file (ORM) it is from and its text.
#[derive(Debug, Clone)]
pub struct OrmStatement {
    pub orm: String,
    pub sql: String,
}

/// Statements are separated by blank lines; `--` comment lines before a statement describe it
/// and are dropped.
pub fn orm_corpus() -> Vec<OrmStatement> {
    let mut out = Vec::new();
    for (path, bytes) in corpus_files("tests/corpus/orm") {
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        let orm = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = String::from_utf8(bytes).expect("corpus is UTF-8");
        for block in text.split("\n\n") {
            let sql: Vec<&str> = block
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect();
            let sql = sql.join("\n").trim().to_owned();
            if !sql.is_empty() {
                out.push(OrmStatement {
                    orm: orm.clone(),
                    sql,
                });
            }
        }
    }
    out
}

/// Whether the analyser understood the statement.
pub fn accepted(d: &Decision) -> bool {
    !d.report()
        .statements
        .iter()
        .any(|s| matches!(s.rule, Rule::Syntax | Rule::Unanalysable(_)))
}

//! Purpose policies: the YAML files DBAs edit under `policies/`, and their compiled form.
//!
//! `raw` mirrors the files, `load` reads and merges them, `validate` checks cross-references
//! and compiles them into `compiled`, the indexed model everything else consults;
//! `catalog_check` compares a compiled policy with a catalog snapshot. The format
//! is documented in `docs/policy-reference.md`.

pub mod catalog_check;
pub mod compiled;
pub mod load;
pub mod raw;
#[cfg(test)]
mod tests;
pub mod validate;

pub use catalog_check::{
    check_against_catalog, ensure_matches_catalog, has_errors, Finding, FindingLevel,
};
pub use compiled::{
    purpose_covers, ColumnAccess, CompiledPolicy, Grant, OutputAction, PolicyBuilder, PolicyItem,
    RelationPolicy, SecretSource, Service, SourceLocation, UntaggedMode, UpstreamLogin,
};
pub use load::{load_dir, load_files, load_sources, policy_version, PolicyError};

//! Purpose policies: the YAML files DBAs edit under `policies/`, and their compiled form.
//!
//! `compiled` holds the indexed model everything else consults.

pub mod compiled;

pub use compiled::{
    purpose_covers, ColumnAccess, CompiledPolicy, Grant, OutputAction, PolicyBuilder,
    RelationPolicy, SecretSource, Service, UntaggedMode, UpstreamLogin,
};

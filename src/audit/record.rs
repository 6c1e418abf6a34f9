//! The audit log's record format: one JSON object per line (JSON Lines), chained by SHA-256.
//!
//! This module owns the wire format shared by the writer and by the reviewer's tools
//! (`audit verify`, `report`, `tail`), so that both read and write exactly the same bytes.
//!
//! # The chain
//!
//! Every line is a JSON object whose last member is `"hash"`. The *unsealed* line is the same
//! object without that member: the line's bytes up to the `,"hash":` that [`seal`] appended,
//! followed by `}`. The record's hash is `SHA-256(unsealed line bytes)`, written as lowercase
//! hex. Each record carries the previous record's hash in `"prev"` ([`GENESIS`] for the first
//! record ever written), so editing, deleting, inserting or reordering any record breaks the
//! chain at that point. Hashing the exact bytes (rather than a re-serialisation) means a
//! verifier needs no canonical JSON: it checks the bytes as written.
//!
//! # Checkpoints
//!
//! A [`Checkpoint`] record carries `mac = HMAC-SHA256(key, "<seq>:<prev>")` with a key from
//! configuration. `prev` commits to every record before it, so a checkpoint proves, to anyone
//! holding the key, that the log had exactly that content up to the checkpoint. A segment file
//! that was closed (rotation, shutdown) ends with a checkpoint; truncating it is detected even
//! though the chain alone could not tell a truncated tail from a complete one.
//!
//! # No literal values
//!
//! SQL appears only as [`normalize_for_log`](crate::engine::shape::normalize_for_log) renders
//! it (every literal replaced by `?`). Free text from the parser or analyser (which may quote
//! the statement) is never recorded: blocks record their SQLSTATE and the deciding rule.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev` of the first record ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The member every sealed line ends with, before the 64 hex digits and `"}`.
const HASH_MEMBER: &str = ",\"hash\":\"";
/// `,"hash":"` + 64 hex digits + `"}`.
const SEAL_LEN: usize = HASH_MEMBER.len() + 64 + 2;

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Gapless, starting at 1 and continuing across segment files and proxy restarts.
    pub seq: u64,
    /// UTC, RFC 3339 with microseconds and a `Z` suffix (fixed width, so it sorts as text).
    pub time: String,
    /// Random id of the proxy process that wrote the record (hex), distinguishing restarts and
    /// several proxies' logs.
    pub instance: String,
    #[serde(flatten)]
    pub event: Event,
    /// Hash of the previous record.
    pub prev: String,
}

/// What the record is about; serialised with a `"kind"` member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Statement(StatementEvent),
    Connection(ConnectionEvent),
    Policy(PolicyEvent),
    Checkpoint(Checkpoint),
    /// First record of every segment file.
    SegmentStart(SegmentStart),
}

/// One decision on one SQL-bearing message (a simple `Query`, possibly of several statements,
/// or a `Parse`). Written before the message is forwarded or the block is answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementEvent {
    /// Proxy-wide connection counter (restarts from 1 per `instance`).
    pub connection_id: u64,
    /// `<instance>-<connection_id>`: unique across restarts and proxies.
    pub session_id: String,
    pub service: String,
    pub purpose: String,
    pub client_addr: String,
    pub database: String,
    /// `simple` (Query) or `extended` (Parse).
    pub protocol: String,
    /// 16 hex digits identifying the normalised statement (equal for statements that differ
    /// only in literal values).
    pub fingerprint: String,
    /// The statement with every literal replaced by `?`.
    pub sql: String,
    pub decision: Decision,
    /// The deciding rule of the message (the first blocking statement's, else the last's).
    pub rule: String,
    /// Per statement of the message: what was used, where, and what was done.
    pub statements: Vec<StatementDetail>,
    /// The SQL forwarded in place of the original, normalised like `sql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    /// SQLSTATE answered to the client for a block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// Served from the decision cache.
    pub cached: bool,
    pub policy_version: String,
    pub catalog_version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Rewrite,
    Block,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementDetail {
    /// `SELECT`, `UPDATE`, `COPY`, ...
    pub statement_kind: String,
    pub rule: String,
    pub uses: Vec<ColumnUseRecord>,
    /// Output columns masked as `NULL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
    /// Tables whose row filter was added (`schema.table`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_filtered: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants_used: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnUseRecord {
    /// `schema.table`.
    pub table: String,
    pub column: String,
    /// Clause kind in snake case: `output`, `predicate`, `join`, `group_by`, `order_by`,
    /// `window`, `distinct`, `distinct_on`, `limit`, `function_arg`, `whole_row`, `subquery`,
    /// `write`, `write_source`, `ddl`, `copy`.
    pub clause: String,
    /// The column's tags; `null` when untagged.
    pub tags: Option<Vec<String>>,
    pub allowed: bool,
    pub masked: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionEvent {
    pub connection_id: u64,
    pub session_id: String,
    pub client_addr: String,
    pub event: ConnectionEventKind,
    /// The authenticated service (absent when refused before authentication succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// SQLSTATE of a refusal, or of the error that ended the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// Why it was refused or closed, in the proxy's own words (never client-supplied text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionEventKind {
    Authenticated,
    Refused,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyEvent {
    /// `loaded` (at start), `reloaded`, `reload_refused`.
    pub event: String,
    pub policy_version: String,
    /// For a refused reload: the loader's error (file:line and key; policies hold no data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `rotation`, `shutdown`, `interval`.
    pub reason: String,
    /// Records in this segment file before this checkpoint.
    pub records_in_segment: u64,
    /// First 16 hex digits of SHA-256(key): which key made `mac`.
    pub key_id: String,
    /// Lowercase hex `HMAC-SHA256(key, "<seq>:<prev>")`, see [`checkpoint_mac`].
    pub mac: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentStart {
    /// File name of the previous segment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_segment: Option<String>,
    /// Why a new segment began: `start` (proxy start), `rotation`, `recovery` (after the
    /// previous segment could not be written).
    pub reason: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("the line does not end with a \"hash\" member of 64 hex digits")]
    NotSealed,
    #[error("the record is not valid JSON of the audit format: {0}")]
    Json(String),
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// SHA-256 of an unsealed line, as lowercase hex.
pub fn hash_unsealed(unsealed: &[u8]) -> String {
    to_hex(&Sha256::digest(unsealed))
}

/// Append the `"hash"` member to an unsealed JSON object (which must end with `}`), returning
/// the sealed line (without a newline) and its hash.
pub fn seal(unsealed: &str) -> (String, String) {
    let hash = hash_unsealed(unsealed.as_bytes());
    let body = unsealed.strip_suffix('}').unwrap_or(unsealed);
    let mut line = String::with_capacity(body.len() + SEAL_LEN);
    line.push_str(body);
    line.push_str(HASH_MEMBER);
    line.push_str(&hash);
    line.push_str("\"}");
    (line, hash)
}

/// Split a sealed line (without its newline) into its unsealed form and the hash it claims.
pub fn unseal(line: &str) -> Result<(String, &str), RecordError> {
    if line.len() < SEAL_LEN || !line.ends_with("\"}") {
        return Err(RecordError::NotSealed);
    }
    let cut = line.len() - SEAL_LEN;
    let (body, seal) = line.split_at(cut);
    let claimed = seal
        .strip_prefix(HASH_MEMBER)
        .and_then(|s| s.strip_suffix("\"}"))
        .ok_or(RecordError::NotSealed)?;
    if claimed.len() != 64
        || !claimed
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(RecordError::NotSealed);
    }
    Ok((format!("{body}}}"), claimed))
}

/// Parse a sealed line into its record and claimed hash (the hash is not checked here).
pub fn parse_line(line: &str) -> Result<(Record, String), RecordError> {
    let (unsealed, claimed) = unseal(line)?;
    let record: Record =
        serde_json::from_str(&unsealed).map_err(|e| RecordError::Json(e.to_string()))?;
    Ok((record, claimed.to_owned()))
}

/// `HMAC-SHA256(key, "<seq>:<prev>")` as lowercase hex.
pub fn checkpoint_mac(key: &[u8], seq: u64, prev: &str) -> String {
    // new_from_slice accepts keys of any length for HMAC; the error arm cannot occur.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(seq.to_string().as_bytes());
    mac.update(b":");
    mac.update(prev.as_bytes());
    to_hex(&mac.finalize().into_bytes())
}

/// Which key made a checkpoint: the first 16 hex digits of SHA-256(key).
pub fn key_id(key: &[u8]) -> String {
    let mut id = to_hex(&Sha256::digest(key));
    id.truncate(16);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            seq: 7,
            time: "2026-11-23T14:09:51.123456Z".into(),
            instance: "9f2c".into(),
            event: Event::Connection(ConnectionEvent {
                connection_id: 3,
                session_id: "9f2c-3".into(),
                client_addr: "127.0.0.1:5000".into(),
                event: ConnectionEventKind::Authenticated,
                service: Some("ads-service".into()),
                purpose: Some("advertising".into()),
                database: Some("social".into()),
                sqlstate: None,
                reason: None,
            }),
            prev: GENESIS.into(),
        }
    }

    #[test]
    fn sealed_line_round_trips_and_hash_covers_the_bytes() {
        let unsealed = serde_json::to_string(&sample()).unwrap();
        let (line, hash) = seal(&unsealed);
        assert!(line.ends_with(&format!(",\"hash\":\"{hash}\"}}")));
        let (back, claimed) = unseal(&line).unwrap();
        assert_eq!(back, unsealed);
        assert_eq!(claimed, hash);
        assert_eq!(hash_unsealed(back.as_bytes()), hash);
        let (record, _) = parse_line(&line).unwrap();
        assert_eq!(record, sample());
        assert!(unsealed.contains("\"kind\":\"connection\""));
    }

    #[test]
    fn an_edited_line_no_longer_matches_its_hash() {
        let (line, hash) = seal(&serde_json::to_string(&sample()).unwrap());
        let edited = line.replace("ads-service", "auth-service");
        let (unsealed, claimed) = unseal(&edited).unwrap();
        assert_eq!(claimed, hash);
        assert_ne!(hash_unsealed(unsealed.as_bytes()), hash);
    }

    #[test]
    fn unsealed_or_malformed_lines_are_rejected() {
        assert_eq!(unseal("{}"), Err(RecordError::NotSealed));
        let (line, _) = seal(&serde_json::to_string(&sample()).unwrap());
        let upper = format!("{}{}", &line[..line.len() - 10], "ABCDEF12\"}");
        assert_eq!(unseal(&upper), Err(RecordError::NotSealed));
    }

    #[test]
    fn checkpoint_mac_depends_on_key_seq_and_prev() {
        let a = checkpoint_mac(b"k1", 10, GENESIS);
        assert_eq!(a.len(), 64);
        assert_ne!(a, checkpoint_mac(b"k2", 10, GENESIS));
        assert_ne!(a, checkpoint_mac(b"k1", 11, GENESIS));
        assert_ne!(a, checkpoint_mac(b"k1", 10, &"1".repeat(64)));
        assert_eq!(key_id(b"k1").len(), 16);
    }
}

//! Tampering with real logs made by the writer: every edit, deletion, reordering and
//! truncation is named at the right line.

use super::*;
use crate::audit::writer::{list_segments, AuditLog, AuditSettings};

const KEY: &[u8] = b"0123456789abcdef-verify-key";

/// A closed log of several segments (rotation every ~2 KiB) with ~60 records.
fn closed_log() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = AuditSettings::new(dir.path(), KEY);
    s.rotate_bytes = 4096;
    let log = AuditLog::open(s, "v1").unwrap();
    for i in 0..60 {
        log.policy_event("reloaded", &format!("v{i}"), None)
            .unwrap();
    }
    log.close().unwrap();
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() >= 3);
    (dir, segments)
}

fn check(dir: &tempfile::TempDir, key: Option<&[u8]>) -> Verification {
    verify_paths(&[dir.path().to_owned()], key).unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn error(v: &Verification) -> &Problem {
    v.error
        .as_ref()
        .unwrap_or_else(|| panic!("no error found: {v:?}"))
}

#[test]
fn an_intact_closed_log_verifies_sealed() {
    let (dir, segments) = closed_log();
    let v = check(&dir, Some(KEY));
    assert!(v.ok() && v.sealed && v.warnings.is_empty(), "{v:?}");
    assert_eq!(v.first_seq, Some(1));
    assert_eq!(v.checkpoints as usize, segments.len());
    assert!(render_human(&v).starts_with("OK: "));
}

#[test]
fn an_edited_record_is_named() {
    let (dir, segments) = closed_log();
    let mut l = lines(&segments[1]);
    l[2] = l[2].replace("\"reloaded\"", "\"reloadeD\"");
    write_lines(&segments[1], &l);
    let v = check(&dir, Some(KEY));
    let p = error(&v);
    assert_eq!(
        (p.file.as_str(), p.line),
        (display_name(&segments[1]).as_str(), 3)
    );
    assert!(p.reason.contains("edited"), "{p}");
}

#[test]
fn an_edited_and_resealed_record_breaks_the_chain_at_the_next_one() {
    let (dir, segments) = closed_log();
    let mut l = lines(&segments[0]);
    let (unsealed, _) = crate::audit::record::unseal(&l[3]).unwrap();
    let (resealed, _) = crate::audit::record::seal(&unsealed.replace("\"v", "\"w"));
    l[3] = resealed;
    write_lines(&segments[0], &l);
    let p = error(&check(&dir, Some(KEY))).clone();
    assert_eq!(p.line, 5, "{p}");
    assert!(p.reason.contains("prev does not match"), "{p}");
}

#[test]
fn a_deleted_record_is_a_gap() {
    let (dir, segments) = closed_log();
    let mut l = lines(&segments[1]);
    l.remove(3);
    write_lines(&segments[1], &l);
    let p = error(&check(&dir, Some(KEY))).clone();
    assert_eq!(p.line, 4);
    assert!(p.reason.contains("missing"), "{p}");
}

#[test]
fn reordered_records_are_out_of_order() {
    let (dir, segments) = closed_log();
    let mut l = lines(&segments[0]);
    l.swap(2, 3);
    write_lines(&segments[0], &l);
    let p = error(&check(&dir, Some(KEY))).clone();
    assert_eq!(p.line, 3);
    assert!(
        p.reason.contains("missing") || p.reason.contains("out of order"),
        "{p}"
    );
}

#[test]
fn truncating_a_closed_segment_is_detected() {
    let (dir, segments) = closed_log();
    let mut l = lines(&segments[0]);
    l.truncate(l.len() - 2);
    write_lines(&segments[0], &l);
    let p = error(&check(&dir, Some(KEY))).clone();
    assert_eq!(p.file, display_name(&segments[1]));
    assert_eq!(p.line, 1);
}

#[test]
fn truncating_to_an_interval_checkpoint_in_the_middle_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = AuditSettings::new(dir.path(), KEY);
    s.checkpoint_every = Some(std::time::Duration::from_millis(1));
    s.fsync_interval = std::time::Duration::from_millis(5);
    let log = AuditLog::open(s.clone(), "v1").unwrap();
    log.policy_event("reloaded", "v2", None).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    log.policy_event("reloaded", "v3", None).unwrap();
    log.close().unwrap();
    drop(log);
    let log = AuditLog::open(s, "v3").unwrap();
    log.close().unwrap();
    let segments = list_segments(dir.path()).unwrap();
    let mut l = lines(&segments[0]);
    let cut = l
        .iter()
        .position(|x| x.contains("\"reason\":\"interval\""))
        .expect("an interval checkpoint");
    assert!(cut + 1 < l.len() - 1);
    l.truncate(cut + 1);
    write_lines(&segments[0], &l);
    let p = error(&check(&dir, Some(KEY))).clone();
    assert_eq!(
        (p.file.clone(), p.line),
        (display_name(&segments[1]), 1),
        "{p}"
    );
    // The same truncation of the last segment alone can only be a warning.
    let alone = verify_files(&segments[..1], Some(KEY)).unwrap();
    assert!(alone.ok() && !alone.sealed, "{alone:?}");
    assert!(
        alone.warnings.iter().any(|w| w.contains("unsealed")),
        "{alone:?}"
    );
}

#[test]
fn a_wrong_key_fails_and_no_key_warns() {
    let (dir, _) = closed_log();
    let p = error(&check(&dir, Some(b"another-key-of-enough-length"))).clone();
    assert!(p.reason.contains("another key"), "{p}");
    let v = check(&dir, None);
    assert!(v.ok());
    assert!(v
        .warnings
        .iter()
        .any(|w| w.contains("MACs were not checked")));
}

#[test]
fn a_forged_checkpoint_mac_fails() {
    let (dir, segments) = closed_log();
    let mut l = lines(&segments[0]);
    let last = l.len() - 1;
    let (unsealed, _) = crate::audit::record::unseal(&l[last]).unwrap();
    let mac_at = unsealed.find("\"mac\":\"").unwrap() + 7;
    let mut forged = unsealed.clone();
    let c = if &unsealed[mac_at..mac_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    forged.replace_range(mac_at..mac_at + 1, c);
    // Resealing keeps the hash right, and the chain breaks at the next segment; the MAC is
    // checked first, on this very line.
    l[last] = crate::audit::record::seal(&forged).0;
    write_lines(&segments[0], &l);
    let p = error(&check(&dir, Some(KEY))).clone();
    assert_eq!(p.line, l.len());
    assert!(p.reason.contains("MAC"), "{p}");
}

#[test]
fn a_missing_first_segment_is_a_warning_and_a_missing_middle_one_an_error() {
    let (_dir, segments) = closed_log();
    let rest = verify_files(&segments[1..], Some(KEY)).unwrap();
    assert!(rest.ok(), "{rest:?}");
    assert!(rest.warnings.iter().any(|w| w.contains("begins at seq")));
    let mut gap = segments.clone();
    gap.remove(1);
    let v = verify_files(&gap, Some(KEY)).unwrap();
    assert!(error(&v).reason.contains("missing"), "{v:?}");
}

#[test]
fn files_without_a_complete_record_are_skipped_with_a_warning() {
    let (dir, segments) = closed_log();
    // A recovery attempt that created a file but could not complete its first line.
    let name = crate::audit::record::segment_file_name(1_000_000, std::time::SystemTime::now());
    std::fs::write(dir.path().join(&name), b"{\"seq\":1000000,\"ti").unwrap();
    let v = check(&dir, Some(KEY));
    assert!(v.ok() && v.sealed, "{v:?}");
    assert!(
        v.warnings.iter().any(|w| w.contains("no complete record")),
        "{v:?}"
    );
    assert_eq!(v.files.len(), segments.len() + 1);
}

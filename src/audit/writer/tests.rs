//! The writer against real files: chain continuation across restarts, rotation, torn tails,
//! concurrent group commit, and the failed state with its recovery.

use super::*;
use crate::audit::record::parse_line;
use crate::audit::verify::verify_paths;

const KEY: &[u8] = b"0123456789abcdef-test-key";

fn settings(dir: &Path) -> AuditSettings {
    AuditSettings::new(dir, KEY)
}

fn policy(log: &AuditLog, n: usize) {
    for i in 0..n {
        log.policy_event("reloaded", &format!("v{i}"), None)
            .unwrap();
    }
}

fn records(dir: &Path) -> Vec<(String, crate::audit::record::Record)> {
    let mut out = Vec::new();
    for path in list_segments(dir).unwrap() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            out.push((name.clone(), parse_line(line).unwrap().0));
        }
    }
    out
}

#[test]
fn a_new_log_starts_a_chain_and_a_restart_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(settings(dir.path()), "v1").unwrap();
    assert_eq!(log.policy_event("reloaded", "v2", None).unwrap(), 3);
    log.close().unwrap();
    assert!(matches!(
        log.policy_event("x", "v", None),
        Err(AuditError::Closed)
    ));
    drop(log);
    let log = AuditLog::open(settings(dir.path()), "v2").unwrap();
    drop(log);

    let recs = records(dir.path());
    let kinds: Vec<String> = recs
        .iter()
        .map(|(_, r)| match &r.event {
            Event::SegmentStart(s) => format!("start:{}", s.reason),
            Event::Policy(p) => format!("policy:{}:{}", p.event, p.policy_version),
            Event::Checkpoint(c) => format!("checkpoint:{}", c.reason),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "start:start",
            "policy:loaded:v1",
            "policy:reloaded:v2",
            "checkpoint:shutdown",
            "start:start",
            "policy:loaded:v2"
        ]
    );
    let seqs: Vec<u64> = recs.iter().map(|(_, r)| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    assert_eq!(recs[0].1.prev, GENESIS);
    let Event::SegmentStart(second) = &recs[4].1.event else {
        panic!()
    };
    assert_eq!(second.previous_segment.as_deref(), Some(recs[0].0.as_str()));
    assert!(recs[4]
        .0
        .starts_with("pgpurpose-audit-00000000000000000005-"));
    let v = verify_paths(&[dir.path().to_owned()], Some(KEY)).unwrap();
    assert!(v.ok(), "{v:?}");
    assert_eq!((v.records, v.checkpoints), (6, 1));
    assert!(!v.sealed, "the second segment was not closed");
}

#[test]
fn size_rotation_closes_each_segment_with_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.rotate_bytes = 4096;
    let log = AuditLog::open(s, "v1").unwrap();
    policy(&log, 100);
    log.close().unwrap();
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() >= 5, "{segments:?}");
    for path in &segments {
        let text = std::fs::read_to_string(path).unwrap();
        let last = parse_line(text.lines().last().unwrap()).unwrap().0;
        let Event::Checkpoint(c) = last.event else {
            panic!("{text}")
        };
        assert!(c.reason == "rotation" || c.reason == "shutdown");
        assert_eq!(c.records_in_segment as usize, text.lines().count() - 1);
        assert!(text.len() < 4096 + 1024, "rotated late: {}", text.len());
    }
    let v = verify_paths(&[dir.path().to_owned()], Some(KEY)).unwrap();
    assert!(v.ok() && v.sealed, "{v:?}");
    assert_eq!(v.records, records(dir.path()).len() as u64);
}

#[test]
fn a_torn_last_line_starts_a_recovery_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(settings(dir.path()), "v1").unwrap();
    policy(&log, 2);
    drop(log);
    let seg = list_segments(dir.path()).unwrap().pop().unwrap();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(b"{\"seq\":5,\"time\":\"2026").unwrap();
    let log = AuditLog::open(settings(dir.path()), "v1").unwrap();
    drop(log);
    let recs = records_lossy(dir.path());
    let start = recs.last().unwrap();
    assert_eq!(start.seq, 6, "continues after seq 4 (policy loaded at 5)");
    let Event::SegmentStart(_) = &recs[recs.len() - 2].event else {
        panic!()
    };
    let first_of_new = &recs[recs.len() - 2];
    assert_eq!(first_of_new.seq, 5);
    let Event::SegmentStart(s) = &first_of_new.event else {
        panic!()
    };
    assert_eq!(s.reason, "recovery");
    let v = verify_paths(&[dir.path().to_owned()], Some(KEY)).unwrap();
    assert!(v.ok(), "{v:?}");
    assert!(
        v.warnings
            .iter()
            .any(|w| w.contains("incomplete last line")),
        "{v:?}"
    );
}

/// Records of complete lines only.
fn records_lossy(dir: &Path) -> Vec<crate::audit::record::Record> {
    let mut out = Vec::new();
    for path in list_segments(dir).unwrap() {
        for line in std::fs::read_to_string(&path)
            .unwrap()
            .split_inclusive('\n')
        {
            if let Some(line) = line.strip_suffix('\n') {
                out.push(parse_line(line).unwrap().0);
            }
        }
    }
    out
}

#[test]
fn concurrent_appends_with_fsync_always_form_one_gapless_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.fsync = FsyncMode::Always;
    s.rotate_bytes = 16 * 1024;
    let log = AuditLog::open(s, "v1").unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..50)
                    .map(|_| log.policy_event("reloaded", "v", None).unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 400);
    assert_eq!(log.queue_depth(), 0);
    assert!(log.records_written() >= 402);
    log.close().unwrap();
    let v = verify_paths(&[dir.path().to_owned()], Some(KEY)).unwrap();
    assert!(v.ok() && v.sealed, "{v:?}");
}

#[test]
fn a_write_error_fails_the_log_until_a_fresh_segment_works() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(settings(dir.path()), "v1").unwrap();
    {
        // Every write to /dev/full fails with ENOSPC, like a full disk.
        let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
        log.lock().file = Some(Arc::new(full));
    }
    let first = log.policy_event("reloaded", "v2", None);
    assert!(matches!(first, Err(AuditError::Io(_))), "{first:?}");
    assert!(log.is_failed());
    let again = log.policy_event("reloaded", "v2", None);
    assert!(
        matches!(again, Err(AuditError::Unavailable(_))),
        "{again:?}"
    );
    // The next attempt after the retry interval opens a recovery segment.
    if let Some(f) = log.lock().failure.as_mut() {
        f.last_attempt = Instant::now() - RETRY_INTERVAL;
    }
    assert_eq!(log.policy_event("reloaded", "v3", None).unwrap(), 4);
    assert!(!log.is_failed());
    log.close().unwrap();
    let recs = records(dir.path());
    let Event::SegmentStart(s) = &recs[2].1.event else {
        panic!("{recs:?}")
    };
    assert_eq!(s.reason, "recovery");
    assert_eq!(s.previous_segment.as_deref(), Some(recs[0].0.as_str()));
    let v = verify_paths(&[dir.path().to_owned()], Some(KEY)).unwrap();
    assert!(v.ok() && v.sealed, "{v:?}");
}

#[test]
fn short_keys_and_corrupt_heads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        AuditLog::open(AuditSettings::new(dir.path(), b"short".to_vec()), "v"),
        Err(AuditError::Key(_))
    ));
    let log = AuditLog::open(settings(dir.path()), "v1").unwrap();
    drop(log);
    let seg = list_segments(dir.path()).unwrap().pop().unwrap();
    let text = std::fs::read_to_string(&seg)
        .unwrap()
        .replace("loaded", "LOADED");
    std::fs::write(&seg, text).unwrap();
    assert!(matches!(
        AuditLog::open(settings(dir.path()), "v1"),
        Err(AuditError::Continue { .. })
    ));
}

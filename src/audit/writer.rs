//! The audit log writer: appends sealed records to segment files in a directory, continues the
//! chain across files and restarts, rotates, checkpoints, syncs, and fails closed.
//!
//! # Durability
//!
//! A record is written with one `write(2)` on an `O_APPEND` file, synchronously in the caller,
//! before the caller's statement is forwarded or its block answered. Once `write` returns the
//! bytes are in the kernel, so a crash of the proxy (kill -9) cannot lose the record of a
//! statement that was forwarded; only a crash of the machine can, within the sync cadence:
//!
//! - `interval` (default): a background thread `fdatasync`s every `fsync_interval_ms` when
//!   anything was written (one sync covers every record since the last: group commit);
//! - `always`: the caller waits until a sync covers its record; whoever finds no sync running
//!   starts one for everything written so far and the others wait on a condition variable;
//! - `never`: syncs only when a segment is closed.
//!
//! # Concurrency
//!
//! Callers serialise their event outside the lock. Under one `std::sync::Mutex` the writer
//! assigns `seq` and `prev`, seals the line and writes it: the chain is a total order, so this
//! part is inherently serial, and it is kept to formatting, one SHA-256 and one `write`.
//!
//! # Failure
//!
//! When a write fails (disk full, I/O error, a vanished directory) the log enters a failed
//! state: every append fails with [`AuditError::Unavailable`] (the observer blocks the
//! statement with SQLSTATE 58030). An append at least [`RETRY_INTERVAL`] after the last attempt
//! tries a fresh segment file (`segment_start` reason `recovery`, naming the previous file);
//! when that works the log is back. The abandoned file may end with a partial line, which
//! `audit verify` reports as such; the chain continues from the last complete record.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

use super::record::{
    self, checkpoint_mac, key_id, seal, Checkpoint, ConnectionEvent, Event, PolicyEvent,
    SegmentStart, GENESIS,
};
use crate::config::{AuditConfig, AuditFailure, FsyncMode};

/// A failed log retries a fresh segment at most this often.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest checkpoint key accepted.
pub const MIN_KEY_BYTES: usize = 16;
/// Attempts to take the lock before sleeping on it (about 20 µs of spinning).
const LOCK_SPINS: u32 = 200;
/// How far back the last line of a segment is searched for at start.
const MAX_TAIL_SCAN: u64 = 256 << 20;
/// Permission bits of segment files (owner read/write, group read).
#[cfg(unix)]
const SEGMENT_MODE: u32 = 0o640;

#[derive(Debug, Error)]
pub enum AuditError {
    #[error("audit checkpoint key: {0}")]
    Key(String),
    #[error("cannot use the audit directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot continue the audit chain from {file}: {why}")]
    Continue { file: PathBuf, why: String },
    #[error("cannot write the audit log: {0}")]
    Io(#[from] std::io::Error),
    #[error("the audit log is not writable since an earlier error: {0}")]
    Unavailable(String),
    #[error("cannot serialise an audit record: {0}")]
    Serialise(String),
    #[error("the audit log is closed")]
    Closed,
}

/// Everything the writer needs, resolved from [`AuditConfig`].
#[derive(Clone)]
pub struct AuditSettings {
    pub dir: PathBuf,
    pub fsync: FsyncMode,
    pub fsync_interval: Duration,
    /// 0: no size rotation.
    pub rotate_bytes: u64,
    pub rotate_after: Option<Duration>,
    pub checkpoint_every: Option<Duration>,
    pub key: Vec<u8>,
    pub on_failure: AuditFailure,
}

impl std::fmt::Debug for AuditSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSettings")
            .field("dir", &self.dir)
            .field("fsync", &self.fsync)
            .field("rotate_bytes", &self.rotate_bytes)
            .field("key_id", &key_id(&self.key))
            .finish_non_exhaustive()
    }
}

impl AuditSettings {
    /// Resolve the key and durations of a configuration section.
    pub fn from_config(config: &AuditConfig) -> Result<Self, AuditError> {
        let source = config.checkpoint_key.source().ok_or_else(|| {
            AuditError::Key("give exactly one of `env: VARIABLE` or `file: PATH`".into())
        })?;
        let key =
            crate::auth::resolve_password(&source).map_err(|e| AuditError::Key(e.to_string()))?;
        let settings = AuditSettings {
            dir: config.dir.clone(),
            fsync: config.fsync,
            fsync_interval: Duration::from_millis(config.fsync_interval_ms.max(1)),
            rotate_bytes: config.rotate_bytes,
            rotate_after: (config.rotate_seconds > 0)
                .then(|| Duration::from_secs(config.rotate_seconds)),
            checkpoint_every: (config.checkpoint_seconds > 0)
                .then(|| Duration::from_secs(config.checkpoint_seconds)),
            key: key.into_bytes(),
            on_failure: config.on_failure,
        };
        settings.check_key()?;
        Ok(settings)
    }

    /// Defaults of the configuration with the given directory and key (tests, quickstart).
    pub fn new(dir: impl Into<PathBuf>, key: impl Into<Vec<u8>>) -> Self {
        AuditSettings {
            dir: dir.into(),
            fsync: FsyncMode::Interval,
            fsync_interval: Duration::from_millis(100),
            rotate_bytes: 64 << 20,
            rotate_after: None,
            checkpoint_every: Some(Duration::from_secs(60)),
            key: key.into(),
            on_failure: AuditFailure::Block,
        }
    }

    fn check_key(&self) -> Result<(), AuditError> {
        if self.key.len() < MIN_KEY_BYTES {
            return Err(AuditError::Key(format!(
                "the key must be at least {MIN_KEY_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

/// The audit log of one proxy process. Cheap to share (`Arc`); every method is synchronous.
pub struct AuditLog {
    settings: AuditSettings,
    key_id: String,
    /// Random per process: distinguishes restarts in `instance` and `session_id`.
    instance: String,
    inner: Mutex<Inner>,
    /// Signalled when a sync finishes (fsync `always` waiters).
    synced: Condvar,
    /// Records written since start.
    written: AtomicU64,
    /// Callers inside an append (waiting for the lock, writing, or waiting for a sync).
    in_flight: AtomicUsize,
    /// Mirrors `Inner::failure.is_some()` for lock-free reads (metrics, health).
    failed: AtomicBool,
    closed: AtomicBool,
}

/// What the lock protects: the chain head and the open segment.
pub(crate) struct Inner {
    pub(crate) file: Option<Arc<File>>,
    /// Name of the current (or, when failed, the last) segment file.
    segment: Option<String>,
    segment_bytes: u64,
    segment_records: u64,
    segment_opened: Instant,
    next_seq: u64,
    prev: String,
    /// Highest seq written to the current file, and the highest known to be synced.
    written_seq: u64,
    synced_seq: u64,
    syncing: bool,
    last_checkpoint: Instant,
    /// Records written since the last checkpoint (interval checkpoints only when non-zero).
    since_checkpoint: u64,
    failure: Option<Failure>,
}

struct Failure {
    error: String,
    last_attempt: Instant,
}

impl AuditLog {
    /// Open the log in `settings.dir`, continuing the chain of the newest segment there, and
    /// write a `segment_start` and a `policy` `loaded` record. Starts the background thread
    /// (syncs, interval checkpoints, age rotation), which stops when the log is dropped.
    pub fn open(settings: AuditSettings, policy_version: &str) -> Result<Arc<Self>, AuditError> {
        settings.check_key()?;
        std::fs::create_dir_all(&settings.dir).map_err(|source| AuditError::Dir {
            dir: settings.dir.clone(),
            source,
        })?;
        let head = find_chain_head(&settings.dir)?;
        let now = Instant::now();
        let instance = record::to_hex(&rand::random::<[u8; 8]>());
        let log = Arc::new(AuditLog {
            key_id: key_id(&settings.key),
            settings,
            instance,
            inner: Mutex::new(Inner {
                file: None,
                segment: head.segment.clone(),
                segment_bytes: 0,
                segment_records: 0,
                segment_opened: now,
                next_seq: head.next_seq,
                prev: head.prev,
                written_seq: 0,
                synced_seq: 0,
                syncing: false,
                last_checkpoint: now,
                since_checkpoint: 0,
                failure: None,
            }),
            synced: Condvar::new(),
            written: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        {
            let mut inner = log.lock();
            let reason = if head.torn { "recovery" } else { "start" };
            log.start_segment(&mut inner, reason)?;
        }
        log.policy_event("loaded", policy_version, None)?;
        let weak = Arc::downgrade(&log);
        std::thread::Builder::new()
            .name("pgpurpose-audit".into())
            .spawn(move || background(weak))
            .map_err(AuditError::Io)?;
        Ok(log)
    }

    /// Random id of this proxy process, as written in every record.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// `<instance>-<connection_id>`.
    pub fn session_id(&self, connection_id: u64) -> String {
        format!("{}-{connection_id}", self.instance)
    }

    pub fn on_failure(&self) -> AuditFailure {
        self.settings.on_failure
    }

    /// Records written since start (metrics).
    pub fn records_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Callers currently inside an append: waiting for the lock, writing, or waiting for a
    /// sync (metrics: a growing number means the disk does not keep up).
    pub fn queue_depth(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the log is in its failed state (statements blocked unless `on_failure: allow`).
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The directory of the segment files.
    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    /// Record a policy event (`loaded`, `reloaded`, `reload_refused`; see [`PolicyEvent`]).
    pub fn policy_event(
        &self,
        event: &str,
        policy_version: &str,
        error: Option<&str>,
    ) -> Result<u64, AuditError> {
        self.append(&Event::Policy(PolicyEvent {
            event: event.to_owned(),
            policy_version: policy_version.to_owned(),
            error: error.map(str::to_owned),
        }))
    }

    pub fn connection_event(&self, event: ConnectionEvent) -> Result<u64, AuditError> {
        self.append(&Event::Connection(event))
    }

    /// Append one record; returns its seq once it is written (and, with `fsync: always`,
    /// synced).
    pub fn append(&self, event: &Event) -> Result<u64, AuditError> {
        let json =
            serde_json::to_string(event).map_err(|e| AuditError::Serialise(e.to_string()))?;
        // `{"kind":...}` → `"kind":...`: the record's own members go around it.
        let fragment = json
            .strip_prefix('{')
            .and_then(|j| j.strip_suffix('}'))
            .ok_or_else(|| AuditError::Serialise("an event is not a JSON object".into()))?;
        self.append_fragment(fragment)
    }

    /// Append a record whose event members (`"kind":...`, without braces) are already
    /// serialised.
    pub fn append_fragment(&self, fragment: &str) -> Result<u64, AuditError> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = self.append_counted(fragment);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        result
    }

    fn append_counted(&self, fragment: &str) -> Result<u64, AuditError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed);
        }
        let mut inner = self.lock();
        self.ensure_writable(&mut inner)?;
        let seq = self.write_record(&mut inner, fragment)?;
        self.maybe_rotate(&mut inner, false);
        if self.settings.fsync == FsyncMode::Always {
            self.wait_synced(inner, seq)?;
        }
        Ok(seq)
    }

    /// Write a `shutdown` checkpoint, sync and close the segment. Later appends fail.
    pub fn close(&self) -> Result<(), AuditError> {
        let mut inner = self.lock();
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if inner.failure.is_some() || inner.file.is_none() {
            return Err(AuditError::Unavailable(
                "the last segment could not be sealed".into(),
            ));
        }
        self.write_checkpoint(&mut inner, "shutdown")?;
        if let Some(file) = inner.file.take() {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Tests elsewhere in the crate swap the open file for one that fails.
    #[cfg(test)]
    pub(crate) fn lock_for_tests(&self) -> MutexGuard<'_, Inner> {
        self.lock()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The lock is held for one write(2) (a few µs). Spin that long before sleeping: a
        // sleeping waiter must be woken and scheduled again, which on a loaded machine costs
        // far more than the wait itself.
        for _ in 0..LOCK_SPINS {
            match self.inner.try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    for _ in 0..8 {
                        std::hint::spin_loop();
                    }
                }
            }
        }
        // A panic while holding the lock cannot leave the chain inconsistent: the head only
        // moves after a successful write.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// In the failed state, retry (at most every [`RETRY_INTERVAL`]) with a fresh segment.
    fn ensure_writable(&self, inner: &mut Inner) -> Result<(), AuditError> {
        let Some(failure) = &mut inner.failure else {
            return Ok(());
        };
        if failure.last_attempt.elapsed() < RETRY_INTERVAL {
            return Err(AuditError::Unavailable(failure.error.clone()));
        }
        failure.last_attempt = Instant::now();
        match self.start_segment(inner, "recovery") {
            Ok(()) => {
                inner.failure = None;
                self.failed.store(false, Ordering::Relaxed);
                tracing::warn!(segment = ?inner.segment, "the audit log is writable again");
                Ok(())
            }
            Err(error) => Err(AuditError::Unavailable(error.to_string())),
        }
    }

    fn fail(&self, inner: &mut Inner, error: &std::io::Error) {
        if inner.failure.is_none() {
            tracing::error!(%error, dir = %self.settings.dir.display(), "cannot write the audit log; statements are blocked until it can be written");
        }
        inner.failure = Some(Failure {
            error: error.to_string(),
            last_attempt: Instant::now(),
        });
        inner.file = None;
        self.failed.store(true, Ordering::Relaxed);
        // Waiters for a sync of the abandoned file must not wait forever.
        self.synced.notify_all();
    }

    /// Seal and write one record under the lock; the chain head moves only on success.
    fn write_record(&self, inner: &mut Inner, fragment: &str) -> Result<u64, AuditError> {
        let Some(file) = inner.file.clone() else {
            return Err(AuditError::Unavailable("no open segment".into()));
        };
        let seq = inner.next_seq;
        let time = record::format_time(SystemTime::now());
        let mut unsealed = String::with_capacity(fragment.len() + 200);
        unsealed.push_str("{\"seq\":");
        unsealed.push_str(&seq.to_string());
        unsealed.push_str(",\"time\":\"");
        unsealed.push_str(&time);
        unsealed.push_str("\",\"instance\":\"");
        unsealed.push_str(&self.instance);
        unsealed.push_str("\",");
        unsealed.push_str(fragment);
        unsealed.push_str(",\"prev\":\"");
        unsealed.push_str(&inner.prev);
        unsealed.push_str("\"}");
        let (mut line, hash) = seal(&unsealed);
        line.push('\n');
        if let Err(error) = (&*file).write_all(line.as_bytes()) {
            self.fail(inner, &error);
            return Err(AuditError::Io(error));
        }
        inner.next_seq += 1;
        inner.prev = hash;
        inner.written_seq = seq;
        inner.segment_bytes += line.len() as u64;
        inner.segment_records += 1;
        inner.since_checkpoint += 1;
        self.written.fetch_add(1, Ordering::Relaxed);
        Ok(seq)
    }

    fn write_checkpoint(&self, inner: &mut Inner, reason: &str) -> Result<u64, AuditError> {
        let event = Event::Checkpoint(Checkpoint {
            reason: reason.to_owned(),
            records_in_segment: inner.segment_records,
            key_id: self.key_id.clone(),
            mac: checkpoint_mac(&self.settings.key, inner.next_seq, &inner.prev),
        });
        let json =
            serde_json::to_string(&event).map_err(|e| AuditError::Serialise(e.to_string()))?;
        let fragment = &json[1..json.len() - 1];
        let seq = self.write_record(inner, fragment)?;
        inner.last_checkpoint = Instant::now();
        inner.since_checkpoint = 0;
        Ok(seq)
    }

    /// Open a new segment file and write its `segment_start`. On failure the log is failed.
    fn start_segment(&self, inner: &mut Inner, reason: &str) -> Result<(), AuditError> {
        let name = record::segment_file_name(inner.next_seq, SystemTime::now());
        let path = self.settings.dir.join(&name);
        let file = match create_segment(&path) {
            Ok(f) => f,
            Err(error) => {
                self.fail(inner, &error);
                return Err(AuditError::Io(error));
            }
        };
        let previous = inner.segment.replace(name);
        inner.file = Some(Arc::new(file));
        inner.segment_bytes = 0;
        inner.segment_records = 0;
        inner.segment_opened = Instant::now();
        inner.written_seq = 0;
        inner.synced_seq = 0;
        let event = Event::SegmentStart(SegmentStart {
            previous_segment: previous,
            reason: reason.to_owned(),
        });
        let json =
            serde_json::to_string(&event).map_err(|e| AuditError::Serialise(e.to_string()))?;
        self.write_record(inner, &json[1..json.len() - 1])?;
        // The new directory entry must survive a machine crash along with the records.
        if let Err(error) = File::open(&self.settings.dir).and_then(|d| d.sync_all()) {
            self.fail(inner, &error);
            return Err(AuditError::Io(error));
        }
        Ok(())
    }

    /// Rotate when the segment is big or old enough: checkpoint, sync, open the next file.
    /// A failure here puts the log in the failed state for the next append; the record that
    /// triggered it was already written.
    fn maybe_rotate(&self, inner: &mut Inner, by_timer: bool) {
        if inner.file.is_none() {
            return;
        }
        let by_size =
            self.settings.rotate_bytes > 0 && inner.segment_bytes >= self.settings.rotate_bytes;
        let by_age = self
            .settings
            .rotate_after
            .is_some_and(|age| inner.segment_opened.elapsed() >= age && inner.segment_records > 1);
        // The timer only rotates by age; an append by size or age.
        let rotate = if by_timer { by_age } else { by_size || by_age };
        if !rotate {
            return;
        }
        if self.write_checkpoint(inner, "rotation").is_err() {
            return;
        }
        if let Some(file) = inner.file.take() {
            if let Err(error) = file.sync_data() {
                self.fail(inner, &error);
                return;
            }
        }
        let _ = self.start_segment(inner, "rotation");
    }

    /// fsync `always`: wait until a sync covers `seq`, running it if nobody is (group commit).
    fn wait_synced<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        seq: u64,
    ) -> Result<(), AuditError> {
        // A rotation after the write synced the old file and reset the counters: the record
        // is durable when its file is no longer the open one.
        let file_of_seq = inner.file.clone();
        loop {
            if inner.synced_seq >= seq {
                return Ok(());
            }
            // A failed sync abandons the file: its records are not known to be durable.
            if let Some(failure) = &inner.failure {
                return Err(AuditError::Unavailable(failure.error.clone()));
            }
            if !same_file(&inner.file, &file_of_seq) {
                return Ok(());
            }
            if inner.syncing {
                inner = self.synced.wait(inner).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let Some(file) = inner.file.clone() else {
                return Err(AuditError::Unavailable("no open segment".into()));
            };
            inner.syncing = true;
            let target = inner.written_seq;
            drop(inner);
            let result = file.sync_data();
            inner = self.lock();
            inner.syncing = false;
            match result {
                Ok(()) if same_file(&inner.file, &Some(file)) => {
                    inner.synced_seq = inner.synced_seq.max(target);
                }
                Ok(()) => {}
                Err(error) => self.fail(&mut inner, &error),
            }
            self.synced.notify_all();
        }
    }

    /// One pass of the background thread: sync, interval checkpoint, age rotation.
    fn tick(&self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.lock();
        if inner.failure.is_some() {
            return;
        }
        if let Some(every) = self.settings.checkpoint_every {
            if inner.since_checkpoint > 0 && inner.last_checkpoint.elapsed() >= every {
                let _ = self.write_checkpoint(&mut inner, "interval");
            }
        }
        self.maybe_rotate(&mut inner, true);
        if self.settings.fsync != FsyncMode::Interval
            || inner.syncing
            || inner.written_seq <= inner.synced_seq
        {
            return;
        }
        let Some(file) = inner.file.clone() else {
            return;
        };
        let target = inner.written_seq;
        inner.syncing = true;
        drop(inner);
        let result = file.sync_data();
        let mut inner = self.lock();
        inner.syncing = false;
        match result {
            Ok(()) if same_file(&inner.file, &Some(file)) => {
                inner.synced_seq = inner.synced_seq.max(target)
            }
            Ok(()) => {}
            Err(error) => self.fail(&mut inner, &error),
        }
        self.synced.notify_all();
    }
}

fn same_file(a: &Option<Arc<File>>, b: &Option<Arc<File>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// The background thread: ticks until the log is dropped.
fn background(log: Weak<AuditLog>) {
    let period = match log.upgrade() {
        Some(l) => l.settings.fsync_interval.min(Duration::from_secs(1)),
        None => return,
    };
    loop {
        std::thread::sleep(period);
        let Some(log) = log.upgrade() else { return };
        if log.closed.load(Ordering::Acquire) {
            return;
        }
        log.tick();
    }
}

fn create_segment(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(SEGMENT_MODE);
    }
    options.open(path)
}

/// Where the chain continues: the last complete record of the newest segment that has one.
struct ChainHead {
    next_seq: u64,
    prev: String,
    segment: Option<String>,
    /// The newest segment ends with a partial line (a crash or a failed write).
    torn: bool,
}

/// Segment files in `dir`, sorted by their first seq (name order).
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if record::segment_first_seq(name).is_some() && entry.file_type()?.is_file() {
            segments.push(entry.path());
        }
    }
    segments.sort();
    Ok(segments)
}

fn find_chain_head(dir: &Path) -> Result<ChainHead, AuditError> {
    let dir_err = |source| AuditError::Dir {
        dir: dir.to_owned(),
        source,
    };
    let segments = list_segments(dir).map_err(dir_err)?;
    let mut torn = false;
    for path in segments.iter().rev() {
        let cont = |why: String| AuditError::Continue {
            file: path.clone(),
            why,
        };
        let (last, partial) = last_complete_line(path).map_err(|e| cont(e.to_string()))?;
        torn |= partial;
        let Some(line) = last else { continue };
        let (rec, claimed) = record::parse_line(&line).map_err(|e| cont(e.to_string()))?;
        let (unsealed, _) = record::unseal(&line).map_err(|e| cont(e.to_string()))?;
        if record::hash_unsealed(unsealed.as_bytes()) != claimed {
            return Err(cont(format!(
                "its last record (seq {}) does not match its hash; run `pgpurpose audit verify`",
                rec.seq
            )));
        }
        return Ok(ChainHead {
            next_seq: rec.seq + 1,
            prev: claimed,
            segment: path.file_name().and_then(|n| n.to_str()).map(str::to_owned),
            torn,
        });
    }
    Ok(ChainHead {
        next_seq: 1,
        prev: GENESIS.to_owned(),
        segment: None,
        torn,
    })
}

/// The last newline-terminated line of a file, and whether bytes follow it (a torn line).
fn last_complete_line(path: &Path) -> std::io::Result<(Option<String>, bool)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(MAX_TAIL_SCAN);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut bytes)?;
    let Some(last_nl) = bytes.iter().rposition(|b| *b == b'\n') else {
        return Ok((None, !bytes.is_empty()));
    };
    let torn = last_nl + 1 < bytes.len();
    let begin = bytes[..last_nl]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    if begin == 0 && start > 0 {
        return Err(std::io::Error::other(
            "the last line is longer than the scan limit",
        ));
    }
    let line = String::from_utf8(bytes[begin..last_nl].to_vec())
        .map_err(|_| std::io::Error::other("the last line is not UTF-8"))?;
    Ok((Some(line), torn))
}

#[cfg(test)]
mod tests;

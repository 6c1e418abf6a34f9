use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::audit::reader::testlog::*;
use crate::audit::record::{ConnectionEventKind, Decision};

fn t(n: u32) -> String {
    format!("2026-11-23T10:00:{:02}.000000Z", n)
}

fn ads_block() -> Event {
    statement(
        "ads",
        "advertising",
        Decision::Block,
        "f1",
        "SELECT id FROM users WHERE phone = ?",
        "forbidden-predicate",
        &[
            ("public.users", "id", "output", None, true, false),
            (
                "public.users",
                "phone",
                "predicate",
                Some(&["security"]),
                false,
                false,
            ),
        ],
    )
}

fn auth_allow() -> Event {
    statement(
        "auth",
        "security.authentication",
        Decision::Allow,
        "f2",
        "SELECT hash FROM app.credentials",
        "allow",
        &[(
            "app.credentials",
            "hash",
            "output",
            Some(&["security"]),
            true,
            false,
        )],
    )
}

fn args(path: &Path) -> TailArgs {
    TailArgs {
        path: path.to_owned(),
        follow: false,
        lines: Lines::All,
        service: None,
        purpose: None,
        decision: None,
        table: None,
        kind: None,
        json: false,
    }
}

fn run(a: &TailArgs) -> Vec<String> {
    let mut out = Vec::new();
    tail(a, &mut out, &|| true).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn fixture(dir: &Path) -> Vec<String> {
    let mut log = LogBuilder::default();
    let lines = vec![
        log.line(&t(0), segment_start()),
        log.line(
            &t(1),
            connection(ConnectionEventKind::Authenticated, Some("ads")),
        ),
        log.line(&t(2), ads_block()),
        log.line(&t(3), auth_allow()),
        log.line(&t(4), ads_block()),
    ];
    std::fs::write(dir.join("pgpurpose-audit-1.jsonl"), lines.join("\n") + "\n").unwrap();
    lines
}

#[test]
fn filters_select_records() {
    let dir = tempfile::tempdir().unwrap();
    let raw = fixture(dir.path());
    let a = args(dir.path());
    assert_eq!(run(&a).len(), 5);

    let only = |f: &dyn Fn(&mut TailArgs)| {
        let mut a = args(dir.path());
        f(&mut a);
        run(&a)
    };
    let blocks = only(&|a| a.decision = Some(DecisionArg::Block));
    assert_eq!(blocks.len(), 2);
    assert!(
        blocks[0].starts_with(&format!("{} #3 ads/advertising BLOCK", t(2))),
        "{}",
        blocks[0]
    );
    assert!(
        blocks[0].contains("rule=forbidden-predicate fp=f1 SELECT id FROM users WHERE phone = ?")
    );
    assert!(blocks[0].ends_with("[sqlstate 42501]"));

    assert_eq!(
        only(&|a| a.service = Some("ads".into())).len(),
        3,
        "statements and connection"
    );
    assert_eq!(only(&|a| a.purpose = Some("security".into())).len(), 1);
    assert_eq!(only(&|a| a.table = Some("app.credentials".into())).len(), 1);
    assert_eq!(
        only(&|a| a.table = Some("users".into())).len(),
        2,
        "bare table name"
    );
    assert_eq!(only(&|a| a.table = Some("other.users".into())).len(), 0);
    let conns = only(&|a| a.kind = Some(Kind::Connection));
    assert_eq!(conns.len(), 1);
    assert!(conns[0].contains("connection authenticated ads/analytics from 127.0.0.1:40000"));
    assert_eq!(
        only(&|a| {
            a.kind = Some(Kind::Statement);
            a.service = Some("auth".into());
            a.decision = Some(DecisionArg::Block);
        })
        .len(),
        0
    );
    // --json prints the log's own bytes; --lines keeps the last N.
    let json = only(&|a| {
        a.json = true;
        a.lines = Lines::Last(2);
    });
    assert_eq!(json, raw[3..].to_vec());
    assert_eq!("all".parse::<Lines>().unwrap(), Lines::All);
    assert_eq!("3".parse::<Lines>().unwrap(), Lines::Last(3));
    assert!("x".parse::<Lines>().is_err());
}

#[test]
fn control_characters_in_logged_sql_cannot_reach_the_terminal() {
    let mut log = LogBuilder::default();
    let event = statement(
        "s",
        "p",
        Decision::Allow,
        "f",
        "SELECT \"\u{1b}]0;x\u{7}\"",
        "r",
        &[],
    );
    let record = log.record(&t(1), event);
    let l = line(&record);
    assert!(!l.chars().any(char::is_control), "{l:?}");
    assert!(l.contains("\\u{1b}]0;x\\u{7}"));
}

/// A writer that the test can read while `tail` holds it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..50 {
            if self.lines().len() >= n {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.lines()
    }
}

#[test]
fn follow_prints_appended_records_and_moves_to_a_new_segment() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let mut log = LogBuilder::default();
    let first = dir.path().join("pgpurpose-audit-1.jsonl");
    std::fs::write(&first, log.line(&t(0), segment_start()) + "\n").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let out = Shared::default();
    let mut a = args(dir.path());
    a.follow = true;
    a.lines = Lines::Last(0);
    a.decision = Some(DecisionArg::Block);
    let handle = {
        let (stop, mut out) = (stop.clone(), out.clone());
        std::thread::spawn(move || tail(&a, &mut out, &|| stop.load(Ordering::SeqCst)))
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&first)
        .unwrap();
    let l = log.line(&t(1), ads_block());
    // Half a line first: nothing is printed until its newline arrives.
    f.write_all(&l.as_bytes()[..20]).unwrap();
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(out.lines().len(), 0);
    f.write_all(&l.as_bytes()[20..]).unwrap();
    f.write_all(b"\n").unwrap();
    writeln!(f, "{}", log.line(&t(2), auth_allow())).unwrap();
    assert_eq!(out.wait_for(1).len(), 1);

    // Rotation: a last record in the old file, then a new segment.
    writeln!(f, "{}", log.line(&t(3), ads_block())).unwrap();
    drop(f);
    let second = dir.path().join("pgpurpose-audit-0-next.jsonl");
    let lines = [
        log.line(&t(4), segment_start()),
        log.line(&t(5), ads_block()),
    ];
    std::fs::write(&second, lines.join("\n") + "\n").unwrap();
    let got = out.wait_for(3);
    stop.store(true, Ordering::SeqCst);
    handle.join().unwrap().unwrap();
    let seqs: Vec<&str> = got.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(seqs, vec!["#2", "#4", "#6"], "{got:#?}");
}

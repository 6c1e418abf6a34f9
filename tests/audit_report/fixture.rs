//! The fixture log of `audit_report.rs`: realistic records, sealed into a chain, with the
//! counts they hold tallied independently of the report's aggregation.

use std::collections::BTreeMap;
use std::path::Path;

use pgpurpose::audit::record::{
    seal, Checkpoint, ColumnUseRecord, ConnectionEvent, ConnectionEventKind, Decision, Event,
    PolicyEvent, Record, SegmentStart, StatementDetail, StatementEvent, GENESIS,
};

/// Seals records into a chain, like the writer does.
pub struct Chain {
    pub seq: u64,
    pub prev: String,
}

impl Chain {
    pub fn new() -> Self {
        Chain {
            seq: 0,
            prev: GENESIS.into(),
        }
    }

    pub fn line(&mut self, time: &str, event: Event) -> String {
        self.seq += 1;
        let record = Record {
            seq: self.seq,
            time: time.into(),
            instance: "5eed".into(),
            event,
            prev: self.prev.clone(),
        };
        let (line, hash) = seal(&serde_json::to_string(&record).unwrap());
        self.prev = hash;
        line
    }
}

pub fn time(minute: u64) -> String {
    format!(
        "2026-11-23T{:02}:{:02}:{:02}.{:06}Z",
        8 + minute / 60,
        minute % 60,
        minute % 47,
        minute * 1013 % 1_000_000
    )
}

/// (table, column, clause, tags, allowed, masked) of one column use.
pub type Use = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static [&'static str]>,
    bool,
    bool,
);

/// One kind of statement the fixture's services send.
pub struct Shape {
    pub service: &'static str,
    pub purpose: &'static str,
    pub decision: Decision,
    pub fingerprint: &'static str,
    pub sql: &'static str,
    pub rule: &'static str,
    /// (table, column, clause, tags, allowed, masked)
    pub uses: &'static [Use],
}

pub const ADV: Option<&[&str]> = Some(&["advertising"]);
pub const SEC: Option<&[&str]> = Some(&["security.authentication"]);
pub const MKT: Option<&[&str]> = Some(&["marketing", "analytics"]);

pub const SHAPES: &[Shape] = &[
    Shape {
        service: "ads-service",
        purpose: "advertising",
        decision: Decision::Allow,
        fingerprint: "a1a1a1a1a1a1a1a1",
        sql: "SELECT id, interests FROM public.users WHERE country = ? ORDER BY id LIMIT ?",
        rule: "allow",
        uses: &[
            ("public.users", "id", "output", None, true, false),
            ("public.users", "interests", "output", ADV, true, false),
            ("public.users", "country", "predicate", None, true, false),
            ("public.users", "id", "order_by", None, true, false),
        ],
    },
    Shape {
        service: "ads-service",
        purpose: "advertising",
        decision: Decision::Rewrite,
        fingerprint: "b2b2b2b2b2b2b2b2",
        sql: "SELECT email, phone, interests FROM public.users WHERE id = ?",
        rule: "mask:phone_2fa",
        uses: &[
            ("public.users", "email", "output", MKT, false, true),
            ("public.users", "phone", "output", SEC, false, true),
            ("public.users", "interests", "output", ADV, true, false),
            ("public.users", "id", "predicate", None, true, false),
        ],
    },
    Shape {
        service: "ads-service",
        purpose: "advertising",
        decision: Decision::Block,
        fingerprint: "c3c3c3c3c3c3c3c3",
        sql: "SELECT u.id FROM public.users AS u JOIN public.sessions AS s ON s.phone = u.phone",
        rule: "forbidden-use:join",
        uses: &[
            ("public.users", "id", "output", None, true, false),
            ("public.users", "phone", "join", SEC, false, false),
            ("public.sessions", "phone", "join", SEC, false, false),
        ],
    },
    Shape {
        service: "ads-service",
        purpose: "advertising",
        decision: Decision::Block,
        fingerprint: "d4d4d4d4d4d4d4d4",
        sql: "SELECT count(*) FROM public.users GROUP BY \"note, private\"",
        rule: "forbidden-use:group_by",
        uses: &[(
            "public.users",
            "note, private",
            "group_by",
            SEC,
            false,
            false,
        )],
    },
    Shape {
        service: "auth-service",
        purpose: "security.authentication",
        decision: Decision::Allow,
        fingerprint: "e5e5e5e5e5e5e5e5",
        sql: "SELECT phone FROM public.users WHERE email = ?",
        rule: "allow",
        uses: &[
            ("public.users", "phone", "output", SEC, true, false),
            ("public.users", "email", "predicate", MKT, true, false),
        ],
    },
    Shape {
        service: "auth-service",
        purpose: "security.authentication",
        decision: Decision::Block,
        fingerprint: "f6f6f6f6f6f6f6f6",
        sql: "ALTER TABLE public.users RENAME COLUMN phone TO p",
        rule: "ddl",
        uses: &[("public.users", "phone", "ddl", SEC, false, false)],
    },
    Shape {
        service: "analytics",
        purpose: "analytics.reporting",
        decision: Decision::Rewrite,
        fingerprint: "0707070707070707",
        sql: "SELECT country, count(*) FROM public.users GROUP BY country",
        rule: "row-filter",
        uses: &[("public.users", "country", "group_by", None, true, false)],
    },
    Shape {
        service: "analytics",
        purpose: "analytics.reporting",
        decision: Decision::Block,
        fingerprint: "c3c3c3c3c3c3c3c3",
        sql: "SELECT u.id FROM public.users AS u JOIN public.sessions AS s ON s.phone = u.phone",
        rule: "forbidden-use:join",
        uses: &[
            ("public.users", "id", "output", None, true, false),
            ("public.users", "phone", "join", SEC, false, false),
            ("public.sessions", "phone", "join", SEC, false, false),
        ],
    },
];

/// What the fixture holds, tallied while writing it.
#[derive(Default)]
pub struct Expected {
    pub statements: u64,
    /// (service, purpose) -> [allow, rewrite, block]
    pub decisions: BTreeMap<(String, String), [u64; 3]>,
    /// (service, table, column, clause) -> (uses, masked, denied, in_blocked)
    pub uses: BTreeMap<(String, String, String, String), [u64; 4]>,
    pub blocked: BTreeMap<String, u64>,
    pub authenticated: u64,
    pub refused: u64,
    pub closed: u64,
    /// The same, for statements in the sub-range [minute 60, minute 120).
    pub range_statements: u64,
    pub range_block: u64,
}

pub fn statement_event(shape: &Shape, conn: u64, policy: &str) -> Event {
    let uses: Vec<ColumnUseRecord> = shape
        .uses
        .iter()
        .map(|(t, c, clause, tags, allowed, masked)| ColumnUseRecord {
            table: (*t).into(),
            column: (*c).into(),
            clause: (*clause).into(),
            tags: tags.map(|ts| ts.iter().map(|s| (*s).to_owned()).collect()),
            allowed: *allowed,
            masked: *masked,
        })
        .collect();
    Event::Statement(StatementEvent {
        connection_id: conn,
        session_id: format!("5eed-{conn}"),
        service: shape.service.into(),
        purpose: shape.purpose.into(),
        client_addr: format!("10.0.0.{conn}:5{conn:04}"),
        database: "app".into(),
        protocol: if conn % 2 == 0 { "simple" } else { "extended" }.into(),
        fingerprint: shape.fingerprint.into(),
        sql: shape.sql.into(),
        decision: shape.decision,
        rule: shape.rule.into(),
        statements: vec![StatementDetail {
            statement_kind: "SELECT".into(),
            rule: shape.rule.into(),
            masked: uses
                .iter()
                .filter(|u| u.masked)
                .map(|u| u.column.clone())
                .collect(),
            uses,
            row_filtered: vec![],
            grants_used: vec![],
        }],
        rewrite: (shape.decision == Decision::Rewrite).then(|| format!("{} -- masked", shape.sql)),
        sqlstate: (shape.decision == Decision::Block).then(|| "42501".into()),
        cached: conn % 3 == 0,
        policy_version: policy.into(),
        catalog_version: 1,
    })
}

pub fn connection_event(kind: ConnectionEventKind, conn: u64, shape: Option<&Shape>) -> Event {
    Event::Connection(ConnectionEvent {
        connection_id: conn,
        session_id: format!("5eed-{conn}"),
        client_addr: format!("10.0.0.{conn}:5{conn:04}"),
        event: kind,
        service: shape.map(|s| s.service.into()),
        purpose: shape.map(|s| s.purpose.into()),
        database: shape.map(|_| "app".into()),
        sqlstate: (kind == ConnectionEventKind::Refused).then(|| "28P01".into()),
        reason: (kind == ConnectionEventKind::Refused)
            .then(|| "password authentication failed".into()),
    })
}

/// Write the fixture log (two segments) into `dir` and return what it holds.
pub fn write_fixture(dir: &Path) -> Expected {
    let mut exp = Expected::default();
    let mut chain = Chain::new();
    let mut seg1 = vec![
        chain.line(
            &time(0),
            Event::SegmentStart(SegmentStart {
                previous_segment: None,
                reason: "start".into(),
            }),
        ),
        chain.line(
            &time(0),
            Event::Policy(PolicyEvent {
                event: "loaded".into(),
                policy_version: "sha256:1111".into(),
                error: None,
            }),
        ),
    ];
    let mut seg2 = Vec::new();
    let mut minute = 1;
    for round in 0..30u64 {
        if round == 15 {
            // Rotation: a checkpoint closes segment 1, segment 2 starts, the policy is reloaded.
            seg1.push(chain.line(
                &time(minute),
                Event::Checkpoint(Checkpoint {
                    reason: "rotation".into(),
                    records_in_segment: seg1.len() as u64,
                    key_id: "00112233445566aa".into(),
                    mac: "ab".repeat(32),
                }),
            ));
            seg2.push(chain.line(
                &time(minute),
                Event::SegmentStart(SegmentStart {
                    previous_segment: Some("pgpurpose-audit-20261123T080000Z.jsonl".into()),
                    reason: "rotation".into(),
                }),
            ));
            seg2.push(chain.line(
                &time(minute),
                Event::Policy(PolicyEvent {
                    event: "reloaded".into(),
                    policy_version: "sha256:2222".into(),
                    error: None,
                }),
            ));
        }
        let target = if round < 15 { &mut seg1 } else { &mut seg2 };
        let policy = if round < 15 {
            "sha256:1111"
        } else {
            "sha256:2222"
        };
        let conn = round + 1;
        if round % 7 == 3 {
            target.push(chain.line(
                &time(minute),
                connection_event(ConnectionEventKind::Refused, conn, None),
            ));
            exp.refused += 1;
            minute += 1;
            continue;
        }
        // Each round is one session of one service sending some of its shapes.
        let services = ["ads-service", "auth-service", "analytics"];
        let service = services[(round % 3) as usize];
        let shapes: Vec<&Shape> = SHAPES.iter().filter(|s| s.service == service).collect();
        target.push(chain.line(
            &time(minute),
            connection_event(ConnectionEventKind::Authenticated, conn, Some(shapes[0])),
        ));
        exp.authenticated += 1;
        for k in 0..(2 + round % 4) {
            minute += 1;
            let shape = shapes[((round + k) % shapes.len() as u64) as usize];
            target.push(chain.line(&time(minute), statement_event(shape, conn, policy)));
            exp.statements += 1;
            let d = exp
                .decisions
                .entry((shape.service.into(), shape.purpose.into()))
                .or_default();
            d[match shape.decision {
                Decision::Allow => 0,
                Decision::Rewrite => 1,
                Decision::Block => 2,
            }] += 1;
            let blocked = shape.decision == Decision::Block;
            if blocked {
                *exp.blocked.entry(shape.fingerprint.into()).or_default() += 1;
            }
            if (60..120).contains(&minute) {
                exp.range_statements += 1;
                exp.range_block += u64::from(blocked);
            }
            for (t, c, clause, _, allowed, masked) in shape.uses {
                let u = exp
                    .uses
                    .entry((
                        shape.service.into(),
                        (*t).into(),
                        (*c).into(),
                        (*clause).into(),
                    ))
                    .or_default();
                u[0] += 1;
                u[1] += u64::from(*masked);
                u[2] += u64::from(!allowed);
                u[3] += u64::from(blocked);
            }
        }
        minute += 1;
        target.push(chain.line(
            &time(minute),
            connection_event(ConnectionEventKind::Closed, conn, Some(shapes[0])),
        ));
        exp.closed += 1;
        minute += 1;
    }
    std::fs::write(
        dir.join("pgpurpose-audit-20261123T080000Z.jsonl"),
        seg1.join("\n") + "\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("pgpurpose-audit-20261123T090000Z.jsonl"),
        seg2.join("\n") + "\n",
    )
    .unwrap();
    exp
}

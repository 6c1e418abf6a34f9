//! The data path: what a client receives for queries, COPY, notices, notifications,
//! transactions, pipelined errors and cancels, compared with the same exchange made directly.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Row, SimpleQueryMessage};

use crate::common::pgclient::{self, code_of, raw_rows, Event, RawValue};
use crate::common::raw::{self, RawConn};
use crate::{cluster, direct, proxied, start_proxy, SERVICE};

/// Simple-query results as text: one line per row (`|` between values, `∅` for NULL) and
/// one `complete N` per statement (row descriptions left out).
async fn simple_lines(client: &Client, sql: &str) -> Vec<String> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("∅").to_owned())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            SimpleQueryMessage::CommandComplete(n) => Some(format!("complete {n}")),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn simple_query_results_match_direct() {
    let (_cfg, proxy) = start_proxy();
    let via = proxied(proxy.port()).await;
    let reference = direct().await;
    // Several statements in one Query, text results of several types, an empty result.
    let sql = "SELECT 1 AS one, 'two'::text, NULL::int, 3.50::numeric, '\\x0a0b'::bytea, \
               ARRAY[1, 2], 'it''s'::text;
               SELECT g, repeat('x', g) FROM generate_series(1, 200) g;
               SELECT 1 WHERE false;
               VALUES ('a'), ('b')";
    let got = simple_lines(&via, sql).await;
    assert_eq!(got, simple_lines(&reference, sql).await);
    assert_eq!(got[0], "1|two|∅|3.50|\\x0a0b|{1,2}|it's");
    assert_eq!(got[1], "complete 1");
    assert_eq!(got[2], "1|x");
    assert_eq!(got[201], "200|".to_owned() + &"x".repeat(200));
    assert_eq!(got[202], "complete 200");
    assert_eq!(&got[203..], ["complete 0", "a", "b", "complete 2"]);
}

#[tokio::test]
async fn extended_protocol_named_statement_reused_and_unnamed() {
    let (_cfg, proxy) = start_proxy();
    let c = proxied(proxy.port()).await;

    // Named: prepared once, executed with different parameters several times.
    let text = "SELECT $1::int4 * 2 AS doubled, $2::text || '!' AS shout";
    let st = c.prepare(text).await.unwrap();
    assert_eq!(st.params(), &[Type::INT4, Type::TEXT]);
    let names: Vec<_> = st.columns().iter().map(|c| c.name().to_owned()).collect();
    assert_eq!(names, ["doubled", "shout"]);
    for i in 0..5i32 {
        let row = c.query_one(&st, &[&i, &format!("v{i}")]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i * 2);
        assert_eq!(row.get::<_, String>(1), format!("v{i}!"));
    }
    let null_row = c
        .query_one(&st, &[&None::<i32>, &None::<String>])
        .await
        .unwrap();
    assert_eq!(null_row.get::<_, Option<i32>>(0), None);
    // The upstream session holds exactly one named statement with that text.
    let named = c
        .query(
            "SELECT name FROM pg_prepared_statements WHERE statement = $1",
            &[&text],
        )
        .await
        .unwrap();
    assert_eq!(named.len(), 1, "named statement not found upstream");
    assert!(!named[0].get::<_, String>(0).is_empty());

    // Unnamed: Parse/Bind/Execute in one round trip; not kept as a named statement.
    let unnamed = "SELECT $1::int8 + 1 AS next";
    let rows = c
        .query_typed(unnamed, &[(&41i64, Type::INT8)])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 42);
    let rows = c
        .query_typed(unnamed, &[(&-1i64, Type::INT8)])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 0);
    let kept = c
        .query(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1",
            &[&unnamed],
        )
        .await
        .unwrap();
    assert_eq!(kept[0].get::<_, i64>(0), 0);

    // A portal read in batches (Execute with a row limit, PortalSuspended in between).
    let mut c = c;
    let tx = c.transaction().await.unwrap();
    let series = tx
        .prepare("SELECT g FROM generate_series(1, 10) g")
        .await
        .unwrap();
    let portal = tx.bind(&series, &[]).await.unwrap();
    let mut batches = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 3).await.unwrap();
        if rows.is_empty() {
            break;
        }
        batches.push(rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>());
    }
    tx.commit().await.unwrap();
    assert_eq!(
        batches,
        vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]
    );
}

/// Values of many types in binary format (tokio-postgres asks for binary results).
const BINARY_SQL: &str =
    "SELECT 42::int4 AS i4, -9000000000::int8 AS i8, 'héllo wörld ☃'::text AS t, \
    '\\x00ff10'::bytea AS b, '2024-01-02 03:04:05.678901+02'::timestamptz AS ts, \
    12345.678900::numeric AS n, '-1e-30'::numeric AS n_small, 'NaN'::numeric AS n_nan, \
    '10.1.2.3/24'::inet AS ip4, '2001:db8::1'::inet AS ip6, ARRAY[1, NULL, 3]::int4[] AS ai, \
    ARRAY[['a', 'b'], ['c', NULL]]::text[] AS at, '{\"a\": [1, 2.5, null]}'::json AS j, \
    '{\"b\": {\"c\": true}}'::jsonb AS jb, NULL::int4 AS nul, true AS bo, 1.5::float8 AS f8, \
    'b0b8f0b0-8a8f-4c7c-9b38-3f3f0f3f3f3f'::uuid AS u, interval '1 day 2 hours' AS iv, \
    date '2024-02-29' AS d, ARRAY['2024-01-01 00:00:00+00'::timestamptz] AS ats";

#[tokio::test]
async fn binary_results_match_direct_byte_for_byte() {
    let (_cfg, proxy) = start_proxy();
    let via = proxied(proxy.port()).await;
    let reference = direct().await;

    let got = raw_rows(&via.query(BINARY_SQL, &[]).await.unwrap());
    let want = raw_rows(&reference.query(BINARY_SQL, &[]).await.unwrap());
    assert_eq!(got.len(), 1);
    assert_eq!(got, want, "binary results differ from a direct query");
    let col = |name: &str| {
        got[0]
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, t, v)| (t.clone(), v.clone()))
            .unwrap()
    };
    // The values really are binary-format and of the expected types.
    assert_eq!(col("i4"), (Type::INT4, RawValue(Some(vec![0, 0, 0, 42]))));
    assert_eq!(col("b"), (Type::BYTEA, RawValue(Some(vec![0, 0xff, 0x10]))));
    assert_eq!(col("nul"), (Type::INT4, RawValue(None)));
    assert_eq!(col("jb").0, Type::JSONB);
    assert_eq!(
        col("jb").1 .0.unwrap()[0],
        1,
        "jsonb binary format version byte"
    );
    assert_eq!(col("ai").0, Type::INT4_ARRAY);
    assert_eq!(col("ip6").0, Type::INET);

    // Binary parameters in, binary results out.
    let params_sql = "SELECT $1::bytea AS b, $2::int8 AS i, $3::text AS t, $4::inet AS ip, \
                      $5::float8 AS f, $6::int4[] AS a, $7::timestamptz AS ts, $8::bool AS bo";
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let ip: std::net::IpAddr = "192.168.7.9".parse().unwrap();
    let ts = std::time::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    let array = vec![Some(1i32), None, Some(-7)];
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &all_bytes,
        &i64::MIN,
        &"snow ☃ man",
        &ip,
        &-0.25f64,
        &array,
        &ts,
        &true,
    ];
    let got = raw_rows(&via.query(params_sql, &params).await.unwrap());
    let want = raw_rows(&reference.query(params_sql, &params).await.unwrap());
    assert_eq!(got, want);
    let row = via.query_one(params_sql, &params).await.unwrap();
    assert_eq!(row.get::<_, Vec<u8>>("b"), all_bytes);
    assert_eq!(row.get::<_, i64>("i"), i64::MIN);
    assert_eq!(row.get::<_, std::net::IpAddr>("ip"), ip);
    assert_eq!(row.get::<_, Vec<Option<i32>>>("a"), array);
    assert_eq!(row.get::<_, std::time::SystemTime>("ts"), ts);
}

/// `len` pseudo-random bytes (xorshift), so corruption cannot hide in a repeating pattern.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// About `len` bytes of UTF-8 text with multi-byte characters.
fn noise_text(len: usize, seed: u64) -> String {
    const ALPHABET: [&str; 8] = ["a", "Z", "7", " ", "é", "☃", "\n", "'"];
    let mut s = String::with_capacity(len + 4);
    for b in noise(len, seed) {
        if s.len() >= len {
            break;
        }
        s.push_str(ALPHABET[(b % 8) as usize]);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_megabyte_values_round_trip_both_directions() {
    const SIZE: usize = 30 * 1024 * 1024;
    let (_cfg, proxy) = start_proxy();
    let via = proxied(proxy.port()).await;
    let reference = direct().await;
    let started = Instant::now();

    // Client → proxy → Postgres: checked by reading back directly.
    let up_bytes = noise(SIZE, 0x5eed_0001);
    let up_text = noise_text(SIZE, 0x5eed_0002);
    via.execute("INSERT INTO proto_big (id, b) VALUES (1, $1)", &[&up_bytes])
        .await
        .unwrap();
    via.execute("UPDATE proto_big SET t = $1 WHERE id = 1", &[&up_text])
        .await
        .unwrap();
    let row = reference
        .query_one("SELECT b, t FROM proto_big WHERE id = 1", &[])
        .await
        .unwrap();
    assert!(
        row.get::<_, Vec<u8>>(0) == up_bytes,
        "bytea corrupted on the way up"
    );
    assert!(
        row.get::<_, String>(1) == up_text,
        "text corrupted on the way up"
    );

    // Postgres → proxy → client: written directly, read through the proxy.
    let down_bytes = noise(SIZE, 0x5eed_0003);
    let down_text = noise_text(SIZE, 0x5eed_0004);
    reference
        .execute(
            "INSERT INTO proto_big (id, b, t) VALUES (2, $1, $2)",
            &[&down_bytes, &down_text],
        )
        .await
        .unwrap();
    let row = via
        .query_one("SELECT b, t FROM proto_big WHERE id = 2", &[])
        .await
        .unwrap();
    assert!(
        row.get::<_, Vec<u8>>(0) == down_bytes,
        "bytea corrupted on the way down"
    );
    assert!(
        row.get::<_, String>(1) == down_text,
        "text corrupted on the way down"
    );
    // The same text in text format through a simple Query.
    let lines = via
        .simple_query("SELECT t FROM proto_big WHERE id = 2")
        .await
        .unwrap();
    let value = lines.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r.get(0)),
        _ => None,
    });
    assert!(
        value == Some(Some(down_text.as_str())),
        "text-format value differs"
    );
    // And the session is still fine.
    assert_eq!(
        via.query_one("SELECT 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
    eprintln!("30 MB values: {:?} in total", started.elapsed());
}

/// 10,000 rows in COPY text format, with escapes, NULLs, arrays and JSON.
fn copy_text_input() -> String {
    let mut s = String::new();
    for i in 1..=10_000u32 {
        let t = if i % 97 == 0 {
            "\\N".to_owned()
        } else {
            format!("row {i}\\twith tab\\\\and backslash é")
        };
        s.push_str(&format!(
            "{i}\t{t}\t{}.{:02}\t\\\\x{:02x}{:02x}\t2024-01-{:02} {:02}:30:00+00\t{{{i},{}}}\t{{\"k\": {i}}}\n",
            i / 3,
            i % 100,
            i % 256,
            (i * 7) % 256,
            1 + i % 28,
            i % 24,
            i + 1,
        ));
    }
    s
}

async fn copy_out(client: &Client, sql: &str) -> Vec<u8> {
    let stream = client
        .copy_out(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let chunks: Vec<Bytes> = stream
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    chunks.concat()
}

/// COPY FROM STDIN with `data` sent in `chunk`-byte CopyData messages (rows split across them).
async fn copy_in(client: &Client, sql: &str, data: &[u8], chunk: usize) -> u64 {
    let sink = client
        .copy_in::<_, Bytes>(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    futures_util::pin_mut!(sink);
    for part in data.chunks(chunk) {
        sink.as_mut()
            .send(Bytes::copy_from_slice(part))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    sink.as_mut()
        .finish()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_in_text_csv_and_binary_match_direct() {
    let (_cfg, proxy) = start_proxy();
    let via = proxied(proxy.port()).await;
    let reference = direct().await;
    let ordered = |table: &str, options: &str| {
        format!("COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT {options}")
    };

    // Text: in through the proxy, out through the proxy and directly.
    let input = copy_text_input();
    let n = copy_in(
        &via,
        "COPY proto_copy_text FROM STDIN",
        input.as_bytes(),
        7777,
    )
    .await;
    assert_eq!(n, 10_000);
    let sums = reference
        .query_one(
            "SELECT count(*), sum(id), count(*) FILTER (WHERE t IS NULL), \
                    sum(length(b)), sum((j->>'k')::int) FROM proto_copy_text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(sums.get::<_, i64>(0), 10_000);
    assert_eq!(sums.get::<_, i64>(1), 50_005_000);
    assert_eq!(sums.get::<_, i64>(2), 103);
    assert_eq!(sums.get::<_, i64>(3), 20_000);
    assert_eq!(sums.get::<_, i64>(4), 50_005_000);
    let text_out = copy_out(&via, &ordered("proto_copy_text", "")).await;
    assert!(text_out == copy_out(&reference, &ordered("proto_copy_text", "")).await);
    assert_eq!(text_out.iter().filter(|b| **b == b'\n').count(), 10_000);

    // CSV: the direct CSV of the text table goes in through the proxy and must come out equal.
    let csv_opts = "(FORMAT csv, HEADER true)";
    let csv = copy_out(&reference, &ordered("proto_copy_text", csv_opts)).await;
    let n = copy_in(
        &via,
        &format!("COPY proto_copy_csv FROM STDIN {csv_opts}"),
        &csv,
        65_536,
    )
    .await;
    assert_eq!(n, 10_000);
    assert!(copy_out(&via, &ordered("proto_copy_csv", csv_opts)).await == csv);

    // Binary, likewise; also the binary COPY OUT of the text table through the proxy.
    let bin_opts = "(FORMAT binary)";
    let bin = copy_out(&reference, &ordered("proto_copy_text", bin_opts)).await;
    assert!(bin.starts_with(b"PGCOPY\n\xff\r\n\0"));
    assert!(copy_out(&via, &ordered("proto_copy_text", bin_opts)).await == bin);
    let n = copy_in(
        &via,
        &format!("COPY proto_copy_bin FROM STDIN {bin_opts}"),
        &bin,
        100_000,
    )
    .await;
    assert_eq!(n, 10_000);
    assert!(copy_out(&via, &ordered("proto_copy_bin", bin_opts)).await == bin);

    // An abandoned COPY IN (CopyFail): nothing is written, the session goes on.
    {
        let sink = via
            .copy_in::<_, Bytes>("COPY proto_copy_fail FROM STDIN")
            .await
            .unwrap();
        futures_util::pin_mut!(sink);
        sink.as_mut()
            .send(Bytes::from_static(
                b"1\ta\t1\t\\\\x00\t2024-01-01 00:00:00+00\t{1}\t{}\n",
            ))
            .await
            .unwrap();
    }
    let count = via
        .query_one("SELECT count(*) FROM proto_copy_fail", &[])
        .await
        .unwrap();
    assert_eq!(count.get::<_, i64>(0), 0);
}

#[tokio::test]
async fn notices_are_delivered() {
    let (_cfg, proxy) = start_proxy();
    let config = pgclient::proxy_config(SERVICE.name, SERVICE.password, proxy.port(), None);
    let (c, mut events) = pgclient::connect_watched(&config).await.unwrap();

    let expect_notice = |event: Option<Event>, severity: &str, message: &str| match event {
        Some(Event::Notice(n)) => {
            assert_eq!(n.severity(), severity);
            assert_eq!(n.message(), message);
        }
        other => panic!("expected {severity} {message:?}, got {other:?}"),
    };
    // Extended protocol.
    let row = c
        .query_one("SELECT proto_notice('extended')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    expect_notice(
        pgclient::next_event(&mut events, Duration::from_secs(5)).await,
        "NOTICE",
        "proto notice: extended",
    );
    // Simple protocol.
    c.simple_query("SELECT proto_notice('simple')")
        .await
        .unwrap();
    expect_notice(
        pgclient::next_event(&mut events, Duration::from_secs(5)).await,
        "NOTICE",
        "proto notice: simple",
    );
    // client_min_messages filters server-side: the notice is suppressed, the warning is not.
    c.batch_execute("SET client_min_messages = warning")
        .await
        .unwrap();
    c.query_one("SELECT proto_notice('hidden')", &[])
        .await
        .unwrap();
    c.query_one("SELECT proto_warning('shown')", &[])
        .await
        .unwrap();
    expect_notice(
        pgclient::next_event(&mut events, Duration::from_secs(5)).await,
        "WARNING",
        "proto warning: shown",
    );
    assert!(
        pgclient::next_event(&mut events, Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn listen_notify_between_two_proxy_sessions() {
    let (_cfg, proxy) = start_proxy();
    let config = pgclient::proxy_config(SERVICE.name, SERVICE.password, proxy.port(), None);
    let (listener, mut events) = pgclient::connect_watched(&config).await.unwrap();
    let notifier = proxied(proxy.port()).await;
    let notifier_pid: i32 = notifier
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    listener.batch_execute("LISTEN proto_chan").await.unwrap();
    notifier
        .batch_execute("NOTIFY proto_chan, 'first'")
        .await
        .unwrap();
    notifier
        .query("SELECT pg_notify('proto_chan', $1)", &[&"second ☃"])
        .await
        .unwrap();
    for payload in ["first", "second ☃"] {
        match pgclient::next_event(&mut events, Duration::from_secs(5)).await {
            Some(Event::Notification(n)) => {
                assert_eq!(n.channel(), "proto_chan");
                assert_eq!(n.payload(), payload);
                // The sender's pid is the upstream backend's, as pg_backend_pid() reports it.
                assert_eq!(n.process_id(), notifier_pid);
            }
            other => panic!("expected notification {payload:?}, got {other:?}"),
        }
    }
    // Inside a transaction a notification is delivered at COMMIT only.
    notifier.batch_execute("BEGIN").await.unwrap();
    notifier
        .batch_execute("NOTIFY proto_chan, 'third'")
        .await
        .unwrap();
    assert!(
        pgclient::next_event(&mut events, Duration::from_millis(500))
            .await
            .is_none(),
        "notification delivered before COMMIT"
    );
    notifier.batch_execute("COMMIT").await.unwrap();
    match pgclient::next_event(&mut events, Duration::from_secs(5)).await {
        Some(Event::Notification(n)) => assert_eq!(n.payload(), "third"),
        other => panic!("expected notification third, got {other:?}"),
    }
    listener.batch_execute("UNLISTEN *").await.unwrap();
}

/// Simple queries whose responses (status bytes included) must match Postgres's exactly.
const TRANSACTION_SCRIPT: &[&str] = &[
    "TRUNCATE tx_t",
    "BEGIN",
    "INSERT INTO tx_t VALUES (1)",
    "SELECT 1/0",
    "SELECT 1",
    "ROLLBACK",
    "SELECT count(*) FROM tx_t",
    "BEGIN",
    "INSERT INTO tx_t VALUES (2)",
    "COMMIT",
    "BEGIN",
    "SAVEPOINT s",
    "SELECT 1/0",
    "ROLLBACK TO SAVEPOINT s",
    "INSERT INTO tx_t VALUES (3)",
    "COMMIT",
    "SELECT id + 0 AS id FROM tx_t ORDER BY id",
    "COMMIT",
    "BEGIN; SELECT 1/0; SELECT 2",
    "ROLLBACK",
    "SELECT 1; BEGIN",
    "ROLLBACK",
    "INSERT INTO tx_t VALUES (4); SELECT 1/0; INSERT INTO tx_t VALUES (5)",
    "SELECT id + 0 AS id FROM tx_t ORDER BY id",
];

/// ReadyForQuery status after each statement of [`TRANSACTION_SCRIPT`], as Postgres gives it.
const TRANSACTION_STATUSES: &[u8] = b"ITTEEIITTITTETTIIIEITIII";

async fn run_script(conn: &mut RawConn, script: &[&str]) -> Vec<Vec<raw::Frame>> {
    let mut out = Vec::new();
    for sql in script {
        out.push(conn.simple(sql).await);
    }
    out
}

#[tokio::test]
async fn transactions_commit_rollback_and_status_match_direct() {
    // A regular table, created before the proxy reads its catalog: the catalog snapshot does
    // not describe sessions' temporary tables, so statements on those are refused.
    cluster()
        .psql(
            "app",
            "CREATE TABLE IF NOT EXISTS tx_t (id int); GRANT ALL ON tx_t TO app_analytics",
        )
        .unwrap();
    let (_cfg, proxy) = start_proxy();
    let mut via = RawConn::login(proxy.port(), SERVICE.name, Some(SERVICE.password)).await;
    let mut reference = RawConn::login(cluster().port(), SERVICE.upstream_role, None).await;
    let got = run_script(&mut via, TRANSACTION_SCRIPT).await;
    let want = run_script(&mut reference, TRANSACTION_SCRIPT).await;
    for (i, sql) in TRANSACTION_SCRIPT.iter().enumerate() {
        assert_eq!(got[i], want[i], "responses differ for {sql:?}");
    }
    let statuses: Vec<u8> = got
        .iter()
        .map(|frames| frames.last().and_then(|f| f.status()).unwrap())
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&statuses),
        String::from_utf8_lossy(TRANSACTION_STATUSES)
    );
    assert_eq!(got[4][0].code().as_deref(), Some("25P02"));

    // Effects are visible to others only after COMMIT, never after ROLLBACK.
    let mut c = proxied(proxy.port()).await;
    let reference = direct().await;
    let count = |id: i32| {
        let reference = &reference;
        async move {
            reference
                .query_one("SELECT count(*) FROM proto_tx WHERE id = $1", &[&id])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO proto_tx VALUES (1, 'rolled back')", &[])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(count(1).await, 0);
    let tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO proto_tx VALUES (2, 'committed')", &[])
        .await
        .unwrap();
    assert_eq!(count(2).await, 0, "uncommitted row visible");
    tx.commit().await.unwrap();
    assert_eq!(count(2).await, 1);
}

/// Outcome of one statement of a pipeline: its rows' raw values or its SQLSTATE.
fn outcome(result: Result<Vec<Row>, tokio_postgres::Error>) -> String {
    match result {
        Ok(rows) => format!("ok {:?}", raw_rows(&rows)),
        Err(e) => format!("error {}", code_of(&e)),
    }
}

/// Three statements pipelined (all sent before any answer is read), optionally inside BEGIN.
async fn pipeline(c: &Client, middle: &str, in_transaction: bool, prepare: bool) -> Vec<String> {
    if in_transaction {
        c.batch_execute("BEGIN").await.unwrap();
    }
    let (a, b, d) = if prepare {
        // Parse/Describe/Sync of all three, then Bind/Execute/Sync of each.
        futures_util::join!(
            c.query("SELECT 1::int4", &[]),
            c.query(middle, &[]),
            c.query("SELECT 3::int4", &[])
        )
    } else {
        futures_util::join!(
            c.query_typed("SELECT 1::int4", &[]),
            c.query_typed(middle, &[]),
            c.query_typed("SELECT 3::int4", &[])
        )
    };
    let out = vec![outcome(a), outcome(b), outcome(d)];
    if in_transaction {
        c.batch_execute("ROLLBACK").await.unwrap();
    }
    out
}

#[tokio::test]
async fn error_in_the_middle_of_a_pipeline_matches_direct() {
    let (_cfg, proxy) = start_proxy();
    let via = proxied(proxy.port()).await;
    let reference = direct().await;
    let one = format!(
        "ok {:?}",
        raw_rows(&via.query("SELECT 1::int4", &[]).await.unwrap())
    );
    let three = format!(
        "ok {:?}",
        raw_rows(&via.query("SELECT 3::int4", &[]).await.unwrap())
    );
    for (middle, code) in [("SELECT 1/0", "22012"), ("SELEC 2", "42601")] {
        for in_tx in [false, true] {
            for prepare in [false, true] {
                let got = pipeline(&via, middle, in_tx, prepare).await;
                let want = pipeline(&reference, middle, in_tx, prepare).await;
                let what = format!("{middle:?} in_tx={in_tx} prepare={prepare}");
                assert_eq!(got, want, "{what}");
                // With `prepare`, all three Parses run before any Execute: a statement that
                // fails at Parse inside a transaction aborts it before the first one runs.
                let aborted = "error 25P02".to_owned();
                let first = if in_tx && prepare && code == "42601" {
                    aborted.clone()
                } else {
                    one.clone()
                };
                let third = if in_tx { aborted } else { three.clone() };
                assert_eq!(got, [first, format!("error {code}"), third], "{what}");
            }
        }
    }
    assert_eq!(
        via.query_one("SELECT 5", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        5
    );

    // Raw: one Sync for three statements. After the error Postgres skips to Sync; the reply
    // must be identical, frame for frame, to Postgres's own.
    let mut batch = Vec::new();
    for sql in ["SELECT 1", "SELECT 1/0", "SELECT 3"] {
        batch.extend(raw::parse("", sql));
        batch.extend(raw::bind("", "", &[]));
        batch.extend(raw::execute("", 0));
    }
    batch.extend(raw::sync());
    // A named statement: bad parameter, skipped Execute, reuse, Close, use after Close.
    batch.extend(raw::parse("s1", "SELECT $1::int + 1"));
    batch.extend(raw::bind("", "s1", &[Some("41")]));
    batch.extend(raw::describe(b'P', ""));
    batch.extend(raw::execute("", 0));
    batch.extend(raw::bind("", "s1", &[Some("x")]));
    batch.extend(raw::execute("", 0));
    batch.extend(raw::sync());
    batch.extend(raw::bind("", "s1", &[Some("1")]));
    batch.extend(raw::execute("", 0));
    batch.extend(raw::close(b'S', "s1"));
    batch.extend(raw::sync());
    batch.extend(raw::bind("", "s1", &[None]));
    batch.extend(raw::sync());
    let mut raw_via = RawConn::login(proxy.port(), SERVICE.name, Some(SERVICE.password)).await;
    let mut raw_ref = RawConn::login(cluster().port(), SERVICE.upstream_role, None).await;
    raw_via.send(&batch).await.unwrap();
    raw_ref.send(&batch).await.unwrap();
    let got = raw_via.until_ready(4).await;
    let want = raw_ref.until_ready(4).await;
    assert_eq!(got, want);
    let tags: String = got.iter().map(|f| f.tag() as char).collect();
    // 1/0 is folded at plan time, so the error comes at Bind; "x" fails at Bind; the last
    // Bind names the closed statement.
    assert_eq!(tags, "12DC1EZ12TDCEZ2DC3ZEZ");
    let codes: Vec<_> = got.iter().filter_map(|f| f.code()).collect();
    assert_eq!(codes, ["22012", "22P02", "26000"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_pg_sleep_through_the_proxy() {
    let (_cfg, proxy) = start_proxy();
    let c = proxied(proxy.port()).await;
    let token = c.cancel_token();
    let sleeper = tokio::spawn(async move {
        let r = c.simple_query("SELECT pg_sleep(30), 'cancel-test'").await;
        (c, r)
    });
    // Wait until the statement really runs upstream.
    let reference = direct().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = reference
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                 AND query LIKE 'SELECT pg_sleep(30), ''cancel-test''%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "pg_sleep never started upstream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    token.cancel_query(NoTls).await.unwrap();
    let (c, result) = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("the cancelled statement did not end within 10 s")
        .unwrap();
    let elapsed = asked.elapsed();
    let error = result.expect_err("pg_sleep(30) was not cancelled");
    assert_eq!(code_of(&error), "57014", "{error}");
    assert!(elapsed < Duration::from_secs(5), "cancel took {elapsed:?}");
    assert_eq!(
        c.query_one("SELECT 11", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        11
    );
}

#[tokio::test]
async fn empty_queries_match_direct() {
    let (_cfg, proxy) = start_proxy();
    let mut via = RawConn::login(proxy.port(), SERVICE.name, Some(SERVICE.password)).await;
    let mut reference = RawConn::login(cluster().port(), SERVICE.upstream_role, None).await;
    let script = ["", ";", "  ", "-- only a comment", "/* block */ ;"];
    let got = run_script(&mut via, &script).await;
    assert_eq!(got, run_script(&mut reference, &script).await);
    assert!(got.iter().all(|frames| frames[0].tag() == b'I'), "{got:?}");

    let mut batch = raw::parse("", "");
    batch.extend(raw::bind("", "", &[]));
    batch.extend(raw::execute("", 0));
    batch.extend(raw::sync());
    via.send(&batch).await.unwrap();
    reference.send(&batch).await.unwrap();
    let got = via.until_ready(1).await;
    assert_eq!(got, reference.until_ready(1).await);
    let tags: String = got.iter().map(|f| f.tag() as char).collect();
    assert_eq!(tags, "12IZ");
}

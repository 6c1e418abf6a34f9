#!/usr/bin/env python3
"""Smoke test of a foreign driver (psycopg 3, libpq-based) through the pgpurpose proxy.

Usage:
    psycopg_smoke.py [--host H] [--port P] [--user U] [--password W] [--dbname D]
                     [--purpose NAME] [--table T]

Each option falls back to the libpq environment variable (PGHOST, PGPORT, PGUSER, PGPASSWORD,
PGDATABASE). `--purpose` sets `options=-c pgpurpose.purpose=NAME`.

The table (default `client_smoke`) must exist with rows 1, 2, 3 and this shape, created
upstream beforehand so it is in the proxy's catalog snapshot, writable by the service's
upstream role and untagged (allowed) in the policy:

    CREATE TABLE client_smoke (id int PRIMARY KEY, t text, b bytea, ts timestamptz,
                               n numeric, j jsonb);
    INSERT INTO client_smoke VALUES
        (1, 'one',   '\\x0102', '2024-01-02 03:04:05+00', 1.5,  '{"a": 1}'),
        (2, 'two',   '\\x',     '2024-02-03 04:05:06+00', -2,   '[1, 2]'),
        (3, 'three', NULL,      NULL,                     NULL, NULL);

Every check prints `ok <name>` or `FAIL <name>: <error>`; the exit status is non-zero when any
check failed (or the connection could not be made). The script leaves the table as it found it.
"""

import argparse
import datetime
import decimal
import os
import sys
import traceback

import psycopg
from psycopg import errors, sql

EXPECTED_IDS = [1, 2, 3]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default=os.environ.get("PGHOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PGPORT", "6432")))
    p.add_argument("--user", default=os.environ.get("PGUSER"))
    p.add_argument("--password", default=os.environ.get("PGPASSWORD"))
    p.add_argument("--dbname", default=os.environ.get("PGDATABASE", "app"))
    p.add_argument("--purpose", default=None)
    p.add_argument("--table", default="client_smoke")
    args = p.parse_args()
    if not args.user:
        p.error("--user (or PGUSER) is required")
    return args


def connect(args, **kw):
    params = dict(
        host=args.host,
        port=args.port,
        user=args.user,
        dbname=args.dbname,
        sslmode="disable",
        connect_timeout=10,
        autocommit=True,
    )
    if args.password is not None:
        params["password"] = args.password
    if args.purpose:
        params["options"] = f"-c pgpurpose.purpose={args.purpose}"
    params.update(kw)
    return psycopg.connect(**params)


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


class Checks:
    def __init__(self, conn, table):
        self.conn = conn
        self.table = sql.Identifier(table)
        self.failures = 0

    def q(self, text):
        """SQL text with {t} replaced by the quoted table name (no client-side value binding)."""
        return sql.SQL(text).format(t=self.table)

    def run(self, name, fn):
        try:
            fn()
            print(f"ok {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, then we go on
            self.failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stderr)
            # Leave no transaction open for the next check.
            try:
                self.conn.rollback()
            except Exception:  # noqa: BLE001
                pass

    # -- the checks ------------------------------------------------------------------------

    def simple_query(self):
        # No parameters + text results: psycopg sends a simple Query ('Q'); two statements in one
        # string give two result sets.
        with self.conn.cursor() as cur:
            cur.execute(self.q("SELECT count(*) FROM {t}; SELECT 'x' || 'y' AS s"))
            expect(cur.fetchone() == (3,), "count(*) should be 3")
            expect(cur.nextset(), "second result set missing")
            expect(cur.fetchone() == ("xy",), "second statement result")

    def parameterized(self):
        # Server-side binding: Parse/Bind/Execute with $1, $2.
        with self.conn.cursor() as cur:
            cur.execute(
                self.q("SELECT id, t FROM {t} WHERE id >= %s AND t <> %s ORDER BY id"),
                (2, "nope"),
            )
            rows = cur.fetchall()
            expect(rows == [(2, "two"), (3, "three")], f"rows {rows!r}")
            cur.execute(self.q("SELECT t FROM {t} WHERE id = %s"), (None,))
            expect(cur.fetchall() == [], "NULL parameter matches nothing")

    def prepared(self):
        # psycopg prepares a statement server-side after `prepare_threshold` runs; prepare=True
        # forces a named statement now. Re-executing must reuse it.
        with self.conn.cursor() as cur:
            for i in EXPECTED_IDS * 2:
                cur.execute(self.q("SELECT t FROM {t} WHERE id = %s"), (i,), prepare=True)
                expect(cur.fetchone() is not None, f"row {i}")
            cur.executemany(self.q("SELECT %s::int + id FROM {t} WHERE id = 1"), [(1,), (2,)])

    def binary_fetch(self):
        with self.conn.cursor(binary=True) as cur:
            cur.execute(self.q("SELECT id, t, b, ts, n, j FROM {t} ORDER BY id"))
            rows = cur.fetchall()
        expect(len(rows) == 3, f"3 rows, got {len(rows)}")
        r1 = rows[0]
        expect(r1[0] == 1 and r1[1] == "one", f"row 1 {r1!r}")
        expect(bytes(r1[2]) == b"\x01\x02", f"bytea {r1[2]!r}")
        expect(
            r1[3] == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
            f"timestamptz {r1[3]!r}",
        )
        expect(r1[4] == decimal.Decimal("1.5"), f"numeric {r1[4]!r}")
        expect(r1[5] == {"a": 1}, f"jsonb {r1[5]!r}")
        expect(rows[1][5] == [1, 2] and rows[1][4] == -2, f"row 2 {rows[1]!r}")
        expect(rows[2][2:] == (None, None, None, None), f"row 3 NULLs {rows[2]!r}")

    def copy_to(self):
        with self.conn.cursor() as cur:
            data = bytearray()
            with cur.copy(self.q("COPY (SELECT id, t FROM {t} ORDER BY id) TO STDOUT")) as copy:
                for chunk in copy:
                    data += chunk
            expect(bytes(data) == b"1\tone\n2\ttwo\n3\tthree\n", f"copy text {bytes(data)!r}")
            with cur.copy(self.q("COPY {t} (id, t) TO STDOUT (FORMAT BINARY)")) as copy:
                copy.set_types(["int4", "text"])
                rows = sorted(copy.rows())
            expect(rows == [(1, "one"), (2, "two"), (3, "three")], f"copy binary {rows!r}")

    def copy_from(self):
        with self.conn.cursor() as cur:
            with self.conn.transaction(force_rollback=True):
                with cur.copy(self.q("COPY {t} (id, t, n) FROM STDIN")) as copy:
                    copy.write_row((100, "copied", decimal.Decimal("7.25")))
                    copy.write_row((101, "tab\there", None))
                cur.execute(self.q("SELECT t, n FROM {t} WHERE id >= 100 ORDER BY id"))
                rows = cur.fetchall()
                expect(
                    rows == [("copied", decimal.Decimal("7.25")), ("tab\there", None)],
                    f"copied rows {rows!r}",
                )
            cur.execute(self.q("SELECT count(*) FROM {t}"))
            expect(cur.fetchone() == (3,), "COPY FROM rows must be rolled back")

    def transaction_rollback(self):
        with self.conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(self.q("UPDATE {t} SET t = %s WHERE id = 1"), ("changed",))
            expect(cur.rowcount == 1, "one row updated")
            cur.execute(self.q("SELECT t FROM {t} WHERE id = 1"))
            expect(cur.fetchone() == ("changed",), "change visible inside the transaction")
            cur.execute("ROLLBACK")
            cur.execute(self.q("SELECT t FROM {t} WHERE id = 1"))
            expect(cur.fetchone() == ("one",), "change gone after ROLLBACK")
            expect(
                self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE,
                "idle after rollback",
            )

    def error_then_usable(self):
        with self.conn.cursor() as cur:
            try:
                cur.execute("SELECT 1 / %s::int", (0,))
                raise AssertionError("division by zero did not fail")
            except errors.DivisionByZero as e:
                expect(e.sqlstate == "22012", f"sqlstate {e.sqlstate}")
            cur.execute("SELECT 41 + 1")
            expect(cur.fetchone() == (42,), "session usable after an error")

            # Inside a transaction: the error aborts it (25P02 until ROLLBACK), like Postgres.
            cur.execute("BEGIN")
            try:
                cur.execute("SELECT 1/0")
                raise AssertionError("division by zero did not fail (simple query)")
            except errors.DivisionByZero as e:
                expect(e.sqlstate == "22012", f"sqlstate {e.sqlstate}")
            expect(
                self.conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR,
                "transaction must be aborted",
            )
            try:
                cur.execute("SELECT 1")
                raise AssertionError("statement in an aborted transaction did not fail")
            except errors.InFailedSqlTransaction as e:
                expect(e.sqlstate == "25P02", f"sqlstate {e.sqlstate}")
            cur.execute("ROLLBACK")
            cur.execute(self.q("SELECT count(*) FROM {t}"))
            expect(cur.fetchone() == (3,), "usable after ROLLBACK")


def main():
    args = parse_args()
    try:
        conn = connect(args)
    except Exception as e:  # noqa: BLE001
        print(f"FAIL connect: {type(e).__name__}: {e}", flush=True)
        return 2
    print(f"ok connect (server_version {conn.info.server_version})", flush=True)
    checks = Checks(conn, args.table)
    checks.run("simple_query", checks.simple_query)
    checks.run("parameterized", checks.parameterized)
    checks.run("prepared", checks.prepared)
    checks.run("binary_fetch", checks.binary_fetch)
    checks.run("copy_to", checks.copy_to)
    checks.run("copy_from", checks.copy_from)
    checks.run("transaction_rollback", checks.transaction_rollback)
    checks.run("error_then_usable", checks.error_then_usable)
    conn.close()
    if checks.failures:
        print(f"{checks.failures} check(s) failed", flush=True)
        return 1
    print("all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

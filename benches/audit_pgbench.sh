#!/usr/bin/env bash
# Cost of the audit log: pgbench through pgpurpose with the audit log on (default fsync
# cadence: `interval`, 100 ms) against the same proxy with it off, in interleaved rounds.
#
# Starts a throwaway Postgres (pgbench scale 10 + the example schema) and two pgpurpose
# processes from one release build (same policies, one with an `audit:` section), then runs
# each test against both, alternating which goes first each round. Tests: pgbench -S (one
# SELECT per transaction: one audit record each, the worst case relative to work) in simple
# and prepared mode at 8 clients (-j 2), and benches/orm.sql in simple mode at 8 clients.
# Prints TPS per run and the on/off ratio of the medians; the audit directory is verified
# with `pgpurpose audit verify` at the end.
#
# Usage: benches/audit_pgbench.sh        Environment: ROUNDS=3 DURATION=10 KEEP_WORKDIR=1
#   SKIP_BUILD=1 (use the existing target/release/pgpurpose)
#   AUDIT_FSYNC=interval|always|never (default interval)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
AUDIT_FSYNC=${AUDIT_FSYNC:-interval}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROXY="$REPO/target/release/pgpurpose"
DB=bench
TESTS=("simple 8" "prepared 8" "orm 8")

unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE \
      PGSERVICEFILE PGOPTIONS PGSSLMODE PGREQUIRESSL PGTARGETSESSIONATTRS PGDATA

log() { printf '[audit-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for_port() {
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited during start"
        sleep 0.1
    done
    die "$3 did not listen on port $1"
}

PGBIN=${PGPURPOSE_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$PGBIN/pgbench" ] || die "no Postgres binaries (set PGPURPOSE_PG_BINDIR)"

WORK="" PG_STARTED=0 OFF_PID="" ON_PID=""
cleanup() {
    local rc=$?
    set +e
    [ -n "$OFF_PID" ] && kill "$OFF_PID" 2>/dev/null
    [ -n "$ON_PID" ] && kill "$ON_PID" 2>/dev/null
    wait 2>/dev/null
    [ "$PG_STARTED" -eq 1 ] && as_pg "$PGBIN/pg_ctl" stop -D "$WORK/pg/data" -m immediate -w >/dev/null 2>&1
    if [ -n "$WORK" ]; then
        if [ "${KEEP_WORKDIR:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building pgpurpose (cargo build --release)"
    (cd "$REPO" && cargo build --release >&2)
fi
[ -x "$PROXY" ] || die "$PROXY was not built"

WORK=$(mktemp -d /tmp/pgpurpose-audit-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/pg" "$WORK/policies" "$WORK/logs" "$WORK/audit"
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/pg"
PG_PORT=$(free_port); OFF_PORT=$(free_port); ON_PORT=$(free_port)

as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --locale=C >"$WORK/pg/initdb.log" 2>&1 \
    || { cat "$WORK/pg/initdb.log" >&2; die "initdb failed"; }
cat >>"$WORK/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/pg'
shared_buffers = '512MB'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' >"$WORK/pg/data/pg_hba.conf"
as_pg "$PGBIN/pg_ctl" start -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w -t 60 >/dev/null || die "Postgres did not start"
PG_STARTED=1
psql_super() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
psql_super -d postgres -c "CREATE DATABASE $DB"
"$PGBIN/pgbench" -i -s 10 -q -h 127.0.0.1 -p "$PG_PORT" -U postgres "$DB" >"$WORK/logs/init.log" 2>&1 || die "pgbench -i failed"
for f in schema.sql seed.sql roles.sql; do psql_super -d "$DB" -f "$REPO/examples/$f" >/dev/null; done
psql_super -d "$DB" >/dev/null <<'SQL'
CREATE INDEX posts_user_id_idx ON posts (user_id);
CREATE ROLE bench LOGIN;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench;
ANALYZE;
SQL

PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
VERIFIER=$(printf '%s' "$PASSWORD" | "$PROXY" hash-password)
cp "$REPO"/policies/*.yaml "$WORK/policies/"
cat >"$WORK/policies/zz-bench.yaml" <<YAML
services:
  bench-service:
    description: pgbench; reads untagged data only.
    credential: "$VERIFIER"
    purposes: [analytics]
    upstream:
      user: bench
      password: null
YAML
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$WORK/audit.key"
config() {
    cat <<YAML
listen: "127.0.0.1:$1"
policies: "policies"
upstream: {host: "127.0.0.1", port: $PG_PORT}
catalog: {user: "postgres", database: "$DB"}
YAML
}
config "$OFF_PORT" >"$WORK/off.yaml"
{ config "$ON_PORT"; printf 'audit:\n  dir: audit\n  fsync: %s\n  checkpoint_key:\n    file: audit.key\n' "$AUDIT_FSYNC"; } >"$WORK/on.yaml"

"$PROXY" run --config "$WORK/off.yaml" >"$WORK/logs/off.log" 2>&1 & OFF_PID=$!
"$PROXY" run --config "$WORK/on.yaml" >"$WORK/logs/on.log" 2>&1 & ON_PID=$!
wait_for_port "$OFF_PORT" "$OFF_PID" "pgpurpose (audit off)"
wait_for_port "$ON_PORT" "$ON_PID" "pgpurpose (audit on)"

: >"$WORK/results.tsv"
# "utime stime" of a process in clock ticks (field 2, the command name, may hold spaces).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
run_one() {
    local round=$1 mode=$2 clients=$3 target=$4 port pid script out tps txns t0 t1
    port=$OFF_PORT; pid=$OFF_PID
    [ "$target" = on ] && { port=$ON_PORT; pid=$ON_PID; }
    t0=$(cpu_ticks "$pid")
    script=(-S -M "$mode"); [ "$mode" = orm ] && script=(-f "$REPO/benches/orm.sql" -M simple)
    out="$WORK/logs/r$round-$mode-$target.out"
    PGPASSWORD="$PASSWORD" "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$port" -U bench-service \
        -c "$clients" -j 2 -T "$DURATION" "${script[@]}" "$DB" >"$out" 2>&1 || { cat "$out" >&2; die "pgbench failed"; }
    t1=$(cpu_ticks "$pid")
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$out")
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
    # The proxy's CPU per transaction (µs) does not depend on what else runs on the machine.
    cpu_us=$(python3 -c "print(round(($t1 - $t0) * 1e6 / $(getconf CLK_TCK) / max($txns, 1), 1))")
    echo "$mode $clients $target $round $tps $cpu_us" >>"$WORK/results.tsv"
    log "round $round: $mode -c $clients audit $target: $tps tps, proxy CPU $cpu_us µs/transaction"
}
for round in $(seq 1 "$ROUNDS"); do
    for test in "${TESTS[@]}"; do
        read -r mode clients <<<"$test"
        if [ $((round % 2)) -eq 1 ]; then order=(off on); else order=(on off); fi
        for target in "${order[@]}"; do run_one "$round" "$mode" "$clients" "$target"; done
    done
done
kill -TERM "$ON_PID"; wait "$ON_PID" 2>/dev/null || true; ON_PID=""

echo "audit log cost: $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $ROUNDS rounds x $DURATION s, fsync $AUDIT_FSYNC"
python3 - "$WORK/results.tsv" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
tests = sorted({(r[0], r[1]) for r in rows}, key=lambda t: (t[0] != "simple", t))
print(f"{'test':<14}{'audit off (tps)':>30}{'audit on (tps)':>30}{'on/off':>8}{'proxy CPU µs/txn off -> on':>30}")
for mode, clients in tests:
    pick = lambda t, i: [float(r[i]) for r in rows if (r[0], r[1], r[2]) == (mode, clients, t)]
    off, on = pick("off", 4), pick("on", 4)
    fmt = lambda xs: f"{statistics.median(xs):9.0f} [" + " ".join(f"{x:.0f}" for x in xs) + "]"
    cpu = f"{statistics.median(pick('off', 5)):.1f} -> {statistics.median(pick('on', 5)):.1f}"
    print(f"{mode + ' -c ' + clients:<14}{fmt(off):>30}{fmt(on):>30}{statistics.median(on) / statistics.median(off):>8.1%}{cpu:>30}")
PY
du -sh "$WORK/audit" | awk '{ print "audit log size: " $1 }'
"$PROXY" audit verify --key-file "$WORK/audit.key" --require-sealed "$WORK/audit"

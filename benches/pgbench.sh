#!/usr/bin/env bash
# Benchmark pgpurpose against a direct Postgres connection and pgbouncer (session mode).
#
# Starts a throwaway Postgres, pgbouncer and a release build of pgpurpose on free ports on
# 127.0.0.1, then runs pgbench against the three targets, interleaved (each test runs against
# every target in turn, round after round, so drift on a shared machine hits all three alike;
# the starting target rotates with the round so none is always first). Tests:
#   pgbench -S in -M simple, extended and prepared at 1 client (-j 1) and 8 clients (-j 2),
#   and benches/orm.sql (joins, an IN list, ORDER BY/LIMIT, GROUP BY over the example schema,
#   with varying literals) in simple mode at 8 clients.
# For each run: TPS without connection time, p50/p99 latency from pgbench's per-transaction
# logs, and the CPU time (utime+stime from /proc) the proxy or pgbouncer spent per transaction.
# Before that, it measures the proxy's memory per idle client: N idle SCRAM-authenticated
# connections (benches/idle_clients.py), VmRSS before and after.
# Everything (processes, data, temporary files) is removed on exit.
#
# Usage: benches/pgbench.sh [--quick]
#   --quick            1 round of 3 s per run (for CI)
# Environment:
#   ROUNDS=3           rounds of the whole test matrix
#   DURATION=10        seconds per pgbench run
#   IDLE_CLIENTS=1000  idle connections for the memory measurement (0: skip it)
#   KEEP_WORKDIR=1     keep the temporary directory (logs, configs) for inspection
#   PGPURPOSE_PG_BINDIR  directory of the Postgres binaries (default: found automatically)
#   The rest of the environment reaches pgpurpose, e.g. RUST_LOG or TOKIO_WORKER_THREADS=1.
#
# Needs: Postgres server binaries with pgbench, python3, cargo; pgbouncer is installed with
# apt-get when missing (as root). As root, Postgres and pgbouncer run as the `postgres` OS user.

set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
IDLE_CLIENTS=${IDLE_CLIENTS:-1000}
for arg in "$@"; do
    case "$arg" in
        --quick) ROUNDS=1; DURATION=3 ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "pgbench.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES="$REPO/benches"
PROXY="$REPO/target/release/pgpurpose"
CLK_TCK=$(getconf CLK_TCK)
# Shared buffers large enough to hold pgbench scale 10 (~160 MB) and the example schema.
PG_SHARED_BUFFERS=512MB
# Tests of the matrix: "mode clients".
TESTS=("simple 1" "extended 1" "prepared 1" "simple 8" "extended 8" "prepared 8" "orm 8")
TARGETS=(direct pgbouncer pgpurpose)
DB=bench

# libpq settings from the caller's environment would redirect our clients.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE \
      PGSERVICEFILE PGOPTIONS PGSSLMODE PGREQUIRESSL PGTARGETSESSIONATTRS PGDATA

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

# Run a command as the Postgres OS user when we are root (Postgres and pgbouncer refuse root).
as_pg() {
    if [ "$IS_ROOT" -eq 1 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# "utime stime" of a process (all its threads), in clock ticks. The command name in field 2
# may contain spaces, so cut up to the closing parenthesis first (then utime is field 12).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

wait_for_port() {
    local port=$1 pid=$2 what=$3 i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || die "$what exited during start"
        sleep 0.1
    done
    die "$what did not listen on port $port within 10 s"
}

find_pg_bindir() {
    local dir
    if [ -n "${PGPURPOSE_PG_BINDIR:-}" ]; then echo "$PGPURPOSE_PG_BINDIR"; return; fi
    dir=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pgbench" ]; then echo "$dir"; return; fi
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] || die "no Postgres server binaries found (set PGPURPOSE_PG_BINDIR)"
    echo "$dir"
}

install_pgbouncer() {
    [ "$IS_ROOT" -eq 1 ] || die "pgbouncer is not installed and we are not root to apt-get it"
    log "installing pgbouncer with apt-get"
    # Keep the package from starting its own pgbouncer service (it would take port 6432).
    local guard=0 rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        guard=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q pgbouncer >&2; then
        { apt-get update -q >&2 && apt-get install -y -q pgbouncer >&2; } || rc=$?
    fi
    [ "$guard" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || die "apt-get install pgbouncer failed"
}

# ---------------------------------------------------------------------------------------------
# Clean-up: registered before anything is started.

WORK=""
PG_STARTED=0
PROXY_PID=""
BOUNCER_PID=""
BOUNCER_WRAPPER=""
IDLE_PID=""
cleanup() {
    local rc=$?
    set +e
    [ -n "$IDLE_PID" ] && kill "$IDLE_PID" 2>/dev/null
    [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null
    [ -n "$BOUNCER_PID" ] && kill "$BOUNCER_PID" 2>/dev/null
    [ -n "$BOUNCER_WRAPPER" ] && kill "$BOUNCER_WRAPPER" 2>/dev/null
    wait 2>/dev/null
    if [ "$PG_STARTED" -eq 1 ]; then
        as_pg "$PGBIN/pg_ctl" stop -D "$WORK/pg/data" -m immediate -w >/dev/null 2>&1
    fi
    if [ -n "$WORK" ]; then
        if [ "${KEEP_WORKDIR:-0}" = 1 ]; then
            log "kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Tools.

command -v python3 >/dev/null || die "python3 is required"
PGBIN=$(find_pg_bindir)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || install_pgbouncer
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ "$IS_ROOT" -eq 0 ] || id postgres >/dev/null 2>&1 || die "the postgres OS user is missing"
# 1000 idle clients through the proxy need 2 descriptors each.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "building pgpurpose (cargo build --release)"
(cd "$REPO" && cargo build --release >&2)
[ -x "$PROXY" ] || die "$PROXY was not built"

WORK=$(mktemp -d /tmp/pgpurpose-bench.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/pg" "$WORK/bouncer" "$WORK/policies" "$WORK/logs"
[ "$IS_ROOT" -eq 1 ] && chown postgres: "$WORK/pg" "$WORK/bouncer"

PG_PORT=$(free_port)
BOUNCER_PORT=$(free_port)
PROXY_PORT=$(free_port)
while [ "$BOUNCER_PORT" = "$PG_PORT" ]; do BOUNCER_PORT=$(free_port); done
while [ "$PROXY_PORT" = "$PG_PORT" ] || [ "$PROXY_PORT" = "$BOUNCER_PORT" ]; do PROXY_PORT=$(free_port); done

# ---------------------------------------------------------------------------------------------
# Postgres.

log "starting Postgres ($PGBIN) on port $PG_PORT"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --locale=C >"$WORK/pg/initdb.log" 2>&1 \
    || { cat "$WORK/pg/initdb.log" >&2; die "initdb failed"; }
cat >>"$WORK/pg/data/postgresql.conf" <<EOF

# added by benches/pgbench.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/pg'
shared_buffers = '$PG_SHARED_BUFFERS'
max_connections = $((IDLE_CLIENTS + 100))
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
cat >"$WORK/pg/data/pg_hba.conf" <<EOF
local all all trust
host  all all 127.0.0.1/32 trust
EOF
as_pg "$PGBIN/pg_ctl" start -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w -t 60 >/dev/null \
    || { tail -n 30 "$WORK/pg/server.log" >&2; die "Postgres did not start"; }
PG_STARTED=1

psql_super() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }

log "loading pgbench scale 10 and the example schema into database $DB"
psql_super -d postgres -c "CREATE DATABASE $DB"
"$PGBIN/pgbench" -i -s 10 -q -h 127.0.0.1 -p "$PG_PORT" -U postgres "$DB" >"$WORK/logs/pgbench-init.log" 2>&1 \
    || { cat "$WORK/logs/pgbench-init.log" >&2; die "pgbench -i failed"; }
for f in schema.sql seed.sql roles.sql; do
    psql_super -d "$DB" -f "$REPO/examples/$f" >/dev/null
done
psql_super -d "$DB" >/dev/null <<'EOF'
-- The foreign-key index an application would have; keeps the ORM script's feed query cheap.
CREATE INDEX posts_user_id_idx ON posts (user_id);
CREATE ROLE bench LOGIN;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench;
ANALYZE;
EOF
# Read the tables into shared buffers so the first round does not pay for disk reads.
psql_super -d "$DB" >/dev/null 2>&1 <<'EOF' || log "pg_prewarm not available; first round runs cold"
CREATE EXTENSION pg_prewarm;
SELECT pg_prewarm(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i');
EOF

# ---------------------------------------------------------------------------------------------
# pgpurpose: the repository's policies plus a benchmark service.

BENCH_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
BENCH_VERIFIER=$(printf '%s' "$BENCH_PASSWORD" | "$PROXY" hash-password)
cp "$REPO"/policies/*.yaml "$WORK/policies/"
cat >"$WORK/policies/zz-bench.yaml" <<EOF
# Added by benches/pgbench.sh for the benchmark run only.
services:
  bench-service:
    description: pgbench and the ORM-shaped script; reads untagged data only.
    credential: "$BENCH_VERIFIER"
    purposes: [analytics]
    upstream:
      user: bench
      password: null
EOF
cat >"$WORK/pgpurpose.yaml" <<EOF
listen: "127.0.0.1:$PROXY_PORT"
policies: "policies"
upstream:
  host: "127.0.0.1"
  port: $PG_PORT
catalog:
  user: "postgres"
  database: "$DB"
limits:
  max_connections: $((IDLE_CLIENTS + 100))
EOF

log "starting pgpurpose on port $PROXY_PORT"
"$PROXY" run --config "$WORK/pgpurpose.yaml" >"$WORK/logs/pgpurpose.log" 2>&1 &
PROXY_PID=$!
wait_for_port "$PROXY_PORT" "$PROXY_PID" pgpurpose

# ---------------------------------------------------------------------------------------------
# pgbouncer, session mode, trust towards Postgres.

cat >"$WORK/bouncer/pgbouncer.ini" <<EOF
[databases]
$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/bouncer/userlist.txt
pool_mode = session
default_pool_size = 20
max_client_conn = $((IDLE_CLIENTS + 100))
ignore_startup_parameters = extra_float_digits
logfile = $WORK/bouncer/pgbouncer.log
EOF
printf '"bench" ""\n"postgres" ""\n' >"$WORK/bouncer/userlist.txt"
[ "$IS_ROOT" -eq 1 ] && chown postgres: "$WORK/bouncer"/*

log "starting pgbouncer on port $BOUNCER_PORT"
# The wrapper shell records its own pid and then becomes pgbouncer, so we know pgbouncer's pid
# (runuser itself stays as the parent). runuser resets the soft descriptor limit; raise it.
as_pg sh -c 'echo $$ > "$1"; ulimit -n "$(ulimit -Hn)"; exec "$2" "$3"' sh \
    "$WORK/bouncer/pid" "$PGBOUNCER" "$WORK/bouncer/pgbouncer.ini" >"$WORK/bouncer/stdout.log" 2>&1 &
BOUNCER_WRAPPER=$!
for _ in $(seq 1 50); do [ -s "$WORK/bouncer/pid" ] && break; sleep 0.1; done
BOUNCER_PID=$(cat "$WORK/bouncer/pid" 2>/dev/null || true)
[ -n "$BOUNCER_PID" ] || die "pgbouncer did not start"
wait_for_port "$BOUNCER_PORT" "$BOUNCER_PID" pgbouncer

# ---------------------------------------------------------------------------------------------
# Memory per idle client connection (fresh processes, before the load runs).

: >"$WORK/idle.tsv"
idle_test() {
    local target=$1 pid=$2 port=$3 user=$4 password=$5 before after status
    rm -f "$WORK/idle.fifo" "$WORK/idle.out"
    mkfifo "$WORK/idle.fifo"
    before=$(rss_kib "$pid")
    PGPASSWORD="$password" python3 "$BENCHES/idle_clients.py" 127.0.0.1 "$port" "$user" "$DB" "$IDLE_CLIENTS" \
        <"$WORK/idle.fifo" >"$WORK/idle.out" 2>&1 &
    IDLE_PID=$!
    exec 4>"$WORK/idle.fifo"
    while kill -0 "$IDLE_PID" 2>/dev/null && ! grep -q '^ready' "$WORK/idle.out"; do sleep 0.2; done
    status=$(cat "$WORK/idle.out")
    if [[ "$status" == ready* ]]; then
        sleep 1
        after=$(rss_kib "$pid")
        echo "$target $IDLE_CLIENTS $before $after" >>"$WORK/idle.tsv"
        log "$target: $IDLE_CLIENTS idle clients, RSS $before KiB -> $after KiB"
    else
        log "$target: idle client test failed: $status"
    fi
    exec 4>&-
    wait "$IDLE_PID" 2>/dev/null || true
    IDLE_PID=""
    sleep 2 # let the sessions and their upstream backends end
}

PROXY_RSS_START=$(rss_kib "$PROXY_PID")
if [ "$IDLE_CLIENTS" -gt 0 ]; then
    log "opening $IDLE_CLIENTS idle connections through pgpurpose, then through pgbouncer"
    idle_test pgpurpose "$PROXY_PID" "$PROXY_PORT" bench-service "$BENCH_PASSWORD"
    idle_test pgbouncer "$BOUNCER_PID" "$BOUNCER_PORT" bench ""
fi

# ---------------------------------------------------------------------------------------------
# The interleaved pgbench matrix.

: >"$WORK/results.tsv"
run_one() {
    local round=$1 mode=$2 clients=$3 target=$4
    local port user password="" pid="" jobs=1 prefix out u0 s0 u1 s1 utime=-1 stime=-1
    local tps txns failed p50 p99
    case "$target" in
        direct) port=$PG_PORT; user=bench ;;
        pgbouncer) port=$BOUNCER_PORT; user=bench; pid=$BOUNCER_PID ;;
        pgpurpose) port=$PROXY_PORT; user=bench-service; password=$BENCH_PASSWORD; pid=$PROXY_PID ;;
    esac
    [ "$clients" -gt 1 ] && jobs=2
    local script=(-S -M "$mode")
    [ "$mode" = orm ] && script=(-f "$BENCHES/orm.sql" -M simple)
    prefix="$WORK/logs/r$round-$mode-c$clients-$target"
    out="$prefix.out"
    [ -n "$pid" ] && read -r u0 s0 < <(cpu_ticks "$pid")
    if ! PGPASSWORD="$password" "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$port" -U "$user" \
            -c "$clients" -j "$jobs" -T "$DURATION" "${script[@]}" \
            -l --log-prefix="$prefix" "$DB" >"$out" 2>&1; then
        cat "$out" >&2
        die "pgbench failed: $mode, $clients clients, $target"
    fi
    if [ -n "$pid" ]; then
        read -r u1 s1 < <(cpu_ticks "$pid")
        utime=$((u1 - u0))
        stime=$((s1 - s0))
    fi
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$out")
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
    [ -n "$tps" ] && [ -n "$txns" ] || { cat "$out" >&2; die "could not read pgbench's output"; }
    read -r p50 p99 < <(python3 "$BENCHES/bench_report.py" latency "$prefix")
    rm -f "$prefix".[0-9]*
    echo "$round $mode $clients $target $tps $txns ${failed:-0} $p50 $p99 $utime $stime" >>"$WORK/results.tsv"
    log "round $round: $mode -c $clients $target: $tps tps, p50 $p50 µs, p99 $p99 µs, failed ${failed:-0}"
}

total=$((ROUNDS * ${#TESTS[@]} * ${#TARGETS[@]}))
log "running $total pgbench runs: $ROUNDS round(s) x ${#TESTS[@]} tests x ${#TARGETS[@]} targets, $DURATION s each"
for round in $(seq 1 "$ROUNDS"); do
    for test in "${TESTS[@]}"; do
        read -r mode clients <<<"$test"
        for i in 0 1 2; do
            run_one "$round" "$mode" "$clients" "${TARGETS[$(((i + round - 1) % 3))]}"
        done
    done
done
PROXY_RSS_END=$(rss_kib "$PROXY_PID")

# ---------------------------------------------------------------------------------------------
# Report.

echo "pgpurpose benchmark: $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, $ROUNDS round(s) x $DURATION s per run"
echo "$("$PGBIN/postgres" --version), $("$PGBOUNCER" --version 2>&1 | head -n 1), pgbench -S scale 10 (shared_buffers $PG_SHARED_BUFFERS) and benches/orm.sql"
echo
python3 "$BENCHES/bench_report.py" table "$WORK/results.tsv" "$CLK_TCK" "$WORK/idle.tsv"
echo
echo "pgpurpose RSS: $PROXY_RSS_START KiB at start, $PROXY_RSS_END KiB after the runs"

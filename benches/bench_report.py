#!/usr/bin/env python3
"""Number crunching for benches/pgbench.sh (standard library only).

  bench_report.py latency LOG_PREFIX
      p50 and p99 transaction latency in microseconds from pgbench per-transaction logs
      (`pgbench -l --log-prefix=LOG_PREFIX` writes LOG_PREFIX.<pid>[.<thread>]).
  bench_report.py table RESULTS_TSV CLK_TCK [IDLE_TSV]
      The summary table (medians over rounds) and the issue-2 targets.

RESULTS_TSV rows: round mode clients target tps txns failed p50_us p99_us utime stime
  (utime, stime: clock ticks the target's process spent in user and kernel mode during the
  run; -1 when not measured, as for the direct target).
IDLE_TSV rows: target connections rss_before_kib rss_after_kib
"""

import glob
import statistics
import sys

TARGETS = ["direct", "pgbouncer", "pgpurpose"]
MODES = ["simple", "extended", "prepared", "orm"]

# Performance targets for the relay (issue 2).
TARGET_MIN_TPS_VS_PGBOUNCER = 1.0  # at 8 clients, every mode
TARGET_MAX_CPU_US = 25.0  # proxy CPU per transaction at 8 clients
TARGET_MAX_P50_EXTRA_US = 40.0  # p50 over direct at 1 client
TARGET_MAX_IDLE_KIB = 64.0  # per idle client connection


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


def latency(prefix):
    values = []
    for path in glob.glob(glob.escape(prefix) + ".*"):
        with open(path) as f:
            for line in f:
                fields = line.split()
                # client_id transaction_no time script_no time_epoch time_us: `time` is the
                # transaction's latency in µs, or a word (failed, skipped) we leave out.
                if len(fields) >= 3 and fields[2].isdigit():
                    values.append(int(fields[2]))
    values.sort()
    print("%d %d" % (percentile(values, 50), percentile(values, 99)))


def load_results(path):
    runs = {}
    with open(path) as f:
        for line in f:
            r = line.split()
            if len(r) != 11:
                continue
            key = (r[1], int(r[2]), r[3])
            runs.setdefault(key, []).append(
                {
                    "tps": float(r[4]),
                    "txns": int(r[5]),
                    "failed": int(r[6]),
                    "p50": float(r[7]),
                    "p99": float(r[8]),
                    "utime": int(r[9]),
                    "stime": int(r[10]),
                }
            )
    return runs


def summarize(runs, clk_tck):
    """Median of each metric over the rounds, per (mode, clients, target)."""
    out = {}
    for key, rounds in runs.items():
        measured = [x for x in rounds if x["utime"] >= 0 and x["txns"] > 0]
        per_txn = 1e6 / clk_tck

        def cpu_of(fields):
            values = [sum(x[f] for f in fields) * per_txn / x["txns"] for x in measured]
            return statistics.median(values) if values else None

        out[key] = {
            "tps": statistics.median(x["tps"] for x in rounds),
            "p50": statistics.median(x["p50"] for x in rounds),
            "p99": statistics.median(x["p99"] for x in rounds),
            "cpu": cpu_of(["utime", "stime"]),
            "usr": cpu_of(["utime"]),
            "sys": cpu_of(["stime"]),
            "failed": sum(x["failed"] for x in rounds),
            "rounds": len(rounds),
        }
    return out


def table(results_path, clk_tck, idle_path=None):
    runs = load_results(results_path)
    summary = summarize(runs, clk_tck)
    header = "%-9s %7s  %-10s %9s %8s %8s %11s %9s %8s %10s" % (
        "mode",
        "clients",
        "target",
        "TPS",
        "p50 µs",
        "p99 µs",
        "CPU µs/txn",
        "(usr/sys)",
        "/direct",
        "/pgbouncer",
    )
    print(header)
    print("-" * len(header))
    keys = sorted(
        {(m, c) for (m, c, _) in summary},
        key=lambda mc: (MODES.index(mc[0]) if mc[0] in MODES else 99, mc[1]),
    )
    failed_total = 0
    for mode, clients in keys:
        direct = summary.get((mode, clients, "direct"))
        bouncer = summary.get((mode, clients, "pgbouncer"))
        for target in TARGETS:
            s = summary.get((mode, clients, target))
            if s is None:
                continue
            failed_total += s["failed"]
            cpu = "-" if s["cpu"] is None else "%.1f" % s["cpu"]
            split = "-" if s["cpu"] is None else "%.0f/%.0f" % (s["usr"], s["sys"])
            vs_direct = "%.2f" % (s["tps"] / direct["tps"]) if direct else "-"
            vs_bouncer = "%.2f" % (s["tps"] / bouncer["tps"]) if bouncer else "-"
            print(
                "%-9s %7d  %-10s %9.0f %8.0f %8.0f %11s %9s %8s %10s"
                % (mode, clients, target, s["tps"], s["p50"], s["p99"], cpu, split, vs_direct,
                   vs_bouncer)
            )
    rounds = max((s["rounds"] for s in summary.values()), default=0)
    print(
        "(medians over %d round(s); TPS without connection time; CPU = utime+stime of the "
        "target process / transactions (usr/sys: the two parts), tick %.0f ms; failed "
        "transactions: %d)"
        % (rounds, 1000.0 / clk_tck, failed_total)
    )

    idle = {}
    rows = []
    if idle_path:
        with open(idle_path) as f:
            rows = [line.split() for line in f if len(line.split()) == 4]
    if rows:
        print()
        print("idle client connections (RSS of the target process, VmRSS):")
        for r in rows:
            target, conns, before, after = r[0], int(r[1]), int(r[2]), int(r[3])
            per = (after - before) / conns if conns else float("nan")
            idle[target] = per
            print(
                "  %-10s %5d connections: %7d KiB -> %7d KiB = %.1f KiB per connection"
                % (target, conns, before, after, per)
            )
        if "pgbouncer" in idle:
            print("  (pgbouncer holds no server connection for an idle session-mode client)")

    print()
    print("targets for pgpurpose (issue 2):")
    checks = []
    for mode in MODES:
        p = summary.get((mode, 8, "pgpurpose"))
        b = summary.get((mode, 8, "pgbouncer"))
        if p and b:
            ratio = p["tps"] / b["tps"]
            checks.append(
                ("TPS >= pgbouncer, %s, 8 clients" % mode, "%.2f x" % ratio,
                 ratio >= TARGET_MIN_TPS_VS_PGBOUNCER)
            )
    for mode in MODES:
        p = summary.get((mode, 8, "pgpurpose"))
        if p and p["cpu"] is not None:
            checks.append(
                ("CPU <= %.0f µs/txn, %s, 8 clients" % (TARGET_MAX_CPU_US, mode),
                 "%.1f µs" % p["cpu"], p["cpu"] <= TARGET_MAX_CPU_US)
            )
    for mode in MODES:
        p = summary.get((mode, 1, "pgpurpose"))
        d = summary.get((mode, 1, "direct"))
        if p and d:
            extra = p["p50"] - d["p50"]
            checks.append(
                ("p50 <= direct + %.0f µs, %s, 1 client" % (TARGET_MAX_P50_EXTRA_US, mode),
                 "%+.0f µs" % extra, extra <= TARGET_MAX_P50_EXTRA_US)
            )
    if "pgpurpose" in idle:
        per = idle["pgpurpose"]
        checks.append(
            ("memory < %.0f KiB per idle connection" % TARGET_MAX_IDLE_KIB,
             "%.1f KiB" % per, per < TARGET_MAX_IDLE_KIB)
        )
    for name, value, ok in checks:
        print("  %-44s %12s  %s" % (name, value, "ok" if ok else "MISSED"))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "latency":
        latency(sys.argv[2])
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "table":
        table(sys.argv[2], float(sys.argv[3]), sys.argv[4] if len(sys.argv) == 5 else None)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

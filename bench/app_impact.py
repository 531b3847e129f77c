#!/usr/bin/env python3
"""bench/app_impact.py: what maintenance costs the application.

usage: bench/app_impact.py [--duration 60] [--rate 1000] [--size-mib 100]
                           [--wal-mib 0] [--max-wait-ms 200] [--runs 1]
                           [--baseline-bin PATH] [--skip-naive]

A writer commits one small row per transaction (BEGIN IMMEDIATE; INSERT;
COMMIT, busy_timeout 5 s) at a fixed rate and records every commit's
latency, for --duration seconds, in three runs:
  alone;
  with `sqlprodd run` on an aggressive schedule: TRUNCATE checkpoint every
    5 s (max_wait_ms), backup every 15 s, analyze and vacuum every 10 s;
  with the naive loop: `PRAGMA busy_timeout=30000; PRAGMA
    wal_checkpoint(TRUNCATE)` every 5 s;
--baseline-bin PATH adds a run of another sqlprodd binary on the same
schedule ("sqlprodd (baseline)"), interleaved with the others, to tell
whether a change to the agent helps the application; --skip-naive drops
the naive loop.
Each run prints its five longest commits over 20 ms with their UTC time,
to be matched with the agent's log (BENCH_DIR/app_impact/agent-NAME.log).
--wal-mib N first fills the WAL with N MiB (kept by a connection that stays
open) and the writer does not auto-checkpoint, so the WAL stays large.
The writer starts first and the agent (or the naive loop) 2 s later, so that
its first checkpoint drains the full WAL while the application commits.
Targets (issue 6): zero errors, p99 within 10 % of alone, no stall longer
than max_wait_ms + 50 ms. Issue 18: at least 5 rounds (--runs 5), each
round's p99 divided by that round's "alone" p99, reported as the median and
range of those ratios, so that noise between rounds shows as spread rather
than as a verdict.
"""
import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import benchlib as b

WRITER = r'''
import json, sqlite3, sys, time
path, rate, duration, autocheckpoint, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
db = sqlite3.connect(path, timeout=5.0, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
db.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
latencies, errors, busy, messages, stalls = [], 0, 0, [], []
interval = 1.0 / rate
start = time.monotonic()
next_time = start
n = 0
while time.monotonic() - start < duration:
    t0 = time.perf_counter()
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO items (name, amount, created, status, note) VALUES (?, ?, ?, 'paid', ?)",
                   (f"writer {n}", n * 0.5, int(time.time()), "a small row from the benchmark writer"))
        db.execute("COMMIT")
    except sqlite3.Error as e:
        errors += 1
        busy += "locked" in str(e) or "busy" in str(e)
        if len(messages) < 5:
            messages.append(str(e))
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
    latency = (time.perf_counter() - t0) * 1000
    latencies.append(latency)
    if latency > 20:
        now = time.time()
        stalls.append((round(latency, 1), time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"))
    n += 1
    next_time += interval
    delay = next_time - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    else:
        next_time = time.monotonic()
db.close()
latencies.sort()
def pct(p): return latencies[min(len(latencies) - 1, int(p * len(latencies)))]
json.dump({"commits": len(latencies) - errors, "errors": errors, "busy": busy, "p50": pct(0.5),
           "p99": pct(0.99), "p999": pct(0.999), "max": latencies[-1], "messages": messages,
           "stalls": sorted(stalls, reverse=True)[:5]},
          open(out, "w"))
'''

NAIVE = r'''
import sqlite3, sys, time
path, every = sys.argv[1], float(sys.argv[2])
while True:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    db.close()
    time.sleep(every)
'''


def fill_wal(path, megabytes):
    """A connection that keeps the WAL (no auto-checkpoint) and stays open, so
    its close does not checkpoint it away; returns the holder process."""
    holder = subprocess.Popen([sys.executable, "-c", r'''
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA wal_autocheckpoint=0")
target = int(sys.argv[2]) * 1048576
while __import__("os").path.getsize(sys.argv[1] + "-wal") < target if __import__("os").path.exists(sys.argv[1] + "-wal") else True:
    db.execute("BEGIN")
    db.executemany("UPDATE items SET note = note || ' x' WHERE id = ?", [(i,) for i in range(1, 20001, 3)])
    db.execute("COMMIT")
print("filled", flush=True)
while True:
    time.sleep(3600)
''', path, str(megabytes)], stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    return holder


def scenario(name, database, args, work, binary=None):
    base = os.path.join(b.WORK, f"db-{args.size_mib}.db")
    for suffix in ("", "-wal", "-shm"):
        b.drop(database + suffix)
    subprocess.run(["sqlite3", base, f"VACUUM INTO '{database}'"], check=True)
    subprocess.run(["sqlite3", database, "PRAGMA journal_mode=WAL"], check=True,
                   stdout=subprocess.DEVNULL)
    holder = fill_wal(database, args.wal_mib) if args.wal_mib else None
    wal_start = os.path.getsize(database + "-wal") if os.path.exists(database + "-wal") else 0
    # Whatever setup left dirty (the filled WAL) is written back now, not
    # in the middle of a measured run; then the writer starts first, so that
    # the agent meets the full WAL while the application is committing.
    os.sync()
    report = os.path.join(work, "writer.json")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, database, str(args.rate),
                               str(args.duration), "0" if args.wal_mib else "1000", report])
    time.sleep(2)
    helper = None
    if binary:
        state = os.path.join(work, "state")
        b.drop(state)
        config = os.path.join(work, "bench.conf")
        with open(config, "w") as f:
            f.write(f'state_dir = "{state}";\n'
                    f'databases = ( {{ name = "app"; path = "{database}"; '
                    f'checkpoint = {{ every = "5s"; mode = "truncate"; max_wait_ms = {args.max_wait_ms}; }}; '
                    f'backup = {{ every = "15s"; dir = "{work}/backups"; keep = {{ last = 2; }}; }}; '
                    f'analyze = {{ every = "10s"; }}; vacuum = {{ every = "10s"; }}; '
                    f'health = {{ enabled = false; }}; }} );\n')
        log = os.path.join(work, "agent-" + re.sub(r"\W+", "-", name).strip("-") + ".log")
        helper = subprocess.Popen([binary, "-c", config, "run"], stdout=subprocess.DEVNULL,
                                  stderr=open(log, "a"))
    elif name == "naive loop":
        helper = subprocess.Popen([sys.executable, "-c", NAIVE, database, "5"],
                                  stderr=subprocess.DEVNULL)
    if writer.wait() != 0:
        sys.exit(f"the writer failed in scenario {name}")
    if helper:
        helper.send_signal(signal.SIGTERM)
        helper.wait(timeout=120)
    if holder:
        holder.kill()
        holder.wait()
    with open(report) as f:
        result = json.load(f)
    result["wal_start"] = wal_start
    return result


def main():
    parser = argparse.ArgumentParser(
        description="Measures a writer's commit latency alone, beside `sqlprodd run` and beside"
                    " a naive checkpoint loop. Tables: bench/README.md.")
    parser.add_argument("--duration", type=float, default=60,
                        help="seconds the writer runs per scenario (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=1000,
                        help="the writer's commits per second (default: %(default)s)")
    parser.add_argument("--size-mib", type=int, default=100,
                        help="size of the generated database (default: %(default)s)")
    parser.add_argument("--wal-mib", type=int, default=0,
                        help="MiB to fill the WAL with before each run (default: %(default)s)")
    parser.add_argument("--max-wait-ms", type=int, default=200,
                        help="the agent's checkpoint max_wait_ms; the stall limit is this + 50 "
                             "(default: %(default)s)")
    parser.add_argument("--runs", type=int, default=1,
                        help="interleaved runs of every scenario (default: %(default)s)")
    parser.add_argument("--baseline-bin", metavar="PATH",
                        help="another sqlprodd binary, run as the scenario 'sqlprodd (baseline)'")
    parser.add_argument("--skip-naive", action="store_true",
                        help="leave out the naive checkpoint loop")
    args = parser.parse_args()
    scenarios = [("alone", None), ("sqlprodd", b.binary())]
    if args.baseline_bin:
        scenarios.append(("sqlprodd (baseline)", args.baseline_bin))
    if not args.skip_naive:
        scenarios.append(("naive loop", None))
    work = os.path.join(b.WORK, "app_impact")
    b.drop(work)
    os.makedirs(work)
    b.generate_database(os.path.join(b.WORK, f"db-{args.size_mib}.db"), args.size_mib * 1048576)
    database = os.path.join(work, "app.db")
    results = {}
    for run in range(args.runs):
        for name, binary in scenarios:
            r = scenario(name, database, args, work, binary)
            results.setdefault(name, []).append(r)
            print(f"run {run} {name}: {r}", flush=True)
    alone_p99 = b.median([r["p99"] for r in results["alone"]])
    limit = args.max_wait_ms + 50
    rows = []
    for name, runs in results.items():
        m = lambda k: b.median([r[k] for r in runs])
        # Each run against the "alone" run of the same round, which ran just
        # before it: the noise of the machine moves both alike.
        ratios = [r["p99"] / a["p99"] for r, a in zip(runs, results["alone"])]
        rows.append([name, f"{m('commits'):.0f}", f"{sum(r['errors'] for r in runs)}",
                     f"{sum(r['busy'] for r in runs)}", f"{m('p50'):.3f}", f"{m('p99'):.3f}",
                     f"{m('p99') / alone_p99:.2f}",
                     f"{b.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
                     f"{m('p999'):.3f}", f"{max(r['max'] for r in runs):.1f}",
                     f"{sum(1 for r in runs if r['max'] > limit)}/{len(runs)}"])
    b.table(f"app impact: writer at {args.rate:.0f} tx/s for {args.duration:.0f} s on a "
            f"{args.size_mib} MiB database, WAL at start {args.wal_mib} MiB, max_wait_ms = "
            f"{args.max_wait_ms}, {args.runs} run(s), latency ms",
            ["scenario", "commits", "errors", "busy", "p50", "p99", "p99 vs alone",
             "p99 / alone, per round: median (range)", "p99.9", "max",
             f"runs with a stall > {limit} ms"],
            rows)


if __name__ == "__main__":
    sys.exit(main())

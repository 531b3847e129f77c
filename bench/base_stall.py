#!/usr/bin/env python3
"""bench/base_stall.py: what a replication base costs the application's writers.

usage: bench/base_stall.py [--mib 1024] [--runs 3] [--compare OTHER_BINARY]

A generated database (benchlib's web shop, --mib MiB) in WAL mode; a writer
commits a small row every 10 ms (BEGIN IMMEDIATE, busy timeout 120 s, so a
wait shows as latency, never as an error); then the agent starts with
`replicate` to a dir target and takes its first base. Measured per run: how
long the base took (agent start to index.json on the target), the writer's
worst commit and p99 while it was taken, and its commits in that time. The
table shows medians of --runs. With --compare the same runs are made with
another sqlprodd binary (say, a build from before a change), side by side.

Target (design defect 7): the worst commit during a base is the write lock's
short hold (the WAL up to the base's frame copied aside), not the copy.
"""
import argparse
import os
import shutil
import sqlite3
import subprocess
import threading
import time

import benchlib as b


def one_run(binary, source, work):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "target"))
    db = os.path.join(work, "app.db")
    shutil.copyfile(source, db)
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE IF NOT EXISTS beat (id INTEGER PRIMARY KEY, at REAL)")
    config = os.path.join(work, "sqlprodd.conf")
    with open(config, "w") as f:
        f.write(f'''state_dir = "{work}/state";
defaults = {{ backup = {{ dir = "{work}/backups"; }}; }};
targets = ( {{ name = "t"; type = "dir"; path = "{work}/target"; }} );
databases = ( {{ name = "app"; path = "{db}";
               replicate = {{ target = "t"; interval = "1s"; }}; }} );
''')
    latencies, stop = [], threading.Event()

    def write():
        w = sqlite3.connect(db, timeout=120, isolation_level=None)
        while not stop.is_set():
            t0 = time.monotonic()
            w.execute("BEGIN IMMEDIATE")
            w.execute("INSERT INTO beat (at) VALUES (?)", (time.time(),))
            w.execute("COMMIT")
            latencies.append((t0, time.monotonic() - t0))
            time.sleep(0.01)
        w.close()
    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(1)
    started = time.monotonic()
    agent = subprocess.Popen([binary, "-c", config, "run"], stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(work, "agent.log"), "w"))
    index = os.path.join(work, "target", "app", "replica", "index.json")
    while not os.path.exists(index) and time.monotonic() - started < 1800:
        time.sleep(0.05)
    based = time.monotonic()
    stop.set()
    writer.join()
    agent.terminate()
    agent.wait()
    during = sorted(lat for at, lat in latencies if started <= at <= based)
    p99 = during[int(0.99 * (len(during) - 1))] if during else float("nan")
    return {"base": based - started, "worst": max(during, default=float("nan")), "p99": p99,
            "commits": len(during)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", help="another sqlprodd binary, run alike")
    args = parser.parse_args()
    os.makedirs(b.WORK, exist_ok=True)
    source = os.path.join(b.WORK, f"base-stall-{args.mib}.db")
    b.generate_database(source, args.mib << 20)
    binaries = [("sqlprodd", b.binary())]
    if args.compare:
        binaries.append(("compared", args.compare))
    rows = []
    for label, binary in binaries:
        runs = [one_run(binary, source, os.path.join(b.WORK, "base-stall"))
                for _ in range(args.runs)]

        def med(key):
            return b.median([r[key] for r in runs])
        rows.append([f"{label} ({os.path.basename(os.path.dirname(binary)) or binary})",
                     f"{b.mib(os.path.getsize(source))}", f"{med('base'):.1f} s",
                     f"{med('commits'):.0f}", f"{med('p99') * 1000:.0f} ms",
                     f"{med('worst') * 1000:.0f} ms"])
    b.table(f"A first base beside a writer committing every 10 ms (medians of {args.runs})",
            ["binary", "database", "base took", "commits meanwhile", "commit p99",
             "worst commit"], rows)


if __name__ == "__main__":
    main()

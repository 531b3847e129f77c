"""The application for the replication tests: commits at a given rate and logs,
after each commit, what a point-in-time restore must reproduce.

usage: pitr_writer.py DB --log LOG --stop STOP_FILE [--rate N]
           [--checkpoint none|passive:N|truncate:N] [--busy-timeout MS]
           [--autocheckpoint PAGES] [--report REPORT_JSON] [--seed S]

Each commit k (1, 2, ...) is one of: an insert of a small row (most), an
update or a delete of an earlier row, or (1 in 50) a multi-page transaction
(a 20..120 KiB blob plus a few rows). Every commit also sets meta.k = k.

The log has one line per commit, "k before_begin after_commit hash": the
wall time (time.time()) just before BEGIN, just after COMMIT returned, and
the content hash of the database as of that commit. The content hash is a
multiset hash: the sum, modulo 2**128, of sha256(id, payload)[:16] over every
row of `rows` plus the meta row, so that the writer keeps it up to date in
O(rows changed) per commit and content_hash(PATH) computes the same value
from any file, such as a restored one. A restored file whose meta.k is k and
whose content_hash equals the logged hash of k is exactly the database
after commit k.

--checkpoint passive:N / truncate:N runs the application's own
PRAGMA wal_checkpoint(PASSIVE|TRUNCATE) every N commits (TRUNCATE under the
busy timeout); each result (busy, log, checkpointed) and how long it waited
go to the report, with the commit latencies and every error seen.
The log is flushed at least every 0.2 s and at exit (SIGTERM or STOP_FILE).
"""
import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import sys
import time

MOD = 1 << 128
SCHEMA = ("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);"
          "CREATE TABLE IF NOT EXISTS meta (one INTEGER PRIMARY KEY CHECK (one = 1), k INTEGER);")


def row_hash(row_id, payload):
    digest = hashlib.sha256(row_id.to_bytes(8, "big") + bytes(payload)).digest()
    return int.from_bytes(digest[:16], "big")


def meta_hash(k):
    return row_hash(-1 & 0xFFFFFFFFFFFFFFFF, b"meta:%d" % k)


def content_hash(path):
    """(k, hash) of a database file: meta.k and the multiset hash of its rows."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        k = db.execute("SELECT k FROM meta WHERE one = 1").fetchone()
        k = k[0] if k else 0
        total = meta_hash(k)
        for row_id, payload in db.execute("SELECT id, payload FROM rows"):
            total = (total + row_hash(row_id, payload)) % MOD
        return k, f"{total:032x}"
    finally:
        db.close()


def create(path, page_size=4096):
    """The writer's tables in a new WAL database (commit 0)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size={page_size}")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta (one, k) VALUES (1, 0)")
    db.close()


def read_log(path):
    """{k: (before_begin, after_commit, hash)} from a writer's log."""
    commits = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4:
                commits[int(parts[0])] = (float(parts[1]), float(parts[2]), parts[3])
    return commits


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--log", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--checkpoint", default="none")
    parser.add_argument("--busy-timeout", type=int, default=5000)
    parser.add_argument("--autocheckpoint", type=int, default=None)
    parser.add_argument("--synchronous", default="NORMAL")
    parser.add_argument("--report")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--big-every", type=int, default=50)
    # bench/replicate.py finds commit k on a target by the text MK<k>; in
    # every payload the commit writes
    parser.add_argument("--marker", action="store_true")
    args = parser.parse_args()

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    rng = random.Random(args.seed)
    db = sqlite3.connect(args.db, timeout=args.busy_timeout / 1000.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={args.synchronous}")
    if args.autocheckpoint is not None:
        db.execute(f"PRAGMA wal_autocheckpoint={args.autocheckpoint}")
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta (one, k) VALUES (1, 0)")
    # Resume from what the file holds (a writer restarted on the same file).
    rows = {row_id: row_hash(row_id, payload)
            for row_id, payload in db.execute("SELECT id, payload FROM rows")}
    ids = list(rows)
    k = db.execute("SELECT k FROM meta").fetchone()[0]
    total = (sum(rows.values()) + meta_hash(k)) % MOD
    next_id = max(ids, default=0) + 1

    mode, _, every = args.checkpoint.partition(":")
    every = int(every or 0)
    log = open(args.log, "a")
    report = {"commits": 0, "errors": 0, "busy": 0, "messages": [], "latencies_ms": [],
              "checkpoints": []}
    interval = 1.0 / args.rate
    next_time = time.monotonic()
    last_flush = time.monotonic()
    while not stopping and not os.path.exists(args.stop):
        kind = rng.random()
        changes = []  # (id, payload or None)
        if k % args.big_every == args.big_every - 1:
            changes.append((next_id, rng.randbytes(rng.randint(20_000, 120_000))))
            next_id += 1
            for _ in range(rng.randint(2, 20)):
                changes.append((next_id, rng.randbytes(rng.randint(10, 300))))
                next_id += 1
        elif kind < 0.1 and ids:
            changes.append((rng.choice(ids), rng.randbytes(rng.randint(10, 300))))
        elif kind < 0.15 and ids:
            changes.append((ids[rng.randrange(len(ids))], None))
        else:
            changes.append((next_id, rng.randbytes(rng.randint(10, 300))))
            next_id += 1
        if args.marker:
            mark = b"MK%09d;" % (k + 1)
            changes = [(i, p if p is None else mark + p) for i, p in changes]
        before = time.time()
        started = time.monotonic()
        try:
            db.execute("BEGIN IMMEDIATE")
            for row_id, payload in changes:
                if payload is None:
                    db.execute("DELETE FROM rows WHERE id = ?", (row_id,))
                else:
                    db.execute("INSERT OR REPLACE INTO rows (id, payload) VALUES (?, ?)",
                               (row_id, payload))
            db.execute("UPDATE meta SET k = ? WHERE one = 1", (k + 1,))
            db.execute("COMMIT")
        except sqlite3.Error as e:
            report["errors"] += 1
            if "locked" in str(e) or "busy" in str(e):
                report["busy"] += 1
            if len(report["messages"]) < 10:
                report["messages"].append(str(e))
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            continue
        after = time.time()
        report["latencies_ms"].append(round((time.monotonic() - started) * 1000, 3))
        total = (total - meta_hash(k)) % MOD
        k += 1
        total = (total + meta_hash(k)) % MOD
        for row_id, payload in changes:
            old = rows.pop(row_id, None)
            if old is not None:
                total = (total - old) % MOD
            if payload is None:
                ids.remove(row_id)
            else:
                if old is None:
                    ids.append(row_id)
                rows[row_id] = row_hash(row_id, payload)
                total = (total + rows[row_id]) % MOD
        log.write(f"{k} {before:.6f} {after:.6f} {total:032x}\n")
        report["commits"] += 1
        if mode != "none" and every and k % every == 0:
            waited = time.monotonic()
            try:
                result = db.execute(f"PRAGMA wal_checkpoint({mode.upper()})").fetchone()
                report["checkpoints"].append(
                    {"k": k, "mode": mode, "result": list(result),
                     "ms": round((time.monotonic() - waited) * 1000, 1)})
            except sqlite3.Error as e:
                report["checkpoints"].append(
                    {"k": k, "mode": mode, "error": str(e),
                     "ms": round((time.monotonic() - waited) * 1000, 1)})
        if time.monotonic() - last_flush > 0.2:
            log.flush()
            last_flush = time.monotonic()
        next_time += interval
        delay = next_time - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1:
            next_time = time.monotonic()
    log.close()
    db.close()
    if args.report:
        with open(args.report + ".tmp", "w") as f:
            json.dump(report, f)
        os.rename(args.report + ".tmp", args.report)


if __name__ == "__main__":
    sys.exit(main())


class ReplicaWriter:
    """Starts pitr_writer.py as a separate process; stop() returns its report."""

    def __init__(self, path, rate=500, checkpoint="none", busy_timeout_ms=5000,
                 autocheckpoint=None, seed=1, extra=()):
        self.path = path
        self.log = path + ".commits"
        self.report_path = path + ".writer-report.json"
        self.stop_file = path + ".writer-stop"
        for leftover in (self.report_path, self.stop_file):
            if os.path.exists(leftover):
                os.unlink(leftover)
        argv = [sys.executable, os.path.abspath(__file__), path, "--log", self.log,
                "--stop", self.stop_file, "--rate", str(rate), "--checkpoint", checkpoint,
                "--busy-timeout", str(busy_timeout_ms), "--report", self.report_path,
                "--seed", str(seed), *extra]
        if autocheckpoint is not None:
            argv += ["--autocheckpoint", str(autocheckpoint)]
        import subprocess
        self.process = subprocess.Popen(argv)

    def stop(self, timeout=60):
        open(self.stop_file, "w").close()
        self.process.wait(timeout=timeout)
        os.unlink(self.stop_file)
        with open(self.report_path) as f:
            return json.load(f)

    def commits(self):
        return read_log(self.log)

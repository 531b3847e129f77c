"""An application for the replication tests: commits one row per transaction
and logs "ID TIME" (wall clock, after COMMIT returned) for each to LOG.

usage: replica_writer.py DB RATE LOG STOP_FILE [CHECKPOINT_MODE CHECKPOINT_EVERY_S]
Runs until STOP_FILE exists. With CHECKPOINT_MODE (passive, truncate) it runs
its own `PRAGMA wal_checkpoint(MODE)` every CHECKPOINT_EVERY_S seconds with a
5 s busy timeout, and logs "checkpoint MODE BUSY MS" for each.
"""
import os
import sqlite3
import sys
import time

path, rate, log_path, stop_file = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
mode = sys.argv[5] if len(sys.argv) > 5 else None
every = float(sys.argv[6]) if len(sys.argv) > 6 else 1.5
db = sqlite3.connect(path, timeout=5.0, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS r (id INTEGER PRIMARY KEY, payload BLOB)")
log = open(log_path, "a", buffering=1)
interval = 1.0 / rate
next_time = time.monotonic()
next_checkpoint = time.monotonic() + every
while not os.path.exists(stop_file):
    db.execute("BEGIN IMMEDIATE")
    cursor = db.execute("INSERT INTO r (payload) VALUES (?)", (os.urandom(300),))
    db.execute("COMMIT")
    log.write(f"{cursor.lastrowid} {time.time():.6f}\n")
    if mode and time.monotonic() >= next_checkpoint:
        started = time.monotonic()
        busy, _, _ = db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        log.write(f"checkpoint {mode} {busy} {(time.monotonic() - started) * 1000:.1f}\n")
        next_checkpoint = time.monotonic() + every
    next_time += interval
    delay = next_time - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    else:
        next_time = time.monotonic()
db.close()

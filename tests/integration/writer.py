"""The application under test: commits small transactions at a fixed rate.

usage: writer.py DB RATE BUSY_TIMEOUT_MS REPORT_JSON STOP_FILE
Runs until STOP_FILE exists, then writes {"commits", "errors", "busy",
"max_latency_ms", "messages"} to REPORT_JSON. Every error is counted: the
agent must never make the application fail.
"""
import json
import os
import sqlite3
import sys
import time

path, rate, busy_timeout, report, stop_file = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
db = sqlite3.connect(path, timeout=busy_timeout / 1000.0, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
commits = errors = busy = 0
max_latency = 0.0
messages = []
interval = 1.0 / rate
next_time = time.monotonic()
while not os.path.exists(stop_file):
    started = time.monotonic()
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO items (name, amount, created) VALUES (?, ?, ?)",
                   (f"writer-{commits}", commits * 0.5, int(time.time())))
        db.execute("COMMIT")
        commits += 1
    except sqlite3.Error as e:
        errors += 1
        if "locked" in str(e) or "busy" in str(e):
            busy += 1
        if len(messages) < 10:
            messages.append(str(e))
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
    max_latency = max(max_latency, (time.monotonic() - started) * 1000)
    next_time += interval
    delay = next_time - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    else:
        next_time = time.monotonic()
db.close()
with open(report, "w") as f:
    json.dump({"commits": commits, "errors": errors, "busy": busy,
               "max_latency_ms": max_latency, "messages": messages}, f)

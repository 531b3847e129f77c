"""Soak: the ASan+LSan build of the agent on 20 databases under continuous
write load, with second-level schedules and every database replicated
(interval 1 s, issue 17), for SQLPRODD_SOAK_SECONDS (90 in CI; run it for 600
by hand). Passes when: the agent stays up and stops cleanly, LeakSanitizer
reports nothing at exit, resident memory stays flat after the warm-up, every
job of every database ran (and none failed), the writers never saw an error,
every archive left verifies, no replication broke its chain, and a restore
--at latest of every replica holds exactly what the live database holds."""
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import unittest

from reliability import BIN, AgentTestCase, create_database, rss_kib, verify_archive_dir

SECONDS = int(os.environ.get("SQLPRODD_SOAK_SECONDS", "90"))
DATABASES = 20
ASAN_BIN = os.environ.get("SQLPRODD_ASAN_BIN") or (BIN if BIN.endswith("-asan") else BIN + "-asan")
JOBS = ("checkpoint", "analyze", "vacuum", "backup", "upload", "health")

WRITER = """
import json, os, sqlite3, sys, time
paths, stop, report = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
dbs = [sqlite3.connect(p, timeout=5, isolation_level=None) for p in paths]
commits = errors = 0
messages = []
while not os.path.exists(stop):
    for db in dbs:
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO items (name, amount, created) VALUES (?, ?, ?)",
                       ("soak-" + "y" * (commits % 300), commits, int(time.time())))
            if commits % 7 == 0:
                db.execute("DELETE FROM items WHERE id IN (SELECT id FROM items LIMIT 3)")
            db.execute("COMMIT")
            commits += 1
        except sqlite3.Error as e:
            errors += 1
            messages.append(str(e))
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
    time.sleep(0.02)
with open(report, "w") as f:
    json.dump({"commits": commits, "errors": errors, "messages": messages[:10]}, f)
"""


def content(path):
    """What a database holds, to compare a restore with: rows, their sum, the last id."""
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*), total(amount), max(id) FROM items").fetchone()
    finally:
        db.close()


@unittest.skipUnless(os.access(ASAN_BIN, os.X_OK), f"no sanitized binary at {ASAN_BIN}")
class SoakTest(AgentTestCase):
    def test_twenty_databases_under_load(self):
        offsite = os.path.join(self.dir, "offsite")
        os.mkdir(offsite)
        entries = []
        for i in range(DATABASES):
            name = f"db{i:02d}"
            create_database(self.db_path(name), rows=200, auto_vacuum="INCREMENTAL")
            upload = 'upload = { target = "nas"; keep = { last = 3; }; };' if i % 2 == 0 else ""
            entries.append(f'{{ name = "{name}"; path = "{self.db_path(name)}"; {upload} '
                           'replicate = { target = "nas"; interval = "1s"; }; }')
        self.write_config(
            ",\n".join(entries),
            defaults='checkpoint = { every = "2s"; max_wait_ms = 200; }; '
                     'analyze = { every = "7s"; }; vacuum = { every = "5s"; pages = 50; }; '
                     'health = { every = "3s"; };',
            extra='workers = 2;',
            targets=f'{{ name = "nas"; type = "dir"; path = "{offsite}"; }}')
        # Backups every 4 s, keep the last 2 (the default group sets the dir).
        with open(self.config_path) as f:
            text = f.read().replace('backup = {', 'backup = { every = "4s"; keep = { last = 2; };', 1)
        with open(self.config_path, "w") as f:
            f.write(text)
        self.assertEqual(self.run_cli("check").returncode, 0, self.run_cli("check").stdout)

        stop = os.path.join(self.dir, "writer.stop")
        report = os.path.join(self.dir, "writer.json")
        writer = subprocess.Popen([sys.executable, "-c", WRITER,
                                   ",".join(self.db_path(f"db{i:02d}") for i in range(DATABASES)),
                                   stop, report])
        self.processes.append(writer)
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("JOURNAL_STREAM", None)
        # A small quarantine, so RSS measures the agent, not ASan's hoard.
        # The harness's options (its exit codes and report files) are kept.
        env["ASAN_OPTIONS"] += ":quarantine_size_mb=16"
        log_path = os.path.join(self.dir, "agent.log")
        with open(log_path, "w") as log:
            agent = subprocess.Popen([ASAN_BIN, "-c", self.config_path, "run"], stdout=log,
                                     stderr=subprocess.STDOUT, env=env)
        self.processes.append(agent)
        samples = []
        started = time.monotonic()
        while time.monotonic() - started < SECONDS:
            self.assertIsNone(agent.poll(), f"the agent died:\n{self.agent_log()[-5000:]}")
            samples.append((time.monotonic() - started, rss_kib(agent.pid)))
            time.sleep(1)
        open(stop, "w").close()
        writer.wait(timeout=60)
        # Every replica catches up with its database once the writes stop.
        behind = set(range(DATABASES))

        def replicas_caught_up():
            for i in sorted(behind):
                name = f"db{i:02d}"
                restored = os.path.join(self.dir, f"{name}.restored.db")
                for leftover in (restored, restored + "-wal", restored + "-shm"):
                    if os.path.exists(leftover):
                        os.unlink(leftover)
                result = self.run_cli("restore", name, "--at", "latest", "--to", restored)
                if result.returncode == 0 and content(restored) == content(self.db_path(name)):
                    behind.discard(i)
            return not behind
        self.wait_for(replicas_caught_up, timeout=120, interval=1,
                      what="every replica to hold its database's last commit")
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=120)
        log = self.agent_log()
        self.assertNotIn("LeakSanitizer", log, log[-5000:])
        self.assertNotIn("AddressSanitizer", log, log[-5000:])
        self.assertNotIn("runtime error", log, log[-5000:])
        self.assertNotRegex(log, r"replication break \((broken|chain)\)")
        self.assertEqual(code, 0, log[-3000:])

        # RSS flat: after a warm-up third, the last fifth may not sit more
        # than 20% + 8 MiB above the middle.
        values = [kib for t, kib in samples]
        third, fifth = len(values) // 3, max(len(values) // 5, 1)
        middle = statistics.median(values[third:2 * third])
        tail = statistics.median(values[-fifth:])
        print(f"\nsoak {SECONDS}s: RSS KiB start {values[0]}, middle {middle}, end {tail}, "
              f"max {max(values)}", flush=True)
        self.assertLessEqual(tail, middle * 1.2 + 8192, f"RSS grows: {values}")

        with open(report) as f:
            writes = json.load(f)
        self.assertEqual(writes["errors"], 0, writes)
        db = sqlite3.connect(os.path.join(self.state_dir, "state.db"))
        runs = {(d, j): (total, failures) for d, j, total, failures in
                db.execute("SELECT database, job, runs_total, failures_total FROM job_runs")}
        db.close()
        expected_backups = max(1, int(SECONDS / 4 * 0.5))
        for i in range(DATABASES):
            name = f"db{i:02d}"
            for job in JOBS:
                if job == "upload" and i % 2:
                    continue
                total, failures = runs.get((name, job), (0, 0))
                self.assertGreaterEqual(total, 1, f"{name} {job} never ran")
                # The failed runs' own lines say why; the log's tail rarely does.
                failed_lines = [line for line in log.splitlines()
                                if f"{name}: {job}:" in line and
                                any(word in line for word in (" err:", " error:", " warning:",
                                                              " crit:", "failed"))]
                self.assertEqual(failures, 0, f"{name} {job} failed {failures} times:\n"
                                              + "\n".join(failed_lines[-20:]))
            self.assertGreaterEqual(runs[(name, "backup")][0], expected_backups,
                                    f"{name}: backups fell behind")
            verified, orphans, temps, problems = verify_archive_dir(
                os.path.join(self.backup_dir, name))
            self.assertEqual((orphans, temps, problems), ([], [], []))
            self.assertGreaterEqual(len(verified), 1)
        print(f"soak: {writes['commits']} commits, "
              f"{sum(t for (d, j), (t, f) in runs.items())} job runs, "
              f"{sum(t for (d, j), (t, f) in runs.items() if j == 'backup')} backups", flush=True)


if __name__ == "__main__":
    unittest.main()

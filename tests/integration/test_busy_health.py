"""Busy is not broken: a database that the application holds locked is
`degraded` with "locked since <UTC time>", turns `unhealthy` only after
health.locked_crit, and is back to its old verdict once the lock is gone.
Real locking processes: a rollback-journal database under BEGIN EXCLUSIVE,
and a WAL database in locking_mode=EXCLUSIVE (the one way an application
keeps WAL readers out)."""
import re
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

from harness import AgentTestCase, create_database
from test_printed_fixes import printed_commands

LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "wal":
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO items (name) VALUES ('held')")
else:
    db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
db.execute("COMMIT")
"""

LOCKED_CRIT = 3
STAMP = r"locked since (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)"


class BusyHealthTest(AgentTestCase):
    def configure(self, locked_crit=f"{LOCKED_CRIT}s", extra=""):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; busy_timeout_ms = 200; '
            f'health = {{ locked_crit = "{locked_crit}"; every = "1s"; }}; }}', extra=extra)

    def lock(self, mode):
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, self.db_path(), mode],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.processes.append(locker)
        self.addCleanup(locker.stdout.close)
        self.assertEqual(locker.stdout.readline().strip(), "locked")
        return locker

    def release(self, locker):
        locker.stdin.close()
        self.assertEqual(locker.wait(timeout=30), 0)

    def health(self):
        """Runs the health job; returns (exit status, verdict, reasons)."""
        result = self.run_cli("health", "app", timeout=60)
        [database] = self.status_json()["databases"]
        return result.returncode, database["health"], database["reasons"] or ""

    def assert_locked_then_unhealthy_then_back(self, mode):
        create_database(self.db_path(), rows=50, wal=mode == "wal")
        self.configure()
        code, baseline, baseline_reasons = self.health()
        self.assertNotIn("locked", baseline_reasons)

        locker = self.lock(mode)
        started = time.time()
        code, verdict, reasons = self.health()
        self.assertEqual((code, verdict), (0, "degraded"), reasons)
        since = re.search(STAMP, reasons)
        self.assertIsNotNone(since, reasons)
        seen = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        self.assertLessEqual(abs(time.mktime(time.strptime(since.group(1), "%Y-%m-%d %H:%M:%S UTC"))
                                 - time.mktime(time.strptime(seen, "%Y-%m-%d %H:%M:%S UTC"))), 2)
        self.assertIn("locked_crit", reasons)

        time.sleep(LOCKED_CRIT + 1)
        code, verdict, reasons = self.health()
        self.assertEqual((code, verdict), (1, "unhealthy"), reasons)
        self.assertEqual(re.search(STAMP, reasons).group(1), since.group(1),
                         "the time the lock was first seen is kept")

        self.release(locker)
        code, verdict, reasons = self.health()
        self.assertEqual(verdict, baseline, reasons)
        self.assertNotIn("locked", reasons)
        return baseline

    def test_a_locked_rollback_journal_database_is_degraded_then_unhealthy_after_locked_crit(self):
        self.assert_locked_then_unhealthy_then_back("rollback")

    def test_a_locked_wal_database_is_healthy_again_when_the_lock_is_released(self):
        self.assertEqual(self.assert_locked_then_unhealthy_then_back("wal"), "healthy")

    def test_a_new_lock_is_timed_from_when_it_is_seen(self):
        """The remembered time is cleared with the lock: a later lock starts
        degraded again, not unhealthy at once."""
        create_database(self.db_path(), rows=50)
        self.configure()
        locker = self.lock("wal")
        self.health()
        time.sleep(LOCKED_CRIT + 1)
        self.assertEqual(self.health()[1], "unhealthy")
        self.release(locker)
        self.assertEqual(self.health()[1], "healthy")
        locker = self.lock("wal")
        code, verdict, reasons = self.health()
        self.assertEqual((code, verdict), (0, "degraded"), reasons)
        self.release(locker)

    def test_the_printed_fuser_command_names_the_locking_process(self):
        create_database(self.db_path(), rows=50, wal=False)
        self.configure()
        locker = self.lock("rollback")
        self.health()
        output = self.run_cli("health", "app").stderr
        [command] = [c for c in printed_commands(output) if c.startswith("fuser ")]
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                                cwd="/", timeout=60)
        self.assertIn(str(locker.pid), result.stdout + result.stderr, command)
        self.release(locker)

    def test_agent_health_endpoint_answers_200_while_only_locked(self):
        create_database(self.db_path(), rows=50)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        self.configure(extra=f'metrics = {{ listen = "127.0.0.1:{port}"; }};')
        locker = self.lock("wal")
        agent = self.start_agent()

        def health_status():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, error.read().decode()
            except OSError:
                return None

        self.wait_for(lambda: (health_status() or (0, ""))[1].find("locked since") >= 0,
                      timeout=20, what="the locked verdict")
        status, body = health_status()
        self.assertEqual(status, 200, body)
        self.wait_for(lambda: (health_status() or (0,))[0] == 503, timeout=20,
                      what="unhealthy after locked_crit")
        self.release(locker)
        self.wait_for(lambda: (health_status() or (0,))[0] == 200, timeout=20,
                      what="healthy once the lock is gone")
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0, self.agent_log())


if __name__ == "__main__":
    unittest.main()

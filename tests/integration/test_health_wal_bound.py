"""The health job's quick_check may not be what grows the application's WAL
(defect 12 in docs/replication-design.md). A check is one read transaction,
and no checkpoint can pass it: under a heavy writer the -wal file grows for
as long as the check runs (seconds on a large database read from disk).
Where backups are scheduled their copies carry quick_check and the full
check, so the scheduled health check gives up once the -wal file passes half
of health.wal_warn, and says so; where none are, it is the only check and
runs to its end.

Real parts: a 60 MB database, a writer process committing 2 MiB rewrites
(its WAL grows 10-40 MB a second while a reader holds it), and a thread that
keeps dropping the database file from the page cache (posix_fadvise), so the
agent's check reads it from disk as it would a database larger than memory.
"""
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

from harness import AgentTestCase

WRITER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
pause = float(sys.argv[2])
i = 0
while True:
    db.execute("UPDATE blobs SET body = randomblob(2097152) WHERE id = ?", (i % 4,))
    i += 1
    if i == 1:
        print("writing", flush=True)
    time.sleep(pause)
"""

GIVEN_UP = re.compile(r"quick_check given up after (\d+\.\d) s: (\S+) grew to ([\d.]+ \w+) "
                      r"meanwhile \(over 8\.0 MiB\)")


def create_large_database(path):
    """About 60 MB of short rows under two indexes: a quick_check that reads
    a few thousand pages, plus the four rows the writer rewrites."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript("""
        CREATE TABLE items (id INTEGER PRIMARY KEY, token TEXT, n INTEGER);
        CREATE INDEX items_token ON items (token);
        CREATE INDEX items_n ON items (n);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 800000)
        INSERT INTO items SELECT x, hex(randomblob(5)), random() FROM c;
        CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB);
        INSERT INTO blobs VALUES (0, NULL), (1, NULL), (2, NULL), (3, NULL);
    """)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


class HealthWalBoundTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        create_large_database(self.db_path())
        self.evicting = threading.Event()

    def configure(self, backup):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; {backup} }}',
            defaults='health = { every = "1s"; wal_warn = "16MB"; wal_crit = "1GB"; };\n'
                     'checkpoint = { every = "1h"; }; vacuum = { enabled = false; };\n'
                     'analyze = { enabled = false; };')

    def start_writer(self, pause=0.05):
        """Commits a 2 MiB rewrite, then sleeps `pause` seconds, until killed."""
        writer = subprocess.Popen([sys.executable, "-c", WRITER, self.db_path(), str(pause)],
                                  stdout=subprocess.PIPE, text=True)
        self.processes.append(writer)
        self.addCleanup(writer.stdout.close)
        self.assertEqual(writer.stdout.readline().strip(), "writing")
        return writer

    def evict_while_running(self, every=0.02):
        """Drops the database file's clean pages from the page cache every
        `every` seconds, until the test ends."""
        def run():
            fd = os.open(self.db_path(), os.O_RDONLY)
            try:
                while not self.evicting.wait(every):
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.addCleanup(thread.join)
        self.addCleanup(self.evicting.set)

    def wait_running(self, agent, predicate, what):
        def look():
            if agent.poll() is not None:
                self.fail(f"the agent exited {agent.returncode}:\n{self.agent_log()}")
            return predicate()
        return self.wait_for(look, timeout=120, what=what)

    def health_lines(self):
        return [line for line in self.agent_log().splitlines() if "health" in line and
                re.search(r"\b(healthy|degraded|unhealthy)\b", line)]

    def test_scheduled_check_gives_up_once_the_wal_passes_half_of_wal_warn(self):
        self.configure('backup = { every = "1h"; };')
        self.start_writer()
        self.evict_while_running()
        agent = self.start_agent()
        line = self.wait_running(
            agent, lambda: next((l for l in self.health_lines() if GIVEN_UP.search(l)), None),
            "a quick_check given up")
        found = GIVEN_UP.search(line)
        self.assertEqual(found.group(2), self.db_path() + "-wal", line)
        self.assertIn("each backup checks its copy; the next health run tries again", line)
        # What the check found is nothing: no corruption claimed, nowhere.
        self.assertNotIn("corruption", line)
        status = self.status_json()["databases"][0]
        self.assertNotIn("corruption", status["reasons"] or "")
        self.assertNotEqual(status["health"], "unhealthy", status["reasons"])
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0)

    def test_without_backups_the_check_is_the_only_one_and_runs_to_its_end(self):
        # The writer (20 MB/s) is stopped once the WAL passes 32 MiB, so
        # that a slow disk costs time, not gigabytes: the WAL passes 8 MiB
        # during the first check, which goes on regardless.
        self.configure('backup = { enabled = false; };')
        writer = self.start_writer(pause=0.1)
        wal_path = self.db_path() + "-wal"

        def stop_writer_at_32_mib():
            while writer.poll() is None:
                if os.path.exists(wal_path) and os.path.getsize(wal_path) > 32 << 20:
                    writer.kill()
                time.sleep(0.05)
        stopper = threading.Thread(target=stop_writer_at_32_mib, daemon=True)
        stopper.start()
        self.addCleanup(stopper.join)
        self.addCleanup(writer.kill)
        self.evict_while_running(every=1.0)
        agent = self.start_agent()
        [line] = self.wait_running(agent, lambda: self.health_lines()[:1], "a health run")
        self.assertNotIn("given up", line)
        self.assertNotIn("corruption", line)
        wal = os.path.getsize(wal_path)
        self.assertGreater(wal, 8 << 20, f"the WAL stayed under the limit: nothing shown\n{line}")
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0)

if __name__ == "__main__":
    unittest.main()

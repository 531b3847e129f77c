"""Bad databases: a corrupted copy (bytes flipped), a file that is not
SQLite, a database deleted, replaced or made unreadable while the agent
runs, and one write-locked by the application for tens of seconds. Each
time: a clear error naming the database, no crash, one attempt per
scheduled run (no pile-up of retries), and the good backup taken before is
never pruned because the new one failed."""
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import unittest

from reliability import AgentTestCase, create_database, verify_archive_dir

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
db.execute("INSERT INTO items (name) VALUES ('locked')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def corrupt(path, seed):
    """Flips bytes in the middle pages (table and index b-tree pages)."""
    rng = random.Random(seed)
    with open(path, "r+b") as f:
        size = f.seek(0, 2)
        for offset in range(size // 3, size * 2 // 3, 4096 * 3):
            f.seek(offset + 100)
            f.write(bytes(rng.randrange(256) for _ in range(64)))


class BadDatabaseTest(AgentTestCase):
    def configure(self, every="1h", busy_ms=5000, keep="last = 1;"):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; busy_timeout_ms = {busy_ms}; '
            f'backup = {{ every = "{every}"; keep = {{ {keep} }}; }}; '
            f'checkpoint = {{ every = "{every}"; max_wait_ms = 500; }}; }}')

    def local(self):
        return verify_archive_dir(os.path.join(self.backup_dir, "app"))

    def good_backup(self):
        self.run_cli("backup", "app", check=0)
        [archive] = self.local()[0]
        time.sleep(1.05)
        return archive

    def assert_only(self, archive):
        verified, orphans, temps, problems = self.local()
        self.assertEqual((verified, orphans, temps, problems), ([archive], [], [], []))

    def backup_attempts(self):
        return len(re.findall(r"app: backup: (?:started)", self.agent_log()))

    def test_corrupted_database_fails_verification_and_keeps_the_good_backup(self):
        create_database(self.db_path(), rows=5000, wal=False)
        self.configure()
        good = self.good_backup()
        corrupt(self.db_path(), seed=2)  # "malformed" (seeds 1, 5, 6: see below)
        result = self.run_cli("backup", "app", check=1)
        self.assertRegex(result.stderr, r"app: backup: .*(corrupt|malformed|integrity|verif)")
        self.assert_only(good)  # keep last = 1, and still the old one

    def test_corruption_is_never_reported_as_a_full_disk(self):
        """Some corruptions make VACUUM INTO fail with SQLITE_FULL (a page
        count past the limit); the disk is not full, so telling the operator
        "no space left" sends them the wrong way."""
        create_database(self.db_path(), rows=5000, wal=False)
        pristine = self.db_path() + ".pristine"
        shutil.copy(self.db_path(), pristine)
        self.configure()
        messages = []
        for seed in range(1, 9):
            shutil.copy(pristine, self.db_path())
            corrupt(self.db_path(), seed)
            result = self.run_cli("backup", "app", check=1)
            messages.append(result.stderr)
        for message in messages:
            self.assertNotRegex(message, r"(?i)no space left")
            self.assertRegex(message, r"(?i)corrupt|malformed|not a database|integrity_check")

    def test_not_sqlite(self):
        with open(self.db_path(), "wb") as f:
            f.write(b"this is not a database\n" * 1000)
        self.configure()
        result = self.run_cli("backup", "app", check=1)
        self.assertRegex(result.stderr, r"app: backup: .*not a database")
        result = self.run_cli("check")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("not a database", result.stdout + result.stderr)
        self.assertEqual(self.local(), ([], [], [], []))

    def test_deleted_replaced_and_unreadable_while_the_agent_runs(self):
        create_database(self.db_path(), rows=500)
        self.configure(every="1s", keep="last = 2;")
        agent = self.start_agent()
        self.wait_for(lambda: len(self.local()[0]) >= 1, what="a first backup")
        good = set(self.local()[0])
        # Deleted (with its WAL): the agent reports, keeps running, keeps the backups.
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.db_path() + suffix):
                os.unlink(self.db_path() + suffix)
        started = time.monotonic()
        attempts = self.backup_attempts()
        time.sleep(4)
        self.assertIsNone(agent.poll(), self.agent_log())
        self.assertRegex(self.agent_log(), r"error: app: backup: .*(no such file|does not exist|"
                                           r"unable to open|cannot open)")
        self.assertFalse(os.path.exists(self.db_path()), "the agent must not create the database")
        self.assertTrue(good <= set(self.local()[0]), "failed backups never prune good ones")
        runs = self.backup_attempts() - attempts
        self.assertLessEqual(runs, (time.monotonic() - started) / 1 + 2, "no pile-up of retries")
        # Replaced by another database: backed up from then on.
        create_database(self.db_path(), rows=42)
        self.wait_for(lambda: any(f not in good for f in self.local()[0]), timeout=30,
                      what="a backup of the replacement")
        # Made unreadable: as root, permission bits do not stop us, so the file
        # becomes a directory, which no one can open as a database.
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.db_path() + suffix):
                os.unlink(self.db_path() + suffix)
        os.mkdir(self.db_path())
        before = set(self.local()[0])
        time.sleep(3)
        self.assertIsNone(agent.poll(), self.agent_log())
        self.assertEqual(set(self.local()[0]), before, "nothing pruned by the failures")
        os.rmdir(self.db_path())
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0)
        verified, orphans, temps, problems = self.local()
        self.assertEqual((orphans, temps, problems), ([], [], []))

    @unittest.skipIf(os.geteuid() != 0, "needs root to run the agent as another user")
    def test_permission_denied(self):
        create_database(self.db_path(), rows=100)
        self.configure()
        shutil.chown(self.dir, "nobody")
        os.chmod(self.db_path(), 0)
        result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                 os.environ.get("SQLPRODD_BIN") or "sqlprodd", "-c",
                                 self.config_path, "backup", "app"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertRegex(result.stderr, r"(?i)app: backup: .*(permission denied|unable to open|"
                                        r"cannot open|readonly)")

    def test_write_locked_by_the_application(self):
        create_database(self.db_path(), rows=500, wal=False)  # rollback journal: readers wait too
        self.configure(every="2s", busy_ms=1000)
        good = self.good_backup()
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, self.db_path(), "20"],
                                  stdout=subprocess.PIPE, text=True)
        self.processes.append(locker)
        self.assertEqual(locker.stdout.readline().strip(), "locked")
        started = time.monotonic()
        result = self.run_cli("backup", "app", check=1, timeout=60)
        self.assertLess(time.monotonic() - started, 15, "busy_timeout bounds the wait")
        self.assertRegex(result.stderr, r"(?i)app: backup: .*(locked|busy)")
        agent = self.start_agent()
        time.sleep(12)
        self.assertIsNone(agent.poll(), self.agent_log())
        attempts = self.backup_attempts()
        self.assertGreaterEqual(attempts, 2)
        self.assertLessEqual(attempts, 12 / 2 + 2, f"no pile-up of retries: {attempts} in 12 s")
        self.assert_only(good)
        locker.wait(timeout=30)
        self.wait_for(lambda: any(f != good for f in self.local()[0]), timeout=30,
                      what="a backup once the lock is gone")
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0)
        self.assertNotIn("AddressSanitizer", self.agent_log())


if __name__ == "__main__":
    unittest.main()

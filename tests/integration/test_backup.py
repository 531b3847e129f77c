"""Backups of live databases: consistent, verified, private, readable with
plain gunzip and sqlite3, and never half-made."""
import gzip
import hashlib
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import unittest

from harness import AgentTestCase, Writer, create_database, row_count


class BackupTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        create_database(self.db_path(), rows=5000)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')

    def restore_with_gunzip(self, archive):
        out = os.path.join(self.dir, "gunzipped.db")
        with open(out, "wb") as f:
            subprocess.run(["gunzip", "-c", archive], stdout=f, check=True)
        return out

    def test_backup_under_concurrent_writer_is_consistent_and_writer_never_fails(self):
        writer = Writer(self.db_path(), rate=300)
        time.sleep(0.5)
        for _ in range(3):
            self.run_cli("backup", "app", check=0)
        report = writer.stop()
        self.assertEqual(report["errors"], 0, report["messages"])
        self.assertGreater(report["commits"], 100)
        archives = self.archives()
        self.assertEqual(len(archives), 3)
        counts = []
        for name in archives:
            archive = os.path.join(self.backup_dir, "app", name)
            subprocess.run(["gzip", "-t", archive], check=True)
            restored = self.restore_with_gunzip(archive)
            check = subprocess.run(["sqlite3", restored, "PRAGMA integrity_check"],
                                   capture_output=True, text=True, check=True)
            self.assertEqual(check.stdout.strip(), "ok")
            counts.append(row_count(restored))
            os.unlink(restored)
        # Each snapshot holds the initial rows plus a growing prefix of the writer's.
        self.assertGreaterEqual(counts[0], 5000)
        self.assertEqual(counts, sorted(counts))
        self.assertLessEqual(counts[-1], row_count(self.db_path()))

    def test_backups_asked_for_within_one_second_each_get_their_own_second(self):
        # Archive names have one-second resolution; a backup asked for in the
        # second of the previous one (an operator's right after the agent's)
        # waits for the next second rather than failing.
        started = time.monotonic()
        for _ in range(3):
            result = self.run_cli("backup", "app", check=0)
        archives = self.archives()
        self.assertEqual(len(archives), 3, result.stderr)
        stamps = [re.search(r"-(\d{8}T\d{6}Z)\.", name).group(1) for name in archives]
        self.assertEqual(len(set(stamps)), 3, stamps)
        self.assertLess(time.monotonic() - started, 10)

    def test_copy_compressed_while_written_gives_exactly_the_vacuum_into_copy(self):
        # With a second CPU the backup compresses blocks of the copy while
        # VACUUM INTO still writes it (the debug log counts them); the
        # archive must still hold exactly the file VACUUM INTO makes, and
        # nothing may be left beside it.
        if len(os.sched_getaffinity(0)) < 2:
            self.skipTest("compressing during the copy needs a second CPU")
        big = self.db_path("big")
        create_database(big, rows=150000, payload=300)
        self.write_config(f'{{ name = "big"; path = "{big}"; }}')
        result = self.run_cli("backup", "big", check=0)
        early = re.search(r"(\d+) MiB compressed while the copy was written, (\d+) rewritten "
                          r"by SQLite afterwards, (\d+) taken into the archive, (\d+) changed "
                          r"unseen by the watch", result.stderr)
        self.assertIsNotNone(early, result.stderr)
        compressed, rewritten, taken, unseen = map(int, early.groups())
        self.assertGreater(compressed, 0, result.stderr)
        self.assertEqual(unseen, 0, result.stderr)
        self.assertEqual(taken, compressed - rewritten, result.stderr)

        [archive] = self.archives("big")
        restored = self.restore_with_gunzip(os.path.join(self.backup_dir, "big", archive))
        reference = os.path.join(self.dir, "reference.db")
        subprocess.run(["sqlite3", big, f"VACUUM INTO '{reference}'"], check=True)
        self.assertGreater(os.path.getsize(reference), 40 << 20)
        with open(restored, "rb") as a, open(reference, "rb") as b:
            self.assertTrue(a.read() == b.read(), "the archive is not the VACUUM INTO copy")
        self.assertEqual(sorted(os.listdir(os.path.join(self.backup_dir, "big"))),
                         [archive, archive + ".json"])

    def hold_exclusive_lock(self, seconds):
        """The application: BEGIN EXCLUSIVE on the (rollback-journal)
        database for `seconds`; returns once the lock is held."""
        subprocess.run(["sqlite3", self.db_path(), "PRAGMA journal_mode=DELETE"], check=True,
                       stdout=subprocess.DEVNULL)
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import sqlite3, sys, time\n"
             "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
             "db.execute('BEGIN EXCLUSIVE')\n"
             "print('locked', flush=True)\n"
             "time.sleep(float(sys.argv[2]))\n"
             "db.execute('COMMIT')\n", self.db_path(), str(seconds)],
            stdout=subprocess.PIPE, text=True)
        self.assertEqual(holder.stdout.readline().strip(), "locked")
        holder.stdout.close()
        return holder

    def test_backup_waits_for_the_applications_exclusive_lock(self):
        # Within busy_timeout_ms (5000) the backup waits, from its very
        # first read, instead of failing with "locked".
        holder = self.hold_exclusive_lock(1.0)
        started = time.monotonic()
        self.run_cli("backup", "app", check=0)
        waited = time.monotonic() - started
        self.assertEqual(holder.wait(timeout=10), 0)
        self.assertGreater(waited, 0.5)
        self.assertEqual(len(self.archives()), 1)

    def test_a_lock_held_past_busy_timeout_is_named_with_the_fix(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; busy_timeout_ms = 300; }}')
        holder = self.hold_exclusive_lock(3.0)
        result = self.run_cli("backup", "app", check=1)
        holder.wait(timeout=10)
        self.assertIn(f"{self.db_path()} is locked by another connection for longer than "
                      "busy_timeout_ms (300 ms)", result.stderr)
        self.assertIn("raise busy_timeout_ms", result.stderr)
        self.assertEqual(self.archives(), [])

    def test_manifest_describes_the_archive(self):
        self.run_cli("backup", "app", check=0)
        [name] = self.archives()
        archive = os.path.join(self.backup_dir, "app", name)
        with open(archive + ".json") as f:
            manifest = json.load(f)
        sha256 = subprocess.run(["sha256sum", archive], capture_output=True, text=True,
                                check=True).stdout.split()[0]
        self.assertEqual(manifest["archive_sha256"], sha256)
        self.assertEqual(manifest["archive_bytes"], os.path.getsize(archive))
        self.assertEqual(manifest["database"], "app")
        self.assertEqual(manifest["source_path"], self.db_path())
        self.assertEqual(manifest["sqlite_version"], sqlite3.sqlite_version)
        self.assertTrue(manifest["verification"]["verified"])
        self.assertEqual(manifest["verification"]["result"], "ok")
        self.assertRegex(name, r"^app-\d{8}T\d{6}Z\.db\.gz$")
        with gzip.open(archive) as f:
            self.assertEqual(f.read(16), b"SQLite format 3\x00")

    def test_files_are_private(self):
        self.run_cli("backup", "app", check=0)
        directory = os.path.join(self.backup_dir, "app")
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        for name in os.listdir(directory):
            mode = stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode)
            self.assertEqual(mode, 0o600, name)

    def test_live_database_is_not_modified(self):
        before = hashlib.sha256(open(self.db_path(), "rb").read()).hexdigest()
        self.run_cli("backup", "app", check=0)
        after = hashlib.sha256(open(self.db_path(), "rb").read()).hexdigest()
        self.assertEqual(before, after)

    def test_sigterm_aborts_a_backup_cleanly(self):
        create_database(self.db_path(), rows=300000, payload=400)
        process = subprocess.Popen(self.cli_args("backup", "app"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        directory = os.path.join(self.backup_dir, "app")
        self.wait_for(lambda: os.path.isdir(directory) and any(
            "sqlprodd-tmp" in f for f in os.listdir(directory)), what="the backup's temp file")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(process.returncode, 1)
        self.assertIn("interrupted", stderr)
        self.assertEqual(os.listdir(directory), [])

    def test_corrupt_source_fails_verification_and_keeps_old_backups(self):
        self.run_cli("backup", "app", check=0)
        good = self.archives()
        time.sleep(1.1)
        # Damage a page in the middle of the table's b-tree (not the header).
        with open(self.db_path(), "r+b") as f:
            f.seek(4096 * 5)
            f.write(b"\xff" * 4096)
        result = self.run_cli("backup", "app", check=1)
        self.assertRegex(result.stderr, r"backup: .*(integrity_check|malformed|corrupt)")
        self.assertEqual(self.archives(), good)

    def test_missing_database_fails_with_clear_message(self):
        os.unlink(self.db_path())
        result = self.run_cli("backup", "app", check=1)
        self.assertIn(f"database file {self.db_path()} does not exist", result.stderr)

    def test_retention_keeps_what_the_rules_say(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; '
                          f'backup = {{ keep = {{ last = 2; }}; }}; }}')
        for _ in range(4):
            self.run_cli("backup", "app", check=0)
            time.sleep(1.05)
        archives = self.archives()
        self.assertEqual(len(archives), 2)
        listing = json.loads(self.run_cli("backups", "app", "--json", check=0).stdout)
        self.assertEqual(sorted(os.path.basename(b["archive"]) for b in listing), archives)

    def cli_args(self, *args):
        from harness import BIN
        return [BIN, "-c", self.config_path, *args]


if __name__ == "__main__":
    unittest.main()

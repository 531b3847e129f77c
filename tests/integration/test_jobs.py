"""Maintenance jobs on real databases: checkpoint, analyze, vacuum, health."""
import os
import shutil
import sqlite3
import subprocess
import threading
import time
import unittest

from harness import BIN, AgentTestCase, Writer, create_database


def wal_size(path):
    try:
        return os.path.getsize(path + "-wal")
    except FileNotFoundError:
        return 0


class CheckpointTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        create_database(self.db_path(), rows=20000)

    def config(self, mode="truncate", max_wait_ms=500):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; '
                          f'checkpoint = {{ mode = "{mode}"; max_wait_ms = {max_wait_ms}; }}; }}')

    def hold_wal_open(self):
        """The application keeps the WAL alive: one connection stays open."""
        keeper = sqlite3.connect(self.db_path())
        keeper.execute("SELECT count(*) FROM items").fetchone()  # really opens the file
        db = sqlite3.connect(self.db_path())
        with db:
            db.executemany("INSERT INTO items (name) VALUES (?)", ((str(i),) for i in range(20000)))
        db.close()
        return keeper

    def test_truncate_checkpoint_empties_the_wal_under_a_writer(self):
        self.config()
        keeper = self.hold_wal_open()
        self.assertGreater(wal_size(self.db_path()), 100000)
        writer = Writer(self.db_path(), rate=200)
        time.sleep(0.3)
        result = self.run_cli("checkpoint", "app", check=0)
        report = writer.stop()
        keeper.close()
        self.assertEqual(report["errors"], 0, report["messages"])
        # The frames the PASSIVE pass copied count: TRUNCATE alone reports 0 once it resets the log.
        self.assertRegex(result.stderr, r"truncate checkpoint: [1-9]\d* frames? copied")
        # The writer kept committing after the truncation, so a little WAL is back;
        # without the checkpoint it would be megabytes.
        self.assertLess(wal_size(self.db_path()), 200000)

    def test_blocked_by_a_reader_falls_back_to_passive_within_max_wait(self):
        self.config(max_wait_ms=300)
        keeper = self.hold_wal_open()
        reader = sqlite3.connect(self.db_path(), isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM items").fetchone()  # holds a read snapshot
        writer_db = sqlite3.connect(self.db_path(), timeout=5, isolation_level=None)
        started = time.monotonic()
        result = self.run_cli("checkpoint", "app", check=0)
        elapsed = time.monotonic() - started
        self.assertIn("blocked", result.stderr)
        self.assertIn("max_wait_ms=300", result.stderr)
        self.assertLess(elapsed, 3)
        # The application can still write at once afterwards.
        t = time.monotonic()
        writer_db.execute("INSERT INTO items (name) VALUES ('after')")
        self.assertLess(time.monotonic() - t, 0.5)
        reader.execute("COMMIT")
        for db in (reader, writer_db, keeper):
            db.close()
        status = self.status_json("app")["databases"][0]["jobs"]["checkpoint"]
        self.assertEqual(status["last_result"], "warning")
        self.assertIn("blocked", status["last_message"])

    def test_rollback_journal_database_is_reported_not_failed(self):
        create_database(self.db_path("plain"), rows=10, wal=False)
        self.write_config(f'{{ name = "plain"; path = "{self.db_path("plain")}"; }}')
        result = self.run_cli("checkpoint", "plain", check=0)
        self.assertIn("journal_mode is delete", result.stderr)
        self.assertIn("PRAGMA journal_mode=WAL", result.stderr)


class AnalyzeVacuumTest(AgentTestCase):
    def test_analyze_fills_sqlite_stat1(self):
        create_database(self.db_path(), rows=2000)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        self.run_cli("analyze", "app", check=0)
        db = sqlite3.connect(self.db_path())
        stats = db.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0]
        db.close()
        self.assertGreater(stats, 0)

    def fsynced_files(self, job):
        """The files `sqlprodd JOB app` fsyncs, seen by strace on the real binary."""
        trace = os.path.join(self.dir, "fsync.trace")
        # LeakSanitizer cannot stop the world under a tracer; the other
        # asan.* tests look for leaks.
        env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        result = subprocess.run(["strace", "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync", "-o",
                                 trace, BIN, "-c", self.config_path, job, "app"],
                                capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(trace) as f:
            return [line.split("<", 1)[1].split(">", 1)[0] for line in f if "sync(" in line]

    @unittest.skipUnless(shutil.which("strace"), "strace is not installed (scripts/install-deps)")
    def test_analyze_does_not_flush_the_applications_wal_under_the_write_lock(self):
        # An application in WAL mode with synchronous=NORMAL leaves its frames
        # unsynced; a FULL commit of ANALYZE fsynced them all while holding the
        # write lock (a 55 ms stall for the writer, bench/app_impact.py).
        create_database(self.db_path(), rows=2000)
        keeper = sqlite3.connect(self.db_path(), isolation_level=None)
        keeper.execute("PRAGMA synchronous=NORMAL")
        keeper.execute("PRAGMA wal_autocheckpoint=0")
        keeper.executemany("INSERT INTO items (name) VALUES (?)", ((str(i),) for i in range(300)))
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        synced = self.fsynced_files("analyze")
        self.assertGreater(keeper.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0], 0)
        self.assertEqual(keeper.execute("PRAGMA quick_check").fetchone()[0], "ok")
        keeper.close()
        self.assertNotIn(self.db_path() + "-wal", synced)

    @unittest.skipUnless(shutil.which("strace"), "strace is not installed (scripts/install-deps)")
    def test_analyze_keeps_full_sync_on_a_rollback_journal_database(self):
        # There NORMAL could corrupt the file on a power loss: the commit still syncs.
        create_database(self.db_path(), rows=2000, wal=False)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        synced = self.fsynced_files("analyze")
        self.assertIn(self.db_path(), synced)

    @unittest.skipUnless(shutil.which("strace"), "strace is not installed (scripts/install-deps)")
    def test_incremental_vacuum_does_not_flush_the_applications_wal(self):
        # Fewer freed pages than the auto-checkpoint threshold (1000), so any
        # fsync of the -wal would be the commit's own, under the write lock.
        create_database(self.db_path(), rows=2000, auto_vacuum="INCREMENTAL")
        keeper = sqlite3.connect(self.db_path(), isolation_level=None)
        keeper.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        keeper.execute("PRAGMA synchronous=NORMAL")
        keeper.execute("PRAGMA wal_autocheckpoint=0")
        keeper.execute("DELETE FROM items WHERE id > 1000")
        free_before = keeper.execute("PRAGMA freelist_count").fetchone()[0]
        self.assertTrue(0 < free_before < 1000, free_before)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        synced = self.fsynced_files("vacuum")
        self.assertEqual(keeper.execute("PRAGMA freelist_count").fetchone()[0], 0)
        keeper.close()
        self.assertNotIn(self.db_path() + "-wal", synced)

    def test_a_write_lock_held_past_busy_timeout_is_named_with_the_fix(self):
        create_database(self.db_path(), rows=100)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; busy_timeout_ms = 100; }}')
        holder = sqlite3.connect(self.db_path(), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the application's writer, mid-transaction
        result = self.run_cli("analyze", "app", check=1)
        holder.execute("ROLLBACK")
        holder.close()
        self.assertIn("ANALYZE: the database stayed locked by another connection through 4 "
                      "attempts", result.stderr)
        self.assertIn("raise busy_timeout_ms", result.stderr)

    def test_incremental_vacuum_returns_free_pages(self):
        create_database(self.db_path(), rows=20000, auto_vacuum="INCREMENTAL")
        db = sqlite3.connect(self.db_path())
        with db:
            db.execute("DELETE FROM items WHERE id > 2000")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        free_before = db.execute("PRAGMA freelist_count").fetchone()[0]
        db.close()
        self.assertGreater(free_before, 100)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        result = self.run_cli("vacuum", "app", check=0)
        self.assertIn(f"returned {free_before} free pages", result.stderr)
        db = sqlite3.connect(self.db_path())
        self.assertEqual(db.execute("PRAGMA freelist_count").fetchone()[0], 0)
        db.close()

    def test_vacuum_explains_when_auto_vacuum_is_off(self):
        create_database(self.db_path(), rows=100)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        result = self.run_cli("vacuum", "app", check=0)
        self.assertIn("auto_vacuum is none, not incremental", result.stderr)
        self.assertIn("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;", result.stderr)


class HealthTest(AgentTestCase):
    def test_healthy_database(self):
        create_database(self.db_path(), rows=100)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        self.run_cli("health", "app", check=0)
        self.assertEqual(self.status_json("app")["databases"][0]["health"], "healthy")

    def test_rollback_journal_is_degraded_with_the_fix(self):
        create_database(self.db_path(), rows=100, wal=False)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        self.run_cli("health", "app", check=0)
        status = self.status_json("app")["databases"][0]
        self.assertEqual(status["health"], "degraded")
        self.assertIn("PRAGMA journal_mode=WAL", status["reasons"])

    def test_not_a_database_is_unhealthy(self):
        with open(self.db_path(), "wb") as f:
            f.write(b"this is not a database" * 1000)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        result = self.run_cli("health", "app", check=1)
        self.assertIn("not a database", result.stderr)
        self.assertEqual(self.status_json("app")["databases"][0]["health"], "unhealthy")


if __name__ == "__main__":
    unittest.main()

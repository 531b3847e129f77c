"""The command line as an operator meets it: errors that name FILE:LINE,
exit codes, check, status, the per-database lock, local restore."""
import json
import os
import pty
import re
import sqlite3
import subprocess
import time
import unittest

from harness import AgentTestCase, BIN, create_database, row_count


class ConfigErrorTest(AgentTestCase):
    def test_every_mistake_is_reported_with_file_line_and_key(self):
        with open(self.config_path, "w") as f:
            f.write(f'state_dir = "{self.state_dir}";\n'
                    'databases = (\n'
                    '  { name = "app"; path = "/tmp/x.db"; backup = { evry = "1h"; }; },\n'
                    '  { name = "app"; path = "/tmp/y.db"; checkpoint = { every = "15 minutes"; }; }\n'
                    ');\n')
        result = self.run_cli("check", check=2)
        lines = result.stderr.splitlines()
        path = self.config_path
        self.assertTrue(any(l.startswith(f"{path}:3: ") and "evry" in l and "every" in l
                            for l in lines), lines)
        self.assertTrue(any(l.startswith(f"{path}:4: ") and "every" in l for l in lines), lines)
        self.assertTrue(any(l.startswith(f"{path}:4: ") and "duplicate" in l for l in lines), lines)

    def test_syntax_error(self):
        with open(self.config_path, "w") as f:
            f.write('state_dir = ;\ndatabases = ( );\n')
        result = self.run_cli("run", check=2)
        self.assertRegex(result.stderr, re.escape(self.config_path) + r":\d+: ")

    def test_missing_config_file(self):
        result = subprocess.run([BIN, "-c", "/nonexistent/sqlprodd.conf", "check"],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn("/nonexistent/sqlprodd.conf", result.stderr)

    def test_sqlprodd_config_environment_variable(self):
        create_database(self.db_path(), rows=10)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        env = dict(os.environ, SQLPRODD_CONFIG=self.config_path)
        result = subprocess.run([BIN, "check"], capture_output=True, text=True, env=env)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_usage_errors_exit_2(self):
        self.write_config("")
        self.assertEqual(self.run_cli("frobnicate").returncode, 2)
        self.assertEqual(self.run_cli("backup", "nosuchdb").returncode, 2)
        self.assertEqual(self.run_cli("restore", "app").returncode, 2)
        self.assertEqual(subprocess.run([BIN, "--help"], capture_output=True).returncode, 0)
        version = subprocess.run([BIN, "--version"], capture_output=True, text=True)
        self.assertRegex(version.stdout, r"^sqlprodd \d+\.\d+\.\d+")


class CheckTest(AgentTestCase):
    def test_check_passes_on_reachable_databases(self):
        create_database(self.db_path(), rows=10)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        result = self.run_cli("check", check=0)
        self.assertIn("configuration OK", result.stdout)

    def test_check_names_missing_database_and_unwritable_directory(self):
        missing = os.path.join(self.dir, "missing.db")
        self.write_config(f'{{ name = "gone"; path = "{missing}"; }}')
        result = self.run_cli("check", check=1)
        self.assertRegex(result.stdout, re.escape(self.config_path) +
                         r":\d+: databases\.gone\.path: .*does not exist")

    def test_check_reports_a_file_that_is_not_a_database(self):
        with open(self.db_path(), "wb") as f:
            f.write(b"garbage" * 1000)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        result = self.run_cli("check", check=1)
        self.assertIn("not a database", result.stdout)


class StatusTest(AgentTestCase):
    def test_status_before_and_after_jobs(self):
        create_database(self.db_path(), rows=10)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        before = self.status_json()
        self.assertFalse(before["agent_state_found"])
        self.run_cli("backup", "app", check=0)
        self.run_cli("health", "app", check=0)
        status = self.status_json()
        db = status["databases"][0]
        self.assertEqual(db["name"], "app")
        self.assertEqual(db["health"], "healthy")
        self.assertEqual(db["jobs"]["backup"]["last_result"], "ok")
        self.assertEqual(db["jobs"]["backup"]["runs_total"], 1)
        self.assertGreater(db["backup_last_bytes"], 0)
        self.assertIsNotNone(db["jobs"]["backup"]["next_due"])
        table = self.run_cli("status", check=0).stdout
        self.assertRegex(table, r"app\s+healthy")
        # The table and the JSON tell the same story.
        self.assertIn(db["health"], table)
        detail = self.run_cli("status", "app", check=0).stdout
        self.assertRegex(detail, r"backup\s+ok")


class LockTest(AgentTestCase):
    def test_one_off_waits_for_the_holder_and_says_who(self):
        create_database(self.db_path(), rows=300000, payload=400)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        first = subprocess.Popen([BIN, "-c", self.config_path, "backup", "app"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lock = os.path.join(self.state_dir, "locks", "app.lock")
        self.wait_for(lambda: os.path.exists(lock) and os.path.getsize(lock) > 0,
                      what="the first backup to hold the lock")
        second = self.run_cli("checkpoint", "app", check=0)
        self.assertRegex(second.stderr, r"waiting for the database lock, held by pid \d+, "
                         r"sqlprodd backup")
        first.communicate(timeout=300)
        self.assertEqual(first.returncode, 0)


class RestoreLocalTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        create_database(self.db_path(), rows=3000)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        self.run_cli("backup", "app", check=0)

    def test_restore_newest_local_backup(self):
        target = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", target, check=0)
        self.assertIn("sha256 matches the manifest, quick_check ok", result.stdout)
        self.assertEqual(row_count(target), 3000)

    def test_restore_checks_in_full_when_asked(self):
        target = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", target, "--check", "integrity", check=0)
        self.assertIn("sha256 matches the manifest, integrity_check ok", result.stdout)
        self.assertEqual(row_count(target), 3000)
        result = self.run_cli("restore", "app", "--to", target + "2", "--check", "full", check=2)
        self.assertIn("--check takes quick or integrity, not 'full'", result.stderr)
        self.assertFalse(os.path.exists(target + "2"))

    def test_restore_refuses_to_overwrite_without_force(self):
        target = os.path.join(self.dir, "restored.db")
        with open(target, "w") as f:
            f.write("precious")
        result = self.run_cli("restore", "app", "--to", target, check=1)
        self.assertIn("--force", result.stderr)
        self.assertEqual(open(target).read(), "precious")
        self.run_cli("restore", "app", "--to", target, "--force", check=0)
        self.assertEqual(row_count(target), 3000)

    def test_restore_over_the_live_database_needs_force(self):
        # With --force it is the bad day's command (test_restore_live.py).
        result = self.run_cli("restore", "app", "--to", self.db_path(), check=1)
        self.assertIn("--force", result.stderr)

    def test_damaged_archive_is_never_restored(self):
        [name] = self.archives()
        archive = os.path.join(self.backup_dir, "app", name)
        data = bytearray(open(archive, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(archive, "wb").write(bytes(data))
        target = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", target, check=1)
        self.assertFalse(os.path.exists(target))
        self.assertEqual([f for f in os.listdir(self.dir) if "sqlprodd-tmp" in f], [])
        self.assertRegex(result.stderr, r"corrupt|does not match")

    def test_restore_a_chosen_backup(self):
        time.sleep(1.1)
        db = sqlite3.connect(self.db_path())
        with db:
            db.execute("DELETE FROM items")
        db.close()
        self.run_cli("backup", "app", check=0)
        listing = json.loads(self.run_cli("backups", "app", "--json", check=0).stdout)
        self.assertEqual(len(listing), 2)
        oldest = listing[-1]["id"]
        target = os.path.join(self.dir, "old.db")
        self.run_cli("restore", "app", "--to", target, "--backup", oldest, check=0)
        self.assertEqual(row_count(target), 3000)


class ProgressTest(AgentTestCase):
    def run_on_terminal(self, *args):
        """stderr on a pseudo-terminal, as when an operator types the command."""
        controller, terminal = pty.openpty()
        process = subprocess.Popen([BIN, "-c", self.config_path, *args],
                                   stdout=subprocess.DEVNULL, stderr=terminal)
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the command closed its end
                break
            if not chunk:
                break
            output += chunk
        os.close(controller)
        self.assertEqual(process.wait(timeout=120), 0, output)
        return output.decode(errors="replace")

    def test_one_off_backup_draws_a_bar_on_a_terminal_and_clears_it_before_the_log(self):
        create_database(self.db_path(), rows=20000)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        output = self.run_on_terminal("backup", "app")
        self.assertRegex(output, r"\rapp +\[#+\] 100\.0%")
        bar_end = output.rindex("100.0%")
        cleared = output.index("\r\x1b[K", bar_end)
        self.assertLess(cleared, output.index("info: app: backup: "), output)
        # Not a terminal: no bar in a log.
        time.sleep(1.05)  # one backup a second
        result = self.run_cli("backup", "app", check=0)
        self.assertIn("info: app: backup: ", result.stderr)
        self.assertNotIn("[#", result.stderr)
        self.assertNotIn("\r", result.stderr)


if __name__ == "__main__":
    unittest.main()

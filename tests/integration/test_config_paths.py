"""No write of the agent lands on something it does not own (issue 13, cases 1,
2 and 5): the built binary refuses each hostile layout at `check`, at the
start of `run`, in one-off commands and on a SIGHUP reload, naming both keys;
the database stays byte-identical and every local archive stays. Behind it,
the second guard: a path that becomes a SQLite database after the config was
checked is still never overwritten."""
import hashlib
import os
import signal
import sqlite3
import subprocess
import time
import unittest

from harness import AgentTestCase, create_database


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def job_runs(test, job, name="app"):
    state = os.path.join(test.state_dir, "state.db")
    if not os.path.exists(state):
        return 0
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT runs_total FROM job_runs WHERE database = ? AND job = ?",
                         (name, job)).fetchone()
        return row[0] if row else 0
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


# Jobs that could legitimately change the database file are off, so that
# "byte-identical" is a fair question after the agent ran.
QUIET = ('analyze = { enabled = false; }; vacuum = { enabled = false; }; '
         'checkpoint = { every = "1s"; }; backup = { every = "1h"; keep = { last = 24; }; };')


class ConfigPathsTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        create_database(self.db_path(), rows=500)
        self.textfile = os.path.join(self.dir, "metrics", "sqlprodd.prom")
        os.mkdir(os.path.dirname(self.textfile))
        self.write_sound()
        # Four local backups that local retention (last = 24) keeps.
        for _ in range(4):
            self.run_cli("backup", "app", check=0)
            time.sleep(1.05)
        self.local_archives = sorted(os.listdir(os.path.join(self.backup_dir, "app")))
        self.assertEqual(len(self.archives()), 4)
        self.database_digest = digest(self.db_path())

    def write_sound(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; {QUIET} }}',
                          extra=f'metrics = {{ textfile = "{self.textfile}"; }};')

    def wait_until_started(self):
        # Not the textfile: one-off jobs write it too. SIGHUP before the
        # agent has blocked it would end the agent.
        self.wait_for(lambda: "started:" in self.agent_log(), what="the agent's start")
        self.wait_for(lambda: os.path.exists(self.textfile), what="the metrics textfile")

    def line_of(self, text):
        with open(self.config_path) as f:
            for number, line in enumerate(f, 1):
                if text in line:
                    return number
        self.fail(f"{text!r} not in the config")

    # Each writes a hostile config and returns (line, key, other) that the
    # refusal must name: "CONFIG:LINE: KEY: ... OTHER ...".
    def textfile_is_the_database(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; {QUIET} }}',
                          extra=f'metrics = {{ textfile = "{self.db_path()}"; }};')
        return (self.line_of("textfile"), "metrics.textfile",
                f'databases.app.path (line {self.line_of("name = ")})')

    def target_is_the_backup_directory(self):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; {QUIET} '
            f'upload = {{ target = "nas"; keep = {{ last = 1; }}; }}; }}',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.backup_dir}"; }}')
        return (self.line_of("targets ="), "targets.nas.path",
                f'defaults.backup.dir (line {self.line_of("backup = { dir =")})')

    def same_file_as(self, other_path):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; {QUIET} }}, '
                          f'{{ name = "copy"; path = "{other_path}"; {QUIET} }}')
        return (self.line_of("name = "), "databases.copy.path",
                f'databases.app.path (line {self.line_of("name = ")})')

    def same_file_by_dot_and_double_slash(self):
        return self.same_file_as(self.dir + "//./app.db")

    def same_file_by_symlink(self):
        link = os.path.join(self.dir, "link.db")
        if not os.path.lexists(link):
            os.symlink(self.db_path(), link)
        return self.same_file_as(link)

    def same_file_by_hard_link(self):
        hard = os.path.join(self.dir, "hard.db")
        if not os.path.exists(hard):
            os.link(self.db_path(), hard)
        return self.same_file_as(hard)

    def cases(self):
        return [self.textfile_is_the_database, self.target_is_the_backup_directory,
                self.same_file_by_dot_and_double_slash, self.same_file_by_symlink,
                self.same_file_by_hard_link]

    def assert_names_both(self, output, line, key, other):
        self.assertIn(f"{self.config_path}:{line}: {key}: ", output)
        refusal = next(l for l in output.splitlines() if f":{line}: {key}: " in l)
        self.assertIn(other, refusal)

    def assert_nothing_lost(self):
        self.assertEqual(digest(self.db_path()), self.database_digest,
                         "the database file changed")
        self.assertEqual(sorted(os.listdir(os.path.join(self.backup_dir, "app"))),
                         self.local_archives, "local archives were deleted")

    def test_check_and_one_off_commands_refuse_each_case_naming_both_keys(self):
        for case in self.cases():
            with self.subTest(case.__name__):
                line, key, other = case()
                result = self.run_cli("check", check=2)
                self.assert_names_both(result.stderr, line, key, other)
                for command in (("backup", "app"), ("upload", "app"), ("status",)):
                    result = self.run_cli(*command, check=2)
                    self.assert_names_both(result.stderr, line, key, other)
        self.assert_nothing_lost()

    def test_run_refuses_to_start_with_each_case(self):
        for case in self.cases():
            with self.subTest(case.__name__):
                line, key, other = case()
                try:
                    result = self.run_cli("run", timeout=20)
                except subprocess.TimeoutExpired:
                    self.fail(f"{case.__name__}: the agent started")
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assert_names_both(result.stderr, line, key, other)
        self.assert_nothing_lost()

    def test_sighup_reload_with_each_case_keeps_the_old_config_running(self):
        agent = self.start_agent()
        self.wait_until_started()
        for number, case in enumerate(self.cases(), 1):
            line, key, other = case()
            agent.send_signal(signal.SIGHUP)
            self.wait_for(lambda: self.agent_log().count("new configuration refused") >= number,
                          what=f"the refusal of {case.__name__}")
            self.assert_names_both(self.agent_log(), line, key, other)
            # Still the old config: jobs go on and the old textfile is rewritten.
            runs = job_runs(self, "checkpoint")
            written = os.stat(self.textfile).st_mtime_ns
            self.wait_for(lambda: job_runs(self, "checkpoint") > runs + 1,
                          what=f"jobs after refusing {case.__name__}")
            self.wait_for(lambda: os.stat(self.textfile).st_mtime_ns != written,
                          what="the old textfile rewritten")
            self.assertIsNone(agent.poll())
        self.assertNotIn("configuration reloaded", self.agent_log())
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0)
        self.assert_nothing_lost()

    def test_reload_is_checked_against_the_state_dir_kept_running(self):
        # A reload does not move state_dir; a new config that is sound with
        # its own state_dir must still not put backups inside the old one.
        agent = self.start_agent()
        self.wait_until_started()
        kept_state_dir, backup_dir = self.state_dir, self.backup_dir
        self.state_dir, self.backup_dir = os.path.join(self.dir, "state2"), kept_state_dir
        try:
            self.write_sound()
        finally:
            self.state_dir, self.backup_dir = kept_state_dir, backup_dir
        agent.send_signal(signal.SIGHUP)
        self.wait_for(lambda: "new configuration refused" in self.agent_log(), what="the refusal")
        self.assertIn(f'the backup directory "{kept_state_dir}/app"', self.agent_log())
        self.assertIn("(state_dir of the running agent)", self.agent_log())
        self.assertNotIn("configuration reloaded", self.agent_log())
        self.assertFalse(os.path.exists(os.path.join(kept_state_dir, "app")))
        self.assertIsNone(agent.poll())
        self.stop_agent(agent)
        self.assert_nothing_lost()

    def test_agent_never_overwrites_a_textfile_that_became_a_database(self):
        # The config is sound when checked and when the agent starts ...
        self.run_cli("check", check=0)
        agent = self.start_agent()
        self.wait_until_started()
        # ... then the textfile's path becomes someone's SQLite database.
        other = os.path.join(self.dir, "metrics", "incoming.db")
        create_database(other, rows=50, wal=False)
        os.replace(other, self.textfile)
        before = digest(self.textfile)
        runs = job_runs(self, "checkpoint")
        self.wait_for(lambda: job_runs(self, "checkpoint") > runs + 2, what="more jobs")
        self.assertEqual(digest(self.textfile), before, "the database was overwritten")
        self.wait_for(lambda: f"refusing to replace {self.textfile}" in self.agent_log(),
                      what="the refusal to replace the database")
        with open(self.textfile, "rb") as f:
            self.assertEqual(f.read(16), b"SQLite format 3\0")
        self.assertIsNone(agent.poll())
        self.stop_agent(agent)
        self.assert_nothing_lost()

    def test_restore_refuses_a_destination_another_setting_owns(self):
        other = os.path.join(self.dir, "other.db")
        create_database(other, rows=20)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; {QUIET} }}, '
                          f'{{ name = "other"; path = "{other}"; {QUIET} }}')
        other_line = self.line_of("name = ")
        digest_other = digest(other)
        wal = self.db_path() + "-wal"
        digest_wal = digest(wal) if os.path.exists(wal) else None
        for destination, names in (
                (other, f"databases.other.path (line {other_line})"),
                (self.db_path() + "-wal", "the -wal file of databases.app.path"),
                (os.path.join(self.backup_dir, "app", "restored.db"), "defaults.backup.dir"),
                (os.path.join(self.state_dir, "restored.db"), "state_dir")):
            with self.subTest(destination):
                result = self.run_cli("restore", "app", "--to", destination, "--force", check=2)
                self.assertIn(f'--to "{destination}"', result.stderr)
                self.assertIn(names, result.stderr)
        self.assertEqual(digest(other), digest_other)
        self.assertEqual(digest(wal) if os.path.exists(wal) else None, digest_wal)
        self.assert_nothing_lost()
        # A path of its own is restored as before.
        restored = os.path.join(self.dir, "restored.db")
        self.run_cli("restore", "app", "--to", restored, check=0)


if __name__ == "__main__":
    unittest.main()

"""`status` tells the truth on its own: whether an agent runs (tested on its
lock, never guessed from a file), overdue jobs judged against now, relative
times that are right when read, stored verdicts shown as stale when no agent
renews them; the systemd STATUS= line (a real NOTIFY_SOCKET) holds only
absolute times; one agent per state_dir. Plus the smaller status/backups
wording fixes of issue 13 (LAST UPLOAD, column names, plurals)."""
import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import unittest

from harness import BIN, AgentTestCase, create_database
from test_agent import NotifySocket

CLOCK = r"(?:\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d UTC"
# "12s ago", "in 3m", "1h5m ago": a relative age frozen into a line read later.
RELATIVE = re.compile(r"\b\d+[smhd](?:\d+[smhd])? ago\b|\bin \d+[smhd]\b")


def parse_iso(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)


def clock_of(text):
    """The HH:MM:SS UTC that status prints for an ISO time of today."""
    return parse_iso(text).strftime("%H:%M:%S UTC")


def table_rows(text):
    """{database: {column: cell}} of the status table. Left-aligned columns
    are cut at their header's start; HEALTH ends where its words end (SIZE
    and WAL after it are right-aligned and may start before their headers)."""
    lines = text.splitlines()
    header_index = next(i for i, line in enumerate(lines) if line.startswith("DATABASE"))
    header = lines[header_index]
    names = ["LAST BACKUP", "LAST UPLOAD", "NEXT JOB", "LAST ERROR"]
    starts = [header.index(name) for name in names] + [None]
    rows = {}
    for line in lines[header_index + 1:]:
        if not line.strip():
            break
        name = line.split()[0]
        health = re.match(rf"(\S+(?: as of {CLOCK})?)", line[header.index("HEALTH"):]).group(1)
        cells = {"DATABASE": name, "HEALTH": health}
        for i, column in enumerate(names):
            cells[column] = line[starts[i]:starts[i + 1]].strip()
        rows[name] = cells
    return rows


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class StatusTruthCase(AgentTestCase):
    def setUp(self):
        super().setUp()
        create_database(self.db_path(), rows=200)
        self.agent_lock = os.path.join(self.state_dir, "agent.lock")

    def configure(self, backup="2s", health="1s", targets="", upload=""):
        with open(self.config_path, "w") as f:
            f.write(f'''state_dir = "{self.state_dir}";
log_level = "debug";
defaults = {{
  backup = {{ dir = "{self.backup_dir}"; every = "{backup}"; }};
  health = {{ every = "{health}"; }};
  checkpoint = {{ every = "1h"; }}; vacuum = {{ enabled = false; }};
  analyze = {{ enabled = false; }};
}};
targets = ( {targets} );
databases = ( {{ name = "app"; path = "{self.db_path()}"; {upload} }} );
''')

    def status_text(self, *args, check=0):
        return self.run_cli("status", *args, check=check, timeout=20).stdout

    def app(self, data):
        return next(d for d in data["databases"] if d["name"] == "app")

    def wait_for_backup_and_health(self):
        self.wait_for(lambda: os.path.exists(os.path.join(self.state_dir, "state.db")) and
                      self.app(self.status_json())["jobs"]["backup"]["runs_total"] >= 1 and
                      self.app(self.status_json())["health_checked_at"], timeout=60,
                      what="a backup and a health check")


class AgentPresenceTest(StatusTruthCase):
    def test_stopped_agent_is_said_first_verdict_stale_and_jobs_overdue(self):
        """The issue's case: a stopped agent, a 'healthy' verdict and a backup
        schedule long past: status says the agent is not running, shows the
        verdict as of its check, and the backup as overdue since its due time."""
        self.configure(backup="2s", health="1h")
        agent = self.start_agent()
        self.wait_for_backup_and_health()
        self.assertEqual(self.stop_agent(agent)[0], 0)
        time.sleep(4)  # the 2 s backup is now past its time

        text = self.status_text()
        first = text.splitlines()[0]
        self.assertRegex(first, rf"^AGENT NOT RUNNING since {CLOCK} \(\d+s ago; pid {agent.pid}, "
                                rf"started {CLOCK}, stopped cleanly\)")
        data = self.status_json()
        self.assertEqual(data["agent"]["running"], False)
        self.assertEqual(data["agent"]["state"], "not running")
        self.assertEqual(data["agent"]["pid"], agent.pid)
        self.assertTrue(data["agent"]["stopped_cleanly"])
        self.assertTrue(data["agent"]["message"].startswith("AGENT NOT RUNNING"))
        app = self.app(data)
        self.assertTrue(app["health_stale"])
        self.assertEqual(app["health"], "healthy")

        row = table_rows(text)["app"]
        self.assertEqual(row["HEALTH"], f"healthy as of {clock_of(app['health_checked_at'])}")
        backup = app["jobs"]["backup"]
        self.assertEqual(backup["due"], "overdue")
        due = parse_iso(backup["last_started"]) + datetime.timedelta(seconds=2)
        self.assertEqual(backup["overdue_since"], due.strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.assertEqual(backup["next_due"], backup["overdue_since"])
        self.assertGreaterEqual(backup["overdue_seconds"], 1)
        self.assertEqual(app["next_job"]["job"], "backup")
        self.assertEqual(app["next_job"]["due"], "overdue")
        self.assertEqual(row["NEXT JOB"], f"backup overdue since {due.strftime('%H:%M:%S')} UTC")
        self.assertNotIn(" in 0s", text)
        detail = self.status_text("app")
        self.assertRegex(detail, rf"backup\s+ok\s+\S+\s+\S+\s+overdue since {CLOCK}")

    def test_running_agent_is_said_running_since_with_its_pid(self):
        self.configure(backup="1h", health="1h")
        before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        agent = self.start_agent()
        self.wait_for_backup_and_health()
        data = self.status_json()
        self.assertEqual(data["agent"]["running"], True)
        self.assertEqual(data["agent"]["pid"], agent.pid)
        started = parse_iso(data["agent"]["started_at"])
        self.assertLessEqual(abs((started - before).total_seconds()), 5)
        self.assertFalse(self.app(data)["health_stale"])
        text = self.status_text()
        self.assertRegex(text.splitlines()[0],
                         rf"^agent: running since {clock_of(data['agent']['started_at'])} "
                         rf"\(\d+s\), pid {agent.pid}$")
        self.assertEqual(table_rows(text)["app"]["HEALTH"], "healthy")
        self.assertRegex(table_rows(text)["app"]["NEXT JOB"], r" in \d+[smh]")
        self.stop_agent(agent)

    def test_killed_agent_reads_as_not_running(self):
        self.configure(backup="1h")
        agent = self.start_agent()
        self.wait_for_backup_and_health()
        agent.kill()
        agent.wait()
        data = self.status_json()
        self.assertEqual(data["agent"]["running"], False)
        self.assertFalse(data["agent"]["stopped_cleanly"])
        self.assertTrue(self.app(data)["health_stale"])
        first = self.status_text().splitlines()[0]
        self.assertRegex(first, rf"^AGENT NOT RUNNING: the last agent \(pid {agent.pid}, started "
                                rf"{CLOCK}\) did not stop cleanly: it was killed or crashed")

    def test_agent_never_started_is_not_running(self):
        self.configure(backup="1h")
        self.run_cli("backup", "app", check=0)
        data = self.status_json()
        self.assertEqual(data["agent"]["running"], False)
        self.assertIsNone(data["agent"]["pid"])
        self.assertTrue(self.status_text().startswith(
            f"AGENT NOT RUNNING: no sqlprodd agent has run on state_dir {self.state_dir} yet"))

    def test_second_agent_with_another_config_on_the_same_state_dir_is_refused(self):
        """Two configurations sharing one state_dir: the second agent is
        refused, names the first (pid, config), and changes nothing."""
        self.configure(backup="1h")
        first = self.start_agent()
        self.wait_for_backup_and_health()
        other_db = self.db_path("other")
        create_database(other_db, rows=10)
        other_config = os.path.join(self.dir, "other.conf")
        other_backups = os.path.join(self.dir, "other-backups")
        with open(other_config, "w") as f:
            f.write(f'state_dir = "{self.state_dir}";\n'
                    f'defaults = {{ backup = {{ dir = "{other_backups}"; }}; }};\n'
                    f'databases = ( {{ name = "other"; path = "{other_db}"; }} );\n')
        second = subprocess.run([BIN, "-c", other_config, "run"], capture_output=True, text=True,
                                timeout=20)
        self.assertEqual(second.returncode, 1, second.stderr)
        self.assertIn(f"another sqlprodd agent already runs on state_dir {self.state_dir}",
                      second.stderr)
        self.assertIn(f"pid {first.pid}, sqlprodd run -c {self.config_path}", second.stderr)
        self.assertFalse(os.path.exists(other_backups), "the refused agent took a backup")
        self.assertIsNone(first.poll(), "the first agent must keep running")
        data = self.status_json()
        self.assertEqual(data["agent"]["pid"], first.pid)
        self.assertTrue(data["agent"]["running"])
        self.stop_agent(first)


class RunningJobTest(StatusTruthCase):
    def test_job_in_progress_is_running_not_overdue(self):
        """A job's run is recorded when it ends: while a long backup works,
        the time it was due is past. status reads the held database lock
        and says the backup is running, not overdue."""
        create_database(self.db_path(), rows=200000, payload=400)
        self.configure(backup="1s", health="1h")
        self.run_cli("backup", "app", check=0)
        time.sleep(2)  # the 1 s backup is due again
        self.assertEqual(self.app(self.status_json())["jobs"]["backup"]["due"], "overdue")
        backup = subprocess.Popen([BIN, "-c", self.config_path, "backup", "app"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(backup)
        lock = os.path.join(self.state_dir, "locks", "app.lock")
        self.wait_for(lambda: os.path.getsize(lock) > 0, timeout=30, interval=0.02,
                      what="the backup to hold the lock")
        data = self.status_json()
        text = self.status_text()
        self.assertIsNone(backup.poll(), "the backup ended too soon to be seen running")
        app = self.app(data)
        self.assertEqual(app["running_job"]["job"], "backup")
        self.assertIn(f"pid {backup.pid}, sqlprodd backup (backup)", app["running_job"]["holder"])
        self.assertEqual(app["jobs"]["backup"]["due"], "running")
        self.assertIsNone(app["jobs"]["backup"]["overdue_since"])
        self.assertEqual(app["next_job"]["job"], "backup")
        self.assertRegex(table_rows(text)["app"]["NEXT JOB"], rf"^backup running since {CLOCK}$")
        self.assertEqual(backup.wait(timeout=300), 0)
        self.assertIsNone(self.app(self.status_json())["running_job"])


class RelativeTimesTest(StatusTruthCase):
    def test_relative_times_are_computed_when_read(self):
        self.configure(backup="1h", health="1h")
        agent = self.start_agent()
        self.wait_for_backup_and_health()
        self.stop_agent(agent)
        first = self.status_json()
        first_text = self.status_text()
        time.sleep(3)
        second = self.status_json()
        second_text = self.status_text()
        a, b = self.app(first), self.app(second)
        self.assertGreaterEqual(b["last_backup"]["age_seconds"] - a["last_backup"]["age_seconds"], 3)
        self.assertGreaterEqual(a["next_job"]["in_seconds"] - b["next_job"]["in_seconds"], 3)
        self.assertEqual(a["last_backup"]["at"], b["last_backup"]["at"])
        self.assertNotEqual(table_rows(first_text)["app"]["LAST BACKUP"],
                            table_rows(second_text)["app"]["LAST BACKUP"])
        # "stopped Ns ago" in the first line moves too.
        ago = [int(re.search(r"\((\d+)s ago;", t).group(1)) for t in (first_text, second_text)]
        self.assertGreaterEqual(ago[1] - ago[0], 3)


class NotifyStatusLineTest(StatusTruthCase):
    def setUp(self):
        super().setUp()
        self.notify = NotifySocket(self.dir)

    def tearDown(self):
        self.notify.close()
        super().tearDown()

    def test_status_line_names_the_next_job_as_the_agent_scheduled_it(self):
        """A job that finds the database locked is retried 30s later: that is
        when the agent runs it next, and what STATUS= must say (its schedule
        alone says "now", since a skipped run is not recorded)."""
        self.configure(backup="1h", health="1h")
        locks = os.path.join(self.state_dir, "locks")
        os.makedirs(locks, mode=0o700)
        holder = open(os.path.join(locks, "app.lock"), "w")
        self.addCleanup(holder.close)
        holder.write("pid 1, a test holding the lock, since now\n")
        holder.flush()
        fcntl.flock(holder, fcntl.LOCK_EX)

        agent = self.start_agent(env={"NOTIFY_SOCKET": self.notify.path})
        started = time.time()

        def next_in(message):
            match = re.search(r"next: (\w+) app at (\d\d):(\d\d):(\d\d) UTC",
                              message.get("STATUS", ""))
            if not match:
                return None
            now = datetime.datetime.fromtimestamp(time.time(), datetime.timezone.utc)
            at = now.replace(hour=int(match.group(2)), minute=int(match.group(3)),
                             second=int(match.group(4)), microsecond=0)
            return (at - now).total_seconds()

        # Every due job (checkpoint, backup, health) tries, finds the lock
        # held and is put off by 30s.
        message = self.notify.receive(timeout=30, until=lambda m: (next_in(m) or 0) > 20)
        self.assertIsNotNone(message, [m.get("STATUS") for m in self.notify.messages])
        self.assertLessEqual(next_in(message), 31)
        self.assertLess(time.time() - started, 25)
        self.assertRegex(self.agent_log(), r"skipped: database is busy with pid 1")
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0)

    def test_status_line_holds_absolute_times_only(self):
        """STATUS= is re-sent only when a job ends: every time in it must
        stay true when read later, the worst database's reason included."""
        self.configure(backup="1s", health="1s")
        agent = self.start_agent(env={"NOTIFY_SOCKET": self.notify.path})
        message = self.notify.receive(timeout=30, until=lambda m: "last backup app" in
                                      m.get("STATUS", ""))
        self.assertIsNotNone(message, self.notify.messages)
        line = message["STATUS"]
        self.assertRegex(line, rf"last backup app {CLOCK} \([\d.]+ [KM]?i?B\)")
        self.assertRegex(line, rf"next: \w+ app at {CLOCK}")
        self.assertIsNone(RELATIVE.search(line), line)
        # Backups now fail (their directory is a file): once the last good one
        # is 4 intervals old the database is unhealthy, and the line names
        # the reason, with its times absolute too.
        app_backups = os.path.join(self.backup_dir, "app")
        for attempt in range(50):
            # Renamed, not deleted: a backup may be writing there; and the
            # agent may create it again before the file takes its place.
            if os.path.isdir(app_backups):
                os.rename(app_backups, f"{app_backups}.moved{attempt}")
            try:
                os.close(os.open(app_backups, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                break
            except FileExistsError:
                continue
        message = self.notify.receive(timeout=60, until=lambda m: "unhealthy: last good backup"
                                      in m.get("STATUS", ""))
        self.assertIsNotNone(message, [m.get("STATUS") for m in self.notify.messages][-5:])
        line = message["STATUS"]
        self.assertRegex(line, rf"app unhealthy: last good backup at {CLOCK} \(\d+s before this "
                               r"check\)")
        self.assertIsNone(RELATIVE.search(line), line)
        for earlier in self.notify.messages:
            self.assertIsNone(RELATIVE.search(earlier.get("STATUS", "")), earlier)
        self.stop_agent(agent)


class HostileLockFileTest(StatusTruthCase):
    """Agent lock files an operator (or an accident) left behind. Each row:
    what is planted at STATE_DIR/agent.lock, what `run` must say (it must
    refuse, or take the lock over), what status must say, and the database
    must come through byte for byte."""

    def plant(self, kind):
        os.makedirs(self.state_dir, exist_ok=True)
        if kind == "stale pid":
            with open(self.agent_lock, "w") as f:
                f.write("pid 999999, sqlprodd run -c /gone.conf, since 2026-01-01T00:00:00Z\n")
        elif kind == "fifo":
            os.mkfifo(self.agent_lock)
        elif kind == "symlink to the database":
            os.symlink(self.db_path(), self.agent_lock)
        elif kind == "hard link to the database":
            os.link(self.db_path(), self.agent_lock)
        elif kind == "copy of a database":
            shutil.copy(self.db_path(), self.agent_lock)
        elif kind == "directory":
            os.mkdir(self.agent_lock)
        else:
            raise AssertionError(kind)

    CASES = [
        # kind, run refused with, status says
        ("stale pid", None, r"^AGENT NOT RUNNING: the last agent \(pid 999999, started "
                            r"2026-01-01 00:00:00 UTC\) did not stop cleanly"),
        ("fifo", r"lock file \S+agent\.lock is a FIFO, not a sqlprodd lock file: remove it",
         r"^AGENT STATE UNKNOWN: lock file \S+ is a FIFO"),
        ("symlink to the database", r"lock file \S+agent\.lock is a symbolic link; sqlprodd "
                                    r"writes only its own files there: remove it",
         r"^AGENT STATE UNKNOWN: lock file \S+ is a symbolic link"),
        ("hard link to the database", r"lock file \S+agent\.lock has 2 names \(hard links\)",
         r"^AGENT STATE UNKNOWN: lock file \S+ has 2 names"),
        ("copy of a database", r"lock file \S+agent\.lock holds an SQLite database",
         r"^AGENT STATE UNKNOWN: lock file \S+ holds an SQLite database"),
        ("directory", r"lock file \S+agent\.lock is a directory",
         r"^AGENT STATE UNKNOWN: lock file \S+ is a directory"),
    ]

    def test_hostile_agent_lock_files(self):
        for kind, refused, said in self.CASES:
            with self.subTest(kind):
                self.tearDown()
                self.setUp()
                self.configure(backup="1h")
                self.plant(kind)
                before = sha256(self.db_path())
                status = self.run_cli("status", check=0, timeout=10)
                self.assertRegex(status.stdout.splitlines()[0], said)
                self.assertEqual(self.status_json()["agent"]["running"],
                                 False if kind == "stale pid" else None)
                agent = self.start_agent()
                if refused:
                    self.assertEqual(agent.wait(timeout=10), 1, self.agent_log())
                    self.assertRegex(self.agent_log(), refused)
                else:
                    self.wait_for(lambda: self.status_json()["agent"]["running"], timeout=20,
                                  what="the agent to take the stale lock over")
                    self.assertEqual(self.status_json()["agent"]["pid"], agent.pid)
                    self.stop_agent(agent)
                self.assertEqual(sha256(self.db_path()), before, "the database was written")

    def test_database_lock_linked_to_the_database_is_refused(self):
        """locks/NAME.lock is rewritten by every job: a symbolic or hard link
        to the database there must not truncate it."""
        self.configure(backup="1h")
        locks = os.path.join(self.state_dir, "locks")
        for link in (os.symlink, os.link):
            with self.subTest(link.__name__):
                os.makedirs(locks, exist_ok=True)
                lock = os.path.join(locks, "app.lock")
                if os.path.lexists(lock):
                    os.unlink(lock)
                link(self.db_path(), lock)
                before = sha256(self.db_path())
                result = self.run_cli("checkpoint", "app", timeout=20)
                self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
                self.assertRegex(result.stdout + result.stderr,
                                 r"lock file \S+app\.lock (is a symbolic link|has 2 names)")
                self.assertEqual(sha256(self.db_path()), before)
                os.unlink(lock)

    def test_unreadable_state_dir_is_an_error_not_a_verdict(self):
        """status run by a user who cannot read state_dir must not claim
        anything: it fails, names the path and says what to do."""
        self.configure(backup="1h")
        self.run_cli("backup", "app", check=0)
        os.chmod(self.dir, 0o755)
        os.chmod(self.config_path, 0o644)
        os.chmod(self.state_dir, 0o700)
        result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                                 "--clear-groups", BIN, "-c", self.config_path, "status"],
                                capture_output=True, text=True, timeout=20)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn(self.state_dir, result.stderr)
        self.assertIn("run status as the agent's user or as root", result.stderr)
        self.assertNotIn("healthy", result.stdout)
        self.assertNotIn("NOT RUNNING", result.stdout)

    def test_agent_killed_mid_job_reads_as_not_running(self):
        """SIGKILL while a backup works: status must not say the agent runs
        (the database lock file still names it), and a new agent starts."""
        create_database(self.db_path(), rows=200000, payload=400)
        self.configure(backup="1h")
        agent = self.start_agent()
        lock = os.path.join(self.state_dir, "locks", "app.lock")
        self.wait_for(lambda: os.path.exists(lock) and os.path.getsize(lock) > 0 and
                      any(f.endswith(".sqlprodd-tmp") for f in
                          os.listdir(os.path.join(self.backup_dir, "app")))
                      if os.path.isdir(os.path.join(self.backup_dir, "app")) else False,
                      timeout=60, interval=0.02, what="a backup in progress")
        agent.kill()
        agent.wait()
        with open(lock) as f:
            self.assertIn(f"pid {agent.pid}, sqlprodd run (backup)", f.read(),
                          "the killed holder's line stays in the lock file")
        data = self.status_json()
        self.assertEqual(data["agent"]["running"], False)
        self.assertFalse(data["agent"]["stopped_cleanly"])
        # ... but nobody holds the lock: no backup is said to be running.
        self.assertIsNone(self.app(data)["running_job"])
        self.assertNotEqual(self.app(data)["jobs"]["backup"]["due"], "running")
        text = self.status_text()
        self.assertTrue(text.startswith("AGENT NOT RUNNING: the last agent"))
        self.assertNotIn("running since", table_rows(text)["app"]["NEXT JOB"])
        again = self.start_agent()
        self.wait_for(lambda: self.status_json()["agent"]["pid"] == again.pid and
                      self.status_json()["agent"]["running"], timeout=30, what="a new agent")
        self.stop_agent(again)


class WordingTest(StatusTruthCase):
    def target_config(self):
        offsite = os.path.join(self.dir, "offsite")
        os.makedirs(offsite)
        self.configure(backup="1h", targets=f'{{ name = "nas"; type = "dir"; path = "{offsite}"; }}',
                       upload='upload = { target = "nas"; };')

    def test_last_upload_is_the_last_run_that_sent_something(self):
        self.target_config()
        self.run_cli("upload", "app", check=0)
        app = self.app(self.status_json())
        self.assertIsNone(app["last_upload"])
        self.assertEqual(table_rows(self.status_text())["app"]["LAST UPLOAD"], "nothing to upload")

        self.run_cli("backup", "app", check=0)
        self.run_cli("upload", "app", check=0)
        sent = self.app(self.status_json())["last_upload"]
        self.assertEqual(sent["archives"], 1)
        self.assertGreater(sent["bytes"], 0)
        time.sleep(2)
        self.run_cli("upload", "app", check=0)  # nothing left to send
        app = self.app(self.status_json())
        self.assertIn("nothing to upload", app["jobs"]["upload"]["last_message"])
        self.assertEqual(app["last_upload"]["at"], sent["at"])
        self.assertGreater(parse_iso(app["jobs"]["upload"]["last_success"]), parse_iso(sent["at"]))
        self.assertRegex(table_rows(self.status_text())["app"]["LAST UPLOAD"], r"^\d+s ago$")

    def test_backups_columns_have_distinct_names(self):
        self.configure(backup="1h")
        self.run_cli("backup", "app", check=0)
        header, row = self.run_cli("backups", check=0).stdout.splitlines()[:2]
        self.assertRegex(header, r"^DATABASE\s+BACKUP\s+ARCHIVE SIZE\s+DATABASE SIZE\s+STATE\s+PATH$")
        self.assertEqual(header.count("ARCHIVE"), 1)
        path = row.split()[-1]
        self.assertTrue(path.endswith(".db.gz") and os.path.isfile(path), row)
        self.assertEqual(header.index("PATH"), row.index(path))

    def test_counts_of_one_are_singular(self):
        self.configure(backup="1h")
        with open(self.config_path, "a") as f:
            f.write("workers = 1;\n")
        self.run_cli("backup", "app", check=0)
        self.run_cli("prune", "app", check=0)
        message = self.app(self.status_json())["jobs"]["prune"]["last_message"]
        self.assertRegex(message, r"^kept 1 local backup, deleted 0")
        agent = self.start_agent()
        self.wait_for(lambda: "started:" in self.agent_log(), timeout=20, what="the start line")
        self.stop_agent(agent)
        log = self.agent_log()
        self.assertRegex(log, r"started: 1 database, 1 worker, config ")
        self.assertRegex(log, r"stopping, aborting \d+ running jobs?\b")
        self.assertNotRegex(log, r"\b1 (databases|workers|jobs|backups|errors)\b")
        self.assertNotIn("job(s)", log)


if __name__ == "__main__":
    unittest.main()

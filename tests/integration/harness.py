"""Shared helpers for the integration tests: the built binary on real files.

Every test gets its own temporary directory with a state dir, a backup dir and
real SQLite databases; a separate writer *process* commits to them while the
agent works, and records every error it sees, so "the application never saw
SQLITE_BUSY" is measured, not assumed.
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

BIN = os.environ.get("SQLPRODD_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "sqlprodd")
SOURCE_DIR = os.environ.get("SQLPRODD_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "writer.py")


def create_database(path, rows=1000, wal=True, auto_vacuum=None, payload=200):
    """A database with a table of `rows` mixed text/number rows."""
    db = sqlite3.connect(path)
    if auto_vacuum:
        db.execute(f"PRAGMA auto_vacuum={auto_vacuum}")
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, "
               "amount REAL, created INTEGER)")
    db.execute("CREATE INDEX IF NOT EXISTS items_name ON items(name)")
    with db:
        db.executemany(
            "INSERT INTO items (name, amount, created) VALUES (?, ?, ?)",
            ((f"item-{i}-" + "x" * (i % payload), i * 1.5, 1700000000 + i) for i in range(rows)))
    db.close()


def row_count(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*) FROM items").fetchone()[0]
    finally:
        db.close()


class Writer:
    """A separate process committing small transactions until stopped."""

    def __init__(self, path, rate=200, busy_timeout_ms=5000):
        self.report = path + ".writer.json"
        self.stop_file = path + ".writer.stop"
        for leftover in (self.report, self.stop_file):
            if os.path.exists(leftover):
                os.unlink(leftover)
        self.process = subprocess.Popen(
            [sys.executable, WRITER, path, str(rate), str(busy_timeout_ms), self.report,
             self.stop_file])

    def stop(self):
        open(self.stop_file, "w").close()
        self.process.wait(timeout=30)
        with open(self.report) as f:
            return json.load(f)


class AgentTestCase(unittest.TestCase):
    """Temp directory, config writer, and runners for the binary."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sqlprodd-test-")
        self.state_dir = os.path.join(self.dir, "state")
        self.backup_dir = os.path.join(self.dir, "backups")
        self.config_path = os.path.join(self.dir, "sqlprodd.conf")
        self.processes = []

    def tearDown(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def db_path(self, name="app"):
        return os.path.join(self.dir, name + ".db")

    def write_config(self, databases, defaults="", extra="", targets=""):
        text = textwrap.dedent(f"""\
            state_dir = "{self.state_dir}";
            log_level = "debug";
            defaults = {{
              backup = {{ dir = "{self.backup_dir}"; }};
              {defaults}
            }};
            targets = ( {targets} );
            databases = ( {databases} );
            {extra}
            """)
        with open(self.config_path, "w") as f:
            f.write(text)
        return self.config_path

    def run_cli(self, *args, check=None, env=None, timeout=300):
        environment = dict(os.environ)
        environment.pop("JOURNAL_STREAM", None)
        environment.pop("NOTIFY_SOCKET", None)
        if env:
            environment.update(env)
        result = subprocess.run([BIN, "-c", self.config_path, *args], capture_output=True,
                                text=True, env=environment, timeout=timeout)
        if check is not None:
            self.assertEqual(result.returncode, check,
                             f"sqlprodd {' '.join(args)} exited {result.returncode}\n"
                             f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def start_agent(self, env=None):
        environment = dict(os.environ)
        environment.pop("JOURNAL_STREAM", None)
        environment.pop("NOTIFY_SOCKET", None)
        if env:
            environment.update(env)
        log = open(os.path.join(self.dir, "agent.log"), "a")
        process = subprocess.Popen([BIN, "-c", self.config_path, "run"], stdout=log,
                                   stderr=subprocess.STDOUT, env=environment)
        self.processes.append(process)
        return process

    def agent_log(self):
        path = os.path.join(self.dir, "agent.log")
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return f.read()

    def wait_for(self, predicate, timeout=60, interval=0.1, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        self.fail(f"timed out after {timeout}s waiting for {what}\nagent log:\n{self.agent_log()}")

    def stop_agent(self, process, timeout=15):
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=timeout)
        return code, time.monotonic() - started

    def archives(self, name="app"):
        directory = os.path.join(self.backup_dir, name)
        if not os.path.isdir(directory):
            return []
        return sorted(f for f in os.listdir(directory) if f.endswith(".db.gz"))

    def status_json(self, *args):
        result = self.run_cli("status", "--json", *args, check=0)
        return json.loads(result.stdout)

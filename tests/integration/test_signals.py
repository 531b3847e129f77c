"""SIGTERM and SIGINT end every command and the agent within 5 s, whatever a
job is waiting for: a database the application holds locked with
busy_timeout_ms = 600000, a checkpoint waiting max_wait_ms = 600000 for a
reader, an S3 server that accepts connections and never answers, a FIFO at
the database path. Each time: the exit is prompt, no temp file is left,
and the agent leaves the database untouched."""
import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

from harness import BIN, AgentTestCase, create_database

STOP_SECONDS = 5
HUGE_MS = 600000

# Holds a lock (or a read snapshot) on the database until its stdin closes.
LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE" if sys.argv[2] == "exclusive" else "BEGIN")
db.execute("SELECT count(*) FROM items").fetchone()
print("locked", flush=True)
sys.stdin.read()
db.execute("COMMIT")
"""

S3_ENV = {"AWS_ACCESS_KEY_ID": "SQLPRODDTESTACCESSKEY",
          "AWS_SECRET_ACCESS_KEY": "sqlprodd/Test+Secret/Key0123456789abcdefXYZ",
          "AWS_EC2_METADATA_DISABLED": "true"}


class SilentServer:
    """A loopback socket that accepts every connection and never answers."""

    def __init__(self):
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections = []
        self.accepted = threading.Event()
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections.append(connection)
            self.accepted.set()

    def close(self):
        self.socket.close()
        for connection in self.connections:
            connection.close()


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class SignalsTest(AgentTestCase):
    def lock(self, how="exclusive"):
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, self.db_path(), how],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.processes.append(locker)
        self.addCleanup(locker.stdout.close)
        self.addCleanup(locker.stdin.close)
        self.assertEqual(locker.stdout.readline().strip(), "locked")
        return locker

    def configure(self, extra="", targets=""):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; busy_timeout_ms = {HUGE_MS}; '
            f'checkpoint = {{ mode = "truncate"; max_wait_ms = {HUGE_MS}; }}; {extra} }}',
            targets=targets)

    def silent_target(self):
        server = SilentServer()
        self.addCleanup(server.close)
        return server, (f'{{ name = "offsite"; type = "s3"; endpoint = "{server.url}"; '
                        f'region = "us-east-1"; bucket = "b"; path_style = true; }}')

    def start(self, *args, env=None):
        environment = dict(os.environ)
        environment.pop("NOTIFY_SOCKET", None)
        environment.update(env or {})
        process = subprocess.Popen([BIN, "-c", self.config_path, *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, env=environment)
        self.processes.append(process)
        self.addCleanup(process.stdout.close)
        return process

    def assert_stops(self, process, signal_number=signal.SIGTERM, blocked=1.5):
        """The process is still blocked after `blocked` seconds, then ends
        within STOP_SECONDS of the signal."""
        time.sleep(blocked)
        if process.poll() is not None:
            self.fail(f"not blocked: {process.stdout.read()}")
        started = time.monotonic()
        process.send_signal(signal_number)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            self.fail(f"{signal.Signals(signal_number).name} did not end it within "
                      f"{STOP_SECONDS}s:\n{process.stdout.read()}")
        elapsed = time.monotonic() - started
        output = process.stdout.read()
        self.assertNotIn("AddressSanitizer", output)
        self.assertNotIn("runtime error", output)
        return elapsed, output

    def assert_no_temp_files(self):
        for directory in (self.dir, self.backup_dir, os.path.join(self.backup_dir, "app"),
                          self.state_dir):
            if os.path.isdir(directory):
                leftovers = [f for f in os.listdir(directory)
                             if "tmp" in f or f.endswith(".db.gz.json.part") or ".copy" in f]
                self.assertEqual(leftovers, [], f"temp files in {directory}")

    def test_check_health_backup_end_on_sigterm_and_sigint_while_the_database_is_locked(self):
        create_database(self.db_path(), rows=100, wal=False)
        self.configure()
        self.lock("exclusive")
        for command in ("check", "health", "backup"):
            for signal_number in (signal.SIGTERM, signal.SIGINT):
                with self.subTest(command=command, signal=signal_number.name):
                    process = self.start(command)
                    self.assert_stops(process, signal_number)
                    self.assertNotEqual(process.returncode, 0)
        self.assert_no_temp_files()
        self.assertEqual(self.archives(), [])

    def test_checkpoint_waiting_for_a_reader_ends_on_sigterm(self):
        create_database(self.db_path(), rows=100, wal=True)
        self.configure()
        self.lock("read")  # an old snapshot that a TRUNCATE checkpoint waits out
        writer = sqlite3.connect(self.db_path())
        with writer:
            writer.executemany("INSERT INTO items (name) VALUES (?)",
                               ((f"late-{i}",) for i in range(200)))
        writer.close()
        process = self.start("checkpoint")
        _, output = self.assert_stops(process)
        self.assertIn("aborted", output)
        self.assertNotEqual(process.returncode, 0)

    def test_upload_to_a_server_that_never_answers_ends_on_sigterm(self):
        create_database(self.db_path(), rows=100)
        server, target = self.silent_target()
        self.configure('upload = { target = "offsite"; };', targets=target)
        backup = subprocess.run([BIN, "-c", self.config_path, "backup", "app"],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, **S3_ENV})
        self.assertEqual(len(self.archives()), 1, backup.stderr)
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=signal_number.name):
                process = self.start("upload", "app", env=S3_ENV)
                self.assertTrue(server.accepted.wait(10), "the upload never connected")
                self.assert_stops(process, signal_number)
                self.assertNotEqual(process.returncode, 0)
        self.assert_no_temp_files()

    def test_restore_from_a_server_that_never_answers_ends_on_sigterm(self):
        create_database(self.db_path(), rows=100)
        server, target = self.silent_target()
        self.configure('upload = { target = "offsite"; };', targets=target)
        restored = os.path.join(self.dir, "restored.db")
        process = self.start("restore", "app", "--to", restored, "--from", "remote", env=S3_ENV)
        self.assertTrue(server.accepted.wait(10), "restore never connected")
        self.assert_stops(process)
        self.assertNotEqual(process.returncode, 0)
        self.assertEqual([f for f in os.listdir(self.dir) if f.startswith("restored")], [])
        self.assert_no_temp_files()

    def test_check_and_remote_listing_of_a_server_that_never_answers_end_on_sigint(self):
        """Listings take no io_context: they end on the target's stop flag."""
        create_database(self.db_path(), rows=100)
        server, target = self.silent_target()
        self.configure('upload = { target = "offsite"; };', targets=target)
        for command in (("check",), ("backups", "--remote")):
            with self.subTest(command=command):
                server.accepted.clear()
                process = self.start(*command, env=S3_ENV)
                self.assertTrue(server.accepted.wait(10), f"{command} never connected")
                self.assert_stops(process, signal.SIGINT)
                self.assertNotEqual(process.returncode, 0)

    def test_agent_with_a_worker_stuck_on_a_locked_database_ends_on_sigterm(self):
        create_database(self.db_path(), rows=100, wal=False)
        before = sha256(self.db_path())
        self.configure()
        self.lock("exclusive")
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=signal_number.name):
                agent = self.start_agent()
                self.wait_for(lambda: "app: checkpoint: started" in self.agent_log()
                              or "app: health: started" in self.agent_log()
                              or "app: backup: started" in self.agent_log(),
                              timeout=10, what="a job blocked on the lock")
                time.sleep(1)
                self.assertIsNone(agent.poll(), self.agent_log())
                started = time.monotonic()
                agent.send_signal(signal_number)
                try:
                    code = agent.wait(timeout=STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
                    self.fail(f"the agent ignored {signal_number.name}:\n{self.agent_log()}")
                self.assertEqual(code, 0, self.agent_log())
                self.assertLess(time.monotonic() - started, STOP_SECONDS)
        self.assertEqual(sha256(self.db_path()), before, "the agent changed the database")
        self.assertFalse(os.path.exists(self.db_path() + "-journal"))
        self.assertEqual(self.archives(), [])
        self.assert_no_temp_files()
        self.assertIn("aborted: stop requested", self.agent_log())
        self.assertNotIn("AddressSanitizer", self.agent_log())

    def test_agent_with_a_fifo_at_the_database_path_ends_on_sigterm(self):
        os.mkfifo(self.db_path())
        self.configure()
        agent = self.start_agent()
        self.wait_for(lambda: "is a FIFO, not a database file" in self.agent_log(), timeout=10,
                      what="the FIFO refused")
        code, elapsed = self.stop_agent(agent, timeout=STOP_SECONDS)
        self.assertEqual(code, 0, self.agent_log())
        self.assertLess(elapsed, STOP_SECONDS)

    def test_agent_uploading_to_a_server_that_never_answers_ends_on_sigterm(self):
        create_database(self.db_path(), rows=100)
        server, target = self.silent_target()
        self.configure('upload = { target = "offsite"; every = "1s"; };', targets=target)
        agent = self.start_agent(env=S3_ENV)
        self.assertTrue(server.accepted.wait(30), f"no upload started:\n{self.agent_log()}")
        time.sleep(1)
        code, elapsed = self.stop_agent(agent, timeout=STOP_SECONDS)
        self.assertEqual(code, 0, self.agent_log())
        self.assertLess(elapsed, STOP_SECONDS)
        self.assert_no_temp_files()


if __name__ == "__main__":
    unittest.main()

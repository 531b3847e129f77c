"""Only regular files are databases: a table of hostile entries at a
database path, or at its -wal, -shm or -journal, each tried with check,
health, backup and checkpoint. Every command returns at once (SQLite's
open() of a FIFO used to block for good), exits 1, and names the path and
what it is; nothing is left in the backup directory. Then the files that
restore and `backups` read (archive, manifest), and a database the agent
may not read, which is "permission denied" with the fix, not "does not
exist"."""
import os
import shutil
import socket
import subprocess
import time
import unittest

from harness import BIN, AgentTestCase, create_database

PROMPT_SECONDS = 5
COMMANDS = ("check", "health", "backup", "checkpoint")


def make_socket(path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.close()  # the socket file stays: what an operator's mistake leaves


class HostileFilesTest(AgentTestCase):
    def configure(self, path):
        self.write_config(f'{{ name = "app"; path = "{path}"; busy_timeout_ms = 600000; }}')

    def hostile_cases(self):
        """(name, set-up, path in the config, what the message must say)."""
        db = self.db_path()
        pipe = os.path.join(self.dir, "pipe")

        def database_with(suffix, make):
            def setup():
                create_database(db, rows=10, wal=False)
                make(db + suffix)
            return setup

        def link(target):
            def setup():
                os.symlink(target, db)
            return setup

        def link_to_fifo(name):
            def setup():
                os.mkfifo(pipe)
                os.symlink(pipe, name)
            return setup

        return [
            ("fifo", lambda: os.mkfifo(db), db, f"{db} is a FIFO, not a database file"),
            ("unix socket", lambda: make_socket(db), db, f"{db} is a socket, not a database file"),
            ("/dev/null", None, "/dev/null", "/dev/null is a character device, not a database"),
            ("/dev/zero", None, "/dev/zero", "/dev/zero is a character device, not a database"),
            ("directory", lambda: os.mkdir(db), db, f"{db} is a directory, not a database file"),
            ("fifo as -wal", database_with("-wal", os.mkfifo), db,
             f"{db}-wal is a FIFO, not a database file (the -wal file of {db})"),
            ("fifo as -journal", database_with("-journal", os.mkfifo), db,
             f"{db}-journal is a FIFO, not a database file"),
            ("fifo as -shm", database_with("-shm", os.mkfifo), db,
             f"{db}-shm is a FIFO, not a database file"),
            ("directory as -wal", database_with("-wal", os.mkdir), db,
             f"{db}-wal is a directory, not a database file"),
            ("symlink to a fifo", link_to_fifo(db), db, f"{db} is a FIFO, not a database file"),
            ("symlink to a fifo as -wal",
             lambda: (create_database(db, rows=10, wal=False), link_to_fifo(db + "-wal")()),
             db, f"{db}-wal is a FIFO"),
            ("symlink to /dev/zero", link("/dev/zero"), db,
             f"{db} is a character device, not a database file"),
            ("symlink to /dev/zero as -journal",
             database_with("-journal", lambda p: os.symlink("/dev/zero", p)), db,
             f"{db}-journal is a character device"),
            ("symlink loop", lambda: (os.symlink(db + ".b", db), os.symlink(db, db + ".b")), db,
             f"{db} is a symbolic link loop"),
            ("dangling symlink", link(os.path.join(self.dir, "gone.db")), db,
             f"{db} is a symbolic link to a file that does not exist"),
            ("missing", None, db, f"database file {db} does not exist"),
        ]

    def reset(self):
        for name in os.listdir(self.dir):
            path = os.path.join(self.dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)

    def test_each_command_refuses_what_is_not_a_regular_file_at_once(self):
        cases = self.hostile_cases()
        self.assertGreaterEqual(len(cases), 16)
        for name, setup, path, message in cases:
            self.reset()
            if setup:
                setup()
            self.configure(path)
            for command in COMMANDS:
                with self.subTest(case=name, command=command):
                    started = time.monotonic()
                    result = self.run_cli(command, timeout=PROMPT_SECONDS + 5)
                    elapsed = time.monotonic() - started
                    output = result.stdout + result.stderr
                    self.assertLess(elapsed, PROMPT_SECONDS, f"{command} took {elapsed:.1f}s")
                    self.assertEqual(result.returncode, 1, output)
                    self.assertIn(message, output)
                    self.assertNotIn("AddressSanitizer", output)
            backups = os.path.join(self.backup_dir, "app")
            leftovers = os.listdir(backups) if os.path.isdir(backups) else []
            self.assertEqual(leftovers, [], f"case {name}: files left in the backup directory")

    def test_a_symlink_to_a_database_still_works(self):
        real = os.path.join(self.dir, "real.db")
        create_database(real, rows=10)
        os.symlink(real, self.db_path())
        self.configure(self.db_path())
        for command in COMMANDS:
            self.run_cli(command, check=0)

    def test_restore_and_backups_refuse_a_fifo_in_place_of_an_archive_or_manifest(self):
        create_database(self.db_path(), rows=10)
        self.configure(self.db_path())
        self.run_cli("backup", check=0)
        [archive] = self.archives()
        archive = os.path.join(self.backup_dir, "app", archive)
        restored = os.path.join(self.dir, "restored.db")

        os.unlink(archive)
        os.mkfifo(archive)
        started = time.monotonic()
        result = self.run_cli("restore", "app", "--to", restored, timeout=30)
        self.assertLess(time.monotonic() - started, PROMPT_SECONDS)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(f"{archive} is a FIFO, not a regular file", result.stderr)
        self.assertFalse(os.path.exists(restored))

        manifest = archive + ".json"
        os.unlink(manifest)
        os.mkfifo(manifest)
        for command in (("backups",), ("restore", "app", "--to", restored)):
            started = time.monotonic()
            result = self.run_cli(*command, timeout=30)
            self.assertLess(time.monotonic() - started, PROMPT_SECONDS, command)
            self.assertIn(f"{manifest} is a FIFO, not a regular file", result.stderr)
        self.assertFalse(os.path.exists(restored))

    def test_a_fifo_in_place_of_the_state_database_is_refused_at_once(self):
        """The agent's own state.db is a database too: a FIFO there (or as
        its -wal) hung the agent at start-up and every command."""
        for suffix in ("", "-wal"):
            self.reset()
            create_database(self.db_path(), rows=10)
            self.configure(self.db_path())
            self.run_cli("health", check=0)  # creates state.db
            fifo = os.path.join(self.state_dir, "state.db" + suffix)
            if not suffix:
                os.unlink(fifo)
            os.mkfifo(fifo)
            for command in ("status", "backup", "health", "run"):
                with self.subTest(fifo=fifo, command=command):
                    started = time.monotonic()
                    result = self.run_cli(command, timeout=PROMPT_SECONDS + 5)
                    self.assertLess(time.monotonic() - started, PROMPT_SECONDS)
                    self.assertEqual(result.returncode, 1, result.stderr)
                    self.assertIn(f"{fifo} is a FIFO, not a database file", result.stderr)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"),
                         "needs root and setpriv to run sqlprodd as an unprivileged user")
    def test_a_database_the_agent_may_not_read_is_permission_denied_not_missing(self):
        """As user nobody: a file without read permission, and a file in a
        directory nobody may search. Both said "does not exist" in health."""
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "nobody")
        unreadable = self.db_path()
        create_database(unreadable, rows=10, wal=False)
        os.chmod(unreadable, 0o600)
        private = os.path.join(self.dir, "private")
        os.mkdir(private, 0o700)
        hidden = os.path.join(private, "app.db")
        create_database(hidden, rows=10, wal=False)
        for path in (unreadable, hidden):
            self.configure(path)
            os.chmod(self.config_path, 0o644)
            for command in ("check", "health"):
                with self.subTest(path=path, command=command):
                    result = subprocess.run(
                        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                         BIN, "-c", self.config_path, command],
                        capture_output=True, text=True, timeout=30)
                    output = result.stdout + result.stderr
                    self.assertEqual(result.returncode, 1, output)
                    self.assertRegex(output, r"(?i)permission denied")
                    self.assertIn(path, output)
                    self.assertNotIn("does not exist", output)
                    self.assertIn("ReadWritePaths", output)


if __name__ == "__main__":
    unittest.main()

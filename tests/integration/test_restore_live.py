"""`sqlprodd restore DB --to LIVE --force`: the bad day's one command.

Restoring over the live database of a stopped application works, with the
old file and its -wal/-shm kept aside and never replayed into the restored
one; it is refused, naming the process, while anything has the files open;
hostile destinations (a directory, a FIFO, a symlink, a missing directory)
are refused before anything is opened; a failure or a SIGTERM after the old
file moved aside puts it back exactly as it was. Also: the restored file
gets the source's journal mode, and the manifest's database_bytes is the
size of the copy in the archive.
"""
import gzip
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import unittest

from harness import BIN, AgentTestCase, create_database, row_count, traced_environment


def corrupt_index(path, index="items_name"):
    """Overwrites the cell pointers of an index's root page, as a torn write
    or a bad sector would: the table still reads, integrity_check fails."""
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (index,)).fetchone()[0]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size + 8)
        f.write(b"\xff" * 40)


def leave_wal_with_frames(path, rows):
    """A process that commits `rows` rows in WAL mode and dies without a
    checkpoint: its -wal holds committed frames the main file lacks."""
    code = (
        "import os, signal, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "db.execute('PRAGMA wal_autocheckpoint=0')\n"
        "with db:\n"
        f"    db.executemany('INSERT INTO items (name) VALUES (?)', [('late',)] * {rows})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", code, path])


def snapshot(path):
    """What a user would compare: inode, bytes, and each companion's bytes."""
    result = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        name = path + suffix
        if os.path.lexists(name):
            st = os.lstat(name)
            with open(name, "rb") as f:
                result[suffix] = (st.st_ino, f.read())
    return result


class RestoreLiveTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.live = os.path.join(self.dir, "live dir", "app's db.db")
        os.makedirs(os.path.dirname(self.live))
        create_database(self.live, rows=3000)
        self.write_config(f'{{ name = "app"; path = "{self.live}"; }}')
        self.run_cli("backup", "app", check=0)

    def restore(self, *extra, to=None, check=None, timeout=120):
        return self.run_cli("restore", "app", "--to", to or self.live, *extra, check=check,
                            timeout=timeout)

    def leftovers(self, directory=None):
        directory = directory or os.path.dirname(self.live)
        return sorted(f for f in os.listdir(directory) if "sqlprodd-tmp" in f or "replaced" in f)

    def hold_open(self, path, how="sqlite"):
        """Another process with the file open, until the test ends."""
        if how == "sqlite":
            code = ("import sqlite3, sys, time\n"
                    "db = sqlite3.connect(sys.argv[1])\n"
                    "db.execute('SELECT count(*) FROM items').fetchone()\n"
                    "print('ready', flush=True)\n"
                    "time.sleep(120)\n")
        else:
            code = ("import sys, time\n"
                    "f = open(sys.argv[1], 'rb')\n"
                    "print('ready', flush=True)\n"
                    "time.sleep(120)\n")
        process = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE,
                                   text=True)
        self.processes.append(process)
        self.addCleanup(process.stdout.close)
        self.assertEqual(process.stdout.readline().strip(), "ready")
        return process

    def test_stopped_application_live_database_is_restored_and_old_one_kept_aside(self):
        corrupt_index(self.live)
        old = snapshot(self.live)
        result = self.restore("--force", check=0)
        self.assertEqual(row_count(self.live), 3000)
        check = subprocess.run(["sqlite3", self.live, "PRAGMA integrity_check"],
                               capture_output=True, text=True)
        self.assertEqual(check.stdout.strip(), "ok")
        self.assertRegex(result.stdout, r"the replaced database is kept as .*\.replaced-\d{8}T\d{6}Z")
        [aside] = [f for f in self.leftovers() if f.endswith("Z")]
        with open(os.path.join(os.path.dirname(self.live), aside), "rb") as f:
            self.assertEqual(f.read(), old[""][1], "the replaced file is kept byte for byte")
        self.assertIn(os.path.join(os.path.dirname(self.live), aside), result.stdout)

    def test_old_wal_is_kept_out_of_the_restored_database(self):
        leave_wal_with_frames(self.live, 500)
        self.assertGreater(os.path.getsize(self.live + "-wal"), 0)
        self.restore("--force", check=0)
        self.assertEqual(row_count(self.live), 3000,
                         "the old -wal's 500 rows were not replayed into the restored file")
        asides = [f for f in self.leftovers() if f.endswith("-wal")]
        self.assertEqual(len(asides), 1, "the old -wal is kept beside the old file")
        old = os.path.join(os.path.dirname(self.live), asides[0][:-4])
        self.assertEqual(row_count(old), 3500, "the old database opens with its own -wal")

    def test_hot_rollback_journal_is_kept_out_of_the_restored_database(self):
        rollback = os.path.join(os.path.dirname(self.live), "rollback.db")
        create_database(rollback, rows=3000, wal=False)
        self.write_config(f'{{ name = "rb"; path = "{rollback}"; }}')
        self.run_cli("backup", "rb", check=0)
        # A writer dies mid-transaction after its changes reached the file:
        # the -journal beside it is hot and would be rolled back into
        # whatever file has that name next.
        code = ("import os, signal, sqlite3, sys\n"
                "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "db.execute('PRAGMA cache_size=1')\n"
                "db.execute('BEGIN')\n"
                "db.execute('UPDATE items SET name = name || 1')\n"
                "os.kill(os.getpid(), signal.SIGKILL)\n")
        subprocess.run([sys.executable, "-c", code, rollback])
        self.assertGreater(os.path.getsize(rollback + "-journal"), 0)
        result = self.run_cli("restore", "rb", "--to", rollback, "--force", check=0)
        self.assertIn("-journal", result.stdout)
        self.assertFalse(os.path.exists(rollback + "-journal"))
        check = subprocess.run(["sqlite3", rollback, "PRAGMA integrity_check"],
                               capture_output=True, text=True)
        self.assertEqual(check.stdout.strip(), "ok")
        self.assertEqual(row_count(rollback), 3000)

    def test_refused_while_a_process_has_the_live_database_open(self):
        holder = self.hold_open(self.live)
        before = snapshot(self.live)
        result = self.restore("--force", check=1)
        self.assertIn(f"pid {holder.pid} (python3)", result.stderr)
        self.assertIn("stop the application", result.stderr)
        self.assertEqual(snapshot(self.live), before)
        self.assertEqual(self.leftovers(), [])

    def test_refused_while_a_process_has_only_the_wal_open(self):
        leave_wal_with_frames(self.live, 1)
        holder = self.hold_open(self.live + "-wal", how="plain")
        before = snapshot(self.live)
        result = self.restore("--force", check=1)
        self.assertIn(f"pid {holder.pid} (python3)", result.stderr)
        self.assertEqual(snapshot(self.live), before)
        self.assertEqual(row_count(self.live), 3001)

    def test_without_force_a_leftover_wal_is_not_replaced(self):
        leave_wal_with_frames(self.live, 10)
        os.rename(self.live, self.live + ".moved")
        result = self.restore(check=1)
        self.assertIn("--force", result.stderr)
        self.assertTrue(os.path.exists(self.live + "-wal"))
        self.assertFalse(os.path.exists(self.live))

    def test_to_a_directory_is_refused(self):
        directory = os.path.join(self.dir, "somedir")
        os.mkdir(directory)
        result = self.restore("--force", to=directory, check=1)
        self.assertIn("is a directory", result.stderr)
        self.assertTrue(os.path.isdir(directory))
        self.assertEqual(os.listdir(directory), [])
        self.assertEqual(self.leftovers(self.dir), [])

    def test_to_a_fifo_is_refused_without_blocking(self):
        fifo = os.path.join(self.dir, "pipe.db")
        os.mkfifo(fifo)
        started = time.monotonic()
        result = self.restore("--force", to=fifo, check=1, timeout=20)
        self.assertLess(time.monotonic() - started, 10)
        self.assertIn("not a regular file", result.stderr)
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode))
        self.assertEqual(self.leftovers(self.dir), [])

    def test_to_a_symlink_to_the_live_database_is_refused(self):
        link = os.path.join(self.dir, "link.db")
        os.symlink(self.live, link)
        before = snapshot(self.live)
        result = self.restore("--force", to=link, check=1)
        self.assertIn("symbolic link", result.stderr)
        self.assertIn(self.live, result.stderr)
        self.assertTrue(os.path.islink(link))
        self.assertEqual(snapshot(self.live), before)

    def test_to_a_path_whose_directory_does_not_exist_is_refused(self):
        target = os.path.join(self.dir, "no such dir", "app.db")
        result = self.restore(to=target, check=1)
        self.assertIn("does not exist", result.stderr)
        self.assertFalse(os.path.exists(os.path.dirname(target)))

    def test_replaced_file_keeps_its_owner_and_mode(self):
        os.chown(self.live, 65534, 65534)
        os.chmod(self.live, 0o640)
        self.restore("--force", check=0)
        st = os.stat(self.live)
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (65534, 65534, 0o640))

    @unittest.skipUnless(shutil.which("strace"), "strace is not installed (scripts/install-deps)")
    def test_failure_after_the_old_file_moved_aside_puts_it_back_exactly(self):
        leave_wal_with_frames(self.live, 50)
        before = snapshot(self.live)
        # The rename of the restored file into place fails (EIO), after the
        # old file and its -wal and -shm were moved aside.
        temp = self.live + ".sqlprodd-tmp"
        result = subprocess.run(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-P", temp, "-e",
             "trace=rename,renameat,renameat2", "-e",
             "inject=rename,renameat,renameat2:error=EIO", BIN, "-c", self.config_path,
             "restore", "app", "--to", self.live, "--force"],
            capture_output=True, text=True, timeout=120, env=traced_environment())
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("is back in place as it was", result.stderr)
        self.assertEqual(snapshot(self.live), before)
        self.assertEqual(row_count(self.live), 3050)
        self.assertEqual(self.leftovers(), [])

    @unittest.skipUnless(shutil.which("strace"), "strace is not installed (scripts/install-deps)")
    def test_sigterm_right_after_the_old_file_moved_aside_leaves_the_original(self):
        before = snapshot(self.live)
        # SIGTERM arrives at the very rename that moves the live file aside.
        result = subprocess.run(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-P", self.live, "-e",
             "trace=rename,renameat,renameat2", "-e",
             "inject=rename,renameat,renameat2:signal=SIGTERM:when=1", BIN, "-c",
             self.config_path, "restore", "app", "--to", self.live, "--force"],
            capture_output=True, text=True, timeout=120, env=traced_environment())
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("stopped by a signal", result.stderr)
        self.assertEqual(snapshot(self.live), before)
        self.assertEqual(self.leftovers(), [])

    @unittest.skipUnless(shutil.which("strace"), "strace is not installed (scripts/install-deps)")
    def test_a_file_made_at_the_destination_during_the_restore_is_not_replaced(self):
        target = os.path.join(self.dir, "new.db")
        temp = target + ".sqlprodd-tmp"
        # The restore stalls 2 s at the temp file's first fsync; meanwhile
        # something creates the destination, which did not exist at the start.
        process = subprocess.Popen(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-P", temp, "-e", "trace=fsync,fdatasync",
             "-e", "inject=fsync,fdatasync:delay_exit=2000000:when=1", BIN, "-c",
             self.config_path, "restore", "app", "--to", target],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=traced_environment())
        self.wait_for(lambda: os.path.exists(temp), what="the restore to write its temp file")
        with open(target, "w") as f:
            f.write("precious")
        _, stderr = process.communicate(timeout=60)
        self.assertEqual(process.returncode, 1, stderr)
        self.assertIn("exists", stderr)
        with open(target) as f:
            self.assertEqual(f.read(), "precious")
        self.assertEqual(self.leftovers(self.dir), [])

    def test_sigterm_while_decompressing_leaves_the_original_and_no_temp_file(self):
        big = os.path.join(self.dir, "big.db")
        create_database(big, rows=400000, payload=400)
        self.write_config(f'{{ name = "app"; path = "{self.live}"; }}, '
                          f'{{ name = "big"; path = "{big}"; }}')
        self.run_cli("backup", "big", check=0)
        before = snapshot(big)
        process = subprocess.Popen([BIN, "-c", self.config_path, "restore", "big", "--to", big,
                                    "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        temp = big + ".sqlprodd-tmp"
        self.wait_for(lambda: os.path.exists(temp) or process.poll() is not None,
                      what="the restore to start writing")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
        self.assertEqual(process.returncode, 1, stderr)
        self.assertEqual(snapshot(big), before)
        self.assertEqual(self.leftovers(self.dir), [])

    def test_waits_for_a_running_job_on_the_database_and_says_who(self):
        # The backup is kept at work deterministically: the application holds
        # its database exclusively, so the backup waits in SQLite's busy
        # handler while it holds sqlprodd's database lock. (Waiting for a
        # plain backup to be seen holding the lock was a race under load.)
        big = os.path.join(self.dir, "big.db")
        create_database(big, rows=2000)
        self.write_config(f'{{ name = "app"; path = "{self.live}"; }}, '
                          f'{{ name = "big"; path = "{big}"; busy_timeout_ms = 600000; }}')
        self.run_cli("backup", "big", check=0)
        time.sleep(1.05)  # archive names have one-second resolution
        application = subprocess.Popen(
            [sys.executable, "-c",
             "import sqlite3, sys\n"
             "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
             "db.execute('PRAGMA locking_mode=EXCLUSIVE')\n"
             "db.execute('BEGIN IMMEDIATE')\n"
             "db.execute(\"INSERT INTO items (name) VALUES ('held')\")\n"
             "print('locked', flush=True)\n"
             "sys.stdin.read()\n"
             "db.execute('ROLLBACK')\n"
             "db.close()\n", big],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.processes.append(application)
        self.assertEqual(application.stdout.readline().strip(), "locked")
        backup = subprocess.Popen([BIN, "-c", self.config_path, "backup", "big"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(backup)
        lock = os.path.join(self.state_dir, "locks", "big.lock")
        self.wait_for(lambda: os.path.exists(lock) and os.path.getsize(lock) > 0,
                      what="the backup to hold the lock")
        restore_log = os.path.join(self.dir, "restore.err")
        with open(restore_log, "w") as log:
            restore = subprocess.Popen([BIN, "-c", self.config_path, "restore", "big", "--to",
                                        big, "--force"], stdout=subprocess.DEVNULL, stderr=log)
        self.processes.append(restore)

        def restore_says_it_waits():
            with open(restore_log) as f:
                return "waiting for the database lock" in f.read()
        self.wait_for(restore_says_it_waits, what="restore to say it waits for the lock")
        self.assertIsNone(restore.poll(), "restore waits while the backup works")
        # The application stops: the backup ends, then the restore goes on.
        application.stdin.close()
        self.assertEqual(application.wait(timeout=60), 0)
        self.assertEqual(backup.wait(timeout=120), 0)
        self.assertEqual(restore.wait(timeout=120), 0)
        with open(restore_log) as f:
            self.assertRegex(f.read(), r"waiting for the database lock, held by pid \d+, "
                             r"sqlprodd backup")
        self.assertEqual(row_count(big), 2000)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_a_user_who_cannot_see_every_process_is_told_so(self):
        for root, directories, files in os.walk(self.dir):
            for name in [root] + [os.path.join(root, f) for f in directories + files]:
                os.chown(name, 65534, 65534)
        os.chmod(self.dir, 0o755)
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BIN, "-c",
             self.config_path, "restore", "app", "--to", self.live, "--force"],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stderr, r"the open files of \d+ processes of other users could "
                         r"not be checked \(run restore as root")


class RestoreJournalModeTest(AgentTestCase):
    def test_wal_source_comes_back_in_wal_and_an_old_manifest_in_delete(self):
        path = self.db_path()
        create_database(path, rows=2000)
        self.write_config(f'{{ name = "app"; path = "{path}"; }}')
        self.run_cli("backup", "app", check=0)
        restored = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", restored, check=0)
        self.assertIn("journal_mode wal", result.stdout)
        db = sqlite3.connect(restored)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        db.close()
        self.assertFalse(os.path.exists(restored + ".sqlprodd-tmp-wal"))

        # A manifest written before journal_mode was recorded: as before.
        [manifest] = [f for f in os.listdir(os.path.join(self.backup_dir, "app"))
                      if f.endswith(".json")]
        manifest = os.path.join(self.backup_dir, "app", manifest)
        with open(manifest) as f:
            content = json.load(f)
        self.assertEqual(content["journal_mode"], "wal")
        del content["journal_mode"]
        with open(manifest, "w") as f:
            json.dump(content, f)
        older = os.path.join(self.dir, "older.db")
        self.run_cli("restore", "app", "--to", older, check=0)
        db = sqlite3.connect(older)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "delete")
        db.close()

    def test_manifest_database_bytes_is_the_size_of_the_archived_copy(self):
        path = self.db_path()
        create_database(path, rows=5000)
        db = sqlite3.connect(path)
        with db:  # free pages in the live file that VACUUM INTO leaves out
            db.execute("DELETE FROM items WHERE id % 2 = 0")
        db.close()
        self.write_config(f'{{ name = "app"; path = "{path}"; }}')
        self.run_cli("backup", "app", check=0)
        [archive] = self.archives()
        archive = os.path.join(self.backup_dir, "app", archive)
        with open(archive + ".json") as f:
            manifest = json.load(f)
        with gzip.open(archive, "rb") as f:
            decompressed = len(f.read())
        self.assertEqual(manifest["database_bytes"], decompressed)
        self.assertEqual(manifest["database_bytes"], manifest["page_count"] * manifest["page_size"])
        self.assertNotEqual(manifest["database_bytes"], os.path.getsize(path))


if __name__ == "__main__":
    unittest.main()

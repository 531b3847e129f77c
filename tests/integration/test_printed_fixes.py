"""Every command sqlprodd prints as a fix works when pasted as printed.

Each test provokes one message with the real binary, on a database and a
configuration whose paths hold a space, a quote, a backquote and a '$'; takes
the command out of the output exactly as printed (between backquotes, see
src/config/advice.h); runs it with `sh -c` from another directory, with `sqlprodd`
found on PATH as an operator's shell finds it; and checks that it did what
the message said it would.
"""
import os
import sqlite3
import stat
import subprocess
import sys
import unittest

from harness import (ACCESS_KEY, BIN, BUCKET, SECRET_KEY, AgentTestCase, S3TestCase,
                     create_database, row_count)
from test_restore_live import corrupt_index

PROGRAMS = ("sqlprodd", "sqlite3", "fuser", "chmod", "chown", "systemctl")


def printed_commands(text):
    """The commands between backquotes: one ends at the first backquote that
    sh would not read as quoted."""
    commands, i = [], 0
    while (start := text.find("`", i)) >= 0:
        j, quote = start + 1, None
        while j < len(text):
            c = text[j]
            if quote == "'":
                quote = None if c == "'" else quote
            elif quote == '"':
                if c == "\\":
                    j += 1
                elif c == '"':
                    quote = None
            elif c in "'\"":
                quote = c
            elif c == "\\":
                j += 1
            elif c == "`":
                break
            j += 1
        command = text[start + 1:j]
        if command.split(" ", 1)[0] in PROGRAMS:
            commands.append(command)
        i = j + 1
    return commands


def corrupt_index_keys(path, index="items_name"):
    """Overwrites two bytes of the keys at the end of an index page, as a
    torn write would: the b-tree stays well-formed (quick_check passes, and
    VACUUM INTO copies it), but integrity_check finds rows missing from it."""
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (index,)).fetchone()[0]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(path, "r+b") as f:
        f.seek(root * page_size - 25)
        f.write(b"zz")


class PrintedFixesTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        hostile = os.path.join(self.dir, "it's a `dir` $HOME")
        os.makedirs(hostile)
        self.live = os.path.join(hostile, "app's db.db")
        self.config_path = os.path.join(hostile, "sqlprodd's.conf")
        # `sqlprodd` on PATH, as installed: the binary under test.
        self.bin_dir = os.path.join(self.dir, "bin")
        os.mkdir(self.bin_dir)
        os.symlink(os.path.abspath(BIN), os.path.join(self.bin_dir, "sqlprodd"))
        self.elsewhere = os.path.join(self.dir, "elsewhere")
        os.mkdir(self.elsewhere)

    def configure(self, extra="", defaults="", targets=""):
        self.write_config(f'{{ name = "app"; path = "{self.live}"; {extra} }}', defaults=defaults,
                          targets=targets)

    def fix(self, output, program, containing=""):
        """The one command printed for `program` (whose text holds `containing`)."""
        found = [c for c in printed_commands(output)
                 if c.startswith(program + " ") and containing in c]
        self.assertEqual(len(found), 1, f"one `{program} ...{containing}` in:\n{output}")
        return found[0]

    def paste(self, command, check=0):
        """What an operator does: paste the command into a shell, elsewhere."""
        environment = dict(os.environ)
        environment["PATH"] = self.bin_dir + os.pathsep + environment.get("PATH", "")
        environment.pop("SQLPRODD_CONFIG", None)
        result = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                                cwd=self.elsewhere, env=environment, timeout=300)
        if check is not None:
            self.assertEqual(result.returncode, check,
                             f"{command}\nstdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def output(self, *args, check=None):
        result = self.run_cli(*args, check=check)
        return result.stdout + result.stderr

    def health(self, check=None):
        return self.output("health", "app", check=check)

    def pragma(self, name):
        db = sqlite3.connect(self.live)
        try:
            return db.execute(f"PRAGMA {name}").fetchone()[0]
        finally:
            db.close()

    def test_health_restore_advice_after_corruption_restores_a_healthy_database(self):
        create_database(self.live, rows=3000)
        self.configure()
        self.run_cli("backup", "app", check=0)
        corrupt_index_keys(self.live)  # the application is stopped
        output = self.health(check=1)
        self.assertIn("integrity_check found corruption", output)
        command = self.fix(output, "sqlprodd", " restore ")
        self.assertIn("-c ", command)
        result = self.paste(command)
        self.assertIn("the replaced database is kept as", result.stdout)
        self.assertRegex(self.health(check=0), r"health: healthy")
        self.assertEqual(row_count(self.live), 3000)
        self.assertEqual(self.pragma("journal_mode"), "wal")

    def test_a_path_with_a_newline_and_a_tab_is_printed_on_one_line_and_works(self):
        self.live = os.path.join(os.path.dirname(self.live), "app\nnew\tline 100%.db")
        create_database(self.live, rows=3000)
        escaped = self.live.replace("\n", "\\n").replace("\t", "\\t")  # libconfig escapes
        self.write_config(f'{{ name = "app"; path = "{escaped}"; }}')
        self.run_cli("backup", "app", check=0)
        corrupt_index_keys(self.live)
        output = self.health(check=1)
        command = self.fix(output, "sqlprodd", " restore ")
        self.assertNotIn("\n", command)
        self.paste(command)
        self.assertRegex(self.health(check=0), r"health: healthy")
        self.assertEqual(row_count(self.live), 3000)

    def test_long_paths_and_a_long_corruption_report_leave_the_command_whole(self):
        directory = os.path.join(self.dir, "a directory with a long name " * 6)
        os.mkdir(directory)
        self.live = os.path.join(directory, "the application's database " * 3 + ".db")
        self.config_path = os.path.join(directory, "sqlprodd.conf")
        create_database(self.live, rows=3000)
        self.configure()
        self.run_cli("backup", "app", check=0)
        corrupt_index(self.live)  # integrity_check reports ten problems
        output = self.health(check=1)
        self.paste(self.fix(output, "sqlprodd", " restore "))
        self.assertRegex(self.health(check=0), r"health: healthy")

    def test_health_restore_advice_for_an_unreadable_database_restores_it(self):
        create_database(self.live, rows=3000)
        self.configure()
        self.run_cli("backup", "app", check=0)
        corrupt_index(self.live, index="items")  # the table's root page
        with open(self.live, "r+b") as f:  # and the schema's, on page 1
            f.seek(100)
            f.write(b"\xff" * 12)
        output = self.health(check=1)
        self.assertIn("the database is corrupt", output)
        self.paste(self.fix(output, "sqlprodd", " restore "))
        self.assertRegex(self.health(check=0), r"health: healthy")
        self.assertEqual(row_count(self.live), 3000)

    def test_journal_mode_advice_of_health_and_checkpoint_switches_to_wal(self):
        create_database(self.live, rows=100, wal=False)
        self.configure()
        self.paste(self.fix(self.health(), "sqlite3", "journal_mode=WAL"))
        self.assertEqual(self.pragma("journal_mode"), "wal")

        db = sqlite3.connect(self.live)
        db.execute("PRAGMA journal_mode=DELETE")
        db.close()
        self.paste(self.fix(self.output("checkpoint", "app"), "sqlite3", "journal_mode=WAL"))
        self.assertEqual(self.pragma("journal_mode"), "wal")

    def test_wal_advice_names_the_reader_and_its_checkpoint_resets_the_wal(self):
        create_database(self.live, rows=100)
        reader = subprocess.Popen(
            [sys.executable, "-c",
             "import sqlite3, sys, time\n"
             "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
             "db.execute('BEGIN')\n"
             "db.execute('SELECT count(*) FROM items').fetchone()\n"
             "print('ready', flush=True)\n"
             "sys.stdin.read()\n", self.live],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.processes.append(reader)
        self.assertEqual(reader.stdout.readline().strip(), "ready")
        writer = sqlite3.connect(self.live, isolation_level=None)
        for _ in range(20):
            writer.execute("INSERT INTO items (name) SELECT name FROM items LIMIT 100")
        writer.close()
        self.configure(extra='health = { wal_warn = "64KB"; };')
        output = self.health()
        result = self.paste(self.fix(output, "fuser", "-wal"))
        self.assertIn(str(reader.pid), result.stdout + result.stderr)

        reader.stdin.close()  # the reader ends its transaction
        reader.wait(timeout=10)
        reader.stdout.close()
        self.paste(self.fix(output, "sqlprodd", " checkpoint "))
        wal = self.live + "-wal"  # truncated, or removed with the last connection
        self.assertEqual(os.path.getsize(wal) if os.path.exists(wal) else 0, 0)

    def test_freelist_advice_with_incremental_auto_vacuum_returns_the_pages(self):
        create_database(self.live, rows=3000, auto_vacuum="INCREMENTAL")
        db = sqlite3.connect(self.live)
        with db:
            db.execute("DELETE FROM items WHERE id > 1000")
        db.close()
        self.configure(extra="health = { freelist_warn = 0.05; };",
                       defaults="vacuum = { enabled = false; };")
        self.assertGreater(self.pragma("freelist_count"), 0)
        self.paste(self.fix(self.health(), "sqlprodd", " vacuum "))
        self.assertEqual(self.pragma("freelist_count"), 0)

    def test_freelist_advice_without_auto_vacuum_switches_to_incremental(self):
        create_database(self.live, rows=3000)
        db = sqlite3.connect(self.live)
        with db:
            db.execute("DELETE FROM items WHERE id > 1000")
        db.close()
        self.configure(extra="health = { freelist_warn = 0.05; };")
        self.paste(self.fix(self.health(), "sqlite3", "auto_vacuum=INCREMENTAL"))
        self.assertEqual(self.pragma("auto_vacuum"), 2)
        self.assertEqual(self.pragma("freelist_count"), 0)
        self.assertEqual(row_count(self.live), 1000)

    def test_vacuum_job_advice_switches_to_incremental(self):
        create_database(self.live, rows=1000)
        self.configure()
        self.paste(self.fix(self.output("vacuum", "app"), "sqlite3", "auto_vacuum=INCREMENTAL"))
        self.assertEqual(self.pragma("auto_vacuum"), 2)
        self.assertEqual(self.pragma("journal_mode"), "wal")

    def test_failed_job_advice_reruns_the_job_once_the_cause_is_fixed(self):
        create_database(self.live, rows=500)
        self.configure()
        open(self.backup_dir, "w").close()  # the backup directory is a file
        self.run_cli("backup", "app", check=1)
        self.run_cli("backup", "app", check=1)
        command = self.fix(self.health(), "sqlprodd", " backup ")
        os.unlink(self.backup_dir)  # the operator fixes the cause
        self.paste(command)
        self.assertEqual(len(self.archives()), 1)

    def test_backup_advice_after_a_failed_copy_check_shows_the_corruption(self):
        create_database(self.live, rows=3000)
        corrupt_index_keys(self.live)
        self.configure()
        output = self.output("backup", "app", check=1)
        self.assertIn("the copy failed integrity_check", output)
        result = self.paste(self.fix(output, "sqlite3", "integrity_check"))
        self.assertIn("missing from index items_name", result.stdout)

    def test_upload_advice_for_a_damaged_archive_finds_it(self):
        create_database(self.live, rows=3000)
        offsite = os.path.join(self.dir, "off site's `nas`")
        self.configure('upload = { target = "nas"; };',
                       targets=f'{{ name = "nas"; type = "dir"; path = "{offsite}"; }}')
        open(offsite, "w").close()  # the target is down: the archive waits in the queue
        self.run_cli("backup", "app", check=None)
        [archive] = [a for a in self.archives() if a.endswith(".db.gz")]
        path = os.path.join(self.backup_dir, "app", archive)
        os.unlink(offsite)  # the target is back, but the archive was damaged meanwhile
        os.mkdir(offsite)
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
        output = self.output("upload", "app")
        self.assertIn("changed or is corrupt", output)
        self.assertFalse(os.path.exists(os.path.join(offsite, "app", archive)),
                         "a damaged archive was stored on the target")
        # Printed by the attempt and by the run's summary: the same command.
        [command] = {c for c in printed_commands(output) if c.startswith("sqlprodd ")}
        self.assertIn(" verify app --local --data", command)
        result = self.paste(command, check=1)
        self.assertIn(archive, result.stdout + result.stderr)


class PrintedCredentialsFixTest(S3TestCase):
    def test_credentials_advice_makes_the_file_private_and_check_passes(self):
        server = self.start_server()
        directory = os.path.join(self.dir, "it's `secret` $dir")
        os.makedirs(directory)
        credentials = os.path.join(directory, "off site's.credentials")
        with open(credentials, "w") as f:
            f.write(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                    f"aws_secret_access_key = {SECRET_KEY}\n")
        os.chmod(credentials, 0o644)
        path = self.db_path()
        create_database(path, rows=100)
        self.write_config(f'{{ name = "app"; path = "{path}"; upload = {{ target = "offsite"; }}; }}',
                          targets=self.s3_target(server.url,
                                                 f'credentials_file = "{credentials}";'))
        self.aws_cli("s3", "mb", f"s3://{BUCKET}", check=False)
        result = self.run_cli("check", check=1, env={"AWS_ACCESS_KEY_ID": "",
                                                     "AWS_SECRET_ACCESS_KEY": ""})
        [command] = [c for c in printed_commands(result.stdout + result.stderr)
                     if c.startswith("chown ")]
        subprocess.run(["sh", "-c", command], check=True, cwd=self.dir)
        self.assertEqual(stat.S_IMODE(os.stat(credentials).st_mode), 0o640)
        self.run_cli("check", check=0)


if __name__ == "__main__":
    unittest.main()

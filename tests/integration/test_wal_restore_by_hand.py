"""What an operator with cp, head, cat, gzip and sqlite3 alone can restore from WAL bytes.

These are the facts the replication layout (docs/replication-design.md,
sqlprodd-format(5)) is built on, checked against the SQLite of this machine
on every run: a base consistent at the start of a WAL generation plus that
generation's WAL bytes up to the end of a commit replay, in sqlite3, to
exactly that commit; generations chain; a base newer than the target commit
gives a damaged database without any error (so restore must refuse it); gzip
members of WAL ranges concatenate into the WAL; two generations in one -wal
silently stop at the end of the first.

The application side uses Python's sqlite3 module (one connection that keeps
the database open, autocheckpoint off); the restore side runs only shell
tools, as an operator would. No sqlprodd binary is involved.
"""
import os
import shutil
import sqlite3
import subprocess
import tempfile
import unittest

PAGE_SIZE = 4096


def sh(command, cwd):
    return subprocess.run(["sh", "-c", command], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


class Application:
    """Writes generations of a WAL database and remembers, for each commit, the
    end of its bytes in the -wal and a backup-API copy of the database."""

    def __init__(self, directory):
        self.dir = directory
        self.db = os.path.join(directory, "app.db")
        self.con = sqlite3.connect(self.db, isolation_level=None)
        self.con.execute(f"PRAGMA page_size={PAGE_SIZE}")
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA wal_autocheckpoint=0")
        self.con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
        self.con.execute("CREATE INDEX t_k ON t(k)")
        self.generation = 0
        self.ends = {}  # (generation, commit) -> end offset in that generation's WAL
        self.start_generation()

    def path(self, name):
        return os.path.join(self.dir, name)

    def start_generation(self):
        """The agent's checkpoint: everything into the database file, WAL emptied."""
        busy, _, _ = self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        self.commit_count = 0

    def commit(self, sql, *args):
        self.con.execute("BEGIN")
        self.con.execute(sql, args)
        self.con.execute("COMMIT")
        self.commit_count += 1
        key = (self.generation, self.commit_count)
        # Inside one generation the file only grows: its size is the end of this commit.
        self.ends[key] = os.path.getsize(self.db + "-wal")
        self.copy(self.path(f"expected_{key[0]}_{key[1]}.db"))
        return key

    def insert_rows(self, count, size):
        return self.commit("INSERT INTO t(k, v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                           "SELECT i + 1 FROM n WHERE i < ?) SELECT hex(randomblob(8)), "
                           "randomblob(?) FROM n", count, size)

    def vacuum(self):
        """VACUUM cannot run inside BEGIN; it is one commit of its own."""
        self.con.execute("VACUUM")
        self.commit_count += 1
        key = (self.generation, self.commit_count)
        self.ends[key] = os.path.getsize(self.db + "-wal")
        self.copy(self.path(f"expected_{key[0]}_{key[1]}.db"))
        return key

    def copy(self, target):
        """A page-for-page copy of the database as of now (the backup API)."""
        destination = sqlite3.connect(target)
        self.con.backup(destination)
        destination.close()

    def keep_wal(self, name):
        shutil.copyfile(self.db + "-wal", self.path(name))

    def close(self):
        self.con.close()


class RestoreByHand(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("sqlite3") or not shutil.which("gzip"):
            raise unittest.SkipTest("needs the sqlite3 and gzip commands (scripts/install-deps)")
        cls.dir = tempfile.mkdtemp(prefix="sqlprodd-wal-by-hand-")
        app = cls.app = Application(cls.dir)
        shutil.copyfile(app.db, app.path("gen0-base.db"))
        # Generation 0: inserts of many sizes, a delete that frees pages, a VACUUM
        # that shrinks the file (its commit frame says fewer pages than the base).
        for i in range(1, 13):
            app.insert_rows(1 + i % 7, 10 + 1500 * i)
        app.commit("DELETE FROM t WHERE id % 3 = 0")
        app.commit("UPDATE t SET k = 'updated' WHERE id % 5 = 1")
        app.vacuum()
        cls.gen0_commits = app.commit_count
        app.keep_wal("gen0.wal")
        # Generation 1: appends only in commits 1..4, so that commit 5, which
        # changes rows written in generation 0, touches pages no frame of
        # commits 1..4 holds.
        app.generation = 1
        app.start_generation()
        for _ in range(4):
            app.insert_rows(3, 2000)
        app.commit("UPDATE t SET k = 'changed in generation 1' WHERE id <= 20")
        app.copy(app.path("gen1-base-at-5.db"))
        for _ in range(3):
            app.insert_rows(2, 5000)
        app.keep_wal("gen1.wal")
        app.close()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def restore(self, base, wal_command):
        """cp base, build r.db-wal with a shell command, let sqlite3 replay it.
        Returns (integrity_check, .sha3sum) as sqlite3 prints them."""
        sh("rm -f r.db r.db-wal r.db-shm && cp " + base + " r.db && " + wal_command +
           " > r.db-wal", self.dir)
        out = sh("sqlite3 r.db 'PRAGMA integrity_check' .sha3sum", self.dir).split("\n")
        # sqlite3 checkpointed the WAL into r.db and removed it on close
        self.assertFalse(os.path.exists(os.path.join(self.dir, "r.db-wal")))
        return out[0], out[1]

    def expected(self, generation, commit):
        out = sh(f"sqlite3 expected_{generation}_{commit}.db 'PRAGMA integrity_check' .sha3sum",
                 self.dir).split("\n")
        return out[0], out[1]

    def test_generation_wal_cut_at_each_commit_replays_to_that_commit(self):
        for k in range(1, self.gen0_commits + 1):
            with self.subTest(commit=k):
                end = self.app.ends[(0, k)]
                self.assertEqual(self.restore("gen0-base.db", f"head -c {end} gen0.wal"),
                                 self.expected(0, k))

    def test_next_generation_replays_on_the_end_of_the_previous(self):
        sh("rm -f g1.db* && cp gen0-base.db g1.db && cp gen0.wal g1.db-wal && "
           "sqlite3 g1.db 'PRAGMA integrity_check'", self.dir)
        for k in range(1, 9):
            with self.subTest(commit=k):
                end = self.app.ends[(1, k)]
                self.assertEqual(self.restore("g1.db", f"head -c {end} gen1.wal"),
                                 self.expected(1, k))

    def test_base_taken_mid_generation_restores_only_commits_after_it(self):
        for k in range(5, 9):
            with self.subTest(commit=k):
                end = self.app.ends[(1, k)]
                self.assertEqual(self.restore("gen1-base-at-5.db", f"head -c {end} gen1.wal"),
                                 self.expected(1, k))
        # Before the base: commit 5's changes stay in, and sqlite3 says nothing.
        end = self.app.ends[(1, 4)]
        restored = self.restore("gen1-base-at-5.db", f"head -c {end} gen1.wal")
        self.assertNotEqual(restored, self.expected(1, 4))
        rows = sh("sqlite3 r.db \"SELECT count(*) FROM t NOT INDEXED WHERE k = 'changed in generation 1'\"",
                  self.dir).strip()
        self.assertNotEqual(rows, "0")

    def test_gzip_members_concatenated_are_the_wal(self):
        os.makedirs(os.path.join(self.dir, "seg"), exist_ok=True)
        previous = 0
        for k in range(1, self.gen0_commits + 1):
            end = self.app.ends[(0, k)]
            sh(f"tail -c +{previous + 1} gen0.wal | head -c {end - previous} | gzip -n "
               f"> seg/{previous:012d}.wal.gz", self.dir)
            previous = end
        sh("cat seg/*.wal.gz | gunzip | cmp - gen0.wal", self.dir)
        # sqlprodd-format(5)'s recipe: all members, cut at a commit's end_offset.
        end = self.app.ends[(0, 9)]
        self.assertEqual(self.restore("gen0-base.db", f"cat seg/*.wal.gz | gunzip | head -c {end}"),
                         self.expected(0, 9))
        # The first 7 members: the WAL up to the end of commit 7.
        self.assertEqual(self.restore("gen0-base.db", "ls seg/*.wal.gz | head -7 | xargs cat | gunzip"),
                         self.expected(0, 7))

    def test_two_generations_in_one_wal_stop_at_the_first_without_error(self):
        restored = self.restore("gen0-base.db", "cat gen0.wal gen1.wal")
        self.assertEqual(restored, self.expected(0, self.gen0_commits))
        self.assertNotEqual(restored, self.expected(1, 8))


if __name__ == "__main__":
    unittest.main()

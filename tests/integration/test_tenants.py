"""A directory of per-tenant databases served by one `glob` entry: the
agent looks after every database file it finds there at start-up, picks up
a tenant added while it runs (created in place or moved in) and lets go of
one removed, without a restart or SIGHUP; files that are no database are
passed over, named, with the reason, in `check` and in the log."""
import os
import shutil
import sqlite3
import subprocess
import time
import unittest

from harness import AgentTestCase, create_database


class TenantsTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.tenants = os.path.join(self.dir, "tenants")
        os.mkdir(self.tenants)

    def tenant(self, name):
        return os.path.join(self.tenants, name + ".db")

    def configure(self, entries=""):
        self.write_config(
            f'{{ glob = "{self.tenants}/*.db"; name = "t-%stem"; '
            f'backup = {{ every = "1h"; }}; }}' + entries,
            defaults='checkpoint = { every = "1h"; }; vacuum = { enabled = false; }; '
                     'analyze = { enabled = false; }; health = { every = "1h"; };')

    def names(self):
        return sorted(d["name"] for d in self.status_json()["databases"])

    def backed_up(self, name):
        directory = os.path.join(self.backup_dir, name)
        return os.path.isdir(directory) and any(f.endswith(".db.gz")
                                                for f in os.listdir(directory))

    def test_tenants_come_and_go_while_the_agent_runs(self):
        for name in ("acme", "globex"):
            create_database(self.tenant(name), rows=50)
        self.configure()
        self.start_agent()
        self.wait_for(lambda: self.backed_up("t-acme") and self.backed_up("t-globex"),
                      timeout=30, what="the tenants found at start-up backed up")
        self.assertEqual(self.names(), ["t-acme", "t-globex"])

        # A new tenant created in place, another moved in whole: both
        # looked after within seconds, with the entry's settings.
        create_database(self.tenant("initech"), rows=50)
        staged = os.path.join(self.dir, "staged.db")
        create_database(staged, rows=50)
        os.rename(staged, self.tenant("umbrella"))
        self.wait_for(lambda: self.backed_up("t-initech") and self.backed_up("t-umbrella"),
                      timeout=30, what="the new tenants backed up")
        self.assertEqual(self.names(), ["t-acme", "t-globex", "t-initech", "t-umbrella"])
        self.assertRegex(self.agent_log(),
                         r"databases found by glob entries changed \([12] added, 0 gone\)")

        # A tenant removed (with its WAL files) is let go; its backups stay.
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.tenant("globex") + suffix):
                os.unlink(self.tenant("globex") + suffix)
        self.wait_for(lambda: "(0 added, 1 gone)" in self.agent_log(), timeout=30,
                      what="the removed tenant let go")
        # The new configuration is applied once no job runs (a backup may).
        self.wait_for(lambda: "configuration reloaded" in
                      self.agent_log().rpartition("(0 added, 1 gone)")[2],
                      timeout=30, what="the configuration without the tenant applied")
        self.assertNotIn("t-globex", self.names())
        self.assertTrue(self.backed_up("t-globex"))

        # The application writing its tenants' databases (WAL files come and
        # go) is no reason to read the configuration again.
        before = self.agent_log().count("configuration reloaded")
        db = sqlite3.connect(self.tenant("acme"))
        db.execute("PRAGMA journal_mode=WAL")
        for i in range(20):
            with db:
                db.execute("INSERT INTO items (name) VALUES (?)", (f"more-{i}",))
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        time.sleep(1.5)
        self.assertEqual(self.agent_log().count("configuration reloaded"), before)

    def test_files_that_are_no_database_are_named_and_passed_over(self):
        create_database(self.tenant("acme"), rows=50)
        create_database(self.tenant("two words"), rows=50)
        with open(self.tenant("notes"), "w") as f:
            f.write("not a database\n")
        os.mkfifo(self.tenant("pipe"))
        os.symlink(self.tenant("acme"), self.tenant("alias"))
        create_database(os.path.join(self.dir, "named.db"), rows=50)
        # An entry written out keeps its name: the tenant file that would
        # take it is passed over, before and after the agent starts.
        self.configure(f', {{ name = "t-zeta"; path = "{os.path.join(self.dir, "named.db")}"; }}')
        create_database(self.tenant("zeta"), rows=50)
        check = self.run_cli("check", check=0).stdout
        self.assertRegex(check, r'glob "[^"]+/tenants/\*\.db": 1 database, 5 files skipped:')
        for fragment in ("tenants/notes.db: not an SQLite database",
                         "tenants/pipe.db: not a regular file",
                         'tenants/two words.db: its name "t-two words" is not usable',
                         "tenants/alias.db: another entry or pattern has this file",
                         'tenants/zeta.db: its name "t-zeta" is another database\'s'):
            self.assertIn(fragment, check)
        self.start_agent()
        self.wait_for(lambda: self.backed_up("t-acme"), timeout=30, what="t-acme backed up")
        self.assertEqual(self.names(), ["t-acme", "t-zeta"])
        status = self.status_json()
        zeta = next(d for d in status["databases"] if d["name"] == "t-zeta")
        self.assertEqual(zeta["path"], os.path.join(self.dir, "named.db"))
        self.assertIn("discovery: skipped " + self.tenant("pipe") + ": not a regular file",
                      self.agent_log())


if __name__ == "__main__":
    unittest.main()

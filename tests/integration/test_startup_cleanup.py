"""Start-up clean-up: what killed runs leave behind is removed when the agent
starts, before any job runs, and nothing else is touched.

A killed `backup` leaves its fixed-name copy (made here by a real SIGKILL),
but also, depending on the moment, a temp archive and a temp manifest under
the name of *that* backup's second, and an archive whose manifest was never
written; a killed upload leaves temp files on a dir target; a killed run may
leave temp files in state_dir. The later ones carry names no later run
reuses, so only the start-up clean-up removes them: the agent here has every
job disabled, so nothing else can. (The spool of early compression is an
O_TMPFILE without a name: a kill cannot leave it behind.)"""
import os
import signal
import subprocess
import time
import unittest

from harness import BIN, AgentTestCase, create_database

OLD = "20261201T000000Z"  # a second no later backup will have


class StartupCleanupTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.offsite = os.path.join(self.dir, "offsite")
        os.mkdir(self.offsite)
        self.metrics = os.path.join(self.dir, "metrics")
        os.mkdir(self.metrics)

    def configure(self, jobs_enabled):
        off = "" if jobs_enabled else "enabled = false;"
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; backup = {{ {off} }}; }}',
            defaults=(f'checkpoint = {{ {off} }}; analyze = {{ {off} }}; vacuum = {{ {off} }}; '
                      f'health = {{ {off} }}; upload = {{ target = "nas"; }};'),
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.offsite}"; }}',
            extra=f'metrics = {{ textfile = "{self.metrics}/sqlprodd.prom"; }};')

    def plant(self, path, data=b"left by a killed run"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def kill_a_backup(self):
        """A real one-off backup, killed once its temp copy exists."""
        process = subprocess.Popen([BIN, "-c", self.config_path, "backup", "app"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(process)
        directory = os.path.join(self.backup_dir, "app")
        self.wait_for(lambda: os.path.isdir(directory) and any(
            "sqlprodd-tmp" in f for f in os.listdir(directory)), what="the backup's temp file")
        process.send_signal(signal.SIGKILL)
        process.wait()
        return [os.path.join(directory, f) for f in os.listdir(directory)
                if "sqlprodd-tmp" in f]

    def test_agent_removes_what_killed_runs_left_before_any_job_and_nothing_else(self):
        self.configure(jobs_enabled=True)
        create_database(self.db_path(), rows=300000, payload=400)  # a few seconds of work
        # A complete backup (archive and manifest) is not a leftover.
        self.run_cli("backup", "app", check=0)
        [complete] = self.archives()
        time.sleep(1.1)  # archive names have one-second resolution
        killed = self.kill_a_backup()
        self.assertEqual(self.archives(), [complete], "the killed backup left no archive")
        self.assertEqual(len([f for f in os.listdir(os.path.join(self.backup_dir, "app"))
                              if f.endswith(".json")]), 1, "nor a manifest")
        local = os.path.join(self.backup_dir, "app")
        remote = os.path.join(self.offsite, "app")
        leftovers = killed + [
            # backup killed while compressing, and between archive and manifest
            self.plant(os.path.join(local, f"app-{OLD}.db.gz.sqlprodd-tmp")),
            self.plant(os.path.join(local, f"app-{OLD}.db.gz.json.sqlprodd-tmp")),
            self.plant(os.path.join(local, "app-20261201T000001Z.db.gz")),
            self.plant(os.path.join(local, "app-copy.db.sqlprodd-tmp-journal")),
            # upload killed while copying the archive, then the manifest
            self.plant(os.path.join(remote, f"app-{OLD}.db.gz.sqlprodd-tmp")),
            self.plant(os.path.join(remote, f"app-{OLD}.db.gz.json.sqlprodd-tmp")),
            # a temp file of a killed run in state_dir
            self.plant(os.path.join(self.state_dir, "state.json.sqlprodd-tmp")),
            # the metrics textfile's temp file
            self.plant(os.path.join(self.metrics, "sqlprodd.prom.sqlprodd-tmp")),
        ]
        unrelated = [
            self.plant(os.path.join(local, "NOTES.txt")),
            self.plant(os.path.join(remote, "README")),
            self.plant(os.path.join(self.state_dir, "operator-notes.txt")),
            # another database's directory on a shared target is not ours
            self.plant(os.path.join(self.offsite, "other", f"other-{OLD}.db.gz.sqlprodd-tmp")),
            self.plant(os.path.join(self.metrics, "node.prom")),
        ]
        unrelated += [os.path.join(local, complete), os.path.join(local, complete + ".json")]
        for path in leftovers:
            self.assertTrue(os.path.exists(path), path)

        # Nothing but the start-up removes them: the jobs that would run are
        # off, and the upload (of the complete backup) only writes its own names.
        self.configure(jobs_enabled=False)
        agent = self.start_agent()
        self.wait_for(lambda: "started" in self.agent_log(), what="the agent to start")
        left = [path for path in leftovers if os.path.lexists(path)]
        self.assertEqual(left, [], f"leftovers of killed runs still there once the agent "
                                   f"started\n{self.agent_log()}")
        for path in unrelated:
            self.assertTrue(os.path.exists(path), f"{path} was removed")
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0)
        log = self.agent_log()
        self.assertNotIn("Sanitizer", log)
        started = log.index("started")
        for what in ("removed " + os.path.join(local, f"app-{OLD}.db.gz.sqlprodd-tmp"),
                     "left by an interrupted upload from dir " + self.offsite,
                     "left by an interrupted run in " + self.state_dir):
            self.assertIn(what, log)
            self.assertLess(log.index(what), started, f"{what!r} logged after the start")
        self.assertEqual(self.archives(), [complete])
        result = self.run_cli("restore", "app", "--to", os.path.join(self.dir, "r.db"), check=0)
        self.assertIn("sha256 matches the manifest", result.stdout)


if __name__ == "__main__":
    unittest.main()

"""Off-site copies to a `dir` target (a mounted NAS path): queue, retention,
remote listing and restore, with the same layout as S3."""
import json
import os
import shutil
import sqlite3
import stat
import time
import unittest

from harness import AgentTestCase, create_database, row_count


class DirTargetTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.offsite = os.path.join(self.dir, "offsite")
        os.mkdir(self.offsite)
        create_database(self.db_path(), rows=2000)
        self.configure()

    def configure(self, keep="daily = 30;", offsite=None):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'upload = {{ target = "nas"; keep = {{ {keep} }}; }}; }}',
            targets=f'{{ name = "nas"; type = "dir"; path = "{offsite or self.offsite}"; }}')

    def remote_files(self):
        directory = os.path.join(self.offsite, "app")
        return sorted(os.listdir(directory)) if os.path.isdir(directory) else []

    def test_backup_is_queued_then_uploaded_with_its_manifest(self):
        self.run_cli("backup", "app", check=0)
        self.assertEqual(self.status_json()["databases"][0]["uploads_pending"], 1)
        self.run_cli("upload", "app", check=0)
        [archive] = self.archives()
        self.assertEqual(self.remote_files(), [archive, archive + ".json"])
        local = open(os.path.join(self.backup_dir, "app", archive), "rb").read()
        remote = open(os.path.join(self.offsite, "app", archive), "rb").read()
        self.assertEqual(local, remote)
        self.assertEqual(self.status_json()["databases"][0]["uploads_pending"], 0)
        listing = json.loads(self.run_cli("backups", "app", "--remote", "--json", check=0).stdout)
        self.assertEqual([b["id"] for b in listing], [archive[4:20]])
        self.assertTrue(listing[0]["has_manifest"])

    def test_target_down_keeps_local_copy_and_queue_until_it_is_back(self):
        # The "mount" is down: its parent is a plain file, so nothing can be written
        # there, not even by root.
        mount = os.path.join(self.dir, "mnt")
        open(mount, "w").close()
        offsite = os.path.join(mount, "offsite")
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'backup = {{ keep = {{ last = 1; }}; }}; '
            f'upload = {{ target = "nas"; keep = {{ last = 10; }}; }}; }}',
            targets=f'{{ name = "nas"; type = "dir"; path = "{offsite}"; }}')
        for _ in range(3):
            self.run_cli("backup", "app", check=0)
            time.sleep(1.05)
        result = self.run_cli("upload", "app", check=1)
        self.assertRegex(result.stderr, r"\d uploads? failed, 3 pending")
        # keep last = 1, but nothing waiting for upload may be pruned.
        self.assertEqual(len(self.archives()), 3)
        self.assertEqual(self.status_json()["databases"][0]["uploads_pending"], 3)
        # The mount is back: the backlog drains.
        os.unlink(mount)
        os.makedirs(offsite)
        self.run_cli("upload", "app", check=0)
        self.assertEqual(self.status_json()["databases"][0]["uploads_pending"], 0)
        self.assertEqual(len(os.listdir(os.path.join(offsite, "app"))), 6)
        # Uploaded now, so the next backup's retention may prune the older local copies.
        time.sleep(1.05)
        self.run_cli("backup", "app", check=0)
        self.assertEqual(len(self.archives()), 1)  # last = 1: only the new one (still queued)

    def test_remote_retention_and_restore_from_remote(self):
        self.configure(keep="last = 2;")
        for _ in range(3):
            self.run_cli("backup", "app", check=0)
            self.run_cli("upload", "app", check=0)
            time.sleep(1.05)
        # Two archives, two manifests, and the record of retention's deletion
        # that the oldest kept backup links to (sqlprodd verify).
        self.assertEqual(len(self.remote_files()), 5, self.remote_files())
        self.assertEqual(len(os.listdir(os.path.join(self.offsite, "app", "pruned"))), 1)
        target = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", target, "--from", "remote", check=0)
        self.assertIn("(remote)", result.stdout)
        self.assertEqual(row_count(target), 2000)
        self.assertEqual(stat.S_IMODE(os.stat(target).st_mode), 0o600)
        self.assertEqual([f for f in os.listdir(self.dir) if "sqlprodd-tmp" in f], [])

    def test_remote_retention_keeps_a_queued_upload_with_a_backup_dir_ending_in_slash(self):
        # An upload that stopped between the archive and its manifest leaves the
        # archive alone on the target; while the upload is still queued here,
        # remote retention must not delete it, however old it is, and however
        # backup.dir is spelled.
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'backup = {{ dir = "{self.backup_dir}/"; }}; '
            f'upload = {{ target = "nas"; keep = {{ last = 1; }}; }}; }}',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.offsite}"; }}')
        self.run_cli("backup", "app", check=0)
        [archive] = self.archives()
        # Two days old (past the grace an upload under way gets), still queued.
        old = "app-20200101T000000Z.db.gz"
        local = os.path.join(self.backup_dir, "app")
        os.rename(os.path.join(local, archive), os.path.join(local, old))
        os.rename(os.path.join(local, archive + ".json"), os.path.join(local, old + ".json"))
        state = sqlite3.connect(os.path.join(self.state_dir, "state.db"))
        with state:
            [(queued,)] = state.execute("SELECT archive_path FROM upload_queue").fetchall()
            self.assertEqual(queued, os.path.join(local, archive))
            state.execute("UPDATE upload_queue SET archive_path = ?", (os.path.join(local, old),))
        state.close()
        os.makedirs(os.path.join(self.offsite, "app"))
        shutil.copy(os.path.join(local, old), os.path.join(self.offsite, "app", old))

        result = self.run_cli("prune", "app", check=0)
        self.assertEqual(self.remote_files(), [old], result.stderr)
        self.assertEqual(self.status_json()["databases"][0]["uploads_pending"], 1)
        # The queued upload completes it: archive and manifest, kept by keep = { last = 1; }.
        self.run_cli("upload", "app", check=0)
        self.assertEqual(self.remote_files(), [old, old + ".json"])


if __name__ == "__main__":
    unittest.main()

"""Data guards that no other test pinned down, found by the mutation check
(tests/mutation/): each test here fails when its guard is disabled.

- restore compares the archive's sha256 with the manifest: an archive that is
  valid gzip and a valid database, but not the one the manifest describes, is
  refused (the "damaged archive" tests corrupt the gzip stream, which gunzip
  refuses before any checksum is compared);
- a backup whose copy fails verification is not kept (the "corrupt source"
  test in test_backup.py is refused by the copy itself, before verification);
- restore runs integrity_check on what it decompressed, even when the
  checksum matches;
- the agent's start-up clean-up removes temp files and manifest-less archives
  by itself (a backup cleans the directory too, so a test that runs one after
  the restart cannot tell);
- prune keeps the newest verified backup, as the manifests on disk say, and
  keeps everything when it cannot read the upload queue.
"""
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import time
import unittest

from harness import AgentTestCase, create_database
from test_restore_live import corrupt_index


def damage_one_index_entry(path, key):
    """Changes the last byte of `key` where it is stored in an index leaf page
    (page type 0x0a), leaving the table's copy of it alone."""
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(path, "r+b") as f:
        data = f.read()
        at = data.find(key)
        while at >= 0:
            page = at // page_size
            header = page * page_size + (100 if page == 0 else 0)
            if data[header] == 0x0A:
                f.seek(at + len(key) - 1)
                f.write(b"y")
                return
            at = data.find(key, at + 1)
    raise AssertionError(f"{key!r} is in no index page of {path}")


class DataGuardsTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        create_database(self.db_path(), rows=2000)

    def backup_ids(self):
        listing = json.loads(self.run_cli("backups", "app", "--json", check=0).stdout)
        return {b["id"]: b["archive"] for b in listing}

    def test_restore_refuses_a_valid_archive_that_is_not_the_one_its_manifest_names(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        self.run_cli("backup", "app", check=0)
        time.sleep(1.1)
        create_database(self.db_path(), rows=50)  # different content, same schema
        self.run_cli("backup", "app", check=0)
        backups = self.backup_ids()
        self.assertEqual(len(backups), 2)
        older, newer = sorted(backups)
        # The newer archive under the older one's name: gunzip and
        # integrity_check pass, only the manifest's sha256 tells them apart.
        shutil.copyfile(backups[newer], backups[older])
        target = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", target, "--backup", older, check=1)
        self.assertIn("does not match its manifest", result.stderr)
        self.assertNotIn("sha256 matches the manifest", result.stdout)
        self.assertFalse(os.path.exists(target), "nothing is written for a mismatched archive")
        self.assertEqual([f for f in os.listdir(self.dir) if "sqlprodd-tmp" in f], [])

    def test_restore_refuses_an_archive_that_fails_integrity_check_even_with_its_checksum(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        self.run_cli("backup", "app", check=0)
        [(backup_id, archive)] = self.backup_ids().items()
        # A damaged database archived as if it were sound, with a manifest
        # that matches it: only integrity_check can tell.
        damaged = os.path.join(self.dir, "damaged.db")
        shutil.copyfile(self.db_path(), damaged)
        corrupt_index(damaged)
        with open(damaged, "rb") as source, gzip.open(archive, "wb") as out:
            shutil.copyfileobj(source, out)
        with open(archive, "rb") as f:
            data = f.read()
        with open(archive + ".json") as f:
            manifest = json.load(f)
        manifest["archive_sha256"] = hashlib.sha256(data).hexdigest()
        manifest["archive_bytes"] = len(data)
        with open(archive + ".json", "w") as f:
            json.dump(manifest, f)
        target = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", target, "--backup", backup_id, check=1)
        self.assertIn("failed integrity_check", result.stderr)
        self.assertFalse(os.path.exists(target), "nothing is written for a damaged database")
        self.assertEqual([f for f in os.listdir(self.dir) if "sqlprodd-tmp" in f], [])

    def test_backup_whose_copy_fails_integrity_check_is_not_kept(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; '
                          f'backup = {{ verify = "integrity"; }}; }}')
        self.run_cli("backup", "app", check=0)
        good = self.archives()
        time.sleep(1.1)
        # An index entry that no longer matches its row, in sort order and
        # well-formed: the copy (VACUUM INTO copies index b-trees as they are)
        # succeeds, and only the copy's integrity_check can refuse it.
        damage_one_index_entry(self.db_path(), b"item-1234-" + b"x" * 34)
        result = self.run_cli("backup", "app", check=1)
        self.assertRegex(result.stderr, r"the copy failed integrity_check")
        self.assertEqual(self.archives(), good, "a backup that failed verification was kept")

    def test_agent_start_removes_temp_files_and_archives_without_manifest(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        self.run_cli("backup", "app", check=0)
        [archive] = self.archives()
        directory = os.path.join(self.backup_dir, "app")
        # What a backup killed at each step leaves: a temp copy, a temp
        # archive, and an archive renamed into place whose manifest was never
        # written (its name is a second later, so it is not the kept one).
        stamp = archive[len("app-"):-len(".db.gz")]
        later = stamp[:-3] + "%02dZ" % ((int(stamp[-3:-1]) + 1) % 60)
        orphan = os.path.join(directory, f"app-{later}.db.gz")
        shutil.copyfile(os.path.join(directory, archive), orphan)
        leftovers = [os.path.join(directory, "app.copy.sqlprodd-tmp"),
                     os.path.join(directory, f"app-{later}.db.gz.sqlprodd-tmp")]
        for path in leftovers:
            with open(path, "wb") as f:
                f.write(b"half a backup")
        # No backup may run: only the start-up clean-up can remove them.
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; '
                          f'backup = {{ enabled = false; }}; }}')
        agent = self.start_agent()
        self.wait_for(lambda: "started" in self.agent_log(), what="the agent's start")
        self.stop_agent(agent)
        for path in leftovers + [orphan]:
            self.assertFalse(os.path.exists(path), f"{path} left after the agent's start")
            self.assertIn(f"removed {path} left by an interrupted backup", self.agent_log())
        self.assertEqual(self.archives(), [archive], "the complete backup is kept")
        self.assertTrue(os.path.exists(os.path.join(directory, archive + ".json")))

    def test_prune_keeps_the_newest_verified_backup_whatever_the_rules(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; '
                          f'backup = {{ keep = {{ last = 1; }}; }}; }}')
        self.run_cli("backup", "app", check=0)
        [verified] = self.archives()
        # Two newer backups whose manifests say they were not verified (as a
        # backup taken with verification failing, or by an older version).
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; '
                          f'backup = {{ keep = {{ last = 10; }}; }}; }}')
        for _ in range(2):
            time.sleep(1.1)
            self.run_cli("backup", "app", check=0)
        directory = os.path.join(self.backup_dir, "app")
        for name in self.archives()[1:]:
            path = os.path.join(directory, name + ".json")
            with open(path) as f:
                manifest = json.load(f)
            manifest["verification"]["verified"] = False
            with open(path, "w") as f:
                json.dump(manifest, f)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; '
                          f'backup = {{ keep = {{ last = 1; }}; }}; }}')
        self.run_cli("prune", "app", check=0)
        archives = self.archives()
        self.assertIn(verified, archives, "the newest verified backup was pruned")
        self.assertEqual(len(archives), 2, "last = 1 keeps the newest, plus the newest verified")

    def test_prune_deletes_nothing_when_the_upload_queue_cannot_be_read(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; '
                          f'backup = {{ keep = {{ last = 10; }}; }}; }}')
        for _ in range(3):
            self.run_cli("backup", "app", check=0)
            time.sleep(1.05)
        kept = self.archives()
        self.assertEqual(len(kept), 3)
        # A damaged state database: prune cannot tell which archives still
        # wait for upload, so it must keep them all.
        state = sqlite3.connect(os.path.join(self.state_dir, "state.db"))
        state.execute("ALTER TABLE upload_queue RENAME TO upload_queue_damaged")
        state.commit()
        state.close()
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; '
                          f'backup = {{ keep = {{ last = 1; }}; }}; }}')
        self.run_cli("prune", "app", check=0)
        self.assertEqual(self.archives(), kept, "an unreadable upload queue cost backups")


if __name__ == "__main__":
    unittest.main()

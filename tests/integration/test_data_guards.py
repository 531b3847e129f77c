"""Data guards that no other test pinned down, found by the mutation check
(tests/mutation/): each test here fails when its guard is disabled.

- a backup whose copy fails verification is not kept (the "corrupt source"
  test in test_backup.py is refused by the copy itself, before verification);
- restore checks what it decompressed (quick_check, integrity_check with
  --check integrity), even when the checksum matches (test_restore_checksum.py
  has the checksum itself);
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
from test_printed_fixes import corrupt_index_keys
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

    def archive_as_if_sound(self, archive, damage):
        """Replaces `archive` with a gzip of a damaged copy of the database
        and gives its manifest the matching checksum: only the restore's
        own check of the decompressed file can tell."""
        damaged = os.path.join(self.dir, "damaged.db")
        shutil.copyfile(self.db_path(), damaged)
        damage(damaged)
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

    def assert_refused(self, backup_id, words, *options):
        target = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", target, "--backup", backup_id, *options,
                              check=1)
        self.assertIn(words, result.stderr)
        self.assertFalse(os.path.exists(target), "nothing is written for a damaged database")
        self.assertEqual([f for f in os.listdir(self.dir) if "sqlprodd-tmp" in f], [])

    def test_restore_refuses_an_archive_that_fails_its_check_even_with_its_checksum(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        self.run_cli("backup", "app", check=0)
        [(backup_id, archive)] = self.backup_ids().items()
        # A page torn on its way: quick_check, the default, refuses it.
        self.archive_as_if_sound(archive, corrupt_index)
        self.assert_refused(backup_id, "the restored copy failed quick_check")
        # Index keys that no longer match their rows: only integrity_check.
        self.archive_as_if_sound(archive, corrupt_index_keys)
        self.assert_refused(backup_id, "the restored copy failed integrity_check",
                            "--check", "integrity")

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

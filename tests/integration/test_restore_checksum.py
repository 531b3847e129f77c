"""Restore's sha256 check, on its own: the archive is a valid gzip of a valid
database, so gunzip and integrity_check accept it, but it is not the archive
the manifest describes. Only the comparison with the manifest's sha256 can
refuse it (the "damaged archive" tests in test_cli.py and
test_backup_zstd.py flip bytes, which gunzip refuses first).

Two ways a valid but wrong archive appears: another backup's archive under
this one's name (a copy script that mixed up two files), and the right
database compressed again (at another level: other bytes). Both from the
local backup directory and from an S3 target (tests/s3/server.js, written
with the aws CLI). Restore must exit 1 naming the archive and both
checksums, and leave nothing at --to nor beside it."""
import gzip
import hashlib
import json
import os
import sqlite3
import unittest

from harness import BUCKET, S3TestCase, create_database


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def recompress(path, level):
    """The same database, gzip'ed again at `level`: valid, other bytes."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(gzip.compress(data, compresslevel=level, mtime=0))


class RestoreChecksumTest(S3TestCase):
    def setUp(self):
        super().setUp()
        create_database(self.db_path(), rows=2000)
        self.server = self.start_server()
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'upload = {{ target = "offsite"; keep = {{ last = 10; }}; }}; }}',
            targets=self.s3_target(self.server.url))
        # Two backups with different rows: each archive is valid on its own.
        self.run_cli("backup", "app", check=0)
        self.older_id = self.backup_ids()[0]
        db = sqlite3.connect(self.db_path())
        with db:
            db.execute("DELETE FROM items WHERE id % 2 = 0")
        db.close()
        self.wait_for(lambda: self.run_cli("backup", "app").returncode == 0, timeout=5,
                      what="a second backup (names have one-second resolution)")
        ids = self.backup_ids()
        self.assertEqual(len(ids), 2)
        self.newer_id = ids[0]
        self.run_cli("upload", "app", check=0, env=self.env)
        self.to = os.path.join(self.dir, "restored.db")

    def backup_ids(self):
        listing = json.loads(self.run_cli("backups", "app", "--json", check=0).stdout)
        return [b["id"] for b in listing]  # newest first

    def local_archive(self, backup_id):
        return os.path.join(self.backup_dir, "app", f"app-{backup_id}.db.gz")

    def manifest_sha256(self, backup_id):
        with open(self.local_archive(backup_id) + ".json") as f:
            return json.load(f)["archive_sha256"]

    def put_remote(self, backup_id, path):
        self.aws_cli("s3", "cp", "--only-show-errors", path,
                     f"s3://{BUCKET}/db/app/app-{backup_id}.db.gz")

    def assert_refused(self, result, archive_name, actual, expected):
        self.assertEqual(result.returncode, 1, f"restore of a mismatched archive exited "
                                               f"{result.returncode}\nstdout: {result.stdout}\n"
                                               f"stderr: {result.stderr}")
        self.assertNotIn("sha256 matches", result.stdout)
        self.assertNotIn("Sanitizer", result.stderr, "exit 1 from ASan is not a refusal")
        self.assertIn("does not match its manifest", result.stderr)
        self.assertIn(archive_name, result.stderr)
        self.assertIn(actual, result.stderr, "the archive's own sha256")
        self.assertIn(expected, result.stderr, "the sha256 the manifest records")
        self.assertFalse(os.path.lexists(self.to), "a file was written at --to")
        beside = [f for f in os.listdir(self.dir) if f.startswith("restored.db")]
        self.assertEqual(beside, [], "temp files left beside --to")

    def assert_good_archive_still_restores(self, *args):
        """The refusal is about that archive, not restore: the other backup works."""
        result = self.run_cli("restore", "app", "--to", self.to, *args, env=self.env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("sha256 matches the manifest", result.stdout)

    # ---------------------------------------------------------------------------------------

    def test_local_archive_swapped_for_another_backup_is_refused(self):
        older, newer = self.local_archive(self.older_id), self.local_archive(self.newer_id)
        with open(older, "rb") as f:
            data = f.read()
        with open(newer, "wb") as f:
            f.write(data)  # newer's name and manifest, older's archive
        result = self.run_cli("restore", "app", "--to", self.to, "--backup", self.newer_id,
                              "--from", "local")
        self.assert_refused(result, newer, sha256_of(older), self.manifest_sha256(self.newer_id))
        self.assert_good_archive_still_restores("--backup", self.older_id, "--from", "local")

    def test_local_archive_compressed_again_at_another_level_is_refused(self):
        archive = self.local_archive(self.newer_id)
        recompress(archive, 1)
        self.assertNotEqual(sha256_of(archive), self.manifest_sha256(self.newer_id))
        result = self.run_cli("restore", "app", "--to", self.to, "--from", "local")
        self.assert_refused(result, archive, sha256_of(archive),
                            self.manifest_sha256(self.newer_id))

    def test_remote_archive_swapped_for_another_backup_is_refused(self):
        self.put_remote(self.newer_id, self.local_archive(self.older_id))
        result = self.run_cli("restore", "app", "--to", self.to, "--backup", self.newer_id,
                              "--from", "remote", env=self.env)
        self.assert_refused(result, f"app/app-{self.newer_id}.db.gz",
                            sha256_of(self.local_archive(self.older_id)),
                            self.manifest_sha256(self.newer_id))
        self.assert_good_archive_still_restores("--backup", self.older_id, "--from", "remote")

    def test_remote_archive_compressed_again_at_another_level_is_refused(self):
        copy = os.path.join(self.dir, "recompressed.gz")
        with open(self.local_archive(self.newer_id), "rb") as f, open(copy, "wb") as out:
            out.write(f.read())
        recompress(copy, 9)
        self.assertNotEqual(sha256_of(copy), self.manifest_sha256(self.newer_id))
        self.put_remote(self.newer_id, copy)
        os.unlink(copy)
        result = self.run_cli("restore", "app", "--to", self.to, "--from", "remote",
                              env=self.env)
        self.assert_refused(result, f"app/app-{self.newer_id}.db.gz",
                            sha256_of_bytes_of_remote(self), self.manifest_sha256(self.newer_id))


def sha256_of_bytes_of_remote(test):
    """The sha256 of what the target holds now, read back with the aws CLI."""
    copy = os.path.join(test.dir, "fetched.gz")
    test.aws_cli("s3", "cp", "--only-show-errors",
                 f"s3://{BUCKET}/db/app/app-{test.newer_id}.db.gz", copy)
    try:
        return sha256_of(copy)
    finally:
        os.unlink(copy)


if __name__ == "__main__":
    unittest.main()

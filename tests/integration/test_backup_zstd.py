"""backup.compress = "zstd": archives NAME-STAMP.db.zst with "compression":
"zstd" in the manifest, that the zstd tool reads back as the database, that
`backups` lists, retention prunes and `restore` restores, locally and from a
target, next to gzip backups of the same database."""
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
import unittest

from harness import AgentTestCase, create_database, row_count


class ZstdBackupTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.offsite = os.path.join(self.dir, "offsite")
        os.mkdir(self.offsite)
        create_database(self.db_path(), rows=3000)

    def configure(self, compress, keep="last = 10;", upload=True):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'backup = {{ compress = "{compress}"; keep = {{ {keep} }}; }}; '
            + ('upload = { target = "nas"; keep = { last = 10; }; }; }' if upload else '}'),
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.offsite}"; }}')

    def files(self, suffix):
        directory = os.path.join(self.backup_dir, "app")
        return sorted(f for f in os.listdir(directory) if f.endswith(suffix))

    def test_zstd_archive_is_named_described_and_readable_by_the_zstd_tool(self):
        self.configure("zstd")
        self.run_cli("backup", "app", check=0)
        [archive] = self.files(".db.zst")
        self.assertRegex(archive, r"^app-\d{8}T\d{6}Z\.db\.zst$")
        self.assertEqual(self.files(".db.gz"), [])
        path = os.path.join(self.backup_dir, "app", archive)
        with open(path, "rb") as f:
            data = f.read()
        self.assertEqual(data[:4], b"\x28\xb5\x2f\xfd")
        with open(path + ".json") as f:
            manifest = json.load(f)
        self.assertEqual(manifest["compression"], "zstd")
        self.assertEqual(manifest["archive"], archive)
        self.assertEqual(manifest["archive_sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(manifest["archive_bytes"], len(data))
        if shutil.which("zstd"):
            copy = os.path.join(self.dir, "unzstd.db")
            subprocess.run(["zstd", "-q", "-d", path, "-o", copy], check=True)
            self.assertEqual(row_count(copy), 3000)
            db = sqlite3.connect(copy)
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            db.close()

    def test_gzip_and_zstd_backups_are_listed_and_restored_locally_and_remotely(self):
        self.configure("gzip")
        self.run_cli("backup", "app", check=0)
        time.sleep(1.05)
        db = sqlite3.connect(self.db_path())
        db.execute("INSERT INTO items (name, amount, created) VALUES ('after-gzip', 1, 0)")
        db.commit()
        db.close()
        self.configure("zstd")
        self.run_cli("backup", "app", check=0)
        [gz] = self.files(".db.gz")
        [zst] = self.files(".db.zst")
        listing = json.loads(self.run_cli("backups", "app", "--json", check=0).stdout)
        self.assertEqual([b["id"] for b in listing], [zst[4:20], gz[4:20]])

        restored = os.path.join(self.dir, "restored-zstd.db")
        self.run_cli("restore", "app", "--to", restored, "--from", "local", check=0)
        self.assertEqual(row_count(restored), 3001)
        restored_gz = os.path.join(self.dir, "restored-gzip.db")
        self.run_cli("restore", "app", "--to", restored_gz, "--backup", gz[4:20], "--from", "local",
                     check=0)
        self.assertEqual(row_count(restored_gz), 3000)

        self.run_cli("upload", "app", check=0)
        self.assertEqual(sorted(os.listdir(os.path.join(self.offsite, "app"))),
                         sorted([gz, gz + ".json", zst, zst + ".json"]))
        remote = json.loads(self.run_cli("backups", "app", "--remote", "--json", check=0).stdout)
        self.assertEqual([b["id"] for b in remote], [zst[4:20], gz[4:20]])
        from_remote = os.path.join(self.dir, "remote-zstd.db")
        self.run_cli("restore", "app", "--to", from_remote, "--from", "remote", check=0)
        self.assertEqual(row_count(from_remote), 3001)

    def test_a_damaged_zstd_archive_is_refused_and_retention_prunes_zstd(self):
        self.configure("zstd", keep="last = 1;", upload=False)
        self.run_cli("backup", "app", check=0)
        time.sleep(1.05)
        self.run_cli("backup", "app", check=0)
        [archive] = self.files(".db.zst")  # keep last = 1 pruned the older one
        self.assertEqual(len(self.files(".json")), 1)
        path = os.path.join(self.backup_dir, "app", archive)
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            f.write(b"\x00" * 64)
        restored = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", restored, "--from", "local", check=1)
        self.assertRegex(result.stderr, r"corrupt|does not match")
        self.assertFalse(os.path.exists(restored))

    def test_an_unknown_compress_value_is_a_config_error(self):
        self.configure("lz4")
        result = self.run_cli("check", check=2)
        self.assertIn("compress", result.stderr)


if __name__ == "__main__":
    unittest.main()

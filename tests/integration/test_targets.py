"""Off-site copies to an S3 target, end to end with the built binary, against
the signature-checking S3 test server (tests/s3/server.js) and Debian's aws
CLI: what `sqlprodd upload` puts there the CLI lists and downloads intact,
a backup that `aws s3 cp` put there in our layout is restored by
`sqlprodd restore --from remote`, and a wrong secret fails clearly while the
upload stays queued. Skipped only when node is not installed."""
import json
import os
import shutil
import stat
import time
import unittest

from harness import ACCESS_KEY, BUCKET, SECRET_KEY, S3TestCase, create_database, row_count


class S3TargetTest(S3TestCase):
    def setUp(self):
        super().setUp()
        self.start_server()
        create_database(self.db_path(), rows=3000)
        self.configure()

    def configure(self, credentials_file=None):
        credentials = f'credentials_file = "{credentials_file}";' if credentials_file else ""
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; upload = {{ target = "offsite"; }}; }}',
            targets=self.s3_target(self.server.url, credentials))

    def test_what_sqlprodd_uploads_the_aws_cli_lists_and_downloads_intact(self):
        self.run_cli("backup", "app", check=0, env=self.env)
        self.run_cli("upload", "app", check=0, env=self.env)
        [archive] = self.archives()
        local = os.path.join(self.backup_dir, "app", archive)
        listing = self.aws_cli("s3", "ls", "--recursive", f"s3://{BUCKET}/db/app/").stdout
        self.assertIn(f"db/app/{archive}\n", listing)
        self.assertIn(f"db/app/{archive}.json\n", listing)
        copy = os.path.join(self.dir, "downloaded.db.gz")
        self.aws_cli("s3", "cp", "--only-show-errors", f"s3://{BUCKET}/db/app/{archive}", copy)
        with open(local, "rb") as a, open(copy, "rb") as b:
            self.assertEqual(a.read(), b.read())
        with open(local + ".json") as f:
            manifest_sha256 = json.load(f)["archive_sha256"]
        head = json.loads(self.aws_cli("s3api", "head-object", "--bucket", BUCKET,
                                       "--key", f"db/app/{archive}").stdout)
        self.assertEqual(head["Metadata"]["sha256"], manifest_sha256)
        # Every request sqlprodd made passed the server's signature check.
        requests = self.server.requests()
        self.assertTrue(requests)
        self.assertEqual({r["auth"] for r in requests}, {"ok"})

    def test_a_backup_the_aws_cli_put_in_our_layout_is_restored(self):
        self.run_cli("backup", "app", check=0)
        [archive] = self.archives()
        for name in (archive, archive + ".json"):
            self.aws_cli("s3", "cp", "--only-show-errors", os.path.join(self.backup_dir, "app", name),
                         f"s3://{BUCKET}/db/app/{name}")
        shutil.rmtree(os.path.join(self.backup_dir, "app"))
        target = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", target, "--from", "remote", check=0,
                              env=self.env)
        self.assertIn("(remote)", result.stdout)
        self.assertEqual(row_count(target), 3000)
        self.assertEqual(stat.S_IMODE(os.stat(target).st_mode), 0o600)
        listing = json.loads(self.run_cli("backups", "app", "--remote", "--json", check=0,
                                          env=self.env).stdout)
        self.assertEqual([b["id"] for b in listing], [archive[4:20]])

    def test_a_credentials_file_is_used_and_a_wrong_secret_keeps_the_upload_queued(self):
        credentials = os.path.join(self.dir, "offsite.credentials")
        with open(credentials, "w") as f:
            f.write(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                    f"aws_secret_access_key = {SECRET_KEY}wrong\n")
        os.chmod(credentials, 0o600)
        self.configure(credentials_file=credentials)
        self.run_cli("backup", "app", check=0)
        result = self.run_cli("upload", "app", check=1)
        self.assertIn("SignatureDoesNotMatch", result.stderr)
        self.assertIn("check the secret key", result.stderr)
        self.assertNotIn(SECRET_KEY, result.stderr + result.stdout)
        self.assertEqual(self.status_json()["databases"][0]["uploads_pending"], 1)
        self.assertEqual({r["auth"] for r in self.server.requests()}, {"SignatureDoesNotMatch"})

        with open(credentials, "w") as f:
            f.write(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                    f"aws_secret_access_key = {SECRET_KEY}\n")
        self.run_cli("upload", "app", check=0)
        self.assertEqual(self.status_json()["databases"][0]["uploads_pending"], 0)

        os.chmod(credentials, 0o644)
        time.sleep(1.05)  # archive names have one-second resolution
        self.run_cli("backup", "app", check=0)
        result = self.run_cli("upload", "app")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("(mode 0644, owner root:root) is accessible by others", result.stderr)


if __name__ == "__main__":
    unittest.main()

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
import subprocess
import time
import unittest

from harness import SOURCE_DIR, AgentTestCase, create_database, row_count

ACCESS_KEY = "SQLPRODDTESTACCESSKEY"
SECRET_KEY = "sqlprodd/Test+Secret/Key0123456789abcdefXYZ"
BUCKET = "sqlprodd-test"
SERVER_DIR = os.path.join(SOURCE_DIR, "tests", "s3")


def find_aws():
    """Debian's aws CLI first: PATH may hold another (pyenv, pip)."""
    if os.access("/usr/bin/aws", os.X_OK):
        return "/usr/bin/aws"
    return shutil.which("aws")


class S3Server:
    """tests/s3/server.js on a free port of 127.0.0.1."""

    def __init__(self):
        self.process = subprocess.Popen(["node", os.path.join(SERVER_DIR, "server.js"), "--port", "0"],
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if "http://127.0.0.1:" not in line:
            self.stop()
            raise RuntimeError(f"the S3 test server did not start: {line!r}")
        self.url = line[line.index("http://"):].strip()

    def requests(self):
        import urllib.request
        with urllib.request.urlopen(self.url + "/__admin/requests") as response:
            return json.load(response)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process.stdout.close()


@unittest.skipUnless(shutil.which("node"), "node is not installed: the S3 tests need Node.js 18+")
class S3TargetTest(AgentTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(os.path.join(SERVER_DIR, "node_modules", "s3rver")):
            raise AssertionError(f"run 'npm ci --prefix {SERVER_DIR}' first")
        cls.aws = find_aws()
        if not cls.aws:
            raise AssertionError("the aws CLI is not installed (Debian package awscli)")

    def setUp(self):
        super().setUp()
        self.server = S3Server()
        self.addCleanup(self.server.stop)
        create_database(self.db_path(), rows=3000)
        self.env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self.configure()

    def configure(self, credentials_file=None):
        credentials = f'credentials_file = "{credentials_file}";' if credentials_file else ""
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; upload = {{ target = "offsite"; }}; }}',
            targets=f'{{ name = "offsite"; type = "s3"; endpoint = "{self.server.url}"; '
                    f'region = "us-east-1"; bucket = "{BUCKET}"; prefix = "db/"; '
                    f'path_style = true; part_size = "5MB"; {credentials} }}')

    def aws_cli(self, *args, check=True, secret=SECRET_KEY):
        environment = {key: value for key, value in os.environ.items()
                       if not key.startswith("AWS_")}
        environment.update({
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_PAGER": "",
            # Newer CLIs send CRC trailers (aws-chunked) that s3rver cannot read.
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        })
        result = subprocess.run([self.aws, "--endpoint-url", self.server.url, *args],
                                capture_output=True, text=True, env=environment, timeout=300)
        if check:
            self.assertEqual(result.returncode, 0, f"aws {' '.join(args)}: {result.stderr}")
        return result

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
        self.assertIn("accessible by group or others", result.stderr)


if __name__ == "__main__":
    unittest.main()

"""`sqlprodd verify` (issue 20): every backup and replica object re-read, and
the chain of backups as tamper evidence, against the loopback S3 server.

Each test damages one thing the way an operator, a bug or an attacker would,
with the tools they would use (the aws CLI on the bucket, rm and dd on the
backup directory), and checks that verify exits 1 and names the object, and
that an intact repository, retention's own deletions included, verifies clean.
Skipped only when node is not installed."""
import json
import os
import re
import sqlite3
import time
import unittest

from harness import BUCKET, S3TestCase, create_database


class VerifyTest(S3TestCase):
    def setUp(self):
        super().setUp()
        self.db = self.db_path("app")
        create_database(self.db, rows=2000)
        self.start_server()
        self.last_second = 0

    def configure(self, upload=True, replicate=False, keep="last = 20;", remote_keep="last = 20;"):
        parts = [f'backup = {{ keep = {{ {keep} }}; }};']
        if upload:
            parts.append(f'upload = {{ target = "offsite"; keep = {{ {remote_keep} }}; }};')
        if replicate:
            parts.append('replicate = { target = "offsite"; interval = "1s"; };')
        self.write_config(f'{{ name = "app"; path = "{self.db}"; {" ".join(parts)} }}',
                          targets=self.s3_target(self.server.url))

    def take_backups(self, count, upload=True):
        """COUNT backups, each in a second of its own (ids are UTC seconds), each uploaded."""
        for _ in range(count):
            with sqlite3.connect(self.db) as connection:
                connection.execute("INSERT INTO items(name) VALUES (hex(randomblob(100)))")
            time.sleep(max(0.0, self.last_second + 1 - time.time()))
            self.run_cli("backup", "app", check=0, env=self.env)
            # The backup is named by a second no later than its end: a slow
            # start under load may name it after the second it began in.
            self.last_second = int(time.time())
            if upload:
                self.run_cli("upload", "app", check=0, env=self.env)

    def verify(self, *args, check=None):
        """`sqlprodd verify ARGS` with its temp files in a directory of the test's,
        which must be empty again afterwards."""
        temp = os.path.join(self.dir, "tmp")
        os.makedirs(temp, exist_ok=True)
        result = self.run_cli("verify", *args, check=check, env=dict(self.env, TMPDIR=temp))
        self.assertEqual(os.listdir(temp), [], "verify left temp files")
        return result

    def remote_keys(self):
        listing = self.aws_cli("s3api", "list-objects-v2", "--bucket", BUCKET, "--prefix", "db/")
        return sorted(o["Key"] for o in json.loads(listing.stdout or "{}").get("Contents", []))

    def remote_archives(self):
        return [k for k in self.remote_keys()
                if re.fullmatch(r"db/app/app-\d{8}T\d{6}Z\.db\.gz", k)]

    def fetch(self, key):
        path = os.path.join(self.dir, "fetched")
        self.aws_cli("s3", "cp", f"s3://{BUCKET}/{key}", path)
        with open(path, "rb") as f:
            return f.read()

    def store(self, key, data):
        path = os.path.join(self.dir, "stored")
        with open(path, "wb") as f:
            f.write(data)
        self.aws_cli("s3", "cp", path, f"s3://{BUCKET}/{key}")

    def test_a_good_repository_verifies_clean_with_and_without_data(self):
        self.configure()
        self.take_backups(3)
        result = self.verify(check=0)
        self.assertRegex(result.stdout, r"app\s+local\s+3 backups.*: ok")
        self.assertRegex(result.stdout, r"app\s+remote\s+3 backups.*: ok")
        result = self.verify("--data", "--json", check=0)
        sides = {side["side"]: side for side in json.loads(result.stdout)}
        for side in ("local", "remote"):
            self.assertTrue(sides[side]["ok"], sides[side])
            self.assertEqual(sides[side]["backups"], 3)
            self.assertEqual(sides[side]["problems"], [])
            self.assertGreater(sides[side]["bytes_read"], 0)

    def test_a_flipped_byte_in_a_remote_archive_is_named(self):
        self.configure()
        self.take_backups(3)
        victim = self.remote_archives()[1]
        data = bytearray(self.fetch(victim))
        data[len(data) // 2] ^= 0x01
        self.store(victim, bytes(data))
        result = self.verify("--remote", "--data", check=1)
        problems = [line for line in result.stdout.splitlines() if " PROBLEM " in line]
        self.assertEqual(len(problems), 1, result.stdout)
        self.assertIn(victim.removeprefix("db/"), problems[0])
        self.assertIn("its SHA-256 is", problems[0])
        # The local copy is intact: only the remote side is wrong.
        self.verify("--local", "--data", check=0)

    def test_an_archive_cut_short_is_found_without_reading_data(self):
        self.configure()
        self.take_backups(1)
        victim = self.remote_archives()[0]
        self.store(victim, self.fetch(victim)[:-10])
        result = self.verify("--remote", check=1)
        self.assertRegex(result.stdout,
                         rf"PROBLEM {re.escape(victim.removeprefix('db/'))}: the archive is "
                         r"\d+ bytes, its manifest says \d+")

    def test_a_backup_deleted_from_the_middle_is_named_on_both_sides(self):
        self.configure()
        self.take_backups(4)
        archives = self.remote_archives()
        middle = re.search(r"app-(\w+)\.db\.gz", archives[1]).group(1)
        self.aws_cli("s3", "rm", f"s3://{BUCKET}/{archives[1]}")
        self.aws_cli("s3", "rm", f"s3://{BUCKET}/{archives[1]}.json")
        result = self.verify("--remote", check=1)
        self.assertRegex(result.stdout, rf"PROBLEM .*backup {middle} is missing")
        self.assertRegex(result.stdout, r"app\s+remote\s+3 backups.*: 1 PROBLEM")

        local = os.path.join(self.backup_dir, "app", f"app-{middle}.db.gz")
        os.unlink(local + ".json")
        os.unlink(local)
        result = self.verify("--local", check=1)
        self.assertRegex(result.stdout, rf"PROBLEM .*backup {middle} is missing")

    def test_an_altered_manifest_is_named(self):
        self.configure()
        self.take_backups(2)
        victim = self.remote_archives()[0] + ".json"
        manifest = json.loads(self.fetch(victim))
        manifest["fingerprint"]["rows"] += 1
        self.store(victim, json.dumps(manifest, indent=2).encode())
        result = self.verify("--remote", check=1)
        self.assertIn(f"{victim.removeprefix('db/')}: manifest of backup", result.stdout)
        self.assertIn("was altered", result.stdout)

    def test_a_manifest_swapped_for_another_backups_is_named(self):
        """The manifest of one backup copied over another's, archive and all:
        each is self-consistent, the chain is not."""
        self.configure()
        self.take_backups(3)
        archives = self.remote_archives()
        for suffix in ("", ".json"):
            self.store(archives[1] + suffix, self.fetch(archives[0] + suffix))
        result = self.verify("--remote", check=1)
        self.assertIn("PROBLEM", result.stdout)
        self.assertIn(archives[1].removeprefix("db/") + ".json", result.stdout)

    def test_retention_deletions_are_recorded_and_not_reported(self):
        self.configure(keep="last = 2;", remote_keep="last = 2;")
        self.take_backups(4)
        self.assertEqual(len(self.remote_archives()), 2)
        result = self.verify("--json", check=0)
        for side in json.loads(result.stdout):
            self.assertTrue(side["ok"], side)
            self.assertEqual(side["backups"], 2)
            # Only the record the oldest kept backup links to is kept.
            self.assertEqual(side["deletion_records"], 1, side)
        # A deletion behind retention's back still shows.
        oldest = self.remote_archives()[0]
        self.aws_cli("s3", "rm", f"s3://{BUCKET}/{oldest}")
        self.aws_cli("s3", "rm", f"s3://{BUCKET}/{oldest}.json")
        self.verify("--remote", check=1)

    def test_a_target_configured_after_the_first_backups_starts_its_chain_clean(self):
        self.configure(upload=False)
        self.take_backups(2, upload=False)
        self.configure(upload=True)
        self.take_backups(2)
        self.assertEqual(len(self.remote_archives()), 2)
        result = self.verify("--remote", check=0)
        self.assertRegex(result.stdout, r"app\s+remote\s+2 backups, 1 deletion record.*: ok")

    def test_the_replica_verifies_and_a_missing_segment_is_named(self):
        self.configure(upload=False, replicate=True)
        agent = self.start_agent(env=self.env)
        for i in range(6):
            with sqlite3.connect(self.db) as connection:
                connection.execute("INSERT INTO items(name) VALUES (hex(randomblob(3000)))")
            time.sleep(0.6)

        def segments():
            return [k for k in self.remote_keys() if re.search(r"/wal/\d+-\d+\.wal\.gz$", k)]
        self.wait_for(lambda: len(segments()) >= 3, timeout=60, what="three shipped segments")
        self.stop_agent(agent)
        result = self.verify("--remote", "--data", check=0)
        self.assertRegex(result.stdout, r"app\s+replica\s+1 window, \d+ segments.*: ok")

        victim = segments()[1]
        self.aws_cli("s3", "rm", f"s3://{BUCKET}/{victim}")
        result = self.verify("--remote", check=1)
        name = re.search(r"(\d+)-\d+\.wal\.gz$", victim).group(1)
        self.assertRegex(result.stdout, rf"PROBLEM app/replica/.*{name}.*missing")

    def test_usage_errors(self):
        self.configure()
        self.verify("--local", "--remote", check=2)
        self.verify("nosuchdb", check=2)
        self.verify("--bogus", check=2)
        result = self.run_cli("verify", "--remote", check=2,
                              env=dict(self.env, TMPDIR=os.path.join(self.dir, "no-such-dir")))
        self.assertIn("set TMPDIR to a writable directory", result.stderr)


if __name__ == "__main__":
    unittest.main()

"""Restore drills (`drill = { ... }`, `sqlprodd drill DB`): each run restores
the newest backup and one older one not yet drilled into STATE_DIR/drill/NAME/,
runs integrity_check and compares the fingerprint the manifest recorded.

On a real S3 server (tests/s3/server.js) and real files, as an operator would
meet them: good backups drill clean until every kept one is covered; a flipped
byte in a remote archive, a manifest whose fingerprint does not match its
archive, an encrypted backup the agent has no identity for, a disk too small:
each fails naming the backup and the object. In every case the scratch
directory is left empty and the live database is not touched."""
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import unittest

from harness import BIN, BUCKET, S3TestCase, create_database

PROMTOOL = shutil.which("promtool")


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def metric(text, name, database="app"):
    """The value of NAME{database="app"}, or None."""
    match = re.search(rf'^{name}\{{database="{database}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


class DrillTest(S3TestCase):
    def setUp(self):
        super().setUp()
        create_database(self.db_path(), rows=3000)
        self.server = self.start_server()
        self.textfile = os.path.join(self.dir, "sqlprodd.prom")
        self.scratch = os.path.join(self.state_dir, "drill")

    def configure(self, drill='drill = { every = "1d"; };', encrypt=""):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; {encrypt} '
            f'upload = {{ target = "offsite"; keep = {{ last = 10; }}; }}; }}',
            defaults=drill,
            targets=self.s3_target(self.server.url),
            extra=f'metrics = {{ textfile = "{self.textfile}"; }};')

    def backups(self, count):
        """`count` backups, each with other rows (ids have one-second resolution)."""
        for i in range(count):
            if i:
                with sqlite3.connect(self.db_path()) as db:
                    db.execute("INSERT INTO items (name, amount, created) VALUES ('new', 1, 1)")
                time.sleep(1.05)
            self.run_cli("backup", "app", check=0)
        self.run_cli("upload", "app", check=0, env=self.env)
        listing = json.loads(self.run_cli("backups", "app", "--json", check=0).stdout)
        return [b["id"] for b in listing]  # newest first

    def drill(self, check=None):
        return self.run_cli("drill", "app", check=check, env=self.env)

    def live_checksums(self):
        return {suffix: sha256_of(self.db_path() + suffix) for suffix in ("", "-wal")
                if os.path.exists(self.db_path() + suffix)}

    def assert_scratch_empty(self):
        left = []
        for root, _, files in os.walk(self.scratch):
            left += [os.path.join(root, f) for f in files]
        self.assertEqual(left, [], "the drill left files in its scratch directory")

    def metrics(self):
        with open(self.textfile) as f:
            text = f.read()
        if PROMTOOL:
            check = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                                   capture_output=True, text=True)
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
            self.assertEqual(check.stdout.strip(), "", "promtool has no lint warnings")
        return text

    def remote_key(self, backup_id, suffix=".db.gz"):
        return f"s3://{BUCKET}/db/app/app-{backup_id}{suffix}"

    # ---------------------------------------------------------------------------------------

    def test_good_backups_drill_clean_until_every_kept_backup_is_covered(self):
        self.configure('drill = { every = "1d"; from = "remote"; };')
        ids = self.backups(4)
        self.assertEqual(len(ids), 4)
        live = self.live_checksums()

        first = self.drill(check=0)
        self.assertIn(f"backup {ids[0]} (remote) restored in", first.stderr)
        self.assertIn(f"backup {ids[-1]} (remote) restored in", first.stderr,
                      "the oldest backup not yet drilled goes with the newest")
        self.assertIn("integrity_check ok), fingerprint matches", first.stderr)
        self.assertIn("2 of 4 kept backups drilled", first.stderr)
        text = self.metrics()
        self.assertEqual(metric(text, "sqlprodd_drill_coverage_ratio"), 0.5)
        self.assertEqual(metric(text, "sqlprodd_drill_failures_total"), 0)
        self.assertGreater(metric(text, "sqlprodd_drill_restore_seconds"), 0)
        self.assertAlmostEqual(metric(text, "sqlprodd_drill_last_success_timestamp_seconds"),
                               time.time(), delta=120)
        for name in ("sqlprodd_drill_last_success_timestamp_seconds",
                     "sqlprodd_drill_restore_seconds", "sqlprodd_drill_failures_total",
                     "sqlprodd_drill_coverage_ratio"):
            self.assertIn(f"# HELP {name} ", text)
            self.assertIn(f"# TYPE {name} ", text)
        self.assert_scratch_empty()

        self.drill(check=0)
        third = self.drill(check=0)
        self.assertIn("4 of 4 kept backups drilled (100%)", third.stderr)
        self.assertEqual(metric(self.metrics(), "sqlprodd_drill_coverage_ratio"), 1.0)
        self.assert_scratch_empty()
        self.assertEqual(self.live_checksums(), live, "a drill changed the live database")

        drill = self.status_json("app")["databases"][0]["jobs"]["drill"]
        self.assertEqual(drill["last_result"], "ok")
        self.assertEqual(drill["runs_total"], 3)

    def test_flipped_byte_in_a_remote_archive_fails_naming_the_object(self):
        self.configure('drill = { every = "1d"; from = "remote"; };')
        backup_id = self.backups(1)[0]
        copy = os.path.join(self.dir, "fetched.gz")
        self.aws_cli("s3", "cp", "--only-show-errors", self.remote_key(backup_id), copy)
        with open(copy, "r+b") as f:
            f.seek(os.path.getsize(copy) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))
        self.aws_cli("s3", "cp", "--only-show-errors", copy, self.remote_key(backup_id))
        live = self.live_checksums()

        result = self.drill(check=1)
        self.assertIn(f"backup {backup_id}", result.stderr)
        self.assertIn(f"app/app-{backup_id}.db.gz on target offsite", result.stderr)
        self.assertNotIn("fingerprint matches", result.stderr)
        self.assert_scratch_empty()
        self.assertEqual(self.live_checksums(), live)
        text = self.metrics()
        self.assertEqual(metric(text, "sqlprodd_drill_failures_total"), 1)
        self.assertIsNone(metric(text, "sqlprodd_drill_last_success_timestamp_seconds"))
        self.assertEqual(metric(text, "sqlprodd_drill_coverage_ratio"), 0)

        # Health says so, with the command that reproduces it.
        self.run_cli("health", "app", env=self.env)
        database = self.status_json("app")["databases"][0]
        self.assertEqual(database["health"], "degraded")
        self.assertIn("the last drill failed", json.dumps(database))
        self.assertIn("drill app`", json.dumps(database))

    def test_manifest_fingerprint_that_does_not_match_fails_naming_the_backup(self):
        self.configure('drill = { every = "1d"; from = "local"; };')
        backup_id = self.backups(1)[0]
        manifest_path = os.path.join(self.backup_dir, "app", f"app-{backup_id}.db.gz.json")
        with open(manifest_path) as f:
            original = json.load(f)
        self.assertIn("fingerprint", original)
        live = self.live_checksums()
        cases = {
            "rows_sha256": lambda m: m["fingerprint"].update(rows_sha256="0" * 64),
            "rows": lambda m: m["fingerprint"].update(rows=m["fingerprint"]["rows"] + 1),
            "schema_sha256": lambda m: m.update(schema_sha256="1" * 64),
        }
        for field, edit in cases.items():
            with self.subTest(field=field):
                manifest = json.loads(json.dumps(original))
                edit(manifest)
                with open(manifest_path, "w") as f:
                    json.dump(manifest, f)
                result = self.drill(check=1)
                self.assertIn(f"backup {backup_id}", result.stderr)
                self.assertIn(f"app-{backup_id}.db.gz", result.stderr)
                self.assertRegex(result.stderr, r"restored and checked, but (the schema differs"
                                                r"|the row counts differ|the manifest records)")
                self.assert_scratch_empty()
                self.assertEqual(self.live_checksums(), live)
        with open(manifest_path, "w") as f:
            json.dump(original, f)
        self.drill(check=0)

    def test_remote_manifest_that_does_not_match_fails_naming_the_backup(self):
        self.configure('drill = { every = "1d"; from = "remote"; };')
        backup_id = self.backups(1)[0]
        copy = os.path.join(self.dir, "manifest.json")
        self.aws_cli("s3", "cp", "--only-show-errors", self.remote_key(backup_id, ".db.gz.json"),
                     copy)
        with open(copy) as f:
            manifest = json.load(f)
        manifest["fingerprint"]["rows_sha256"] = "f" * 64
        with open(copy, "w") as f:
            json.dump(manifest, f)
        self.aws_cli("s3", "cp", "--only-show-errors", copy,
                     self.remote_key(backup_id, ".db.gz.json"))
        result = self.drill(check=1)
        self.assertIn(f"backup {backup_id} (app/app-{backup_id}.db.gz on target offsite)",
                      result.stderr.replace("db/app/", "app/"))
        self.assertIn("the row counts differ", result.stderr)
        self.assert_scratch_empty()

    def test_a_backup_deleted_from_the_middle_fails_the_drill_naming_it(self):
        """The backups the drill restores are whole; the chain around them is
        not: the drill checks the side as `verify` does and says so."""
        for side in ("remote", "local"):
            with self.subTest(side=side):
                self.configure(f'drill = {{ every = "1d"; from = "{side}"; }};')
                ids = self.backups(3)
                middle = ids[1]
                if side == "remote":
                    for suffix in (".db.gz", ".db.gz.json"):
                        self.aws_cli("s3", "rm", "--only-show-errors",
                                     self.remote_key(middle, suffix))
                else:
                    for suffix in (".db.gz", ".db.gz.json"):
                        os.unlink(os.path.join(self.backup_dir, "app", f"app-{middle}{suffix}"))
                result = self.drill(check=1)
                self.assertIn(f"backup {middle} is missing", result.stderr)
                self.assertIn(f"sqlprodd verify app --{side}", result.stderr)
                self.assertEqual(metric(self.metrics(), "sqlprodd_drill_failures_total"), 1)
                self.assert_scratch_empty()
                self.server.stop()
                self.server = self.start_server()
                shutil.rmtree(os.path.join(self.backup_dir, "app"))
                shutil.rmtree(self.state_dir)
                os.mkdir(self.state_dir)

    def test_a_missing_replica_segment_fails_the_drill_naming_it(self):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'upload = {{ target = "offsite"; }}; '
            f'replicate = {{ target = "offsite"; interval = "1s"; }}; }}',
            defaults='drill = { every = "1d"; from = "remote"; };',
            targets=self.s3_target(self.server.url),
            extra=f'metrics = {{ textfile = "{self.textfile}"; }};')
        agent = self.start_agent(env=self.env)
        for _ in range(6):
            with sqlite3.connect(self.db_path()) as db:
                db.execute("INSERT INTO items (name, amount, created) "
                           "VALUES (hex(randomblob(3000)), 1, 1)")
            time.sleep(0.6)

        def segments():
            listing = self.aws_cli("s3", "ls", "--recursive", f"s3://{BUCKET}/db/app/replica/")
            return [line.split()[-1] for line in listing.stdout.splitlines()
                    if line.endswith(".wal.gz")]
        self.wait_for(lambda: len(segments()) >= 3, timeout=60, what="three shipped segments")
        self.stop_agent(agent)
        self.run_cli("backup", "app", check=0)
        self.run_cli("upload", "app", check=0, env=self.env)
        self.drill(check=0)
        victim = segments()[1]
        self.aws_cli("s3", "rm", "--only-show-errors", f"s3://{BUCKET}/{victim}")
        result = self.drill(check=1)
        start = os.path.basename(victim).split("-")[0]
        self.assertRegex(result.stderr, rf"app/replica/g\d+/wal/{start}-\d+\.wal\.gz is missing")
        self.assert_scratch_empty()

    @unittest.skipUnless(shutil.which("age-keygen"), "age-keygen is not installed")
    def test_encrypted_backup_without_an_identity_fails_saying_so(self):
        key = os.path.join(self.dir, "key.txt")
        subprocess.run(["age-keygen", "-o", key], check=True, capture_output=True)
        os.chmod(key, 0o600)
        recipient = subprocess.run(["age-keygen", "-y", key], check=True, capture_output=True,
                                   text=True).stdout.strip()
        self.configure('drill = { every = "1d"; from = "remote"; };',
                       encrypt=f'encrypt = {{ recipients = ( "{recipient}" ); }};')
        backup_id = self.backups(1)[0]
        result = self.drill(check=1)
        self.assertIn(f"backup {backup_id}", result.stderr)
        self.assertIn("has no identity to open it", result.stderr)
        self.assertIn("encrypt.identity", result.stderr)
        self.assert_scratch_empty()
        # With the identity configured, the same backup drills clean.
        self.configure('drill = { every = "1d"; from = "remote"; };',
                       encrypt=f'encrypt = {{ recipients = ( "{recipient}" ); '
                               f'identity = "{key}"; }};')
        result = self.drill(check=0)
        self.assertIn(f"backup {backup_id} (remote) restored in", result.stderr)

    def test_a_disk_without_room_is_refused_before_anything_is_written(self):
        self.configure('drill = { every = "1d"; from = "remote"; };')
        self.backups(1)
        # A tiny file system for state_dir is not available unprivileged; a
        # fake statvfs is not the thing under test either. Instead the
        # manifest claims a database larger than any disk here.
        backup_id = json.loads(self.run_cli("backups", "app", "--json", check=0).stdout)[0]["id"]
        copy = os.path.join(self.dir, "manifest.json")
        self.aws_cli("s3", "cp", "--only-show-errors", self.remote_key(backup_id, ".db.gz.json"),
                     copy)
        with open(copy) as f:
            manifest = json.load(f)
        manifest["database_bytes"] = 1 << 60
        with open(copy, "w") as f:
            json.dump(manifest, f)
        self.aws_cli("s3", "cp", "--only-show-errors", copy,
                     self.remote_key(backup_id, ".db.gz.json"))
        self.server.clear_requests()
        result = self.drill(check=1)
        self.assertIn("not enough room to drill it in", result.stderr)
        self.assertIn(os.path.join(self.state_dir, "drill", "app"), result.stderr)
        gets = [r for r in self.server.requests()
                if r.get("method") == "GET" and r.get("path", "").endswith(".db.gz")]
        self.assertEqual(gets, [], "the archive was downloaded before the room was checked")
        self.assert_scratch_empty()

    def test_agent_drills_on_schedule_and_removes_leftovers_at_start(self):
        self.configure('drill = { every = "1d"; from = "remote"; };')
        self.backups(2)
        leftover = os.path.join(self.scratch, "app", "app.db.sqlprodd-tmp")
        os.makedirs(os.path.dirname(leftover))
        with open(leftover, "wb") as f:
            f.write(b"left by a killed drill")
        agent = self.start_agent(env=self.env)
        self.wait_for(lambda: "app: drill: backup" in self.agent_log(), timeout=120,
                      what="a scheduled drill")
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0)
        self.assertIn("left by an interrupted restore drill", self.agent_log())
        self.assertRegex(self.agent_log(), r"app: drill: backup \S+ \(remote\) restored in")
        self.assert_scratch_empty()
        # The agent's own jobs (checkpoint) may touch the live file; the drill
        # must not have: its rows are the same.
        with sqlite3.connect(self.db_path()) as db:
            rows = db.execute("SELECT count(*) FROM items").fetchone()[0]
        self.assertEqual(rows, 3001)

    def test_sigterm_midway_stops_the_drill_and_leaves_nothing(self):
        self.configure('drill = { every = "1d"; from = "remote"; };')
        backup_id = self.backups(1)[0]
        # The archive's download hangs for a while: the drill is caught in it.
        self.server.admin("faults", "POST", {"mode": "delay", "when": "response", "ms": 8000,
                                             "method": "GET", "path": f"{backup_id}.db.gz",
                                             "count": 2})
        environment = dict(os.environ, **self.env)
        process = subprocess.Popen([BIN, "-c", self.config_path, "drill", "app"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=environment)
        self.processes.append(process)
        self.wait_for(lambda: os.path.isdir(os.path.join(self.scratch, "app")), timeout=30,
                      what="the drill's scratch directory")
        time.sleep(1)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        self.assertLess(time.monotonic() - started, 10, "the drill did not stop within seconds")
        self.assertNotEqual(process.returncode, 0)
        self.assertIn("aborted: stop requested", stderr)
        self.assert_scratch_empty()
        self.server.admin("faults", "DELETE")

    def test_drill_from_remote_without_a_target_is_a_configuration_error(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}',
                          defaults='drill = { every = "1d"; from = "remote"; };')
        result = self.run_cli("check", check=2)
        self.assertIn("databases.app.drill.from", result.stderr)
        self.assertIn("no upload target", result.stderr)
        self.assertRegex(result.stderr, rf"{re.escape(self.config_path)}:\d+: ")


if __name__ == "__main__":
    unittest.main()

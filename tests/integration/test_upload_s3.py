"""The upload queue and remote retention against an S3 target, end to end:
the built binary (one-off commands and the agent) against the
signature-checking S3 test server (tests/s3/server.js) on 127.0.0.1, with
Debian's aws CLI as the independent client that checks what is there.

Covers: small PutObject and multipart uploads restored intact, the queue
surviving an agent restart while the server is down, retries through
injected faults, retention paging through more than 1000 objects, and a
wrong secret. test_targets.py has the basic interoperability cases.
Skipped only when node is not installed."""
import calendar
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import time
import unittest

from harness import ACCESS_KEY, BUCKET, S3TestCase, create_database, row_count

STAMP = "%Y%m%dT%H%M%SZ"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table_digest(path):
    """What a user would compare: every row of items, hashed."""
    db = sqlite3.connect(path)
    try:
        digest = hashlib.sha256()
        for row in db.execute("SELECT id, name, amount, created FROM items ORDER BY id"):
            digest.update(repr(row).encode())
        return digest.hexdigest()
    finally:
        db.close()


def integrity(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def create_random_database(path, megabytes):
    """Random blobs: gzip cannot shrink them, so the archive stays large."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, amount REAL, created INTEGER)")
    with db:
        db.executemany("INSERT INTO items (name, amount, created) VALUES (?, ?, ?)",
                       ((os.urandom(1000), i * 0.5, 1700000000 + i) for i in range(megabytes * 1000)))
    db.close()


class S3UploadTest(S3TestCase):
    aws_timeout = 600

    def configure(self, databases, url, upload_keep="daily = 30;", backup="", backup_keep=""):
        entries = []
        for name in databases:
            entries.append(
                f'{{ name = "{name}"; path = "{self.db_path(name)}"; '
                f'backup = {{ {backup} {"keep = { " + backup_keep + " };" if backup_keep else ""} }}; '
                f'upload = {{ target = "offsite"; keep = {{ {upload_keep} }}; }}; }}')
        self.write_config(
            ", ".join(entries),
            targets=self.s3_target(url))

    def remote_keys(self, name="app"):
        """Every key under db/NAME/, listed by the aws CLI (which pages itself)."""
        result = self.aws_cli("s3api", "list-objects-v2", "--bucket", BUCKET,
                              "--prefix", f"db/{name}/", "--output", "json")
        text = result.stdout.strip()
        return sorted(o["Key"] for o in json.loads(text).get("Contents", [])) if text else []

    def pending(self, name="app"):
        for db in self.status_json()["databases"]:
            if db["name"] == name:
                return db["uploads_pending"]
        self.fail(f"{name} not in status")

    def manifest_sha256(self, name, archive):
        with open(os.path.join(self.backup_dir, name, archive + ".json")) as f:
            return json.load(f)["archive_sha256"]

    # ---------------------------------------------------------------------------------------

    def test_small_and_multipart_uploads_round_trip(self):
        server = self.start_server()
        create_database(self.db_path("app"), rows=3000)
        create_random_database(self.db_path("big"), 14)
        create_random_database(self.db_path("mid"), 3)  # a PutObject, streamed: past 1 MiB
        self.configure(["app", "big", "mid"], server.url)
        self.run_cli("backup", check=0)
        self.assertEqual(self.pending("app"), 1)
        self.assertEqual(self.pending("big"), 1)
        [small] = self.archives("app")
        [large] = self.archives("big")
        [middle] = self.archives("mid")
        middle_bytes = os.path.getsize(os.path.join(self.backup_dir, "mid", middle))
        self.assertGreater(middle_bytes, 2 * 1024 * 1024)
        large_bytes = os.path.getsize(os.path.join(self.backup_dir, "big", large))
        self.assertGreater(large_bytes, 12 * 1000 * 1000)

        server.clear_requests()
        result = self.run_cli("upload", check=0, env=self.env)
        self.assertIn("uploaded 1 archive", result.stderr)
        self.assertEqual(self.pending("app"), 0)
        self.assertEqual(self.pending("big"), 0)

        requests = server.requests()
        self.assertEqual({r["auth"] for r in requests}, {"ok"}, "every request was signed right")
        small_puts = [r for r in requests if r["method"] == "PUT" and r["path"].endswith(small)]
        self.assertEqual([r["query"] for r in small_puts], [""], "one PutObject for the small one")
        middle_puts = [r for r in requests if r["method"] == "PUT" and r["path"].endswith(middle)]
        self.assertEqual([(r["query"], r["bytes"]) for r in middle_puts], [("", middle_bytes)],
                         "one PutObject of the whole 3 MB archive, read as it is sent")
        parts = [r for r in requests if r["method"] == "PUT" and r["path"].endswith(large)]
        self.assertEqual(len(parts), 3, "14 MB in 5 MB parts")
        self.assertTrue(all("partNumber=" in r["query"] for r in parts))
        self.assertLessEqual(max(r["bytes"] for r in parts), 5 * 1024 * 1024)
        self.assertTrue(any(r["method"] == "POST" and "uploads" in r["query"]
                            and r["path"].endswith(large) for r in requests))

        # The aws CLI sees both, with the manifest's sha256 as metadata, and downloads them intact.
        for name, archive in (("app", small), ("big", large), ("mid", middle)):
            head = json.loads(self.aws_cli("s3api", "head-object", "--bucket", BUCKET,
                                           "--key", f"db/{name}/{archive}").stdout)
            self.assertEqual(head["Metadata"]["sha256"], self.manifest_sha256(name, archive))
            if name != "big":  # a single PutObject's ETag is the MD5 of what was stored
                with open(os.path.join(self.backup_dir, name, archive), "rb") as f:
                    self.assertEqual(head["ETag"].strip('"'), hashlib.md5(f.read()).hexdigest())
            copy = os.path.join(self.dir, f"{name}.aws.gz")
            self.aws_cli("s3", "cp", "--only-show-errors", f"s3://{BUCKET}/db/{name}/{archive}", copy)
            with open(copy, "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(),
                                 self.manifest_sha256(name, archive))

        listing = json.loads(self.run_cli("backups", "--remote", "--json", check=0,
                                          env=self.env).stdout)
        self.assertEqual(sorted((b["database"], b["id"], b["has_manifest"]) for b in listing),
                         [("app", small[4:20], True), ("big", large[4:20], True),
                          ("mid", middle[4:20], True)])
        self.assertEqual([b["archive_bytes"] for b in listing if b["database"] == "big"],
                         [large_bytes])

        for name in ("app", "big", "mid"):
            target = os.path.join(self.dir, f"{name}.restored.db")
            result = self.run_cli("restore", name, "--to", target, "--from", "remote", check=0,
                                  env=self.env)
            self.assertIn("(remote)", result.stdout)
            self.assertEqual(integrity(target), "ok")
            self.assertEqual(table_digest(target), table_digest(self.db_path(name)))
        self.assertEqual(row_count(os.path.join(self.dir, "big.restored.db")), 14000)

        # The other way round: the aws CLI puts the large archive back as its own
        # multipart upload (no sha256 metadata, a "-N" ETag); sqlprodd restores it.
        for key in (f"db/big/{large}", f"db/big/{large}.json"):
            self.aws_cli("s3", "rm", "--only-show-errors", f"s3://{BUCKET}/{key}")
        server.clear_requests()
        for name in (large, large + ".json"):
            self.aws_cli("s3", "cp", "--only-show-errors", os.path.join(self.backup_dir, "big", name),
                         f"s3://{BUCKET}/db/big/{name}")
        self.assertTrue(any("partNumber=" in r["query"] for r in server.requests()),
                        "the aws CLI used multipart")
        shutil.rmtree(os.path.join(self.backup_dir, "big"))
        target = os.path.join(self.dir, "big.again.db")
        self.run_cli("restore", "big", "--to", target, check=0, env=self.env)
        self.assertEqual(table_digest(target), table_digest(self.db_path("big")))

    def test_queue_survives_an_agent_restart_while_the_server_is_down(self):
        port = free_port()
        url = f"http://127.0.0.1:{port}"

        class Down:  # aws_cli needs a url before the server runs
            pass
        self.server = Down()
        self.server.url = url
        create_database(self.db_path("app"), rows=2000)
        # keep last = 1 locally: everything beyond that is kept only because it waits for upload.
        self.configure(["app"], url, upload_keep="last = 100;", backup='every = "2s";',
                       backup_keep="last = 1;")
        seen = set()

        def backlog(count):
            seen.update(self.archives())
            return self.pending() >= count and len(self.archives()) >= count

        agent = self.start_agent(env=self.env)
        self.wait_for(lambda: backlog(3), timeout=120, what="three backups queued")
        code, _ = self.stop_agent(agent, timeout=30)
        self.assertEqual(code, 0)
        self.assertIn("Couldn't connect to server", self.agent_log())
        queued = self.pending()
        seen.update(self.archives())
        self.assertGreaterEqual(queued, 3)
        self.assertEqual(len(self.archives()), queued, "nothing waiting for upload was pruned")

        self.start_server(port)
        agent = self.start_agent(env=self.env)
        self.wait_for(lambda: self.pending() == 0 and (seen.update(self.archives()) or True),
                      timeout=120, what="the backlog to drain")
        time.sleep(3)  # a backup or two more, so local retention runs again
        self.wait_for(lambda: self.pending() == 0 and (seen.update(self.archives()) or True),
                      timeout=60, what="their uploads")
        seen.update(self.archives())
        code, _ = self.stop_agent(agent, timeout=30)
        self.assertEqual(code, 0)

        remote = set(self.remote_keys())
        local = set(self.archives())
        for archive in seen:
            self.assertTrue(archive in local or f"db/app/{archive}" in remote,
                            f"{archive} was pruned locally before it was uploaded")
        # The stop may cut the newest backup's upload short between archive
        # and manifest: that one is still queued (and still local), and is
        # sent again at the next start. Every confirmed upload is complete.
        state = sqlite3.connect(os.path.join(self.state_dir, "state.db"))
        still_queued = {os.path.basename(row[0]) for row in
                        state.execute("SELECT archive_path FROM upload_queue")}
        state.close()
        self.assertLessEqual(still_queued, local)
        self.assertLessEqual(len(still_queued), 1)
        uploaded = [a for a in seen if f"db/app/{a}" in remote and a not in still_queued]
        self.assertGreaterEqual(len(uploaded), queued)
        for archive in uploaded:
            self.assertIn(f"db/app/{archive}.json", remote)
        # Local retention caught up once the uploads were confirmed.
        self.assertLessEqual(len(local), 2)
        self.assertLess(len(local), queued)
        status = self.run_cli("status", "app", check=None).stdout
        self.assertRegex(status, rf"uploads pending: {len(still_queued)}\b")

    def test_uploads_retry_through_injected_faults(self):
        server = self.start_server()
        create_random_database(self.db_path("app"), 11)
        self.configure(["app"], server.url)
        self.run_cli("backup", "app", check=0)
        [archive] = self.archives()

        # Two 503 SlowDown on the first PUTs, and one part upload cut off mid-body.
        server.admin("faults", "POST", [
            {"mode": "error", "status": 503, "code": "SlowDown", "count": 2, "method": "PUT"},
            {"mode": "drop", "when": "request", "query": "partNumber", "count": 1},
        ])
        server.clear_requests()
        result = self.run_cli("upload", "app", check=0, env=self.env)
        self.assertIn("retrying", result.stderr)
        self.assertEqual(self.pending(), 0)
        faults = [r["fault"] for r in server.requests() if r["fault"]]
        self.assertEqual(sorted(faults), ["drop", "error 503 SlowDown", "error 503 SlowDown"])
        target = os.path.join(self.dir, "restored.db")
        self.run_cli("restore", "app", "--to", target, "--from", "remote", check=0, env=self.env)
        self.assertEqual(table_digest(target), table_digest(self.db_path("app")))

        # A server that keeps failing: the attempt fails, the upload stays queued and the
        # local copy stays; when it recovers, the next run sends it.
        time.sleep(1.05)
        create_database(self.db_path("app"), rows=10)
        self.run_cli("backup", "app", check=0)
        server.admin("faults", "POST", {"mode": "error", "status": 500, "code": "InternalError",
                                        "count": 1000})
        result = self.run_cli("upload", "app", check=1, env=self.env)
        self.assertIn("1 upload failed, 1 pending", result.stderr)
        self.assertIn("after 6 attempts", result.stderr)
        self.assertEqual(self.pending(), 1)
        self.assertEqual(len(self.archives()), 2)
        server.admin("faults", "DELETE")
        self.run_cli("upload", "app", check=0, env=self.env)
        self.assertEqual(self.pending(), 0)

        # 4xx other than 408/429 is not retried: one request, then a clear error.
        time.sleep(1.05)
        self.run_cli("backup", "app", check=0)
        server.admin("faults", "POST", {"mode": "error", "status": 403, "code": "AccessDenied",
                                        "count": 1})
        server.clear_requests()
        result = self.run_cli("upload", "app", check=1, env=self.env)
        self.assertEqual(len(server.requests()), 1)
        self.assertIn("AccessDenied", result.stderr)
        self.assertEqual(self.pending(), 1)

    def test_a_wrong_secret_is_refused_and_nothing_leaves_the_queue(self):
        server = self.start_server()
        create_database(self.db_path("app"), rows=500)
        self.configure(["app"], server.url)
        wrong = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
        self.run_cli("backup", "app", check=0)
        result = self.run_cli("upload", "app", check=1, env=wrong)
        self.assertIn("access denied by S3", result.stderr)
        self.assertIn("SignatureDoesNotMatch", result.stderr)
        self.assertIn("check the secret key", result.stderr)
        self.assertNotIn("not-the-secret", result.stderr)
        self.assertEqual(self.pending(), 1)
        self.assertEqual(len(self.archives()), 1)
        refused = server.requests()
        self.assertEqual({(r["status"], r["auth"]) for r in refused}, {(403, "SignatureDoesNotMatch")})
        self.assertEqual(len(refused), 1, "a 403 is not retried")
        self.assertEqual(self.remote_keys(), [])
        status = self.status_json()
        self.assertNotIn("not-the-secret", json.dumps(status))
        result = self.run_cli("backups", "app", "--remote", check=1, env=wrong)
        self.assertIn("SignatureDoesNotMatch", result.stderr)
        target = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", target, "--from", "remote", check=1, env=wrong)
        self.assertIn("SignatureDoesNotMatch", result.stderr)
        self.assertFalse(os.path.exists(target))
        self.assertEqual([f for f in os.listdir(self.dir) if "sqlprodd-tmp" in f], [])
        # With the right secret the same queue entry goes up.
        self.run_cli("upload", "app", check=0, env=self.env)
        self.assertEqual(self.pending(), 0)
        self.assertEqual(len(self.remote_keys()), 2)

    def test_remote_retention_pages_past_1000_objects(self):
        server = self.start_server()
        create_database(self.db_path("app"), rows=500)
        keep = {"last": 2, "daily": 10, "monthly": 3}
        self.configure(["app"], server.url, upload_keep="last = 2; daily = 10; monthly = 3;")
        self.run_cli("backup", "app", check=0)
        [real] = self.archives()
        real_time = calendar.timegm(time.strptime(real[4:20], STAMP))

        # 1100 complete backups, every 2 hours back from a day ago, plus two archives
        # without a manifest: a stale one (deleted) and one from an hour ago (kept: it
        # may be an upload under way).
        seed = os.path.join(self.dir, "seed", "app")
        os.makedirs(seed)
        with open(os.path.join(self.backup_dir, "app", real + ".json")) as f:
            manifest = f.read()
        complete = {real: real_time}
        for i in range(1100):
            created = real_time - 86400 - i * 7200
            name = f"app-{time.strftime(STAMP, time.gmtime(created))}.db.gz"
            complete[name] = created
            with open(os.path.join(seed, name), "wb") as f:
                f.write(b"not a real archive " + name.encode())
            with open(os.path.join(seed, name + ".json"), "w") as f:
                f.write(manifest)
        stale = f"app-{time.strftime(STAMP, time.gmtime(real_time - 3 * 86400 - 1800))}.db.gz"
        recent = f"app-{time.strftime(STAMP, time.gmtime(real_time - 3600))}.db.gz"
        for name in (stale, recent):
            with open(os.path.join(seed, name), "wb") as f:
                f.write(b"unfinished")
        self.aws_cli("s3", "cp", "--recursive", "--only-show-errors",
                     os.path.join(self.dir, "seed"), f"s3://{BUCKET}/db/")
        self.assertEqual(len(self.remote_keys()), 2202)

        server.clear_requests()
        result = self.run_cli("upload", "app", check=0, env=self.env)
        requests = server.requests()
        listings = [r for r in requests if r["method"] == "GET" and "list-type=2" in r["query"]]
        self.assertGreaterEqual(len(listings), 3, "2204 keys take three pages")
        self.assertTrue(any("continuation-token=" in r["query"] for r in listings))
        self.assertEqual({r["auth"] for r in requests}, {"ok"})

        expected = self.expected_kept(complete, keep)
        self.assertIn(real, expected)
        self.assertIn(f"kept {len(expected) + 1} remote backups, deleted {1100 + 1 - len(expected)}",
                      result.stderr)
        wanted = sorted([f"db/app/{n}" for n in expected] + [f"db/app/{n}.json" for n in expected]
                        + [f"db/app/{recent}"])
        # Each deletion left its record (sqlprodd verify), under pruned/.
        self.assertEqual([k for k in self.remote_keys() if "/pruned/" not in k], wanted)

        # keep last = 1 with a newer archive that has no manifest: the newest complete
        # backup is what stays, and it restores.
        time.sleep(1.05)
        newer = f"app-{time.strftime(STAMP, time.gmtime())}.db.gz"
        with open(os.path.join(self.dir, newer), "wb") as f:
            f.write(b"unfinished")
        self.aws_cli("s3", "cp", "--only-show-errors", os.path.join(self.dir, newer),
                     f"s3://{BUCKET}/db/app/{newer}")
        self.configure(["app"], server.url, upload_keep="last = 1;")
        self.run_cli("prune", "app", check=0, env=self.env)
        self.assertEqual([k for k in self.remote_keys() if "/pruned/" not in k],
                         sorted([f"db/app/{real}", f"db/app/{real}.json", f"db/app/{recent}",
                                 f"db/app/{newer}"]))
        shutil.rmtree(os.path.join(self.backup_dir, "app"))
        target = os.path.join(self.dir, "restored.db")
        result = self.run_cli("restore", "app", "--to", target, check=0, env=self.env)
        self.assertIn(real[4:20], result.stdout)
        self.assertEqual(row_count(target), 500)

    @staticmethod
    def expected_kept(complete, keep):
        """restic's forget rules, independently of retention.c."""
        names = sorted(complete, key=lambda n: complete[n], reverse=True)
        kept = set(names[:keep["last"]])
        for rule, period in (("daily", lambda t: time.strftime("%Y-%m-%d", time.gmtime(t))),
                             ("monthly", lambda t: time.strftime("%Y-%m", time.gmtime(t)))):
            periods = []
            for name in names:
                p = period(complete[name])
                if p not in periods:
                    if len(periods) == keep[rule]:
                        break
                    periods.append(p)
                    kept.add(name)
        return kept


if __name__ == "__main__":
    unittest.main()

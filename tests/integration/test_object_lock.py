"""S3 Object Lock on a target (object_lock = { mode; days; }), end to end: the
built binary against the signature-checking S3 test server (tests/s3/server.js)
with a recording reverse proxy of this file's own between them, on 127.0.0.1.

s3rver ignores the lock headers, so the proxy is what proves them: it forwards
every request unchanged and records its method, path, query, headers and the
MD5 of the body it carried. Every PutObject and every CreateMultipartUpload
must carry the mode and a retain-until date of now + days, and every
PutObject and UploadPart a Content-MD5 that is the MD5 of its body (S3 refuses
lock headers without it, and refuses the parts of a locked upload without it,
whatever SigV4 signed) -- the multipart case both for an archive whose SHA-256
is known beforehand and for one sealed on the way (encrypt), which hashes its
parts in a first pass. Remote retention whose keep rules would delete backups
sends no DELETE for one still locked and says how many it kept; once the
stored objects are older than the lock (their mtime, which s3rver reports as
LastModified, set back), it deletes them.
Skipped only when node is not installed."""
import base64
import calendar
import glob
import hashlib
import http.client
import http.server
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
import unittest
import urllib.parse

from harness import SERVER_DIR, S3Server, S3TestCase, create_database

DAY = 86400
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection"}


class RecordingProxy:
    """A reverse proxy on 127.0.0.1 in front of `upstream` that records every
    request (method, path, query, headers, body MD5 and size) and forwards it
    as it came: the Host header is the one the client signed."""

    def __init__(self, upstream):
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.records = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                record = {
                    "time": time.time(),
                    "method": self.command,
                    "path": urllib.parse.unquote(path),
                    "query": urllib.parse.parse_qs(query, keep_blank_values=True),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body_md5": base64.b64encode(hashlib.md5(body).digest()).decode(),
                    "bytes": len(body),
                }
                with proxy.lock:
                    proxy.records.append(record)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP and k.lower() != "expect"}
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    reply = connection.getresponse()
                    data = reply.read()
                    record["status"] = reply.status
                    self.send_response(reply.status, reply.reason)
                    for name, value in reply.getheaders():
                        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                            self.send_header(name, value)
                    if self.command == "HEAD":
                        self.send_header("Content-Length", reply.getheader("Content-Length", "0"))
                    else:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self):
        """The records so far, and a fresh start."""
        with self.lock:
            records, self.records = self.records, []
        return records

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class StoredS3Server(S3Server):
    """The S3 test server keeping its objects in `directory`, where the test
    can age them: s3rver reports a file's mtime as the object's LastModified."""

    def __init__(self, directory):
        self.process = subprocess.Popen(
            ["node", os.path.join(SERVER_DIR, "server.js"), "--port", "0",
             "--directory", directory], stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if "http://127.0.0.1:" not in line:
            self.stop()
            raise RuntimeError(f"the S3 test server did not start: {line!r}")
        self.url = line[line.index("http://"):].strip()


def create_random_database(path, megabytes):
    """Random blobs: gzip cannot shrink them, so the archive goes multipart."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, amount REAL, created INTEGER)")
    with db:
        db.executemany("INSERT INTO items (name, amount, created) VALUES (?, ?, ?)",
                       ((os.urandom(1000), i * 0.5, 1700000000 + i) for i in range(megabytes * 1000)))
    db.close()


def retain_until(record):
    text = record["headers"]["x-amz-object-lock-retain-until-date"]
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


class ObjectLockTest(S3TestCase):

    def start_proxy(self, upstream):
        proxy = RecordingProxy(upstream)
        self.addCleanup(proxy.stop)
        return proxy

    def configure(self, url, lock, entries, upload_keep="daily = 30;"):
        databases = []
        for name, extra in entries:
            databases.append(
                f'{{ name = "{name}"; path = "{self.db_path(name)}"; {extra} '
                f'upload = {{ target = "offsite"; keep = {{ {upload_keep} }}; }}; }}')
        self.write_config(", ".join(databases),
                          targets=self.s3_target(url, f"object_lock = {{ {lock} }};"))

    def assert_locked(self, record, mode, days):
        what = f"{record['method']} {record['path']}"
        self.assertEqual(record["headers"].get("x-amz-object-lock-mode"), mode, what)
        self.assertIn("x-amz-object-lock-retain-until-date", record["headers"], what)
        self.assertLessEqual(abs(retain_until(record) - (record["time"] + days * DAY)), 120, what)
        # Signed, so that nobody on the way can shorten the lock.
        signed = re.search(r"SignedHeaders=([^,]*)", record["headers"]["authorization"]).group(1)
        self.assertIn("x-amz-object-lock-mode", signed.split(";"), what)
        self.assertIn("x-amz-object-lock-retain-until-date", signed.split(";"), what)

    def assert_md5_of_body(self, record):
        what = f"{record['method']} {record['path']} {record['query']}"
        self.assertIn("content-md5", record["headers"], f"{what} has no Content-MD5")
        self.assertEqual(record["headers"]["content-md5"], record["body_md5"], what)
        self.assertEqual(record.get("status"), 200, what)

    @unittest.skipUnless(shutil.which("age-keygen"), "age-keygen is not installed (Debian: age)")
    def test_every_upload_carries_the_lock_and_a_content_md5_of_its_body(self):
        server = self.start_server()
        proxy = self.start_proxy(server.url)
        key = os.path.join(self.dir, "key.txt")
        subprocess.run(["age-keygen", "-o", key], check=True, capture_output=True)
        recipient = subprocess.run(["age-keygen", "-y", key], check=True, capture_output=True,
                                   text=True).stdout.strip()
        create_database(self.db_path("app"), rows=500)
        create_random_database(self.db_path("big"), 12)
        create_random_database(self.db_path("sealed"), 12)
        self.configure(proxy.url, 'mode = "governance"; days = 30;',
                       [("app", ""), ("big", ""),
                        ("sealed", f'encrypt = {{ recipients = ( "{recipient}" ); }};')])
        self.run_cli("backup", check=0)
        proxy.take()
        self.run_cli("upload", check=0, env=self.env)
        records = proxy.take()

        puts = [r for r in records if r["method"] == "PUT"]
        objects = [r for r in puts if "partNumber" not in r["query"]]
        parts = [r for r in puts if "partNumber" in r["query"]]
        creates = [r for r in records if r["method"] == "POST" and "uploads" in r["query"]]
        # app: archive and manifest in one PutObject each; big and sealed: a
        # multipart archive (12 MB of random rows in 5 MB parts) and a manifest.
        self.assertEqual(sorted(r["path"].rsplit("/", 2)[1] for r in objects),
                         ["app", "app", "big", "sealed"])
        self.assertEqual(sorted(r["path"].rsplit("/", 2)[1] for r in creates), ["big", "sealed"])
        for name in ("big", "sealed"):
            own = [r for r in parts if f"/{name}/" in r["path"]]
            self.assertGreaterEqual(len(own), 3, f"{name} went up in parts")
        for record in objects + creates:
            self.assert_locked(record, "GOVERNANCE", 30)
        for record in objects + parts:
            self.assert_md5_of_body(record)
        # The parts themselves carry no lock: CreateMultipartUpload set it.
        for record in parts:
            self.assertNotIn("x-amz-object-lock-mode", record["headers"])

        # `check` names the lock of the target.
        result = self.run_cli("check", check=0, env=self.env)
        self.assertIn('target "offsite": object_lock governance, 30 days', result.stdout)

    def test_retention_keeps_locked_backups_and_deletes_them_once_the_lock_has_passed(self):
        store = os.path.join(self.dir, "s3-store")
        os.makedirs(store)
        self.server = StoredS3Server(store)
        self.addCleanup(self.server.stop)
        proxy = self.start_proxy(self.server.url)
        create_database(self.db_path("app"), rows=200)
        self.configure(proxy.url, 'mode = "compliance"; days = 1;', [("app", "")],
                       upload_keep="last = 1;")
        for _ in range(3):
            self.run_cli("backup", "app", check=0)
            time.sleep(1.05)  # archive names are to the second
        proxy.take()
        result = self.run_cli("upload", "app", check=0, env=self.env)
        records = proxy.take()
        uploads = [r for r in records if r["method"] == "PUT"]
        self.assertEqual(len(uploads), 6, "three archives and their manifests")
        for record in uploads:
            self.assert_locked(record, "COMPLIANCE", 1)
            self.assert_md5_of_body(record)

        # keep last = 1 would delete two backups; the lock holds all three.
        self.assertEqual([r for r in records if r["method"] == "DELETE"], [])
        match = re.search(r"kept 3 remote backups, deleted 0; 2 of them locked \(object_lock\) "
                          r"until (\S+) at the latest", result.stderr)
        self.assertIsNotNone(match, result.stderr)
        until = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%SZ"))
        self.assertLessEqual(abs(until - (time.time() + DAY + 3600)), 120)

        # A prune within the lock deletes nothing either.
        result = self.run_cli("prune", "app", check=0, env=self.env)
        self.assertEqual([r for r in proxy.take() if r["method"] == "DELETE"], [])
        self.assertIn("2 of them locked (object_lock)", result.stderr)

        # Two days on, by the bucket's clock: the lock has passed, and what
        # the rules do not keep goes, manifest first.
        stored = glob.glob(os.path.join(store, "**", "*._S3rver_object"), recursive=True)
        self.assertEqual(len(stored), 6, stored)
        past = time.time() - 2 * DAY
        for path in stored:
            os.utime(path, (past, past))
        result = self.run_cli("prune", "app", check=0, env=self.env)
        self.assertIn("kept 1 remote backup, deleted 2", result.stderr)
        self.assertNotIn("locked", result.stderr)
        deletes = [r["path"].rsplit("/", 1)[1] for r in proxy.take() if r["method"] == "DELETE"]
        deletes = [d for d in deletes if d.endswith((".db.gz", ".db.gz.json"))]
        self.assertEqual(len(deletes), 4, deletes)
        self.assertTrue(deletes[0].endswith(".json") and deletes[2].endswith(".json"), deletes)
        newest = max(name for name in os.listdir(os.path.join(self.backup_dir, "app"))
                     if name.endswith(".db.gz"))
        self.assertNotIn(newest, [d.removesuffix(".json") for d in deletes])

        result = self.run_cli("check", check=0, env=self.env)
        self.assertIn('target "offsite": object_lock compliance, 1 day:', result.stdout)


if __name__ == "__main__":
    unittest.main()

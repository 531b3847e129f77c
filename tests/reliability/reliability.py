"""Helpers shared by the reliability tests: the integration harness (built
binary, temp dirs, writer process) plus the checks every scenario repeats —
archives that verify against their manifests, no temp files, the S3 test
server with fault injection and restarts on the same port.

Not a test module itself (no test_ prefix)."""
import gzip
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import (BIN, SOURCE_DIR, AgentTestCase, Writer, create_database,  # noqa: E402,F401
                     row_count, sha256_file)

TEMP_SUFFIX = ".sqlprodd-tmp"
ACCESS_KEY = "SQLPRODDTESTACCESSKEY"
SECRET_KEY = "sqlprodd/Test+Secret/Key0123456789abcdefXYZ"
BUCKET = "sqlprodd-test"
S3_DIR = os.path.join(SOURCE_DIR, "tests", "s3")


def gzip_ok(path):
    return subprocess.run(["gzip", "-t", path], capture_output=True).returncode == 0


def verify_archive_dir(directory):
    """Checks one directory of archives (local DIR/NAME or a dir target's).
    Returns (verified, orphans, temps, problems): archive names that have a
    manifest and verify, archives without a manifest (an interrupted backup,
    allowed until the next run), temp files, and a list of failures."""
    verified, orphans, temps, problems = [], [], [], []
    if not os.path.isdir(directory):
        return verified, orphans, temps, problems
    names = set(os.listdir(directory))
    for name in sorted(names):
        path = os.path.join(directory, name)
        if TEMP_SUFFIX in name or ".tmp" in name:
            temps.append(name)
            continue
        if name.endswith(".db.gz"):
            if name + ".json" not in names:
                orphans.append(name)
                continue
            try:
                with open(path + ".json") as f:
                    manifest = json.load(f)
            except (OSError, ValueError) as e:
                problems.append(f"{name}.json: unreadable manifest: {e}")
                continue
            if manifest.get("archive") != name:
                problems.append(f"{name}: manifest names {manifest.get('archive')!r}")
            if sha256_file(path) != manifest.get("archive_sha256"):
                problems.append(f"{name}: sha256 does not match its manifest")
            elif os.path.getsize(path) != manifest.get("archive_bytes"):
                problems.append(f"{name}: size does not match its manifest")
            elif not gzip_ok(path):
                problems.append(f"{name}: gzip -t fails")
            else:
                verified.append(name)
        elif name.endswith(".db.gz.json"):
            if name[:-5] not in names:
                problems.append(f"{name}: a manifest without its archive")
    return verified, orphans, temps, problems


def decompressed_is_sqlite(path):
    with gzip.open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def queue_rows(state_dir):
    path = os.path.join(state_dir, "state.db")
    if not os.path.exists(path):
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT archive_path, attempts, last_error FROM upload_queue").fetchall()
    finally:
        db.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """tests/s3/server.js on a fixed port of 127.0.0.1 with a persistent
    object directory, so it can be stopped (an outage) and started again."""

    def __init__(self, directory, port=None):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.start()

    def start(self):
        for _ in range(50):
            self.process = subprocess.Popen(
                ["node", os.path.join(S3_DIR, "server.js"), "--port", str(self.port),
                 "--directory", self.directory],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            line = self.process.stdout.readline()
            if "http://127.0.0.1:" in line:
                return
            self.process.wait()
            time.sleep(0.2)  # the port may still be in TIME_WAIT
        raise RuntimeError("the S3 test server did not start")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        if self.process:
            self.process.stdout.close()
        self.process = None

    def admin(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return json.loads(text) if text else None

    def fault(self, **fault):
        self.admin("POST", "/__admin/faults", fault)

    def clear_faults(self):
        self.admin("DELETE", "/__admin/faults")

    def requests(self):
        return self.admin("GET", "/__admin/requests")

    def objects(self):
        """{key: bytes} of the bucket, through the aws CLI-free admin-less
        path: a signed listing would need SigV4, so read s3rver's directory."""
        result = {}
        root = os.path.join(self.directory, BUCKET)
        for base, _, files in os.walk(root):
            for name in files:
                if name.endswith("._S3rver_object"):
                    path = os.path.join(base, name)
                    key = os.path.relpath(path, root)[:-len("._S3rver_object")]
                    result[key] = path
        return result


def s3_target(url, extra=""):
    return (f'{{ name = "offsite"; type = "s3"; endpoint = "{url}"; region = "us-east-1"; '
            f'bucket = "{BUCKET}"; prefix = "db/"; path_style = true; part_size = "5MB"; {extra} }}')


S3_ENV = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
          "AWS_EC2_METADATA_DISABLED": "true"}


def kill_process_group_member(process):
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def incompressible_database(path, megabytes):
    """A database that compresses poorly, so gzip takes a while (the backup's
    compression phase is where a kill lands)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, "
               "amount REAL, created INTEGER)")
    with db:
        chunk = 64 * 1024
        for i in range(megabytes * 1024 * 1024 // chunk):
            db.execute("INSERT INTO items (name, amount, created) VALUES (?, ?, ?)",
                       (os.urandom(chunk // 2).hex(), i, i))
    db.close()


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)

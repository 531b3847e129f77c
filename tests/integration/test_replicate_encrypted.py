"""An encrypted WAL replica (encrypt.recipients, issue 19): what leaves the
machine is age files, restore --at opens them with the identity, and a
wrong or missing identity, or a damaged sealed object, fails naming the
object and leaves no output file.

The agent ships a database written by a separate process (one row per
commit, each holding a marker string, with the wall time and a running
hash of the content logged after each commit) to a dir target, with
`encrypt = { recipients = (KEY); identity = "key.txt"; }`. Keys are made
with Debian's age-keygen, and the objects are opened by hand with
`age -d -i key.txt | gunzip`, as sqlprodd-format(5) tells an operator to.
"""
import glob
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import unittest

from harness import AgentTestCase
from replica_checks import unpacked_view

MARKER = "sqlprodd-plaintext-marker-5b1e"
AGE_MAGIC = b"age-encryption.org/v1\n"
INTERVAL = 1.0

WRITER = r"""
import hashlib, json, os, sqlite3, sys, time
path, log, stop, marker = sys.argv[1:5]
db = sqlite3.connect(path, timeout=10, isolation_level=None)
h = hashlib.sha256(b"").hexdigest()
n = 0
with open(log, "w") as out:
    while not os.path.exists(stop):
        n += 1
        value = f"{marker}-{n}-" + os.urandom(40).hex()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t(id, v) VALUES (?, ?)", (n, value))
        started = time.time()
        db.execute("COMMIT")
        h = hashlib.sha256((h + value).encode()).hexdigest()
        out.write(json.dumps([time.time(), n, h, started]) + "\n")
        time.sleep(0.003)
"""


def iso(seconds):
    ms = int(round(seconds * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def content(path):
    """(rows, running hash) of a restored file, computed as the writer does."""
    db = sqlite3.connect(path)
    try:
        h = hashlib.sha256(b"").hexdigest()
        ids = []
        for row_id, value in db.execute("SELECT id, v FROM t ORDER BY id"):
            ids.append(row_id)
            h = hashlib.sha256((h + value).encode()).hexdigest()
        assert ids == list(range(1, len(ids) + 1)), "rows are not 1..k"
        return len(ids), h
    finally:
        db.close()


def age_keygen(path):
    """A new identity file (mode 0600) and its recipient."""
    subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True)
    os.chmod(path, 0o600)
    return subprocess.run(["age-keygen", "-y", path], check=True, capture_output=True,
                          text=True).stdout.strip()


def age_open(identity, path):
    """`age -d -i IDENTITY PATH | gunzip`, as an operator types it."""
    age = subprocess.run(["age", "-d", "-i", identity, path], check=True, capture_output=True)
    return subprocess.run(["gunzip"], input=age.stdout, check=True, capture_output=True).stdout


@unittest.skipUnless(shutil.which("age") and shutil.which("age-keygen"),
                     "needs age and age-keygen (apt-get install age)")
class EncryptedReplicaTest(AgentTestCase):

    def setUp(self):
        super().setUp()
        self.offsite = os.path.join(self.dir, "offsite")
        os.makedirs(self.offsite)
        self.key = os.path.join(self.dir, "key.txt")
        self.other_key = os.path.join(self.dir, "other.txt")
        self.recipient = age_keygen(self.key)
        age_keygen(self.other_key)
        db = sqlite3.connect(self.db_path())
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        db.close()
        self.configure(self.key)

    def configure(self, identity, compact=True, extra=""):
        encrypt = f'encrypt = {{ recipients = ("{self.recipient}"); '
        if identity:
            encrypt += f'identity = "{identity}"; '
        encrypt += "};"
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; {encrypt} '
            f'replicate = {{ target = "nas"; interval = "{INTERVAL:g}s"; '
            f'compact = {"true" if compact else "false"}; {extra} }}; }}',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.offsite}"; }}')

    def root(self):
        return os.path.join(self.offsite, "app", "replica")

    def ship_under_writer(self, seconds=5):
        """The agent replicating while the writer commits; returns the
        writer's log once the replica has everything it wrote."""
        agent = self.start_agent()
        self.wait_for(lambda: os.path.exists(os.path.join(self.root(), "index.json")),
                      timeout=30, what="the agent's first index.json")
        log = os.path.join(self.dir, "writer.log")
        stop = os.path.join(self.dir, "writer.stop")
        writer = subprocess.Popen([sys.executable, "-c", WRITER, self.db_path(), log, stop,
                                   MARKER])
        self.processes.append(writer)
        time.sleep(seconds)
        open(stop, "w").close()
        writer.wait(timeout=30)
        with open(log) as f:
            commits = [json.loads(line) for line in f]
        self.assertGreater(len(commits), 100)
        self.wait_for(lambda: self.restored_rows("latest") == len(commits), timeout=30,
                      interval=0.5, what="the replica to reach the writer's last commit")
        self.stop_agent(agent)
        return commits

    def restore(self, at, check=None):
        path = os.path.join(self.dir, "restored.db")
        for leftover in glob.glob(path + "*"):
            os.unlink(leftover)
        return path, self.run_cli("restore", "app", "--to", path, "--at", at, check=check)

    def restored_rows(self, at):
        path, result = self.restore(at)
        return content(path)[0] if result.returncode == 0 else None

    def data_objects(self, root=None):
        """Every object on the target but the JSON manifests (in ROOT: the
        replica unpacked, where the packs' objects are loose again)."""
        found = []
        for directory, _, names in os.walk(root or self.offsite):
            found += [os.path.join(directory, n) for n in names if not n.endswith(".json")]
        return sorted(found)

    def assert_failed_cleanly(self, result, path, pattern):
        self.assertEqual(result.returncode, 1, f"stdout: {result.stdout}\nstderr: {result.stderr}")
        self.assertRegex(result.stderr, pattern)
        print(result.stderr.strip())
        self.assertEqual(glob.glob(path + "*"), [], "a failed restore left files at the output")

    def test_restore_at_opens_the_sealed_replica_with_the_identity(self):
        commits = self.ship_under_writer()
        path, result = self.restore("latest", check=0)
        self.assertEqual(content(path), (len(commits), commits[-1][2]))
        rng = random.Random(19)
        first, last = commits[0][0], commits[-1][0]
        for at in sorted(rng.uniform(first + INTERVAL + 0.5, last) for _ in range(4)):
            with self.subTest(at=iso(at)):
                path, result = self.restore(iso(at), check=0)
                rows, digest = content(path)
                logged = commits[rows - 1]
                self.assertEqual((logged[1], logged[2]), (rows, digest),
                                 "not the content after one of the writer's commits")
                self.assertLessEqual(logged[3], at, "a commit made after T was restored")
                before = [c for c in commits if c[0] <= at - INTERVAL - 1.0]
                if before:
                    self.assertGreaterEqual(rows, before[-1][1],
                                            "a commit made before T - interval is missing")

    def windows(self):
        text = self.run_cli("backups", "app", "--remote", check=0).stdout
        listed = json.loads(self.run_cli("backups", "app", "--remote", "--json", check=0).stdout)
        return ([line for line in text.splitlines() if "replica window" in line],
                [w for w in listed if w["location"] == "replica"])

    def test_backups_remote_names_the_key_each_window_needs(self):
        """`backups --remote` says which key each restorable window needs
        (from its generations' base.json), and after a key rotation the
        generations sealed to the new key name it."""
        commits = self.ship_under_writer(seconds=2)
        lines, listed = self.windows()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(f"encrypted to {self.recipient}", lines[0])
        self.assertEqual(listed[0]["encrypted_to"], self.recipient)

        # Rotation: the new key for new objects; an identity file with both.
        new_recipient = subprocess.run(["age-keygen", "-y", self.other_key], check=True,
                                       capture_output=True, text=True).stdout.strip()
        both = os.path.join(self.dir, "both.txt")
        with open(both, "w") as f:
            for key in (self.key, self.other_key):
                with open(key) as k:
                    f.write(k.read())
        os.chmod(both, 0o600)
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; encrypt = {{ recipients = '
            f'("{new_recipient}"); identity = "{both}"; }}; '
            f'replicate = {{ target = "nas"; interval = "{INTERVAL:g}s"; }}; }}',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.offsite}"; }}')
        # While the agent is down the application restarts its WAL: the
        # agent must begin a new generation, sealed to the key now configured.
        db = sqlite3.connect(self.db_path())
        db.execute("INSERT INTO t(v) VALUES ('after rotation 1')")
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("INSERT INTO t(v) VALUES ('after rotation 2')")
        db.commit()
        db.close()
        agent = self.start_agent()
        self.wait_for(lambda: self.restored_rows("latest") == len(commits) + 2, timeout=30,
                      interval=0.5, what="the replica to reach the rows written after rotation")
        self.stop_agent(agent)
        lines, listed = self.windows()
        print("\n".join(lines))
        text = "\n".join(lines)
        self.assertIn(self.recipient, text)
        self.assertIn(new_recipient, text)
        self.assertLess(text.index(self.recipient), text.index(new_recipient),
                        "the old key must be listed for the older generations")
        self.assertTrue(listed[0]["encrypted_to"].startswith(self.recipient), listed)
        self.assertTrue(listed[-1]["encrypted_to"].endswith(new_recipient), listed)

    def test_only_age_files_leave_the_machine_and_age_opens_them(self):
        commits = self.ship_under_writer()
        # Packs hold the sealed objects byte for byte (and the plain JSON
        # sidecars): every object cut out of them is checked as a loose one.
        view = unpacked_view(self.root(), os.path.join(self.dir, "view"))
        objects = [p for p in self.data_objects(view)
                   if "/packs/" not in os.path.relpath(p, view)]
        names = [os.path.relpath(p, view) for p in objects]
        self.assertTrue(any(re.fullmatch(r"g\d{8}/base\.db\.gz\.age", n) for n in names), names)
        self.assertTrue(any(re.fullmatch(r"g\d{8}/wal/\d{12}-\d{12}\.wal\.gz\.age", n)
                            for n in names), names)
        marker = MARKER.encode()
        for path in glob.glob(os.path.join(self.offsite, "**", "*"), recursive=True):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    self.assertNotIn(marker, f.read(), f"{path} holds the plaintext marker")
        opened_wal = b""
        for path, name in zip(objects, names):
            self.assertTrue(name.endswith(".age"), f"{name}: a data object not sealed")
            with open(path, "rb") as f:
                self.assertEqual(f.read(len(AGE_MAGIC)), AGE_MAGIC, name)
            plain = age_open(self.key, path)
            if name.endswith("base.db.gz.age"):
                self.assertEqual(plain[:16], b"SQLite format 3\0", name)
            elif "/000000000000-" in name:  # a generation's first: its WAL header
                self.assertIn(plain[:4], (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83"), name)
            if name.endswith(".wal.gz.age"):
                opened_wal += plain
        self.assertIn(marker, opened_wal, "age -d | gunzip does not give the WAL written")
        # The manifests say whom each object was sealed to, and nothing plain
        # was left in the spool either.
        with open(glob.glob(os.path.join(view, "g*", "base.json"))[0]) as f:
            base = json.load(f)
        self.assertEqual(base["encryption"], {"format": "age-encryption.org/v1",
                                              "recipients": [self.recipient]})
        spool = os.path.join(self.state_dir, "replica", "app")
        leftovers = [n for n in os.listdir(spool) if n.endswith(".gz")]
        self.assertEqual(leftovers, [], "plaintext objects in the spool")
        self.assertGreater(len(commits), 0)

    def test_page_deltas_are_sealed_and_restore_with_the_identity(self):
        self.configure(self.key, extra='delta_every = "1s";')
        commits = self.ship_under_writer(seconds=8)
        deltas = sorted(glob.glob(os.path.join(self.root(), "deltas", "*")))
        data = [p for p in deltas if not p.endswith(".json")]
        self.assertTrue(data, f"no page delta shipped: {deltas}\n{self.agent_log()}")
        for path in data:
            self.assertTrue(path.endswith(".pages.gz.age"), f"{path}: a delta not sealed")
            plain = age_open(self.key, path)
            self.assertEqual(plain[:8], b"SQLPDLT1", path)
            with open(path, "rb") as f:
                self.assertNotIn(MARKER.encode(), f.read(), f"{path} holds the plaintext marker")
            with open(path[:-len(".gz.age")] + ".json") as f:
                manifest = json.load(f)
            self.assertEqual(manifest["encryption"]["recipients"], [self.recipient])
        path, result = self.restore("latest", check=0)
        self.assertIn("page delta", result.stdout)
        self.assertEqual(content(path), (len(commits), commits[-1][2]))
        with open(path, "rb") as f:
            through_deltas = f.read()
        plain = os.path.join(self.dir, "replayed.db")
        self.run_cli("restore", "app", "--to", plain, "--at", "latest", check=0,
                     env={"SQLPRODD_RESTORE_DELTAS": "off"})
        with open(plain, "rb") as f:
            self.assertEqual(f.read(), through_deltas, "deltas and a full replay differ")

    def test_wrong_or_missing_identity_or_damaged_object_fails_naming_it(self):
        # Loose objects: the damage below is done to a segment as its own
        # object (a damaged pack is test_replicate_packs').
        self.configure(self.key, compact=False)
        self.ship_under_writer(seconds=3)
        sealed_base = r"app/replica/g\d{8}/base\.db\.gz\.age"
        self.configure(self.other_key)
        path, result = self.restore("latest")
        self.assert_failed_cleanly(result, path, sealed_base)
        self.configure(None)
        path, result = self.restore("latest")
        self.assert_failed_cleanly(result, path, sealed_base + r".*identity")
        self.configure(self.key)

        # A flipped byte, with the sidecar's sha256 and size made to match:
        # the age authentication refuses it, naming the segment.
        segment = sorted(glob.glob(os.path.join(self.root(), "g*", "wal", "*.wal.gz.age")))[-1]
        with open(segment, "rb") as f:
            original = f.read()
        damaged = bytearray(original)
        damaged[-20] ^= 0x40
        sidecar = segment[:-len(".gz.age")] + ".json"
        with open(sidecar) as f:
            manifest = json.load(f)
        saved_manifest = dict(manifest)
        manifest["sha256"] = hashlib.sha256(damaged).hexdigest()
        with open(segment, "wb") as f:
            f.write(damaged)
        with open(sidecar, "w") as f:
            json.dump(manifest, f)
        name = re.escape(os.path.relpath(segment, self.offsite))
        path, result = self.restore("latest")
        self.assert_failed_cleanly(result, path, name)

        # Cut short, the manifest untouched: the stored bytes' sha256 refuses it.
        with open(sidecar, "w") as f:
            json.dump(saved_manifest, f)
        with open(segment, "wb") as f:
            f.write(original[:-100])
        path, result = self.restore("latest")
        self.assert_failed_cleanly(result, path, name)

        with open(segment, "wb") as f:
            f.write(original)
        path, result = self.restore("latest", check=0)


if __name__ == "__main__":
    unittest.main()

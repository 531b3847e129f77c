"""restore --at on a replica the agent itself shipped, under a writer process.

A separate writer commits one row per transaction, as fast as about 300
commits per second, and logs for each commit the wall time before and after COMMIT and a running
hash of the rows so far (row k's hash chains row k-1's: the hash of the
whole content after commit k). The agent ships with interval 1s to a dir
target. For random instants T, `restore --at T` must give exactly the
content after one of the writer's commits (the same hash), holding every
commit made before T minus interval (and a little slack for a loaded
machine) and none made after T; `latest` gives the last commit.
"""
import calendar
import hashlib
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
import unittest

from harness import AgentTestCase

WRITER = r"""
import hashlib, json, os, sqlite3, sys, time
path, log, stop = sys.argv[1:4]
db = sqlite3.connect(path, timeout=10, isolation_level=None)
h = hashlib.sha256(b"").hexdigest()
n = 0
with open(log, "w") as out:
    while not os.path.exists(stop):
        n += 1
        value = f"row-{n}-" + "x" * (n % 300)
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t(id, v) VALUES (?, ?)", (n, value))
        started = time.time()
        db.execute("COMMIT")
        h = hashlib.sha256((h + value).encode()).hexdigest()
        out.write(json.dumps([time.time(), n, h, started]) + "\n")
        time.sleep(0.002)
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


class RestoreAtAgentTest(AgentTestCase):
    interval = 1.0

    def setUp(self):
        super().setUp()
        self.offsite = os.path.join(self.dir, "offsite")
        os.makedirs(self.offsite)
        db = sqlite3.connect(self.db_path())
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        db.close()
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'replicate = {{ target = "nas"; interval = "1s"; }}; }}',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.offsite}"; }}')

    def run_writer(self, seconds):
        log = os.path.join(self.dir, "writer.log")
        stop = os.path.join(self.dir, "writer.stop")
        writer = subprocess.Popen([sys.executable, "-c", WRITER, self.db_path(), log, stop])
        self.processes.append(writer)
        time.sleep(seconds)
        open(stop, "w").close()
        writer.wait(timeout=30)
        with open(log) as f:
            return [json.loads(line) for line in f]

    def shipped_until(self):
        result = self.run_cli("backups", "app", "--remote", "--json")
        if result.returncode != 0:
            return None
        windows = [w for w in json.loads(result.stdout) if w.get("location") == "replica"]
        return windows[-1]["last_seen_at"] if windows else None

    def restore(self, at):
        path = os.path.join(self.dir, "restored.db")
        if os.path.exists(path):
            os.unlink(path)
        result = self.run_cli("restore", "app", "--to", path, "--at", at, check=0)
        seen = re.search(r"seen at (\S+) \(generation", result.stdout).group(1)
        return path, seen, result.stdout

    def wait_until_shipping_settles(self):
        """The replica's last commit time once it stopped moving (3 s)."""
        last, since = None, time.monotonic()
        while time.monotonic() - since < 3:
            now = self.shipped_until()
            if now != last:
                last, since = now, time.monotonic()
            time.sleep(0.2)
        return last

    def test_random_instants_restore_the_writers_exact_state(self):
        agent = self.start_agent()
        self.wait_for(lambda: os.path.exists(os.path.join(self.offsite, "app", "replica",
                                                          "index.json")),
                      timeout=30, what="the agent's first index.json")
        commits = self.run_writer(8)
        self.assertGreater(len(commits), 500)
        shipped = self.wait_until_shipping_settles()
        self.stop_agent(agent)
        self.assertIsNotNone(shipped)
        shipped_time = calendar.timegm(time.strptime(shipped[:19], "%Y-%m-%dT%H:%M:%S")) + \
            int(shipped[20:23]) / 1000
        print(f"writer: {len(commits)} commits, the last at {iso(commits[-1][0])}; "
              f"the replica's last commit seen at {shipped}")

        # latest: the newest commit shipped, with every commit made before it
        # (minus interval) and exactly the content after one of them.
        path, seen, out = self.restore("latest")
        rows, digest = content(path)
        self.assertEqual((commits[rows - 1][1], commits[rows - 1][2]), (rows, digest), out)
        self.assertEqual(seen, shipped)

        rng = random.Random(16)
        first_time = commits[0][0]
        instants = sorted(rng.uniform(first_time + self.interval + 0.5, shipped_time)
                          for _ in range(12))
        for at in instants:
            text = iso(at)
            with self.subTest(at=text):
                path, seen, out = self.restore(text)
                rows, digest = content(path)
                logged = commits[rows - 1]
                self.assertEqual((logged[1], logged[2]), (rows, digest),
                                 "not the content after one of the writer's commits")
                # The commit began before T (its end may be logged after
                # the agent saw it: seen_at is never before the commit).
                self.assertLessEqual(logged[3], at, "a commit made after T was restored")
                self.assertLessEqual(seen, text)
                before = [c for c in commits if c[0] <= at - self.interval - 1.0]
                if before:
                    self.assertGreaterEqual(rows, before[-1][1],
                                            "a commit made before T - interval is missing")

if __name__ == "__main__":
    unittest.main()

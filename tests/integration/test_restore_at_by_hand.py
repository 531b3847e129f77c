"""RESTORING BY HAND of sqlprodd-format(5), done exactly as written, on S3.

A replica (two generations chained by "from", then a break and a third with
its own base) is put on the loopback S3 server; then, for several commits:
  - `sqlprodd restore --at` that commit's seen_at, against the s3 target;
  - the man page's procedure with aws, gunzip, cat, head and sqlite3 only
    (`aws s3 cp --recursive` against the endpoint, then shell commands);
and both must have the writer's content at that commit (same hash), with
integrity_check ok. Reading the JSON (which generation, which end_offset)
is the operator's reading; every byte is moved by those tools alone.
"""
import glob
import json
import os
import hashlib
import shutil
import sqlite3
import subprocess
import time
import unittest

from harness import BUCKET, S3TestCase
from test_restore_at import ReplicaBuilder, content_hash, iso


def table_hash(path):
    db = sqlite3.connect(path)
    try:
        digest = hashlib.sha256()
        for row in db.execute("SELECT id, k, v FROM t ORDER BY id"):
            digest.update(repr(row).encode())
        return digest.hexdigest()
    finally:
        db.close()


def man_blocks():
    """The literal displays of sqlprodd-format(5), as a reader copies them."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "man", "sqlprodd-format.5")
    blocks, current = [], None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith(".Bd -literal"):
                current = []
            elif line.startswith(".Ed") and current is not None:
                blocks.append("\n".join(current).replace("\\e", "\\"))
                current = None
            elif current is not None:
                current.append(line)
    return blocks


def sh(command, cwd):
    result = subprocess.run(["sh", "-c", command], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result.stdout


class RestoreByHandTest(S3TestCase):
    def test_by_hand_and_restore_at_give_the_same_commit(self):
        self.assertTrue(shutil.which("gunzip") and shutil.which("sqlite3") and shutil.which("head"))
        server = self.start_server()
        staging = os.path.join(self.dir, "staging")
        b = ReplicaBuilder(self.dir, staging, commits_per_segment=4)
        self.addCleanup(b.close)
        for _ in range(14):
            b.commit()
        b.ship()
        for _ in range(3):
            b.commit()
        b.new_generation(base_file=False)
        for _ in range(9):
            b.commit()
        b.new_generation(base_file=True, gap_ms=120_000)
        for _ in range(7):
            b.commit()
        b.ship()
        self.aws_cli("s3", "cp", "--recursive", "--only-show-errors", staging,
                     f"s3://{BUCKET}/db/")
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; replicate = {{ target = "offsite"; }}; }}',
            targets=self.s3_target(server.url))

        # The operator fetches the replica with aws alone.
        fetched = os.path.join(self.dir, "fetched")
        self.aws_cli("s3", "cp", "--recursive", "--only-show-errors",
                     f"s3://{BUCKET}/db/app/replica/", fetched)

        for index in (5, 16, 20, 25, 26, 32):
            seen_ms, expected, generation = b.commits[index]
            with self.subTest(commit=index, generation=generation):
                tool = os.path.join(self.dir, "tool.db")
                result = self.run_cli("restore", "app", "--to", tool, "--at", iso(seen_ms),
                                      env=self.env, check=0)
                self.assertIn(f"seen at {iso(seen_ms)} (generation {generation},", result.stdout)
                try:
                    hand = self.restore_by_hand(fetched, iso(seen_ms))
                    self.assertEqual(content_hash(tool), expected)
                    self.assertEqual(content_hash(hand), expected)
                finally:
                    os.unlink(tool)

    def test_by_hand_on_the_agents_own_replica(self):
        """The same, on what the agent shipped to S3 under a writer, through
        its own WAL resets: by hand and restore --at give the same content
        for commits spread over every generation."""
        server = self.start_server()
        db = sqlite3.connect(self.db_path())
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
        db.close()
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'replicate = {{ target = "offsite"; interval = "1s"; }}; }}',
            targets=self.s3_target(server.url))
        agent = self.start_agent(env=self.env)
        writer = sqlite3.connect(self.db_path(), timeout=10, isolation_level=None)
        # At least 6 s, and until compaction made a pack: the recipe's
        # unpacking step is part of what is checked.
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 6 or not self.packed(started):
            n += 1
            writer.execute("INSERT INTO t(k, v) VALUES (?, ?)", (f"k{n}", os.urandom(n % 500)))
            time.sleep(0.003)
        writer.close()
        fetched = os.path.join(self.dir, "replica")

        def settled():
            result = self.aws_cli("s3", "cp", "s3://%s/db/app/replica/index.json" % BUCKET, "-",
                                  check=False)
            return result.returncode == 0 and result.stdout

        last, since = None, time.monotonic()
        while time.monotonic() - since < 3:
            now = settled()
            if now != last:
                last, since = now, time.monotonic()
            time.sleep(0.3)
        self.stop_agent(agent)
        self.aws_cli("s3", "cp", "--recursive", "--only-show-errors",
                     f"s3://{BUCKET}/db/app/replica/", fetched)
        # Step 2, the unpacking and its check, pasted as the man page prints them.
        self.assertTrue(os.listdir(os.path.join(fetched, "packs")))
        recipe = "\n".join(b for b in man_blocks() if "packs/*.pack.json" in b)
        self.assertIn("sha256sum -c", recipe)
        checked = subprocess.run(["bash", "-c", "set -e\n" + recipe], cwd=self.dir,
                                 capture_output=True, text=True)
        self.assertEqual((checked.returncode, checked.stdout, checked.stderr), (0, "", ""),
                         recipe)
        # The check is one: a pack changed by one byte fails it (on a copy).
        damaged = os.path.join(self.dir, "damaged")
        shutil.copytree(fetched, os.path.join(damaged, "replica"))
        pack = sorted(glob.glob(os.path.join(damaged, "replica", "packs", "*.pack")))[0]
        with open(pack, "r+b") as f:
            f.seek(os.path.getsize(pack) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 1]))
        check = next(b for b in man_blocks() if "sha256sum -c" in b)
        failed = subprocess.run(["bash", "-c", "set -e\ncd replica\n" + check], cwd=damaged,
                                capture_output=True, text=True)
        self.assertNotEqual(failed.returncode, 0, failed.stdout + failed.stderr)
        self.assertIn("FAILED", failed.stdout)
        seen = []
        for name in sorted(n for n in os.listdir(fetched) if n.startswith("g")):
            wal = os.path.join(fetched, name, "wal")
            for sidecar in sorted(f for f in os.listdir(wal) if f.endswith(".wal.json")):
                with open(os.path.join(wal, sidecar)) as f:
                    seen += [c["seen_at"] for c in json.load(f)["commits"]]
        times = sorted(set(seen))
        self.assertGreater(len(times), 3)
        generations = len([n for n in os.listdir(fetched) if n.startswith("g")])
        print(f"the agent's replica: {generations} generations, {len(seen)} commits, "
              f"{len(times)} distinct seen_at")
        for seen_at in times[1::max(1, len(times) // 6)] + [times[-1]]:
            with self.subTest(seen_at=seen_at):
                tool = os.path.join(self.dir, "tool.db")
                result = self.run_cli("restore", "app", "--to", tool, "--at", seen_at,
                                      env=self.env, check=0)
                self.assertIn(f"seen at {seen_at} (generation", result.stdout)
                try:
                    hand = self.restore_by_hand(fetched, seen_at, last_of_time=True)
                    self.assertEqual(table_hash(hand), table_hash(tool))
                finally:
                    os.unlink(tool)

    def packed(self, started):
        """Whether a pack is in the bucket (checked once a second)."""
        if time.monotonic() - started > 60:
            self.fail("no pack in the bucket after 60 s of writing")
        if getattr(self, "_looked", 0) > time.monotonic() - 1:
            return False
        self._looked = time.monotonic()
        listed = self.aws_cli("s3", "ls", f"s3://{BUCKET}/db/app/replica/packs/", check=False)
        return ".pack.json" in listed.stdout

    def restore_by_hand(self, fetched, seen_at, last_of_time=False):
        """RESTORING BY HAND, steps 1-4, for the commit seen at `seen_at`."""
        work = os.path.join(self.dir, "hand")
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        # 1. Read the sidecars: the generation and end_offset of the commit,
        #    then base.json "from" back to a generation with base.db.gz.
        chosen = end_offset = None
        for name in sorted(n for n in os.listdir(fetched) if n.startswith("g")):
            wal = os.path.join(fetched, name, "wal")
            for sidecar in sorted(f for f in os.listdir(wal) if f.endswith(".wal.json")):
                with open(os.path.join(wal, sidecar)) as f:
                    for commit in json.load(f)["commits"]:
                        if commit["seen_at"] == seen_at:
                            chosen, end_offset = name, commit["end_offset"]
                            if not last_of_time:
                                break
        self.assertIsNotNone(chosen)
        chain = [chosen]
        while True:
            with open(os.path.join(fetched, chain[0], "base.json")) as f:
                base = json.load(f)
            if "from" not in base:
                break
            chain.insert(0, base["from"].split("/")[0])
        # 2. Start from that base.
        sh(f"gunzip < {fetched}/{chain[0]}/base.db.gz > restored.db; "
           "rm -f restored.db-wal restored.db-shm", work)
        # 3. Every generation before the chosen one, all of it.
        for name in chain[:-1]:
            out = sh(f"cat {fetched}/{name}/wal/*.wal.gz | gunzip > restored.db-wal && "
                     "sqlite3 restored.db 'PRAGMA integrity_check'", work)
            self.assertEqual(out.strip(), "ok")
            self.assertFalse(os.path.exists(os.path.join(work, "restored.db-wal")))
        # 4. The chosen generation, cut at the commit.
        out = sh(f"cat {fetched}/{chain[-1]}/wal/*.wal.gz | gunzip | head -c {end_offset} "
                 "> restored.db-wal && sqlite3 restored.db 'PRAGMA integrity_check'", work)
        self.assertEqual(out.strip(), "ok")
        return os.path.join(work, "restored.db")


if __name__ == "__main__":
    unittest.main()

"""Compaction of a replica (issue 17, sqlprodd-format(5) PACKS): the agent
merges the objects it put into packs as they age, so that a busy database
leaves tens of objects on the target, not one per second, and restores
stay exact.

Checked as an operator would, on the target itself: after a writer ran at
several hundred commits per second, the target holds packs of more than
one level and at most 15 loose objects that are not base files; the
replica, unpacked by hand as the man page says, has every generation whole
(replica_checks.layout_problems); `restore --at` at random instants gives
exactly the writer's commits; once the writes stop nothing on the target
changes (an idle database uploads and compacts nothing). A loose object
changed on the target is refused by the merge and named, never packed
under a fresh hash. On a dir target and on the loopback S3 server.
"""
import json
import os
import re
import time
import unittest

from pitr_writer import ReplicaWriter, create
from replica_case import ReplicaTestCase
from replica_checks import PACK, restore, sync_s3

LOOSE_MAX = 15  # PACK_FANOUT_LOOSE - 1


def listing(root):
    """{key relative to root: (size, mtime)} of every object under root."""
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return out


class ReplicaCompactionTest(ReplicaTestCase):
    def target_replica(self):
        """PREFIX/app/replica as the target holds it (packed, not unpacked)."""
        if self.target_kind == "dir":
            return os.path.join(self.offsite, "app", "replica")
        local = os.path.join(self.dir, "s3-raw")
        os.makedirs(local, exist_ok=True)
        for name in os.listdir(local):
            os.system(f"rm -rf '{os.path.join(local, name)}'")
        sync_s3(self, "db/app/replica", local)
        return local

    def check_packed(self, root):
        """What the target holds: (packs by level, loose objects other than
        base files and index.json, objects the packs hold)."""
        levels, held, loose = {}, 0, []
        for key in listing(root):
            if key.startswith("packs/"):
                name = key[len("packs/"):]
                if PACK.match(name):
                    with open(os.path.join(root, key + ".json")) as f:
                        header = json.loads(f.readline())
                    levels[header["level"]] = levels.get(header["level"], 0) + 1
                    held += header["count"]
                continue
            if key == "index.json" or re.search(r"/base\.db\.gz(\.age)?$", key):
                continue
            loose.append(key)
        return levels, loose, held

    def run_and_check(self, kind, seconds, instants, min_level, fewer):
        report, commits, results = self.window(kind, seconds=seconds, instants=instants,
                                               finish=False)
        root = self.target_replica()
        levels, loose, held = self.check_packed(root)
        total = len(listing(root))
        print(f"{self.id()}: {total} objects on the target for {held + len(loose)} objects "
              f"put; packs by level {dict(sorted(levels.items()))}, {len(loose)} loose")
        self.fail_pending()
        # What a restore reads: the bound is 100 objects for any
        # instant of a week (this replica is a few seconds of one).
        to = os.path.join(self.dir, "latest.db")
        code, out, err = restore(self.config_path, "app", to, "latest", env=self.agent_env())
        self.assertEqual(code, 0, out + err)
        read = re.search(r"\((\d+) objects read, (\d+) of them packs?\)", out)
        self.assertIsNotNone(read, out)
        print(f"restore --at latest read {read.group(1)} objects, {read.group(2)} of them packs")
        self.assertLessEqual(int(read.group(1)), 100)
        self.assertGreater(int(read.group(2)), 0)
        self.assertTrue(levels, "no pack was made")
        self.assertGreaterEqual(max(levels), min_level, f"packs by level: {levels}")
        self.assertLessEqual(len(loose), LOOSE_MAX, f"loose objects left unpacked: {loose}")
        self.assertLess(total * fewer, held + len(loose),
                        "the target holds not much fewer objects than were put")
        self.assertNotRegex(self.agent_log(), r"compacting|compaction: ")
        return root

    def newest_pack_after(self, root, segment):
        """Whether a pack holds an object of a generation after SEGMENT's, or
        of its own but further on."""
        generation, name = segment.split(os.sep)[-3], os.path.basename(segment)
        packs = os.path.join(root, "packs")
        for manifest in os.listdir(packs) if os.path.isdir(packs) else []:
            if not manifest.endswith(".pack.json"):
                continue
            try:
                with open(os.path.join(packs, manifest)) as f:
                    keys = [json.loads(line).get("key") for line in f][1:]
            except (OSError, ValueError):
                continue
            for key in keys:
                parts = key.split("/")
                if parts[0] > generation or (parts[0] == generation and parts[-1] > name):
                    return True
        return False

    def test_dir_target_packs_and_restores_exactly(self):
        # About 3.6 objects a second at 400 commits/s: 64 (a level-2 pack)
        # in 18 s.
        self.run_and_check("dir", seconds=20, instants=20, min_level=2, fewer=4)

    def test_s3_target_packs_and_restores_exactly(self):
        root = self.run_and_check("s3", seconds=14, instants=10, min_level=1, fewer=2)
        # A merge streams its members from the target into the pack's
        # upload: each member read back once (a ranged GET of at most 8 MiB,
        # PACK_STREAM_WINDOW_BYTES), staged in the spool's .merge directory
        # only until sent, never as a local copy of the whole pack.
        packed = set()
        for name in os.listdir(os.path.join(root, "packs")):
            if name.endswith(".pack.json"):
                with open(os.path.join(root, "packs", name)) as f:
                    packed.update(json.loads(line)["key"] for line in f.read().splitlines()[1:])
        reads = {}
        for r in self.server.requests():
            key = r["path"].split("/app/replica/", 1)[-1]
            if r["method"] == "GET" and key in packed and r["headers"].get("range"):
                reads.setdefault(key, []).append(r["headers"]["range"])
        self.assertTrue(reads, "no member was read back by a ranged GET")
        twice = {k: v for k, v in reads.items() if len(v) > 1}
        self.assertFalse(twice, f"members read back more than once: {twice}")
        merge = os.path.join(self.state_dir, "replica", "app", ".merge")
        self.assertEqual(os.listdir(merge), [], "parts left staged")

    def test_an_idle_database_uploads_and_compacts_nothing(self):
        create(self.db)
        self.configure("dir")
        agent = self.start_replicating()
        writer = ReplicaWriter(self.db, rate=300)
        self.processes.append(writer.process)
        time.sleep(8)
        report = writer.stop()
        self.writer_report_ok(report)
        self.wait_caught_up(writer.commits())
        root = self.target_replica()
        # The last upload wakes the last merges: let them end.
        previous = None
        for _ in range(40):
            now = listing(root)
            if now == previous:
                break
            previous = now
            time.sleep(0.5)
        time.sleep(5)
        self.assertEqual(listing(root), previous, "the target changed while nothing was written")
        self.assertIsNone(agent.poll())
        self.stop_agent(agent)

    def test_a_loose_object_changed_on_the_target_is_not_packed(self):
        """The merge reads each member back and checks it against the SHA-256
        recorded when it was put: a member changed on the target stops the
        merge with an error naming it, and the pack is never made."""
        create(self.db)
        self.configure("dir")
        agent = self.start_replicating()
        root = self.target_replica()
        writer = ReplicaWriter(self.db, rate=100)
        self.processes.append(writer.process)
        # A loose segment, damaged as soon as it is on the target (a merge
        # takes 16 objects: seconds at this rate).
        segment = None
        deadline = time.monotonic() + 30
        while segment is None and time.monotonic() < deadline:
            for key in sorted(listing(root)):
                if key.endswith(".wal.gz") and "packs/" not in key:
                    segment = os.path.join(root, key)
                    break
            time.sleep(0.01)
        self.assertIsNotNone(segment, "no segment on the target")
        with open(segment, "r+b") as f:
            f.seek(10)
            byte = f.read(1)
            f.seek(10)
            f.write(bytes([byte[0] ^ 0xFF]))
        name = os.path.relpath(segment, os.path.join(self.offsite))
        self.wait_for(lambda: "changed on the target; not packed" in self.agent_log(),
                      timeout=60, interval=0.3, what="the merge to refuse the changed object")
        # The objects after it still make packs: compaction goes on.
        self.wait_for(lambda: self.newest_pack_after(root, segment), timeout=60, interval=0.3,
                      what="a pack of objects put after the changed one")
        report = writer.stop()
        self.writer_report_ok(report)
        self.stop_agent(agent)
        self.assertIn(name, self.agent_log())
        # No pack holds the changed object.
        levels, loose, _ = self.check_packed(root)
        self.assertIn(os.path.relpath(segment, root), loose)
        for manifest in os.listdir(os.path.join(root, "packs")) if os.path.isdir(
                os.path.join(root, "packs")) else []:
            if manifest.endswith(".pack.json"):
                with open(os.path.join(root, "packs", manifest)) as f:
                    keys = [json.loads(line).get("key") for line in f]
                self.assertNotIn(os.path.relpath(segment, root), keys, manifest)


if __name__ == "__main__":
    unittest.main()

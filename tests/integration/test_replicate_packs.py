"""Restore and verify from a replica whose objects compaction moved into
packs (sqlprodd-format(5) PACKS, docs/replication-design.md 2.7).

The agent replicates a database a real writer changes, with the
application's own TRUNCATE checkpoints so that the window holds several
generations; then it is stopped and the replica packed by hand, as an
operator could: runs of generations, their base.json, segments and
sidecars concatenated in generation/name order into
packs/gA-gB.N.pack, the JSON Lines manifest written after it, the loose
copies deleted. Restores at instants across the window (the oldest
`backups --remote` advertises and latest included) must give exactly the
writer's commits, and verify (with and without --data) must pass; damaged
packs and manifests are refused naming them, with no output left.
"""
import glob
import hashlib
import json
import os
import re
import shutil
import time
import unittest

from pitr_writer import content_hash, create, ReplicaWriter
from replica_case import INTERVAL, RATE, ReplicaTestCase
from replica_checks import parse_rfc3339, random_instants, restore, restore_many, rfc3339

SECONDS = 14
PACKABLE = re.compile(r"^g\d{8}/(base\.json|wal/\d{12}-\d{12}\.wal\.(gz|gz\.age|json))$")


def generations_of(root):
    return sorted(name for name in os.listdir(root) if re.fullmatch(r"g\d{8}", name))


def packable_keys(root, generation):
    """The keys (relative to replica/) a pack may hold, in name order."""
    keys = []
    for path in glob.glob(os.path.join(root, generation, "**"), recursive=True):
        key = os.path.relpath(path, root)
        if os.path.isfile(path) and PACKABLE.match(key):
            keys.append(key)
    return sorted(keys)


def write_pack(root, database, keys, pack_id, level=1, source=None, delete=True):
    """Packs KEYS (read from SOURCE, default ROOT) into ROOT/packs: the pack
    first, then its manifest; the loose copies deleted when DELETE.
    Returns (pack path, manifest path)."""
    source = source or root
    numbers = [int(key[1:9]) for key in keys]
    first, last = min(numbers), max(numbers)
    os.makedirs(os.path.join(root, "packs"), exist_ok=True)
    name = f"g{first:08d}-g{last:08d}.{pack_id:012d}"
    pack_path = os.path.join(root, "packs", name + ".pack")
    objects, offset, whole = [], 0, hashlib.sha256()
    with open(pack_path, "wb") as pack:
        for key in keys:
            with open(os.path.join(source, key), "rb") as f:
                data = f.read()
            pack.write(data)
            whole.update(data)
            objects.append({"key": key, "offset": offset, "size": len(data),
                            "sha256": hashlib.sha256(data).hexdigest()})
            offset += len(data)
    header = {"format": 1, "database": database, "first_generation": first,
              "last_generation": last, "id": pack_id, "level": level, "size": offset,
              "sha256": whole.hexdigest(), "count": len(objects)}
    manifest_path = pack_path + ".json"
    with open(manifest_path, "w") as f:
        for record in [header] + objects:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
    if delete:
        for key in keys:
            os.unlink(os.path.join(root, key))
    return pack_path, manifest_path


class ReplicatePacksTest(ReplicaTestCase):
    def configure(self, kind="dir", **kwargs):
        """As ReplicaTestCase's, with the agent's own compaction off: these
        tests pack by hand, and choose which objects are where."""
        import replica_case
        original = replica_case.replicate_entry
        replica_case.replicate_entry = lambda **entry: original(extra="compact = false;", **entry)
        try:
            super().configure(kind, **kwargs)
        finally:
            replica_case.replicate_entry = original

    def make_replica(self, kind="dir", seconds=SECONDS, snapshot_every="1d", until=None):
        """The agent and a writer with its own TRUNCATE checkpoints, stopped
        after `seconds` and, if given, once until(index.json's generations)
        holds (at most a minute more: a loaded machine is slow to snapshot):
        (commits, generations)."""
        create(self.db)
        self.configure(kind, snapshot_every=snapshot_every)
        agent = self.start_replicating()
        writer = ReplicaWriter(self.db, rate=RATE, checkpoint="truncate:400")
        self.processes.append(writer.process)
        time.sleep(seconds)
        deadline = time.monotonic() + 60
        while until and time.monotonic() < deadline:
            try:
                with open(os.path.join(self.local_replica(), "index.json")) as f:
                    if until(json.load(f)["generations"]):
                        break
            except (OSError, ValueError):
                pass  # not there yet, or caught while the copy is written
            time.sleep(1)
        self.assertIsNone(agent.poll(), f"the agent exited\n{self.agent_log()}")
        report = writer.stop()
        self.writer_report_ok(report)
        commits = writer.commits()
        self.wait_caught_up(commits)
        self.stop_agent(agent)
        generations = generations_of(self.local_replica())
        self.assertGreaterEqual(len(generations), 4,
                                f"the window should span several generations: {generations}")
        return commits, generations

    def local_replica(self):
        """PREFIX/app/replica itself on a dir target (not a view of it: the
        tests change it); a synced copy for S3."""
        if self.target_kind == "dir":
            return os.path.join(self.offsite, "app", "replica")
        return self.replica_root()

    def restore_to(self, at, name="probe.db"):
        to = os.path.join(self.dir, name)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(to + suffix):
                os.unlink(to + suffix)
        code, out, err = restore(self.config_path, "app", to, at, env=self.agent_env())
        return code, out, err, to

    def assert_latest(self, commits, what):
        code, out, err, to = self.restore_to("latest")
        self.assertEqual(code, 0, f"{what}: restore --at latest failed: {err}")
        last = max(commits)
        self.assertEqual(content_hash(to), (last, commits[last][2]), what)
        return out

    def assert_refused(self, words, what, at="latest"):
        code, out, err, to = self.restore_to(at)
        self.assertNotEqual(code, 0, f"{what}: restore succeeded: {out}")
        for word in words:
            self.assertIn(word, err, f"{what}: the error does not name {word}")
        leftovers = [n for n in os.listdir(self.dir) if n.startswith("probe.db")]
        self.assertEqual(leftovers, [], f"{what}: files left beside the output")
        return err

    def oldest_advertised(self):
        result = self.run_cli("backups", "app", "--remote", "--json", env=self.agent_env())
        self.assertEqual(result.returncode, 0, result.stderr)
        windows = [w for w in json.loads(result.stdout) if w.get("location") == "replica"]
        self.assertTrue(windows, result.stdout)
        return min(w["first_seen_at"] for w in windows)

    def pack_by_hand(self, root, generations):
        """Generations but the newest in two packs (ids 1 and 2), the
        newest left loose. Returns [(pack, manifest, keys)]."""
        packed = generations[:-1]
        half = max(1, len(packed) // 2)
        packs = []
        for pack_id, run in enumerate((packed[:half], packed[half:]), start=1):
            keys = [key for g in run for key in packable_keys(root, g)]
            pack, manifest = write_pack(root, "app", keys, pack_id)
            packs.append((pack, manifest, keys))
        return packs

    def test_restore_and_verify_read_objects_moved_into_packs(self):
        commits, generations = self.make_replica()
        root = self.local_replica()
        keep = os.path.join(self.dir, "loose-copy")
        shutil.copytree(root, keep)
        packs = self.pack_by_hand(root, generations)
        for g in generations[:-1]:
            self.assertEqual(packable_keys(root, g), [], f"{g} still has loose objects")

        # Restores across the window: the oldest advertised, random instants, latest.
        oldest = self.oldest_advertised()
        code, out, err, to = self.restore_to(oldest)
        self.assertEqual(code, 0, f"restore --at {oldest} (oldest advertised): {err}")
        # the state before the writer's first commit (k 0) or after one of them
        k, digest = content_hash(to)
        self.assertTrue(k == 0 or (k in commits and commits[k][2] == digest),
                        f"restore --at {oldest} gave k={k}, not a logged commit")
        instants = random_instants(commits, 6, INTERVAL, seed=7)
        restore_many(self, self.config_path, "app", instants, commits, INTERVAL, self.dir)
        out = self.assert_latest(commits, "from packs")
        self.assertRegex(out, r"\(\d+ objects read, \d+ of them packs?\)")
        self.assertNotRegex(out, r", 0 of them packs\)")
        self.assertEqual([n for n in os.listdir(self.dir) if ".replica-" in n], [],
                         "temp files left")

        # verify: sizes only (no pack downloaded), then every byte.
        for args in ((), ("--data",)):
            result = self.run_cli("verify", "app", *args)
            self.assertEqual(result.returncode, 0,
                             f"verify {' '.join(args)}: {result.stdout}{result.stderr}")

        # A crash between the pack's upload and the deletion: both present.
        for g in generations[:-1]:
            shutil.copytree(os.path.join(keep, g), os.path.join(root, g), dirs_exist_ok=True)
        self.assert_latest(commits, "pack and loose copies both present")
        self.assertEqual(self.run_cli("verify", "app").returncode, 0)
        for g in generations[:-1]:
            for key in packable_keys(root, g):
                os.unlink(os.path.join(root, key))

        # Two packs holding the same objects: a merge not yet cleaned up.
        all_keys = packs[0][2] + packs[1][2]
        merged, merged_manifest = write_pack(root, "app", all_keys, 3, level=2, source=keep,
                                             delete=False)
        self.assert_latest(commits, "a merged pack beside the packs it merged")
        self.assertEqual(self.run_cli("verify", "app", "--data").returncode, 0)

        # One flipped byte in the newest pack: refused naming it, nothing left.
        with open(merged, "r+b") as f:
            f.seek(os.path.getsize(merged) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))
        self.assert_refused([os.path.basename(merged), "sha256"], "a flipped byte")
        # Without --data verify reads no pack: sizes and manifests only.
        result = self.run_cli("verify", "app")
        self.assertEqual(result.returncode, 0,
                         f"verify without --data read a pack: {result.stdout}{result.stderr}")
        result = self.run_cli("verify", "app", "--data")
        self.assertNotEqual(result.returncode, 0, "verify --data passed a damaged pack")
        self.assertIn(os.path.basename(merged), result.stdout + result.stderr)
        os.unlink(merged)
        os.unlink(merged_manifest)
        self.assert_latest(commits, "the damaged pack removed")

        # A manifest whose offsets do not add up: refused naming it.
        pack, manifest, _ = packs[0]
        with open(manifest) as f:
            lines = f.read().splitlines()
        record = json.loads(lines[2])
        record["offset"] += 1
        bad = lines[:2] + [json.dumps(record, separators=(",", ":"))] + lines[3:]
        with open(manifest, "w") as f:
            f.write("\n".join(bad) + "\n")
        self.assert_refused([os.path.basename(manifest)], "offsets that do not add up")
        with open(manifest, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.assert_latest(commits, "the manifest repaired")

        # A pack without its manifest does not count: what it holds is missing.
        os.unlink(manifest)
        err = self.assert_refused(["missing"], "a pack without its manifest")
        held = sorted({key[:9] for key in packs[0][2]})
        self.assertTrue(any(f"/{g}/" in err for g in held),
                        f"the error names no object of {held}: {err}")

    def test_restore_from_packs_on_s3(self):
        # A base every 3 s: chains that start inside the pack, not at its head.
        def base_inside(index):
            # A generation after the first starts a chain with two after it.
            return any(g["base"] == "file" for g in index[1:-2])

        commits, generations = self.make_replica("s3", seconds=10, snapshot_every="3s",
                                                 until=base_inside)
        from harness import BUCKET
        local = self.local_replica()
        packed = generations[:-1]
        keys = [key for g in packed for key in packable_keys(local, g)]
        pack, manifest = write_pack(local, "app", keys, 1, delete=False)
        for path in (pack, manifest):
            self.aws_cli("s3", "cp", path,
                         f"s3://{BUCKET}/db/app/replica/packs/{os.path.basename(path)}")
        for key in keys:
            self.aws_cli("s3", "rm", f"s3://{BUCKET}/db/app/replica/{key}")
        with open(os.path.join(local, "index.json")) as f:
            index = json.load(f)["generations"]
        names = [g["name"] for g in index]

        def chain_start(name):
            i = names.index(name)
            while index[i]["base"] != "file":
                i -= 1
            return names[i]

        out = self.assert_latest(commits, "from a pack on S3")
        needed = int(chain_start(generations[-1]) <= packed[-1])
        self.assertIn(f", {needed} of them pack{'' if needed == 1 else 's'})", out)

        # Of a pack, only the span a restore replays is downloaded, with one
        # ranged GET: to an instant in a generation G whose chain starts
        # after the pack's first generation, and before its last, neither
        # the generations before G's base nor those after G are fetched.
        inner = [g for g in packed[1:-1] if chain_start(g) > packed[0]]
        self.assertTrue(inner, f"no chain starts inside the pack: {index}")
        chosen = index[names.index(inner[0])]
        start = chain_start(chosen["name"])
        at = (parse_rfc3339(chosen["first_seen_at"]) + parse_rfc3339(chosen["last_seen_at"])) / 2
        self.server.clear_requests()
        restore_many(self, self.config_path, "app", [at], commits, INTERVAL, self.dir,
                     env=self.agent_env())
        pack_gets = [r for r in self.server.requests()
                     if r["method"] == "GET" and r["path"].endswith(os.path.basename(pack))]
        self.assertEqual(len(pack_gets), 1, pack_gets)
        self.assertEqual(pack_gets[0]["status"], 206, pack_gets[0])
        asked = re.fullmatch(r"bytes=(\d+)-(\d+)", pack_gets[0]["headers"].get("range", ""))
        self.assertIsNotNone(asked, pack_gets[0])
        with open(manifest) as f:
            records = [json.loads(line) for line in f.read().splitlines()[1:]]
        replayed = [r for r in records if start <= r["key"][:9] <= chosen["name"]]
        expected = (min(r["offset"] for r in replayed),
                    max(r["offset"] + r["size"] for r in replayed) - 1)
        self.assertEqual((int(asked.group(1)), int(asked.group(2))), expected,
                         f"generations {start}..{chosen['name']} of a pack of "
                         f"{os.path.getsize(pack)} bytes")
        self.assertGreater(expected[0], 0)
        self.assertLess(expected[1] + 1, os.path.getsize(pack))

        oldest = self.oldest_advertised()
        code, _, err, to = self.restore_to(oldest)
        self.assertEqual(code, 0, f"restore --at {oldest} from S3: {err}")


if __name__ == "__main__":
    unittest.main()

"""`sqlprodd restore DB --to PATH --at TIME` and `backups --remote` on WAL replicas.

The replicas here are made in Python from a real database and its real WAL,
in the layout of sqlprodd-format(5) on a dir target, so that every case is
exact and repeatable: one application connection (autocheckpoint off) writes
commits; after each, the end of its bytes in the -wal, its frame, the
database size and a content hash are recorded, with a seen_at one second
apart. A generation ends with a TRUNCATE checkpoint, and the next either
starts "from" the end of it (a clean change) or from a base file of its own
(a break, as the agent makes after it lost continuity).

What a user checks: the restored file has exactly the content the writer
had after the commit whose seen_at restore prints; integrity_check is ok;
every refusal names the object and what to do.
"""
import calendar
import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sqlite3
import time
import unittest

from harness import BIN, AgentTestCase

PAGE_SIZE = 4096
EPOCH = calendar.timegm((2026, 11, 1, 8, 0, 0))  # seen_at of the first commit


def iso(seconds_ms):
    seconds, ms = divmod(int(seconds_ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def content_hash(path):
    """Every row of t, hashed: what the writer logs after each commit."""
    db = sqlite3.connect(path)
    try:
        digest = hashlib.sha256()
        for row in db.execute("SELECT id, k, v FROM t ORDER BY id"):
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


class ReplicaBuilder:
    """Writes a database and ships it, by hand, as the agent would."""

    def __init__(self, directory, target, database="app", commits_per_segment=3, seed=1,
                 hashes=True, preload_bytes=0):
        self.dir = directory
        self.target = target
        self.database = database
        self.per_segment = commits_per_segment
        self.hashes = hashes
        self.db = os.path.join(directory, database + "-source.db")
        self.con = sqlite3.connect(self.db, isolation_level=None)
        self.con.execute(f"PRAGMA page_size={PAGE_SIZE}")
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA wal_autocheckpoint=0")
        self.con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
        self.con.execute("CREATE INDEX t_k ON t(k)")
        # Rows already in the base: a database larger than SQLite's page
        # cache (2 MiB by default) fills it whatever the WAL holds.
        self.con.execute("CREATE TABLE preload(v BLOB)")
        for _ in range(preload_bytes // 8192):
            self.con.execute("INSERT INTO preload(v) VALUES (?)", (os.urandom(8192),))
        self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.rng = __import__("random").Random(seed)
        self.clock_ms = EPOCH * 1000
        self.generations = []  # dicts: name, base, commits [...]
        self.commits = []  # every commit: (seen_ms, hash, generation)
        self.next_id = 1
        self.start_generation(base_file=True)

    def replica(self, *parts):
        return os.path.join(self.target, self.database, "replica", *parts)

    def start_generation(self, base_file):
        """Called right after a TRUNCATE checkpoint: the WAL is empty."""
        number = len(self.generations) + 1
        name = f"g{number:08d}"
        os.makedirs(self.replica(name, "wal"), exist_ok=True)
        generation = {"name": name, "commits": [], "segments": []}
        if base_file:
            with open(self.db, "rb") as f:
                raw = f.read()
            data = gzip.compress(raw, mtime=0)
            with open(self.replica(name, "base.db.gz"), "wb") as f:
                f.write(data)
            base = {"format": 1, "generation": number, "frame": 0,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "size": len(data), "database_bytes": len(raw), "page_size": PAGE_SIZE,
                    "taken_at": iso(self.clock_ms)}
            generation["base"] = "file"
        else:
            previous = self.generations[-1]["name"]
            base = {"format": 1, "generation": number, "frame": 0, "from": f"{previous}/end",
                    "page_size": PAGE_SIZE, "taken_at": iso(self.clock_ms)}
            generation["base"] = f"{previous}/end"
        with open(self.replica(name, "base.json"), "w") as f:
            json.dump(base, f)
        self.generations.append(generation)

    def commit(self, rows=None):
        """One transaction of inserts, updates and now and then deletes."""
        rows = rows or self.rng.randint(1, 12)
        self.con.execute("BEGIN")
        for _ in range(rows):
            self.con.execute("INSERT INTO t(id, k, v) VALUES (?, ?, ?)",
                             (self.next_id, f"key-{self.rng.random()}",
                              os.urandom(self.rng.choice((10, 300, 3000, 9000)))))
            self.next_id += 1
        if self.next_id % 7 == 0:
            self.con.execute("DELETE FROM t WHERE id % 5 = 0")
        self.con.execute("UPDATE t SET k = k || 'u' WHERE id = ?", (self.rng.randint(1, self.next_id),))
        self.con.execute("COMMIT")
        self.clock_ms += 1000
        end = os.path.getsize(self.db + "-wal")
        frame = (end - 32) // (24 + PAGE_SIZE)
        pages = self.con.execute("PRAGMA page_count").fetchone()[0]
        digest = content_hash(self.db) if self.hashes else None
        generation = self.generations[-1]
        generation["commits"].append({"frame": frame, "end_offset": end, "db_pages": pages,
                                      "seen_at": iso(self.clock_ms)})
        self.commits.append((self.clock_ms, digest, generation["name"]))
        return self.clock_ms, digest

    def ship(self):
        """Writes the segments of the current generation not shipped yet."""
        generation = self.generations[-1]
        shipped = sum(len(s["commits"]) for s in generation["segments"])
        pending = generation["commits"][shipped:]
        with open(self.db + "-wal", "rb") as f:
            wal = f.read()
        for i in range(0, len(pending), self.per_segment):
            commits = pending[i:i + self.per_segment]
            start = generation["segments"][-1]["end"] if generation["segments"] else 0
            end = commits[-1]["end_offset"]
            data = gzip.compress(wal[start:end], mtime=0)
            name = f"{start:012d}-{end:012d}"
            with open(self.replica(generation["name"], "wal", name + ".wal.gz"), "wb") as f:
                f.write(data)
            frame_header = end - (24 + PAGE_SIZE)
            sidecar = {"format": 1, "generation": int(generation["name"][1:]),
                       "start": start, "end": end, "page_size": PAGE_SIZE,
                       "big_endian_checksum": bool(wal[3] & 1),
                       "salt": list(struct.unpack(">II", wal[16:24])),
                       "checksum": list(struct.unpack(">II",
                                                      wal[frame_header + 16:frame_header + 24])),
                       "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                       "commits": commits}
            with open(self.replica(generation["name"], "wal", name + ".wal.json"), "w") as f:
                json.dump(sidecar, f)
            generation["segments"].append({"name": name, "end": end, "commits": commits})
        self.write_index()

    def write_index(self):
        items = []
        for g in self.generations:
            shipped = [c for s in g["segments"] for c in s["commits"]]
            if not shipped:
                continue
            items.append({"name": g["name"], "first_seen_at": shipped[0]["seen_at"],
                          "last_seen_at": shipped[-1]["seen_at"], "base": g["base"]})
        with open(self.replica("index.json"), "w") as f:
            json.dump({"format": 1, "database": self.database, "generations": items,
                       "updated_at": iso(self.clock_ms)}, f)

    def new_generation(self, base_file=False, gap_ms=0):
        """Ships the rest, checkpoints (TRUNCATE), and starts the next
        generation; `gap_ms` of time pass before its first commit."""
        self.ship()
        busy, _, _ = self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
        self.clock_ms += gap_ms
        self.start_generation(base_file)

    def close(self):
        self.con.close()

    def expected_at(self, at_ms):
        """(seen_ms, hash, generation) of the last commit seen at or before at_ms."""
        before = [c for c in self.commits if c[0] <= at_ms]
        return before[-1] if before else None


class RestoreAtCase(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.offsite = os.path.join(self.dir, "offsite")
        os.makedirs(self.offsite)
        shutil.copy  # noqa: B018 (keep the import for subclasses)
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'replicate = {{ target = "nas"; }}; }}',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.offsite}"; }}')

    def build(self, **kwargs):
        builder = ReplicaBuilder(self.dir, self.offsite, **kwargs)
        self.addCleanup(builder.close)
        return builder

    def restore_at(self, at, to="restored.db", check=0, extra=(), env=None):
        target = os.path.join(self.dir, to)
        result = self.run_cli("restore", "app", "--to", target, "--at", at, *extra, check=check,
                              env=env)
        return target, result

    def assert_restored(self, builder, at_text, at_ms, to="restored.db"):
        seen_ms, digest, generation = builder.expected_at(at_ms)
        path, result = self.restore_at(at_text, to=to)
        self.assertIn(f"as of the commit seen at {iso(seen_ms)} (generation {generation},",
                      result.stdout)
        self.assertIn("quick_check ok", result.stdout)
        self.assertEqual(content_hash(path), digest, f"--at {at_text}: {result.stdout}")
        self.assertEqual(integrity(path), "ok")
        for suffix in ("-wal", "-shm"):
            self.assertFalse(os.path.exists(path + suffix), suffix)
        leftovers = [f for f in os.listdir(self.dir) if "sqlprodd-tmp" in f]
        self.assertEqual(leftovers, [], "temp files left beside the output")
        os.unlink(path)
        return result


class RestoreAtTest(RestoreAtCase):
    def three_generations(self):
        """g1 (base file) -> g2 (from g1/end) -> break -> g3 (base file)."""
        b = self.build()
        for _ in range(20):
            b.commit()
        b.ship()
        for _ in range(5):
            b.commit()
        b.new_generation(base_file=False)
        for _ in range(15):
            b.commit()
        b.new_generation(base_file=True, gap_ms=60_000)
        for _ in range(10):
            b.commit()
        b.ship()
        return b

    def test_latest_and_every_point_give_the_writers_state(self):
        b = self.three_generations()
        result = self.assert_restored(b, "latest", 2 ** 62)
        self.assertIn("generation g00000003", result.stdout)
        # Times between commits, on commits exactly, in all three generations
        # and in the break between g2 and g3 (restores g2's last commit).
        instants = [b.commits[i][0] for i in (0, 1, 7, 19, 20, 24, 25, 26, 39, 40, 49)]
        instants += [b.commits[i][0] + 500 for i in (3, 22, 33, 39, 45)]
        instants.append(b.commits[39][0] + 30_000)  # inside the break
        for at_ms in instants:
            self.assert_restored(b, iso(at_ms), at_ms)
        # The chain g1 -> g2 is replayed generation by generation.
        result = self.assert_restored(b, iso(b.commits[30][0]), b.commits[30][0])
        self.assertIn("over 2 generations from the base of g00000001 (", result.stdout)
        # An offset, and a relative time (every commit is months old: latest).
        at = b.commits[10][0]
        local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at // 1000 + 3600)) + "+01:00"
        self.assert_restored(b, local, at)
        self.assert_restored(b, "-15m", 2 ** 62)

    def test_sqlite_replay_and_direct_page_apply_write_the_same_bytes(self):
        """Design 2.5.4: writing the last version of each page is what
        SQLite's checkpoint does; both ways give byte-identical files at
        every point, across chained generations and a shrinking VACUUM."""
        b = self.three_generations()
        b.commit()
        b.con.execute("DELETE FROM t WHERE id % 2 = 0")
        b.con.execute("VACUUM")  # a commit that makes the file smaller
        b.clock_ms += 1000
        b.ship()
        for index in (3, 24, 31, 40, len(b.commits) - 1):
            at = iso(b.commits[index][0]) if index < len(b.commits) - 1 else "latest"
            files = {}
            for method in ("sqlite", "pages"):
                path = os.path.join(self.dir, f"{method}.db")
                result = self.run_cli("restore", "app", "--to", path, "--at", at,
                                      env={"SQLPRODD_RESTORE_APPLY": method}, check=0)
                self.assertIn("quick_check ok", result.stdout)
                self.assertIn({"sqlite": "(replayed by SQLite)",
                               "pages": "(pages written directly)"}[method], result.stdout)
                with open(path, "rb") as f:
                    files[method] = hashlib.sha256(f.read()).hexdigest()
                os.unlink(path)
            self.assertEqual(files["sqlite"], files["pages"], f"--at {at}")

    def test_segments_too_large_to_inflate_whole_are_streamed(self):
        """A segment whose WAL and stored bytes pass 12 MiB together is
        inflated by zlib's stream, the others whole by libdeflate; a cut
        inside the large one and the end give the writer's state exactly,
        and SQLite's replay writes the same bytes."""
        b = self.build(commits_per_segment=3)
        for _ in range(3):
            b.commit()
        b.ship()
        for _ in range(3):
            b.commit(rows=1500)  # about 4.5 MiB of random rows each
        b.ship()
        for _ in range(2):
            b.commit()
        b.ship()
        ends = [0] + [s["end"] for s in b.generations[0]["segments"]]
        sizes = [end - start for start, end in zip(ends, ends[1:])]
        self.assertGreater(max(sizes), 12 << 20, sizes)
        self.assertLess(min(sizes), 1 << 20, sizes)
        for index in (4, 5, len(b.commits) - 1):
            self.assert_restored(b, iso(b.commits[index][0]), b.commits[index][0])
        files = {}
        for method in ("sqlite", "pages"):
            path = os.path.join(self.dir, f"{method}.db")
            self.run_cli("restore", "app", "--to", path, "--at", iso(b.commits[4][0]),
                         env={"SQLPRODD_RESTORE_APPLY": method}, check=0)
            with open(path, "rb") as f:
                files[method] = hashlib.sha256(f.read()).hexdigest()
        self.assertEqual(files["sqlite"], files["pages"])

    def test_a_time_before_the_window_is_refused_with_the_earliest(self):
        b = self.build()
        for _ in range(6):
            b.commit()
        b.ship()
        _, result = self.restore_at(iso(b.commits[0][0] - 1), check=1)
        self.assertIn("before the replica's window", result.stderr)
        self.assertIn(f"earliest restorable time is {iso(b.commits[0][0])}", result.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "restored.db")))

    def test_a_time_before_the_bases_frame_is_refused(self):
        """finding 3: a base copied at frame F cannot restore a commit before F."""
        b = self.build()
        for _ in range(9):
            b.commit()
        b.ship()
        path = b.replica("g00000001", "base.json")
        with open(path) as f:
            base = json.load(f)
        base["frame"] = b.generations[0]["commits"][4]["frame"]
        with open(path, "w") as f:
            json.dump(base, f)
        _, result = self.restore_at(iso(b.commits[2][0]), check=1)
        self.assertIn("is before the base of generation g00000001", result.stderr)
        self.assertIn("earliest restorable time", result.stderr)
        self.assert_restored(b, iso(b.commits[6][0]), b.commits[6][0])

    def test_a_missing_segment_in_the_middle_is_named(self):
        b = self.build()
        for _ in range(12):
            b.commit()
        b.ship()
        segments = b.generations[0]["segments"]
        missing = segments[1]["name"]
        os.unlink(b.replica("g00000001", "wal", missing + ".wal.gz"))
        os.unlink(b.replica("g00000001", "wal", missing + ".wal.json"))
        _, result = self.restore_at("latest", check=1)
        self.assertIn(f"segment app/replica/g00000001/wal/{missing}.wal.gz is missing",
                      result.stderr)
        # Before the gap is still restorable.
        self.assert_restored(b, iso(b.commits[2][0]), b.commits[2][0])

    def test_the_newest_segment_without_its_sidecar_is_left_out_and_said(self):
        """The uploader puts a segment, then its sidecar: the agent stopped (or
        its host died) between the two leaves the newest segment alone. Its
        commits are not restorable yet, those before are; the same missing
        sidecar anywhere else is a gap, named."""
        b = self.build()
        for _ in range(12):
            b.commit()
        b.ship()
        segments = b.generations[0]["segments"]
        newest = b.replica("g00000001", "wal", segments[-1]["name"] + ".wal.json")
        os.rename(newest, newest + ".aside")
        result = self.assert_restored(b, "latest", b.commits[8][0])
        self.assertIn("the newest segment on the target has no sidecar yet", result.stdout)
        self.assert_restored(b, iso(b.commits[5][0]), b.commits[5][0])
        # Put back: every commit again, and nothing said.
        os.rename(newest + ".aside", newest)
        result = self.assert_restored(b, "latest", b.commits[11][0])
        self.assertNotIn("no sidecar", result.stdout)
        # In the middle it is a gap, not a segment on its way.
        middle = segments[1]["name"]
        os.unlink(b.replica("g00000001", "wal", middle + ".wal.json"))
        _, result = self.restore_at("latest", check=1)
        self.assertIn(f"a segment's sidecar is missing: app/replica/g00000001/wal/{middle}"
                      ".wal.json is missing", result.stderr)

    def test_a_flipped_byte_is_named(self):
        b = self.build()
        for _ in range(9):
            b.commit()
        b.ship()
        name = b.generations[0]["segments"][1]["name"] + ".wal.gz"
        path = b.replica("g00000001", "wal", name)
        with open(path, "r+b") as f:
            f.seek(40)
            byte = f.read(1)
            f.seek(40)
            f.write(bytes([byte[0] ^ 0x01]))
        _, result = self.restore_at("latest", check=1)
        self.assertIn(f"app/replica/g00000001/wal/{name} on the target has sha256", result.stderr)
        self.assertIn("damaged", result.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "restored.db")))

    def test_a_truncated_segment_is_named(self):
        b = self.build()
        for _ in range(9):
            b.commit()
        b.ship()
        name = b.generations[0]["segments"][2]["name"] + ".wal.gz"
        path = b.replica("g00000001", "wal", name)
        os.truncate(path, os.path.getsize(path) // 2)
        _, result = self.restore_at("latest", check=1)
        self.assertIn(f"app/replica/g00000001/wal/{name} on the target has", result.stderr)
        self.assertIn("truncated", result.stderr)

    def test_a_broken_checksum_chain_is_named(self):
        """Bytes that match their sidecar (rewritten with them) but not the
        WAL's chain: only the chain check finds them."""
        b = self.build()
        for _ in range(9):
            b.commit()
        b.ship()
        segment = b.generations[0]["segments"][1]
        path = b.replica("g00000001", "wal", segment["name"] + ".wal.gz")
        with open(path, "rb") as f:
            raw = bytearray(gzip.decompress(f.read()))
        raw[24 + 100] ^= 0xFF  # inside the first frame's page
        data = gzip.compress(bytes(raw), mtime=0)
        with open(path, "wb") as f:
            f.write(data)
        sidecar_path = path[:-len(".wal.gz")] + ".wal.json"
        with open(sidecar_path) as f:
            sidecar = json.load(f)
        sidecar.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        with open(sidecar_path, "w") as f:
            json.dump(sidecar, f)
        _, result = self.restore_at("latest", check=1)
        self.assertIn("the WAL chain of generation g00000001 breaks at byte", result.stderr)
        self.assertIn(f"app/replica/g00000001/wal/{segment['name']}.wal.gz", result.stderr)
        self.assert_restored(b, iso(b.commits[2][0]), b.commits[2][0])

    def edit_sidecar(self, b, index, change):
        segment = b.generations[0]["segments"][index]
        path = b.replica("g00000001", "wal", segment["name"] + ".wal.json")
        with open(path) as f:
            sidecar = json.load(f)
        change(sidecar)
        with open(path, "w") as f:
            json.dump(sidecar, f)
        return f"app/replica/g00000001/wal/{segment['name']}.wal.json"

    def test_sidecars_that_do_not_describe_the_wal_are_refused(self):
        """Salts of another WAL, a chain that ends with another checksum, a
        database size SQLite does not reach: each named."""
        b = self.build()
        for _ in range(9):
            b.commit()
        b.ship()
        cases = (
            (1, lambda s: s.update(salt=[s["salt"][0] ^ 1, s["salt"][1]]),
             "belongs to a WAL with salts"),
            (2, lambda s: s.update(checksum=[s["checksum"][0] ^ 1, s["checksum"][1]]),
             "ends with checksum"),
            (2, lambda s: s["commits"][-1].update(db_pages=s["commits"][-1]["db_pages"] + 3),
             "the sidecar's db_pages says"),
        )
        for index, change, message in cases:
            with self.subTest(message=message):
                segment = b.generations[0]["segments"][index]
                path = b.replica("g00000001", "wal", segment["name"] + ".wal.json")
                with open(path) as f:
                    saved = f.read()
                name = self.edit_sidecar(b, index, change)
                try:
                    for method in ("sqlite", "pages"):
                        _, result = self.restore_at("latest", check=1,
                                                    env={"SQLPRODD_RESTORE_APPLY": method})
                        self.assertIn(message, result.stderr)
                        if "salts" in message or "checksum" in message:
                            self.assertIn(name, result.stderr)
                finally:
                    with open(path, "w") as f:
                        f.write(saved)
        self.assert_restored(b, "latest", 2 ** 62)

    def test_a_segment_longer_than_its_name_is_named(self):
        """Bytes that match the sidecar's sha256 but not the range the name
        gives: refused before the chain is even read."""
        b = self.build()
        for _ in range(9):
            b.commit()
        b.ship()
        segment = b.generations[0]["segments"][1]
        path = b.replica("g00000001", "wal", segment["name"] + ".wal.gz")
        with open(path, "rb") as f:
            raw = gzip.decompress(f.read())
        data = gzip.compress(raw + bytes(24 + PAGE_SIZE), mtime=0)
        with open(path, "wb") as f:
            f.write(data)
        self.edit_sidecar(b, 1, lambda s: s.update(sha256=hashlib.sha256(data).hexdigest(),
                                                   size=len(data)))
        _, result = self.restore_at("latest", check=1)
        self.assertIn(f"app/replica/g00000001/wal/{segment['name']}.wal.gz holds "
                      f"{len(raw) + 24 + PAGE_SIZE} bytes of WAL, its name says {len(raw)}",
                      result.stderr)

    def test_a_missing_link_in_the_chain_is_refused(self):
        b = self.three_generations()
        with open(b.replica("index.json")) as f:
            index = json.load(f)
        index["generations"] = index["generations"][1:]  # g1 removed
        with open(b.replica("index.json"), "w") as f:
            json.dump(index, f)
        _, result = self.restore_at(iso(b.commits[30][0]), check=1)
        self.assertIn("starts from the end of g00000001, which", result.stderr)
        self.assert_restored(b, "latest", 2 ** 62)  # g3 has its own base

    def test_usage_errors(self):
        self.build().commit()
        for args, message in (
                (("--at", "yesterday"), "expected latest"),
                (("--at", "2026-12-02T10:15:00"), "expected latest"),
                (("--at", "latest", "--backup", "x"), "give one or the other")):
            result = self.run_cli("restore", "app", "--to", os.path.join(self.dir, "r.db"),
                                  *args, check=2)
            self.assertIn(message, result.stderr)

    def test_a_database_without_replicate_is_refused(self):
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        result = self.run_cli("restore", "app", "--to", os.path.join(self.dir, "r.db"),
                              "--at", "latest", check=2)
        self.assertIn("app has no replica target to restore --at a time from", result.stderr)

    def test_existing_destination_needs_force(self):
        b = self.build()
        for _ in range(3):
            b.commit()
        b.ship()
        target = os.path.join(self.dir, "restored.db")
        open(target, "w").close()
        _, result = self.restore_at("latest", check=1)
        self.assertIn("exists: choose another path, or add --force", result.stderr)
        _, result = self.restore_at("latest", check=0, extra=("--force",))
        self.assertEqual(content_hash(target), b.commits[-1][1])

    def test_backups_remote_shows_the_windows_and_the_break(self):
        b = self.three_generations()
        result = self.run_cli("backups", "app", "--remote", check=0)
        g = b.generations
        first = lambda i: g[i]["commits"][0]["seen_at"]  # noqa: E731
        last = lambda i: g[i]["commits"][-1]["seen_at"]  # noqa: E731
        self.assertIn(f"{first(0)} .. {last(1)}", result.stdout)
        self.assertIn(f"{first(2)} .. {last(2)}", result.stdout)
        self.assertIn(f"BREAK: nothing restorable after {last(1)} until {first(2)}", result.stdout)
        result = self.run_cli("backups", "app", "--remote", "--json", check=0)
        data = json.loads(result.stdout)
        windows = [item for item in data if item.get("location") == "replica"]
        self.assertEqual([(w["first_seen_at"], w["last_seen_at"], w["generations"])
                          for w in windows],
                         [(first(0), last(1), ["g00000001", "g00000002"]),
                          (first(2), last(2), ["g00000003"])])
        self.assertEqual([w["break_before"] for w in windows], [False, True])


class RestoreAtMemoryTest(RestoreAtCase):
    def restore_measured(self, to):
        """Runs restore --at latest; its peak RSS (KiB) and wall time. The
        peak is the kernel's high-water mark of the process (VmHWM), read
        until it exits: ru_maxrss would include this Python process, whose
        pages a forked child counts until it executes the binary."""
        target = os.path.join(self.dir, to)
        started = time.monotonic()
        # ASan keeps freed memory in quarantine (256 MiB, and 1 MiB more
        # per thread): not the program's, and it grows with every free.
        env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "")
                   + ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
        process = subprocess.Popen([BIN, "-c", self.config_path, "restore", "app", "--to", target,
                                    "--at", "latest"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env)
        peak = 0
        while process.poll() is None:
            try:
                with open(f"/proc/{process.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:") and "sqlprodd" in os.readlink(
                                f"/proc/{process.pid}/exe"):
                            peak = max(peak, int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.001)
        elapsed = time.monotonic() - started
        out, err = process.communicate()
        self.assertEqual(process.returncode, 0, err)
        self.assertGreater(peak, 0, "the restore's memory was never read")
        return target, peak, elapsed, out

    def test_memory_stays_flat_with_many_segments(self):
        """One segment per commit: 60 segments, then 1200 (20 times the
        window): the restore's peak RSS must not grow with it."""
        figures = []
        for count in (60, 1200):
            shutil.rmtree(self.offsite)
            os.makedirs(self.offsite)
            b = ReplicaBuilder(self.dir, self.offsite, database="app", commits_per_segment=1,
                               seed=count, hashes=False, preload_bytes=4 << 20)
            for _ in range(count):
                b.commit()
            b.ship()
            expected = content_hash(b.db)
            b.close()
            os.unlink(b.db)
            path, rss, elapsed, out = self.restore_measured(f"restored-{count}.db")
            self.assertIn(f"{count} commits in {count} segments", out)
            self.assertEqual(content_hash(path), expected)
            wal = sum(os.path.getsize(os.path.join(root, f))
                      for root, _, files in os.walk(self.offsite) for f in files)
            figures.append((count, rss, elapsed, wal))
        for count, rss, elapsed, wal in figures:
            print(f"restore --at latest of {count} segments ({wal / 1e6:.1f} MB on the target): "
                  f"peak RSS {rss / 1024:.1f} MiB, {elapsed:.2f} s")
        (_, small, _, _), (_, large, _, _) = figures
        # 20 times the segments (53 MB more on the target): at most 4 MiB
        # more, as data never sits in memory. What does grow: the listing of
        # a generation's objects (segment and sidecar, ~1 KiB each while it
        # is read: 2.3 MiB for 1140 more segments, the figure a CI run saw)
        # and the segment list (~200 bytes per segment). Both databases
        # are larger than SQLite's page cache (preload_bytes), which fills
        # up to its bound in both: without it, the smaller one (950 KiB)
        # left the cache half empty and the 2 MiB it then grew by (4 MiB
        # with ASan's redzones) read as growth with the segment count.
        self.assertLess(large - small, 4 * 1024, f"peak RSS grew from {small} to {large} KiB")


if __name__ == "__main__":
    unittest.main()

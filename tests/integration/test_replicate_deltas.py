"""Page deltas (issue 17, sqlprodd-format(5) DELTAS): the agent gathers the
last image of every page a span of generations wrote and ships it as one
object, so that a restore past the span applies those pages instead of every
frame of its WAL.

What a user checks: restores to random instants are exact whether or not a
delta stands for part of the chain; a restore with deltas gives the same
bytes as one that replays every segment (SQLPRODD_RESTORE_DELTAS=off) and
reads fewer objects; a damaged or missing delta is reported and the restore
goes on from the segments, which stay; an agent killed inside a span ships
no delta of it, and later ones are exact again; retention removes a delta
with its generations; a delta larger than spool_max is no break.
"""
import glob
import hashlib
import json
import os
import re
import signal
import time
import unittest

from pitr_writer import ReplicaWriter, content_hash, create
from replica_case import RATE, ReplicaTestCase
from replica_checks import judge, restore, rfc3339

DELTA = re.compile(r"^g(\d{8})-g(\d{8})\.pages\.json$")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class ReplicateDeltasTest(ReplicaTestCase):
    def deltas(self):
        """[(first, last, manifest)] on the dir target, by first generation."""
        directory = os.path.join(self.offsite, "app", "replica", "deltas")
        found = []
        for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            match = DELTA.match(name)
            if match:
                with open(os.path.join(directory, name)) as f:
                    found.append((int(match.group(1)), int(match.group(2)), json.load(f)))
        return found

    def restore_latest(self, name, env=None):
        to = os.path.join(self.dir, name)
        code, out, err = restore(self.config_path, "app", to, "latest", env=env)
        self.assertEqual(code, 0, f"restore --at latest ({env}) failed:\n{out}\n{err}")
        return to, out, err

    def test_restores_through_deltas_are_exact_and_match_a_full_replay(self):
        # Spans of 1 s: the first level merges 12 of them (12 s), so the run
        # makes deltas of both reaches.
        report, commits, results = self.window(
            "dir", seconds=28, instants=24, finish=False,
            replicate_extra='delta_every = "1s";')
        deltas = self.deltas()
        self.assertGreaterEqual(len(deltas), 2, f"no page deltas shipped:\n{self.agent_log()}")
        merged = [(a, b) for a, b, _ in deltas
                  if sum(1 for c, d, _ in deltas if a <= c and d <= b and (c, d) != (a, b)) >= 2]
        self.assertTrue(merged, f"no delta of the merged level among {[d[:2] for d in deltas]}")
        for first, last, manifest in deltas:
            self.assertLessEqual(first, last)
            data = os.path.join(self.offsite, "app", "replica", "deltas",
                                f"g{first:08d}-g{last:08d}.pages.gz")
            self.assertTrue(os.path.exists(data), data)
            self.assertEqual(manifest["sha256"], sha256(data))
            self.assertEqual(manifest["size"], os.path.getsize(data))
            self.assertLessEqual(manifest["pages"], manifest["db_pages"])
            # Built only where it saves: far fewer page bytes than WAL.
            self.assertGreaterEqual(manifest["wal_bytes"],
                                    2 * manifest["pages"] * manifest["page_size"])
        # The spans' own deltas do not overlap: each starts after the one
        # before ends (a merged one covers several of them).
        spans = [(a, b) for a, b, _ in deltas if (a, b) not in merged]
        for (_, last), (first, _) in zip(spans, spans[1:]):
            self.assertGreater(first, last, spans)
        self.fail_pending()

        with_deltas, out, _ = self.restore_latest("with-deltas.db")
        self.assertRegex(out, r"; \d+ page deltas? of \d+ pages through g\d{8}")
        without, out_plain, _ = self.restore_latest("without-deltas.db",
                                                    env={"SQLPRODD_RESTORE_DELTAS": "off"})
        self.assertNotIn("page delta", out_plain)
        self.assertEqual(sha256(with_deltas), sha256(without),
                         "a restore through page deltas differs from a full replay")
        self.assertEqual(content_hash(with_deltas)[0], max(commits))
        # What the deltas save: the commits replayed frame by frame.
        replayed = int(re.search(r": (\d+) commits? in", out).group(1))
        replayed_all = int(re.search(r": (\d+) commits? in", out_plain).group(1))
        self.assertLess(replayed, replayed_all / 2, f"{out}\n{out_plain}")
        # The merged level stands for its spans: fewer deltas read than made.
        applied = int(re.search(r"; (\d+) page deltas? of", out).group(1))
        self.assertLess(applied, len(deltas), out)
        print(f"\n{self.id()}: {len(deltas)} deltas; restore --at latest replayed {replayed} "
              f"commits with them, {replayed_all} without")

    def test_a_damaged_delta_is_reported_and_the_segments_restore(self):
        self.window("dir", seconds=14, instants=4, finish=False,
                    replicate_extra='delta_every = "3s";')
        self.fail_pending()
        deltas = self.deltas()
        self.assertGreaterEqual(len(deltas), 1, f"no page delta shipped:\n{self.agent_log()}")
        reference, _, _ = self.restore_latest("reference.db",
                                              env={"SQLPRODD_RESTORE_DELTAS": "off"})

        def data_of(first, last):
            return os.path.join(self.offsite, "app", "replica", "deltas",
                                f"g{first:08d}-g{last:08d}.pages.gz")

        def flip_a_byte(path):
            with open(path, "r+b") as f:
                f.seek(os.path.getsize(path) // 2)
                byte = f.read(1)
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([byte[0] ^ 0xFF]))

        # The last of the chain damaged: the ones before it are still used
        # (they are downloaded together; one failing stops the others).
        _, out, _ = self.restore_latest("whole-chain.db")
        used = re.search(r"; (\d+) page deltas? of \d+ pages through g(\d+)", out)
        self.assertIsNotNone(used, out)
        self.assertGreaterEqual(int(used.group(1)), 2, out)
        later = next(d for d in deltas if d[1] == int(used.group(2)))
        flip_a_byte(data_of(later[0], later[1]))
        restored, out, err = self.restore_latest("later-damaged.db")
        self.assertIn(f"page delta of generations {later[0]}..{later[1]} not used", err)
        self.assertIn(f"; {int(used.group(1)) - 1} page delta", out)
        self.assertEqual(sha256(restored), sha256(reference))
        flip_a_byte(data_of(later[0], later[1]))

        first, last, _ = deltas[0]
        data = data_of(first, last)
        flip_a_byte(data)
        restored, out, err = self.restore_latest("damaged.db")
        self.assertIn(f"page delta of generations {first}..{last} not used", err)
        self.assertIn("sha256", err.lower())
        self.assertEqual(sha256(restored), sha256(reference))
        # Missing altogether: the same, from the segments.
        os.unlink(data)
        restored, out, err = self.restore_latest("missing.db")
        self.assertEqual(sha256(restored), sha256(reference))
        leftovers = [p for p in glob.glob(os.path.join(self.dir, "*sqlprodd-tmp*"))]
        self.assertEqual(leftovers, [], "a restore left temp files")

    def test_an_agent_killed_inside_a_span_ships_no_delta_of_it(self):
        create(self.db)
        self.configure("dir", replicate_extra='delta_every = "3s";')
        agent = self.start_replicating()
        writer = ReplicaWriter(self.db, rate=RATE)
        self.processes.append(writer.process)
        time.sleep(5)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        before = {(a, b) for a, b, _ in self.deltas()}
        time.sleep(1)
        agent = self.start_agent(env=self.agent_env())
        time.sleep(9)
        report = writer.stop()
        self.writer_report_ok(report)
        commits = writer.commits()
        self.wait_caught_up(commits)
        after = self.deltas()
        new = [(a, b) for a, b, _ in after if (a, b) not in before]
        self.assertGreaterEqual(len(new), 1, f"no delta after the restart:\n{self.agent_log()}")
        # Every delta holds generations one process saw from their start:
        # none spans the kill (a span begun before it is dropped).
        spool = os.path.join(self.state_dir, "replica", "app")
        self.assertFalse(os.path.exists(os.path.join(spool, ".delta-plain")))
        to, out, _ = self.restore_latest("after-kill.db")
        self.assertIn("page delta", out)
        self.assertEqual(content_hash(to)[0], max(commits))
        # An instant between the kill and now, judged exact.
        at = time.time() - 2
        code, out, err = restore(self.config_path, "app", os.path.join(self.dir, "mid.db"),
                                 rfc3339(at))
        self.assertEqual(code, 0, err)
        _, problems = judge(int(at * 1000) / 1000, os.path.join(self.dir, "mid.db"), out + err,
                            commits, 1.0)
        self.assertEqual(problems, [])
        self.stop_agent(agent)

    def test_a_delta_larger_than_spool_max_is_no_break(self):
        # spool_max bounds what an outage queues; a merged delta is traffic.
        # The writer's blobs (random bytes) make the first level's delta (12
        # spans of 1 s) several MB, over a 4 MB spool_max that its segments,
        # uploaded each second, stay well under. Before, it counted: a break
        # and a fresh base (twice an hour in bench/replicate.py at 1 GiB).
        create(self.db)
        self.configure("dir", replicate_extra='delta_every = "1s"; spool_max = "4MB";')
        agent = self.start_replicating()
        writer = ReplicaWriter(self.db, rate=RATE)
        self.processes.append(writer.process)
        self.wait_for(lambda: any(m["size"] > 4_000_000 for _, _, m in self.deltas()),
                      timeout=90, interval=0.5, what="a page delta larger than spool_max")
        report = writer.stop()
        self.writer_report_ok(report)
        commits = writer.commits()
        self.wait_caught_up(commits)
        self.assertNotIn("spool_full", self.agent_log())
        self.assertFalse(self.metric("sqlprodd_replicate_breaks_total", database="app"))
        to, out, _ = self.restore_latest("latest.db")
        self.assertIn("page delta", out)
        self.assertEqual(content_hash(to)[0], max(commits))
        self.stop_agent(agent)

    def test_retention_deletes_a_delta_with_its_last_generation(self):
        create(self.db)
        self.configure("dir", snapshot_every="5s", window="6s",
                       replicate_extra='delta_every = "1s";')
        agent = self.start_replicating()
        writer = ReplicaWriter(self.db, rate=RATE)
        self.processes.append(writer.process)
        time.sleep(22)
        report = writer.stop()
        self.writer_report_ok(report)
        self.wait_caught_up(writer.commits())
        made = [(int(a), int(b)) for a, b in re.findall(
            r"page delta of generations (\d+)\.\.(\d+) queued", self.agent_log())]
        with open(os.path.join(self.offsite, "app", "replica", "index.json")) as f:
            index = json.load(f)
        oldest = min(int(g["name"][1:]) for g in index["generations"])
        # Retention ran: deltas older than the window were made, and are gone.
        self.wait_for(lambda: all(b >= oldest for a, b, _ in self.deltas()), timeout=30,
                      what="retention to delete the deltas of the generations it removed")
        self.assertTrue([d for d in made if d[1] < oldest],
                        f"no delta older than the window was ever made: {made}, oldest {oldest}")
        to, out, _ = self.restore_latest("latest.db")
        self.assertEqual(content_hash(to)[0], max(writer.commits()))
        self.stop_agent(agent)


if __name__ == "__main__":
    unittest.main()

"""The replica's retention window (issue 17): `replicate.window` keeps what a
restore to any instant of the window needs, and nothing older.

The agent replicates a database under a writer with a short window and a
fresh base every few seconds, so that chains of generations leave the window
while the test watches. Checked as an operator would: the target holds
exactly the generations index.json names (no orphan, none missing), the
oldest of them has its base file, and right after retention ran, a restore
to the oldest instant `backups --remote` advertises, to the instant
`window` ago, and to random instants of the window, each gives exactly the
database after one of the writer's commits (replica_checks.judge). Run on a
dir target and on the loopback S3 server.
"""
import json
import os
import re
import time
import unittest

from replica_case import ReplicaTestCase, INTERVAL
from replica_checks import judge, parse_rfc3339, random_instants, restore, rfc3339
from pitr_writer import ReplicaWriter, create

WINDOW = 6.0
SNAPSHOT_EVERY = "3s"


class ReplicationWindow(ReplicaTestCase):

    def forgotten_and_swept(self):
        log = self.agent_log()
        return (len(re.findall(r"left the \d+s window", log)) >= 2 and
                re.search(r"deleted \d+ objects of generations before", log) is not None)

    def restore_judged(self, at, commits, name):
        to = os.path.join(self.dir, f"{name}.db")
        code, out, err = restore(self.config_path, "app", to, rfc3339(at), env=self.agent_env())
        self.assertEqual(code, 0, f"restore --at {rfc3339(at)} ({name}) failed: {out}{err}")
        k, problems = judge(at, to, out + err, commits, INTERVAL, lower_bound=False)
        self.assertEqual(problems, [], f"restore --at {rfc3339(at)} ({name})")
        return k

    def check_window(self, kind):
        create(self.db)
        self.configure(kind, snapshot_every=SNAPSHOT_EVERY, window=f"{WINDOW:g}s")
        agent = self.start_replicating()
        writer = ReplicaWriter(self.db, rate=100)
        self.processes.append(writer.process)
        self.wait_for(self.forgotten_and_swept, timeout=90, interval=0.5,
                      what="retention to forget two chains and delete their objects")
        report = writer.stop()
        self.writer_report_ok(report)
        commits = writer.commits()
        self.wait_caught_up(commits)
        # One more retention pass after the last upload, then stop the agent
        # so that the target stays as that pass left it while it is looked at.
        swept = re.compile(r"deleted \d+ objects of generations before")
        passes = len(swept.findall(self.agent_log()))
        self.wait_for(lambda: len(swept.findall(self.agent_log())) > passes,
                      timeout=30, interval=0.2, what="a retention pass after the writer stopped")
        now = time.time()
        self.assertEqual(self.stop_agent(agent)[0], 0)

        root = self.replica_root()
        on_target = sorted(n for n in os.listdir(root) if n.startswith("g"))
        with open(os.path.join(root, "index.json")) as f:
            index = json.load(f)
        listed = sorted(g["name"] for g in index["generations"])
        # Objects go up before index.json names them: a generation begun
        # just before the stop (a checkpoint of the agent's own resets the
        # WAL) may be on the target, newer than all, and not yet listed.
        if on_target[-1:] and on_target[-1] not in listed and on_target[-1] > max(listed):
            on_target = on_target[:-1]
        self.assertEqual(on_target, listed, "the target holds what index.json names, no more")
        self.assertNotEqual(on_target[0], "g00000001", "nothing was deleted")
        with open(os.path.join(root, on_target[0], "base.json")) as f:
            self.assertNotIn("from", json.load(f), "the oldest generation kept has a base file")
        self.assertTrue(os.path.exists(os.path.join(root, on_target[0], "base.db.gz")))
        self.check_layout()

        listing = json.loads(self.run_cli("backups", "app", "--remote", "--json", check=0,
                                          env=self.agent_env()).stdout)
        windows = [w for w in listing if w.get("location") == "replica"]
        self.assertTrue(windows, listing)
        oldest = min(parse_rfc3339(w["first_seen_at"]) for w in windows)
        self.assertLessEqual(oldest, now - WINDOW, "the whole window stays restorable")

        self.restore_judged(oldest + 0.0005, commits, "oldest-advertised")
        self.restore_judged(now - WINDOW, commits, "window-ago")
        last = max(c[1] for c in commits.values())
        for i, at in enumerate(random_instants(commits, 6, INTERVAL, seed=len(commits),
                                               start=now - WINDOW, end=last)):
            self.restore_judged(at, commits, f"random-{i}")
        self.assertNotRegex(self.agent_log(), r"retention: |replication break")
        if kind == "dir":
            # On the target itself, not on the unpacked view of it.
            self.check_leftovers_go_at_the_next_start(
                os.path.join(self.offsite, "app", "replica"), on_target)
        print(f"\n{self.id()}: {report['commits']} commits, generations kept "
              f"{on_target[0]}..{on_target[-1]} ({len(on_target)}), oldest advertised "
              f"{now - oldest:.1f}s before the check (window {WINDOW:g}s)")

    def check_leftovers_go_at_the_next_start(self, root, kept):
        """What a kill between forgetting generations and deleting their
        objects leaves (objects of a generation index.json no longer names)
        is deleted at the next start; what the index names stays."""
        stray = os.path.join(root, "g00000002", "wal", "0000000000000020-0000000000001000.wal.gz")
        os.makedirs(os.path.dirname(stray))
        with open(stray, "wb") as f:
            f.write(b"left by a kill")
        swept = re.compile(r"deleted \d+ objects of generations before")
        passes = len(swept.findall(self.agent_log()))
        agent = self.start_agent(env=self.agent_env())
        self.wait_for(lambda: len(swept.findall(self.agent_log())) > passes, timeout=30,
                      interval=0.2, what="the sweep at start")
        self.assertEqual(self.stop_agent(agent)[0], 0)
        self.assertFalse(os.path.exists(os.path.join(root, "g00000002")),
                         "the leftover (and its emptied folders) is deleted")
        with open(os.path.join(root, "index.json")) as f:
            listed = sorted(g["name"] for g in json.load(f)["generations"])
        # A generation all of whose objects are packed has no folder of its
        # own; a pack stays until its newest generation has gone.
        loose = sorted(n for n in os.listdir(root) if n.startswith("g"))
        self.assertLessEqual(set(loose), set(listed), "no folder of a forgotten generation")
        packs = os.path.join(root, "packs")
        for name in os.listdir(packs) if os.path.isdir(packs) else []:
            self.assertGreaterEqual(name[10:19], listed[0], f"packs/{name} outlived its window")
        self.assertGreaterEqual(listed[-1], kept[-1])

    def test_dir_target_keeps_the_window_and_nothing_older(self):
        self.check_window("dir")

    def test_s3_target_keeps_the_window_and_nothing_older(self):
        self.check_window("s3")


if __name__ == "__main__":
    unittest.main()

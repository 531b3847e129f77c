"""Replication under kill -9 (issue 16): the agent ships the WAL of a database
that pitr_writer.py changes at several hundred commits per second; the
agent is killed with SIGKILL at random moments (SQLPRODD_REPLICA_KILLS,
default 24) and restarted at once or after a pause, while the writer keeps
going. Afterwards what a user relies on:

- on the target, every generation's segments follow one another from offset
  0 with no gap and no overlap (a range shipped again after a kill has the
  same name and bytes: never two segments holding the same commit), each
  with its sidecar, and index.json names every generation;
- the replica reaches the writer's last commit;
- `restore --at T` for random instants gives exactly the database after one
  of the writer's commits, none begun after T, and (when what the agent
  recorded shows it reading around T, not killed or starting again) every
  commit that returned before T - interval.

The seed is printed; SQLPRODD_REPLICA_SEED replays it.
"""
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import sys
import time
import unittest

from reliability import AgentTestCase  # noqa: F401 (puts tests/integration on the path)

from replica_checks import (layout_problems, parse_rfc3339, queued_generations, random_instants,
                            replicate_entry, restore, restore_many, unpack)
from pitr_writer import ReplicaWriter, content_hash, create

KILLS = int(os.environ.get("SQLPRODD_REPLICA_KILLS", "24"))


def replicated_to_dir(test, entry):
    """The database app (pitr_writer's tables) replicated with ENTRY to a
    dir target under the test's directory: (db, replica directory)."""
    offsite = os.path.join(test.dir, "offsite")
    os.mkdir(offsite)
    db = test.db_path("app")
    create(db)
    test.write_config(f'{{ name = "app"; path = "{db}"; {entry} }}',
                      targets=f'{{ name = "offsite"; type = "dir"; path = "{offsite}"; }}')
    return db, os.path.join(offsite, "app", "replica")


def latest_k(test):
    """meta.k of `restore app --at latest`, or None when it fails."""
    probe = os.path.join(test.dir, "probe.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(probe + suffix):
            os.unlink(probe + suffix)
    code, _, _ = restore(test.config_path, "app", probe, "latest")
    return content_hash(probe)[0] if code == 0 else None


def started_with_a_writer(test, db, replica, rate):
    """The agent started, its first base on the target, then pitr_writer at
    RATE commits/s: (agent, writer)."""
    agent = test.start_agent()
    test.wait_for(lambda: os.path.isdir(replica) and any(
        os.path.exists(os.path.join(replica, g, "base.json")) for g in os.listdir(replica)),
        timeout=60, what="a first base on the target")
    writer = ReplicaWriter(db, rate=rate)
    test.processes.append(writer.process)
    return agent, writer


def caught_up_after_kills(test, agent, writer, replica, before_stop=None):
    """Once the kills are over: the writer stopped (without an error), the
    replica given time to reach its last commit, BEFORE_STOP called, the
    agent stopped, and the layout on the target checked. Returns (report,
    commits, generations, failures); every check runs and reports, so that
    one failure does not hide the others."""
    time.sleep(4)
    report = writer.stop()
    test.assertEqual(report["errors"], 0, report["messages"])
    commits = writer.commits()
    last = max(commits)
    failures = []
    try:
        # Generous: under a loaded CI machine the last restart may still be
        # taking a base (seconds each) when the writer stops.
        test.wait_for(lambda: latest_k(test) == last, timeout=120, interval=0.3,
                      what=f"the replica to reach the last commit {last}")
    except AssertionError as e:
        failures.append(str(e)[:1500] + "\nthe agent's log ends:\n" + test.agent_log()[-1500:])
    if before_stop:
        before_stop()
    test.stop_agent(agent)
    # A stop during a base's upload leaves it for the next start to finish.
    problems, generations = layout_problems(replica, queued_generations(test.state_dir, "app"))
    if problems:
        failures.append(f"gap, overlap or stray object on the target: {problems[:10]}")
    return report, commits, generations, failures


def compaction_left_over(state_dir):
    """1 when the agent just killed left a merge half done in state.db (a
    pending pack, or keys a pack replaced not yet deleted), else 0."""
    try:
        db = sqlite3.connect(f"file:{os.path.join(state_dir, 'state.db')}?mode=ro", uri=True,
                             timeout=5)
        pending = db.execute("SELECT count(*) FROM replica_pack_items WHERE pending = 1"
                             ).fetchone()[0]
        doomed = db.execute("SELECT count(*) FROM replica_doomed").fetchone()[0]
        db.close()
        return 1 if pending or doomed else 0
    except sqlite3.Error:
        return 0
SEED = int(os.environ.get("SQLPRODD_REPLICA_SEED", str(int(time.time()))))
INTERVAL = 1.0


def restores_exact_then_verdict(test, commits, instants, failures,
                                lower_bound=lambda at: False, what="restores exact"):
    """`restore --at` each of INSTANTS (restore_many: exactly one of the
    writer's commits, none begun after it, and, where LOWER_BOUND says so,
    every commit that returned an interval before it), then the test fails
    with every check that failed."""
    try:
        results = restore_many(test, test.config_path, "app", instants, commits, INTERVAL,
                               test.dir, lower_bound=lower_bound)
        checked = sum(1 for r in results if lower_bound(r[0]))
        print(f"{len(results)} {what}" + (f", {checked} with the lower bound checked"
                                          if checked else ""), file=sys.stderr)
    except AssertionError as e:
        failures.append(str(e)[:3000])
    if failures:
        test.fail(f"{len(failures)} failed checks:\n- " + "\n- ".join(failures))


class ReplicateCrashTest(AgentTestCase):
    def test_kill_9_at_random_moments(self):
        print(f"\nseed {SEED} (SQLPRODD_REPLICA_SEED={SEED} replays it)", file=sys.stderr)
        rng = random.Random(SEED)
        db, replica = replicated_to_dir(self, replicate_entry())
        agent, writer = started_with_a_writer(self, db, replica, rate=400)
        # (killed_at, restarted_at): the agent was down in between
        downs = []
        time.sleep(5)  # a quiet stretch: restores there check the lower bound too
        mid_merge = 0
        for i in range(KILLS):
            time.sleep(rng.uniform(0.3, 3.0))
            self.assertIsNone(agent.poll(), f"the agent exited by itself\n{self.agent_log()}")
            agent.send_signal(signal.SIGKILL)
            agent.wait()
            killed = time.time()
            mid_merge += compaction_left_over(self.state_dir)
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0.2, 1.5))
            agent = self.start_agent()
            downs.append((killed, time.time()))
        report, commits, generations, failures = caught_up_after_kills(self, agent, writer,
                                                                       replica)
        print(f"{KILLS} kills ({mid_merge} during a merge or before what it replaced was "
              f"deleted), {report['commits']} commits, {len(generations)} generations, "
              f"{sum(len(s) for s in generations.values())} segments", file=sys.stderr)

        # What the agent recorded says when it was reading: a round read
        # before a kill but not yet recorded is read (and stamped) again
        # after the restart, which first starts, maybe copies a new base
        # (seconds on a loaded machine), then reads. So for each kill, the
        # last seen_at recorded before it and the first one after the
        # restart bound the stretch without a round; T in there cannot have
        # the commits made just before it. The restart itself is bounded.
        stamps = sorted(parse_rfc3339(c["seen_at"]) for segments in generations.values()
                        for _, _, segment_commits in segments for c in segment_commits)
        blind = []
        for killed, restarted in downs:
            before = [s for s in stamps if s <= killed]
            after = [s for s in stamps if s >= restarted]
            blind.append((before[-1] if before else 0.0, after[0] if after else float("inf")))
        resumes = [resumed - restarted for (_, resumed), (_, restarted) in zip(blind, downs)]
        print(f"reading resumed {statistics.median(resumes):.2f} s after a restart "
              f"(median), {max(resumes):.2f} s at worst", file=sys.stderr)
        if max(resumes) > 10:
            failures.append(f"the agent took {max(resumes):.1f} s after a restart to read again")

        def agent_was_up(at):
            return not any(last < at < resumed for last, resumed in blind)

        instants = random_instants(commits, 30, INTERVAL, seed=SEED)
        restores_exact_then_verdict(self, commits, instants, failures, lower_bound=agent_was_up)


RETENTION_KILLS = int(os.environ.get("SQLPRODD_RETENTION_KILLS", "24"))
WINDOW = 6.0


class RetentionCrashTest(AgentTestCase):
    def test_kill_9_during_retention(self):
        """The agent killed at random moments while a short window (6 s) and a
        base every 3 s make it forget generations and delete their objects
        all the time: afterwards (one clean start and stop to sweep what a
        kill left) the target holds exactly the generations index.json names,
        the oldest with its base file, and restores to random instants of the
        window are exact."""
        seed = SEED + 1
        print(f"\nseed {seed} (SQLPRODD_REPLICA_SEED={seed - 1} replays it)", file=sys.stderr)
        rng = random.Random(seed)
        db, replica = replicated_to_dir(
            self, replicate_entry(snapshot_every="3s", window=f"{WINDOW:g}s"))
        agent, writer = started_with_a_writer(self, db, replica, rate=200)
        downs = []
        mid_merge = 0
        for _ in range(RETENTION_KILLS):
            time.sleep(rng.uniform(0.3, 2.0))
            self.assertIsNone(agent.poll(), f"the agent exited by itself\n{self.agent_log()}")
            agent.send_signal(signal.SIGKILL)
            agent.wait()
            killed = time.time()
            mid_merge += compaction_left_over(self.state_dir)
            agent = self.start_agent()
            downs.append((killed, time.time()))
        time.sleep(WINDOW + 4)  # the window now starts after the last kill
        report = writer.stop()
        self.assertEqual(report["errors"], 0, report["messages"])
        commits = writer.commits()
        swept = re.compile(r"deleted \d+ objects of generations before")
        log_before = len(self.agent_log())
        self.wait_for(lambda: swept.search(self.agent_log()[log_before:]),
                      timeout=30, interval=0.2, what="a retention pass after the writer stopped")
        self.stop_agent(agent)
        now = time.time()
        failures = []
        with open(os.path.join(replica, "index.json")) as f:
            listed = sorted(g["name"] for g in json.load(f)["generations"])
        # The generations the target holds, loose or packed (unpacked as
        # sqlprodd-format(5) does it by hand; a pack's copies of objects of
        # forgotten generations are not counted, as restore ignores them).
        unpacked = os.path.join(self.dir, "unpacked")
        os.mkdir(unpacked)
        pack_problems, _ = unpack(replica, unpacked)
        if pack_problems:
            failures.append(f"packs inconsistent: {pack_problems[:10]}")
        queued = queued_generations(self.state_dir, "app")
        on_target = sorted(n for n in os.listdir(unpacked)
                           if n.startswith("g") and (n in listed or n not in queued))
        if on_target != listed:
            failures.append(f"the target holds {on_target}, index.json names {listed}")
        if not os.path.exists(os.path.join(replica, listed[0], "base.db.gz")):
            failures.append(f"the oldest generation kept, {listed[0]}, has no base file")
        problems, generations = layout_problems(replica, queued)
        if problems:
            failures.append(f"gap, overlap or stray object on the target: {problems[:10]}")
        # Lives of the agent that a kill ended between forgetting generations
        # and the line saying their objects were deleted.
        lives = re.split(r"notice: sqlprodd \S+ started", self.agent_log())[1:-1]
        mid = sum(1 for life in lives
                  if life.rfind("deleting their objects") > life.rfind("objects of generations"))
        print(f"{RETENTION_KILLS} kills ({mid} between forgetting and deleting, {mid_merge} "
              f"during a merge or before what it replaced was deleted), "
              f"{report['commits']} commits, kept {listed[0]}..{listed[-1]}", file=sys.stderr)
        instants = random_instants(commits, 12, INTERVAL, seed=seed, start=now - WINDOW)
        restores_exact_then_verdict(self, commits, instants, failures,
                                    what="restores in the window exact")


BASE_KILLS = int(os.environ.get("SQLPRODD_BASE_KILLS", "16"))


def base_in_progress(spool):
    """Whether the spool holds what a base being taken leaves there only
    while it is taken: the page copy (gN-base.db) or the WAL up to its frame
    copied aside (gN-base.wal)."""
    try:
        return any(n.endswith(("-base.db", "-base.wal")) for n in os.listdir(spool))
    except FileNotFoundError:
        return False


class BaseCrashTest(AgentTestCase):
    def test_kill_9_while_a_base_is_copied(self):
        """A base every 2 s of a database padded to 32 MiB, so that its pages
        take a while to copy and gzip, which the agent does after letting the
        write lock go (docs/replication-design.md, defect 7): the agent is
        killed the moment the spool shows a base being taken, while the
        writer goes on. Afterwards the replica reaches the last commit, the
        target has no gap or overlap, and restores to random instants are
        exact."""
        seed = SEED + 2
        print(f"\nseed {seed} (SQLPRODD_REPLICA_SEED={seed - 2} replays it)", file=sys.stderr)
        rng = random.Random(seed)
        db, replica = replicated_to_dir(self, replicate_entry(snapshot_every="2s"))
        padding = sqlite3.connect(db)
        padding.execute("CREATE TABLE padding (b BLOB)")
        padding.executemany("INSERT INTO padding VALUES (?)",
                            [(os.urandom(4096),) for _ in range(8192)])
        padding.commit()
        padding.close()
        spool = os.path.join(self.state_dir, "replica", "app")
        agent, writer = started_with_a_writer(self, db, replica, rate=200)
        hits = 0
        for _ in range(BASE_KILLS):
            time.sleep(rng.uniform(0.2, 1.0))
            deadline = time.monotonic() + 8
            while not base_in_progress(spool) and time.monotonic() < deadline:
                time.sleep(0.002)
            self.assertIsNone(agent.poll(), f"the agent exited by itself\n{self.agent_log()}")
            hits += base_in_progress(spool)
            agent.send_signal(signal.SIGKILL)
            agent.wait()
            agent = self.start_agent()
        report, commits, generations, failures = caught_up_after_kills(self, agent, writer,
                                                                       replica)
        print(f"{BASE_KILLS} kills, {hits} while a base was being taken; "
              f"{report['commits']} commits, {len(generations)} generations", file=sys.stderr)
        if hits < BASE_KILLS // 2:
            failures.append(f"only {hits} of {BASE_KILLS} kills landed while a base was taken")
        instants = random_instants(commits, 12, INTERVAL, seed=seed)
        restores_exact_then_verdict(self, commits, instants, failures)


COMPACTION_KILLS = int(os.environ.get("SQLPRODD_COMPACTION_KILLS", "24"))


def merge_state(state_dir):
    """(pending packs, keys left to delete) in state.db, read without a lock."""
    db = sqlite3.connect(f"file:{os.path.join(state_dir, 'state.db')}?mode=ro", uri=True,
                         timeout=5)
    try:
        return (db.execute("SELECT count(*) FROM replica_pack_items WHERE pending = 1"
                           ).fetchone()[0],
                db.execute("SELECT count(*) FROM replica_doomed").fetchone()[0])
    finally:
        db.close()


class CompactionCrashTest(AgentTestCase):
    def test_kill_9_in_the_middle_of_merges(self):
        """The agent killed the moment state.db shows a merge under way (a
        pending pack: its members being read back, the pack or its manifest
        being uploaded) or just done (the keys it replaced not yet all
        deleted), alternately, while a writer commits at 400/s. Afterwards,
        and after one clean pass: every pack on the target is one state.db
        knows and none is pending, nothing is left to delete, every copy of
        an object (loose and packed, or in two packs) has the same bytes,
        every generation is whole from offset 0, and restores to random
        instants are exact."""
        seed = SEED + 2
        print(f"\nseed {seed} (SQLPRODD_REPLICA_SEED={seed - 2} replays it)", file=sys.stderr)
        rng = random.Random(seed)
        db, replica = replicated_to_dir(self, replicate_entry())
        agent = self.start_agent()
        self.wait_for(lambda: os.path.exists(os.path.join(replica, "index.json")), timeout=60,
                      what="a first index.json")
        writer = ReplicaWriter(db, rate=400)
        self.processes.append(writer.process)
        hits = {"pending": 0, "doomed": 0}
        for i in range(COMPACTION_KILLS):
            want = "pending" if i % 2 == 0 else "doomed"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    pending, doomed = merge_state(self.state_dir)
                except sqlite3.Error:
                    pending = doomed = 0
                if (pending if want == "pending" else doomed):
                    break
                time.sleep(0.0005)
            else:
                self.fail(f"no merge seen in 30 s (kill {i})\n{self.agent_log()[-3000:]}")
            self.assertIsNone(agent.poll(), f"the agent exited by itself\n{self.agent_log()}")
            agent.send_signal(signal.SIGKILL)
            agent.wait()
            pending, doomed = merge_state(self.state_dir)
            hits["pending"] += pending > 0
            hits["doomed"] += doomed > 0
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0.2, 1.0))
            agent = self.start_agent()

        def cleaned_up():
            # The last uploads wake a last merge, which gives up what a kill
            # left pending and deletes what was doomed.
            self.wait_for(lambda: merge_state(self.state_dir) == (0, 0), timeout=30,
                          interval=0.2, what="the leftovers of the kills to be cleaned up")
        report, commits, generations, failures = caught_up_after_kills(
            self, agent, writer, replica, before_stop=cleaned_up)
        state = sqlite3.connect(os.path.join(self.state_dir, "state.db"))
        known = {name for (name,) in state.execute(
            "SELECT name FROM replica_pack_items WHERE level > 0 AND pending = 0")}
        state.close()
        on_target = {n[:-len(".pack")] for n in os.listdir(os.path.join(replica, "packs"))
                     if n.endswith(".pack")}
        manifests = {n[:-len(".pack.json")] for n in os.listdir(os.path.join(replica, "packs"))
                     if n.endswith(".pack.json")}
        if on_target != known or manifests != known:
            failures.append(f"packs on the target {sorted(on_target ^ known)} or manifests "
                            f"{sorted(manifests ^ known)} differ from what state.db knows")
        print(f"{COMPACTION_KILLS} kills, {hits['pending']} with a pack pending, "
              f"{hits['doomed']} with replaced objects not yet deleted; {report['commits']} "
              f"commits, {len(generations)} generations, {len(known)} packs", file=sys.stderr)
        instants = random_instants(commits, 20, INTERVAL, seed=seed)
        restores_exact_then_verdict(self, commits, instants, failures)

if __name__ == "__main__":
    unittest.main()

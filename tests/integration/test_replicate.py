"""Continuous replication (issue 16, the shipping side): a separate writer
process commits to a real SQLite file while the agent ships its WAL to a dir
target (and the loopback S3 server); what lands on the target is checked the
way an operator would: segments contiguous per generation, restored by hand
with cat, gunzip and sqlite3 alone, and compared with the live database.
"""
import glob
import hashlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

from harness import AgentTestCase, S3Server, S3TestCase, BUCKET
from replica_checks import unpacked_view

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "replica_writer.py")
# commit -> target p99 above which a commit was held up, not just late: the
# interval (1 s) plus the upload, with room for a loaded 2-CPU CI machine
# (seen: 2.4 s at load 7.5), and twice that for the ASan build, which a
# loaded machine slows most (seen: 3.3 s for S3). The figures themselves
# are bench/replicate.py's.
DELAY_P99_BOUND = 6.0 if os.environ.get("SQLPRODD_BIN", "").endswith("-asan") else 3.0


def content_hash(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    digest = hashlib.sha256()
    count = 0
    for row_id, payload in db.execute("SELECT id, payload FROM r ORDER BY id"):
        digest.update(str(row_id).encode() + payload)
        count += 1
    db.close()
    return count, digest.hexdigest()


class ReplicaTestCase(AgentTestCase):
    interval = "1s"

    def setUp(self):
        super().setUp()
        self.target = os.path.join(self.dir, "target")
        os.makedirs(self.target)
        self.replica = os.path.join(self.target, "app", "replica")
        path = self.db_path()
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, payload BLOB)")
        db.commit()
        db.close()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.write_config(
            f'{{ name = "app"; path = "{path}"; }}',
            defaults=f'replicate = {{ target = "nas"; interval = "{self.interval}"; }};',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.target}"; }}',
            extra=f'metrics = {{ listen = "127.0.0.1:{self.port}"; }};')
        self.writers = []

    def scrape(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as reply:
            return reply.read().decode()

    def start_writer(self, rate=200, mode=None, every=1.5):
        log = os.path.join(self.dir, f"writer{len(self.writers)}.log")
        stop = log + ".stop"
        args = [sys.executable, WRITER, self.db_path(), str(rate), log, stop]
        if mode:
            args += [mode, str(every)]
        process = subprocess.Popen(args)
        self.processes.append(process)
        self.writers.append((process, log, stop))
        return len(self.writers) - 1

    def stop_writer(self, index):
        process, log, stop = self.writers[index]
        open(stop, "w").close()
        process.wait(timeout=30)
        commits, checkpoints = [], []
        with open(log) as f:
            for line in f:
                words = line.split()
                if words[0] == "checkpoint":
                    checkpoints.append((int(words[2]), float(words[3])))
                else:
                    commits.append((int(words[0]), float(words[1])))
        return commits, checkpoints

    # ---- what is on the target ----

    def view(self):
        """The replica in its loose layout: the target itself, or with packs a
        copy with every pack cut into its objects (sqlprodd-format(5),
        RESTORING BY HAND)."""
        return unpacked_view(self.replica, os.path.join(self.dir, "view"))

    def generations(self, root=None):
        """The generations on the target, as sqlprodd-format(5) defines them: a
        folder without base.json is a base still on its way (the agent may be
        stopped while it sends one) and holds no commit."""
        root = root or self.view()
        return sorted(os.path.basename(g) for g in glob.glob(os.path.join(root, "g*"))
                      if os.path.exists(os.path.join(g, "base.json")))

    def sidecars(self, generation, root=None):
        out = []
        root = root or self.view()
        for path in sorted(glob.glob(os.path.join(root, generation, "wal", "*.wal.json"))):
            with open(path) as f:
                out.append(json.load(f))
        return out

    def shipped_segments(self):
        root = self.view()
        return sum(len(self.sidecars(g, root)) for g in self.generations(root))

    def shipped_commits(self):
        root = self.view()
        return sum(len(s["commits"]) for g in self.generations(root)
                   for s in self.sidecars(g, root))

    def assert_contiguous(self, generation, root=None):
        """Each segment starts where the one before ended, from 0; each has its
        sidecar; no two overlap (a duplicate would)."""
        root = root or self.view()
        segments = sorted(os.path.basename(p)[:-len(".wal.gz")] for p in
                          glob.glob(os.path.join(root, generation, "wal", "*.wal.gz")))
        end = 0
        for name in segments:
            start, stop = (int(x) for x in name.split("-"))
            self.assertEqual(start, end, f"{generation}: segment {name} does not start at {end}: "
                             f"a gap or an overlap in {segments}")
            self.assertTrue(os.path.exists(os.path.join(root, generation, "wal",
                                                        name + ".wal.json")))
            end = stop
        return end

    def restore_by_hand(self, generation=None):
        """The RESTORING BY HAND recipe of sqlprodd-format(5), with cat, gunzip
        and sqlite3 only; returns the restored file's path."""
        root = self.view()
        gens = self.generations(root)
        last = generation or gens[-1]
        chain = [last]
        while True:
            with open(os.path.join(root, chain[0], "base.json")) as f:
                base = json.load(f)
            if "from" not in base:
                break
            chain.insert(0, base["from"].split("/")[0])
        out = os.path.join(self.dir, "restored.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(out + suffix):
                os.unlink(out + suffix)
        # A live replica: the compactor may pack (and delete) an object
        # between the listing and the read. The caller tries again, so the
        # shell's complaint is kept in the exception, not printed.
        subprocess.run(f"gunzip < {root}/{chain[0]}/base.db.gz > {out}", shell=True,
                       check=True, capture_output=True)
        for g in chain:
            self.assert_contiguous(g, root)
            if not glob.glob(os.path.join(root, g, "wal", "*.wal.gz")):
                continue
            subprocess.run(f"set -o pipefail; cat {root}/{g}/wal/*.wal.gz | gunzip > {out}-wal",
                           shell=True, check=True, capture_output=True, executable="/bin/bash")
            check = subprocess.run(["sqlite3", out, "PRAGMA integrity_check"],
                                   capture_output=True, text=True, check=True)
            self.assertEqual(check.stdout.strip(), "ok", f"{g}: {check.stdout}")
        return out

    def wait_shipped(self, timeout=30):
        """Until the target holds every commit of the live database."""
        expected = content_hash(self.db_path())

        def same():
            try:
                return content_hash(self.restore_by_hand()) == expected
            except (subprocess.CalledProcessError, sqlite3.Error, FileNotFoundError,
                    json.JSONDecodeError, AssertionError):
                return False
        self.wait_for(same, timeout=timeout, interval=0.5, what="the replica to catch up")
        return expected

    def breaks(self):
        status = self.status_json()
        return status


class ReplicationShipsEveryCommit(ReplicaTestCase):
    def test_commits_reach_the_target_within_interval_plus_upload(self):
        agent = self.start_agent()
        self.wait_for(lambda: os.path.exists(os.path.join(self.replica, "index.json")),
                      what="the first index.json")
        self.wait_for(lambda: self.shipped_commits() >= 0 and not glob.glob(
            os.path.join(self.state_dir, "replica", "app", "*.gz")), what="an empty queue")
        before = self.shipped_commits()
        segments_before = self.shipped_segments()
        writer = self.start_writer(rate=200)
        visible = {}
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            now = time.time()
            shipped = self.shipped_commits() - before
            for i in range(len(visible), shipped):
                visible[i] = now
            time.sleep(0.01)
        commits, _ = self.stop_writer(writer)
        self.wait_for(lambda: self.shipped_commits() - before >= len(commits), timeout=15,
                      what="the last commits")
        delays = sorted(visible[i] - commits[i][1] for i in visible if i < len(commits))
        self.assertGreater(len(delays), 500)
        p50 = statistics.median(delays)
        p99 = delays[int(len(delays) * 0.99) - 1]
        print(f"\ncommit -> object on target (dir, interval 1s, {len(delays)} commits): "
              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms")
        self.assertLess(p99, DELAY_P99_BOUND)
        # A round ships what it found, in one segment, and leaves what came
        # meanwhile to the next: about one segment a second (the interval;
        # 10 measured here, the wait for the last commits included), not one
        # every few ms chasing the writer (19 before; bucket objects are
        # billed, and a 1000 tx/s writer made 2,000 in 30 s).
        segments = self.shipped_segments() - segments_before
        print(f"segments for 8 s of writing at 200 tx/s: {segments}")
        self.assertLessEqual(segments, 8 + 5)
        self.assertEqual(content_hash(self.restore_by_hand()), content_hash(self.db_path()))
        log = self.agent_log()
        self.assertNotIn("replication break", log)
        self.assertEqual(self.stop_agent(agent)[0], 0)

    def test_kill_9_then_restart_leaves_no_gap_and_no_duplicate(self):
        agent = self.start_agent()
        writer = self.start_writer(rate=300)
        for pause in (1.3, 2.1, 0.7, 1.6):
            time.sleep(pause)
            agent.send_signal(signal.SIGKILL)
            agent.wait()
            time.sleep(0.3)
            agent = self.start_agent()
        time.sleep(2)
        self.stop_writer(writer)
        expected = self.wait_shipped()
        for g in self.generations():
            self.assert_contiguous(g)
        self.assertEqual(content_hash(self.restore_by_hand()), expected)
        # While the agent is down nothing pins the WAL: the writer's own
        # autocheckpoint may restart it, which is a counted break with a new
        # base, never a damaged chain.
        self.assertNotRegex(self.agent_log(), r"replication break \((broken|chain)\)")
        self.assertEqual(self.stop_agent(agent)[0], 0)

    def test_writer_passive_and_truncate_checkpoints_lose_nothing(self):
        agent = self.start_agent()
        passive = self.start_writer(rate=150, mode="PASSIVE", every=0.5)
        time.sleep(3)
        self.stop_writer(passive)
        truncate = self.start_writer(rate=150, mode="TRUNCATE", every=1.5)
        time.sleep(6)
        _, checkpoints = self.stop_writer(truncate)
        expected = self.wait_shipped()
        self.assertEqual(content_hash(self.restore_by_hand()), expected)
        self.assertNotIn("replication break", self.agent_log())
        waits = [ms for _, ms in checkpoints]
        print(f"\napplication TRUNCATE checkpoints beside the agent (busy, ms): {checkpoints}")
        self.assertTrue(checkpoints)
        self.assertTrue(all(busy == 0 for busy, _ in checkpoints), checkpoints)
        self.assertLess(max(waits), 2500)
        self.assertEqual(self.stop_agent(agent)[0], 0)

    def test_truncate_from_another_connection_loses_nothing(self):
        """An operator's cron job, `sqlite3 app.db 'PRAGMA wal_checkpoint(TRUNCATE)'`,
        beside a long-lived writer: the restart is made by one connection and
        the new WAL header written by another, whose private checkpoint counter
        SQLite writes unchanged (or, when it never restarted the WAL, fresh
        random salts). Neither is a lost commit, so neither may be a break."""
        agent = self.start_agent()
        writer = self.start_writer(rate=150)
        results = []
        for _ in range(6):
            time.sleep(0.8)
            started = time.monotonic()
            out = subprocess.run(
                ["sqlite3", self.db_path(),
                 ".timeout 5000", "PRAGMA wal_checkpoint(TRUNCATE);"],
                capture_output=True, text=True, timeout=30)
            results.append((out.returncode, out.stdout.strip(),
                            round((time.monotonic() - started) * 1000)))
        self.stop_writer(writer)
        expected = self.wait_shipped()
        print(f"\ncron TRUNCATE checkpoints beside the agent (rc, busy|log|done, ms): {results}")
        self.assertTrue(all(rc == 0 and out.startswith("0|") for rc, out, _ in results), results)
        self.assertEqual(content_hash(self.restore_by_hand()), expected)
        self.assertNotIn("replication break", self.agent_log())
        self.assertGreaterEqual(len(self.generations()), 4)
        self.assertEqual(self.stop_agent(agent)[0], 0)


class ReplicationSnapshots(ReplicaTestCase):
    def test_a_fresh_base_every_snapshot_every(self):
        path = self.db_path()
        self.write_config(
            f'{{ name = "app"; path = "{path}"; }}',
            defaults='replicate = { target = "nas"; interval = "1s"; snapshot_every = "2s"; };',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.target}"; }}')
        agent = self.start_agent()
        writer = self.start_writer(rate=200)
        time.sleep(6)
        self.stop_writer(writer)
        expected = self.wait_shipped()
        # Stopped, so that no new base comes while the target is looked at.
        self.assertEqual(self.stop_agent(agent)[0], 0)
        bases = [g for g in self.generations()
                 if os.path.exists(os.path.join(self.replica, g, "base.db.gz"))]
        self.assertGreaterEqual(len(bases), 2, self.generations())
        self.assertNotIn("replication break", self.agent_log())
        self.assertEqual(content_hash(self.restore_by_hand()), expected)
        # A scheduled base is no break: index.json says so, and the listing
        # an operator reads shows consecutive windows without a BREAK line.
        with open(os.path.join(self.replica, "index.json")) as f:
            index = {g["name"]: g for g in json.load(f)["generations"]}
        for name in bases[1:]:
            self.assertIs(index[name].get("snapshot"), True, index[name])
        self.assertNotIn("snapshot", index[bases[0]])
        listing = self.run_cli("backups", "app", "--remote", check=0).stdout
        self.assertEqual(listing.count("replica window"), len(bases), listing)
        self.assertNotIn("BREAK", listing)
        windows = json.loads(self.run_cli("backups", "app", "--remote", "--json",
                                          check=0).stdout)
        self.assertFalse(any(w.get("break_before") for w in windows), windows)


class ReplicationAfterAReset(ReplicaTestCase):
    def test_the_first_commit_after_a_reset_is_shipped_though_nothing_follows(self):
        """A writer held up by the agent's own reset round commits the moment
        the write lock is let go, restarting the WAL in place (same size) and
        often in the same tick of the file clock as the agent's last look.
        If the application then goes quiet, that commit must still reach the
        target: the idle test may not take it for nothing new. Each cycle
        writes until its own commit restarts the WAL, then stops."""
        agent = self.start_agent()
        self.wait_for(lambda: os.path.exists(os.path.join(self.replica, "index.json")),
                      what="the first index.json")
        # No busy timeout: the writer retries at once, so it commits within
        # microseconds of the agent letting the write lock go.
        db = sqlite3.connect(self.db_path(), timeout=0, isolation_level=None)
        db.execute("PRAGMA wal_autocheckpoint=0")  # only the agent restarts the WAL
        wal = self.db_path() + "-wal"

        def salt():
            with open(wal, "rb") as f:
                return f.read(32)[16:20]

        def commit():
            while True:
                try:
                    return db.execute("INSERT INTO r (payload) VALUES (?)", (os.urandom(16384),))
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e):
                        raise
        for cycle in range(3):
            before, deadline = None, time.monotonic() + 30
            while time.monotonic() < deadline:
                commit()
                now = salt()
                if before is not None and now != before:
                    break
                before = now
                time.sleep(0.005)
            else:
                self.fail(f"cycle {cycle}: the agent never restarted the WAL\n{self.agent_log()}")
            self.wait_shipped(timeout=10)
        db.close()
        self.assertNotIn("replication break", self.agent_log())
        self.assertEqual(self.stop_agent(agent)[0], 0)

    def test_a_reader_seen_by_the_reset_round_is_no_break(self):
        """Another connection's read transaction, seen by the reset round
        after every frame was backfilled, may end before the next write:
        that write then restarts the WAL at the end the agent shipped. It
        must be continued, not taken for a restart by someone else (seen
        under ASan in CI, 2026-12-03)."""
        agent = self.start_agent()
        self.wait_for(lambda: os.path.exists(os.path.join(self.replica, "index.json")),
                      what="the first index.json")
        stop = threading.Event()

        def read_often():
            reader = sqlite3.connect(self.db_path(), isolation_level=None)
            while not stop.is_set():
                reader.execute("BEGIN")
                reader.execute("SELECT count(*) FROM r").fetchone()
                time.sleep(0.002)
                reader.execute("COMMIT")
                time.sleep(0.01)
            reader.close()

        readers = [threading.Thread(target=read_often) for _ in range(2)]
        for thread in readers:
            thread.start()
        db = sqlite3.connect(self.db_path(), timeout=10, isolation_level=None)
        db.execute("PRAGMA wal_autocheckpoint=0")  # only the agent restarts the WAL
        wal = self.db_path() + "-wal"
        restarts, last, deadline = 0, None, time.monotonic() + 120
        seen, looked = False, time.monotonic()
        try:
            # Until the case happened: a reset round saw a reader (about one
            # round in three does: it is timing) and the WAL restarted after.
            while (restarts < 6 or not seen) and time.monotonic() < deadline:
                db.execute("INSERT INTO r (payload) VALUES (?)", (os.urandom(16384),))
                with open(wal, "rb") as f:
                    now = f.read(32)[16:20]
                restarts += last is not None and now != last
                last = now
                if not seen and time.monotonic() - looked > 0.5:
                    seen, looked = "other readers: yes" in self.agent_log(), time.monotonic()
                    restarts = min(restarts, 4) if seen else restarts  # two more after it
                time.sleep(0.002)  # ~6 MB/s: a reset round every second or so
        finally:
            stop.set()
            for thread in readers:
                thread.join()
        self.assertGreaterEqual(restarts, 6, self.agent_log())
        self.wait_shipped(timeout=10)
        db.close()
        self.assertIn("other readers: yes", self.agent_log())
        self.assertNotIn("replication break", self.agent_log())
        self.assertEqual(self.stop_agent(agent)[0], 0)


def context_switches(pid):
    """Every thread's voluntary and involuntary context switches so far."""
    total = 0
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(status) as f:
                for line in f:
                    if "ctxt_switches:" in line:
                        total += int(line.split()[-1])
        except FileNotFoundError:
            pass
    return total


class ReplicationQuiet(ReplicaTestCase):
    COUNT = 20

    def test_idle_databases_cost_no_wake_ups_and_wake_at_the_first_write(self):
        """20 replicated databases, each written once, then left alone: once
        each has been quiet for 10 s the agent ends its generation (its pin
        then sits on read mark 0) and sleeps until a file changes. Checked as
        an operator would: the agent's threads switch no more than a few
        times in 5 s; an application's TRUNCATE checkpoint without any busy
        timeout succeeds at once; the first write after the quiet is on the
        target within the interval, and a restore holds it."""
        paths = []
        for i in range(self.COUNT):
            path = os.path.join(self.dir, f"db{i}.db")
            db = sqlite3.connect(path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, payload BLOB)")
            db.commit()
            db.close()
            paths.append(path)
        self.write_config(
            ", ".join(f'{{ name = "db{i}"; path = "{p}"; }}' for i, p in enumerate(paths)),
            defaults='replicate = { target = "nas"; interval = "1s"; };',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.target}"; }}')
        agent = self.start_agent()
        # Written after each base: the generation then needs the quiet reset.
        self.wait_for(lambda: all(os.path.exists(os.path.join(self.target, f"db{i}", "replica",
                                                              "index.json"))
                                  for i in range(self.COUNT)), what="every first base")
        for path in paths:
            with sqlite3.connect(path) as db:
                db.execute("INSERT INTO r (payload) VALUES (?)", (b"first",))
        written = time.monotonic()

        def switches_in(seconds):
            before = context_switches(agent.pid)
            time.sleep(seconds)
            return context_switches(agent.pid) - before
        # Quiet 10 s after the last commit seen, then a round or two.
        self.wait_for(lambda: switches_in(2) <= 4, timeout=60, interval=0,
                      what="the agent to fall quiet")
        quiet_after = time.monotonic() - written
        idle = switches_in(5)
        print(f"\n{self.COUNT} databases quiet {quiet_after:.1f} s after their last write: "
              f"{idle} context switches in 5 s")
        self.assertGreaterEqual(quiet_after, 10)  # not before SHIP_QUIET_AFTER_MS
        self.assertLessEqual(idle, 6)

        truncate = subprocess.run(["sqlite3", paths[7], "PRAGMA wal_checkpoint(TRUNCATE);"],
                                  capture_output=True, text=True, timeout=30)
        self.assertEqual(truncate.stdout.strip(), "0|0|0", truncate)

        with sqlite3.connect(paths[3]) as db:
            db.execute("INSERT INTO r (payload) VALUES (?)", (b"after the quiet",))
        written = time.monotonic()
        self.wait_for(lambda: self.restored_rows("db3") == 2, timeout=10, interval=0.1,
                      what="the write after the quiet on the target")
        print(f"first write after the quiet on the target after "
              f"{time.monotonic() - written:.2f} s")
        self.assertLess(time.monotonic() - written, 3.0)
        self.assertEqual(self.restored_rows("db7"), 1)
        self.assertNotIn("replication break", self.agent_log())
        self.assertEqual(self.stop_agent(agent)[0], 0)

    def restored_rows(self, name):
        out = os.path.join(self.dir, f"{name}-restored.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(out + suffix):
                os.unlink(out + suffix)
        result = self.run_cli("restore", name, "--to", out, "--at", "latest")
        if result.returncode != 0:
            return None
        db = sqlite3.connect(out)
        count = db.execute("SELECT count(*) FROM r").fetchone()[0]
        db.close()
        return count


class ReplicationBaseCopy(ReplicaTestCase):
    def test_writers_go_on_while_the_base_is_copied(self):
        """The first base of a 128 MiB database of random bytes takes seconds
        to copy and gzip. An application whose busy timeout is 1 s commits
        all through it without one `database is locked`: the agent holds the
        write lock only to mark where the base stands and to copy the WAL up
        to there aside, then copies the pages from a read transaction
        (docs/replication-design.md, defect 7; before, the lock was held for
        the whole copy and gzip). Every commit made meanwhile is then on the
        target: a restore by hand holds exactly the live rows."""
        path = self.db_path()
        with sqlite3.connect(path) as db:
            for _ in range(128):
                db.executemany("INSERT INTO r (payload) VALUES (?)",
                               [(os.urandom(4096),) for _ in range(256)])
        db.close()
        errors, commits, stop = [], [], threading.Event()

        def write():
            app = sqlite3.connect(path, timeout=1.0, isolation_level=None)
            while not stop.is_set():
                try:
                    app.execute("INSERT INTO r (payload) VALUES (?)", (b"during the base",))
                    commits.append(time.monotonic())
                except sqlite3.OperationalError as e:
                    errors.append(str(e))
                time.sleep(0.005)
            app.close()
        writer = threading.Thread(target=write)
        writer.start()
        try:
            agent = self.start_agent()
            self.wait_for(lambda: os.path.exists(os.path.join(self.replica, "index.json")),
                          timeout=120, what="the first base on the target")
            time.sleep(1)
        finally:
            stop.set()
            writer.join()
        base_log = [line for line in self.agent_log().splitlines()
                    if "started from a base" in line]
        print(f"\n{len(commits)} commits during the first base, {len(errors)} errors; "
              f"{base_log[:1]}")
        self.assertEqual(errors, [])
        self.assertGreater(len(commits), 100)
        self.wait_shipped(timeout=60)
        self.assertNotIn("replication break", self.agent_log())
        self.assertEqual(self.stop_agent(agent)[0], 0)


class ReplicationBaseOnly(ReplicaTestCase):
    def test_a_generation_with_only_a_base_is_restorable_from_its_time(self):
        """Commits made while the agent is down, by an application that then
        closes (the last connection checkpoints and removes the WAL): the
        agent's next generation is a base and no segment. restore --at
        latest gives that base (the commits made meanwhile included) and
        prints its time; an instant before it still gives the older
        generation's last commit."""
        agent = self.start_agent()
        writer = self.start_writer(rate=200)
        time.sleep(2)
        self.stop_writer(writer)
        before = self.wait_shipped()
        self.assertEqual(self.stop_agent(agent)[0], 0)
        down = time.time()
        db = sqlite3.connect(self.db_path())
        for _ in range(25):
            db.execute("INSERT INTO r (payload) VALUES (randomblob(300))")
            db.commit()
        db.close()
        self.assertFalse(os.path.exists(self.db_path() + "-wal"))
        expected = content_hash(self.db_path())
        known = set(self.generations())
        agent = self.start_agent()

        def base_only_listed():
            fresh = [g for g in self.generations() if g not in known]
            if not fresh:
                return False
            try:
                with open(os.path.join(self.replica, "index.json")) as f:
                    listed = json.load(f)["generations"]
            except (OSError, ValueError):
                return False
            return any(g["name"] == fresh[0] and g.get("first_seen_at") for g in listed)
        self.wait_for(base_only_listed, what="the base-only generation in index.json")
        latest = os.path.join(self.dir, "latest.db")
        result = self.run_cli("restore", "app", "--to", latest, "--at", "latest", check=0)
        self.assertEqual(content_hash(latest), expected, result.stdout + result.stderr)
        root = self.view()
        with open(os.path.join(root, self.generations(root)[-1], "base.json")) as f:
            taken_at = json.load(f)["taken_at"]
        self.assertIn(taken_at, result.stdout)
        earlier = os.path.join(self.dir, "earlier.db")
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(down)) + \
            f".{int((down % 1) * 1000):03d}Z"
        self.run_cli("restore", "app", "--to", earlier, "--at", at, check=0)
        self.assertEqual(content_hash(earlier), before)
        self.assertEqual(self.stop_agent(agent)[0], 0)


class ReplicationTargetOutage(ReplicaTestCase):
    def test_a_missing_target_is_said_queued_and_caught_up_later(self):
        """The dir target's share is gone (renamed away): the agent says so,
        keeps reading the WAL (commit times stay right), counts what waits
        in sqlprodd_replicate_queued_objects and a growing lag; once the
        share is back, everything reaches it and restores by hand."""
        agent = self.start_agent()
        writer = self.start_writer(rate=200)
        time.sleep(2)
        away = self.target + ".away"
        os.rename(self.target, away)
        time.sleep(4)

        def metric(name):
            for line in self.scrape().splitlines():
                if line.startswith(f'{name}{{database="app"}} '):
                    return float(line.split()[-1])
            return None
        self.wait_for(lambda: (metric("sqlprodd_replicate_queued_objects") or 0) > 0,
                      what="queued objects in the metrics")
        lag = metric("sqlprodd_replicate_lag_seconds")
        self.assertGreater(lag, 2.0, "the lag does not grow while the target is away")
        text = self.run_cli("status", check=0).stdout
        self.assertRegex(text, r"app replica: .*[1-9]\d* objects? queued")
        self.assertRegex(self.agent_log(), r"replicate: .*(No such file|does not exist|mounted)")
        os.rename(away, self.target)
        time.sleep(1)
        self.stop_writer(writer)
        # the retry backs off (1 s doubling): within a minute at most
        expected = self.wait_shipped(timeout=90)
        self.assertEqual(content_hash(self.restore_by_hand()), expected)
        self.wait_for(lambda: metric("sqlprodd_replicate_queued_objects") == 0,
                      what="an empty queue")
        # Caught up and idle: nothing a restore would lose, however old the
        # newest commit (an idle database must not look late to an alert).
        self.wait_for(lambda: metric("sqlprodd_replicate_lag_seconds") == 0,
                      what="no lag once idle and caught up")
        time.sleep(2)
        self.assertEqual(metric("sqlprodd_replicate_lag_seconds"), 0)
        self.assertRegex(self.agent_log(), r"replicate: uploading again")
        self.assertNotIn("replication break", self.agent_log())
        self.assertEqual(self.stop_agent(agent)[0], 0)


    def test_a_full_spool_lets_the_wal_go_and_starts_again_from_a_base(self):
        """The target away long enough for the spool to reach spool_max: health
        says so from half of it, then shipping stops with one counted break
        (spool_full) and the WAL is let go, so the application's own
        checkpoints keep it small and it sees no error; once the target is
        back the spool drains, a new generation starts from a fresh base and
        the replica restores by hand to the live database."""
        bound = 1 << 20
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; }}',
            defaults=f'replicate = {{ target = "nas"; interval = "{self.interval}"; '
                     f'spool_max = "1MB"; }};',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.target}"; }}',
            extra=f'metrics = {{ listen = "127.0.0.1:{self.port}"; }};')

        def metric(name, labels='database="app"'):
            for line in self.scrape().splitlines():
                if line.startswith(f'{name}{{{labels}}} '):
                    return float(line.split()[-1])
            return None
        agent = self.start_agent()
        writer = self.start_writer(rate=150)
        self.wait_for(lambda: len(self.generations()) > 0, what="a first generation")
        away = self.target + ".away"
        os.rename(self.target, away)
        self.assertEqual(metric("sqlprodd_replicate_spool_max_bytes"), bound)
        self.wait_for(lambda: (metric("sqlprodd_replicate_spool_bytes") or 0) >= bound * 0.55,
                      timeout=60, interval=0.2, what="the spool past half of spool_max")
        half = self.run_cli("health", "app")
        self.assertIn("replica spool holds", half.stdout + half.stderr)
        self.wait_for(lambda: "replication break (spool_full)" in self.agent_log(), timeout=60,
                      interval=0.2, what="the spool_full break")
        full = self.run_cli("health", "app")
        self.assertIn("replica spool is full", full.stdout + full.stderr)
        self.assertNotEqual(full.returncode, 0)
        # The WAL is let go: the application's autocheckpoints restart it.
        sizes = []
        for _ in range(30):
            time.sleep(0.2)
            sizes.append(os.path.getsize(self.db_path() + "-wal"))
        self.assertLess(max(sizes), 8 << 20, sizes)
        self.assertIsNone(self.writers[writer][0].poll(), "the application failed")
        self.assertEqual(metric("sqlprodd_replicate_breaks_total",
                                'database="app",reason="spool_full"'), 1)
        os.rename(away, self.target)
        self.wait_for(lambda: "shipping again from a fresh base" in self.agent_log(), timeout=90,
                      interval=0.5, what="the spool to drain")
        time.sleep(1)
        self.stop_writer(writer)
        expected = self.wait_shipped(timeout=90)
        self.assertEqual(content_hash(self.restore_by_hand()), expected)
        after = self.agent_log().split("shipping again from a fresh base", 1)[1]
        self.assertRegex(after, r"generation \d+ started from a base")
        self.assertEqual(metric("sqlprodd_replicate_breaks_total",
                                'database="app",reason="spool_full"'), 1)
        self.assertEqual(self.stop_agent(agent)[0], 0)


class ReplicationBreaks(ReplicaTestCase):
    def status_replica(self):
        return self.status_json()["databases"][0].get("replica", {})

    def test_wal_reset_while_the_agent_is_down_starts_a_new_generation(self):
        agent = self.start_agent()
        writer = self.start_writer(rate=100)
        time.sleep(2)
        self.stop_writer(writer)
        self.wait_shipped()
        self.assertEqual(self.stop_agent(agent)[0], 0)
        old = self.generations()
        old_end = {g: self.assert_contiguous(g) for g in old}
        # The application restarts its WAL with nobody shipping.
        # The writer keeps its connection open, so the agent meets a WAL
        # restarted several times (not emptied by a last close).
        writer = self.start_writer(rate=200, mode="TRUNCATE", every=0.3)
        time.sleep(1.5)
        agent = self.start_agent()
        time.sleep(1.5)
        self.stop_writer(writer)
        expected = self.wait_shipped()
        log = self.agent_log()
        self.assertRegex(log, r"replication break \(restarted\)")
        self.assertGreater(len(self.generations()), len(old))
        # The older generations are intact: same segments, same ends.
        for g in old:
            self.assertEqual(self.assert_contiguous(g), old_end[g])
        root = self.view()
        newest = self.generations(root)[-1]
        self.assertTrue(os.path.exists(os.path.join(root, newest, "base.db.gz")) or
                        "from" in json.load(open(os.path.join(root, newest,
                                                              "base.json"))))
        self.assertEqual(content_hash(self.restore_by_hand()), expected)
        self.assertEqual(self.stop_agent(agent)[0], 0)

    def test_database_replaced_under_the_agent(self):
        agent = self.start_agent()
        writer = self.start_writer(rate=100)
        time.sleep(1.5)
        self.stop_writer(writer)
        self.wait_shipped()
        replacement = self.db_path() + ".new"
        db = sqlite3.connect(replacement)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, payload BLOB)")
        db.execute("INSERT INTO r (id, payload) VALUES (424242, x'00')")
        db.commit()
        db.close()
        os.rename(replacement, self.db_path())
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.db_path() + suffix):
                os.unlink(self.db_path() + suffix)
        self.wait_for(lambda: "replication break (replaced)" in self.agent_log(),
                      what="the replaced database to be seen")
        expected = self.wait_shipped()
        self.assertEqual(expected[0], 1)
        replica = self.status_json()["databases"][0]["replica"]
        self.assertEqual(replica["last_break"], "replaced")
        self.assertGreaterEqual(replica["breaks"], 1)
        self.assertGreaterEqual(replica["generation"], 2)
        text = self.run_cli("status", "app", check=0).stdout
        self.assertRegex(text, r"replica: to nas, generation \d+, on the target up to .*break.*"
                         r"last: replaced")
        metrics = self.scrape()
        self.assertRegex(metrics, r'sqlprodd_replicate_breaks_total\{database="app",'
                         r'reason="replaced"\} [1-9]')
        self.assertRegex(metrics, r'sqlprodd_replicate_generation\{database="app"\} [2-9]')
        self.assertRegex(metrics, r'sqlprodd_replicate_lag_seconds\{database="app"\} \d')
        self.assertRegex(metrics, r'sqlprodd_replicate_shipped_bytes_total\{database="app"\} '
                         r'[1-9]')
        self.assertEqual(self.stop_agent(agent)[0], 0)

    def test_database_switched_out_of_wal_mode(self):
        agent = self.start_agent()
        writer = self.start_writer(rate=100)
        time.sleep(1.5)
        self.stop_writer(writer)
        self.wait_shipped()
        self.assertEqual(self.stop_agent(agent)[0], 0)
        db = sqlite3.connect(self.db_path())
        self.assertEqual(db.execute("PRAGMA journal_mode=DELETE").fetchone()[0], "delete")
        db.close()
        agent = self.start_agent()
        self.wait_for(lambda: "is not in WAL mode" in self.agent_log(),
                      what="the agent to report the mode")
        log = self.agent_log()
        self.assertRegex(log, r"sqlprodd\.conf:\d+: replicate\.target: database \"app\"")
        db = sqlite3.connect(self.db_path())
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("INSERT INTO r (payload) VALUES (x'01')")
        db.commit()
        db.close()
        expected = self.wait_shipped()
        self.assertEqual(content_hash(self.restore_by_hand()), expected)
        self.assertEqual(self.stop_agent(agent)[0], 0)


class ReplicationToS3(S3TestCase, ReplicaTestCase):
    def setUp(self):
        ReplicaTestCase.setUp(self)
        self.env = {"AWS_ACCESS_KEY_ID": "SQLPRODDTESTACCESSKEY",
                    "AWS_SECRET_ACCESS_KEY": "sqlprodd/Test+Secret/Key0123456789abcdefXYZ"}
        self.server = None

    def test_segments_reach_the_bucket_and_restore_by_hand(self):
        # The server keeps its objects under a directory of this test, so that
        # when a sidecar object appears can be seen every few ms.
        store = os.path.join(self.dir, "s3data")
        os.makedirs(store)
        server = S3Server(0, store)
        self.addCleanup(server.stop)
        self.server = server
        path = self.db_path()
        self.write_config(
            f'{{ name = "app"; path = "{path}"; }}',
            defaults='replicate = { target = "offsite"; interval = "1s"; };',
            targets=self.s3_target(server.url))
        agent = self.start_agent(env=self.env)

        # Sidecars seen so far: compaction deletes them once packed, and the
        # commits they held stay shipped.
        seen = {}

        def shipped():
            for path in glob.glob(os.path.join(store, "**", "*.wal.json*"), recursive=True):
                if path in seen:
                    continue
                if path.endswith(".json._S3rver_object") or path.endswith(".wal.json"):
                    try:
                        with open(path) as f:
                            seen[path] = len(json.load(f)["commits"])
                    except (ValueError, OSError, KeyError):
                        pass
            return sum(seen.values())
        self.wait_for(lambda: glob.glob(os.path.join(store, "**", "index.json*"), recursive=True),
                      what="the first index.json in the bucket")
        time.sleep(1.5)
        before = shipped()
        writer = self.start_writer(rate=100)
        visible = {}
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            now = time.time()
            for i in range(len(visible), shipped() - before):
                visible[i] = now
            time.sleep(0.01)
        commits, _ = self.stop_writer(writer)
        delays = sorted(visible[i] - commits[i][1] for i in visible if i < len(commits))
        if delays:
            print(f"\ncommit -> object on target (s3 loopback, interval 1s, {len(delays)} "
                  f"commits): p50 {statistics.median(delays) * 1000:.0f} ms, p99 "
                  f"{delays[int(len(delays) * 0.99) - 1] * 1000:.0f} ms")
        self.assertGreater(len(delays), 200)
        self.assertLess(delays[int(len(delays) * 0.99) - 1], DELAY_P99_BOUND)
        expected = content_hash(path)
        local = os.path.join(self.target, "app")

        def fetched():
            subprocess.run(["rm", "-rf", local])
            self.aws_cli("s3", "cp", "--recursive", "--quiet",
                         f"s3://{BUCKET}/db/app/replica/", os.path.join(local, "replica"),
                         "--endpoint-url", server.url)
            try:
                return content_hash(self.restore_by_hand()) == expected
            except Exception:
                return False
        self.wait_for(fetched, timeout=30, interval=1, what="the bucket to hold every commit")
        self.assertEqual(self.stop_agent(agent)[0], 0)

    def test_idle_uploaders_let_their_connections_go_and_open_them_again(self):
        """Five databases replicated to an S3 server that keeps idle
        connections for 10 minutes. Once nothing has gone up for 30 s after
        their bases, the agent holds no connection to it (an idle database
        costs no curl handle and no socket). While one is written
        every 20 ms, its uploader keeps one connection throughout (reused,
        not one per segment); 30 s after the last write it is let go again;
        a write after that is in the bucket and restores."""
        store = os.path.join(self.dir, "s3data")
        os.makedirs(store)
        server = S3Server(0, store, keep_alive_ms=600000)
        self.addCleanup(server.stop)
        url = server.url
        port = int(url.rsplit(":", 1)[1].strip("/"))
        paths = []
        for i in range(5):
            path = os.path.join(self.dir, f"db{i}.db")
            with sqlite3.connect(path) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, payload BLOB)")
            paths.append(path)
        self.write_config(
            ", ".join(f'{{ name = "db{i}"; path = "{p}"; }}' for i, p in enumerate(paths)),
            defaults='replicate = { target = "offsite"; interval = "1s"; };',
            targets=self.s3_target(url))
        agent = self.start_agent(env=self.env)
        self.wait_for(lambda: len(glob.glob(os.path.join(store, "**", "index.json*"),
                                            recursive=True)) >= 5,
                      what="an index.json for each database in the bucket")
        started = time.monotonic()
        self.wait_for(lambda: not connections_to(agent.pid, port), timeout=90, interval=0.5,
                      what="the agent to let go of its connections once the bases are up")
        rested_after_bases = time.monotonic() - started

        samples = []
        with sqlite3.connect(paths[0]) as db:
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                db.execute("INSERT INTO r (payload) VALUES (randomblob(100))")
                db.commit()
                samples.append(connections_to(agent.pid, port))
                time.sleep(0.02)
        written = time.monotonic()
        # From the first segment's upload on, which opens it, the uploader's
        # connection is in every sample.
        first = next((i for i, sample in enumerate(samples) if sample), len(samples))
        self.assertLess(first, len(samples) // 2, f"no connection while writing: {samples[::25]}")
        kept = set.intersection(*samples[first:])
        self.assertTrue(kept, f"no connection kept while writing: {samples[first::25]}")
        self.wait_for(lambda: not connections_to(agent.pid, port), timeout=90, interval=0.5,
                      what="the agent to let go of its connection after the last write")
        print(f"\nno connection {rested_after_bases:.1f} s after the bases; while writing "
              f"{len(set().union(*samples))} in all, {kept} throughout; none "
              f"{time.monotonic() - written:.1f} s after the last write")

        with sqlite3.connect(paths[2]) as db:
            db.execute("INSERT INTO r (payload) VALUES ('after the rest')")
        out = os.path.join(self.dir, "db2-restored.db")

        def restored():
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(out + suffix):
                    os.unlink(out + suffix)
            if self.run_cli("restore", "db2", "--to", out, "--at", "latest",
                            env=self.env).returncode != 0:
                return False
            with sqlite3.connect(out) as db:
                return db.execute("SELECT count(*) FROM r WHERE payload = 'after the rest'"
                                  ).fetchone()[0] == 1
        self.wait_for(restored, timeout=30, interval=0.5,
                      what="the write after the rest in the bucket")
        self.assertEqual(self.stop_agent(agent)[0], 0)


def connections_to(pid, port):
    """The local ports of PID's established TCP connections to 127.0.0.1:PORT
    (its sockets in /proc/PID/fd matched with /proc/PID/net/tcp)."""
    inodes = set()
    for fd in glob.glob(f"/proc/{pid}/fd/*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    try:
        with open(f"/proc/{pid}/net/tcp") as f:
            next(f)
            for row in f:
                fields = row.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
                    ports.add(int(local.split(":")[1], 16))
    except OSError:
        pass
    return ports


if __name__ == "__main__":
    unittest.main()

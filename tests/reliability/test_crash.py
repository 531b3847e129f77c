"""Crash safety: SIGKILL `sqlprodd backup`, `upload`, `prune` and the agent
at random moments, hundreds of times, and check after every kill what a user
relies on:

- every archive that has a manifest (locally and on the dir target) passes
  `gzip -t` and matches the manifest's sha256 and size; an archive without a
  manifest is allowed only until the next run cleans it (remotely: until the
  upload after the restart); a manifest without its archive never, locally
  or remotely;
- no backup that ever existed verified is lost: each is still kept locally
  or is complete on the target (local retention may drop only uploaded ones);
- after a restart (the agent starts, runs, stops on SIGTERM; then an upload):
  no temp file anywhere, no orphan archive, the upload queue is empty, and
  every local backup is on the target with the same bytes.

SQLPRODD_CRASH_TRIALS (default 200) sets the number of kills; the seed is
printed so a failure can be replayed with SQLPRODD_CRASH_SEED.
"""
import os
import random
import signal
import subprocess
import time
import unittest

from reliability import (BIN, AgentTestCase, Writer, create_database, incompressible_database,
                         queue_rows, sha256_file, verify_archive_dir)

TRIALS = int(os.environ.get("SQLPRODD_CRASH_TRIALS", "200"))
SEED = int(os.environ.get("SQLPRODD_CRASH_SEED", str(int(time.time()))))
# Share of the trials per kind of kill (the rest: the agent).
MODES = [("backup-small", 0.33), ("backup-big", 0.17), ("upload", 0.2), ("prune", 0.1),
         ("agent", 0.2)]


class CrashSafetyTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.offsite = os.path.join(self.dir, "offsite")
        os.mkdir(self.offsite)
        create_database(self.db_path("small"), rows=300)
        incompressible_database(self.db_path("big"), 16)
        jobs = ('backup = { every = "1s"; keep = { last = 3; }; }; '
                'upload = { target = "nas"; keep = { last = 100000; }; };')
        self.write_config(
            f'{{ name = "small"; path = "{self.db_path("small")}"; {jobs} }},'
            f'{{ name = "big"; path = "{self.db_path("big")}"; {jobs} }}',
            defaults='checkpoint = { every = "2s"; }; health = { every = "3s"; };',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.offsite}"; }}')
        self.writer = Writer(self.db_path("small"), rate=50)
        self.ever_verified = {}  # "db/name" -> sha256
        self.remote_checked = {}  # path -> (size, mtime) already verified
        self.leftovers_seen = 0  # checks that found a temp file or an unfinished archive

    def tearDown(self):
        self.stop_writer()
        super().tearDown()

    def stop_writer(self):
        if self.writer:
            report = self.writer.stop()
            self.writer = None
            return report
        return None

    def spawn(self, mode):
        args = {"backup-small": ["backup", "small"], "backup-big": ["backup", "big"],
                "upload": ["upload"], "prune": ["prune"], "agent": ["run"]}[mode]
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("JOURNAL_STREAM", None)
        log = open(os.path.join(self.dir, "agent.log"), "a")
        log.write(f"--- {mode}\n")
        log.flush()
        process = subprocess.Popen([BIN, "-c", self.config_path, *args], stdout=log,
                                   stderr=subprocess.STDOUT, env=env)
        log.close()
        self.processes.append(process)
        return process

    def timed_run(self, mode):
        """One uninterrupted run, to learn how long a kill window is."""
        started = time.monotonic()
        process = self.spawn(mode)
        if mode == "agent":
            time.sleep(3)
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
        elapsed = time.monotonic() - started
        self.assertEqual(code, 0, f"{mode} failed uninterrupted:\n{self.tail_log()}")
        if mode.startswith("backup"):
            time.sleep(1.0)  # archive names have one-second resolution
        return elapsed

    def check_invariants(self, trial, after_restart=False):
        local = {}
        for name in ("small", "big"):
            directory = os.path.join(self.backup_dir, name)
            verified, orphans, temps, problems = verify_archive_dir(directory)
            self.assertEqual(problems, [], f"trial {trial}: local {name}: {problems}")
            for archive in verified:
                path = os.path.join(directory, archive)
                local[f"{name}/{archive}"] = sha256_file(path)
            self.leftovers_seen += bool(temps or orphans)
            if after_restart:
                self.assertEqual(temps, [], f"trial {trial}: temp files left in {directory}")
                self.assertEqual(orphans, [], f"trial {trial}: unfinished archives left")
        remote = self.check_remote(trial, after_restart)
        for key, digest in local.items():
            self.ever_verified.setdefault(key, digest)
        lost = [key for key in self.ever_verified if key not in local and key not in remote]
        self.assertEqual(lost, [], f"trial {trial}: verified backups lost (neither kept locally "
                                   f"nor on the target)\n{self.tail_log()}")
        for key in local:
            if key in remote:
                self.assertEqual(local[key], remote[key], f"trial {trial}: {key} differs remotely")
        if after_restart:
            self.assertEqual(queue_rows(self.state_dir), [],
                             f"trial {trial}: the upload queue did not complete")
            missing = sorted(set(local) - set(remote))
            self.assertEqual(missing, [], f"trial {trial}: local backups never uploaded while "
                                          f"the queue is empty\n{self.tail_log()}")
            for base in (self.state_dir, self.backup_dir, self.offsite):
                for root, _, files in os.walk(base):
                    leftovers = [f for f in files if "sqlprodd-tmp" in f]
                    self.assertEqual(leftovers, [], f"trial {trial}: temp files in {root}")

    def check_remote(self, trial, after_restart):
        remote = {}
        for name in ("small", "big"):
            directory = os.path.join(self.offsite, name)
            if not os.path.isdir(directory):
                continue
            names = set(os.listdir(directory))
            # The upload puts the archive before its manifest and remote
            # retention deletes the manifest first: a kill never leaves a
            # manifest that points at nothing.
            dangling = sorted(n for n in names if n.endswith(".db.gz.json") and n[:-5] not in names)
            self.assertEqual(dangling, [], f"trial {trial}: remote {name}: manifests without "
                                           f"their archive\n{self.tail_log()}")
            if after_restart:
                unfinished = sorted(n for n in names
                                    if n.endswith(".db.gz") and n + ".json" not in names)
                self.assertEqual(unfinished, [], f"trial {trial}: remote {name}: archives "
                                                 f"without a manifest after the restart")
            for archive in names:
                if not archive.endswith(".db.gz") or archive + ".json" not in names:
                    continue
                path = os.path.join(directory, archive)
                stamp = (os.path.getsize(path), os.stat(path).st_mtime_ns,
                         os.stat(path + ".json").st_mtime_ns)
                if self.remote_checked.get(path, (None, None))[0] != stamp:
                    verified, _, _, problems = verify_archive_dir_single(directory, archive)
                    self.assertEqual(problems, [], f"trial {trial}: remote {name}: {problems}")
                    self.remote_checked[path] = (stamp, sha256_file(path))
                remote[f"{name}/{archive}"] = self.remote_checked[path][1]
        return remote

    def wait_for_fresh_second(self, name):
        """Archive names have one-second resolution: a second backup within
        the same second first waits for the next one, and a kill timed for the
        backup's work would land in that wait instead."""
        directory = os.path.join(self.backup_dir, name)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        if os.path.isdir(directory) and any(stamp in f for f in os.listdir(directory)):
            time.sleep(1.0 - time.time() % 1.0 + 0.01)

    def tail_log(self):
        return "\n".join(self.agent_log().splitlines()[-40:])

    def restart(self, trial):
        """A restart: the agent starts (cleaning up after the crash), runs its
        jobs for a moment and stops on SIGTERM; then a one-off upload drains
        what the agent's back-off left queued."""
        agent = self.spawn("agent")
        time.sleep(1.5)
        agent.send_signal(signal.SIGTERM)
        self.assertEqual(agent.wait(timeout=60), 0, f"trial {trial}: the agent did not stop "
                                                    f"cleanly\n{self.tail_log()}")
        result = self.run_cli("upload")
        self.assertEqual(result.returncode, 0, f"trial {trial}: upload after restart failed: "
                                               f"{result.stderr}")
        self.check_invariants(trial, after_restart=True)

    def test_random_sigkill(self):
        rng = random.Random(SEED)
        print(f"\ncrash trials: {TRIALS}, seed {SEED}", flush=True)
        durations = {mode: max(self.timed_run(mode), 0.05) for mode, _ in MODES}
        self.check_invariants(0)
        counts = {mode: 0 for mode, _ in MODES}
        killed_mid_run = 0
        for trial in range(1, TRIALS + 1):
            pick, total = rng.random(), 0.0
            mode = MODES[-1][0]
            for candidate, share in MODES:
                total += share
                if pick < total:
                    mode = candidate
                    break
            counts[mode] += 1
            if mode.startswith("backup"):
                self.wait_for_fresh_second(mode[len("backup-"):])
            delay = rng.uniform(0, durations[mode] * (1.0 if mode == "agent" else 1.2))
            process = self.spawn(mode)
            time.sleep(delay)
            if process.poll() is None:
                killed_mid_run += 1
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=120)
            self.check_invariants(trial)
            if trial % 10 == 0:
                self.restart(trial)
        self.restart(TRIALS)
        report = self.stop_writer()
        print(f"crash trials by mode: {counts}; killed while running: {killed_mid_run}; "
              f"backups seen verified: {len(self.ever_verified)}; "
              f"checks that found leftovers of a kill: {self.leftovers_seen}; "
              f"calibrated durations: { {m: round(d, 2) for m, d in durations.items()} }",
              flush=True)
        self.assertGreaterEqual(killed_mid_run, TRIALS // 3,
                                "most kills must land while the process runs")
        self.assertEqual(report["errors"], 0, f"the application saw errors: {report}")


def verify_archive_dir_single(directory, archive):
    """verify_archive_dir on one archive (the target grows; verify each once)."""
    return _verify_one(directory, archive)


def _verify_one(directory, archive):
    import json
    from reliability import gzip_ok
    problems = []
    path = os.path.join(directory, archive)
    try:
        with open(path + ".json") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        return [], [], [], [f"{archive}.json: unreadable: {e}"]
    if manifest.get("archive") != archive:
        problems.append(f"{archive}: its manifest names {manifest.get('archive')!r}")
    if os.path.getsize(path) != manifest.get("archive_bytes"):
        problems.append(f"{archive}: {os.path.getsize(path)} bytes, its manifest says "
                        f"{manifest.get('archive_bytes')}")
    elif sha256_file(path) != manifest.get("archive_sha256"):
        problems.append(f"{archive}: sha256 does not match its manifest")
    elif not gzip_ok(path):
        problems.append(f"{archive}: gzip -t fails")
    return ([] if problems else [archive]), [], [], problems


if __name__ == "__main__":
    unittest.main()

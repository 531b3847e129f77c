"""The base of the replication tests (issue 16): the agent replicating one
database, app, to a dir target or the loopback S3 server, written by
pitr_writer.py; restores judged by replica_checks.py.

Not a test module itself (no test_ prefix)."""
import json
import os
import re
import shutil
import statistics
import socket
import time
import urllib.request

from harness import S3TestCase
from replica_checks import (layout_problems, random_instants, replicate_entry, restore,
                            restore_many, sync_s3, unpacked_view)
from pitr_writer import ReplicaWriter, content_hash, create

SECONDS = float(os.environ.get("SQLPRODD_PITR_SECONDS", "25"))
INSTANTS = int(os.environ.get("SQLPRODD_PITR_INSTANTS", "50"))
RATE = 400
INTERVAL = 1.0


class ReplicaTestCase(S3TestCase):
    """No tests of its own: test_replicate_pitr and test_replicate_scenarios."""

    def setUp(self):
        super().setUp()
        self.offsite = os.path.join(self.dir, "offsite")
        os.mkdir(self.offsite)
        self.db = self.db_path("app")
        self.target_kind = "dir"

    def configure(self, kind="dir", extra_db="", extra_defaults="", snapshot_every="1d",
                  window="7d", replicate_extra=""):
        self.target_kind = kind
        if kind == "dir":
            target = f'{{ name = "offsite"; type = "dir"; path = "{self.offsite}"; }}'
        else:
            if not self.server:
                self.start_server()
            target = self.s3_target(self.server.url)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.metrics_port = s.getsockname()[1]
        entry = replicate_entry(interval=f"{INTERVAL:g}s", snapshot_every=snapshot_every,
                                window=window,
                                **({"extra": replicate_extra} if replicate_extra else {}))
        self.write_config(f'{{ name = "app"; path = "{self.db}"; {entry} {extra_db} }}',
                          defaults=extra_defaults, targets=target,
                          extra=f'metrics = {{ listen = "127.0.0.1:{self.metrics_port}"; }};')

    def metric(self, name, **labels):
        """Sum of the samples of NAME{LABELS...} the agent serves (0 when none)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=10) as response:
            text = response.read().decode()
        total, found = 0.0, False
        for line in text.splitlines():
            match = re.match(rf"^{name}(\{{[^}}]*\}})?\s+(\S+)$", line)
            if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
                total += float(match.group(2))
                found = True
        return total if found else None

    def replica_root(self):
        """A local view of PREFIX/app/replica (synced from S3 for an s3 target)
        in the loose layout: packs are cut into their objects, as the
        RESTORING BY HAND section of sqlprodd-format(5) does (unpack; an
        inconsistent pack fails the test here)."""
        if self.target_kind == "dir":
            local = os.path.join(self.offsite, "app", "replica")
        else:
            local = os.path.join(self.dir, "s3-copy")
            shutil.rmtree(local, ignore_errors=True)
            os.mkdir(local)
            sync_s3(self, "db/app/replica", local)
        return unpacked_view(local, os.path.join(self.dir, "unpacked"))

    def agent_env(self):
        return self.env if self.target_kind == "s3" else None

    def start_replicating(self):
        agent = self.start_agent(env=self.agent_env())

        def ready():
            self.assertIsNone(agent.poll(), f"the agent exited\n{self.agent_log()}")
            root = self.replica_root()
            return os.path.isdir(root) and any(
                os.path.exists(os.path.join(root, name, "base.json"))
                for name in os.listdir(root) if name.startswith("g"))
        self.wait_for(ready, timeout=60, interval=0.5,
                      what="a first restorable replica (base shipped)")
        return agent

    def restorable_k(self, at="latest"):
        """meta.k of `restore --at AT`, or None when it fails."""
        to = os.path.join(self.dir, "probe.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(to + suffix):
                os.unlink(to + suffix)
        code, _, _ = restore(self.config_path, "app", to, at, env=self.agent_env())
        if code != 0:
            return None
        return content_hash(to)[0]

    def wait_caught_up(self, commits, timeout=60):
        last = max(commits)
        started = time.monotonic()
        self.wait_for(lambda: self.restorable_k() == last, timeout=timeout, interval=0.3,
                      what=f"the replica to reach the writer's last commit {last}")
        return time.monotonic() - started

    def check_layout(self, min_generations=1):
        problems, generations = layout_problems(self.replica_root())
        self.assertEqual(problems, [], "the replica's layout on the target is wrong")
        self.assertGreaterEqual(len(generations), min_generations, sorted(generations))
        return generations

    def writer_report_ok(self, report):
        self.assertEqual(report["errors"], 0, f"the application saw errors: {report['messages']}")

    def window(self, kind, checkpoint="none", seconds=None, instants=None, wal_sizes=None,
               finish=True, replicate_extra=""):
        """Agent + writer for SECONDS, then INSTANTS restores judged."""
        create(self.db)
        self.configure(kind, replicate_extra=replicate_extra)
        agent = self.start_replicating()
        writer = ReplicaWriter(self.db, rate=RATE, checkpoint=checkpoint)
        self.processes.append(writer.process)
        end = time.monotonic() + (seconds or SECONDS)
        while time.monotonic() < end:
            time.sleep(0.25)
            if wal_sizes is not None and os.path.exists(self.db + "-wal"):
                wal_sizes.append(os.path.getsize(self.db + "-wal"))
            self.assertIsNone(agent.poll(), f"the agent exited\n{self.agent_log()}")
        report = writer.stop()
        self.writer_report_ok(report)
        commits = writer.commits()
        # Every check runs and reports, so that one failure (the replica not
        # catching up, a break) does not hide what the restores show.
        failures = []

        def soft(check, *args, **kwargs):
            try:
                return check(*args, **kwargs)
            except AssertionError as e:
                failures.append(str(e)[:3000])
                return None

        caught_up = soft(self.wait_caught_up, commits)
        rate = report["commits"] / (seconds or SECONDS)
        generations = soft(self.check_layout) or {}
        # the agent's own resets are lossless: every generation after the
        # first starts from the end of the one before, and no break is counted
        root = self.replica_root()
        linked = []
        for name in sorted(generations)[1:]:
            with open(os.path.join(root, name, "base.json")) as f:
                if not json.load(f).get("from"):
                    linked.append(name)
        if linked:
            failures.append(f"{len(linked)} of {len(generations)} generations needed a new base "
                            f"(a break) in a run without any: {linked[:10]}")
        breaks = self.metric("sqlprodd_replicate_breaks_total", database="app")
        if breaks:
            failures.append(f"sqlprodd_replicate_breaks_total = {breaks:g} in a run without any")
        soft(self.assertIsNotNone, self.metric("sqlprodd_replicate_lag_seconds", database="app"),
             "no sqlprodd_replicate_lag_seconds")
        instants_list = random_instants(commits, instants or INSTANTS, INTERVAL, seed=len(commits))
        started = time.monotonic()
        results = soft(restore_many, self, self.config_path, "app", instants_list, commits,
                       INTERVAL, self.dir, env=self.agent_env()) or []
        took = time.monotonic() - started
        print(f"\n{self.id()}: {report['commits']} commits ({rate:.0f}/s), "
              f"{len(generations)} generation(s), "
              f"{sum(len(s) for s in generations.values())} segments; last commit on the target "
              f"{caught_up if caught_up is None else round(caught_up, 1)}s after the writer "
              f"stopped; {len(instants_list)} restores in {took:.1f}s, "
              f"{'all exact' if results else 'NOT all exact'}")
        self.stop_agent(agent)
        self.pending_failures = failures
        if finish:
            self.fail_pending()
        return report, commits, results

    def fail_pending(self):
        """Fails with every check of window() that failed (finish=False
        leaves them for after the caller's own checks and prints)."""
        failures = getattr(self, "pending_failures", [])
        if failures:
            self.fail(f"{len(failures)} failed checks:\n- " + "\n- ".join(failures))


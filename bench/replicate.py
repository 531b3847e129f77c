#!/usr/bin/env python3
"""Continuous replication (issues 16, 17): sqlprodd's `replicate` beside
Litestream v0.3.13 and beside nothing, on the same generated database and the
same writer, in one run.

First the writer alone (no agent): the application's COMMIT latency p50, p99
and worst, the baseline of the second table. Then for each tool and each run
(medians of --runs, at least 3), the same latency beside it, and:
  - delay from a commit to an object on the target holding it, p50 and p99:
    the writer (tests/integration/pitr_writer.py --marker) puts the text
    MK<k> in every row it writes in commit k and logs when COMMIT returned;
    a watcher polls the target's directory every 10 ms, decompresses each new
    WAL object (gzip for sqlprodd, LZ4 for Litestream) and notes when each
    MK<k> first appears. Deletes carry no marker and are not counted.
  - the application's WAL size over time: max and median of the -wal file,
    sampled every 0.5 s (sqlprodd's must stay under wal_warn, 100 MB);
  - the agent's peak RSS (VmHWM) at the end of the writing (with --keep,
    rss.tsv has its RSS and the WAL's size every 0.5 s, to see what made
    the peak), and its CPU time over the writing's (100 %: one CPU);
  - objects: put (every object that reached the target, packs included,
    scaled to a day), held (on the target when the writing ends), held/day
    (what a day at this pace leaves, before retention: for sqlprodd the
    compaction rule applied to a day of loose objects; for Litestream, whose
    v0.3.13 does not compact, every object put), and restore reads (objects
    `sqlprodd restore` says it read); bytes the writing added to the target
    (target) and bytes put, packs included (uploaded), scaled to an hour;
  - the restore time of the base plus the WAL written (--base, default 1 GiB,
    --minutes, default 10, at --rate, default 1000 tx/s): `sqlprodd restore
    --at latest` against `litestream restore`, each --runs times; the
    restored file must hold the writer's last commit;
  - for sqlprodd, the issue's yardstick for that restore: a snapshot restore
    of the same database (a `sqlprodd backup` of the file as the writer left
    it, restored from the local backup directory with its SHA-256 and
    quick_check), --runs times, and the ratio of the two medians (target:
    at most 1.5x).

  bench/replicate.py                 the issue's sizes: 1 GiB, 10 min (hours)
  bench/replicate.py --quick         64 MiB, 30 s, for trying it
  bench/replicate.py --base 256 --minutes 2 --rate 1000 --runs 3
  bench/replicate.py --target s3 ... both tools to the loopback S3 server
  bench/replicate.py --only alone,sqlprodd --runs 5 --restores 0 --base 256
      --minutes 3 --delta-every 1m   the application's p99: five interleaved pairs

--target dir (the default) replicates to a directory on local disk (sqlprodd's
`dir` target, Litestream's `file` replica); --target s3 to the S3 test server
of tests/s3 (s3rver behind a front that checks every Signature V4) on
127.0.0.1, one server per run, for both tools (Litestream's `s3` replica with
`endpoint` and `force-path-style`). The watcher then polls the server's own
store, where s3rver keeps each object as KEY._S3rver_object.

Needs: a Release build (SQLPRODD_BIN, default build-bench/sqlprodd), the
Litestream binary (LITESTREAM_BIN, or it is fetched with
`npm pack @flydotio/litestream-linux-x64` into BENCH_DIR/litestream; that
package's 1.0.1 carries Litestream v0.3.13), `lz4` (Debian package lz4) and
/usr/bin/time; for --target s3, Node.js and `npm ci` run in tests/s3.
"""
import argparse
import glob
import gzip
import hashlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import textwrap
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from benchlib import (S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, WORK, S3Server,  # noqa: E402
                      binary, drop, generate_database, mib, table)
from pitr_writer import ReplicaWriter, content_hash, create  # noqa: E402

MARK = re.compile(rb"MK(\d{9});")
S3_OBJECT = "._S3rver_object"  # s3rver's store: KEY._S3rver_object, beside metadata files


def complete(path):
    """Whether an object's file is whole. A target directory's objects are
    renamed into place whole; s3rver writes an object's file as it arrives
    and its .md5 beside it after, so a file is whole once that matches. (A
    gzip file cut at a member's end reads without error: without this, the
    watcher took half-written segments for whole ones.)"""
    if not path.endswith(S3_OBJECT):
        return True
    try:
        with open(path + ".md5") as f:
            expected = f.read().strip().strip('"')
        with open(path, "rb") as f:
            return hashlib.md5(f.read()).hexdigest() == expected
    except OSError:
        return False


def object_name(path):
    """The object's key path for a file of a target directory or of s3rver's
    store (None for s3rver's metadata files)."""
    if path.endswith(S3_OBJECT):
        return path[:-len(S3_OBJECT)]
    return None if "._S3rver_" in path else path


def litestream_binary():
    path = os.environ.get("LITESTREAM_BIN")
    if path:
        return path
    cache = os.path.join(WORK, "litestream")
    path = os.path.join(cache, "package", "litestream")
    if not os.access(path, os.X_OK):
        os.makedirs(cache, exist_ok=True)
        subprocess.run(["npm", "pack", "@flydotio/litestream-linux-x64@1.0.1"], cwd=cache,
                       check=True, stdout=subprocess.DEVNULL)
        with tarfile.open(glob.glob(os.path.join(cache, "*.tgz"))[0]) as tar:
            tar.extractall(cache)
    version = subprocess.run([path, "version"], capture_output=True, text=True).stdout.strip()
    if version != "v0.3.13":
        sys.exit(f"{path} is Litestream {version}, not v0.3.13")
    return path


class Watcher(threading.Thread):
    """Polls a target directory; {k: first time an object holding MK<k> appeared}."""

    def __init__(self, root, is_wal, decompress):
        super().__init__(daemon=True)
        self.root, self.is_wal, self.decompress = root, is_wal, decompress
        self.seen_files, self.first = set(), {}
        self.every_name = {}  # every object seen, of any kind, and its size: what was put
        self.before = set()  # the objects there when watching began
        self.stopping = False

    def run(self):
        # What is there before the writing (the base or snapshot) was not put by it.
        self.scan()
        self.before = set(self.every_name)
        self.every_name.clear()
        while not self.stopping:
            self.scan()
            time.sleep(0.01)
        self.scan()

    def scan(self):
        for directory, _, files in os.walk(self.root):
            for name in files:
                path = os.path.join(directory, name)
                key = object_name(path)
                if key is None:
                    continue
                new = key not in self.every_name and key not in self.before
                wal = path not in self.seen_files and self.is_wal(key)
                if not (new or wal) or not complete(path):  # hashed once, when it matters
                    continue
                if new:
                    try:
                        self.every_name[key] = os.path.getsize(path)
                    except OSError:
                        pass
                if not wal:
                    continue
                now = time.time()
                self.seen_files.add(path)
                try:
                    data = self.decompress(path)
                except (OSError, EOFError, subprocess.CalledProcessError):
                    self.seen_files.discard(path)  # not complete yet: look again
                    continue
                for match in MARK.finditer(data):
                    self.first.setdefault(int(match.group(1)), now)


def gunzip(path):
    with gzip.open(path) as f:
        return f.read()


def unlz4(path):
    return subprocess.run(["lz4", "-dc", path], capture_output=True, check=True).stdout


def vm_kib(pid, field):
    """A field of /proc/PID/status in KiB (VmHWM: the peak; VmRSS: now)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid):
    """User and system CPU time of a process, all its threads, so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def vm_hwm_kib(pid):
    return vm_kib(pid, "VmHWM:")


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Tool:
    compact = True  # sqlprodd's replicate.compact (--no-compact)

    def __init__(self, name, work, db, s3=None):
        """`s3`: the S3Server to replicate to, else a directory target."""
        self.name, self.work, self.db, self.s3 = name, work, db, s3
        # where the objects land as files: the directory, or the server's store
        self.target = s3.store if s3 else os.path.join(work, "target")

    def held_in_a_day(self, names, minutes):
        """Objects on the target after a day at this pace, before retention:
        without compaction, every object put."""
        return len(names) * 1440 / minutes

    def environment(self):
        return dict(os.environ)


class Sqlprodd(Tool):
    delta_every = None  # replicate.delta_every (--delta-every); None: the agent's default
    deltas = True  # replicate.deltas (--no-deltas)
    log_level = "info"  # --log-level

    def configure(self):
        self.config = os.path.join(self.work, "sqlprodd.conf")
        with open(self.config, "w") as f:
            f.write(textwrap.dedent(f"""\
                state_dir = "{self.work}/state"; log_level = "{self.log_level}";
                defaults = {{ backup = {{ dir = "{self.work}/backups"; }}; }};
                targets = ( {self.target_config()} );
                databases = ( {{ name = "app"; path = "{self.db}";
                  replicate = {{ target = "offsite"; interval = "1s"; snapshot_every = "1d";
                                window = "7d"; compact = {"true" if self.compact else "false"};
                                {f'delta_every = "{self.delta_every}";' if self.delta_every else ""}
                                {"" if self.deltas else "deltas = false;"} }};
                }} );
                """))

    def target_config(self):
        if not self.s3:
            return f'{{ name = "offsite"; type = "dir"; path = "{self.target}"; }}'
        return self.s3.target_config("offsite")

    def environment(self):
        return S3Server.environment()

    def start(self):
        self.log = open(os.path.join(self.work, "agent.log"), "a")
        self.process = subprocess.Popen([binary(), "-c", self.config, "run"], stdout=self.log,
                                        stderr=subprocess.STDOUT, env=self.environment())

    def ready(self):
        index = os.path.join(self.target, "app", "replica", "index.json")
        return os.path.exists(index + S3_OBJECT if self.s3 else index)

    def watcher(self):
        return Watcher(self.target, lambda p: p.endswith(".wal.gz"), gunzip)

    def held_in_a_day(self, names, minutes):
        """What compaction (src/replicate/compactor.h) leaves of a day of the
        loose objects put at this pace, found by running its rule on them:
        the loose objects seen (in the order put, with their sizes) repeated
        to fill a day; 16 loose make a level-1 pack, 4 packs of a level one
        of the next; a merge that would pass 65536 objects or 64 GiB is not
        made and its members stay, full. A pack is two objects with its
        manifest; plus the base file and index.json. With a base every
        `snapshot_every` (a day), this is also what a restore to the worst
        instant of the window reads."""
        loose = [size for n, size in names.items()
                 if "/packs/" not in n and not n.endswith(("index.json", ".sqlprodd-tmp"))
                 and not re.search(r"/base\.db\.gz(\.age)?$", n)]
        if not loose:
            return 2
        day = int(len(loose) * 1440 / minutes)
        stack = []  # [level, objects, bytes, full]
        for i in range(day):
            stack.append([0, 1, loose[i % len(loose)], False])
            while True:
                level = stack[-1][0]
                fanout = 16 if level == 0 else 4
                run = stack[-fanout:]
                if len(run) < fanout or any(item[3] or item[0] != level for item in run):
                    break
                objects, size = sum(item[1] for item in run), sum(item[2] for item in run)
                if objects > 65536 or size > 64 << 30:
                    for item in run:
                        item[3] = True
                    break
                del stack[-fanout:]
                stack.append([level + 1, objects, size, False])
        return sum(2 if item[0] else 1 for item in stack) + 2

    def restore_argv(self, out):
        return [binary(), "-c", self.config, "restore", "app", "--to", out, "--at", "latest"]

    def snapshot_argv(self, out):
        """The issue's yardstick: a snapshot restore of the same database
        (as the writer left it) from a backup of it in the local backup
        directory: SHA-256, decompression, quick_check, as a restore of the
        replica does."""
        return [binary(), "-c", self.config, "restore", "app", "--to", out]

    def take_snapshot(self):
        subprocess.run([binary(), "-c", self.config, "backup", "app"], check=True,
                       capture_output=True, env=self.environment())


class Alone(Tool):
    """The writer with no agent at all: the application's own latency."""
    process = None

    def configure(self):
        pass

    def start(self):
        pass

    def ready(self):
        return True


class Litestream(Tool):
    def configure(self):
        self.config = os.path.join(self.work, "litestream.yml")
        if self.s3:
            replica = ["type: s3", f"bucket: {S3_BUCKET}", "path: app",
                       f"endpoint: {self.s3.url}", "region: us-east-1", "force-path-style: true",
                       f"access-key-id: {S3_ACCESS_KEY}", f"secret-access-key: {S3_SECRET_KEY}"]
        else:
            replica = ["type: file", f"path: {self.target}"]
        replica.append("sync-interval: 1s")
        with open(self.config, "w") as f:
            f.write(f"dbs:\n  - path: {self.db}\n    monitor-interval: 1s\n    replicas:\n"
                    f"      - {replica[0]}\n"
                    + "".join(f"        {line}\n" for line in replica[1:]))

    def start(self):
        self.log = open(os.path.join(self.work, "litestream.log"), "a")
        self.process = subprocess.Popen([litestream_binary(), "replicate", "-config", self.config],
                                        stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self):
        root = os.path.join(self.target, "app") if self.s3 else self.target
        return bool(glob.glob(os.path.join(root, "generations", "*", "snapshots", "*")))

    def watcher(self):
        return Watcher(self.target, lambda p: "/wal/" in p and p.endswith(".wal.lz4"), unlz4)

    def restore_argv(self, out):
        if self.s3:
            # Its restore lists the generations with a delimiter, which s3rver
            # answers with nothing ("no matching backups found"): not measured.
            return None
        return [litestream_binary(), "restore", "-config", self.config, "-o", out, self.db]


def renice_tree(pid, niceness):
    """PID and every process under it (the S3 server's front and its s3rver
    child) at NICENESS: each of their threads, as Linux keeps a nice value
    per thread (threads started later inherit it)."""
    children = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
        except (OSError, IndexError, ValueError):
            continue
    pending = [pid]
    while pending:
        current = pending.pop()
        for task in os.listdir(f"/proc/{current}/task"):
            os.setpriority(os.PRIO_PROCESS, int(task), niceness)
        pending += children.get(current, [])


def one_run(kind, args, source, run):
    work = os.path.join(WORK, f"replicate-{kind.__name__.lower()}-{run}")
    drop(work)
    os.makedirs(work)
    db = os.path.join(work, "app.db")
    shutil.copyfile(source, db)
    create(db)  # the writer's tables, in WAL mode
    s3 = S3Server(os.path.join(work, "s3")) if args.target == "s3" and kind is not Alone else None
    if s3 and args.server_nice:
        renice_tree(s3.process.pid, args.server_nice)
    try:
        return measure_run(kind, args, source, run, work, db, s3)
    finally:
        if s3:
            s3.stop()


def measure_run(kind, args, source, run, work, db, s3):
    tool = kind(kind.__name__, work, db, s3)
    os.makedirs(tool.target, exist_ok=True)  # a dir target must exist
    tool.configure()
    tool.start()
    deadline = time.monotonic() + 600
    while not tool.ready():
        if tool.process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{tool.name} did not start replicating; see {work}")
        time.sleep(0.1)
    time.sleep(args.settle)  # the runs alone wait too, for the same page cache and clock
    if tool.process is None:
        return alone_run(tool, args, source, run, work)
    watcher = tool.watcher()
    watcher.start()
    before_objects, before_bytes = target_size(tool.target)
    writer = ReplicaWriter(db, rate=args.rate, extra=["--marker"], seed=run)
    wal_sizes, samples = [], []  # samples: (seconds into the run, agent's RSS KiB, WAL bytes)
    began, began_wall = time.monotonic(), time.gmtime()
    cpu_before = cpu_seconds(tool.process.pid)
    end = began + args.minutes * 60
    while time.monotonic() < end:
        time.sleep(0.5)
        wal = os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else None
        if wal is not None:
            wal_sizes.append(wal)
        samples.append((time.monotonic() - began, vm_kib(tool.process.pid, "VmRSS:"), wal or 0))
    rss = vm_hwm_kib(tool.process.pid)
    cpu = (cpu_seconds(tool.process.pid) - cpu_before) / (time.monotonic() - began)
    report = writer.stop()
    after_objects, after_bytes = target_size(tool.target)
    commits = writer.commits()
    last = max(commits)
    settle = time.monotonic() + 30
    while time.monotonic() < settle and last not in watcher.first:
        time.sleep(0.1)
    watcher.stopping = True
    watcher.join()
    delays = [watcher.first[k] - commits[k][1] for k in commits if k in watcher.first]
    if args.keep:  # the agent's RSS and the WAL over the run, to find what made the peak
        with open(os.path.join(work, "rss.tsv"), "w") as f:
            f.write(f"# seconds, VmRSS KiB, WAL bytes; from "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', began_wall)}\n")
            for at, kib, wal in samples:
                f.write(f"{at:.1f}\t{kib}\t{wal}\n")
    if args.keep:  # each commit's time and when it was first seen on the target, to look into
        with open(os.path.join(work, "delays.tsv"), "w") as f:
            for k in sorted(commits):
                f.write(f"{k}\t{commits[k][1]:.3f}\t{watcher.first.get(k, float('nan')):.3f}\n")
    missing = sum(1 for k in commits if k not in watcher.first)
    tool.process.send_signal(signal.SIGTERM)
    tool.process.wait(timeout=60)
    held = target_size(tool.target)[0]
    # Restores of the replica alternated with snapshot restores of the same
    # database, each after a sync, so that neither pays for the other's
    # writeback (or the writer's) and the machine's drift hits both alike.
    restores, reads, snapshots = [], [], []
    snapshot = hasattr(tool, "take_snapshot")
    if snapshot:
        tool.take_snapshot()
    for attempt in range(args.restores if tool.restore_argv("-") else 0):
        out = os.path.join(work, f"restored-{attempt}.db")
        os.sync()
        started = time.monotonic()
        done = subprocess.run(tool.restore_argv(out), capture_output=True, text=True,
                              env=tool.environment())
        if done.returncode != 0:
            sys.exit(f"{tool.name}: restore failed ({done.returncode}): {done.stderr.strip()}; "
                     f"see {work}")
        restores.append(time.monotonic() - started)
        read = re.search(r"(\d+) objects? read", done.stdout + done.stderr)
        if read:
            reads.append(int(read.group(1)))
        k, digest = content_hash(out)
        if k != last or digest != commits[k][2]:
            print(f"  {tool.name}: restore {attempt} holds commit {k}, not {last} "
                  f"(or differs)", file=sys.stderr)
        drop(out)
        if snapshot:
            out = os.path.join(work, f"snapshot-{attempt}.db")
            os.sync()
            started = time.monotonic()
            subprocess.run(tool.snapshot_argv(out), check=True, capture_output=True,
                           env=tool.environment())
            snapshots.append(time.monotonic() - started)
            drop(out)
    result = {
        "rate": report["commits"] / (args.minutes * 60),
        "p50": percentile(delays, 0.5) if delays else float("nan"),
        "p99": percentile(delays, 0.99) if delays else float("nan"),
        "missing": missing,
        "wal_max": max(wal_sizes or [0]), "wal_median": statistics.median(wal_sizes or [0]),
        "rss": rss,
        "cpu": cpu,  # the tool's CPU time over the writing's, all its threads
        # when the sampled RSS was highest, in minutes into the writing
        "rss_peak_minute": max(samples, key=lambda x: x[1])[0] / 60 if samples else float("nan"),
        "restore": statistics.median(restores) if restores else float("nan"),
        "snapshot": statistics.median(snapshots) if snapshots else float("nan"),
        "db_bytes": os.path.getsize(db),
        "objects": len(watcher.seen_files),
        "base": os.path.getsize(source),
        # what the writing added to the target, scaled to a day
        "objects_per_day": (after_objects - before_objects) * 1440 / args.minutes,
        # every object put (packs too, and what compaction then deleted)
        "put_per_day": len(watcher.every_name) * 1440 / args.minutes,
        "held": held,
        "uploaded_per_hour": sum(watcher.every_name.values()) * 60 / args.minutes,
        "held_day": tool.held_in_a_day(watcher.every_name, args.minutes),
        "restore_reads": statistics.median(reads) if reads else float("nan"),
        "bytes_per_hour": (after_bytes - before_bytes) * 60 / args.minutes,
        **latency(report),
    }
    print(f"  {tool.name} run {run}: {result}", file=sys.stderr)
    if not args.keep:
        drop(work)
    return result


def target_size(root):
    """(objects, bytes) under a target directory."""
    count = size = 0
    for directory, _, files in os.walk(root):
        for name in files:
            if object_name(name) is None:
                continue
            try:
                size += os.path.getsize(os.path.join(directory, name))
                count += 1
            except OSError:
                pass
    return count, size


def latency(report):
    """The application's COMMIT latency (BEGIN to COMMIT returned) and errors."""
    values = report.get("latencies_ms") or [float("nan")]
    return {"app_p50": percentile(values, 0.5), "app_p99": percentile(values, 0.99),
            "app_max": max(values), "app_errors": report["errors"]}


def alone_run(tool, args, source, run, work):
    writer = ReplicaWriter(tool.db, rate=args.rate, extra=["--marker"], seed=run)
    time.sleep(args.minutes * 60)
    report = writer.stop()
    result = {"rate": report["commits"] / (args.minutes * 60), **latency(report)}
    print(f"  {tool.name} run {run}: {result}", file=sys.stderr)
    if not args.keep:
        drop(work)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=1024, help="MiB of the base (1024)")
    parser.add_argument("--minutes", type=float, default=10, help="of WAL at --rate (10)")
    parser.add_argument("--rate", type=float, default=1000, help="commits/s (1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs and restores per tool (3)")
    parser.add_argument("--restores", type=int, default=None,
                        help="restores (and snapshot restores) after each run (--runs)")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 0.5 min")
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    parser.add_argument("--only", metavar="TOOLS",
                        help="a comma-separated subset of alone,sqlprodd,litestream, run in "
                             "that order within each run (alone,sqlprodd --runs 5 gives five "
                             "interleaved pairs for the application's latency)")
    parser.add_argument("--target", choices=("dir", "s3"), default="dir",
                        help="a directory on local disk (dir), or the loopback S3 server (s3)")
    parser.add_argument("--no-deltas", action="store_true",
                        help="sqlprodd with replicate.deltas = false (what page deltas cost)")
    parser.add_argument("--no-compact", action="store_true",
                        help="sqlprodd with replicate.compact = false (what compaction costs)")
    parser.add_argument("--delta-every", metavar="DURATION",
                        help="sqlprodd's replicate.delta_every (default: the agent's default)")
    parser.add_argument("--settle", type=float, default=0, metavar="SECONDS",
                        help="wait this long after the tool is up before the writer starts, "
                             "so that its start (first base, start-up backup) is outside the "
                             "measured window, as it is in a long run (default 0)")
    parser.add_argument("--log-level", default="info", metavar="LEVEL",
                        help="sqlprodd's log_level (debug: how long each reset round held the "
                             "write lock, in agent.log with --keep)")
    parser.add_argument("--server-nice", type=int, default=0, metavar="N",
                        help="run the S3 server at nice N (19: it gets only the CPU that the "
                             "writer and the tool leave, as a remote server would take none)")
    args = parser.parse_args()
    Tool.compact = not args.no_compact
    Sqlprodd.delta_every = args.delta_every
    Sqlprodd.deltas = not args.no_deltas
    Sqlprodd.log_level = args.log_level
    if args.quick:
        args.base, args.minutes = 64, 0.5
    if args.restores is None:
        args.restores = args.runs
    os.makedirs(WORK, exist_ok=True)
    source = os.path.join(WORK, f"replicate-base-{args.base}.db")
    generate_database(source, args.base * 1048576)
    tools = [Alone, Sqlprodd, Litestream]
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in ("alone", "sqlprodd", "litestream")]
        if unknown or not names:
            parser.error(f"--only: {','.join(unknown) or 'nothing'} is not one of "
                         "alone, sqlprodd, litestream")
        tools = [t for t in tools if t.__name__.lower() in names]
    results = {t.__name__: [] for t in tools}
    for run in range(1, args.runs + 1):
        for tool in tools:  # one after the other: Litestream's read lock would pin our WAL
            results[tool.__name__].append(one_run(tool, args, source, run))
    rows, app_rows = [], []
    for name, runs in results.items():
        def med(key):
            return statistics.median(r[key] for r in runs)
        app_rows.append([name, f"{med('rate'):.0f}", f"{med('app_p50'):.2f} ms",
                         f"{med('app_p99'):.2f} ms", f"{med('app_max'):.0f} ms",
                         f"{med('app_errors'):.0f}"])
        if name == "Alone":
            continue
        rows.append([name, f"{med('rate'):.0f}", f"{med('p50') * 1000:.0f} ms",
                     f"{med('p99') * 1000:.0f} ms", f"{med('missing'):.0f}",
                     mib(med('wal_median')), mib(med('wal_max')),
                     f"{med('rss') / 1024:.1f} MiB", f"{med('cpu') * 100:.0f} %",
                     "-" if med('restore') != med('restore') else f"{med('restore'):.1f} s",
                     "-" if med('snapshot') != med('snapshot') else
                     f"{med('snapshot'):.1f} s ({mib(med('db_bytes'))}), "
                     f"{med('restore') / med('snapshot'):.2f}x",
                     f"{med('put_per_day'):,.0f}", f"{med('held'):,.0f}",
                     f"{med('held_day'):,.0f}", f"{med('restore_reads'):.0f}",
                     f"{mib(med('bytes_per_hour'))}/h", f"{mib(med('uploaded_per_hour'))}/h"])
    where = (f"base {mib(os.path.getsize(source))} + {args.minutes:g} min at {args.rate:g} tx/s, "
             f"interval 1s, "
             + ("dir target on local disk" if args.target == "dir"
                else "the loopback S3 server (tests/s3)")
             + (", sqlprodd with compact = false" if args.no_compact else "")
             + (", sqlprodd with deltas = false" if args.no_deltas else "")
             + (f", the server at nice {args.server_nice}" if args.server_nice else "")
             + (f", the writer started {args.settle:g} s after the tool" if args.settle else "")
             + f"; medians of {args.runs} runs")
    if rows:
        table(f"replication: {where}",
              ["tool", "tx/s", "delay p50", "delay p99", "unmarked", "WAL median", "WAL max",
               "peak RSS", "CPU", "restore", "snapshot restore, ratio", "put/day", "held", "held/day",
               "restore reads", "target", "uploaded"],
              rows)
    table(f"the application's COMMIT latency (BEGIN to COMMIT returned): {where}",
          ["beside", "tx/s", "p50", "p99", "worst", "errors"], app_rows)
    if "Alone" in results and len(results) > 1:
        # Each run's p99 beside a tool over the p99 alone in the same run: the
        # pairs were run one after the other, so a slow spell of the machine
        # moves both sides of a pair, not one side of the median.
        pair_rows = []
        for name, runs in results.items():
            if name == "Alone":
                continue
            ratios = [r["app_p99"] / a["app_p99"] for r, a in zip(runs, results["Alone"])]
            pair_rows.append([name, str(len(ratios)), f"{statistics.median(ratios):.2f}x",
                              f"{min(ratios):.2f}-{max(ratios):.2f}x",
                              " ".join(f"{x:.2f}" for x in ratios)])
        table("the application's p99 beside each tool over its p99 alone, run by run "
              "(target: at most 1.10x)", ["beside", "pairs", "median", "spread", "each pair"],
              pair_rows)


if __name__ == "__main__":
    main()

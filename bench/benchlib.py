"""Helpers shared by the benchmarks in bench/: a realistic generated database,
timing with peak RSS per child process, medians and a side-by-side table.

Benchmarks print numbers; they are not tests and never run under ctest.
"""
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.environ.get("BENCH_DIR", "/tmp/sqlprodd-bench")

WORDS = ("order customer invoice shipped pending paid refund warehouse berlin paris london "
         "madrid rome vienna prague oslo lisbon dublin express standard priority returned "
         "widget gadget sprocket gizmo bolt nut screw bracket panel cable adapter charger "
         "battery monitor keyboard mouse laptop tablet phone camera lens tripod bag strap "
         "red green blue black white silver gold large small medium premium basic "
         "the a of and to in for with on by from at as is was be are this that note "
         "delivery address street avenue road lane suite floor building city postal code "
         "thanks please contact support urgent request change update cancel confirm").split()
FIRST = "anna ben clara david eva felix greta hans ida jonas karl lena max nina otto paula".split()
LAST = "mueller schmidt schneider fischer weber meyer wagner becker schulz hoffmann koch".split()


def binary():
    path = os.environ.get("SQLPRODD_BIN", os.path.join(ROOT, "build-bench", "sqlprodd"))
    if not os.access(path, os.X_OK):
        sys.exit(f"no sqlprodd binary at {path}: build it or set SQLPRODD_BIN")
    return path


def generate_database(path, target_bytes, seed=42):
    """Orders with customers' names, e-mails, addresses, free-text notes made
    of words, amounts, quantities and timestamps, plus two indexes: about
    what a web shop keeps. Compresses about 3-4x with gzip -6, like real data."""
    if os.path.exists(path) and os.path.getsize(path) >= target_bytes * 0.97:
        return
    for suffix in ("", "-wal", "-shm", ".tmp"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    rng = random.Random(seed)
    tmp = path + ".tmp"
    db = sqlite3.connect(tmp, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-65536")
    db.execute("""CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, amount REAL,
                  created INTEGER, email TEXT, address TEXT, quantity INTEGER, status TEXT,
                  note TEXT)""")
    db.execute("CREATE INDEX items_created ON items(created)")
    db.execute("CREATE INDEX items_email ON items(email)")
    now = 1_700_000_000
    row = 0
    while True:
        batch = []
        for _ in range(20000):
            row += 1
            first, last = rng.choice(FIRST), rng.choice(LAST)
            note = " ".join(rng.choices(WORDS, k=rng.randint(4, 30)))
            batch.append((f"{first} {last}", round(rng.uniform(1, 5000), 2),
                          now + row * 7 + rng.randint(0, 6),
                          f"{first}.{last}{rng.randint(1, 9999)}@example.com",
                          f"{rng.randint(1, 300)} {rng.choice(WORDS)} street, "
                          f"{rng.randint(10000, 99999)} {rng.choice(WORDS)}",
                          rng.randint(1, 50), rng.choice(("pending", "paid", "shipped", "returned")),
                          note))
        db.execute("BEGIN")
        db.executemany("INSERT INTO items (name, amount, created, email, address, quantity,"
                       " status, note) VALUES (?,?,?,?,?,?,?,?)", batch)
        db.execute("COMMIT")
        if os.path.getsize(tmp) >= target_bytes:
            break
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    os.rename(tmp, path)


def run(argv, env=None, cwd=None, stdout=subprocess.DEVNULL):
    """Runs argv; returns (seconds, peak RSS in KiB of that process). The
    RSS comes from GNU time's %M: the child of a big Python process would
    otherwise report the parent's RSS, inherited at fork."""
    elapsed, rss, _ = run_cpu(argv, env=env, cwd=cwd, stdout=stdout)
    return elapsed, rss


def run_cpu(argv, env=None, cwd=None, stdout=subprocess.DEVNULL):
    """As run, and also the CPU seconds (user + system) of the process and
    its children, which a noisy neighbour (the S3 server) moves much less
    than the wall time."""
    report = os.path.join(WORK, f".rss-{os.getpid()}")
    started = time.monotonic()
    process = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", report, *argv], env=env,
                             cwd=cwd, stdout=stdout, stderr=subprocess.PIPE)
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({process.returncode}): "
                           f"{process.stderr.decode()[-2000:]}")
    with open(report) as f:
        rss, user, system = f.read().split()[-3:]
    os.unlink(report)
    return elapsed, int(rss), float(user) + float(system)


# The S3 test server of tests/s3 (s3rver behind a front that checks every
# Signature V4), as the integration tests start it: its only credentials and
# its bucket.
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import ACCESS_KEY as S3_ACCESS_KEY  # noqa: E402
from harness import BUCKET as S3_BUCKET  # noqa: E402
from harness import SECRET_KEY as S3_SECRET_KEY  # noqa: E402
from harness import SERVER_DIR as S3_DIR  # noqa: E402
from harness import S3Server as TestS3Server  # noqa: E402


class S3Server(TestS3Server):
    """The test server on a free port, storing under `directory` (the bucket's
    objects as files under `store`); Litestream may send unsigned payloads."""

    def __init__(self, directory):
        if not os.path.isdir(os.path.join(S3_DIR, "node_modules", "s3rver")):
            sys.exit(f"the S3 test server is not installed: run 'npm ci --prefix {S3_DIR}'")
        super().__init__(0, directory, allow_unsigned_payload=True)
        self.store = os.path.join(directory, S3_BUCKET)

    def target_config(self, name):
        """A sqlprodd target of that name on this server."""
        return (f'{{ name = "{name}"; type = "s3"; endpoint = "{self.url}"; '
                f'region = "us-east-1"; bucket = "{S3_BUCKET}"; path_style = true; }}')

    @staticmethod
    def environment(base=None):
        return dict(base if base is not None else os.environ, AWS_ACCESS_KEY_ID=S3_ACCESS_KEY,
                    AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY)


def median(values):
    return statistics.median(values)


def drop(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.unlink(path)


def table(title, header, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    sys.stdout.flush()


def mib(size_bytes):
    return f"{size_bytes / 1048576:.1f} MiB"

#!/usr/bin/env python3
"""bench/backup.py: `sqlprodd backup` against the cron-script reference
`sqlite3 DB "VACUUM INTO 'x'" && gzip -6 x`, on a generated database.

usage: bench/backup.py [--size-mib 1024] [--runs 3] [--verify quick,integrity]
                       [--compress gzip,zstd] [--skip-reference]

Prints, for each variant, the median wall time, its phases (watched from the
files sqlprodd creates: the VACUUM INTO copy and its journal, then the
archive being written), the archive size and the peak RSS of the process.
Target (issue 6): sqlprodd <= 1/4 of the reference's time, archive <= 1.02x.
"""
import argparse
import os
import sys
import threading
import time

import benchlib as b


def reference(database, directory):
    copy = os.path.join(directory, "x")
    b.drop(copy)
    b.drop(copy + ".gz")
    vacuum, _ = b.run(["sqlite3", database, f"VACUUM INTO '{copy}'"])
    gzip, rss = b.run(["gzip", "-6", copy])
    size = os.path.getsize(copy + ".gz")
    b.drop(copy + ".gz")
    return {"total": vacuum + gzip, "vacuum": vacuum, "verify": 0.0, "compress": gzip,
            "bytes": size, "rss": rss}


class PhaseWatcher(threading.Thread):
    """Notes when the copy's journal goes away (VACUUM INTO done) and when
    the temp archive appears (verification done, compression starts)."""

    def __init__(self, directory):
        super().__init__(daemon=True)
        self.directory = directory
        self.vacuum_end = self.compress_start = None
        self.running = True

    def run(self):
        seen_journal = False
        while self.running:
            try:
                names = os.listdir(self.directory)
            except FileNotFoundError:
                names = []
            now = time.monotonic()
            journal = any(n.endswith("-journal") for n in names)
            seen_journal = seen_journal or journal
            if seen_journal and not journal and self.vacuum_end is None:
                self.vacuum_end = now
            if self.compress_start is None and any(
                    (".db.gz." in n or ".db.zst." in n) and "tmp" in n for n in names):
                self.compress_start = now
                if self.vacuum_end is None:
                    self.vacuum_end = now
            time.sleep(0.01)


def state_directory(verify, compress):
    return os.path.join(b.WORK, f"backup-state-{compress}-{verify}")


def sqlprodd(database, directory, verify, compress, threads=None):
    b.drop(directory)
    os.makedirs(directory)
    config = os.path.join(directory, "bench.conf")
    state = state_directory(verify, compress)
    with open(config, "w") as f:
        f.write(f'state_dir = "{state}";\n'
                f'databases = ( {{ name = "app"; path = "{database}"; backup = {{ '
                f'dir = "{directory}/backups"; verify = "{verify}"; compress = "{compress}"; }}; }} );\n')
    if not os.path.isdir(state):
        # The first backup of a database takes the day's full integrity_check
        # whatever `verify` says (health.integrity_every): taken here, untimed,
        # so that the runs measure the backups of the rest of the day.
        os.makedirs(state)
        b.run([b.binary(), "-c", config, "backup", "app"])
        b.drop(os.path.join(directory, "backups"))
    watcher = PhaseWatcher(os.path.join(directory, "backups", "app"))
    watcher.start()
    started = time.monotonic()
    total, rss = b.run([b.binary(), "-c", config, "backup", "app"])
    watcher.running = False
    watcher.join()
    archives = [n for n in os.listdir(os.path.join(directory, "backups", "app"))
                if n.endswith((".db.gz", ".db.zst"))]
    size = os.path.getsize(os.path.join(directory, "backups", "app", archives[0]))
    vacuum_end = watcher.vacuum_end or started
    compress_start = watcher.compress_start or vacuum_end
    return {"total": total, "vacuum": vacuum_end - started, "verify": compress_start - vacuum_end,
            "compress": started + total - compress_start, "bytes": size, "rss": rss}


def summarize(runs):
    return {k: b.median([r[k] for r in runs]) for k in runs[0]}


def main():
    parser = argparse.ArgumentParser(
        description="Times `sqlprodd backup` against `sqlite3 VACUUM INTO` + `gzip -6`."
                    " Tables: bench/README.md.")
    parser.add_argument("--size-mib", type=int, default=1024,
                        help="size of the generated database (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3,
                        help="interleaved runs of every variant (default: %(default)s)")
    parser.add_argument("--verify", default="quick,integrity",
                        help="verify settings to run, comma-separated (default: %(default)s)")
    parser.add_argument("--compress", default="gzip,zstd",
                        help="compress settings to run, comma-separated (default: %(default)s)")
    parser.add_argument("--skip-reference", action="store_true",
                        help="leave out VACUUM INTO + gzip -6 (no 'vs ref' columns)")
    args = parser.parse_args()
    os.makedirs(b.WORK, exist_ok=True)
    database = os.path.join(b.WORK, f"db-{args.size_mib}.db")
    print(f"generating {database} ({args.size_mib} MiB) if needed...", flush=True)
    b.generate_database(database, args.size_mib * 1048576)
    print(f"database: {b.mib(os.path.getsize(database))}", flush=True)

    # Runs are interleaved (reference, then each variant, then again) so
    # that a busy neighbour slows all of them alike.
    variants = [(c, v) for c in args.compress.split(",") for v in args.verify.split(",")]
    for compress, verify in variants:
        b.drop(state_directory(verify, compress))
    runs = {}
    for run in range(args.runs):
        if not args.skip_reference:
            runs.setdefault("VACUUM INTO + gzip -6 (reference)", []).append(reference(database, b.WORK))
        for compress, verify in variants:
            name = f"sqlprodd backup, {compress}, verify={verify}"
            runs.setdefault(name, []).append(
                sqlprodd(database, os.path.join(b.WORK, "backup-run"), verify, compress))
        for name, values in runs.items():
            print(f"run {run}: {name}: {values[-1]}", flush=True)
    results = [(name, summarize(values)) for name, values in runs.items()]
    base = results[0][1] if not args.skip_reference else None
    rows = []
    for name, r in results:
        rows.append([name, f"{r['total']:.2f}", f"{r['vacuum']:.2f}",
                     f"{r['total'] - r['vacuum']:.2f}", b.mib(r["bytes"]),
                     f"{r['bytes'] / base['bytes']:.3f}" if base else "-",
                     f"{r['total'] / base['total']:.3f}" if base else "-",
                     f"{r['rss'] / 1024:.1f} MiB"])
    b.table(f"backup of a {b.mib(os.path.getsize(database))} database, median of {args.runs} runs "
            f"(seconds)", ["variant", "total s", "VACUUM INTO s", "check + compress s", "archive",
                           "size vs ref", "time vs ref", "peak RSS"], rows)


if __name__ == "__main__":
    sys.exit(main())

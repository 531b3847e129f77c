#!/usr/bin/env python3
"""Restore of a backup, side by side with Litestream's snapshot restore.

One generated database (benchlib.generate_database, --size-mib), backed up
once by `sqlprodd backup` into a local directory and replicated by
Litestream v0.3.13 to a file replica until its snapshot is written (then
Litestream is stopped: nothing is written afterwards, so its restore is the
snapshot alone). Then, --runs times, in an order that alternates:

  sqlprodd restore app --to OUT                       SHA-256 + quick_check (default)
  sqlprodd restore app --to OUT --check integrity     SHA-256 + integrity_check
  litestream restore -o OUT DB                        lz4 snapshot, no check

Each restore writes a new file (removed between runs); the page cache is
warm for all of them alike. Prints the median wall time, the spread, the
peak RSS and each one's ratio to Litestream's median (issue 18's target:
the default at most 2x).

Usage: bench/restore.py [--size-mib 232] [--runs 5]
Litestream comes from `npm pack @flydotio/litestream-linux-x64` (see
replicate.py) unless LITESTREAM_BIN names it.
"""
import argparse
import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import WORK, binary, drop, generate_database, median, run, table  # noqa: E402
from replicate import litestream_binary  # noqa: E402


def prepare(work, size_mib):
    source = os.path.join(WORK, f"restore-source-{size_mib}.db")
    generate_database(source, size_mib * 1024 * 1024)
    drop(work)
    os.makedirs(work)
    db = os.path.join(work, "app.db")
    subprocess.run(["cp", source, db], check=True)
    config = os.path.join(work, "sqlprodd.conf")
    with open(config, "w") as f:
        f.write(f'state_dir = "{work}/state";\n'
                f'databases = ( {{ name = "app"; path = "{db}"; '
                f'backup = {{ dir = "{work}/backups"; }}; }} );\n')
    os.makedirs(os.path.join(work, "state"))
    subprocess.run([binary(), "-c", config, "backup", "app"], check=True,
                   stderr=subprocess.DEVNULL)

    litestream_config = os.path.join(work, "litestream.yml")
    with open(litestream_config, "w") as f:
        f.write(textwrap.dedent(f"""\
            dbs:
              - path: {db}
                replicas:
                  - type: file
                    path: {work}/litestream-replica
            """))
    process = subprocess.Popen([litestream_binary(), "replicate", "-config", litestream_config],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not glob.glob(os.path.join(work, "litestream-replica", "generations", "*", "snapshots",
                                     "*.lz4")):
        if time.monotonic() > deadline:
            sys.exit("Litestream wrote no snapshot in 10 minutes")
        time.sleep(0.5)
    time.sleep(3)  # its first WAL segment too
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    return db, config, litestream_config


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=232)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = os.path.join(WORK, "restore")
    db, config, litestream_config = prepare(work, args.size_mib)
    out = os.path.join(work, "out.db")
    tools = {
        "sqlprodd restore (sha256 + quick_check)":
            [binary(), "-c", config, "restore", "app", "--to", out],
        "sqlprodd restore --check integrity":
            [binary(), "-c", config, "restore", "app", "--to", out, "--check", "integrity"],
        "litestream restore (snapshot, no check)":
            [litestream_binary(), "restore", "-config", litestream_config, "-o", out, db],
    }
    times = {name: [] for name in tools}
    rss = {name: [] for name in tools}
    names = list(tools)
    for index in range(args.runs):
        order = names if index % 2 == 0 else list(reversed(names))
        for name in order:
            for suffix in ("", "-wal", "-shm"):
                drop(out + suffix)
            seconds, kib = run(tools[name])
            times[name].append(seconds)
            rss[name].append(kib)
    reference = median(times[names[2]])
    rows = []
    for name in names:
        rows.append((name, f"{median(times[name]):.2f}",
                     f"{min(times[name]):.2f}-{max(times[name]):.2f}",
                     f"{max(rss[name]) / 1024:.1f} MiB",
                     f"{median(times[name]) / reference:.2f}x"))
    table(f"restore of a {os.path.getsize(db) / 1048576:.0f} MiB database, "
          f"medians of {args.runs} runs",
          ("tool", "median s", "range s", "peak RSS", "vs Litestream"), rows)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/drill.py: the restore drill of a ~1 GiB backup from the loopback S3
test server (tests/s3/server.js), beside `sqlprodd restore --check integrity`
of the same backup.

usage: bench/drill.py [--size-mib 1024] [--runs 3]

One generated database (benchlib.generate_database: the web shop of
backup.py, about 3.5x compressible), backed up once by `sqlprodd backup` and
uploaded by `sqlprodd upload`. Then, --runs times, alternating the order:

  sqlprodd drill app                                   download, SHA-256, decompress,
                                                       integrity_check, fingerprint
  sqlprodd restore app --from remote --check integrity download, SHA-256, decompress,
                                                       integrity_check, rename
  sqlprodd verify app --remote --data                  download, SHA-256, decompress to
                                                       nothing (no database written)

Prints the median wall time of each, the drill's own measured restore time
(sqlprodd_drill_restore_seconds, from the metrics textfile), and the peak
RSS of the process (GNU time's %M). Target (issue 20): the drill stays within
the agent's memory target, peak RSS <= 32 MiB (bench/README.md).
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402
from transfer import ACCESS_KEY, BUCKET, SECRET_KEY, Server  # noqa: E402


def restore_seconds(textfile):
    with open(textfile) as f:
        match = re.search(r'^sqlprodd_drill_restore_seconds\{database="app"\} (\S+)$', f.read(),
                          re.M)
    return float(match.group(1)) if match else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = os.path.join(b.WORK, "drill")
    b.drop(work)
    os.makedirs(work)
    source = os.path.join(b.WORK, f"restore-source-{args.size_mib}.db")
    print(f"generating {source} if needed...", flush=True)
    b.generate_database(source, args.size_mib * 1048576)
    server = Server(os.path.join(work, "s3"))
    try:
        textfile = os.path.join(work, "sqlprodd.prom")
        config = os.path.join(work, "bench.conf")
        with open(config, "w") as f:
            f.write(f'state_dir = "{work}/state";\n'
                    f'metrics = {{ textfile = "{textfile}"; }};\n'
                    f'targets = ( {{ name = "offsite"; type = "s3"; endpoint = "{server.url}"; '
                    f'region = "us-east-1"; bucket = "{BUCKET}"; prefix = "db/"; '
                    f'path_style = true; }} );\n'
                    f'databases = ( {{ name = "app"; path = "{source}"; '
                    f'backup = {{ dir = "{work}/backups"; }}; upload = {{ target = "offsite"; }}; '
                    f'drill = {{ every = "1d"; from = "remote"; }}; }} );\n')
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        sqlprodd = b.binary()
        seconds, _ = b.run([sqlprodd, "-c", config, "backup", "app"], env=env)
        print(f"backup: {seconds:.1f}s", flush=True)
        seconds, _ = b.run([sqlprodd, "-c", config, "upload", "app"], env=env)
        directory = os.path.join(work, "backups", "app")
        archive = next(n for n in os.listdir(directory) if n.endswith(".db.gz"))
        archive_bytes = os.path.getsize(os.path.join(directory, archive))
        print(f"upload: {seconds:.1f}s of {b.mib(archive_bytes)}", flush=True)

        restored = os.path.join(work, "restored.db")
        tools = {
            "sqlprodd drill app (from remote)": [sqlprodd, "-c", config, "drill", "app"],
            "sqlprodd restore --from remote --check integrity":
                [sqlprodd, "-c", config, "restore", "app", "--from", "remote", "--to", restored,
                 "--check", "integrity"],
            "sqlprodd verify --remote --data": [sqlprodd, "-c", config, "verify", "app",
                                                "--remote", "--data"],
        }
        names = list(tools)
        times = {name: [] for name in names}
        rss = {name: [] for name in names}
        measured = []
        for index in range(args.runs):
            for name in (names if index % 2 == 0 else list(reversed(names))):
                for suffix in ("", "-wal", "-shm"):
                    b.drop(restored + suffix)
                seconds, kib = b.run(tools[name], env=env)
                times[name].append(seconds)
                rss[name].append(kib)
                if "drill" in name:
                    measured.append(restore_seconds(textfile))
                print(f"run {index}: {name}: {seconds:.2f}s, {kib / 1024:.1f} MiB", flush=True)
        scratch = os.path.join(work, "state", "drill", "app")
        left = os.listdir(scratch) if os.path.isdir(scratch) else []
        rows = []
        for name in names:
            rows.append((name, f"{b.median(times[name]):.2f}",
                         f"{min(times[name]):.2f}-{max(times[name]):.2f}",
                         f"{b.median(measured):.2f}" if "drill" in name else "-",
                         f"{max(rss[name]) / 1024:.1f} MiB"))
        b.table(f"drill of a {b.mib(os.path.getsize(source))} database ({b.mib(archive_bytes)} "
                f"archive) from the loopback S3 server, medians of {args.runs} runs",
                ("command", "wall s", "range s", "restore s (metric)", "peak RSS"), rows)
        print(f"scratch directory after the drills: {left if left else 'empty'}")
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

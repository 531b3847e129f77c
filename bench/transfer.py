#!/usr/bin/env python3
"""bench/transfer.py: upload and restore of a ~1 GiB archive through the
loopback S3 test server (tests/s3/server.js), against the aws CLI.

usage: bench/transfer.py [--size-mib 1024] [--runs 3]

Upload: `sqlprodd upload` of a queued backup vs `aws s3 cp FILE s3://...`.
Restore: `sqlprodd restore --from remote` (download, sha256 against the
manifest, decompress, integrity_check, rename) vs `aws s3 cp` + `gunzip` +
`sqlite3 'pragma quick_check'`. Peak RSS is that of the process measured.
Targets (issue 6): upload no slower than aws; restore <= 1.2x the reference;
peak RSS of the upload <= 32 MiB.
"""
import argparse
import os
import shutil
import sqlite3
import subprocess
import sys

import benchlib as b

ACCESS_KEY = "SQLPRODDTESTACCESSKEY"
SECRET_KEY = "sqlprodd/Test+Secret/Key0123456789abcdefXYZ"
BUCKET = "sqlprodd-test"


def generate_incompressible(path, target_bytes):
    """Customers' rows with an 800-byte random payload each: the archive stays
    about as large as the database, so a 1 GiB archive is really 1 GiB."""
    if os.path.exists(path) and os.path.getsize(path) >= target_bytes * 0.97:
        return
    b.drop(path)
    rows = target_bytes // 900
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(f"""
        PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
        CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, amount REAL, payload BLOB);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
        INSERT INTO items SELECT x, printf('customer %d %s', x % 10000, hex(randomblob(6))),
                                 x * 0.37, randomblob(800) FROM c;
        CREATE INDEX items_name ON items(name);
        PRAGMA journal_mode=WAL;""")
    db.close()


class Server:
    def __init__(self, directory):
        script = os.path.join(b.ROOT, "tests", "s3", "server.js")
        self.process = subprocess.Popen(["node", script, "--port", "0", "--directory", directory],
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if "http://127.0.0.1:" not in line:
            raise RuntimeError(f"the S3 test server did not start: {line!r}")
        self.url = line[line.index("http://"):].strip()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def aws_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "AWS_PAGER": "", "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"})
    return env


def aws():
    return "/usr/bin/aws" if os.access("/usr/bin/aws", os.X_OK) else shutil.which("aws")


def main():
    parser = argparse.ArgumentParser(
        description="Times `sqlprodd upload` and `restore --from remote` against `aws s3 cp`"
                    " (+ gunzip + quick_check) on the loopback S3 test server."
                    " Tables: bench/README.md.")
    parser.add_argument("--size-mib", type=int, default=1024,
                        help="size of the generated incompressible database (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs of upload, then of restore (default: %(default)s)")
    args = parser.parse_args()
    work = os.path.join(b.WORK, "transfer")
    b.drop(work)
    os.makedirs(work)
    database = os.path.join(b.WORK, f"db-random-{args.size_mib}.db")
    print(f"generating {database} if needed...", flush=True)
    generate_incompressible(database, args.size_mib * 1048576)
    server = Server(os.path.join(work, "s3"))
    try:
        config = os.path.join(work, "bench.conf")
        with open(config, "w") as f:
            f.write(f'state_dir = "{work}/state";\n'
                    f'targets = ( {{ name = "offsite"; type = "s3"; endpoint = "{server.url}"; '
                    f'region = "us-east-1"; bucket = "{BUCKET}"; prefix = "db/"; path_style = true; }} );\n'
                    f'databases = ( {{ name = "app"; path = "{database}"; backup = {{ '
                    f'dir = "{work}/backups"; level = 1; }}; upload = {{ target = "offsite"; }}; }} );\n')
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        sqlprodd = b.binary()
        b.run([sqlprodd, "-c", config, "backup", "app"], env=env)
        directory = os.path.join(work, "backups", "app")
        archive = os.path.join(directory, next(n for n in os.listdir(directory) if n.endswith(".db.gz")))
        size = os.path.getsize(archive)
        print(f"archive: {archive} ({b.mib(size)})", flush=True)
        state = os.path.join(work, "state", "state.db")
        ours, ours_rss, theirs, theirs_rss = [], [], [], []
        for run in range(args.runs):
            db = sqlite3.connect(state)
            db.execute("INSERT OR REPLACE INTO upload_queue (database, target, archive_path, queued,"
                       " next_attempt) VALUES ('app', 'offsite', ?, 0, 0)", (archive,))
            db.commit()
            db.close()
            t, rss = b.run([sqlprodd, "-c", config, "upload", "app"], env=env)
            ours.append(t)
            ours_rss.append(rss)
            t, rss = b.run([aws(), "--endpoint-url", server.url, "s3", "cp", "--only-show-errors",
                            archive, f"s3://{BUCKET}/reference/run{run}.db.gz"], env=aws_env())
            theirs.append(t)
            theirs_rss.append(rss)
            print(f"upload run {run}: sqlprodd {ours[-1]:.2f}s, aws {theirs[-1]:.2f}s", flush=True)
        rows = [["aws s3 cp (reference)", f"{b.median(theirs):.2f}", "1.000",
                 f"{max(theirs_rss) / 1024:.1f} MiB"],
                ["sqlprodd upload", f"{b.median(ours):.2f}", f"{b.median(ours) / b.median(theirs):.3f}",
                 f"{max(ours_rss) / 1024:.1f} MiB"]]
        b.table(f"upload of a {b.mib(size)} archive to the loopback S3 server, median of {args.runs} "
                f"runs", ["variant", "seconds", "vs ref", "peak RSS"], rows)

        ours, ours_rss, theirs = [], [], []
        key = f"s3://{BUCKET}/db/app/{os.path.basename(archive)}"
        for run in range(args.runs):
            restored = os.path.join(work, "restored.db")
            b.drop(restored)
            t, rss = b.run([sqlprodd, "-c", config, "restore", "app", "--from", "remote", "--to",
                            restored], env=env)
            ours.append(t)
            ours_rss.append(rss)
            b.drop(restored)
            reference = os.path.join(work, "ref.db")
            b.drop(reference)
            b.drop(reference + ".gz")
            t1, _ = b.run([aws(), "--endpoint-url", server.url, "s3", "cp", "--only-show-errors", key,
                           reference + ".gz"], env=aws_env())
            t2, _ = b.run(["gunzip", reference + ".gz"])
            t3, _ = b.run(["sqlite3", reference, "pragma quick_check"])
            theirs.append(t1 + t2 + t3)
            b.drop(reference)
            print(f"restore run {run}: sqlprodd {ours[-1]:.2f}s, reference {t1:.2f}+{t2:.2f}+{t3:.2f}s",
                  flush=True)
        rows = [["aws s3 cp + gunzip + quick_check (reference)", f"{b.median(theirs):.2f}", "1.000", "-"],
                ["sqlprodd restore --from remote (integrity_check)", f"{b.median(ours):.2f}",
                 f"{b.median(ours) / b.median(theirs):.3f}", f"{max(ours_rss) / 1024:.1f} MiB"]]
        b.table(f"restore of the same archive, median of {args.runs} runs", ["variant", "seconds",
                                                                            "vs ref", "peak RSS"], rows)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

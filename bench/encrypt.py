#!/usr/bin/env python3
"""bench/encrypt.py: what encryption (encrypt = { recipients = (...); }) costs a
backup, an upload and a restore of ~1 GiB, side by side with the same steps
unencrypted, and with what a cron script would do (gzip, then `age -r`).

usage: bench/encrypt.py [--size-mib 1024] [--runs 3] [--only PHASE ...]

The database is transfer.py's incompressible one, so that the archive is about
as big as the database and every byte of it is encrypted: the worst case for
encryption. Phases, each the median of --runs:
  backup   `sqlprodd backup` (level 1) plain, and with encrypt.local = true
           (the archive sealed in the job);
  upload   `sqlprodd upload` to the loopback S3 server plain, and with
           recipients (the local archive sealed into a temp file on the way);
  restore  `sqlprodd restore --from remote` plain, and of the sealed object
           with --identity (decrypted while it is decompressed);
  cron     `sqlite3 .backup` + `gzip -1`, and the same piped through `age -r`.
Target (issue 19): encryption adds at most 10 % to each. Not a test.
"""
import argparse
import os
import sqlite3
import subprocess
import sys

import benchlib as b
import transfer


PHASES = ("backup", "upload", "restore", "cron")


def write_config(path, work, database, url, recipient, local, identity):
    encrypt = ""
    if recipient:
        encrypt = (f'encrypt = {{ recipients = ( "{recipient}" ); local = {str(local).lower()}; '
                   f'identity = "{identity}"; }};')
    with open(path, "w") as f:
        f.write(f'state_dir = "{work}/state";\n'
                f'targets = ( {{ name = "offsite"; type = "s3"; endpoint = "{url}"; '
                f'region = "us-east-1"; bucket = "{transfer.BUCKET}"; prefix = "db/"; '
                f'path_style = true; }} );\n'
                f'databases = ( {{ name = "app"; path = "{database}"; backup = {{ '
                f'dir = "{work}/backups"; level = 1; keep = {{ last = 1; }}; }}; '
                f'upload = {{ target = "offsite"; keep = {{ last = 1; }}; }}; {encrypt} }} );\n')


def queue_again(work, archive):
    db = sqlite3.connect(os.path.join(work, "state", "state.db"))
    db.execute("INSERT OR REPLACE INTO upload_queue (database, target, archive_path, queued,"
               " next_attempt) VALUES ('app', 'offsite', ?, 0, 0)", (archive,))
    db.commit()
    db.close()


def newest_archive(work):
    directory = os.path.join(work, "backups", "app")
    names = sorted(n for n in os.listdir(directory) if not n.endswith(".json") and "tmp" not in n)
    return os.path.join(directory, names[-1])


def cost(plain, sealed):
    return f"{(b.median(sealed) / b.median(plain) - 1) * 100:+.1f} %"


def row(name, plain, sealed, plain_cpu, sealed_cpu):
    """Wall time, and the CPU time of sqlprodd's process (user + system):
    the loopback S3 server shares the machine and moves the wall time of an
    upload by more than encryption costs, the CPU time much less. The spread
    is the lowest and highest of the per-run ratios (runs are paired)."""
    ratios = sorted(s / p for p, s in zip(plain, sealed))
    return [name, f"{b.median(plain):.2f}", f"{b.median(sealed):.2f}", cost(plain, sealed),
            f"{(ratios[0] - 1) * 100:+.0f} .. {(ratios[-1] - 1) * 100:+.0f} %",
            f"{b.median(plain_cpu):.2f}", f"{b.median(sealed_cpu):.2f}",
            cost(plain_cpu, sealed_cpu)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", action="append", choices=PHASES,
                        help="run this phase only (repeatable); every phase by default")
    args = parser.parse_args()
    phases = args.only or PHASES
    work = os.path.join(b.WORK, "encrypt")
    b.drop(work)
    os.makedirs(work)
    database = os.path.join(b.WORK, f"db-random-{args.size_mib}.db")
    print(f"generating {database} if needed...", flush=True)
    transfer.generate_incompressible(database, args.size_mib * 1048576)
    key = os.path.join(work, "key.txt")
    subprocess.run(["age-keygen", "-o", key], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", key], check=True, capture_output=True,
                               text=True).stdout.strip()
    sqlprodd = b.binary()
    env = dict(os.environ, AWS_ACCESS_KEY_ID=transfer.ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=transfer.SECRET_KEY)
    server = transfer.Server(os.path.join(work, "s3"))
    configs = {name: os.path.join(work, f"{name}.conf") for name in ("plain", "sealed", "local")}
    write_config(configs["plain"], work, database, server.url, None, False, key)
    write_config(configs["sealed"], work, database, server.url, recipient, False, key)
    write_config(configs["local"], work, database, server.url, recipient, True, key)
    times = {phase: {"plain": [], "sealed": []} for phase in phases}
    cpu = {phase: {"plain": [], "sealed": []} for phase in phases}
    try:
        for run in range(args.runs):
            for variant, config in (("plain", configs["plain"]), ("sealed", configs["local"])):
                if "backup" not in phases:
                    break
                b.drop(os.path.join(work, "backups"))
                t, _, c = b.run_cpu([sqlprodd, "-c", config, "backup", "app"], env=env)
                times["backup"][variant].append(t)
                cpu["backup"][variant].append(c)
            # Upload and restore start from one unencrypted archive.
            b.drop(os.path.join(work, "backups"))
            b.run([sqlprodd, "-c", configs["plain"], "backup", "app"], env=env)
            archive = newest_archive(work)
            # Every other run the other way round: s3rver and the page cache
            # carry some of one step's cost into the next.
            for variant in ("plain", "sealed") if run % 2 == 0 else ("sealed", "plain"):
                if "upload" not in phases and "restore" not in phases:
                    break
                queue_again(work, archive)
                t, _, c = b.run_cpu([sqlprodd, "-c", configs[variant], "upload", "app"], env=env)
                if "upload" in phases:
                    times["upload"][variant].append(t)
                    cpu["upload"][variant].append(c)
                if "restore" not in phases:
                    continue
                restored = os.path.join(work, "restored.db")
                b.drop(restored)
                t, _, c = b.run_cpu([sqlprodd, "-c", configs[variant], "restore", "app", "--from",
                                     "remote", "--to", restored], env=env)
                times["restore"][variant].append(t)
                cpu["restore"][variant].append(c)
                b.drop(restored)
            for variant, tail in (("plain", ""), ("sealed", f" | age -r {recipient}")):
                if "cron" not in phases:
                    break
                copy, out = os.path.join(work, "cron.db"), os.path.join(work, "cron.db.gz")
                b.drop(copy)
                script = (f"sqlite3 {database} \".backup {copy}\" && gzip -1 -c {copy}{tail} "
                          f"> {out} && sync {out} && rm {copy}")
                t, _, c = b.run_cpu(["sh", "-c", script])
                times["cron"][variant].append(t)
                cpu["cron"][variant].append(c)
                b.drop(out)
            print(f"run {run}: " + ", ".join(
                f"{phase} {times[phase]['plain'][-1]:.2f}/{times[phase]['sealed'][-1]:.2f}s"
                for phase in times), flush=True)
    finally:
        server.stop()
    names = {"backup": "sqlprodd backup (encrypt.local seals in the job)",
             "upload": "sqlprodd upload to loopback S3 (sealed on the way)",
             "restore": "sqlprodd restore --from remote (decrypted on the way)",
             "cron": "cron: sqlite3 .backup + gzip -1 (| age -r)"}
    rows = [row(names[phase], times[phase]["plain"], times[phase]["sealed"], cpu[phase]["plain"],
                cpu[phase]["sealed"]) for phase in phases]
    b.table(f"encryption of a {args.size_mib} MiB incompressible database, median of {args.runs} "
            f"runs", ["step", "plain s", "encrypted s", "cost", "per run", "plain CPU s",
                      "encrypted CPU s", "CPU cost"], rows)


if __name__ == "__main__":
    sys.exit(main())

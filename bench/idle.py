#!/usr/bin/env python3
"""bench/idle.py: the agent's cost with many databases configured.

usage: bench/idle.py [--databases 1000] [--idle-seconds 30] [--workers N] [--glob]
                     [--replicate [--replicate-to dir|s3]]

1. Creates N small WAL databases and a config with an hourly checkpoint for
   each (every other job off). On the first start every checkpoint is due
   (none ever ran): measures how long the worker pool takes to run all N.
2. Then, with nothing due, samples the agent for --idle-seconds: wake-ups
   (voluntary context switches of all its threads), RSS.
3. Restarts it with nothing due: time from exec to READY=1 (received on our
   own NOTIFY_SOCKET, as systemd would) and RSS.
Targets (issue 6): at most one wake-up per second of real need (here: none
needed), <= 16 MiB RSS, READY in < 1 s, N hourly checkpoints well within the hour.
With --glob the databases are one `glob` entry instead of N entries; issue 18's
targets for 10,000 of them: zero wake-ups while nothing is due, RSS <= 64 MiB,
READY within 2 s, each checkpoint of an idle database <= 10 ms of CPU (the
agent's CPU time over the first start's checkpoints, divided by N).
"""
import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import benchlib as b


def make_databases(directory, count):
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(directory, f"db{i:04d}.db")
        paths.append(path)
        if os.path.exists(path):
            continue
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        db.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {j}",) for j in range(20)])
        db.close()
    return paths


def thread_switches(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def cpu_seconds(pid):
    """User and system time of the whole process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def start(config, notify_path):
    if os.path.exists(notify_path):
        os.unlink(notify_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    env = b.S3Server.environment(dict(os.environ, NOTIFY_SOCKET=notify_path))
    env.pop("JOURNAL_STREAM", None)
    started = time.monotonic()
    process = subprocess.Popen([b.binary(), "-c", config, "run"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener.settimeout(30)
    ready = None
    while ready is None:
        message = listener.recv(4096).decode(errors="replace")
        if "READY=1" in message:
            ready = time.monotonic() - started
    # Keep reading, as systemd does: STATUS= updates follow every job.
    listener.settimeout(None)
    threading.Thread(target=drain, args=(listener,), daemon=True).start()
    return process, listener, ready


def drain(listener):
    try:
        while listener.recv(4096):
            pass
    except OSError:
        pass


def stop(process, listener):
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    listener.close()


def main():
    parser = argparse.ArgumentParser(
        description="Measures the agent's start time, wake-ups and RSS with many databases"
                    " configured. Tables: bench/README.md.")
    parser.add_argument("--databases", type=int, default=1000,
                        help="databases in the config (default: %(default)s)")
    parser.add_argument("--idle-seconds", type=float, default=30,
                        help="length of each idle sample (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=0,
                        help="the config's workers; 0 leaves it out, which means 2 (default: "
                             "%(default)s)")
    parser.add_argument("--glob", action="store_true",
                        help="one glob entry for the databases' directory instead of an entry "
                             "each")
    parser.add_argument("--replicate", action="store_true",
                        help="also replicate every database (interval 1s) to a dir target, "
                             "and let each fall quiet (15 s) before counting")
    parser.add_argument("--replicate-to", choices=("dir", "s3"), default="dir",
                        help="with --replicate: a dir target (default), or the loopback S3 "
                             "server of tests/s3, one uploader (and curl handle) per database")
    args = parser.parse_args()
    work = os.path.join(b.WORK, "idle")
    b.drop(os.path.join(work, "state"))
    paths = make_databases(os.path.join(work, "dbs"), args.databases)
    config = os.path.join(work, "bench.conf")
    server = None
    with open(config, "w") as f:
        f.write(f'state_dir = "{work}/state";\n')
        if args.workers:
            f.write(f"workers = {args.workers};\n")
        replicate = ' replicate = { target = "nas"; interval = "1s"; };' if args.replicate else ""
        f.write('defaults = { checkpoint = { every = "1h"; }; analyze = { enabled = false; };'
                ' vacuum = { enabled = false; }; backup = { enabled = false; };'
                f' health = {{ enabled = false; }};{replicate} }};\n')
        if args.replicate and args.replicate_to == "s3":
            b.drop(os.path.join(work, "s3"))
            server = b.S3Server(os.path.join(work, "s3"))
            f.write(f'targets = ( {server.target_config("nas")} );\n')
        elif args.replicate:
            b.drop(os.path.join(work, "target"))
            os.makedirs(os.path.join(work, "target"))
            f.write(f'targets = ( {{ name = "nas"; type = "dir"; path = "{work}/target"; }} );\n')
        if args.glob:
            f.write(f'databases = ( {{ glob = "{work}/dbs/*.db"; name = "%stem"; }} );\n')
        else:
            f.write("databases = (\n" + ",\n".join(
                f'  {{ name = "db{i:04d}"; path = "{p}"; }}' for i, p in enumerate(paths)) +
                "\n);\n")
    notify = os.path.join(work, "notify.sock")
    state = os.path.join(work, "state", "state.db")

    process, listener, first_ready = start(config, notify)
    cpu_before = cpu_seconds(process.pid)
    started = time.monotonic()
    done = 0
    while done < args.databases:
        time.sleep(0.2)
        try:
            db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)
            done = db.execute("SELECT count(*) FROM job_runs WHERE job = 'checkpoint'").fetchone()[0]
            db.close()
        except sqlite3.Error:
            pass
        if time.monotonic() - started > 3600:
            break
    all_checkpoints = time.monotonic() - started
    cpu_per_checkpoint = (cpu_seconds(process.pid) - cpu_before) / max(done, 1)
    # A replicated database falls quiet 10 s after its last commit.
    settle = 15 if args.replicate else 1
    time.sleep(settle)
    before = thread_switches(process.pid)
    time.sleep(args.idle_seconds)
    wakes = thread_switches(process.pid) - before
    busy_memory = memory(process.pid)
    stop(process, listener)

    process, listener, ready = start(config, notify)
    time.sleep(settle if args.replicate else 2)
    before = thread_switches(process.pid)
    time.sleep(args.idle_seconds)
    idle_wakes = thread_switches(process.pid) - before
    idle_memory = memory(process.pid)
    stop(process, listener)

    rows = [
        ["first start (all due): READY after", f"{first_ready * 1000:.0f} ms", "-"],
        [f"{args.databases} checkpoints run by the pool in", f"{all_checkpoints:.1f} s", "< 3600 s"],
        ["agent CPU per checkpoint", f"{cpu_per_checkpoint * 1000:.2f} ms", "<= 10 ms"],
        [f"then idle {args.idle_seconds:.0f} s: wake-ups", f"{wakes} ({wakes / args.idle_seconds:.2f}/s)", "<= 1/s"],
        ["peak RSS after running them all (VmHWM)", f"{busy_memory['VmHWM'] / 1024:.1f} MiB", "-"],
        ["restart, nothing due: READY after", f"{ready * 1000:.0f} ms", "< 1000 ms"],
        [f"idle {args.idle_seconds:.0f} s: wake-ups", f"{idle_wakes} ({idle_wakes / args.idle_seconds:.2f}/s)", "<= 1/s"],
        ["idle RSS (VmRSS / VmHWM)",
         f"{idle_memory['VmRSS'] / 1024:.1f} / {idle_memory['VmHWM'] / 1024:.1f} MiB", "<= 16 MiB"],
    ]
    if server:
        server.stop()
    b.table(f"idle cost, {args.databases} databases{' (one glob entry)' if args.glob else ''}, "
            f"hourly checkpoints"
            f"{', replicated to ' + args.replicate_to if args.replicate else ''}, workers = "
            f"{args.workers or 'default'}", ["measure", "sqlprodd", "target"], rows)


if __name__ == "__main__":
    sys.exit(main())

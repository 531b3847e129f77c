#!/usr/bin/env python3
"""bench/age_speed.py: how fast src/crypto/age.c encrypts and decrypts, next to
the age tool, on one core (issue 19: encryption may add at most 10 % to a
backup, upload and restore of 1 GiB).

usage: bench/age_speed.py [--size-mib 256] [--runs 3] [--library build/libsqlprodd_core.a]

Builds bench/age_speed.c (a minimal age command over crypto/age) against the
core library, makes a file of random bytes, and times, pinned to CPU 0 with
taskset, `age_speed encrypt/decrypt` and `age -r` / `age -d -i`, both reading
the file and writing to /dev/null. Prints the median of the runs, in MB/s
(MiB of plaintext per second). Not a test: it asserts nothing.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PACKAGES = ("sqlite3 libconfig libcurl libsystemd zlib libcrypto jansson libxml-2.0 libdeflate "
            "libmicrohttpd libzstd")


def build_driver(library, out):
    libs = subprocess.check_output(["pkg-config", "--libs"] + PACKAGES.split(), text=True).split()
    subprocess.check_call(["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-I", os.path.join(ROOT, "src"),
                           os.path.join(HERE, "age_speed.c"), library, "-o", out] + libs +
                          ["-lpthread", "-lm"])


def timed(argv, stdin_path):
    """Wall seconds and CPU seconds (user + system) of one run. The CPU time
    is the steadier figure on a machine shared with other work."""
    with open(stdin_path, "rb") as source, open(os.devnull, "wb") as sink:
        start = time.monotonic()
        child = subprocess.Popen(["taskset", "-c", "0"] + argv, stdin=source, stdout=sink)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - start
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{argv[0]} failed")
        return wall, usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--library", default=os.path.join(ROOT, "build", "libsqlprodd_core.a"))
    options = parser.parse_args()
    if not shutil.which("age"):
        sys.exit("the age tool is not installed (scripts/install-deps installs it)")
    work = tempfile.mkdtemp(prefix="age-speed.")
    try:
        driver = os.path.join(work, "age_speed")
        build_driver(options.library, driver)
        key = os.path.join(work, "key.txt")
        recipient = subprocess.check_output([driver, "keygen", key], text=True).strip()
        plain = os.path.join(work, "plain")
        with open(plain, "wb") as f:
            for _ in range(options.size_mib):
                f.write(os.urandom(1 << 20))
        ours_sealed, age_sealed = os.path.join(work, "ours.age"), os.path.join(work, "age.age")
        with open(plain, "rb") as source, open(ours_sealed, "wb") as sink:
            subprocess.run([driver, "encrypt", recipient], stdin=source, stdout=sink, check=True)
        subprocess.run(["age", "-r", recipient, "-o", age_sealed, plain], check=True)
        cases = [
            ("encrypt", "sqlprodd (crypto/age, OpenSSL)", [driver, "encrypt", recipient], plain),
            ("encrypt", "age 1.1.1", ["age", "-r", recipient], plain),
            ("decrypt", "sqlprodd (crypto/age, OpenSSL)", [driver, "decrypt", key], ours_sealed),
            ("decrypt", "age 1.1.1", ["age", "-d", "-i", key], ours_sealed),
        ]
        times = {case[:2]: [] for case in cases}
        for _ in range(options.runs):  # interleaved, so drift hits all alike
            for direction, who, argv, source in cases:
                times[(direction, who)].append(timed(argv, source))
        print(f"age encryption, {options.size_mib} MiB of random bytes, one core (taskset -c 0), "
              f"median of {options.runs}, output to /dev/null")
        print()
        print("| direction | implementation                 | wall s | MB/s (wall) | CPU s | MB/s (CPU) | wall s of each run |")
        print("|-----------|--------------------------------|--------|-------------|-------|------------|--------------------|")
        medians = {}
        for (direction, who), runs in times.items():
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            medians[(direction, who)] = cpu
            print(f"| {direction:9} | {who:30} | {wall:6.3f} | {options.size_mib / wall:11.0f} | "
                  f"{cpu:5.3f} | {options.size_mib / cpu:10.0f} | "
                  f"{' '.join(f'{r[0]:.2f}' for r in runs)} |")
        ours_enc = medians[("encrypt", cases[0][1])]
        ours_dec = medians[("decrypt", cases[2][1])]
        print()
        print(f"CPU cost per GiB of archive: encrypt {ours_enc * 1024 / options.size_mib:.2f} s, "
              f"decrypt {ours_dec * 1024 / options.size_mib:.2f} s.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

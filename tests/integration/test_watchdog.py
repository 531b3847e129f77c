"""The systemd watchdog: with WATCHDOG_USEC set, the agent's loop sends
WATCHDOG=1 at most half of WATCHDOG_USEC apart (systemd kills the service
with SIGABRT after a whole interval without one), while idle and while every
worker is busy and jobs finish at all times, on a loaded host. A real
sd_notify socket records when each ping arrives."""
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import unittest

from harness import AgentTestCase, create_database

WATCHDOG_USEC = 2_000_000  # WatchdogSec=2s, as the real-systemd test uses


class TimedNotifySocket:
    """An sd_notify socket that stamps each message on arrival."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []  # (monotonic seconds, {key: value})
        self.lock = threading.Lock()
        self.closing = False
        self.thread = threading.Thread(target=self.drain, daemon=True)
        self.thread.start()

    def drain(self):
        while not self.closing:
            try:
                data = self.sock.recv(65536).decode()
            except (socket.timeout, OSError):
                continue
            stamp = time.monotonic()
            message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            with self.lock:
                self.messages.append((stamp, message))

    def pings_between(self, start, end):
        with self.lock:
            return [stamp for stamp, message in self.messages
                    if message.get("WATCHDOG") == "1" and start <= stamp <= end]

    def close(self):
        self.closing = True
        self.thread.join()
        self.sock.close()


def burn_cpu(seconds):
    """A process that keeps one CPU busy: the host under load."""
    return subprocess.Popen([sys.executable, "-c",
                             f"import time\nend = time.monotonic() + {seconds}\n"
                             "while time.monotonic() < end: pass\n"])


class WatchdogTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.notify = TimedNotifySocket(self.dir)

    def tearDown(self):
        self.notify.close()
        super().tearDown()

    def start(self, databases, workers):
        self.write_config(databases, extra=f"workers = {workers};")
        agent = self.start_agent(env={"NOTIFY_SOCKET": self.notify.path,
                                      "WATCHDOG_USEC": str(WATCHDOG_USEC)})
        return agent

    def assert_pings_within_half_the_interval(self, start, end):
        pings = self.notify.pings_between(start, end)
        self.assertGreater(len(pings), 2, "no WATCHDOG=1 at all")
        gaps = [later - earlier for earlier, later in zip(pings, pings[1:])]
        # The edges count too: a ping must come within half an interval of
        # the start of the window and before its end.
        gaps += [pings[0] - start, end - pings[-1]]
        largest = max(gaps)
        print(f"{len(pings)} pings in {end - start:.1f} s, largest gap {largest * 1000:.0f} ms "
              f"(limit {WATCHDOG_USEC / 2000:.0f} ms)")
        self.assertLessEqual(largest, WATCHDOG_USEC / 2e6,
                             f"pings {largest:.3f} s apart, more than half of WATCHDOG_USEC "
                             f"({WATCHDOG_USEC / 1e6:.0f} s); gaps: "
                             + ", ".join(f"{gap:.3f}" for gap in sorted(gaps)[-5:]))
        return largest

    def test_idle_agent_pings_at_most_half_the_interval_apart(self):
        create_database(self.db_path(), rows=100)
        agent = self.start(f'{{ name = "app"; path = "{self.db_path()}"; }}', workers=2)
        time.sleep(1)  # start-up jobs
        start = time.monotonic()
        time.sleep(6)
        self.assert_pings_within_half_the_interval(start, time.monotonic())
        self.assertEqual(self.stop_agent(agent)[0], 0)

    def test_busy_workers_and_finishing_jobs_do_not_delay_the_ping(self):
        # "big": a backup that keeps one worker busy for seconds. The small
        # ones checkpoint and check their health every second, so jobs
        # finish (and wake the loop) at all times, just before a ping
        # included, and the other worker is always busy too.
        big = self.db_path("big")
        db = sqlite3.connect(big)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
        with db:
            db.executemany("INSERT INTO blobs (data) VALUES (randomblob(?))",
                           ((65536,) for _ in range(500)))
        db.close()
        entries = [f'{{ name = "big"; path = "{big}"; backup = {{ every = "1s"; level = 9; }}; '
                   'checkpoint = { enabled = false; }; health = { enabled = false; }; }']
        for index in range(4):
            path = self.db_path(f"small{index}")
            create_database(path, rows=200)
            entries.append(f'{{ name = "small{index}"; path = "{path}"; '
                           'checkpoint = { every = "1s"; }; health = { every = "1s"; }; '
                           'backup = { enabled = false; }; }')
        # One CPU of two: the backup threads run at SCHED_IDLE, two burners
        # would starve them and leave the workers idle-waiting.
        burners = [burn_cpu(14)]
        try:
            agent = self.start(", ".join(entries), workers=2)
            self.wait_for(lambda: "big: backup: started" in self.agent_log(), timeout=30,
                          what="the first backup of big")
            start = time.monotonic()
            time.sleep(8)
            end = time.monotonic()
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
        log = self.agent_log()
        self.assertGreaterEqual(log.count("big: backup: started"), 2, "the workers were not kept busy")
        self.assertGreater(log.count(": checkpoint: "), 10, "jobs did not keep finishing")
        self.assert_pings_within_half_the_interval(start, end)
        self.assertEqual(self.stop_agent(agent, timeout=60)[0], 0)


if __name__ == "__main__":
    unittest.main()

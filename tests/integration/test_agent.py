"""The long-running agent: schedules, restarts, signals and what it tells
systemd through a real NOTIFY_SOCKET datagram socket."""
import json
import os
import signal
import socket
import sqlite3
import time
import unittest

from harness import AgentTestCase, create_database


class NotifySocket:
    """A real sd_notify(3) receiver, as systemd has."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []

    def receive(self, timeout=10, until=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536).decode()
            except socket.timeout:
                continue
            message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.messages.append(message)
            if until and until(message):
                return message
        return None

    def close(self):
        self.sock.close()


def job_runs(test, name="app"):
    state = os.path.join(test.state_dir, "state.db")
    if not os.path.exists(state):
        return {}
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        return {job: runs for job, runs in db.execute(
            "SELECT job, runs_total FROM job_runs WHERE database = ?", (name,))}
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


class AgentTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        create_database(self.db_path(), rows=100)

    def config(self, checkpoint="2s", backup="1h"):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'checkpoint = {{ every = "{checkpoint}"; }}; backup = {{ every = "{backup}"; }}; '
            f'health = {{ every = "1h"; }}; vacuum = {{ every = "1h"; }}; '
            f'analyze = {{ every = "1h"; }}; }}')

    def test_jobs_run_on_schedule_and_missed_runs_catch_up_once(self):
        self.config(checkpoint="1s")
        agent = self.start_agent()
        self.wait_for(lambda: job_runs(self).get("checkpoint", 0) >= 3, timeout=20,
                      what="three checkpoints at 1s")
        runs = job_runs(self)
        self.assertEqual(runs.get("backup"), 1, "a never-run backup runs at start-up, once")
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0)
        # Down for longer than several intervals: one catch-up run, not one per slot.
        self.config(checkpoint="1s", backup="2s")
        time.sleep(5)
        before = job_runs(self)
        agent = self.start_agent()
        self.wait_for(lambda: job_runs(self).get("backup", 0) >= before["backup"] + 1,
                      what="the catch-up backup")
        time.sleep(0.5)
        self.assertEqual(job_runs(self)["backup"], before["backup"] + 1)
        self.stop_agent(agent)

    def test_schedule_survives_restart(self):
        self.config(checkpoint="1h")
        agent = self.start_agent()
        self.wait_for(lambda: job_runs(self).get("checkpoint") == 1, what="first checkpoint")
        self.stop_agent(agent)
        agent = self.start_agent()
        time.sleep(2)
        self.stop_agent(agent)
        self.assertEqual(job_runs(self)["checkpoint"], 1, "not due again after a restart")

    def test_sigterm_stops_within_seconds(self):
        self.config()
        agent = self.start_agent()
        self.wait_for(lambda: "started" in self.agent_log(), what="start")
        code, elapsed = self.stop_agent(agent)
        self.assertEqual(code, 0)
        self.assertLess(elapsed, 5)
        self.assertIn("stopped", self.agent_log())

    def test_sighup_reload_refuses_bad_config_and_keeps_running(self):
        self.config(checkpoint="1s")
        agent = self.start_agent()
        self.wait_for(lambda: job_runs(self).get("checkpoint", 0) >= 1, what="first checkpoint")
        with open(self.config_path, "a") as f:
            f.write("\nbogus_key = 1;\n")
        agent.send_signal(signal.SIGHUP)
        self.wait_for(lambda: "new configuration refused" in self.agent_log(), what="refusal")
        self.assertIn(f"{self.config_path}:", self.agent_log())
        runs = job_runs(self)["checkpoint"]
        self.wait_for(lambda: job_runs(self)["checkpoint"] > runs, what="jobs after a bad reload")
        self.assertIsNone(agent.poll())
        # A good config is taken.
        create_database(self.db_path("second"), rows=10)
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; }}, '
            f'{{ name = "second"; path = "{self.db_path("second")}"; checkpoint = {{ every = "1s"; }}; }}')
        agent.send_signal(signal.SIGHUP)
        self.wait_for(lambda: "configuration reloaded: 2 databases" in self.agent_log(),
                      what="reload")
        self.wait_for(lambda: job_runs(self, "second").get("checkpoint", 0) >= 1,
                      what="a job on the new database")
        self.stop_agent(agent)

    def test_idle_agent_does_not_poll(self):
        self.config(checkpoint="1h")
        agent = self.start_agent()
        self.wait_for(lambda: len(job_runs(self)) >= 5, what="start-up jobs")
        time.sleep(1)

        def switches():
            with open(f"/proc/{agent.pid}/status") as f:
                return sum(int(line.split()[1]) for line in f
                           if line.startswith(("voluntary_ctxt_switches",
                                               "nonvoluntary_ctxt_switches")))
        # Only the main thread wakes for timers; workers wait on a condition.
        before = switches()
        time.sleep(3)
        self.assertLessEqual(switches() - before, 3)
        self.stop_agent(agent)


class NotifyTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        create_database(self.db_path(), rows=100)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        self.notify = NotifySocket(self.dir)

    def tearDown(self):
        self.notify.close()
        super().tearDown()

    def test_ready_status_watchdog_reload_stopping(self):
        agent = self.start_agent(env={"NOTIFY_SOCKET": self.notify.path,
                                      "WATCHDOG_USEC": "1000000"})
        ready = self.notify.receive(until=lambda m: m.get("READY") == "1")
        self.assertIsNotNone(ready, self.notify.messages)
        self.assertRegex(ready["STATUS"], r"^1 database: ")
        status = self.notify.receive(until=lambda m: "last backup app" in m.get("STATUS", ""))
        self.assertIsNotNone(status, self.notify.messages)
        # An absolute time: the line is shown until the next job ends.
        self.assertRegex(status["STATUS"], r"last backup app \d\d:\d\d:\d\d UTC \([\d.]+ [KM]?i?B\)")
        self.assertIn("uploads pending: 0", status["STATUS"])
        self.notify.messages.clear()
        self.notify.receive(timeout=2.5)
        pings = [m for m in self.notify.messages if m.get("WATCHDOG") == "1"]
        self.assertGreaterEqual(len(pings), 3, "WATCHDOG=1 every half interval")
        agent.send_signal(signal.SIGHUP)
        self.assertIsNotNone(self.notify.receive(until=lambda m: m.get("RELOADING") == "1"))
        self.assertIsNotNone(self.notify.receive(until=lambda m: m.get("READY") == "1"))
        agent.send_signal(signal.SIGTERM)
        self.assertIsNotNone(self.notify.receive(until=lambda m: m.get("STOPPING") == "1"))
        self.assertEqual(agent.wait(timeout=10), 0)

    def test_bad_config_at_start_reports_status_and_errno(self):
        with open(self.config_path, "a") as f:
            f.write("\nbogus_key = 1;\n")
        agent = self.start_agent(env={"NOTIFY_SOCKET": self.notify.path})
        message = self.notify.receive(until=lambda m: "ERRNO" in m)
        self.assertIsNotNone(message, self.notify.messages)
        self.assertIn("not started: 1 error in", message["STATUS"])
        self.assertIn("bogus_key", message["STATUS"])
        self.assertEqual(agent.wait(timeout=10), 2)

    def test_failing_start_reports_status_and_errno(self):
        # state_dir inside a regular file cannot be created.
        blocker = os.path.join(self.dir, "file")
        open(blocker, "w").close()
        with open(self.config_path) as f:
            text = f.read().replace(self.state_dir, os.path.join(blocker, "state"))
        with open(self.config_path, "w") as f:
            f.write(text)
        agent = self.start_agent(env={"NOTIFY_SOCKET": self.notify.path})
        message = self.notify.receive(until=lambda m: "ERRNO" in m)
        self.assertIsNotNone(message, self.notify.messages)
        self.assertIn(blocker, message["STATUS"])
        self.assertEqual(agent.wait(timeout=10), 1)


if __name__ == "__main__":
    unittest.main()

"""What an operator of the service sees, without systemd: the agent checks
its write access from where it runs (a read-only bind mount, as
ProtectSystem=strict makes one, reproduced with unshare(1)) and names the
drop-in line that fixes it at once, in its log and STATUS=; failed jobs run
again at the next start instead of at their next slot; `sqlprodd reload`
validates before it signals and a refused reload shows in STATUS=."""
import os
import shutil
import signal
import subprocess
import time
import unittest

from harness import BIN, AgentTestCase, create_database
from test_agent import NotifySocket

UNSHARE = shutil.which("unshare")


class SandboxReloadTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.app_dir = os.path.join(self.dir, "myapp")
        os.makedirs(self.app_dir)
        self.app_db = os.path.join(self.app_dir, "production.db")
        create_database(self.app_db, rows=200)
        # Hourly jobs: only a start-up retry can run them again within the test.
        self.write_config(f'{{ name = "app"; path = "{self.app_db}"; }}',
                          defaults='checkpoint = { every = "1h"; };')
        self.notify = NotifySocket(self.dir)

    def tearDown(self):
        self.notify.close()
        super().tearDown()

    def start_sandboxed(self, read_only):
        """The agent in a mount namespace where `read_only` is a read-only
        bind mount, as systemd mounts what ReadWritePaths= does not list."""
        if os.geteuid() != 0 or not UNSHARE:
            self.skipTest("needs root and unshare(1) for a read-only bind mount")
        log = open(os.path.join(self.dir, "agent.log"), "a")
        script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
                  'shift && exec "$@"')
        environment = dict(os.environ, NOTIFY_SOCKET=self.notify.path)
        environment.pop("JOURNAL_STREAM", None)
        process = subprocess.Popen(
            [UNSHARE, "--mount", "--propagation", "private", "sh", "-c", script, "sh",
             read_only, BIN, "-c", self.config_path, "run"],
            stdout=log, stderr=subprocess.STDOUT, env=environment)
        self.processes.append(process)
        return process

    def status_line(self, until, timeout=20):
        message = self.notify.receive(timeout=timeout,
                                      until=lambda m: until(m.get("STATUS", "")))
        self.assertIsNotNone(message, f"no such STATUS=; got {self.notify.messages[-5:]}\n"
                                      f"{self.agent_log()}")
        return message["STATUS"]

    def job(self, name):
        for database in self.status_json()["databases"]:
            if database["name"] == "app":
                return database["jobs"][name]
        self.fail("app not in status --json")

    def test_read_only_directory_is_named_at_start_with_its_drop_in_line(self):
        agent = self.start_sandboxed(self.app_dir)
        line = f"ReadWritePaths={self.app_dir}"
        status = self.status_line(lambda s: "NO ACCESS" in s)
        self.assertIn(f"NO ACCESS for app: {line}", status)
        log = self.wait_for(lambda: line in self.agent_log() and self.agent_log(), timeout=10,
                            what="the drop-in line in the log")
        self.assertIn(f"app: sandbox: {self.app_dir} is read-only here", log)
        self.assertIn(f"add the line '{line}' under [Service] in a drop-in", log)
        # The checkpoint it predicts does fail.
        self.wait_for(lambda: self.job("checkpoint").get("last_result") == "failed", timeout=20,
                      what="the checkpoint to fail on the read-only directory")
        self.assertEqual(self.stop_agent(agent)[0], 0)

        # Fixed (no read-only mount) and restarted: no problem is reported,
        # and the failed checkpoint runs again at once, not in an hour.
        self.notify.close()  # a fresh socket: nothing of the first run left queued
        os.makedirs(os.path.join(self.dir, "second"))
        self.notify = NotifySocket(os.path.join(self.dir, "second"))
        runs = self.job("checkpoint")["runs_total"]
        agent = self.start_agent(env={"NOTIFY_SOCKET": self.notify.path})
        self.notify.receive(until=lambda m: m.get("READY") == "1")
        self.wait_for(lambda: self.job("checkpoint").get("last_result") == "ok", timeout=20,
                      what="the failed checkpoint to run again after the restart")
        self.assertEqual(self.job("checkpoint")["runs_total"], runs + 1)
        self.assertFalse([m for m in self.notify.messages if "NO ACCESS" in m.get("STATUS", "")])
        self.assertEqual(self.stop_agent(agent)[0], 0)

    def test_reload_command_validates_then_signals_and_status_tells_a_refusal(self):
        agent = self.start_agent(env={"NOTIFY_SOCKET": self.notify.path})
        self.notify.receive(until=lambda m: m.get("READY") == "1")
        with open(self.config_path) as f:
            good = f.read()
        # A bad file: reload exits 2 with FILE:LINE and the agent is told.
        with open(self.config_path, "w") as f:
            f.write(good + "\nbogus_key = 1;\n")
        bad_line = good.count("\n") + 2
        result = self.run_cli("reload", "--pid", str(agent.pid))
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn(f"{self.config_path}:{bad_line}: bogus_key", result.stderr)
        self.assertIn("reload refused", result.stderr)
        status = self.status_line(lambda s: "RELOAD REFUSED" in s)
        self.assertIn(f"{self.config_path}:{bad_line}: bogus_key", status)
        self.assertIsNone(agent.poll(), "the agent keeps running")
        self.assertIn("new configuration refused", self.agent_log())
        # Without --pid the agent is found by its lock; a good file clears the note.
        with open(self.config_path, "w") as f:
            f.write(good.replace('every = "1h"', 'every = "2h"'))
        result = self.run_cli("reload", check=0)
        self.assertIn(f"the agent (pid {agent.pid}) reloads it", result.stdout)
        self.notify.receive(until=lambda m: m.get("READY") == "1")
        self.wait_for(lambda: "configuration reloaded" in self.agent_log(), timeout=10,
                      what="the reload")
        latest = [m["STATUS"] for m in self.notify.messages if "STATUS" in m][-1]
        self.assertNotIn("RELOAD REFUSED", latest)
        self.assertEqual(self.stop_agent(agent)[0], 0)
        # No agent: reload says so and fails.
        result = self.run_cli("reload")
        self.assertEqual(result.returncode, 1)
        self.assertIn("no agent runs on state_dir", result.stderr)

    def test_check_from_a_shell_says_it_cannot_see_the_sandbox(self):
        outside = self.run_cli("check", env={"INVOCATION_ID": ""})
        self.assertIn("ran outside the sandbox of sqlprodd.service", outside.stdout)
        self.assertIn("ReadWritePaths=", outside.stdout)
        # Inside a unit (systemd sets INVOCATION_ID) it has nothing to add.
        inside = self.run_cli("check", env={"INVOCATION_ID": "0123456789abcdef"})
        self.assertNotIn("outside the sandbox", inside.stdout)
        self.assertEqual(inside.returncode, outside.returncode)


if __name__ == "__main__":
    unittest.main()

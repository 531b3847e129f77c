"""The agent's own state database (state_dir/state.db), shared by the agent
and every one-off command."""
import os
import subprocess
import unittest

from harness import AgentTestCase, BIN, create_database


class StateTest(AgentTestCase):
    def test_first_commands_run_at_once_all_create_the_state_together(self):
        # Eight one-off jobs that find no state.db yet: each creates the
        # tables, and none may fail with "database is locked" (they did when
        # a read transaction was left open before BEGIN IMMEDIATE).
        create_database(self.db_path(), rows=10)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; }}')
        for attempt in range(8):
            if os.path.isdir(self.state_dir):
                for name in os.listdir(self.state_dir):
                    path = os.path.join(self.state_dir, name)
                    if os.path.isfile(path):
                        os.unlink(path)
            processes = [subprocess.Popen([BIN, "-c", self.config_path, "checkpoint", "app"],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True) for _ in range(8)]
            for process in processes:
                out, err = process.communicate(timeout=120)
                self.assertEqual(process.returncode, 0, f"attempt {attempt}: {err}")
                self.assertNotIn("locked", err)
        runs = self.status_json()
        self.assertTrue(runs, "status reads the state the commands wrote")


if __name__ == "__main__":
    unittest.main()

"""Disk full: the backup directory, then the state directory, on a 2 MB
tmpfs (needs root to mount; skipped with a message otherwise). A backup that
runs out of space fails cleanly and says so, the older archive stays intact,
no temp file is left, health turns degraded, and the next run succeeds once
space is freed."""
import os
import re
import subprocess
import time
import unittest

from reliability import AgentTestCase, incompressible_database, verify_archive_dir

IS_ROOT = os.geteuid() == 0


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                            capture_output=True, text=True)
    return result.returncode == 0, result.stderr


def fill(path, free_kib):
    """Fills the file system of `path` up to `free_kib` KiB left, with one file."""
    stat = os.statvfs(os.path.dirname(path))
    available = stat.f_bavail * stat.f_frsize - free_kib * 1024
    with open(path, "wb") as f:
        f.write(b"\0" * max(available, 0))


@unittest.skipUnless(IS_ROOT, "skipped: mounting a tmpfs needs root (CI runs as root)")
class DiskFullTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.mounts = []
        # 600 KB that compress poorly: one backup fits in 2 MB, a second does not.
        incompressible_database(self.db_path(), 1)
        self.write_config(f'{{ name = "app"; path = "{self.db_path()}"; '
                          f'backup = {{ every = "1h"; keep = {{ last = 5; }}; }}; }}')

    def tearDown(self):
        for path in reversed(self.mounts):
            subprocess.run(["umount", "-l", path], capture_output=True)
        super().tearDown()

    def mount(self, path, size="2m"):
        ok, why = mount_tmpfs(path, size)
        if not ok:
            self.skipTest(f"cannot mount a tmpfs here: {why.strip()}")
        self.mounts.append(path)

    def health(self):
        self.run_cli("health", "app")
        return self.status_json()["databases"][0]["health"]

    def test_backup_dir_full(self):
        self.mount(self.backup_dir, size="4m")
        size_kib = os.path.getsize(self.db_path()) // 1024
        self.run_cli("backup", "app", check=0)
        [first] = verify_archive_dir(os.path.join(self.backup_dir, "app"))[0]
        filler = os.path.join(self.backup_dir, "filler")
        # A third of the database left: the VACUUM INTO copy does not fit;
        # 1.25 times: the copy fits and the compressed archive does not.
        for free_kib in (size_kib // 3, size_kib * 5 // 4):
            fill(filler, free_kib=free_kib)
            time.sleep(1.05)
            result = self.run_cli("backup", "app", check=1)
            self.assertRegex(result.stderr, r"(?i)no space left", f"free {free_kib} KiB")
            self.assertIn("app", result.stderr)
            verified, orphans, temps, problems = verify_archive_dir(
                os.path.join(self.backup_dir, "app"))
            self.assertEqual((verified, orphans, temps, problems), ([first], [], [], []),
                             f"free {free_kib} KiB: the old archive intact, nothing half-made left")
            self.assertEqual(self.health(), "degraded")
            os.unlink(filler)
        time.sleep(1.05)
        self.run_cli("backup", "app", check=0)
        verified, orphans, temps, problems = verify_archive_dir(os.path.join(self.backup_dir, "app"))
        self.assertEqual((len(verified), orphans, temps, problems), (2, [], [], []))
        self.assertEqual(self.health(), "healthy")

    def test_state_dir_full_refuses_to_work_until_space_is_freed(self):
        """With state_dir full, nothing can be recorded: not the job's result,
        not an upload to queue. A backup that could not be queued would stand
        unprotected (RELIABILITY.md, B1), so the one right outcome is a
        refusal before any work: `backup` exits 1 and writes no archive, the
        agent exits 1 at start; both name the state database and the full
        disk. Once space is freed both work again."""
        self.mount(self.state_dir, size="1m")
        self.run_cli("backup", "app", check=0)
        directory = os.path.join(self.backup_dir, "app")
        [first] = verify_archive_dir(directory)[0]
        state_db = os.path.join(self.state_dir, "state.db")
        refusal = re.escape(f"state database {state_db}: ") + r".*\(No space left on device\)"
        filler = os.path.join(self.state_dir, "filler")
        fill(filler, free_kib=0)
        time.sleep(1.05)

        result = self.run_cli("backup", "app", check=1)
        self.assertRegex(result.stderr, refusal)
        self.assertEqual(verify_archive_dir(directory), ([first], [], [], []),
                         "the old archive intact, no new one, nothing half-made")

        agent = self.start_agent()
        self.assertEqual(agent.wait(timeout=15), 1, f"the agent must refuse to start\n"
                                                    f"{self.agent_log()}")
        self.assertRegex(self.agent_log(), refusal)
        self.assertEqual([f for f in os.listdir(self.state_dir) if "sqlprodd-tmp" in f], [])
        self.assertEqual(verify_archive_dir(directory), ([first], [], [], []))

        os.unlink(filler)
        time.sleep(1.05)
        self.run_cli("backup", "app", check=0)
        self.assertEqual(len(verify_archive_dir(directory)[0]), 2)
        refused_log = len(self.agent_log())
        agent = self.start_agent()
        self.wait_for(lambda: "started" in self.agent_log()[refused_log:],
                      timeout=15, what="the agent to start once space is free")
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0, self.agent_log())
        [database] = self.status_json()["databases"]
        self.assertEqual(database["uploads_pending"], 0)


if __name__ == "__main__":
    unittest.main()

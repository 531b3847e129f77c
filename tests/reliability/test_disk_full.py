"""Disk full: the backup directory, then the state directory, on a 2 MB
tmpfs (needs root to mount; skipped with a message otherwise). A backup that
runs out of space fails cleanly and says so, the older archive stays intact,
no temp file is left, health turns degraded, and the next run succeeds once
space is freed."""
import os
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

    def test_state_dir_full(self):
        self.mount(self.state_dir, size="1m")
        self.run_cli("backup", "app", check=0)
        filler = os.path.join(self.state_dir, "filler")
        fill(filler, free_kib=0)
        time.sleep(1.05)
        result = self.run_cli("backup", "app")
        self.assertIn(result.returncode, (0, 1), f"no crash: {result.returncode}\n{result.stderr}")
        if result.returncode == 1:
            self.assertRegex(result.stderr, r"(?i)no space left", "a clear message")
        verified, orphans, temps, problems = verify_archive_dir(os.path.join(self.backup_dir, "app"))
        self.assertEqual((orphans, temps, problems), ([], [], []))
        self.assertGreaterEqual(len(verified), 1)
        # The agent either runs on or refuses to start, saying why; never a crash.
        agent = self.start_agent()
        time.sleep(2)
        if agent.poll() is None:
            code, _ = self.stop_agent(agent)
            self.assertEqual(code, 0, self.agent_log())
        else:
            self.assertEqual(agent.returncode, 1, self.agent_log())
            self.assertRegex(self.agent_log(), r"state.*No space left on device")
        self.assertEqual([f for f in os.listdir(self.state_dir) if "sqlprodd-tmp" in f], [])
        os.unlink(filler)
        time.sleep(1.05)
        self.run_cli("backup", "app", check=0)
        self.assertEqual(self.status_json()["databases"][0]["uploads_pending"], 0)


if __name__ == "__main__":
    unittest.main()

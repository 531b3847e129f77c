"""The database's integrity verdict comes from a full integrity_check of a
backup copy once per health.integrity_every (VACUUM INTO copies index
b-trees as they are, so the copy shows the source's damage); the other
backups take quick_check, and the scheduled health job no longer reads the
whole live database. Checked where an operator looks: the manifests, status,
the health reasons (with a fix that is pasted as printed) and the metrics."""
import json
import os
import shutil
import subprocess
import time
import unittest
from datetime import datetime, timezone

from harness import create_database
from test_health import HealthTestCase
from test_printed_fixes import corrupt_index_keys


def manifests(directory):
    """(created, method, result) of every backup, oldest first."""
    found = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".db.gz.json"):
            with open(os.path.join(directory, name)) as f:
                manifest = json.load(f)
            created = datetime.strptime(manifest["created"], "%Y-%m-%dT%H:%M:%SZ")
            found.append((created.replace(tzinfo=timezone.utc).timestamp(),
                          manifest["verification"]["method"], manifest["verification"]["result"]))
    return found


@unittest.skipUnless(shutil.which("curl"), "curl is needed")
class IntegrityVerdictTest(HealthTestCase):
    def backups_of(self, name="app"):
        directory = os.path.join(self.backup_dir, name)
        return manifests(directory) if os.path.isdir(directory) else []

    def test_a_copy_whose_index_misses_rows_fails_the_full_check_and_turns_health_unhealthy(self):
        path = self.db_path()
        create_database(path, rows=3000)
        corrupt_index_keys(path)  # quick_check still says ok, of the database and of copies
        self.configure(self.entry("app", extra='backup = { every = "1s"; };'))
        self.start()
        # The first backup's copy takes the day's full check, fails it and is
        # not kept; the next ones take quick_check and are kept.
        self.wait_for(lambda: len(self.backups_of()) >= 3, timeout=60, what="three backups")
        self.wait_health("app", "unhealthy")
        backups = self.backups_of()
        self.assertEqual({method for _, method, _ in backups}, {"quick_check"}, backups)
        self.assertEqual({result for _, _, result in backups}, {"ok"}, backups)
        data = self.database_status("app")
        reasons = data["reasons"]
        self.assertRegex(reasons, r"integrity_check of a backup copy taken at "
                                  r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC found corruption \(.*"
                                  r"missing from index items_name")
        self.assertIsNone(data["integrity_checked_at"], "no full check has passed")
        samples = self.textfile_samples()
        failures = [v for (name, labels), v in samples.items()
                    if name == "sqlprodd_job_failures_total" and ("job", "backup") in labels]
        self.assertEqual(failures, [1.0], "one backup failed: the one with the full check")
        self.assertFalse(any(name == "sqlprodd_integrity_check_last_success_timestamp_seconds"
                             for name, _ in samples))
        self.assert_everywhere("app", "unhealthy", [r"a backup copy taken at .* found corruption",
                                                    r"missing from index items_name"])

        # The printed confirmation, pasted as printed, shows the same damage.
        confirm = next(c for c in reasons.split("`") if c.startswith("sqlite3 "))
        result = subprocess.run(["sh", "-c", confirm], capture_output=True, text=True, timeout=60)
        self.assertIn("missing from index items_name", result.stdout)
        # Fixed, `sqlprodd health app` (the reason's other command) checks
        # the database itself in full and clears the verdict.
        subprocess.run(["sqlite3", path, "REINDEX"], check=True, timeout=60)
        again = next(c for c in reasons.split("`") if c.startswith("sqlprodd ") and " health " in c)
        self.assertTrue(again.endswith(" health app"), again)
        result = self.run_cli("health", "app", check=0)
        self.assertRegex(result.stdout + result.stderr, r"health: healthy")
        self.wait_health("app", "healthy")
        self.assertIsNotNone(self.database_status("app")["integrity_checked_at"])

    def test_one_copy_per_integrity_every_takes_the_full_check_the_others_quick_check(self):
        path = self.db_path()
        create_database(path, rows=2000)
        self.configure(self.entry("app", extra='backup = { every = "1s"; keep = { last = 100; }; };'
                                               ' health = { integrity_every = "5s"; };'))
        started = time.time()
        self.start()
        self.wait_for(lambda: sum(m == "integrity_check" for _, m, _ in self.backups_of()) >= 2,
                      timeout=60, what="two full checks")
        self.wait_health("app", "healthy")
        backups = self.backups_of()
        full = [created for created, method, _ in backups if method == "integrity_check"]
        quick = [created for created, method, _ in backups if method == "quick_check"]
        self.assertEqual({result for _, _, result in backups}, {"ok"})
        self.assertEqual(backups[0][1], "integrity_check", "the first copy is checked in full")
        self.assertGreaterEqual(len(quick), 3, backups)
        # Once per integrity_every (5 s, manifests have whole seconds): never
        # two full checks closer than that.
        for earlier, later in zip(full, full[1:]):
            self.assertGreaterEqual(later - earlier, 4, backups)
        # The verdict is the copy's: the last passing full check is a
        # backup's, not a health run's on the live database.
        checked = self.database_status("app")["integrity_checked_at"]
        checked = datetime.strptime(checked, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc).timestamp()
        self.assertGreaterEqual(checked, started - 1)
        self.assertTrue(any(abs(checked - created) <= 2 for created in full),
                        (checked, full))

    def test_without_scheduled_backups_health_checks_the_database_itself(self):
        path = self.db_path()
        create_database(path, rows=3000)
        corrupt_index_keys(path)
        self.configure(self.entry("app", extra="backup = { enabled = false; };"))
        self.start()
        self.wait_health("app", "unhealthy")
        # The run that checked says so; later runs, with quick_check only,
        # repeat the standing verdict with its date.
        self.assertRegex(self.database_status("app")["reasons"],
                         r"^integrity_check (of the database at [0-9: -]+ UTC )?"
                         r"found corruption \(.*missing from index items_name")
        self.assertEqual(self.backups_of(), [])


if __name__ == "__main__":
    unittest.main()

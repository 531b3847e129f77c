"""The agent's own state database (state_dir/state.db), shared by the agent
and every one-off command."""
import os
import sqlite3
import subprocess
import unittest

from harness import AgentTestCase, BIN, create_database
from test_health import parse_metrics

# The rows sqlprodd wrote into state.db's database_values before the typed
# record (main@6cf5690, after checkpoint, backup, upload and health), with
# values that tell the fields apart. An upgrade must read every one of them.
PREVIOUS_VERSION_ROWS = {
    "auto_vacuum": "incremental",
    "backup_last_bytes": "6116",
    "checkpoint_blocked": "0",
    "database_bytes": "20480",
    "freelist_ratio": "0.250000",
    "health": "degraded",
    "health_checked_at": "1796207401",
    "health_reason_lines": "first reason\nsecond reason",
    "health_reasons": "first reason; second reason",
    "integrity_checked_at": "1796200000",
    "journal_mode": "wal",
    "locked_since": "0",
    "page_size": "8192",
    "upload_last_sent": "1796207402 2 7000",
    "wal_bytes": "0",
}


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

    def test_results_written_by_the_previous_version_read_the_same_after_an_upgrade(self):
        create_database(self.db_path(), rows=10)
        textfile = os.path.join(self.dir, "sqlprodd.prom")
        offsite = os.path.join(self.dir, "offsite")
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; upload = {{ target = "nas"; }}; }}',
            targets=f'{{ name = "nas"; type = "dir"; path = "{offsite}"; }}',
            extra=f'metrics = {{ textfile = "{textfile}"; }};')
        self.run_cli("analyze", "app", check=0)  # creates state.db
        state = sqlite3.connect(os.path.join(self.state_dir, "state.db"))
        with state:
            state.executemany("INSERT OR REPLACE INTO database_values VALUES ('app', ?, ?)",
                              PREVIOUS_VERSION_ROWS.items())
        state.close()

        app = self.status_json()["databases"][0]
        self.assertEqual(app["health"], "degraded")
        self.assertEqual(app["reasons"], "first reason; second reason")
        self.assertEqual(app["reasons_list"], ["first reason", "second reason"])
        self.assertEqual(app["health_checked_at"], "2026-12-02T10:30:01Z")
        self.assertEqual(app["integrity_checked_at"], "2026-12-02T08:26:40Z")
        self.assertEqual(app["journal_mode"], "wal")
        self.assertEqual(app["auto_vacuum"], "incremental")
        self.assertEqual(app["page_size_bytes"], 8192)
        self.assertEqual(app["freelist_ratio"], 0.25)
        self.assertEqual(app["backup_last_bytes"], 6116)
        self.assertEqual(app["last_upload"]["at"], "2026-12-02T10:30:02Z")
        self.assertEqual(app["last_upload"]["archives"], 2)
        self.assertEqual(app["last_upload"]["bytes"], 7000)

        self.run_cli("analyze", "app", check=0)  # rewrites the textfile
        with open(textfile) as f:
            samples = parse_metrics(f.read())
        app = frozenset({("database", "app")})
        self.assertEqual(samples[("sqlprodd_health", app)], 1)
        self.assertEqual(samples[("sqlprodd_freelist_ratio", app)], 0.25)
        self.assertEqual(samples[("sqlprodd_backup_last_size_bytes", app)], 6116)
        self.assertEqual(samples[("sqlprodd_database_page_size_bytes", app)], 8192)
        self.assertEqual(samples[("sqlprodd_health_check_timestamp_seconds", app)], 1796207401)
        self.assertEqual(
            samples[("sqlprodd_integrity_check_last_success_timestamp_seconds", app)], 1796200000)
        info = app | {("journal_mode", "wal"), ("auto_vacuum", "incremental")}
        self.assertEqual(samples[("sqlprodd_database_info", info)], 1)


if __name__ == "__main__":
    unittest.main()

"""Storage outages against the S3 test server (tests/s3/server.js, which
checks every signature and injects faults): the server stopped for a while
(across an agent restart), 500/503/SlowDown answers, slow answers,
connections reset mid-upload (single PUT and multipart parts) and truncated
responses. Every time: the local copy is kept, a failed upload is never
reported or recorded as done, and the backlog drains once the server is
back; what arrives restores intact (`restore --from remote` checks the
sha256 and runs integrity_check).

The target's per-request retries (6 tries, 0.5 s doubling) are the
product's defaults, so a failing upload takes ~15 s: these tests are slow
by nature and few."""
import os
import shutil
import signal
import time
import unittest

from reliability import (S3_DIR, S3_ENV, AgentTestCase, S3Server, create_database,
                         incompressible_database, queue_rows, row_count, s3_target,
                         verify_archive_dir)


@unittest.skipUnless(shutil.which("node"), "node is not installed: the S3 tests need Node.js 18+")
class StorageOutageTest(AgentTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(os.path.join(S3_DIR, "node_modules", "s3rver")):
            raise AssertionError(f"run 'npm ci --prefix {S3_DIR}' first")

    def setUp(self):
        super().setUp()
        self.server = S3Server(os.path.join(self.dir, "s3"))
        self.addCleanup(self.server.stop)
        create_database(self.db_path(), rows=3000)
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; '
            f'backup = {{ every = "1h"; }}; upload = {{ target = "offsite"; }}; }}',
            targets=s3_target(self.server.url))

    def pending(self):
        return len(queue_rows(self.state_dir))

    def upload(self, expect):
        result = self.run_cli("upload", "app", env=S3_ENV, timeout=300)
        self.assertEqual(result.returncode, expect,
                         f"upload exited {result.returncode}\n{result.stderr}")
        return result

    def backup(self):
        self.run_cli("backup", "app", check=0)
        time.sleep(1.05)

    def assert_local_intact(self, count):
        verified, orphans, temps, problems = verify_archive_dir(
            os.path.join(self.backup_dir, "app"))
        self.assertEqual((len(verified), orphans, temps, problems), (count, [], [], []))

    def assert_restores_from_remote(self, rows=3000):
        target = os.path.join(self.dir, f"restored-{time.monotonic_ns()}.db")
        result = self.run_cli("restore", "app", "--to", target, "--from", "remote", env=S3_ENV)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertGreaterEqual(row_count(target), rows)

    def remote_manifests(self):
        """Manifests PUT (not retention's records of deletions, under pruned/)."""
        return sorted(r["path"] for r in self.server.requests()
                      if r["method"] == "PUT" and r["path"].endswith(".db.gz.json")
                      and 200 <= r["status"] < 300)

    def test_server_down_across_agent_restart_then_backlog_drains(self):
        self.backup()
        self.server.stop()
        result = self.upload(expect=1)
        self.assertRegex(result.stderr, r"1 upload failed, 1 pending")
        self.assertRegex(result.stderr, r"127\.0\.0\.1|connect", "the error says what failed")
        self.backup()
        # The agent starts while the server is still down, tries, and is stopped.
        agent = self.start_agent(env=S3_ENV)
        self.wait_for(lambda: "will retry" in self.agent_log(), timeout=90,
                      what="the agent's failed upload attempt")
        code, _ = self.stop_agent(agent, timeout=60)
        self.assertEqual(code, 0)
        self.assertNotIn(" sent to ", self.agent_log(), "nothing may be reported as sent")
        self.assertEqual(self.pending(), 2, "the queue survives the restart")
        self.assert_local_intact(2)
        # Back: the queue drains, both backups restore from the target.
        self.server.start()
        self.upload(expect=0)
        self.assertEqual(self.pending(), 0)
        self.assertEqual(len(self.remote_manifests()), 2, self.remote_manifests())
        self.assert_restores_from_remote()

    def test_error_answers_are_retried_and_persistent_ones_keep_the_queue(self):
        self.backup()
        # Transient: three SlowDowns and a 500, then success within one run.
        self.server.fault(mode="error", status=503, code="SlowDown", count=3)
        self.server.fault(mode="error", status=500, code="InternalError", count=1)
        self.upload(expect=0)
        statuses = [r["status"] for r in self.server.requests()]
        self.assertEqual(statuses.count(503), 3, statuses)
        self.assertEqual(statuses.count(500), 1, statuses)
        self.assertEqual(self.pending(), 0)
        # Persistent: every request fails; the upload must not count as done.
        self.backup()
        self.server.admin("DELETE", "/__admin/requests")
        self.server.fault(mode="error", status=503, code="ServiceUnavailable", count=1000)
        result = self.upload(expect=1)
        self.assertIn("503", result.stderr)
        self.assertEqual(self.pending(), 1)
        self.assertEqual(self.remote_manifests(), [], "no manifest may reach the target")
        tries = len(self.server.requests())
        self.assertGreaterEqual(tries, 2, "retried")
        self.assertLessEqual(tries, 10, "bounded retries, no storm")
        self.assert_local_intact(2)
        self.server.clear_faults()
        self.upload(expect=0)
        self.assertEqual(self.pending(), 0)
        self.assert_restores_from_remote()

    def test_connection_reset_mid_upload_single_and_multipart(self):
        self.backup()
        self.server.fault(mode="drop", when="request", method="PUT", count=2)
        self.upload(expect=0)
        self.assertEqual(self.pending(), 0)
        # A 16 MB archive goes up in 5 MB parts; parts are cut mid-body.
        incompressible_database(self.db_path(), 16)
        self.backup()
        self.server.admin("DELETE", "/__admin/requests")
        self.server.fault(mode="drop", when="request", method="PUT", query="partNumber", count=3)
        self.upload(expect=0)
        parts = [r for r in self.server.requests() if "partNumber" in r.get("query", {})]
        self.assertGreaterEqual(len(parts), 4 + 3, "every part, plus the three cut ones again")
        self.assertEqual(self.pending(), 0)
        # Resets on every PUT: fails, stays queued, nothing complete remotely.
        self.backup()
        self.server.admin("DELETE", "/__admin/requests")
        self.server.fault(mode="drop", when="request", method="PUT", count=1000)
        self.upload(expect=1)
        self.assertEqual(self.pending(), 1)
        self.assertEqual(self.remote_manifests(), [])
        self.server.clear_faults()
        self.upload(expect=0)
        self.assertEqual(self.pending(), 0)
        self.assert_local_intact(3)
        self.assert_restores_from_remote()

    def test_slow_server_and_truncated_responses(self):
        self.backup()
        self.server.fault(mode="delay", ms=3000, method="PUT", count=2)
        started = time.monotonic()
        self.upload(expect=0)
        self.assertGreaterEqual(time.monotonic() - started, 3.0)
        self.assertEqual(self.pending(), 0)
        # Listings cut halfway (PUT answers have no body to cut): the upload
        # itself is confirmed and leaves the queue; remote retention, which
        # needs the listing, fails with a clear message after its retries
        # and deletes nothing.
        self.backup()
        self.server.fault(mode="drop", when="response", method="GET", count=1000)
        # (A retention failure after a confirmed upload is a warning or a
        # failure depending on the version; either way it is said.)
        result = self.run_cli("upload", "app", env=S3_ENV, timeout=300)
        self.assertIn(result.returncode, (0, 1), result.stderr)
        self.assertRegex(result.stderr, r"uploaded 1 archive .*remote retention: .*GET failed")
        self.assertEqual(self.pending(), 0)
        result = self.run_cli("backups", "app", "--remote", env=S3_ENV)
        self.assertEqual(result.returncode, 1, result.stderr)
        deletes = [r for r in self.server.requests() if r["method"] == "DELETE"]
        self.assertEqual(deletes, [])
        self.server.clear_faults()
        self.backup()
        self.upload(expect=0)
        self.assertEqual(self.pending(), 0)
        self.assertEqual(len(self.remote_manifests()), 3)
        self.assert_local_intact(3)
        self.assert_restores_from_remote()


if __name__ == "__main__":
    unittest.main()

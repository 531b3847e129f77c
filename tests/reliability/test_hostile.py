"""Hostile input at the edges the fuzzers (tests/fuzz/) do not reach:
database names that would escape their directories, credentials files
readable by others, and secrets that must never reach a log, `status` or
the process list. The config parser's own refusals of "../x", "..", "."
and "/" in names are unit-tested in tests/unit/test_config.c; here the
built binary is checked end to end."""
import os
import shutil
import time
import unittest

from reliability import AgentTestCase, S3Server, S3_DIR, create_database, s3_target

WRONG_SECRET = "Wr0ngSecretThatMustNeverBeLogged/xyzzy+42"


class HostileInputTest(AgentTestCase):
    def test_names_cannot_escape_their_directories(self):
        create_database(self.db_path(), rows=10)
        for name in ("../x", "..", "a/b", "/etc/passwd", "x/../../y"):
            self.write_config(f'{{ name = "{name}"; path = "{self.db_path()}"; }}')
            result = self.run_cli("check")
            self.assertEqual(result.returncode, 2, f"name {name!r} accepted:\n{result.stdout}")
            self.assertIn(":", result.stdout + result.stderr)
            result = self.run_cli("backup")
            self.assertEqual(result.returncode, 2)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "x")))
        self.assertFalse(os.path.exists(self.backup_dir), "nothing written anywhere")

    def write_credentials(self, secret, mode):
        path = os.path.join(self.dir, "offsite.credentials")
        with open(path, "w") as f:
            f.write(f"[default]\naws_access_key_id = SQLPRODDTESTACCESSKEY\n"
                    f"aws_secret_access_key = {secret}\n")
        os.chmod(path, mode)
        return path

    def configure_s3(self, url, credentials):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; backup = {{ every = "1s"; }}; '
            f'upload = {{ target = "offsite"; }}; }}',
            targets=s3_target(url, f'credentials_file = "{credentials}";'))

    def test_credentials_readable_by_others_are_refused(self):
        create_database(self.db_path(), rows=10)
        for mode in (0o644, 0o640, 0o604):
            credentials = self.write_credentials(WRONG_SECRET, mode)
            self.configure_s3("http://127.0.0.1:9", credentials)
            self.run_cli("backup", "app", check=0)
            result = self.run_cli("upload", "app")
            self.assertEqual(result.returncode, 1)
            self.assertRegex(result.stderr, r"accessible by group or others")
            self.assertNotIn(WRONG_SECRET, result.stdout + result.stderr)
            result = self.run_cli("check")
            self.assertNotEqual(result.returncode, 0, f"check accepted mode {mode:o}")
            self.assertNotIn(WRONG_SECRET, result.stdout + result.stderr)
            time.sleep(1.05)

    @unittest.skipUnless(shutil.which("node") and
                         os.path.isdir(os.path.join(S3_DIR, "node_modules", "s3rver")),
                         "node or the S3 test server's modules are missing")
    def test_secrets_never_in_logs_status_or_argv(self):
        server = S3Server(os.path.join(self.dir, "s3"))
        self.addCleanup(server.stop)
        create_database(self.db_path(), rows=100)
        credentials = self.write_credentials(WRONG_SECRET, 0o600)
        self.configure_s3(server.url, credentials)
        self.run_cli("backup", "app", check=0)
        outputs = []
        result = self.run_cli("upload", "app", check=1)  # debug log level, wrong secret
        self.assertIn("SignatureDoesNotMatch", result.stderr)
        outputs += [result.stdout, result.stderr]
        # The secret given through the environment must not leak either.
        env = {"AWS_SECRET_ACCESS_KEY": WRONG_SECRET, "AWS_ACCESS_KEY_ID": "SQLPRODDTESTACCESSKEY"}
        agent = self.start_agent(env=env)
        self.wait_for(lambda: "will retry" in self.agent_log(), timeout=90,
                      what="a failed upload in the agent")
        with open(f"/proc/{agent.pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
        self.assertNotIn(WRONG_SECRET, cmdline)
        self.assertNotIn("aws_secret", cmdline)
        for args in (("status",), ("status", "--json"), ("backups", "--remote"), ("check",)):
            result = self.run_cli(*args)
            outputs += [result.stdout, result.stderr]
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0)
        outputs.append(self.agent_log())
        for root, _, files in os.walk(self.state_dir):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    outputs.append(f.read().decode(errors="replace"))
        for text in outputs:
            self.assertNotIn(WRONG_SECRET, text)
            self.assertNotIn(WRONG_SECRET[:12], text, "not even a prefix")


if __name__ == "__main__":
    unittest.main()

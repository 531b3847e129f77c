"""Hostile input at the edges the fuzzers (tests/fuzz/) do not reach:
database names that would escape their directories, credentials files
readable by others, and secrets that must never reach a log, `status` or
the process list. The config parser's own refusals of "../x", "..", "."
and "/" in names are unit-tested in tests/unit/test_config.c; here the
built binary is checked end to end."""
import grp
import os
import re
import shutil
import subprocess
import time
import unittest

from reliability import (SECRET_KEY, AgentTestCase, S3Server, S3_DIR, create_database,
                         s3_target)


WRONG_SECRET = "Wr0ngSecretThatMustNeverBeLogged/xyzzy+42"


def foreign_group():
    """A group the tests do not run as, for a credentials file shared with it."""
    for name in ("nogroup", "nobody", "daemon"):
        try:
            entry = grp.getgrnam(name)
        except KeyError:
            continue
        if entry.gr_gid != os.getegid():
            return entry.gr_name
    raise unittest.SkipTest("no group other than ours")


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

    def write_credentials(self, secret, mode, group=None):
        path = os.path.join(self.dir, "offsite.credentials")
        with open(path, "w") as f:
            f.write(f"[default]\naws_access_key_id = SQLPRODDTESTACCESSKEY\n"
                    f"aws_secret_access_key = {secret}\n")
        if group is not None:
            shutil.chown(path, "root", group)
        os.chmod(path, mode)
        return path

    def configure_s3(self, url, credentials):
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path()}"; backup = {{ every = "1s"; }}; '
            f'upload = {{ target = "offsite"; }}; }}',
            targets=s3_target(url, f'credentials_file = "{credentials}";'))

    def test_credentials_readable_by_others_are_refused(self):
        # 0640 is the Debian convention (root:ssl-cert for /etc/ssl/private)
        # only with the group the agent runs as: with any other group the
        # secret is shared with its members. The fix printed must be exact.
        create_database(self.db_path(), rows=10)
        foreign = foreign_group()
        ours = grp.getgrgid(os.getegid()).gr_name
        for mode, group, problem in ((0o644, None, "is accessible by others"),
                                     (0o604, None, "is accessible by others"),
                                     (0o660, None, "is writable or executable by its group"),
                                     (0o640, foreign, "is readable by the group"),
                                     (0o440, foreign, "is readable by the group")):
            credentials = self.write_credentials(WRONG_SECRET, mode, group)
            self.configure_s3("http://127.0.0.1:9", credentials)
            self.run_cli("backup", "app", check=0)
            result = self.run_cli("upload", "app")
            self.assertEqual(result.returncode, 1)
            owner = f"root:{grp.getgrgid(os.stat(credentials).st_gid).gr_name}"
            self.assertIn(f"credentials file {credentials} (mode {mode:04o}, owner {owner}) "
                          f"{problem}", result.stderr)
            # The fix as printed, between backquotes like every printed command.
            printed = re.search(r"run `([^`]*)`", result.stderr)
            self.assertIsNotNone(printed, result.stderr)
            fix = printed.group(1)
            self.assertEqual(fix, f"chown root:{ours} {credentials} && chmod 640 {credentials}")
            self.assertNotIn(WRONG_SECRET, result.stdout + result.stderr)
            result = self.run_cli("check")
            self.assertNotEqual(result.returncode, 0, f"check accepted mode {mode:o}")
            self.assertIn(problem, result.stdout + result.stderr)
            self.assertNotIn(WRONG_SECRET, result.stdout + result.stderr)
            # The printed fix, run as printed, makes the file acceptable.
            subprocess.run(["sh", "-c", fix], check=True)
            result = self.run_cli("check")
            self.assertNotIn(f"credentials file {credentials}", result.stdout + result.stderr)
            time.sleep(1.05)

    @unittest.skipUnless(shutil.which("node") and
                         os.path.isdir(os.path.join(S3_DIR, "node_modules", "s3rver")),
                         "node or the S3 test server's modules are missing")
    def test_credentials_shared_only_with_our_group_are_accepted(self):
        server = S3Server(os.path.join(self.dir, "s3"))
        self.addCleanup(server.stop)
        create_database(self.db_path(), rows=10)
        self.assertEqual(os.geteuid(), 0, "the tests run as root, as in CI")
        for mode in (0o640, 0o440, 0o600):
            credentials = self.write_credentials(SECRET_KEY, mode, grp.getgrgid(os.getegid()).gr_name)
            self.configure_s3(server.url, credentials)
            result = self.run_cli("backup", "app", check=0)
            result = self.run_cli("upload", "app")
            self.assertEqual(result.returncode, 0, f"mode {mode:o}: {result.stderr}")
            result = self.run_cli("check")
            self.assertEqual(result.returncode, 0, f"mode {mode:o}: {result.stdout}")
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

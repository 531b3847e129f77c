"""Bash completion (completion/sqlprodd.bash): commands, the database names
of the configuration on the command line, and backup IDs, local and remote,
as bash itself computes them from the real binary."""
import os
import re
import shlex
import subprocess
import time
import unittest

from harness import BIN, SOURCE_DIR, AgentTestCase, create_database

COMPLETION = os.path.join(SOURCE_DIR, "completion", "sqlprodd.bash")


class CompletionTest(AgentTestCase):
    def complete(self, line, env=None):
        """What bash offers for the last word of `line` (after TAB)."""
        script = f"""
            source {shlex.quote(COMPLETION)}
            COMP_LINE={shlex.quote(line)}
            read -r -a COMP_WORDS <<< "$COMP_LINE"
            [ "${{COMP_LINE: -1}}" = " " ] && COMP_WORDS+=("")
            COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
            COMP_WORDS[0]={shlex.quote(BIN)}
            _sqlprodd
            printf '%s\\n' "${{COMPREPLY[@]}}"
        """
        environment = dict(os.environ, **(env or {}))
        result = subprocess.run(["bash", "--norc", "--noprofile", "-c", script],
                                capture_output=True, text=True, env=environment, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, "", "completion must never print on the terminal")
        return sorted(word for word in result.stdout.splitlines() if word)

    def setUp(self):
        super().setUp()
        self.nas = os.path.join(self.dir, "nas")
        os.makedirs(self.nas)
        create_database(self.db_path("app"), rows=50)
        create_database(self.db_path("web.v2"), rows=50)
        self.write_config(
            f'{{ name = "app"; path = "{self.db_path("app")}"; }}, '
            f'{{ name = "web.v2"; path = "{self.db_path("web.v2")}"; }}',
            defaults='upload = { target = "nas"; keep = { last = 10; }; };',
            targets=f'{{ name = "nas"; type = "dir"; path = "{self.nas}"; }}')

    def backup_ids(self, *args):
        listing = self.run_cli("backups", "app", *args, check=0).stdout
        return sorted(re.findall(r"^app\s+(\d{8}T\d{6}Z)\s", listing, re.M))

    def test_commands_and_options(self):
        usage = subprocess.run([BIN, "--help"], capture_output=True, text=True).stdout
        commands = set()
        for line in usage.splitlines():
            match = re.match(r"\s*(?:usage:)?\s*sqlprodd (?:\[-c FILE\] )?\[?([a-z|]+)", line)
            if match:
                commands.update(match.group(1).split("|"))
        self.assertIn("restore", commands)
        offered = set(self.complete("sqlprodd "))
        self.assertEqual(commands - offered, set(), "commands of --help that completion lacks")
        self.assertEqual(self.complete("sqlprodd ba"), ["backup", "backups"])
        self.assertEqual(self.complete("sqlprodd --v"), ["--version"])
        self.assertEqual(self.complete("sqlprodd backups app --"), ["--json", "--remote"])
        self.assertEqual(self.complete("sqlprodd restore app --from "), ["local", "remote"])

    def test_database_names_of_the_configuration_in_use(self):
        self.assertEqual(self.complete(f"sqlprodd -c {self.config_path} backup "), ["app", "web.v2"])
        self.assertEqual(self.complete(f"sqlprodd --config={self.config_path} status w"), ["web.v2"])
        self.assertEqual(self.complete(f"sqlprodd -c {self.config_path} restore "), ["app", "web.v2"])
        # SQLPRODD_CONFIG, as for the command itself.
        self.assertEqual(self.complete("sqlprodd health ", env={"SQLPRODD_CONFIG": self.config_path}),
                         ["app", "web.v2"])
        # One database per command: nothing after it.
        self.assertEqual(self.complete(f"sqlprodd -c {self.config_path} backup app "), [])
        # A configuration the user cannot read (or a broken one): no names, no noise.
        self.assertEqual(self.complete(f"sqlprodd -c {self.dir}/missing.conf backup "), [])

    def test_backup_ids_local_and_remote(self):
        self.run_cli("backup", "app", check=0)
        time.sleep(1.1)  # IDs are to the second
        self.run_cli("backup", "app", check=0)
        local = self.backup_ids()
        self.assertEqual(len(local), 2)
        line = f"sqlprodd -c {self.config_path} restore app --to /tmp/x --backup "
        self.assertEqual(self.complete(line), local)
        distinct = len(os.path.commonprefix(local)) + 1
        self.assertEqual(self.complete(line + local[1][:distinct]), [local[1]])
        # Only web.v2's own backups: it has none.
        self.assertEqual(self.complete(f"sqlprodd -c {self.config_path} restore web.v2 --backup "), [])
        self.run_cli("upload", "app", check=0)
        for archive in os.listdir(os.path.join(self.backup_dir, "app")):
            os.unlink(os.path.join(self.backup_dir, "app", archive))
        self.assertEqual(self.complete(line), [], "no local backups left")
        remote = self.backup_ids("--remote")
        self.assertEqual(remote, local)
        self.assertEqual(self.complete(
            f"sqlprodd -c {self.config_path} restore app --from remote --backup "), remote)


if __name__ == "__main__":
    unittest.main()

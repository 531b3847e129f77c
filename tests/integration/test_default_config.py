"""The packaged /etc/sqlprodd.conf: as shipped it passes `check`, and each
commented example in it, uncommented on its own as an operator would (the
leading "# " removed from its lines, nothing else), still gives a valid
configuration: `check` may report a path that does not exist on this
machine, never a syntax or configuration error."""
import os
import re
import subprocess
import unittest

from harness import BIN, SOURCE_DIR, AgentTestCase

PACKAGED = os.path.join(SOURCE_DIR, "etc", "sqlprodd.conf")
# A commented line is configuration (not prose) when what follows "# " is a
# setting, a brace or a parenthesis and it ends as a statement does; a
# comment line continues an example it is inside of.
CODE = re.compile(r"^(\s*)# ?(\s*(?:[{}()]|[a-z_]+\s*=|#).*)$")


def is_code(line, inside):
    match = CODE.match(line)
    if not match:
        return False
    text = re.sub(r";\s+#.*$", ";", match.group(2).strip())  # a remark after a setting
    if text.startswith("#"):
        return inside
    return text.endswith((";", "{", "}", "(", ")", ","))


def examples(lines):
    """[(first index, last index)] of each run of commented code lines."""
    runs, start = [], None
    for index, line in enumerate(lines + [""]):
        if is_code(line, start is not None):
            if start is None:
                start = index
        elif start is not None:
            runs.append((start, index - 1))
            start = None
    return runs


def uncomment(line):
    match = CODE.match(line)
    return match.group(1) + match.group(2)


class DefaultConfigTest(AgentTestCase):
    def check(self, text):
        text = text.replace('state_dir = "/var/lib/sqlprodd";', f'state_dir = "{self.state_dir}";')
        text = text.replace('"/var/backups/sqlprodd"', f'"{self.backup_dir}"')
        with open(self.config_path, "w") as f:
            f.write(text)
        return subprocess.run([BIN, "-c", self.config_path, "check"], capture_output=True,
                              text=True, timeout=60)

    def test_as_shipped_it_passes_check(self):
        with open(PACKAGED) as f:
            result = self.check(f.read())
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_each_example_uncomments_cleanly_on_its_own(self):
        with open(PACKAGED) as f:
            lines = f.read().splitlines()
        runs = examples(lines)
        shown = ["\n".join(lines[first:last + 1]) for first, last in runs]
        # The examples an operator is invited to try: metrics, both targets, both databases.
        self.assertGreaterEqual(len(runs), 5, "\n\n".join(shown))
        for (first, last), example in zip(runs, shown):
            with self.subTest(example=example.splitlines()[0].strip(), line=first + 1):
                edited = lines[:first] + [uncomment(line) for line in lines[first:last + 1]] + \
                    lines[last + 1:]
                result = self.check("\n".join(edited) + "\n")
                # 2 is a configuration error; 1 a path that is missing here.
                self.assertIn(result.returncode, (0, 1),
                              f"uncommenting lines {first + 1}-{last + 1}:\n{example}\n"
                              f"gives:\n{result.stderr}{result.stdout}")
                self.assertNotIn("syntax error", result.stderr + result.stdout)


if __name__ == "__main__":
    unittest.main()

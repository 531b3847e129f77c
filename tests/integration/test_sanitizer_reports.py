"""The harness fails a test on any sanitizer report, whatever exit status the
test expected: in the asan.* runs a report used to exit 1, the status of an
expected failure, and a heap overflow on restore's failure path passed.

A stand-in for the binary, built here with the same sanitizers, does one bad
thing per run; tests written as the suite writes them run against it and
must fail. It needs a C compiler with ASan/UBSan (a build dependency)."""
import io
import os
import shutil
import subprocess
import tempfile
import unittest

import harness
from harness import AgentTestCase

PROGRAM = r"""
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv)
{
    const char *what = argv[argc - 1];
    fprintf(stderr, "sqlprodd: restore app: the copy is damaged\n");
    if (strcmp(what, "overflow") == 0) {
        size_t size = strlen(what);
        volatile char *block = malloc(size);
        block[size] = 'x';
        free((char *)block);
    } else if (strcmp(what, "leak") == 0) {
        volatile char *block = malloc(64);
        block[0] = 'x';
        block = NULL;
    } else if (strcmp(what, "undefined") == 0) {
        volatile int big = INT_MAX;
        printf("%d\n", big + argc);
    }
    return 1;
}
"""


@unittest.skipUnless(shutil.which("cc"), "no C compiler to build the sanitized stand-in")
class SanitizerReportFailsTheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="sqlprodd-sanitizer-test-")
        source = os.path.join(cls.work, "standin.c")
        with open(source, "w") as f:
            f.write(PROGRAM)
        # Named like the binary, as the harness watches the binary's runs.
        cls.program = os.path.join(cls.work, "sqlprodd-asan")
        subprocess.run(["cc", "-g", "-O1", "-fsanitize=address,undefined",
                        "-fno-sanitize-recover=all", "-o", cls.program, source], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def outcome(self, test):
        """Runs one inner test against the stand-in: (failures+errors, output)."""
        saved = harness.BIN
        harness.BIN = self.program
        try:
            stream = io.StringIO()
            result = unittest.TextTestRunner(stream=stream, verbosity=2).run(test)
        finally:
            harness.BIN = saved
        return len(result.failures) + len(result.errors), stream.getvalue()

    def test_report_on_an_expected_failure_fails_the_test(self):
        class Inner(AgentTestCase):
            def test(self):
                self.run_cli("restore", "app", "overflow", check=1)
        failed, output = self.outcome(Inner("test"))
        self.assertEqual(failed, 1, output)
        self.assertIn("ERROR: AddressSanitizer: heap-buffer-overflow", output)

    def test_undefined_behaviour_in_a_run_the_test_does_not_check_fails_it(self):
        class Inner(AgentTestCase):
            def test(self):
                subprocess.run([harness.BIN, "undefined"], capture_output=True)
        failed, output = self.outcome(Inner("test"))
        self.assertEqual(failed, 1, output)
        self.assertIn("runtime error: signed integer overflow", output)

    def test_leak_in_a_process_whose_output_is_thrown_away_fails_the_test(self):
        class Inner(AgentTestCase):
            def test(self):
                subprocess.Popen([harness.BIN, "leak"], stderr=subprocess.DEVNULL).wait()
        failed, output = self.outcome(Inner("test"))
        self.assertEqual(failed, 1, output)
        self.assertIn("ERROR: LeakSanitizer: detected memory leaks", output)

    def test_clean_expected_failure_passes(self):
        class Inner(AgentTestCase):
            def test(self):
                result = self.run_cli("restore", "app", "clean", check=1)
                self.assertIn("damaged", result.stderr)
        failed, output = self.outcome(Inner("test"))
        self.assertEqual(failed, 0, output)


if __name__ == "__main__":
    unittest.main()

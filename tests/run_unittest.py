"""Runs Python unittest modules for ctest, telling a skipped check from a passed one.

`python -m unittest` exits 0 when tests were skipped (no node, no promtool, no
root, one CPU), so ctest would say "Passed" for a check that never ran. This
runner exits 1 when a test failed, 77 (the SKIP_RETURN_CODE of these tests in
tests/CMakeLists.txt) when none failed but some were skipped, after naming
each skipped test and why, and 0 only when every test ran and passed.

Usage (from the directory of the test modules): python3 run_unittest.py MODULE...
With SQLPRODD_TEST_ONLY=NAME[,NAME...] only the test methods whose names hold
one of them run (the mutation check's `only:`, tests/mutation/README.md).
"""
import os
import sys
import unittest

SKIP_RETURN_CODE = 77


def main(names):
    # As `python -m unittest` does: the modules and their helpers are in the
    # working directory, not beside this file.
    sys.path.insert(0, os.getcwd())
    loader = unittest.TestLoader()
    only = os.environ.get("SQLPRODD_TEST_ONLY")
    if only:
        loader.testNamePatterns = [f"*{name}*" for name in only.split(",")]
    suite = loader.loadTestsFromNames(names)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful():
        return 1
    if result.testsRun == 0:
        print(f"no tests found in {' '.join(names)}", file=sys.stderr)
        return 1
    if result.skipped:
        for test, reason in result.skipped:
            print(f"skipped: {test.id()}: {reason}", file=sys.stderr)
        print(f"{len(result.skipped)} of {result.testsRun} tests skipped: ctest reports "
              f"{' '.join(names)} as skipped", file=sys.stderr)
        return SKIP_RETURN_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

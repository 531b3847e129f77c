"""Shared helpers for the integration tests: the built binary on real files.

Every test gets its own temporary directory with a state dir, a backup dir and
real SQLite databases; a separate writer *process* commits to them while the
agent works, and records every error it sees, so "the application never saw
SQLITE_BUSY" is measured, not assumed.

SQLPRODD_KEEP_TEST_DIR=1 keeps each test's directory (agent.log, the target,
state.db) for a look after a failure.
"""
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import urllib.request

BIN = os.environ.get("SQLPRODD_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "sqlprodd")
SOURCE_DIR = os.environ.get("SQLPRODD_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "writer.py")

# A sanitizer finding fails the test whatever exit status the test expects
# (many expect 1, a failed job, which is also what a sanitizer exits with by
# default). tests/CMakeLists.txt gives the sanitizers exit codes sqlprodd never
# uses (it exits 0, 1 or 2); setUp sends every ASan/LSan report of any process
# the test starts to a file of its own (log_path: also when stderr is piped
# away or the process runs as another user); and every output of the binary
# that passes through here is searched for a report (UBSan ignores log_path
# beside ASan and always writes to stderr).
SANITIZER_EXIT_CODES = {99: "AddressSanitizer or LeakSanitizer", 98: "UndefinedBehaviorSanitizer"}
SANITIZER_OPTIONS = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99",
                     "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=98"}
SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error: ")
_sanitizer_findings = []  # since the current test began


def _runs_sqlprodd(args):
    """True when a command line runs the binary under test (also behind
    strace, setpriv, sh -c ...)."""
    words = [args] if isinstance(args, (str, bytes)) else list(args)
    return any(os.fsdecode(word) == BIN or
               re.search(r"(^|/)sqlprodd(-asan)?(\s|$)", os.fsdecode(word)) for word in words)


def sanitizer_report(text):
    """The sanitizer report in a command's output, or None."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    match = SANITIZER_REPORT.search(text or "")
    if not match:
        return None
    start = text.rfind("\n", 0, match.start()) + 1
    return text[start:start + 6000]


def _note_sanitizer_findings(process, outputs=()):
    if not _runs_sqlprodd(process.args):
        return
    command = " ".join(os.fsdecode(a) for a in ([process.args] if isinstance(
        process.args, (str, bytes)) else process.args))
    if process.returncode in SANITIZER_EXIT_CODES:
        _sanitizer_findings.append(f"{command}: exit {process.returncode}, the code of "
                                   f"{SANITIZER_EXIT_CODES[process.returncode]}")
    for output in outputs:
        report = sanitizer_report(output)
        if report:
            _sanitizer_findings.append(f"{command}:\n{report}")


# subprocess.run and every Popen the tests wait for pass through these two,
# so a test that runs the binary itself is watched too.
_popen_communicate = subprocess.Popen.communicate
_popen_wait = subprocess.Popen.wait


def _communicate_watched(self, *args, **kwargs):
    outputs = _popen_communicate(self, *args, **kwargs)
    _note_sanitizer_findings(self, [o for o in outputs if o])
    return outputs


def _wait_watched(self, *args, **kwargs):
    code = _popen_wait(self, *args, **kwargs)
    _note_sanitizer_findings(self)
    return code


subprocess.Popen.communicate = _communicate_watched
subprocess.Popen.wait = _wait_watched


def traced_environment():
    """The environment for the binary under strace: LeakSanitizer cannot stop
    the world under a tracer and would exit with the sanitizers' code (the
    other asan.* runs look for leaks)."""
    return dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")


def sha256_file(path):
    """SHA-256 of a file, in hex, read a MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def create_database(path, rows=1000, wal=True, auto_vacuum=None, payload=200):
    """A database with a table of `rows` mixed text/number rows."""
    db = sqlite3.connect(path)
    if auto_vacuum:
        db.execute(f"PRAGMA auto_vacuum={auto_vacuum}")
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT, "
               "amount REAL, created INTEGER)")
    db.execute("CREATE INDEX IF NOT EXISTS items_name ON items(name)")
    with db:
        db.executemany(
            "INSERT INTO items (name, amount, created) VALUES (?, ?, ?)",
            ((f"item-{i}-" + "x" * (i % payload), i * 1.5, 1700000000 + i) for i in range(rows)))
    db.close()


def row_count(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*) FROM items").fetchone()[0]
    finally:
        db.close()


class Writer:
    """A separate process committing small transactions until stopped."""

    def __init__(self, path, rate=200, busy_timeout_ms=5000):
        self.report = path + ".writer.json"
        self.stop_file = path + ".writer.stop"
        for leftover in (self.report, self.stop_file):
            if os.path.exists(leftover):
                os.unlink(leftover)
        self.process = subprocess.Popen(
            [sys.executable, WRITER, path, str(rate), str(busy_timeout_ms), self.report,
             self.stop_file])

    def stop(self):
        open(self.stop_file, "w").close()
        self.process.wait(timeout=30)
        with open(self.report) as f:
            return json.load(f)


class AgentTestCase(unittest.TestCase):
    """Temp directory, config writer, and runners for the binary."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sqlprodd-test-")
        self.state_dir = os.path.join(self.dir, "state")
        self.backup_dir = os.path.join(self.dir, "backups")
        self.config_path = os.path.join(self.dir, "sqlprodd.conf")
        self.processes = []
        self.watch_sanitizers()

    def watch_sanitizers(self):
        """ASan/LSan reports of this test's processes go to files in a
        directory of their own, writable by any user the test runs as."""
        del _sanitizer_findings[:]
        self.sanitizer_reported = set()  # each report fails the test once
        self.sanitizer_dir = tempfile.mkdtemp(prefix="sqlprodd-sanitizer-")
        os.chmod(self.sanitizer_dir, 0o1777)
        saved = {name: os.environ.get(name) for name in SANITIZER_OPTIONS}
        for name, default in SANITIZER_OPTIONS.items():
            os.environ[name] = saved[name] or default  # run by hand, not by ctest
        os.environ["ASAN_OPTIONS"] += f":log_path={self.sanitizer_dir}/report"

        def restore():
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            shutil.rmtree(self.sanitizer_dir, ignore_errors=True)
        self.addCleanup(restore)

    def sanitizer_findings(self):
        """Every sanitizer report of this test so far: report files, the
        agent log, and the outputs and exit codes of the binary."""
        findings = list(dict.fromkeys(_sanitizer_findings))
        for path in sorted(glob.glob(os.path.join(self.sanitizer_dir, "report*"))):
            with open(path, errors="replace") as f:
                findings.append(f"{path}:\n{f.read()[:6000]}")
        report = sanitizer_report(self.agent_log())
        if report:
            findings.append(f"agent log:\n{report}")
        return findings

    def fail_on_sanitizer_findings(self):
        findings = [f for f in self.sanitizer_findings() if f not in self.sanitizer_reported]
        if findings:
            self.sanitizer_reported.update(findings)
            self.fail("a sanitizer reported an error (the test fails whatever exit "
                      "status it expected):\n" + "\n".join(findings))

    def tearDown(self):
        try:
            for process in self.processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            self.fail_on_sanitizer_findings()
        finally:
            if not os.environ.get("SQLPRODD_KEEP_TEST_DIR"):
                shutil.rmtree(self.dir, ignore_errors=True)

    def db_path(self, name="app"):
        return os.path.join(self.dir, name + ".db")

    def write_config(self, databases, defaults="", extra="", targets=""):
        text = textwrap.dedent(f"""\
            state_dir = "{self.state_dir}";
            log_level = "debug";
            defaults = {{
              backup = {{ dir = "{self.backup_dir}"; }};
              {defaults}
            }};
            targets = ( {targets} );
            databases = ( {databases} );
            {extra}
            """)
        with open(self.config_path, "w") as f:
            f.write(text)
        return self.config_path

    def run_cli(self, *args, check=None, env=None, timeout=300):
        environment = dict(os.environ)
        environment.pop("JOURNAL_STREAM", None)
        environment.pop("NOTIFY_SOCKET", None)
        if env:
            environment.update(env)
        result = subprocess.run([BIN, "-c", self.config_path, *args], capture_output=True,
                                text=True, env=environment, timeout=timeout)
        self.fail_on_sanitizer_findings()
        if check is not None:
            self.assertEqual(result.returncode, check,
                             f"sqlprodd {' '.join(args)} exited {result.returncode}\n"
                             f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def start_agent(self, env=None):
        environment = dict(os.environ)
        environment.pop("JOURNAL_STREAM", None)
        environment.pop("NOTIFY_SOCKET", None)
        if env:
            environment.update(env)
        log = open(os.path.join(self.dir, "agent.log"), "a")
        process = subprocess.Popen([BIN, "-c", self.config_path, "run"], stdout=log,
                                   stderr=subprocess.STDOUT, env=environment)
        self.processes.append(process)
        return process

    def agent_log(self):
        path = os.path.join(self.dir, "agent.log")
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return f.read()

    def wait_for(self, predicate, timeout=60, interval=0.1, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        self.fail(f"timed out after {timeout}s waiting for {what}\nagent log:\n{self.agent_log()}")

    def stop_agent(self, process, timeout=15):
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=timeout)
        return code, time.monotonic() - started

    def archives(self, name="app"):
        directory = os.path.join(self.backup_dir, name)
        if not os.path.isdir(directory):
            return []
        return sorted(f for f in os.listdir(directory) if f.endswith(".db.gz"))

    def status_json(self, *args):
        result = self.run_cli("status", "--json", *args, check=0)
        return json.loads(result.stdout)


# The S3 test server (tests/s3/server.js): its bucket and the only credentials it accepts.
ACCESS_KEY = "SQLPRODDTESTACCESSKEY"
SECRET_KEY = "sqlprodd/Test+Secret/Key0123456789abcdefXYZ"
BUCKET = "sqlprodd-test"
SERVER_DIR = os.path.join(SOURCE_DIR, "tests", "s3")


def find_aws():
    """Debian's aws CLI first: PATH may hold another (pyenv, pip)."""
    if os.access("/usr/bin/aws", os.X_OK):
        return "/usr/bin/aws"
    return shutil.which("aws")


class S3Server:
    """tests/s3/server.js on a given (or free) port of 127.0.0.1, restartable;
    `directory` keeps its objects there (bench/ reads them as files)."""

    def __init__(self, port=0, directory=None, allow_unsigned_payload=False, keep_alive_ms=None):
        argv = ["node", os.path.join(SERVER_DIR, "server.js"), "--port", str(port)]
        if directory:
            argv += ["--directory", directory]
        if allow_unsigned_payload:
            argv.append("--allow-unsigned-payload")
        if keep_alive_ms is not None:
            argv += ["--keep-alive-ms", str(keep_alive_ms)]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if "http://127.0.0.1:" not in line:
            self.stop()
            raise RuntimeError(f"the S3 test server did not start: {line!r}")
        self.url = line[line.index("http://"):].strip()

    def admin(self, what, method="GET", body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/__admin/{what}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            text = response.read()
        return json.loads(text) if text.strip() else None

    def requests(self):
        return self.admin("requests")

    def clear_requests(self):
        self.admin("requests", method="DELETE")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process.stdout.close()


@unittest.skipUnless(shutil.which("node"), "node is not installed: the S3 tests need Node.js 18+")
class S3TestCase(AgentTestCase):
    """An AgentTestCase with the S3 test server and Debian's aws CLI as the independent client."""

    aws_timeout = 300

    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(os.path.join(SERVER_DIR, "node_modules", "s3rver")):
            raise AssertionError(f"run 'npm ci --prefix {SERVER_DIR}' first")
        cls.aws = find_aws()
        if not cls.aws:
            raise AssertionError("the aws CLI is not installed (Debian package awscli)")

    def setUp(self):
        super().setUp()
        self.env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self.server = None

    def start_server(self, port=0):
        self.server = S3Server(port)
        self.addCleanup(self.server.stop)
        return self.server

    def s3_target(self, url, extra=""):
        """The "offsite" target on the server at url: path-style, 5 MB parts, keys under db/."""
        return (f'{{ name = "offsite"; type = "s3"; endpoint = "{url}"; '
                f'region = "us-east-1"; bucket = "{BUCKET}"; prefix = "db/"; '
                f'path_style = true; part_size = "5MB"; {extra} }}')

    def aws_cli(self, *args, check=True):
        """The aws CLI against self.server with only the test credentials in its environment."""
        environment = {key: value for key, value in os.environ.items()
                       if not key.startswith("AWS_")}
        environment.update({
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_PAGER": "",
            # Newer CLIs send CRC trailers (aws-chunked) that s3rver cannot read.
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        })
        result = subprocess.run([self.aws, "--endpoint-url", self.server.url, *args],
                                capture_output=True, text=True, env=environment,
                                timeout=self.aws_timeout)
        if check:
            self.assertEqual(result.returncode, 0, f"aws {' '.join(args)}: {result.stderr}")
        return result

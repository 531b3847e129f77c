"""Health verdicts on real databases made to be in each bad state, seen in
all four places an operator looks: `sqlprodd status` (text and --json), the
systemd STATUS line (a real NOTIFY_SOCKET), the Prometheus textfile (checked
with promtool) and the HTTP /health endpoint (with curl)."""
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import unittest
from decimal import ROUND_HALF_UP, Decimal

from harness import AgentTestCase, create_database
from test_agent import NotifySocket

LEVELS = {"healthy": 0, "degraded": 1, "unhealthy": 2}
PROMTOOL = shutil.which("promtool")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def format_size(size):
    """units_format_size(): "512 B", "4.2 MiB" (one decimal, half up)."""
    if size < 1024:
        return f"{size} B"
    value = Decimal(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)} {unit}"


def parse_metrics(text):
    """{(name, frozenset(labels)): value} from the exposition text."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        assert match, f"unparsable metrics line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def parse_status_text(text):
    """The table rows by database, and the reasons listed under the table."""
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("DATABASE"))
    columns = ["DATABASE", "HEALTH", "SIZE", "WAL", "LAST BACKUP", "LAST UPLOAD", "NEXT JOB",
               "LAST ERROR"]
    starts = [lines[header].index(c) for c in columns]
    rows, reasons, current = {}, {}, None
    for line in lines[header + 1:]:
        if not line.strip():
            current = None
            continue
        match = re.match(r"^(\S+) is (\w+):$", line)
        if match:
            current = match.group(1)
            reasons[current] = []
        elif current and line.startswith("  - "):
            reasons[current].append(line[4:])
        elif current is None and not reasons:
            # SIZE and WAL are right-aligned: cut by the start of the next column.
            name, health = line.split()[:2]
            size_wal = line[len(line.split(health, 1)[0]) + len(health):starts[4]].split()
            rows[name] = {"health": health, "size": " ".join(size_wal[:2]),
                          "wal": " ".join(size_wal[2:]),
                          "backup": line[starts[4]:starts[5]].strip(),
                          "upload": line[starts[5]:starts[6]].strip(),
                          "next": line[starts[6]:starts[7]].strip(),
                          "error": line[starts[7]:].strip()}
    return rows, reasons


class DrainedNotifySocket(NotifySocket):
    """A notify socket read all the time, as systemd reads it: a unix
    datagram queue left full would block the agent's sd_notify()."""

    def __init__(self, directory):
        super().__init__(directory)
        self.lock = threading.Lock()
        self.closing = False
        self.thread = threading.Thread(target=self.drain, daemon=True)
        self.thread.start()

    def drain(self):
        while not self.closing:
            try:
                data = self.sock.recv(65536).decode()
            except (socket.timeout, OSError):
                continue
            message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            with self.lock:
                self.messages.append(message)

    def receive(self, timeout=10, until=None):
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            with self.lock:
                fresh = self.messages[seen:]
                seen = len(self.messages)
            for message in fresh:
                if until is None or until(message):
                    return message
            time.sleep(0.05)
        return None

    def latest(self):
        """Messages already received count: the line may not change again."""
        with self.lock:
            return list(self.messages)

    def close(self):
        self.closing = True
        self.thread.join(timeout=5)
        super().close()


class HealthTestCase(AgentTestCase):
    """An agent with every reporting channel on: notify socket, textfile, HTTP."""

    def setUp(self):
        super().setUp()
        self.notify = DrainedNotifySocket(self.dir)
        self.port = free_port()
        self.textfile = os.path.join(self.dir, "metrics", "sqlprodd.prom")
        os.makedirs(os.path.dirname(self.textfile))

    def tearDown(self):
        self.notify.close()
        super().tearDown()

    def configure(self, databases, defaults="", listen=True):
        listen_line = f'listen = "127.0.0.1:{self.port}";' if listen else ""
        self.write_config(
            databases,
            defaults='health = { every = "1s"; };\n'
                     'checkpoint = { every = "1h"; }; vacuum = { enabled = false; };\n'
                     'analyze = { enabled = false; };\n' + defaults,
            extra=f'metrics = {{ textfile = "{self.textfile}"; {listen_line} }};')

    def start(self):
        agent = self.start_agent(env={"NOTIFY_SOCKET": self.notify.path})
        self.notify.receive(timeout=15, until=lambda m: m.get("READY") == "1")
        return agent

    def entry(self, name, path=None, extra=""):
        return f'{{ name = "{name}"; path = "{path or self.db_path(name)}"; {extra} }}'

    def database_status(self, name):
        for database in self.status_json()["databases"]:
            if database["name"] == name:
                return database
        self.fail(f"{name} not in status --json")

    def wait_health(self, name, word, timeout=30):
        return self.wait_for(lambda: self.database_status(name)["health"] == word, timeout=timeout,
                             what=f"{name} to be {word}")

    def textfile_samples(self):
        with open(self.textfile) as f:
            return parse_metrics(f.read())

    def curl(self, path, *args):
        """(status code, content type, body) of one request, with curl."""
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code} %{content_type}",
             *args, f"http://127.0.0.1:{self.port}{path}"],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        body, _, trailer = result.stdout.rpartition("\n")
        code, _, content_type = trailer.partition(" ")
        return int(code), content_type, body

    def check_status_json_against_text(self):
        """status --json holds the data the table shows, row by row."""
        # The table and --json are two commands. A job that is due every
        # second can run between them and start its next cycle, so the two
        # are compared only when --json read just before and just after the
        # table shows every job in one and the same cycle.
        for _ in range(10):
            before = {d["name"]: d["next_job"] for d in self.status_json()["databases"]}
            text = self.run_cli("status", check=0).stdout
            data = self.status_json()
            if all((before.get(d["name"]) or {}).get("next_due") ==
                   (d["next_job"] or {}).get("next_due") for d in data["databases"]):
                break
        else:
            self.fail("status and --json were never read within one job cycle in 10 tries")
        rows, reasons = parse_status_text(text)
        self.assertEqual(set(rows), {d["name"] for d in data["databases"]}, text)
        for database in data["databases"]:
            row = rows[database["name"]]
            self.assertEqual(row["health"], database["health"], text)
            self.assertEqual(row["size"], format_size(database["size_bytes"]), text)
            self.assertEqual(row["wal"], format_size(database["wal_bytes"]), text)
            if database["last_backup"]:
                self.assertIn(format_size(database["last_backup"]["bytes"]), row["backup"])
            else:
                self.assertEqual(row["backup"], "never")
            if database["next_job"]:
                # "in 5m", "due now" or "overdue since ...", as --json says. In
                # one cycle a due time may be reached between the commands (seen
                # under ASan on a loaded machine), so the table's word lies
                # between the two --json readings, never outside them.
                word = {"later": " in ", "now": " due now", "overdue": " overdue since "}
                order = ["later", "now", "overdue"]
                json_due = database["next_job"]["due"]
                before_due = before[database["name"]]["due"]
                text_due = next((due for due in order
                                 if row["next"].startswith(database["next_job"]["job"] +
                                                           word[due])), None)
                self.assertIsNotNone(text_due, (row, database["next_job"]))
                self.assertLessEqual(order.index(before_due), order.index(text_due),
                                     (row, before[database["name"]]))
                self.assertLessEqual(order.index(text_due), order.index(json_due),
                                     (row, database["next_job"]))
            if database["last_error"]:
                self.assertTrue(row["error"].startswith(database["last_error"]["job"] + ": "), row)
                self.assertIn(database["last_error"]["message"][:60], row["error"])
            else:
                self.assertEqual(row["error"], "-")
            self.assertEqual(reasons.get(database["name"], []), database["reasons_list"], text)
            self.assertEqual("; ".join(database["reasons_list"]), database["reasons"])
        return rows, reasons, data

    def assert_everywhere(self, name, word, fragments, database_count=1):
        """The verdict `word` for `name`, with every fragment (reason and
        fix) in its reasons, in status, STATUS=, metrics and /health."""
        # 1. status: text and --json, and the two agree.
        rows, reasons, data = self.check_status_json_against_text()
        self.assertEqual(rows[name]["health"], word)
        database = next(d for d in data["databases"] if d["name"] == name)
        self.assertEqual(database["health"], word)
        for fragment in fragments:
            self.assertRegex(database["reasons"], fragment)
            self.assertRegex("\n".join(reasons.get(name, [])), fragment)
        if word == "healthy":
            self.assertEqual(database["reasons_list"], [])

        # 2. systemd STATUS= line (summary.c) counts the verdict.
        counts = {}
        for d in data["databases"]:
            counts[d["health"]] = counts.get(d["health"], 0) + 1
        expected = f"{database_count} database{'s' if database_count > 1 else ''}: " \
                   f"{counts.get('healthy', 0)} healthy"
        for level in ("degraded", "unhealthy"):
            if counts.get(level):
                expected += f", {counts[level]} {level}"
        def latest_status():
            statuses = [m["STATUS"] for m in self.notify.latest() if "STATUS" in m]
            return statuses[-1] if statuses else ""
        # ... and names the worst database with its first reason.
        if word != "healthy" and LEVELS[word] == max(LEVELS.get(d["health"], 0)
                                                     for d in data["databases"]):
            expected += f" ({name} {word}: "
        else:
            expected += " |"
        self.wait_for(lambda: latest_status().startswith(expected), timeout=15,
                      what=f"STATUS= starting {expected!r} (last: {latest_status()!r})")

        # 3. metrics textfile: valid for promtool, and the verdict as a number.
        # The loop sends STATUS= just before it rewrites the file: wait for it.
        key = ("sqlprodd_health", frozenset({("database", name)}))
        self.wait_for(lambda: self.textfile_samples().get(key) == LEVELS[word], timeout=15,
                      what=f"sqlprodd_health for {name} = {LEVELS[word]} in the textfile")
        with open(self.textfile) as f:
            text = f.read()
        if PROMTOOL:
            check = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                                   capture_output=True, text=True)
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

        # 4. HTTP: 200 for healthy and degraded, 503 for unhealthy, JSON.
        code, content_type, body = self.curl(f"/health/{name}")
        self.assertEqual(code, 503 if word == "unhealthy" else 200, body)
        self.assertEqual(content_type, "application/json")
        answer = json.loads(body)
        self.assertEqual(answer["status"], word)
        self.assertEqual(answer["databases"][0]["health"], word)
        self.assertEqual(answer["databases"][0]["reasons"], database["reasons_list"])
        code, _, body = self.curl("/health")
        self.assertEqual(code, 503 if "unhealthy" in counts else 200, body)


@unittest.skipUnless(shutil.which("curl"), "curl is needed")
class HealthVerdictTest(HealthTestCase):
    def test_healthy_database_is_healthy_everywhere(self):
        create_database(self.db_path(), rows=200)
        self.configure(self.entry("app"))
        self.start()
        self.wait_health("app", "healthy")
        self.assert_everywhere("app", "healthy", [])
        data = self.database_status("app")
        self.assertEqual(data["journal_mode"], "wal")
        self.assertIsNotNone(data["integrity_checked_at"], "the first check is a full one")

    def test_large_wal_held_open_by_a_reader_is_degraded_then_recovers(self):
        path = self.db_path()
        create_database(path, rows=100)
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM items").fetchone()  # holds a snapshot
        writer = sqlite3.connect(path, isolation_level=None)
        for _ in range(20):
            writer.execute("INSERT INTO items (name) SELECT name FROM items LIMIT 100")
        writer.close()
        self.assertGreater(os.path.getsize(path + "-wal"), 64 * 1024)

        self.configure(self.entry("app", extra='health = { wal_warn = "64KB"; };'))
        self.start()
        self.wait_health("app", "degraded")
        self.assert_everywhere("app", "degraded", [r"WAL is [\d.]+ KiB \(warning at 64\.0 KiB\)",
                                                   r"fuser", r"sqlprodd -c \S+ checkpoint app"])
        # The fix works: end the read, checkpoint, and the verdict clears.
        reader.execute("COMMIT")
        reader.close()
        self.run_cli("checkpoint", "app", check=0)
        self.wait_health("app", "healthy")
        self.assert_everywhere("app", "healthy", [])

    def test_fragmented_file_is_degraded_with_vacuum_advice(self):
        path = self.db_path()
        create_database(path, rows=4000)
        db = sqlite3.connect(path)
        with db:
            db.execute("DELETE FROM items WHERE id % 10 != 0")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        free, pages = (db.execute("PRAGMA freelist_count").fetchone()[0],
                       db.execute("PRAGMA page_count").fetchone()[0])
        db.close()
        self.assertGreater(free / pages, 0.3)
        self.configure(self.entry(
            "app", extra='health = { freelist_warn = 0.3; freelist_crit = 0.95; };'))
        self.start()
        self.wait_health("app", "degraded")
        self.assert_everywhere("app", "degraded", [r"freelist is \d+% of the file",
                                                   r"auto_vacuum is none", r"VACUUM",
                                                   r'enforce = \{ auto_vacuum = "incremental"; \}'])
        ratio = self.database_status("app")["freelist_ratio"]
        self.assertAlmostEqual(ratio, free / pages, places=3)
        samples = self.textfile_samples()
        self.assertAlmostEqual(samples[("sqlprodd_freelist_ratio", frozenset({("database", "app")}))],
                               free / pages, places=3)

    def test_rollback_journal_database_is_degraded_and_left_alone(self):
        create_database(self.db_path(), rows=200, wal=False)
        self.configure(self.entry("app"))
        self.start()
        self.wait_health("app", "degraded")
        self.assert_everywhere("app", "degraded", [r"journal_mode is delete",
                                                   r"PRAGMA journal_mode=WAL"])
        db = sqlite3.connect(self.db_path())
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "delete",
                         "without enforce, a deviation is only reported")
        db.close()
        samples = self.textfile_samples()
        self.assertEqual(samples[("sqlprodd_database_info", frozenset(
            {("database", "app"), ("journal_mode", "delete"), ("auto_vacuum", "none")}))], 1)

    def test_overdue_backup_goes_degraded_then_unhealthy(self):
        create_database(self.db_path(), rows=200)
        self.configure(self.entry("app", extra='backup = { every = "2s"; };'))
        self.run_cli("backup", "app", check=0)
        # The backup directory becomes unusable: every later backup fails.
        shutil.move(self.backup_dir, self.backup_dir + ".moved")
        open(self.backup_dir, "w").close()
        self.start()
        self.wait_health("app", "degraded")
        self.assertRegex(self.database_status("app")["reasons"], r"backup")
        self.wait_health("app", "unhealthy")
        self.assert_everywhere("app", "unhealthy", [r"last good backup at \d\d:\d\d:\d\d UTC "
                                                    r"\(\d+s before this check\), over 4x its 2s "
                                                    r"interval \(last error: ",
                                                    r"sqlprodd -c \S+ backup app"])

    def test_corrupted_copy_is_unhealthy_and_the_good_one_is_not(self):
        good = self.db_path("app")
        create_database(good, rows=3000)
        copy = self.db_path("copy")
        shutil.copy(good, copy)
        db = sqlite3.connect(copy)
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'items'").fetchone()[0]
        db.close()
        with open(copy, "r+b") as f:  # flip the bytes of the table's root page header
            f.seek((root - 1) * page_size)
            header = bytearray(f.read(64))
            f.seek((root - 1) * page_size)
            f.write(bytes(b ^ 0xFF for b in header))
        self.configure(self.entry("app") + ", " + self.entry("copy", path=copy))
        self.start()
        self.wait_health("copy", "unhealthy")
        self.wait_health("app", "healthy")
        self.assert_everywhere("copy", "unhealthy", [r"corrupt", r"sqlprodd -c \S+ restore copy --to "],
                               database_count=2)
        code, _, body = self.curl("/health/app")
        self.assertEqual(code, 200, "one corrupt database does not fail the other's check")
        code, _, _ = self.curl("/health/nosuch")
        self.assertEqual(code, 404)

    def test_enforce_switches_to_wal_and_incremental_once_and_says_how_long(self):
        path = self.db_path()
        create_database(path, rows=3000, wal=False)
        db = sqlite3.connect(path)
        with db:
            db.execute("DELETE FROM items WHERE id % 2 = 0")
        db.close()
        self.configure(self.entry(
            "app", extra='enforce = { journal_mode = "wal"; auto_vacuum = "incremental"; };'))
        self.start()
        self.wait_health("app", "healthy")
        db = sqlite3.connect(path)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(db.execute("PRAGMA auto_vacuum").fetchone()[0], 2)
        self.assertEqual(db.execute("PRAGMA freelist_count").fetchone()[0], 0)
        db.close()
        log = self.agent_log()
        self.assertRegex(log, r"auto_vacuum changed from none to incremental with a VACUUM that "
                              r"took \d+\.\ds, journal_mode changed from delete to wal")
        self.assertEqual(len(re.findall(r"VACUUM that took", log)), 1, "applied once")
        self.wait_for(lambda: self.database_status("app")["jobs"]["health"]["runs_total"] >= 3,
                      what="more health runs")
        self.assertEqual(len(re.findall(r"VACUUM that took", self.agent_log())), 1)
        self.assert_everywhere("app", "healthy", [])

    def test_bad_enforce_value_is_a_configuration_error(self):
        create_database(self.db_path(), rows=10)
        self.configure(self.entry("app", extra='enforce = { auto_vacuum = "sometimes"; '
                                               'synchronous = "normal"; };'))
        result = self.run_cli("check", check=2)
        self.assertRegex(result.stderr + result.stdout, r"sqlprodd\.conf:\d+: "
                                                        r"databases\.app\.enforce\.auto_vacuum")
        self.assertRegex(result.stderr + result.stdout, r"databases\.app\.enforce\.synchronous")


if __name__ == "__main__":
    unittest.main()

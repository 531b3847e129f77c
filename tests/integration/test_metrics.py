"""Prometheus metrics: the textfile for node_exporter (checked with promtool)
and the HTTP endpoint (curl), including a request flood and malformed
requests that must not hurt the agent."""
import os
import re
import shutil
import socket
import subprocess
import time
import unittest

from harness import BIN, create_database
from test_health import PROMTOOL, HealthTestCase, parse_metrics

SPEC_FAMILIES = {
    "sqlprodd_job_last_success_timestamp_seconds": "gauge",
    "sqlprodd_job_last_duration_seconds": "gauge",
    "sqlprodd_job_runs_total": "counter",
    "sqlprodd_job_failures_total": "counter",
    "sqlprodd_database_size_bytes": "gauge",
    "sqlprodd_wal_size_bytes": "gauge",
    "sqlprodd_freelist_ratio": "gauge",
    "sqlprodd_health": "gauge",
    "sqlprodd_backup_last_size_bytes": "gauge",
    "sqlprodd_upload_pending": "gauge",
}


def families(text):
    """{name: (help, type)} from the HELP and TYPE lines."""
    helps = dict(re.findall(r"^# HELP (\S+) (.+)$", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    return {name: (helps.get(name), types.get(name)) for name in set(helps) | set(types)}


@unittest.skipUnless(shutil.which("curl"), "curl is needed")
class MetricsTest(HealthTestCase):
    def setUp(self):
        super().setUp()
        create_database(self.db_path("app"), rows=500)
        create_database(self.db_path("old.v2"), rows=100, wal=False)

    def configure_two(self, listen=True):
        self.configure(self.entry("app", extra='checkpoint = { every = "1s"; };') + ", " +
                       self.entry("old.v2"), listen=listen)

    def promtool_ok(self, text):
        if not PROMTOOL:
            self.skipTest("promtool (Debian package prometheus) is not installed")
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                               text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertEqual(check.stdout.strip(), "", "promtool has no lint warnings")

    def test_textfile_passes_promtool_and_matches_the_state(self):
        self.configure_two(listen=False)
        agent = self.start()
        self.wait_health("old.v2", "degraded")
        self.wait_health("app", "healthy")
        code, _ = self.stop_agent(agent)
        self.assertEqual(code, 0)
        with open(self.textfile) as f:
            text = f.read()
        self.promtool_ok(text)
        found = families(text)
        for name, kind in SPEC_FAMILIES.items():
            self.assertEqual(found.get(name, (None, None))[1], kind, name)
            self.assertTrue(found[name][0], f"{name} has a HELP line")
        for name, (_, kind) in found.items():
            self.assertEqual(kind == "counter", name.endswith("_total"), name)
        samples = parse_metrics(text)
        status = {d["name"]: d for d in self.status_json()["databases"]}
        for name in ("app", "old.v2"):
            labels = frozenset({("database", name)})
            self.assertEqual(samples[("sqlprodd_health", labels)],
                             {"healthy": 0, "degraded": 1}[status[name]["health"]])
            for job in ("checkpoint", "backup", "health"):
                job_labels = frozenset({("database", name), ("job", job)})
                self.assertEqual(samples[("sqlprodd_job_runs_total", job_labels)],
                                 status[name]["jobs"][job]["runs_total"], f"{name} {job}")
            self.assertEqual(samples[("sqlprodd_backup_last_size_bytes", labels)],
                             status[name]["backup_last_bytes"])
            self.assertEqual(samples[("sqlprodd_database_page_size_bytes", labels)], 4096)
            self.assertEqual(samples[("sqlprodd_upload_pending", labels)], 0)
            self.assertGreater(samples[("sqlprodd_health_check_timestamp_seconds", labels)],
                               time.time() - 60)
        self.assertEqual(samples[("sqlprodd_database_size_bytes",
                                  frozenset({("database", "app")}))],
                         os.path.getsize(self.db_path("app")))
        self.assertIn(("sqlprodd_build_info", frozenset({("version", "0.1.0")})), samples)
        # Written atomically: the collector's directory holds the file alone.
        self.assertEqual(os.listdir(os.path.dirname(self.textfile)), ["sqlprodd.prom"])
        self.assertEqual(os.stat(self.textfile).st_mode & 0o777, 0o644)

    def test_one_off_jobs_rewrite_the_textfile_without_the_agent(self):
        self.configure_two(listen=False)
        backup = frozenset({("database", "app"), ("job", "backup")})
        for runs in (1, 2):
            time.sleep(1.05 if runs > 1 else 0)  # archive names have a 1 s resolution
            result = self.run_cli("backup", "app", check=0)
            self.assertNotIn("warning", result.stderr)
            with open(self.textfile) as f:
                text = f.read()
            self.promtool_ok(text)
            samples = parse_metrics(text)
            self.assertEqual(samples[("sqlprodd_job_runs_total", backup)], runs)
            self.assertEqual(samples[("sqlprodd_backup_last_size_bytes",
                                      frozenset({("database", "app")}))],
                             self.database_status("app")["backup_last_bytes"])
        self.run_cli("checkpoint", check=0)  # every database, one rewrite
        samples = self.textfile_samples()
        for name in ("app", "old.v2"):
            self.assertEqual(samples[("sqlprodd_job_runs_total",
                                      frozenset({("database", name), ("job", "checkpoint")}))], 1)
        self.assertEqual(os.listdir(os.path.dirname(self.textfile)), ["sqlprodd.prom"])
        self.assertEqual(os.stat(self.textfile).st_mode & 0o777, 0o644)

    def test_one_off_jobs_running_at_once_each_leave_a_whole_textfile(self):
        # Writers share one temp name: without taking turns, one renames
        # another's half-written file into place or finds its temp gone.
        names = [f"db{i}" for i in range(8)]
        for name in names:
            create_database(self.db_path(name), rows=10)
        self.configure(", ".join(self.entry(name) for name in names), listen=False)
        self.run_cli("checkpoint", names[0], check=0)  # creates the state database first
        for _ in range(3):
            runs = [subprocess.Popen([BIN, "-c", self.config_path, "checkpoint", name],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for name in names for _ in range(3)]
            for run in runs:
                _, stderr = run.communicate(timeout=60)
                self.assertEqual(run.returncode, 0, stderr)
                self.assertNotIn("sqlprodd: warning:", stderr)
            with open(self.textfile) as f:
                self.promtool_ok(f.read())
            self.assertEqual(os.listdir(os.path.dirname(self.textfile)), ["sqlprodd.prom"])

    def test_a_missing_textfile_directory_is_named_and_the_job_still_counts(self):
        self.configure_two(listen=False)
        directory = os.path.dirname(self.textfile)
        shutil.rmtree(directory)
        result = self.run_cli("backup", "app", check=0)
        self.assertIn(f"the directory {directory} does not exist: create it (mkdir -p "
                      f"{directory})", result.stderr)
        self.assertIn(self.config_path, result.stderr)
        self.assertEqual(self.database_status("app")["jobs"]["backup"]["runs_total"], 1)
        self.assertFalse(os.path.exists(directory), "the directory is the operator's to create")
        # A file where the directory should be.
        with open(directory, "w") as f:
            f.write("not a directory\n")
        result = self.run_cli("checkpoint", "app", check=0)
        self.assertIn(f"{directory} is not a directory", result.stderr)

    def test_http_endpoint_serves_metrics_and_health_and_refuses_the_rest(self):
        self.configure_two()
        self.start()
        self.wait_health("old.v2", "degraded")
        code, content_type, body = self.curl("/metrics")
        self.assertEqual(code, 200)
        self.assertEqual(content_type, "text/plain; version=0.0.4; charset=utf-8")
        self.promtool_ok(body)
        self.assertIn('sqlprodd_health{database="old.v2"} 1', body)

        code, content_type, body = self.curl("/health")
        self.assertEqual((code, content_type), (200, "application/json"), body)
        code, _, body = self.curl("/metrics", "-I")  # HEAD: headers, no body
        self.assertEqual(code, 200)
        self.assertNotIn("sqlprodd_health", body)
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            code, _, _ = self.curl("/metrics", "-X", method, "--data", "x=1")
            self.assertEqual(code, 405, method)
        result = subprocess.run(["curl", "-si", "-X", "POST", "--data", "x",
                                 f"http://127.0.0.1:{self.port}/health"],
                                capture_output=True, text=True, timeout=30)
        self.assertRegex(result.stdout, r"(?im)^Allow: GET, HEAD\r?$")
        for path in ("/", "/metricsx", "/health/", "/../etc/passwd", "/health/nosuch"):
            code, _, _ = self.curl(path, "--path-as-is")
            self.assertEqual(code, 404, path)

    def test_flood_and_malformed_requests_do_not_hurt_the_agent(self):
        self.configure_two()
        agent = self.start()
        self.wait_health("app", "healthy")

        # Idle connections that never send a full request (slowloris).
        idle = []
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", self.port))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            idle.append(s)
        code, _, _ = self.curl("/health")
        self.assertEqual(code, 200, "answers while idle clients hold connections")

        # Malformed requests: each gets an error or a closed connection, nothing
        # more; one that never forms a request line is dropped at the 10 s timeout.
        for raw in (b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"\x00\xff\x13\x37" * 64 + b"\r\n\r\n",
                    b"GET /metrics HTTP/9.9\r\n\r\n",
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n",
                    b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n",
                    b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nxx"):
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", self.port), timeout=20) as s:
                try:
                    s.sendall(raw)
                    answer = s.recv(4096)
                except (ConnectionResetError, BrokenPipeError):
                    answer = b""
            self.assertLess(time.monotonic() - started, 15, raw[:40])
            if answer:
                    self.assertRegex(answer, rb"^HTTP/1\.[01] [45]\d\d ", raw[:40])

        # A flood of 500 requests, 50 at a time.
        urls = os.path.join(self.dir, "flood.curl")
        with open(urls, "w") as f:
            for i in range(500):
                f.write(f'url = "http://127.0.0.1:{self.port}/{"metrics" if i % 2 else "health"}"\n'
                        f'output = "/dev/null"\n')
        result = subprocess.run(["curl", "-s", "--parallel", "--parallel-max", "50", "-K", urls,
                                 "-w", "%{http_code}\n"], capture_output=True, text=True,
                                timeout=120)
        codes = result.stdout.split()
        self.assertEqual(len(codes), 500)
        self.assertGreaterEqual(codes.count("200"), 450, "connection limit may refuse a few")
        for s in idle:
            s.close()

        # The agent is fine: alive, still serving, still running its jobs.
        self.assertIsNone(agent.poll())
        runs = self.database_status("app")["jobs"]["checkpoint"]["runs_total"]
        self.wait_for(lambda: self.database_status("app")["jobs"]["checkpoint"]["runs_total"]
                      > runs + 1, timeout=20, what="checkpoints keep running")
        code, _, body = self.curl("/metrics")
        self.assertEqual(code, 200)
        self.promtool_ok(body)
        code, elapsed = self.stop_agent(agent)
        self.assertEqual(code, 0)
        self.assertLess(elapsed, 10)

    def test_endpoint_is_off_by_default_and_a_busy_port_is_not_fatal(self):
        self.configure_two(listen=False)
        agent = self.start()
        self.wait_health("app", "healthy")
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
        self.stop_agent(agent)

        blocker = socket.socket()
        blocker.bind(("127.0.0.1", self.port))
        blocker.listen()
        try:
            self.configure_two()
            agent = self.start()
            self.wait_for(lambda: "cannot listen on 127.0.0.1" in self.agent_log(), timeout=15,
                          what="the bind error in the log")
            self.wait_for(lambda: self.database_status("app")["jobs"]["health"]["runs_total"] >= 3,
                          what="health runs without the endpoint")
            self.assertIsNone(agent.poll())
        finally:
            blocker.close()


if __name__ == "__main__":
    unittest.main()

"""The fleet's monitoring files (monitoring/): the Prometheus alerting rules
pass `promtool check rules` and their own unit tests, and every metric the
rules and the Grafana dashboard query is one the agent really exports, with
the labels they select on. A dashboard panel on a misspelt or removed metric
shows "No data" forever; an alert on one never fires."""
import json
import os
import re
import subprocess
import unittest
import urllib.request

from harness import SOURCE_DIR
from test_health import PROMTOOL, HealthTestCase

MONITORING = os.path.join(SOURCE_DIR, "monitoring")
RULES = os.path.join(MONITORING, "sqlprodd.rules.yml")
RULES_TESTS = os.path.join(MONITORING, "sqlprodd.rules.test.yml")
DASHBOARD = os.path.join(MONITORING, "sqlprodd.grafana.json")
# Labels Prometheus adds to every scraped series, not the agent.
TARGET_LABELS = {"instance"}

METRIC = re.compile(r"\b(sqlprodd_[a-z0-9_]+)\b(\{[^}]*\})?")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def rule_expressions(path):
    """The expr: of each rule (a one-line YAML scalar in our file)."""
    with open(path) as f:
        return re.findall(r"^\s+expr:\s*(.+?)\s*$", f.read(), re.M)


def dashboard_expressions(path):
    with open(path) as f:
        dashboard = json.load(f)
    expressions = []
    for panel in dashboard["panels"]:
        targets = panel.get("targets") or []
        if not targets:
            raise AssertionError(f"panel '{panel['title']}' queries nothing")
        expressions += [(panel["title"], target["expr"]) for target in targets]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            expressions.append((f"variable ${variable['name']}", variable["definition"]))
    return expressions


def exported(text):
    """{metric name: set of label names} of the samples in an exposition."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match.group(3) or ""))
        series.setdefault(match.group(1), set()).update(labels)
    return series


class MonitoringTest(HealthTestCase):
    def test_rules_pass_promtool_check_and_their_unit_tests(self):
        if not PROMTOOL:
            self.skipTest("promtool (Debian package prometheus) is not installed")
        check = subprocess.run([PROMTOOL, "check", "rules", RULES], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        # The unit tests name the rules file relative to themselves.
        tests = subprocess.run([PROMTOOL, "test", "rules", os.path.basename(RULES_TESTS)],
                               capture_output=True, text=True, cwd=MONITORING)
        self.assertEqual(tests.returncode, 0, tests.stdout + tests.stderr)
        self.assertIn("SUCCESS", tests.stdout)
        # Each alert of the rules file has a unit test.
        with open(RULES) as f:
            alerts = set(re.findall(r"^\s+- alert:\s*(\S+)", f.read(), re.M))
        with open(RULES_TESTS) as f:
            tested = set(re.findall(r"^\s+alertname:\s*(\S+)", f.read(), re.M))
        self.assertEqual(alerts - tested, set(), "alerts without a promtool unit test")
        self.assertGreaterEqual(alerts, {"SqlproddBackupStale", "SqlproddUploadBacklog",
                                         "SqlproddDatabaseUnhealthy", "SqlproddAgentSilent"})

    def scrape_running_agent(self):
        """The agent's /metrics once each kind of job has run on a database
        with a dir target: every family then has samples."""
        nas = os.path.join(self.dir, "nas")
        os.makedirs(nas)
        from harness import create_database
        create_database(self.db_path("app"), rows=300)
        self.write_config(
            self.entry("app"),
            defaults='health = { every = "1s"; };\n'
                     'upload = { target = "nas"; every = "1s"; };\n'
                     'replicate = { target = "nas"; interval = "1s"; };\n',
            targets=f'{{ name = "nas"; type = "dir"; path = "{nas}"; }}',
            extra=f'metrics = {{ textfile = "{self.textfile}"; listen = "127.0.0.1:{self.port}"; }};')
        for job in ("checkpoint", "analyze", "vacuum", "backup", "upload", "prune", "health"):
            self.run_cli(job, "app")  # a failed vacuum (no auto_vacuum) is a sample too
        agent = self.start()
        self.wait_health("app", "healthy")

        def scrape():
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                        timeout=10) as reply:
                return reply.read().decode()
        # The replication families have samples once a first base is shipped.
        self.wait_for(lambda: 'sqlprodd_replicate_spool_bytes{database="app"}' in scrape(),
                      what="the replication metrics")
        text = scrape()
        self.stop_agent(agent)
        return exported(text)

    def test_every_metric_of_the_rules_and_the_dashboard_is_exported(self):
        series = self.scrape_running_agent()
        queried = [("rule", expression) for expression in rule_expressions(RULES)]
        queried += dashboard_expressions(DASHBOARD)
        self.assertGreater(len(queried), 10)
        problems = []
        for where, expression in queried:
            metrics = METRIC.findall(expression)
            if not metrics:
                problems.append(f"{where}: '{expression}' queries no sqlprodd metric")
            for name, selector in metrics:
                if name not in series:
                    problems.append(f"{where}: '{name}' is not exported by the agent")
                    continue
                for label in MATCHER_LABEL.findall(selector or ""):
                    if label not in series[name] | TARGET_LABELS:
                        problems.append(f"{where}: {name} has no label '{label}' "
                                        f"(it has {sorted(series[name])})")
        self.assertEqual(problems, [], "\n".join(problems))


if __name__ == "__main__":
    unittest.main()

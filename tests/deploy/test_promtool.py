"""Prometheus and Alertmanager configuration: promtool / amtool checks and rule-file hygiene.

promtool, amtool and prometheus-alertmanager come from Debian's `prometheus` and
`prometheus-alertmanager` packages (./cx installs them); tests skip only if a binary is missing.
"""

import json
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from deploy_support import DEPLOY, REPO, metric_problems, need, run

PROMETHEUS = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"

RECEIVER_FOR_SEVERITY = {"critical": "cx-pager", "warning": "cx-ticket"}


def load_groups() -> list[dict]:
    groups = []
    for path in RULE_FILES:
        groups.extend(yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    return groups


def all_rules() -> list[dict]:
    return [rule for group in load_groups() for rule in group["rules"]]


def alert_rules() -> list[dict]:
    return [rule for rule in all_rules() if "alert" in rule]


def recording_rules() -> list[dict]:
    return [rule for rule in all_rules() if "record" in rule]


def load_tests() -> list[tuple[Path, dict]]:
    return [(path, yaml.safe_load(path.read_text(encoding="utf-8"))) for path in TEST_FILES]


# --- the tools --------------------------------------------------------------------------------
def test_shipped_files_exist():
    assert (PROMETHEUS / "prometheus.yml").is_file()
    assert [p.name for p in RULE_FILES] == ["cx-alerts.yml", "cx-recording.yml"]
    assert TEST_FILES, "no promtool unit tests in deploy/prometheus/tests/"
    assert ALERTMANAGER_CONFIG.is_file()


def test_promtool_check_config():
    result = run(need("promtool"), "check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules():
    result = run(need("promtool"), "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests():
    result = run(need("promtool"), "test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_amtool_check_config():
    result = run(need("amtool"), "check-config", ALERTMANAGER_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_routes_to_receiver_of_its_severity(rule):
    severity = rule["labels"]["severity"]
    labels = [f"alertname={rule['alert']}", f"severity={severity}", "channel=email"]
    result = run(
        need("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={RECEIVER_FOR_SEVERITY[severity]}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- hygiene of the rule files ----------------------------------------------------------------
def test_rule_names_are_unique():
    names = [rule.get("alert") or rule["record"] for rule in all_rules()]
    assert len(names) == len(set(names))
    groups = [group["name"] for group in load_groups()]
    assert len(groups) == len(set(groups))


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_severity_and_runbook(rule):
    assert rule["labels"]["severity"] in RECEIVER_FOR_SEVERITY
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook"):
        assert annotations.get(key, "").strip(), f"{rule['alert']}: missing annotation {key}"
    assert rule.get("for"), f"{rule['alert']}: no `for:`, it would fire on a single evaluation"


def test_ttr_alerts_as_specified():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    high = rules["CXTicketResolutionTimeHigh"]
    assert "cx:ttr_seconds_by_channel:p90_15m > 28800" in high["expr"]
    assert high["for"] == "10m" and high["labels"]["severity"] == "critical"
    spike = rules["CXTicketResolutionTimeSpike"]
    assert "> 2 * cx:ttr_seconds_by_channel:p90_24h" in spike["expr"]
    assert "cx:ticket_resolutions_by_channel:increase15m >=" in spike["expr"]
    assert spike["for"] == "10m" and spike["labels"]["severity"] == "warning"


def test_runbooks_point_at_first_places_to_look():
    runbooks = {rule["alert"]: rule["annotations"]["runbook"] for rule in alert_rules()}
    assert "cx.dead-letter" in runbooks["CXPipelineDeadLetterRateHigh"]
    assert "cx.error.reason" in runbooks["CXPipelineDeadLetterRateHigh"]
    assert "logs" in runbooks["CXPipelineWorkerDown"]
    assert "Consumer lag" in runbooks["CXPipelineConsumerLagGrowing"]
    for name, text in runbooks.items():
        assert '"CX overview"' in text or "logs" in text, name


def test_rules_read_known_metrics_and_deduplicate_whole_shop_ones(contract_metrics):
    problems = []
    for rule in all_rules():
        name = rule.get("alert") or rule["record"]
        problems += [f"{name}: {p}" for p in metric_problems(rule["expr"], contract_metrics)]
    assert not problems, "\n".join(problems)


def test_worker_job_name_matches_scrape_config():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    for rule in all_rules():
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in jobs, f"{rule.get('alert') or rule['record']} selects unknown job {job}"


# --- the promtool unit tests cover everything -------------------------------------------------
def test_every_recording_rule_is_tested():
    tested = set()
    for _, suite in load_tests():
        for case in suite["tests"]:
            for expr_test in case.get("promql_expr_test", []):
                tested.update(re.findall(r"cx:[a-z0-9_:]+", expr_test["expr"]))
    missing = sorted({rule["record"] for rule in recording_rules()} - tested)
    assert not missing, f"recording rules without a promql_expr_test: {missing}"


def test_every_alert_is_tested_firing_and_silent():
    firing, silent = set(), set()
    for _, suite in load_tests():
        for case in suite["tests"]:
            for alert_test in case.get("alert_rule_test", []):
                (firing if alert_test.get("exp_alerts") else silent).add(alert_test["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert not names - firing, f"alerts never tested firing: {sorted(names - firing)}"
    assert not names - silent, f"alerts never tested silent: {sorted(names - silent)}"


def test_unit_tests_cover_two_identical_worker_targets():
    for path, suite in load_tests():
        instances = {
            re.search(r'instance="([^"]+)"', series["series"]).group(1)
            for case in suite["tests"]
            for series in case["input_series"]
            if "instance=" in series["series"]
        }
        assert {"w1:9464", "w2:9464"} <= instances, path.name


def test_alert_tests_fix_group_order():
    groups = [group["name"] for group in load_groups()]
    for path, suite in load_tests():
        rule_files = {(path.parent / name).resolve().name for name in suite["rule_files"]}
        if "cx-alerts.yml" in rule_files:
            assert sorted(suite.get("group_eval_order", [])) == sorted(groups), path.name


# --- Alertmanager behaviour -------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, data: object | None = None) -> object:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return json.loads(text) if text.strip() else None


def test_alertmanager_inhibits_ttr_spike_when_ttr_high_on_same_channel():
    binary = need("prometheus-alertmanager")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as storage:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={ALERTMANAGER_CONFIG}",
                f"--storage.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{base}/-/ready", timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"alertmanager did not start: {process.stderr.read()!r}")
                    time.sleep(0.2)

            def alert(name: str, severity: str, **labels: str) -> dict:
                return {"labels": {"alertname": name, "severity": severity, **labels}}

            _request(
                f"{base}/api/v2/alerts",
                [
                    alert("CXTicketResolutionTimeHigh", "critical", channel="email"),
                    alert("CXTicketResolutionTimeSpike", "warning", channel="email"),
                    alert("CXTicketResolutionTimeSpike", "warning", channel="chat"),
                    alert("CXPipelineAllWorkersDown", "critical"),
                    alert("CXPipelineWorkerDown", "warning", instance="w1:9464"),
                ],
            )
            state = {}
            for item in _request(f"{base}/api/v2/alerts"):
                labels = item["labels"]
                key = (labels["alertname"], labels.get("channel") or labels.get("instance", ""))
                state[key] = item["status"]["state"]
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert state[("CXTicketResolutionTimeHigh", "email")] == "active"
    assert state[("CXTicketResolutionTimeSpike", "email")] == "suppressed"
    assert state[("CXTicketResolutionTimeSpike", "chat")] == "active"
    assert state[("CXPipelineAllWorkersDown", "")] == "active"
    assert state[("CXPipelineWorkerDown", "w1:9464")] == "suppressed"

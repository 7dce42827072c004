"""Helpers shared by the deployment tests (deploy/, Dockerfile, docker-compose.yml)."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry

from pipeline.act.metrics import ActMetrics
from pipeline.collector.metrics import CollectorMetrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# Per-worker pipeline-health metrics (not in CONTRACT.md's table; summed across workers).
PIPELINE_METRICS = frozenset(
    {
        "cx_pipeline_consumer_lag",
        "cx_pipeline_assigned_partitions",
        "cx_pipeline_broker_connected",
        "cx_pipeline_checkpoints_total",
        "cx_pipeline_view_ready",
        "cx_pipeline_view_lag_seconds",
        "cx_pipeline_cart_decisions_behind_seconds",
        "cx_events_misplaced_total",
    }
)


def exported_names(registry: CollectorRegistry) -> frozenset[str]:
    """The sample names a registry exports (counter ``_total``, histogram ``_bucket`` ...)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    return frozenset(
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    )


# Per-process metrics of `cxpipe collect` and `cxpipe act` (each instance counts its own work:
# summed across instances), read from the code's own registries so the names cannot drift.
SERVICE_METRICS = exported_names(CollectorMetrics().registry) | exported_names(
    ActMetrics().registry
)
# Series every Prometheus has for any target.
BUILTIN_METRICS = frozenset(
    {"up", "ALERTS", "process_cpu_seconds_total", "process_resident_memory_bytes"}
)

DEDUP_PREFIX = re.compile(r"max without \(instance, pod\) \((?:rate\(|increase\()?$")
METRIC_TOKEN = re.compile(r"(?<![\w:.\"])(cx_[a-z0-9_]+|process_[a-z0-9_]+)\b")


def contract_path() -> Path | None:
    for candidate in (
        REPO / "CONTRACT.md",
        REPO / "docs" / "CONTRACT.md",
        REPO.parent / "shared" / "CONTRACT.md",
    ):
        if candidate.is_file():
            return candidate
    return None


# Whole-shop metrics the pipeline adds to the contract's (deduplicated like them).
WHOLE_SHOP_EXTRAS = {"cx_tickets_at_risk_by_priority": "gauge"}


def parse_contract(text: str) -> dict[str, str]:
    """``{metric name: type}`` from the "Metric names" table of CONTRACT.md, plus the gauges
    its "SLA and business hours" section names, plus :data:`WHOLE_SHOP_EXTRAS`."""
    metrics = {}
    for line in text.splitlines():
        match = re.match(r"\|\s*`(cx_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|", line)
        if match:
            metrics[match.group(1)] = match.group(2)
    sla = text.partition("## SLA and business hours")[2].partition("\n## ")[0]
    for name in re.findall(r"`(cx_[a-z0-9_]+)`", sla):
        metrics.setdefault(name, "gauge")
    return {**metrics, **WHOLE_SHOP_EXTRAS} if metrics else metrics


def base_metric(name: str, contract: dict[str, str]) -> str:
    """``cx_x_bucket`` -> ``cx_x`` for a contract histogram."""
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and contract.get(name.removesuffix(suffix)) == "histogram":
            return name.removesuffix(suffix)
    return name


def metric_problems(expr: str, contract: dict[str, str]) -> list[str]:
    """Unknown metric names, and contract (whole-shop) metrics read without deduplication."""
    problems = []
    for match in METRIC_TOKEN.finditer(expr):
        name = match.group(1)
        base = base_metric(name, contract)
        if base in contract:
            if not DEDUP_PREFIX.search(expr[: match.start()]):
                problems.append(f"{name} is not read through `max without (instance, pod) (...)`")
        elif name not in PIPELINE_METRICS | SERVICE_METRICS | BUILTIN_METRICS:
            problems.append(f"{name} is neither in CONTRACT.md nor a known pipeline metric")
    return problems


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(
            f"{binary} not installed (Debian: apt-get install prometheus prometheus-alertmanager)"
        )
    return path


def run(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def load_dashboard_builder() -> ModuleType:
    path = DEPLOY / "grafana" / "build_dashboard.py"
    spec = importlib.util.spec_from_file_location("cx_build_dashboard", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module

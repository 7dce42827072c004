"""A real Prometheus and a real Alertmanager around a real worker, for test_alerting_e2e.py.

The module-scoped fixture ``alerting_stack`` builds, once per test module:

* one worker (``tests/integration/harness.py``) on the session's embedded broker, fed with a day
  of :class:`~pipeline.tools.simulate.ShopSimulator` history on all four topics, then live simulated
  traffic from a background thread for as long as the module runs. The worker counts SLAs in
  business hours (``CX_SLA_POLICY``, :func:`business_hours_policy`: 08:00-20:00 around the shop's
  14:00) and the shop is in an :class:`~pipeline.tools.simulate.SlaSpike` since
  :data:`SLA_SPIKE_AGO` before the end of the history: urgent tickets 15x as often, answered too
  late, so urgent tickets are at risk, and breaches were decided in the last hour, all along the
  module (``CXUrgentTicketsAtRisk``, ``CXSlaAttainmentLow`` and ``CXSlaBreachesRising`` fire);
* Prometheus (the Debian binary) scraping that worker every second as job ``cx-worker``,
  evaluating a TEST COPY of the shipped rule files every second (only the alerts' ``for:`` is
  shortened, see :data:`TEST_FOR`; every expression, threshold and group interval is as shipped)
  and sending to
* Alertmanager (the Debian binary) with the shipped ``alertmanager.yml``: same routes,
  receivers and inhibitions, only the webhook URLs point at :class:`WebhookReceiver` on loopback
  and ``group_wait`` / ``group_interval`` are 1 s.

**Why the TTR histogram is backfilled.** The alerts read ``rate(cx_ticket_resolution_seconds_*
[15m])`` and ``[24h]``. A Prometheus started seconds ago has no samples of the day of history the
worker has already counted, so both windows would only see increases that happen while the test
watches and the 24h baseline would equal the 15 min value: ``CXTicketResolutionTimeSpike`` (15m
p90 > 2 x 24h p90) could never fire, and the "TTR p90: 15m vs 24h" panel would be empty. So,
before Prometheus starts, the fixture writes the histogram series Prometheus *would have scraped*
during that day (each first resolution counted at its event time, one sample a minute, the
labels ``job``/``instance`` of the real target) as OpenMetrics and turns them into TSDB blocks
with ``promtool tsdb create-blocks-from openmetrics``. The series end exactly at the values the
worker exports (checked: the worker's histogram must equal the one computed from the events), so
the first live scrape continues them without a jump. ``_sum`` is not backfilled: no rule or panel
reads its rate, and float rounding could make it step down (a counter reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http.server
import json
import math
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from bench.worker import terminate
from pipeline.domain.business_time import WEEKDAYS
from pipeline.domain.sla_policy import DEFAULT_POLICY
from pipeline.tools.simulate import ShopSimulator, SimEvent, SlaSpike
from pipeline.tools.simulate import produce as produce_simulated
from tests.integration.harness import (
    Pipeline,
    Samples,
    WorkerProcess,
    free_port,
    produce,
    produce_events,
)
from tests.integration.stories import envelope, survey

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SHIPPED_PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
SHIPPED_RULES = DEPLOY / "prometheus" / "rules"
SHIPPED_ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"

JOB = "cx-worker"  # the alerts select job="cx-worker"
TTR_ALERTS = ("CXTicketResolutionTimeHigh", "CXTicketResolutionTimeSpike")
# `for:` of the test copy of the rules (shipped: 10m for both TTR alerts, 2m-10m for the rest).
# High goes firing before Spike on purpose: Alertmanager can only inhibit the Spike of a channel
# (inhibit rule High -> Spike, equal: channel) while the High of that channel is there, so with
# equal `for:` a Spike that reaches its `for:` one evaluation earlier would race the inhibition.
# The pipeline alerts keep a longer 15 s: for the first second or two after Prometheus starts
# `cx:events:increase10m` has fewer than two samples (CXPipelineNoEventsAccepted reads that as 0)
# and `up` does not exist yet (CXPipelineAllWorkersDown); 15 s is far longer than that gap.
TEST_FOR = {"CXTicketResolutionTimeHigh": "5s", "CXTicketResolutionTimeSpike": "10s"}
PIPELINE_ALERT_FOR = "15s"

# Simulated shop: ~77k events over the last day (~1100 ticket resolutions, ~380 of them on chat).
SIM_RATE = 1.0  # events per second, daily mean
SIM_SEED = 424242
TTR_MEDIAN = 1200.0  # s; p90 of a channel's TTR ~ 1.2 h (log-normal, sigma 1)
HISTORY_SECONDS = 86400.0 - 600.0  # 10 min short of the 24h window: no history event is late
LOCAL_HOUR_NOW = 14.0  # the shop's local time "now": the same traffic level whenever tests run
BACKFILL_STEP = 60.0  # s between backfilled samples

TTR_METRIC = "cx_ticket_resolution_seconds"

# The SLA spike (urgent tickets 15x as often, every one answered after its target). From the end
# of the history on, 11-18 urgent tickets are at risk (first response, due within 15 min; the
# alert needs 5) and those opened 60 to 15 min before are breached: ~60 breaches in the last
# hour against ~50 first responses met, where ~2 an hour breach without the spike (counted from
# the simulated events with this seed; resolution targets of 4 h are not at risk yet).
SLA_SPIKE_AGO = 3600.0  # s before the end of the history
SLA_SPIKE_FACTOR = 15.0
SLA_SPIKE_DURATION = SLA_SPIKE_AGO + 3 * 3600.0  # on for far longer than the module runs
SLA_SPIKE_ALERTS = ("CXUrgentTicketsAtRisk", "CXSlaAttainmentLow", "CXSlaBreachesRising")
BUSINESS_HOURS = "08:00-20:00"  # every day, local to the policy's zone


# --- small helpers --------------------------------------------------------------------------
class ProcessDied(AssertionError):
    """A subprocess the stack needs has exited: stop waiting at once."""


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    interval: float = 0.25,
    diagnostics: Callable[[], str] | None = None,
) -> Any:
    """Poll ``predicate`` until truthy and return its value; fail with ``what`` at the deadline.

    Exceptions other than :class:`ProcessDied` count as "not yet" (a server still starting); the
    last one is reported on timeout together with ``diagnostics()``.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except ProcessDied:
            raise
        except Exception as error:
            last_error = error
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    extra = f"\n{diagnostics()}" if diagnostics is not None else ""
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r}){extra}"
    )


def tool_paths() -> dict[str, str]:
    """Paths of the Prometheus tools; skip the calling test when one is missing."""
    candidates = {
        "prometheus": ("prometheus",),
        "promtool": ("promtool",),
        "alertmanager": ("prometheus-alertmanager", "alertmanager"),
        "amtool": ("amtool",),
    }
    found: dict[str, str] = {}
    missing = []
    for tool, names in candidates.items():
        path = next((p for p in map(shutil.which, names) if p), None)
        if path is None:
            missing.append("/".join(names))
        else:
            found[tool] = path
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed (Debian: apt-get install prometheus "
            "prometheus-alertmanager; `./cx test` installs them)"
        )
    return found


def run_tool(*argv: str | Path) -> str:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def log_tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return f"({path} missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- configuration derived from deploy/ -------------------------------------------------------
def write_test_rules(dest: Path) -> list[Path]:
    """Copies of the shipped rule files with only the alerts' ``for:`` shortened."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    seen_alerts = set()
    for source in sorted(SHIPPED_RULES.glob("*.yml")):
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
        for group in document["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert "for" in rule, f"{source}: alert {rule['alert']} has no `for:`"
                    rule["for"] = TEST_FOR.get(rule["alert"], PIPELINE_ALERT_FOR)
                    seen_alerts.add(rule["alert"])
        target = dest / source.name
        target.write_text(
            f"# TEST COPY of {source.relative_to(REPO)}: only `for:` changed.\n"
            + yaml.safe_dump(document, sort_keys=False, width=10_000, allow_unicode=True),
            encoding="utf-8",
        )
        written.append(target)
    missing = set(TTR_ALERTS) - seen_alerts
    assert not missing, f"shipped rules lack the TTR alerts {sorted(missing)}"
    return written


def prometheus_config(rules: Sequence[Path], worker: str, prometheus: str, alertmanager: str):
    """The shipped prometheus.yml with loopback targets, 1 s intervals and the test rules."""
    config = copy.deepcopy(yaml.safe_load(SHIPPED_PROMETHEUS.read_text(encoding="utf-8")))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(path) for path in rules]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    targets = {JOB: worker, "prometheus": prometheus, "alertmanager": alertmanager}
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name not in targets:
            continue  # a job added to deploy/ later: nothing to scrape on loopback
        job = {k: v for k, v in job.items() if not k.endswith("_sd_configs")}
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        job["static_configs"] = [{"targets": [targets[name]]}]
        jobs.append(job)
    assert any(job["job_name"] == JOB for job in jobs), f"no {JOB} job in {SHIPPED_PROMETHEUS}"
    config["scrape_configs"] = jobs
    return config


def alertmanager_config(webhook_base: str) -> dict:
    """The shipped alertmanager.yml with every webhook on ``webhook_base`` (path kept), 1 s waits."""
    config = copy.deepcopy(yaml.safe_load(SHIPPED_ALERTMANAGER.read_text(encoding="utf-8")))
    config["route"].update(group_wait="1s", group_interval="1s")
    hooks = 0
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            path = urllib.parse.urlsplit(hook["url"]).path or "/"
            hook["url"] = webhook_base + path
            hooks += 1
    assert hooks, f"no webhook receiver in {SHIPPED_ALERTMANAGER}"
    return config


# --- the webhook every receiver posts to ------------------------------------------------------
@dataclass(frozen=True)
class Notification:
    path: str
    payload: dict

    def alerts(self) -> list[dict]:
        return self.payload.get("alerts", [])


class WebhookReceiver:
    """Collects Alertmanager webhook POSTs (JSON) on a loopback port, in a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Notification] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"unparsable": body.decode(errors="replace")}
                with receiver._lock:
                    receiver._received.append(Notification(self.path, payload))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="alert-webhook", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self._received)

    def alerts(self, alertname: str | None = None) -> list[tuple[Notification, dict]]:
        """Every alert in every notification so far (optionally of one alertname)."""
        return [
            (note, alert)
            for note in self.notifications()
            for alert in note.alerts()
            if alertname is None or alert.get("labels", {}).get("alertname") == alertname
        ]


# --- Prometheus and Alertmanager subprocesses -----------------------------------------------
class Service:
    """A server subprocess with a readiness URL, a log file and a bounded stop."""

    def __init__(self, name: str, argv: Sequence[str], port: int, log_path: Path) -> None:
        self.name, self.argv, self.port, self.log_path = name, list(argv), port, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=5.0)
        self.started_at = math.nan  # time.time() when ready

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Service:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_until(self.ready, timeout, f"{self.name} ready at {self.url}", diagnostics=self.tail)
        self.started_at = time.time()
        return self

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise ProcessDied(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def ready(self) -> bool:
        self.check_alive()
        return self.http.get("/-/ready").status_code == 200

    def tail(self) -> str:
        return f"--- {self.name} log ({self.log_path}) ---\n{log_tail(self.log_path)}"

    def stop(self, timeout: float = 15) -> None:
        self.http.close()
        terminate(self.proc, timeout)


class PromQLError(AssertionError):
    pass


class PrometheusServer(Service):
    def __init__(self, binary: str, config: Path, data: Path, port: int, log_path: Path) -> None:
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=3d",
            "--log.level=info",
        ]
        super().__init__("prometheus", argv, port, log_path)

    def api(self, path: str, **params: str) -> Any:
        self.check_alive()
        response = self.http.get(path, params=params)
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant query; a vector's samples (a scalar becomes one sample without labels)."""
        data = self.api("/api/v1/query", query=expr)
        if data["resultType"] == "vector":
            return data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        raise PromQLError(f"{expr}: unexpected result type {data['resultType']}")

    def values(self, expr: str) -> dict[frozenset, float]:
        return {
            frozenset(sample["metric"].items()): float(sample["value"][1])
            for sample in self.query(expr)
        }

    def value(self, expr: str) -> float | None:
        """The single sample's value (None when the result is empty)."""
        values = list(self.values(expr).values())
        assert len(values) <= 1, f"{expr}: expected at most one sample, got {values}"
        return values[0] if values else None

    def alerts(self) -> list[dict]:
        """Pending and firing alerts: dicts with ``labels``, ``annotations``, ``state``."""
        return self.api("/api/v1/alerts")["alerts"]

    def cx_alerts(self, *states: str) -> list[dict]:
        return [
            a
            for a in self.alerts()
            if a["labels"].get("alertname", "").startswith("CX")
            and (not states or a["state"] in states)
        ]

    def rule_groups(self) -> list[dict]:
        return self.api("/api/v1/rules")["groups"]


class AlertmanagerServer(Service):
    def __init__(self, binary: str, config: Path, data: Path, port: int, log_path: Path) -> None:
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no HA gossip port
            "--log.level=info",
        ]
        super().__init__("alertmanager", argv, port, log_path)

    def alerts(self, **matchers: str) -> list[dict]:
        """Alerts Alertmanager holds (active, silenced and inhibited), filtered by label."""
        self.check_alive()
        params = [("filter", f'{key}="{value}"') for key, value in matchers.items()]
        response = self.http.get("/api/v2/alerts", params=params)
        response.raise_for_status()
        return response.json()


# --- simulated traffic ----------------------------------------------------------------------
def pinned_utc_offset(now: float, local_hour: float = LOCAL_HOUR_NOW) -> float:
    """The simulator's ``utc_offset_hours`` that makes ``now`` the shop's ``local_hour``."""
    return (local_hour - (now % 86400.0) / 3600.0) % 24.0


def business_hours_policy(utc_offset_hours: float) -> dict:
    """An SLA policy with :data:`BUSINESS_HOURS` every day in the shop's zone, default targets.

    IANA zones have whole-hour offsets (``Etc/GMT-N`` is UTC+N) and the shop's offset is pinned
    to the minute, so the policy's local time is the shop's within 30 min: mid-afternoon, hours
    away from closing time, and the night before counts no business time.
    """
    hours = round((utc_offset_hours + 12.0) % 24.0 - 12.0)  # -12 .. 12
    return {
        "timezone": f"Etc/GMT{-hours:+d}",
        "business_hours": {day: [BUSINESS_HOURS] for day in WEEKDAYS},
        "targets": {kind: dict(per) for kind, per in DEFAULT_POLICY.targets.items()},
    }


class LiveTraffic:
    """Produces a simulator's events in real time from a daemon thread until stopped."""

    def __init__(self, simulator: ShopSimulator, bootstrap: str, prefix: str) -> None:
        self.simulator, self.bootstrap, self.prefix = simulator, bootstrap, prefix
        self.sent = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-traffic", daemon=True)

    def start(self) -> LiveTraffic:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:
            self.error = error

    async def _main(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            while not self._stop.is_set():
                batch = self.simulator.events_until(time.time())
                if batch:
                    self.sent += await produce_simulated(batch, producer, self.prefix)
                await asyncio.sleep(0.2)
        finally:
            await producer.stop()

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"live traffic thread failed: {self.error!r}")
        assert self._thread.is_alive(), "live traffic thread is not running"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def history_extras(now: float) -> tuple[dict, list[tuple[str, bytes, bytes]]]:
    """One late event and one invalid record (the duplicate is a resent history event).

    A healthy pipeline may well have none of these; they are here so the dashboard's "rejected",
    "duplicate" and "late" queries are run against real series rather than allow-listed.
    """
    late = survey(now - 25 * 3600, 9, "web")  # older than the longest window: counted, late
    invalid = ("tickets", b"tkt_not_json", b'{"event_id": "broken", ')  # invalid_json
    return late, [invalid]


# --- histogram backfill ---------------------------------------------------------------------
@dataclass(frozen=True)
class Resolution:
    channel: str
    at: float  # event time of the first ticket.resolved
    seconds: float  # its time to resolution


def first_resolutions(events: Iterable[SimEvent]) -> list[Resolution]:
    """The TTR observations the pipeline makes: each ticket's first resolution after its open."""
    opened: dict[str, tuple[float, str]] = {}
    resolved: set[str] = set()
    out = []
    for event in events:
        kind = event.value["event_type"]
        if kind == "ticket.opened":
            opened.setdefault(event.key, (event.time, str(event.value["channel"])))
        elif kind == "ticket.resolved" and event.key in opened and event.key not in resolved:
            resolved.add(event.key)
            open_time, channel = opened[event.key]
            out.append(Resolution(channel, event.time, max(0.0, event.time - open_time)))
    return out


def histogram_counts(resolutions: Iterable[Resolution], les: Sequence[str]) -> Samples:
    """Cumulative ``_bucket`` and ``_count`` values, keyed like :func:`harness.parse_samples`."""
    bounds = [(le, float(le)) for le in les]
    counts: Samples = {}
    for r in resolutions:
        for le, bound in bounds:
            key = (f"{TTR_METRIC}_bucket", frozenset({("channel", r.channel), ("le", le)}))
            counts[key] = counts.get(key, 0.0) + (1.0 if r.seconds <= bound else 0.0)
        key = (f"{TTR_METRIC}_count", frozenset({("channel", r.channel)}))
        counts[key] = counts.get(key, 0.0) + 1.0
    return counts


def histogram_openmetrics(
    resolutions: Sequence[Resolution],
    les: Sequence[str],
    target_labels: dict[str, str],
    start: float,
    end: float,
    step: float = BACKFILL_STEP,
) -> str:
    """The histogram series as scraped every ``step`` s over [start, end], in OpenMetrics.

    Time-major order (every series at t, then t + step, ...) so each series' samples ascend.
    """
    channels = sorted({r.channel for r in resolutions})
    by_channel = {
        c: sorted([r for r in resolutions if r.channel == c], key=lambda r: r.at) for c in channels
    }
    bounds = [float(le) for le in les]
    cumulative = {c: [0] * len(les) for c in channels}
    totals = dict.fromkeys(channels, 0)
    cursor = dict.fromkeys(channels, 0)
    base = ",".join(f'{k}="{v}"' for k, v in sorted(target_labels.items()))
    times = [start + i * step for i in range(int((end - start) // step) + 1)]
    if times[-1] < end:
        times.append(end)
    lines = []
    for t in times:
        stamp = f"{t:.3f}"
        for c in channels:
            series = by_channel[c]
            while cursor[c] < len(series) and series[cursor[c]].at <= t:
                seconds = series[cursor[c]].seconds
                for i, bound in enumerate(bounds):
                    if seconds <= bound:
                        cumulative[c][i] += 1
                totals[c] += 1
                cursor[c] += 1
            for le, value in zip(les, cumulative[c], strict=True):
                lines.append(
                    f'{TTR_METRIC}_bucket{{{base},channel="{c}",le="{le}"}} {value} {stamp}'
                )
            lines.append(f'{TTR_METRIC}_count{{{base},channel="{c}"}} {totals[c]} {stamp}')
    return "\n".join([*lines, "# EOF", ""])


def exported_histogram(samples: Samples) -> tuple[Samples, list[str]]:
    """The worker's ``_bucket``/``_count`` samples and its ``le`` labels (ascending)."""
    hist = {
        key: value
        for key, value in samples.items()
        if key[0] in (f"{TTR_METRIC}_bucket", f"{TTR_METRIC}_count")
    }
    les = {dict(labels)["le"] for name, labels in hist if name.endswith("_bucket")}
    return hist, sorted(les, key=float)


# --- the stack --------------------------------------------------------------------------------
@dataclass
class AlertingStack:
    bootstrap: str
    pipeline: Pipeline
    worker: WorkerProcess
    prometheus: PrometheusServer
    alertmanager: AlertmanagerServer
    webhook: WebhookReceiver
    traffic: LiveTraffic
    history_events: int
    history_resolutions: int
    spiked: bool = False  # set by the test that injects the TTR spike

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.worker.port}"

    def produce(self, events: Sequence[dict]) -> int:
        return produce_events(self.bootstrap, self.pipeline.prefix, events)

    def diagnostics(self) -> str:
        parts = []
        with contextlib.suppress(Exception):
            parts.append(
                "prometheus alerts: "
                + json.dumps([(a["labels"], a["state"]) for a in self.prometheus.alerts()])
            )
        parts.append(
            "webhook: "
            + json.dumps(
                [
                    (n.path, [a.get("labels") for a in n.alerts()])
                    for n in self.webhook.notifications()
                ]
            )
        )
        parts += [
            self.prometheus.tail(),
            self.alertmanager.tail(),
            f"--- worker log ---\n{self.worker.log_tail(15)}",
        ]
        return "\n".join(parts)


def _sum_of(samples: Samples, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


@pytest.fixture(scope="module", name="alerting_stack")
def alerting_stack_fixture(broker, tmp_path_factory) -> Iterator[AlertingStack]:
    tools = tool_paths()
    tmp = tmp_path_factory.mktemp("alerting")
    with contextlib.ExitStack() as cleanup:
        webhook = WebhookReceiver().start()
        cleanup.callback(webhook.stop)

        am_config = tmp / "alertmanager.yml"
        am_config.write_text(yaml.safe_dump(alertmanager_config(webhook.base_url), sort_keys=False))
        run_tool(tools["amtool"], "check-config", am_config)
        alertmanager = AlertmanagerServer(
            tools["alertmanager"], am_config, tmp / "am-data", free_port(), tmp / "alertmanager.log"
        )
        cleanup.callback(alertmanager.stop)
        alertmanager.start()

        now = time.time()
        utc_offset = pinned_utc_offset(now)
        policy = tmp / "sla-policy.yml"
        policy.write_text(yaml.safe_dump(business_hours_policy(utc_offset), sort_keys=False))
        pipeline = Pipeline(broker.bootstrap, extra_env={"CX_SLA_POLICY": str(policy)})
        cleanup.callback(pipeline.stop)
        worker = pipeline.start_worker(tmp)

        # A day of shop history, produced as fast as possible, then counted by the worker.
        simulator = ShopSimulator(
            rate=SIM_RATE,
            seed=SIM_SEED,
            start=now - HISTORY_SECONDS,
            ttr_median=TTR_MEDIAN,
            utc_offset_hours=utc_offset,
            sla_spike=SlaSpike(now - SLA_SPIKE_AGO, SLA_SPIKE_DURATION, SLA_SPIKE_FACTOR),
        )
        history = simulator.events_until(now)
        end_of_history = simulator.now

        async def produce_history() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
            await producer.start()
            try:
                await produce_simulated(history, producer, pipeline.prefix)
            finally:
                await producer.stop()

        asyncio.run(produce_history())
        late, invalid = history_extras(now)
        produce_events(broker.bootstrap, pipeline.prefix, [late])
        duplicate = history[-1]
        produce(
            broker.bootstrap,
            [
                (
                    pipeline.prefix + duplicate.topic,
                    duplicate.key.encode(),
                    orjson.dumps(duplicate.value),
                ),
                *((pipeline.prefix + topic, key, value) for topic, key, value in invalid),
            ],
        )

        resolutions = first_resolutions(history)

        def ingested() -> Samples | None:
            """Every event counted and every resolution applied: ticket events are counted on
            arrival but applied once their topic has settled (pipeline/engine/holdback.py)."""
            samples = worker.samples()
            counts = (
                _sum_of(samples, "cx_events_total"),
                _sum_of(samples, "cx_events_duplicate_total"),
                _sum_of(samples, "cx_events_rejected_total"),
                _sum_of(samples, "cx_events_late_total"),
            )
            if counts != (len(history) + 1, 1, len(invalid), 1):
                return None
            exported, les = exported_histogram(samples)
            return samples if exported == histogram_counts(resolutions, les) else None

        samples = wait_until(
            ingested,
            120,
            f"the worker to count {len(history)} history events and apply their resolutions",
            interval=0.5,
            diagnostics=lambda: worker.log_tail(),
        )

        # Backfill what Prometheus would have scraped of the TTR histogram during that day.
        exported, les = exported_histogram(samples)
        expected = histogram_counts(resolutions, les)
        differences = {
            f"{key[0]}{dict(sorted(key[1]))}": (exported.get(key), expected.get(key))
            for key in exported.keys() | expected.keys()
            if exported.get(key) != expected.get(key)
        }
        assert not differences, (
            "the worker's cx_ticket_resolution_seconds differs from the TTR histogram computed "
            f"from the produced events ((worker, expected) per series): {sorted(differences.items())}"
        )
        target = {"job": JOB, "instance": f"127.0.0.1:{worker.port}"}
        openmetrics = tmp / "ttr-history.om"
        openmetrics.write_text(
            histogram_openmetrics(resolutions, les, target, now - HISTORY_SECONDS, end_of_history)
        )
        data = tmp / "prometheus-data"
        run_tool(
            tools["promtool"], "tsdb", "create-blocks-from", "openmetrics", "-q", openmetrics, data
        )

        rules = write_test_rules(tmp / "rules")
        run_tool(tools["promtool"], "check", "rules", *rules)
        prometheus_port = free_port()
        prom_config = tmp / "prometheus.yml"
        prom_config.write_text(
            yaml.safe_dump(
                prometheus_config(
                    rules, target["instance"], f"127.0.0.1:{prometheus_port}", alertmanager.address
                ),
                sort_keys=False,
            )
        )
        run_tool(tools["promtool"], "check", "config", prom_config)
        prometheus = PrometheusServer(
            tools["prometheus"], prom_config, data, prometheus_port, tmp / "prometheus.log"
        )
        cleanup.callback(prometheus.stop)
        traffic = LiveTraffic(simulator, broker.bootstrap, pipeline.prefix).start()
        cleanup.callback(traffic.stop)
        prometheus.start()

        stack = AlertingStack(
            bootstrap=broker.bootstrap,
            pipeline=pipeline,
            worker=worker,
            prometheus=prometheus,
            alertmanager=alertmanager,
            webhook=webhook,
            traffic=traffic,
            history_events=len(history),
            history_resolutions=len(resolutions),
        )
        # A few scrapes, and accepted events rising while Prometheus watches.
        wait_until(
            lambda: (
                (prometheus.value(f'count_over_time(up{{job="{JOB}"}}[1m])') or 0) >= 3
                and (prometheus.value("sum(increase(cx_events_total[1m]))") or 0) > 0
            ),
            60,
            "Prometheus to scrape the worker a few times while events flow",
            diagnostics=stack.diagnostics,
        )
        yield stack


def ticket_spike(channel: str, count: int, ttr: float, now: float) -> list[dict]:
    """``count`` tickets on ``channel`` opened ~``ttr`` s ago and resolved in the last seconds."""
    events = []
    for i in range(count):
        ticket_id = f"tkt_spike_{channel}_{uuid.uuid4().hex[:16]}"
        resolved = now - 1.0 - 0.25 * i
        opened = resolved - ttr * (1 + 0.01 * i)
        events += [
            envelope("ticket.opened", opened, channel, ticket_id=ticket_id, priority="normal"),
            envelope("ticket.agent_replied", opened + 600, channel, ticket_id=ticket_id),
            envelope("ticket.resolved", resolved, channel, ticket_id=ticket_id),
        ]
    return events

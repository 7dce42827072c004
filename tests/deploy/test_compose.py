"""docker-compose.yml, Dockerfile and .dockerignore, checked statically (no Docker needed)."""

import re
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import yaml
from deploy_support import DEPLOY, REPO

from pipeline.act.__main__ import DEFAULT_METRICS_PORT as ACT_METRICS_PORT
from pipeline.collector import CollectorSettings
from pipeline.settings import Settings

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
PROMETHEUS_CONFIG = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")
SETTINGS_ENV = {f"CX_{name.upper()}" for name in Settings.model_fields}
METRICS_PORT = Settings.model_fields["metrics_port"].default
COLLECTOR_PORT = CollectorSettings.model_fields["port"].default
ACT_ACTIONS = DEPLOY / "act" / "example-actions.yml"
RECEIVER = DEPLOY / "act" / "receiver.py"
ENV_READ = re.compile(r"""os\.environ(?:\.get\(|\[)["'](CX_[A-Z0-9_]+)["']""")


def collector_env() -> set[str]:
    """The ``CX_*`` names CollectorSettings reads: its prefix + field, or its aliases."""
    names = set()
    for name, field in CollectorSettings.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None)
        if aliases:
            names |= {alias for alias in aliases if alias.startswith("CX_")}
        else:
            names.add(f"CX_COLLECTOR_{name.upper()}")
    return names


def env_read_by(path: Path) -> set[str]:
    """``CX_*`` variables a module reads straight from ``os.environ`` (act, the receiver)."""
    return set(ENV_READ.findall(path.read_text(encoding="utf-8")))


def actions_secret_env() -> set[str]:
    """Variables the example actions file names with ``secret_env:``."""
    actions = yaml.safe_load(ACT_ACTIONS.read_text(encoding="utf-8"))
    return {
        hook["secret_env"]
        for signal in actions["signals"].values()
        for hook in signal["webhooks"]
        if "secret_env" in hook
    }


KNOWN_ENV = (
    SETTINGS_ENV
    | collector_env()
    | env_read_by(REPO / "pipeline" / "act" / "__main__.py")
    | env_read_by(RECEIVER)
    | actions_secret_env()
)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """``(host path, container path)`` of the bind mounts (named volumes left out)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def container_path(service: dict, host_path: Path) -> PurePosixPath | None:
    """Where a repository file appears inside a service's container, if it is mounted."""
    for source, target in bind_mounts(service):
        source_path = (REPO / source).resolve()
        if host_path == source_path or source_path in host_path.parents:
            return PurePosixPath(target) / host_path.relative_to(source_path).as_posix()
    return None


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


# --- services ---------------------------------------------------------------------------------
def test_required_services():
    required = {"kafka", "worker", "simulator", "prometheus", "alertmanager", "grafana"}
    assert required | {"collector", "act", "receiver"} <= set(SERVICES)


def test_images():
    assert SERVICES["kafka"]["image"] == "apache/kafka:3.9.0"
    assert SERVICES["prometheus"]["image"].startswith("prom/prometheus:")
    assert SERVICES["alertmanager"]["image"].startswith("prom/alertmanager:")
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana:")
    for name in ("worker", "simulator", "collector", "act"):
        build = SERVICES[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (REPO / context / "Dockerfile").is_file()
        assert SERVICES[name].get("image") == SERVICES["worker"].get("image")
    for name, service in SERVICES.items():
        image = service.get("image", "")
        if "/" in image:
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"


@pytest.mark.parametrize(
    "name",
    ["kafka", "worker", "prometheus", "alertmanager", "grafana", "collector", "act", "receiver"],
)
def test_healthchecks(name):
    healthcheck = SERVICES[name].get("healthcheck")
    if healthcheck is None and "build" in SERVICES[name]:
        assert "HEALTHCHECK" in {keyword for keyword, _ in final_stage()}
        return
    assert healthcheck and not healthcheck.get("disable"), f"{name} has no healthcheck"
    assert healthcheck["test"][0] in ("CMD", "CMD-SHELL")


def test_kafka_single_node_kraft():
    env = environment(SERVICES["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for key in (
        "KAFKA_NODE_ID",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
    ):
        assert env.get(key), key
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "true"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert "kafka-broker-api-versions.sh" in " ".join(SERVICES["kafka"]["healthcheck"]["test"])


def test_worker_scales():
    worker = SERVICES["worker"]
    assert "container_name" not in worker, "a fixed container_name prevents --scale"
    assert "ports" not in worker, "a host port mapping prevents --scale"
    assert worker["restart"] == "unless-stopped"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    env = environment(worker)
    assert env["CX_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["CX_METRICS_HOST"] == "0.0.0.0"
    assert worker.get("command", ["worker"]) == ["worker"]


def test_simulator_is_demo_only_and_goes_through_the_collector():
    simulator = SERVICES["simulator"]
    assert simulator["command"] == [
        "simulate",
        "--rate",
        "50",
        "--via",
        "http",
        f"http://collector:{COLLECTOR_PORT}",
    ]
    assert simulator["profiles"] == ["demo"]
    assert simulator["depends_on"]["collector"]["condition"] == "service_healthy"
    env = environment(simulator)
    assert env["CX_COLLECTOR_TOKENS"] == environment(SERVICES["collector"])["CX_COLLECTOR_TOKENS"]
    # It serves no /metrics, so the image's HEALTHCHECK must not mark it unhealthy.
    assert simulator["healthcheck"] == {"disable": True}


def test_collector_serves_http_intake_on_its_port():
    collector = SERVICES["collector"]
    assert collector["command"] == ["collect"]
    env = environment(collector)
    assert env["CX_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["CX_COLLECTOR_HOST"] == "0.0.0.0", "127.0.0.1 is unreachable from other containers"
    assert int(env["CX_COLLECTOR_PORT"]) == COLLECTOR_PORT
    assert f"{COLLECTOR_PORT}:{COLLECTOR_PORT}" in collector["ports"]
    # tokens come from the environment, with a documented demo default (never empty: the
    # collector refuses to start without one)
    tokens = re.fullmatch(r"\$\{CX_COLLECTOR_TOKENS:-([^}]+)\}", env["CX_COLLECTOR_TOKENS"])
    assert tokens, env["CX_COLLECTOR_TOKENS"]
    CollectorSettings(tokens=tokens.group(1))
    assert f"127.0.0.1:{COLLECTOR_PORT}/healthz" in " ".join(collector["healthcheck"]["test"])
    assert collector["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_act_reads_the_example_actions_and_reaches_the_receiver():
    act = SERVICES["act"]
    assert act["command"] == ["act"]
    env = environment(act)
    assert env["CX_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert container_path(act, ACT_ACTIONS) == PurePosixPath(env["CX_ACTIONS"])
    assert int(env.get("CX_ACT_METRICS_PORT", ACT_METRICS_PORT)) == ACT_METRICS_PORT
    assert f"127.0.0.1:{ACT_METRICS_PORT}/metrics" in " ".join(act["healthcheck"]["test"])
    receiver = SERVICES["receiver"]
    receiver_env = environment(receiver)
    for name in actions_secret_env():
        assert env[name] == receiver_env[name], f"act and the receiver disagree on {name}"
    actions = yaml.safe_load(ACT_ACTIONS.read_text(encoding="utf-8"))
    for signal in actions["signals"].values():
        for hook in signal["webhooks"]:
            host, port = re.match(r"https?://([^:/]+):(\d+)/", hook["url"]).groups()
            assert host == "receiver" and port in [str(p) for p in receiver["expose"]], hook
    assert container_path(receiver, RECEIVER) is not None
    assert receiver["command"][-2:] == ["--port", port]
    assert act["depends_on"]["receiver"]["condition"] == "service_healthy"


def test_restart_policies():
    for name, service in SERVICES.items():
        assert service.get("restart") == "unless-stopped", name


def test_grafana_anonymous_viewer_on_3000():
    grafana = SERVICES["grafana"]
    env = environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert "3000:3000" in grafana["ports"]


# --- files and configuration the services read ------------------------------------------------
def test_bind_mounted_paths_exist():
    for name, service in SERVICES.items():
        for source, _ in bind_mounts(service):
            assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_cx_environment_variables_are_settings():
    used = set()
    for service in SERVICES.values():
        used |= {key for key in environment(service) if key.startswith("CX_")}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            used |= set(re.findall(r"\b(CX_[A-Z0-9_]+)=", rest))
    assert used, "no CX_* variable found"
    unknown = sorted(used - KNOWN_ENV)
    assert not unknown, (
        f"not read by Settings, CollectorSettings, cxpipe act, its actions file or the "
        f"receiver: {unknown}"
    )


def test_prometheus_targets_are_services():
    alerting = PROMETHEUS_CONFIG["alerting"]["alertmanagers"]
    targets = [target for am in alerting for sc in am["static_configs"] for target in sc["targets"]]
    assert targets == ["alertmanager:9093"]
    for config in PROMETHEUS_CONFIG["scrape_configs"]:
        for sc in config.get("static_configs", []):
            for target in sc["targets"]:
                host = target.rsplit(":", 1)[0]
                assert host == "localhost" or host in SERVICES, target
        for dns in config.get("dns_sd_configs", []):
            assert all(name in SERVICES for name in dns["names"]), dns
            assert dns["type"] == "A"
            assert dns["port"] == METRICS_PORT
    jobs = {config["job_name"]: config for config in PROMETHEUS_CONFIG["scrape_configs"]}
    assert [t for sc in jobs["cx-collector"]["static_configs"] for t in sc["targets"]] == [
        f"collector:{environment(SERVICES['collector'])['CX_COLLECTOR_PORT']}"
    ]
    assert [t for sc in jobs["cx-act"]["static_configs"] for t in sc["targets"]] == [
        f"act:{environment(SERVICES['act'])['CX_ACT_METRICS_PORT']}"
    ]
    workers = [c for c in PROMETHEUS_CONFIG["scrape_configs"] if c["job_name"] == "cx-worker"]
    assert len(workers) == 1 and workers[0]["dns_sd_configs"][0]["names"] == ["worker"]
    assert "static_configs" not in workers[0], "a worker scraped twice is summed twice"
    worker_env = environment(SERVICES["worker"])
    assert int(worker_env.get("CX_METRICS_PORT", METRICS_PORT)) == METRICS_PORT


def test_prometheus_intervals():
    assert PROMETHEUS_CONFIG["global"]["scrape_interval"] == "15s"
    assert PROMETHEUS_CONFIG["global"]["evaluation_interval"] == "15s"


def test_prometheus_container_sees_its_config_and_rules():
    prometheus = SERVICES["prometheus"]
    config = container_path(prometheus, DEPLOY / "prometheus" / "prometheus.yml")
    assert config is not None
    assert f"--config.file={config}" in prometheus["command"]
    for pattern in PROMETHEUS_CONFIG["rule_files"]:
        assert list((DEPLOY / "prometheus").glob(pattern)), pattern
    alertmanager = SERVICES["alertmanager"]
    config = container_path(alertmanager, DEPLOY / "alertmanager" / "alertmanager.yml")
    assert config is not None
    assert f"--config.file={config}" in alertmanager["command"]


def test_grafana_provisioning_matches_mounts():
    grafana = SERVICES["grafana"]
    provisioning = container_path(grafana, DEPLOY / "grafana" / "provisioning")
    assert provisioning == PurePosixPath("/etc/grafana/provisioning")
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    (datasource,) = datasources
    assert datasource["uid"] == "prometheus" and datasource["type"] == "prometheus"
    host = re.match(r"https?://([^:/]+)", datasource["url"]).group(1)
    assert host in SERVICES
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "cx.yml").read_text()
    )["providers"]
    dashboards = container_path(grafana, DEPLOY / "grafana" / "dashboards")
    assert [PurePosixPath(p["options"]["path"]) for p in providers] == [dashboards]
    home = environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert container_path(grafana, DEPLOY / "grafana" / "dashboards" / Path(home).name)
        assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).is_file()


# --- image ------------------------------------------------------------------------------------
def test_dockerfile():
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")
    stage = final_stage()
    keywords = dict(stage)
    assert keywords["FROM"].startswith("python:3.11-slim")
    assert keywords["ENTRYPOINT"] == '["cxpipe"]'
    assert keywords["CMD"] == '["worker"]'
    assert keywords["EXPOSE"] == str(METRICS_PORT)
    user = keywords["USER"]
    assert user not in ("root", "0"), "the image must not run as root"
    env = " ".join(rest for keyword, rest in stage if keyword == "ENV")
    assert "CX_METRICS_HOST=0.0.0.0" in env
    healthcheck = keywords["HEALTHCHECK"]
    assert "urllib" in healthcheck and "/metrics" in healthcheck
    assert any(k == "RUN" and "pip install ." in rest for k, rest in instructions)


def test_console_script_exists():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "cxpipe" in project["scripts"]


def test_dockerignore_keeps_what_pip_install_needs():
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= patterns
    for needed in ("pipeline", "schemas", "pyproject.toml", "README.md"):
        assert needed not in patterns, needed

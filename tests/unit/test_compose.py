"""The production stack's files: docker-compose.yml, the Dockerfiles, Prometheus and Grafana."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from shared import metrics
from shared.stack import compose_check
from tests.unit.test_env_examples import SERVICES, settings_class

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
BUILT = sorted(name for name, service in COMPOSE["services"].items() if "build" in service)
DEPLOY = ROOT / "deploy"
# Metrics of danielqsj/kafka-exporter the dashboard may use.
EXPORTER_METRICS = {
    "kafka_consumergroup_lag",
    "kafka_topic_partition_current_offset",
    "kafka_topic_partition_oldest_offset",
}


def default_port(service: str) -> int:
    port = settings_class(service).model_fields["port"].default
    assert isinstance(port, int)
    return port


def dockerfile(service: str) -> str:
    return (ROOT / service / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.split(maxsplit=1) for line in lines if line and line[0] != "#")
    ]


def test_every_service_of_the_repository_is_in_compose() -> None:
    assert BUILT == SERVICES


@pytest.mark.parametrize("name", BUILT)
def test_compose_service_has_a_dockerfile_healthcheck_and_env_file(name: str) -> None:
    service = COMPOSE["services"][name]
    assert compose_check.dockerfile_path(service, ROOT) == ROOT / name / "Dockerfile"
    assert (ROOT / name / "Dockerfile").is_file()
    assert "/ready" in " ".join(service["healthcheck"]["test"])
    assert compose_check.env_files(service) == [f"./{name}/.env.example"]
    assert (ROOT / name / ".env.example").is_file()
    assert "container_name" not in service
    environment = service["environment"]
    assert environment["PORT"] == str(default_port(name))
    assert environment["HOST"] == "0.0.0.0"  # noqa: S104 - inside the container network
    assert environment["KAFKA_BROKER"] == "kafka:9092"
    assert environment["JWT_SECRET"].startswith("${JWT_SECRET:?")


@pytest.mark.parametrize("name", BUILT)
def test_only_the_gateway_publishes_a_port(name: str) -> None:
    assert ("ports" in COMPOSE["services"][name]) == (name == "graphql_gateway")


def test_gateway_reaches_every_service_by_its_compose_name() -> None:
    environment = COMPOSE["services"]["graphql_gateway"]["environment"]
    fields = [
        name
        for name in settings_class("graphql_gateway").model_fields
        if name.endswith("_service_url")
    ]
    assert fields
    for field in fields:
        service = field.removesuffix("_url")
        assert environment[field.upper()] == f"http://{service}:{default_port(service)}"


def test_the_compose_file_follows_the_house_rules() -> None:
    assert compose_check.check(ROOT / "docker-compose.yml") == []


def test_the_house_rules_catch_each_kind_of_mistake(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = document["services"]
    for name in BUILT:  # relative paths resolve against the copy's folder
        services[name]["build"]["context"] = str(ROOT)
        services[name]["env_file"] = str(ROOT / name / ".env.example")
    services["notification_service"]["container_name"] = "notifications"
    del services["user_service"]["healthcheck"]
    services["order_service"]["depends_on"] = {"mongo": {"condition": "service_healthy"}}
    services["redis"]["volumes"] = ["redis-data:/data"]
    services["kafka-ui"]["networks"] = ["elsewhere"]
    document["networks"]["second"] = None
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(document))
    problems = "\n".join(compose_check.check(broken))
    assert "expected exactly one network, found 2" in problems
    assert "notification_service: container_name" in problems
    assert "user_service: no healthcheck" in problems
    assert "order_service: must depend on kafka_admin_service" in problems
    assert "redis: volume 'redis-data' is not declared" in problems
    assert "kafka-ui: network 'elsewhere' is not declared" in problems
    assert len(compose_check.check(broken)) == 6


def test_kafka_runs_kraft_without_auto_created_topics() -> None:
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    environment = kafka["environment"]
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert environment["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == 0
    assert environment["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert not any("zookeeper" in name for name in COMPOSE["services"])
    admin = COMPOSE["services"]["kafka_admin_service"]
    assert admin["depends_on"] == {"kafka": {"condition": "service_healthy"}}


def test_no_service_waits_on_a_timer() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"\bsleep\b", text)


# --- Dockerfiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_is_multi_stage_slim_non_root_with_a_ready_healthcheck(service: str) -> None:
    steps = instructions(dockerfile(service))
    froms = [arguments for name, arguments in steps if name == "FROM"]
    assert len(froms) >= 2
    assert all(item.startswith("python:3.11-slim") for item in froms)
    users = [arguments for name, arguments in steps if name == "USER"]
    assert users, "no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    healthchecks = [arguments for name, arguments in steps if name == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/ready" in healthchecks[0]
    port = str(default_port(service))
    assert ("EXPOSE", port) in steps
    assert f"PORT={port}" in dockerfile(service)
    assert steps[-1] == ("CMD", f'["python", "-m", "{service}"]')


@pytest.mark.parametrize("service", SERVICES)
def test_image_gets_only_shared_and_its_own_package(service: str) -> None:
    steps = instructions(dockerfile(service))
    last_from = max(index for index, (name, _) in enumerate(steps) if name == "FROM")
    copies = [arguments for name, arguments in steps[last_from:] if name == "COPY"]
    assert copies == [
        "--from=builder /opt/venv /opt/venv",
        "shared ./shared",
        f"{service} ./{service}",
    ]


def test_dockerfiles_differ_only_in_service_name_and_port() -> None:
    def normalised(service: str) -> str:
        text = dockerfile(service).replace(service, "SERVICE")
        return re.sub(rf"\b{default_port(service)}\b", "PORT", text)

    assert len({normalised(service) for service in SERVICES}) == 1


def test_dockerignore_keeps_secrets_and_clutter_out_of_images() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "var", "tests", ".git", ".env", "**/.env", "**/__pycache__"} <= ignored
    assert {".pytest_cache", ".mypy_cache", ".ruff_cache", "shared/stack"} <= ignored


def _runtime_requirements() -> ModuleType:
    path = DEPLOY / "docker" / "runtime_requirements.py"
    spec = importlib.util.spec_from_file_location("runtime_requirements", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_images_leave_out_only_the_local_launchers_dependencies() -> None:
    module = _runtime_requirements()
    wanted = module.runtime_requirements(ROOT / "pyproject.toml")
    names = {module.distribution_name(item) for item in wanted}
    assert {"fastapi", "uvicorn", "aiokafka", "pymongo", "mongomock-motor"} <= names
    assert names.isdisjoint(module.LOCAL_ONLY)
    assert module.distribution_name("pwdlib[argon2]>=0.2") == "pwdlib"
    assert module.distribution_name("typing_extensions>=4.12") == "typing-extensions"


def test_no_code_in_an_image_imports_a_local_only_dependency() -> None:
    module = _runtime_requirements()
    local_only = {name.replace("-", "_") for name in module.LOCAL_ONLY}
    offenders = []
    for package in ["shared", *SERVICES]:
        for path in (ROOT / package).rglob("*.py"):
            if path.is_relative_to(ROOT / "shared" / "stack"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported = [node.module]
                else:
                    continue
                offenders += [
                    f"{path.relative_to(ROOT)}: {name}"
                    for name in imported
                    if name.split(".")[0] in local_only or name.startswith("shared.stack")
                ]
    assert offenders == []


# --- Prometheus and Grafana -----------------------------------------------------------------


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets: dict[str, set[int]] = {}
    for job in config["scrape_configs"]:
        for discovery in job.get("dns_sd_configs", []):
            for name in discovery["names"]:
                targets.setdefault(name, set()).add(discovery["port"])
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.setdefault(host, set()).add(int(port))
    for service in BUILT:
        assert targets.get(service) == {default_port(service)}, service
    assert "kafka-exporter" in targets
    mounted = COMPOSE["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounted


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "fleet.json").read_text())
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    expressions = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        expressions += [target["expr"] for target in panel["targets"]]
    return expressions


def test_dashboard_uses_only_metrics_that_exist() -> None:
    ours = {collector._name for collector in vars(metrics).values() if hasattr(collector, "_name")}
    known = {f"{name}_total" for name in ours} | {f"{name}_bucket" for name in ours}
    known |= ours | EXPORTER_METRICS
    functions = {"sum", "by", "rate", "increase", "histogram_quantile", "le"}
    for expression in _dashboard_expressions():
        stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\([a-z_, ]*\)\s*\(", "(", expression)
        for word in re.findall(r"[a-z_][a-z0-9_]*", stripped):
            assert word in known | functions, f"{word!r} in {expression}"


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    text = "\n".join(_dashboard_expressions())
    for needed in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "kafka_consumergroup_lag",
        'kafka_topic_partition_current_offset{topic=~".+[.]dlq"}',
        'kafka_messages_produced_total{service="notification_service"',
        "kafka_messages_consumed_total",
    ):
        assert needed in text


def test_grafana_is_provisioned_from_the_repository() -> None:
    grafana = COMPOSE["services"]["grafana"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro" in grafana["volumes"]
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "fleet.yml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


# --- Kubernetes (deploy/k8s): schema-valid, and consistent with the services ----------------

K8S = DEPLOY / "k8s"
K8S_VERSION = "1.31.0"


def k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    documents = []
    for name in kustomization["resources"]:
        documents += [item for item in yaml.safe_load_all((K8S / name).read_text()) if item]
    return documents


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_k8s_manifests_are_valid_against_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    for document in k8s_documents():
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    broken = next(item for item in k8s_documents() if item["kind"] == "Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_runs_each_service_like_compose(service: str) -> None:
    name = service.replace("_", "-")
    by_kind = {item["kind"]: item for item in k8s_documents() if item["metadata"]["name"] == name}
    assert set(by_kind) == {"Deployment", "Service"}
    port = default_port(service)
    assert by_kind["Service"]["spec"]["ports"][0]["port"] == port
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["image"].startswith(f"fleet/{service}:")
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert {"name": "PORT", "value": str(port)} in container["env"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    waits = [step["name"] for step in pod.get("initContainers", [])]
    assert waits == ([] if service == "kafka_admin_service" else ["wait-for-topics"])


def test_k8s_config_sets_only_variables_a_service_reads() -> None:
    config = next(item for item in k8s_documents() if item["kind"] == "ConfigMap")
    read = {field.upper() for service in SERVICES for field in settings_class(service).model_fields}
    assert set(config["data"]) - read == set()
    assert config["data"]["HOST"] == "0.0.0.0"  # noqa: S104 - inside the pod network
    for key, url in config["data"].items():
        if key.endswith("_SERVICE_URL"):
            service = key.removesuffix("_URL").lower()
            assert url == f"http://{service.replace('_', '-')}:{default_port(service)}"

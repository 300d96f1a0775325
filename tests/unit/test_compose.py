"""The production stack's files: docker-compose.yml, the Dockerfile, Prometheus and Grafana."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack import compose_check
from tests.unit.test_env_examples import SERVICES, settings_class

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
BUILT = sorted(name for name, service in COMPOSE["services"].items() if "build" in service)
DEPLOY = ROOT / "deploy"


def default_port(service: str) -> int:
    port = settings_class(service).model_fields["port"].default
    assert isinstance(port, int)
    return port


SERVICE_DOCKERFILE = ROOT / "deploy" / "docker" / "service.Dockerfile"


def dockerfile() -> str:
    return SERVICE_DOCKERFILE.read_text()


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
    assert compose_check.dockerfile_path(service, ROOT) == SERVICE_DOCKERFILE
    assert SERVICE_DOCKERFILE.is_file()
    assert compose_check.build_args(service) == {
        "SERVICE": name,
        "PORT": str(default_port(name)),
    }
    assert "/ready" in " ".join(service["healthcheck"]["test"])
    assert compose_check.build_target(service) == (
        "graphql_gateway" if name == "graphql_gateway" else "service"
    )
    # Its example's values, then its own .env (secrets) when there is one: nothing to copy.
    assert compose_check.env_files(service) == [f"./{name}/.env.example", f"./{name}/.env"]
    assert compose_check.required_env_files(service) == [f"./{name}/.env.example"]
    assert (ROOT / name / ".env.example").is_file()
    assert "container_name" not in service
    environment = service["environment"]
    assert environment["PORT"] == str(default_port(name))
    assert environment["HOST"] == "0.0.0.0"  # noqa: S104 - inside the container network
    assert environment["KAFKA_BROKER"] == "kafka:9092"
    # A secret set here would override the service's own .env.
    assert "JWT_SECRET" not in environment


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
    services["graphql_gateway"]["build"]["dockerfile"] = "gateway.Dockerfile"
    services["scheduler_service"]["build"]["args"]["SERVICE"] = "order_service"
    services["recommendation_service"]["build"]["args"]["PORT"] = "8080"
    services["recommendation_service"]["environment"]["PORT"] = "8080"
    services["kafka_admin_service"]["environment"]["PORT"] = "3001"
    services["payment_service"] = copy.deepcopy(services["order_service"])
    services["payment_service"]["build"]["args"] = {"SERVICE": "payment_service", "PORT": "7100"}
    services["payment_service"]["environment"]["PORT"] = "7100"
    del services["user_service"]["healthcheck"]
    services["order_service"]["depends_on"] = {"mongo": {"condition": "service_healthy"}}
    services["redis"]["volumes"] = ["redis-data:/data"]
    services["kafka-ui"]["networks"] = ["elsewhere"]
    services["user_service"]["build"]["target"] = "graphql_gateway"
    services["redis"]["healthcheck"]["retries"] = [6]
    services["mongo"]["healthcheck"]["intervall"] = "10s"
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
    assert "graphql_gateway: Dockerfile" in problems  # there is no gateway.Dockerfile
    assert (
        f"graphql_gateway: must be built from dockerfile {compose_check.SERVICE_DOCKERFILE}"
        in problems
    )
    assert "scheduler_service: build arg SERVICE is 'order_service'" in problems
    assert "recommendation_service: build arg PORT is '8080', not its contract port" in problems
    assert "kafka_admin_service: environment PORT '3001' differs" in problems
    assert "payment_service: no package payment_service" in problems
    assert "payment_service: not a service of the fleet" in problems
    assert "user_service: must be built with target 'service'" in problems
    assert "schema: $.services.mongo.healthcheck: 'intervall' does not match" in problems
    assert "schema: $.services.redis.healthcheck.retries: [6] is not of type" in problems
    assert len(compose_check.check(broken)) == 16


def test_a_service_may_go_without_its_optional_env_file_only(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = document["services"]["order_service"]
    service["build"]["context"] = str(ROOT)
    service["env_file"] = [
        str(ROOT / "order_service" / ".env.example"),
        {"path": str(tmp_path / "absent.env"), "required": False},
    ]
    copied = tmp_path / "docker-compose.yml"

    def problems() -> list[str]:
        copied.write_text(yaml.safe_dump(document))
        return [item for item in compose_check.check(copied) if item.startswith("order_service")]

    assert problems() == []
    service["env_file"][1]["required"] = True
    assert problems() == [f"order_service: env_file {tmp_path / 'absent.env'} does not exist"]


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


# --- The Dockerfile: one for every service, deploy/docker/service.Dockerfile ----------------

# Instructions in which Docker itself replaces `$VAR` / `${VAR}` (RUN: the shell, from the same
# variables). Not CMD nor HEALTHCHECK: their exec form is run as written.
SUBSTITUTED = {"ADD", "COPY", "ENV", "EXPOSE", "LABEL", "RUN", "USER", "VOLUME", "WORKDIR"}
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def substitute(text: str, values: dict[str, str], unknown: str | None = None) -> str:
    """`$NAME` and `${NAME}` replaced from `values`; others left as written (or `unknown`)."""
    return VARIABLE.sub(
        lambda match: values.get(match[1] or match[2], match[0] if unknown is None else unknown),
        text,
    )


def stages(steps: list[tuple[str, str]]) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Each stage by name (unnamed: its index): its base and its instructions after FROM."""
    found: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] = []
    for name, arguments in steps:
        if name == "FROM":
            words = arguments.split()
            label = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(found))
            current = []
            found[label] = (words[0], current)
        elif found:
            current.append((name, arguments))
    return found


def chain_labels(
    named: dict[str, tuple[str, list[tuple[str, str]]]], target: str | None
) -> list[str]:
    """The stages an image built to `target` (None: the last stage) goes through, first first."""
    label = target if target is not None else list(named)[-1]
    labels: list[str] = []
    while label in named:
        labels.insert(0, label)
        label = named[label][0]
    return labels


def stage_chain(steps: list[tuple[str, str]], target: str | None) -> list[tuple[str, str]]:
    """The instructions an image built to `target` (None: the last stage) runs, from the first
    stage of its `FROM <stage>` chain on (each stage's own ARGs only, as Docker scopes them)."""
    named = stages(steps)
    chain: list[tuple[str, str]] = []
    for label in chain_labels(named, target):
        base, own = named[label]
        chain += [("FROM", base), *own]
    return chain


def runtime_stage(
    text: str, args: dict[str, str], target: str | None = None
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The instructions of the image built to `target` (None: the last stage) with
    `--build-arg`s `args`, and the image's ENV.

    Like Docker, only an ARG declared in the stage itself is visible there (one declared before
    the first FROM is not), and ENV values are variables for the instructions after them.
    """
    variables: dict[str, str] = {}
    environment: dict[str, str] = {}
    resolved = []
    for name, arguments in stage_chain(instructions(text), target):
        if name == "FROM":  # a new stage: ARGs end, ENV goes on
            variables = dict(environment)
            continue
        if name in SUBSTITUTED:
            arguments = substitute(arguments, variables)
        if name == "ARG":
            key, _, default = arguments.partition("=")
            variables[key] = args.get(key, default)
        elif name == "ENV":
            pairs = dict(item.partition("=")[::2] for item in shlex.split(arguments))
            variables |= pairs
            environment |= pairs
        resolved.append((name, arguments))
    return resolved, environment


# What an image copies beyond the venv, shared and its own package.
EXTRA_COPIES = {"graphql_gateway": ["--from=graphiql-assets /graphiql /app/graphiql"]}


def dockerfile_problems(text: str) -> list[str]:
    """What is wrong with a service Dockerfile, built as compose builds each service."""
    problems = []
    steps = instructions(text)
    named = stages(steps)
    python_bases = [base for base, _ in named.values() if base.startswith("python:")]
    if len(named) < 2 or not all(base.startswith("python:3.11.") for base in python_bases):
        problems.append("not a multi-stage build on python:3.11")
    # The stages before the one every service's image starts from: shared by all services.
    first = chain_labels(named, compose_check.DEFAULT_TARGET)[0]
    shared_steps = []
    for label, (base, own) in named.items():
        if label == first:
            break
        shared_steps += [("FROM", base), *own]
    if any(re.search(r"\b(SERVICE|PORT)\b", arguments) for _, arguments in shared_steps):
        problems.append("the builder stage depends on the service: its layers are not shared")
    healthchecks = [arguments for name, arguments in steps if name == "HEALTHCHECK"]
    if len(healthchecks) != 1 or "/ready" not in healthchecks[0]:
        problems.append("no HEALTHCHECK on /ready")
    for service in SERVICES:
        port = str(default_port(service))
        target = compose_check.build_target(COMPOSE["services"][service])
        stage, environment = runtime_stage(text, {"SERVICE": service, "PORT": port}, target)
        users = [arguments for name, arguments in stage if name == "USER"]
        if not users or users[-1].split(":")[0] in {"root", "0"}:
            problems.append(f"{service}: runs as root")
        copies = [arguments for name, arguments in stage if name == "COPY"]
        if copies != [
            "--from=builder /opt/venv /opt/venv",
            "shared ./shared",
            f"{service} ./{service}",
            *EXTRA_COPIES.get(service, []),
        ]:
            problems.append(f"{service}: copies {copies}, not the venv, shared and {service}")
        if ("EXPOSE", port) not in stage or environment.get("PORT") != port:
            problems.append(f"{service}: does not expose and set PORT {port}")
        commands = [arguments for name, arguments in stage if name == "CMD"]
        command = json.loads(commands[-1]) if commands else []
        if command[:2] == ["/bin/sh", "-c"]:  # what the shell runs, with the image's ENV
            command = shlex.split(substitute(command[2], environment, unknown=""))
            command = command[1:] if command[:1] == ["exec"] else ["sh", *command]
        if command != ["python", "-m", service]:
            problems.append(f"{service}: python -m {service} does not run as PID 1 ({command})")
    return problems


def test_the_service_dockerfile_follows_the_image_rules() -> None:
    assert dockerfile_problems(dockerfile()) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("FROM python:3.11.14-slim-bookworm@", "FROM python:3.12-slim@", "not a multi-stage"),
        ("WORKDIR /build", "ARG SERVICE\nWORKDIR /build/${SERVICE}", "the builder stage"),
        ("USER 10001:10001", "USER root", "order_service: runs as root"),
        ("ENV GRAPHIQL_ASSETS_DIR=/app/graphiql", "USER root", "graphql_gateway: runs as root"),
        ("FROM runtime AS service", "FROM runtime AS service\nCOPY . .", "user_service: copies"),
        ("/ready", "/health", "no HEALTHCHECK on /ready"),
        ("EXPOSE ${PORT}", "EXPOSE 7000", "user_service: does not expose and set PORT 5000"),
        ("COPY shared ./shared", "COPY . .", "user_service: copies"),
        ('exec python -m \\"$SERVICE\\"', 'python -m \\"$SERVICE\\"', "user_service: python"),
        ("ENV SERVICE=${SERVICE} \\", "ENV \\", "user_service: python"),
    ],
)
def test_the_image_rules_catch_each_kind_of_mistake(old: str, new: str, problem: str) -> None:
    text = dockerfile()
    assert old in text
    assert problem in "\n".join(dockerfile_problems(text.replace(old, new)))


def test_the_build_args_declared_before_from_are_not_seen_in_the_runtime_stage() -> None:
    text = dockerfile()
    args = "ARG SERVICE\nARG PORT\n"
    assert args in text
    problems = "\n".join(dockerfile_problems(args + text.replace(args, "")))
    assert (
        "user_service: copies ['--from=builder /opt/venv /opt/venv', 'shared ./shared', '${SERVICE}"
        in problems
    )
    assert "user_service: does not expose and set PORT 5000" in problems


def test_no_service_keeps_a_dockerfile_of_its_own() -> None:
    assert [service for service in SERVICES if (ROOT / service / "Dockerfile").exists()] == []


def test_dockerignore_keeps_secrets_and_clutter_out_of_images() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "var", "tests", ".git", ".env", "**/.env", "**/__pycache__"} <= ignored
    assert {".pytest_cache", ".mypy_cache", ".ruff_cache", "devstack", "fleet"} <= ignored


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
        # The gateway serves /metrics on a port of its own (issue 13).
        port = COMPOSE["services"][service]["environment"].get(
            "METRICS_PORT", default_port(service)
        )
        assert targets.get(service) == {int(port)}, service
    assert "kafka-exporter" in targets
    mounted = COMPOSE["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounted


# The dashboard's expressions are checked in tests/unit/test_observability.py.


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
    assert container["ports"][0] == {"name": "http", "containerPort": port}
    # The gateway's /metrics has a port of its own (issue 13).
    assert [p["name"] for p in container["ports"][1:]] == (
        ["metrics"] if service == "graphql_gateway" else []
    )
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


@pytest.mark.parametrize("name", BUILT)
def test_services_log_json_lines_in_compose_and_k8s(name: str) -> None:
    # Containers' output goes to a log collector, not a person: one JSON object a line.
    assert COMPOSE["services"][name]["environment"]["LOG_FORMAT"] == "${LOG_FORMAT:-json}"
    k8s_config = yaml.safe_load((ROOT / "deploy" / "k8s" / "config.yaml").read_text())
    assert k8s_config["data"]["LOG_FORMAT"] == "json"

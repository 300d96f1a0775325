"""The service registry (shared/services.py) agrees with the code: the packages on disk, each
service's settings and consumer group, the topics its code publishes and reads, the AsyncAPI
documents, docker-compose.yml, the Makefile and pyproject.toml."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from devstack import compose_check
from graphql_gateway.events import broadcast_handlers
from shared.events.models import EVENT_TYPES
from shared.events.topics import TOPICS
from shared.services import GATEWAY, SERVICES, Service, groups_consuming, service_named
from tests.unit.test_env_examples import SERVICES as PACKAGES_ON_DISK
from tests.unit.test_env_examples import settings_class

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_DIR = ROOT / "docs" / "asyncapi"
NAMES = [service.name for service in SERVICES]


def test_every_service_package_is_registered_once() -> None:
    assert sorted(NAMES) == sorted(PACKAGES_ON_DISK)
    assert len(set(NAMES)) == len(NAMES)
    assert len({service.port for service in SERVICES}) == len(SERVICES)
    assert all(service.package == service.name for service in SERVICES)


@pytest.mark.parametrize("service", SERVICES, ids=NAMES)
def test_settings_default_to_the_registered_name_and_port(service: Service) -> None:
    fields = settings_class(service.name).model_fields
    assert fields["port"].default == service.port
    assert fields["service_name"].default == service.name


@pytest.mark.parametrize("service", SERVICES, ids=NAMES)
def test_a_consumer_reads_in_its_registered_group(service: Service) -> None:
    module = f"{service.name}.events"
    events = importlib.import_module(module) if importlib.util.find_spec(module) else None
    assert getattr(events, "CONSUMER_GROUP", None) == service.consumer_group


def _event_model_uses(package: str) -> tuple[set[str], set[str]]:
    """(topics of the event models the package builds: `Model(...)`, `Model.model_validate(...)`;
    topics it names through `Model.topic`)."""
    built: set[str] = set()
    named: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                function = node.func
                if isinstance(function, ast.Name) and function.id in EVENT_TYPES:
                    built.add(EVENT_TYPES[function.id].topic)
                elif (
                    isinstance(function, ast.Attribute)
                    and function.attr == "model_validate"
                    and isinstance(function.value, ast.Name)
                    and function.value.id in EVENT_TYPES
                ):
                    built.add(EVENT_TYPES[function.value.id].topic)
            elif (
                isinstance(node, ast.Attribute)
                and node.attr == "topic"
                and isinstance(node.value, ast.Name)
                and node.value.id in EVENT_TYPES
            ):
                named.add(EVENT_TYPES[node.value.id].topic)
    return built, named


@pytest.mark.parametrize("service", SERVICES, ids=NAMES)
def test_the_code_publishes_and_reads_the_registered_topics(service: Service) -> None:
    built, named = _event_model_uses(service.name)
    read = {*service.consumes, *service.broadcasts_read}
    assert named == read, "the topics its handlers are keyed by"
    # It also builds (validates) the models of what it reads; the rest it publishes.
    assert built - read == set(service.publishes), "the events its code builds and publishes"


def test_the_gateway_reads_the_registered_broadcasts() -> None:
    handlers = broadcast_handlers(None, None)  # type: ignore[arg-type]
    assert set(handlers) == set(GATEWAY.broadcasts_read)
    assert GATEWAY.consumer_group is None and not GATEWAY.publishes


def test_every_topic_is_registered_and_published_by_a_service() -> None:
    registered = {t.name for t in TOPICS}
    for service in SERVICES:
        assert {*service.publishes, *service.consumes, *service.broadcasts_read} <= registered
    assert {topic for service in SERVICES for topic in service.publishes} == registered
    assert {t.name: t.consumer_groups for t in TOPICS} == {
        name: groups_consuming(name) for name in registered
    }


def _operations(document: dict[str, object], action: str) -> dict[str, bool]:
    """Address -> whether the operation names a consumer group, for each `action` operation."""
    channels: dict[str, dict[str, str]] = document["channels"]  # type: ignore[assignment]
    found = {}
    for operation in document["operations"].values():  # type: ignore[attr-defined]
        if operation["action"] == action:
            address = channels[operation["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
            found[address] = "groupId" in operation.get("bindings", {}).get("kafka", {})
    return found


@pytest.mark.parametrize("service", [s for s in SERVICES if s.name != "kafka_admin_service"])
def test_the_asyncapi_documents_say_what_the_registry_says(service: Service) -> None:
    document = yaml.safe_load((ASYNCAPI_DIR / f"{service.name}.yaml").read_text("utf-8"))
    sent = _operations(document, "send")
    received = _operations(document, "receive")
    assert {name for name in sent if not name.endswith(".dlq")} == set(service.publishes)
    assert {name for name, grouped in received.items() if grouped} == set(service.consumes)
    assert {name for name, grouped in received.items() if not grouped} == set(
        service.broadcasts_read
    )


def test_the_admin_service_has_no_events_to_document() -> None:
    admin = service_named("kafka_admin_service")
    assert not (admin.publishes or admin.consumes or admin.broadcasts_read)
    assert not (ASYNCAPI_DIR / "kafka_admin_service.yaml").exists()


def test_compose_builds_exactly_the_registered_services_on_their_ports() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    built = {
        name: spec["build"]["args"]
        for name, spec in compose["services"].items()
        if "build" in spec and spec["build"]["args"].get("SERVICE") == name
    }
    assert set(built) == set(NAMES)
    assert {name: int(args["PORT"]) for name, args in built.items()} == {
        s.name: s.port for s in SERVICES
    }
    assert {s.name: s.port for s in SERVICES} == compose_check.CONTRACT_PORTS


def test_the_makefile_reads_the_packages_from_the_registry() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "shared.services"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert printed == NAMES
    makefile = (ROOT / "Makefile").read_text()
    assert "SERVICES = $(shell $(BIN)/python -m shared.services)" in makefile


def test_pyproject_packages_every_registered_service_and_nothing_else() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = set(pyproject["tool"]["setuptools"]["packages"]["find"]["include"])
    assert included == {"shared*", "devstack*", "fleet*", *(f"{name}*" for name in NAMES)}

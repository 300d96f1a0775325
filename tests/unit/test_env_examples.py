"""Every service's `.env.example` documents every variable its settings class reads."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
# A service is a top-level package with `settings.py` and `__main__.py` (STYLE.md).
SERVICES = sorted(
    path.parent.name
    for path in ROOT.glob("*/__main__.py")
    if (path.parent / "settings.py").is_file() and path.parent.name != "shared"
)
# `NAME=value` or `# NAME=value` (a commented line documents the default).
DOCUMENTED = re.compile(r"^#?\s*([A-Z][A-Z0-9_]+)=", flags=re.MULTILINE)


def settings_class(service: str) -> type[ServiceSettings]:
    """The one ServiceSettings subclass `<service>/settings.py` defines."""
    module = importlib.import_module(f"{service}.settings")
    classes = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{service}/settings.py defines {len(classes)} settings classes"
    return classes[0]


def test_every_service_is_found() -> None:
    assert {"graphql_gateway", "user_service", "kafka_admin_service"} <= set(SERVICES)
    assert len(SERVICES) == 7


@pytest.mark.parametrize("service", SERVICES)
def test_env_example_documents_every_setting(service: str) -> None:
    example = (ROOT / service / ".env.example").read_text()
    documented = set(DOCUMENTED.findall(example))
    expected = {name.upper() for name in settings_class(service).model_fields}
    assert expected - documented == set(), f"{service}/.env.example misses these variables"


@pytest.mark.parametrize("service", SERVICES)
def test_env_example_documents_nothing_the_service_does_not_read(service: str) -> None:
    example = (ROOT / service / ".env.example").read_text()
    known = {name.upper() for name in settings_class(service).model_fields}
    assert set(DOCUMENTED.findall(example)) - known == set(), f"{service}/.env.example"

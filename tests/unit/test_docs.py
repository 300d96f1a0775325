"""The documents a user reads agree with the code: the contract names every topic, root field,
error code and service the code has; the configuration table's names and defaults are the
settings classes'; README's URL table is where the local stack listens; nothing points outside
the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLObjectType

from devstack.config import DEFAULT_MAIL_PAGE_PORT, FLEET
from shared.errors import ErrorCode
from shared.events.topics import TOPICS
from shared.services import GATEWAY
from tests.unit.test_env_examples import SERVICES, settings_class

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
CONFIGURATION = ROOT / "docs" / "configuration.md"
README = (ROOT / "README.md").read_text(encoding="utf-8")
_CODE = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"^[A-Z][A-Z0-9_]+$")


def test_the_contract_names_every_topic_root_field_error_code_and_service() -> None:
    from graphql_gateway.schema import schema

    missing = [t.name for t in TOPICS if f"`{t.name}`" not in CONTRACT]
    for root in ("Query", "Mutation", "Subscription"):
        root_type = schema._schema.get_type(root)
        assert isinstance(root_type, GraphQLObjectType)
        missing += [name for name in root_type.fields if f"`{name}" not in CONTRACT]
    missing += [code.value for code in ErrorCode if f"`{code.value}`" not in CONTRACT]
    missing += [
        spec.name for spec in FLEET if not re.search(rf"\| {spec.name} \| {spec.port} \|", CONTRACT)
    ]
    assert missing == [], f"docs/contract.md does not name: {missing}"


def configuration_rows() -> list[tuple[list[str], str]]:
    """(variables, `make run` default cell) of each row of the configuration table."""
    rows = []
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = [n for n in _CODE.findall(cells[0]) if _NAME.match(n)]
        rows.append((names, cells[2]))
    assert len(rows) > 20, "the configuration table was not found"
    return rows


def settings_fields() -> dict[str, list[Any]]:
    """Each environment name the services read -> its defaults (one per service reading it)."""
    fields: dict[str, list[Any]] = {}
    for service in SERVICES:
        for name, field in settings_class(service).model_fields.items():
            fields.setdefault(name.upper(), []).append(field.default)
    return fields


def as_written(value: Any) -> str:
    """A default as the table writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_every_configuration_row_names_settings_and_their_defaults() -> None:
    fields = settings_fields()
    unknown: list[str] = []
    wrong: list[str] = []
    for names, default_cell in configuration_rows():
        # OpenTelemetry's standard variables are read by its SDK (shared/tracing.py).
        unknown += [n for n in names if n not in fields and not n.startswith("OTEL_")]
        written = _CODE.findall(default_cell)
        # Only a cell that is nothing but one literal per variable states plain defaults.
        plain = re.sub(r"`[^`]+`|,|\s", "", default_cell) == ""
        if not plain or len(written) != len(names):
            continue
        for name, value in zip(names, written, strict=True):
            defaults = {as_written(d) for d in fields.get(name, [])}
            if defaults and value not in defaults:
                wrong.append(f"{name}: the table says {value}, the settings {sorted(defaults)}")
    assert unknown == [], f"docs/configuration.md names variables no service reads: {unknown}"
    assert wrong == []


@pytest.mark.parametrize("setting", ["LOG_LEVEL", "LOG_FORMAT", "ADMIN_EMAILS", "JWT_SECRET"])
def test_the_common_settings_are_in_the_table(setting: str) -> None:
    assert any(setting in names for names, _ in configuration_rows())


def test_readme_urls_are_where_the_local_stack_listens() -> None:
    ports = {
        int(port)
        for port in re.findall(r"127\.0\.0\.1:(\d+)|`:(\d+)`", README)
        for port in port
        if port
    }
    expected = {spec.port for spec in FLEET} | {DEFAULT_MAIL_PAGE_PORT}
    assert ports == expected
    assert f"<http://127.0.0.1:{GATEWAY.port}/graphql>" in README


def test_nothing_points_outside_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"],  # noqa: S607 - the developer's git
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    outside = [
        path
        for path in tracked
        if path.endswith((".md", ".py", ".json", ".yml", ".yaml", ".graphql"))
        and "../shared" in (ROOT / path).read_text(encoding="utf-8", errors="replace")
        and path != "tests/unit/test_docs.py"
    ]
    assert outside == []


def test_every_relative_link_of_readme_and_docs_resolves() -> None:
    pages = [ROOT / "README.md", ROOT / "clients" / "README.md", *(ROOT / "docs").glob("*.md")]
    broken = [
        f"{page.relative_to(ROOT)} -> {link}"
        for page in pages
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8"))
        if not link.startswith(("http://", "https://", "mailto:"))
        and not (page.parent / link).exists()
    ]
    assert broken == []

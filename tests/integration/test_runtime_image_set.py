"""An image's Python without Docker: the Dockerfile's own `uv export` of the lock installed into a
fresh virtualenv (hashes required, no pip in it), the image's files laid out as its COPY lines
and .dockerignore leave them, and each service's app built there: nothing an image lacks (the
local stand-ins, the CLI, the test tools) is needed. For the gateway, GraphiQL's files copied
as its build stage does, and its page then served offline."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.tools import REPO_ROOT, in_ci, uv_binary
from tests.unit.test_env_examples import SERVICES
from tests.unit.test_images import build_commands, dockerfile, image_files

pytestmark = pytest.mark.integration

INSTALL_TIMEOUT_SECONDS = 300
RUN_TIMEOUT_SECONDS = 60
NODE_MODULES = REPO_ROOT / "clients" / "node_modules"
SECRET = "runtime-set-check-secret-0123456789abcdefghij"


def run(command: list[str], cwd: Path, timeout: float = RUN_TIMEOUT_SECONDS) -> str:
    """Run a command with none of this test environment's Python variables; its output."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["JWT_SECRET"] = SECRET
    result = subprocess.run(  # noqa: S603 - fixed commands of this test
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{shlex.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def answer(output: str) -> str:
    """What a snippet printed after `RESULT ` (the apps log to stdout too)."""
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output
    return lines[-1].removeprefix("RESULT ")


@pytest.fixture(scope="module")
def runtime_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The python of a virtualenv holding exactly what an image's venv holds."""
    uv = uv_binary()
    if uv is None:
        reason = "uv is not in .tools/ (make install puts it there)"
        if in_ci():
            pytest.fail(f"{reason}; required in CI")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("runtime")
    export = next(c for c in build_commands(dockerfile(), "order_service") if "uv export" in c)
    words = shlex.split(export)
    words[words.index("--output-file") + 1] = str(folder / "requirements.txt")
    run([str(uv), *words[1:]], cwd=REPO_ROOT)
    run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], cwd=folder)
    python = folder / "venv" / "bin" / "python"
    run(
        [
            str(uv),
            "pip",
            "install",
            "--python",
            str(python),
            "--no-deps",
            "--require-hashes",
            "--only-binary",
            ":all:",
            "-r",
            str(folder / "requirements.txt"),
        ],
        cwd=folder,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    yield python


def lay_out(service: str, destination: Path) -> Path:
    """The image's /app: shared/ and the service's package, as the build context has them."""
    for path in image_files(service):
        target = destination / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return destination


def test_the_runtime_set_lacks_the_local_ops_and_dev_packages(runtime_python: Path) -> None:
    found = run(
        [
            str(runtime_python),
            "-c",
            "import importlib.util as u; print('RESULT', ' '.join(m for m in "
            "['fastapi', 'aiokafka', 'mongomock_motor', 'fakeredis', 'aiosmtpd', 'typer', "
            "'rich', 'pytest', 'yaml', 'pip'] if u.find_spec(m)))",
        ],
        cwd=REPO_ROOT,
    )
    # pyyaml is uvicorn[standard]'s (it reads a YAML log config), so it is a runtime package.
    assert answer(found).split() == ["fastapi", "aiokafka", "yaml"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_app_builds_with_the_runtime_set_only(
    runtime_python: Path, service: str, tmp_path: Path
) -> None:
    app = lay_out(service, tmp_path / "app")
    out = run(
        [
            str(runtime_python),
            "-c",
            f"from {service}.main import create_app\n"
            "app = create_app()\n"
            "paths = {getattr(route, 'path', '') for route in app.routes}\n"
            "print('RESULT', sorted(paths & {'/health', '/ready', '/metrics'}))",
        ],
        cwd=app,
    )
    assert answer(out) == "['/health', '/metrics', '/ready']"


def test_the_gateway_image_serves_graphiql_offline(runtime_python: Path, tmp_path: Path) -> None:
    if not (NODE_MODULES / "graphiql" / "package.json").is_file():
        reason = "clients/node_modules is missing (make install runs npm ci when npm is here)"
        if in_ci() or shutil.which("npm") is not None:
            pytest.fail(reason)
        pytest.skip(reason)
    app = lay_out("graphql_gateway", tmp_path / "app")
    assets = tmp_path / "graphiql"
    run(
        [str(runtime_python), "-m", "graphql_gateway.graphiql", str(NODE_MODULES), str(assets)], app
    )
    out = run(
        [
            str(runtime_python),
            "-c",
            "from pathlib import Path\n"
            "from graphql_gateway.graphiql import build_page\n"
            f"page = build_page(Path({str(assets)!r}))\n"
            "print('RESULT', page.offline, 'unpkg' in page.html, len(page.files))",
        ],
        cwd=app,
    )
    assert answer(out).split() == ["True", "False", "7"]

"""The committed AsyncAPI documents pass the official AsyncAPI parser (@asyncapi/parser from
clients/package.json, run by node): no errors and no warnings."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from devstack.apidocs import ASYNCAPI_DIR
from tests.fixtures.fleet import REPO_ROOT

pytestmark = pytest.mark.integration

VALIDATOR = REPO_ROOT / "clients" / "validate-asyncapi.mjs"
PARSER = REPO_ROOT / "clients" / "node_modules" / "@asyncapi" / "parser"
PARSER_TIMEOUT_SECONDS = 120


def test_every_asyncapi_document_is_valid() -> None:
    node = shutil.which("node")
    if node is None or (shutil.which("npm") is None and not PARSER.exists()):
        pytest.skip("node/npm are not installed here: the AsyncAPI parser cannot run")
    assert PARSER.exists(), "run `make install` (npm ci --prefix clients)"
    files = sorted(ASYNCAPI_DIR.glob("*.yaml"))
    assert files
    result = subprocess.run(  # noqa: S603 - our own script on our own files
        [node, str(VALIDATOR), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=PARSER_TIMEOUT_SECONDS,
        check=False,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == len(files)
    for report in reports:
        assert report["parsed"], report
        assert report["errors"] == [], report
        assert report["warnings"] == [], report

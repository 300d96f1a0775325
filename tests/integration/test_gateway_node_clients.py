"""Real clients against the gateway under uvicorn: the GraphQL-over-HTTP spec's reference
audit (npm graphql-http, `auditServer`) with no error and no warning, and an Apollo Client
(npm @apollo/client) with the batch HTTP link and the persisted-query link over GET. Skipped
with a reason when node or the npm packages are missing, except under CI (`CI` set)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fixtures.fleet import REPO_ROOT
from tests.integration import test_gateway_orders
from tests.integration.test_gateway_orders import LiveGateway, Services, serve_gateway

pytestmark = pytest.mark.integration
services = test_gateway_orders.services
gateway = test_gateway_orders.gateway

CLIENTS = REPO_ROOT / "clients"
NODE_TIMEOUT_SECONDS = 120


def node_or_skip(package: str) -> str:
    """The node binary, with `package` installed in clients/node_modules."""
    node = shutil.which("node")
    installed = (CLIENTS / "node_modules" / package / "package.json").exists()
    if node is None or not installed:
        reason = f"node and npm package {package} are needed (make install)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return node


async def run_node(node: str, script: str, *args: str) -> dict[str, Any]:
    """Run a script of clients/ without blocking the loop the gateway is served from; its
    last JSON line."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(CLIENTS / script),
        *args,
        cwd=CLIENTS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT_SECONDS)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, out.decode() + err.decode()
    report: dict[str, Any] = json.loads(lines[-1])
    report["returncode"] = process.returncode
    return report


@pytest.fixture(scope="module")
async def trusted_gateway(gateway: LiveGateway) -> AsyncIterator[LiveGateway]:
    """A second gateway on the same stand-ins that runs only the committed manifest's
    documents (graphql_gateway/trusted-documents.json), under uvicorn."""
    settings = gateway.app.state.gateway.settings.model_copy(
        update={"trusted_documents_only": True}
    )
    async with serve_gateway(settings) as live:
        yield live


async def test_the_graphql_over_http_audit_passes_without_warnings(gateway: LiveGateway) -> None:
    node = node_or_skip("graphql-http")
    report = await run_node(node, "graphql-http-audit.mjs", f"{gateway.url}/graphql")
    assert report["problems"] == [], json.dumps(report["problems"], indent=2)
    assert report["error"] == report["warn"] == 0
    assert report["ok"] > 0, report
    assert report["returncode"] == 0


async def test_an_apollo_client_registers_with_batches_and_reads_back_by_persisted_get(
    gateway: LiveGateway, services: Services
) -> None:
    node = node_or_skip("@apollo/client")
    report = await run_node(node, "apollo-client-check.cjs", f"{gateway.url}/graphql")
    assert report["ok"], report
    assert report["userId"] in services.users.users
    sent = report["sent"]
    assert any(request["batch"] for request in sent)
    assert sent[-1] == {"method": "GET", "batch": False, "hasQuery": False, "persisted": True}


async def test_the_apollo_client_runs_on_trusted_documents_only(
    trusted_gateway: LiveGateway, services: Services
) -> None:
    """Its operations are in the manifest the command writes from clients/documents: with
    TRUSTED_DOCUMENTS_ONLY=true it still registers and reads back, and nothing else runs."""
    node = node_or_skip("@apollo/client")
    report = await run_node(node, "apollo-client-check.cjs", f"{trusted_gateway.url}/graphql")
    assert report["ok"], report
    assert report["userId"] in services.users.users
    other = await trusted_gateway.http.post("/graphql", json={"query": "{ __typename }"})
    assert other.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"

"""The Postman collection (clients/postman) run by newman against the end-to-end fleet: every
request answers without errors and every test script passes; the collection holds every query
and mutation of the gateway's schema."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from graphql_gateway.schema import build_schema
from tests.fixtures.fleet import REPO_ROOT, RunningFleet

pytestmark = pytest.mark.e2e

POSTMAN = REPO_ROOT / "clients" / "postman"
COLLECTION = POSTMAN / "fleet.postman_collection.json"
ENVIRONMENT = POSTMAN / "fleet.postman_environment.json"
NEWMAN = REPO_ROOT / "clients" / "node_modules" / ".bin" / "newman"
ARTIFACTS = REPO_ROOT / "test-artifacts"
NEWMAN_TIMEOUT_SECONDS = 120
DOCUMENT_CACHE_SIZE = 1


def requests_of(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The collection's requests, folders flattened, in order."""
    found: list[dict[str, Any]] = []
    for item in items:
        found.extend(requests_of(item["item"]) if "item" in item else [item])
    return found


def test_the_collection_has_every_query_and_mutation() -> None:
    collection = json.loads(COLLECTION.read_text())
    assert collection["info"]["schema"].endswith("/v2.1.0/collection.json")
    names = {request["name"] for request in requests_of(collection["item"])}
    schema = build_schema(DOCUMENT_CACHE_SIZE)
    operations = {
        name
        for type_name in ("Query", "Mutation")
        for name in schema._schema.get_type(type_name).fields  # type: ignore[union-attr]
    }
    assert operations, "no operations in the schema"
    assert operations <= names, f"missing from the collection: {sorted(operations - names)}"


def run_newman(fleet: RunningFleet, environment: Path, run: str) -> dict[str, Any]:
    """One newman run of the collection; its JSON report's run. The environment it ends with
    is exported next to the report, as the Postman app keeps it between runs."""
    report = ARTIFACTS / f"newman-report-{run}.json"
    result = subprocess.run(  # noqa: S603 - our own newman on our own collection
        [
            str(NEWMAN),
            "run",
            str(COLLECTION),
            "--environment",
            str(environment),
            "--env-var",
            f"graphqlUrl={fleet.graphql}",
            "--export-environment",
            str(ARTIFACTS / f"newman-environment-{run}.json"),
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(report),
            "--color",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=NEWMAN_TIMEOUT_SECONDS,
        check=False,
    )
    output = f"newman run {run}:\n" + result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    newman_run: dict[str, Any] = json.loads(report.read_text())["run"]
    assert newman_run["failures"] == [], output
    return newman_run


def test_newman_runs_the_collection_green_twice_in_a_row(fleet: RunningFleet) -> None:
    """The second run starts from the environment the first ended with (as in the Postman app,
    where the environment keeps its values): a fresh email each run, nothing left over."""
    if shutil.which("npm") is None and not NEWMAN.exists():
        pytest.skip("npm is not installed here: `make install` could not install newman")
    assert NEWMAN.exists(), "newman is missing: run `make install` (npm ci --prefix clients)"
    ARTIFACTS.mkdir(exist_ok=True)
    expected = {
        request["name"] for request in requests_of(json.loads(COLLECTION.read_text())["item"])
    }
    emails = []
    environment = ENVIRONMENT
    for run in ("first", "second"):
        newman_run = run_newman(fleet, environment, run)
        executed = {execution["item"]["name"] for execution in newman_run["executions"]}
        assert executed == expected
        assert newman_run["stats"]["assertions"]["failed"] == 0
        assert newman_run["stats"]["assertions"]["total"] >= 3 * len(expected)
        environment = ARTIFACTS / f"newman-environment-{run}.json"
        values = {v["key"]: v["value"] for v in json.loads(environment.read_text())["values"]}
        emails.append(values["email"])
    assert emails[0] != emails[1], "both runs registered the same address"

"""Write the fleet's API documents: the gateway's GraphQL schema (docs/schema.graphql, the public
API's contract), AsyncAPI 3 per service (docs/asyncapi/<service>.yaml, from shared/events) and
OpenAPI per REST service (docs/openapi/<service>.json, from each app's `app.openapi()`). Run
`python -m devstack.apidocs` after changing the schema, an event or a route;
tests/unit/test_asyncapi.py fails while the committed files differ from these."""

from __future__ import annotations

import importlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from devstack.asyncapi import documents
from shared.services import GATEWAY, SERVICES

REPO_ROOT = Path(__file__).resolve().parents[1]
ASYNCAPI_DIR = REPO_ROOT / "docs" / "asyncapi"
OPENAPI_DIR = REPO_ROOT / "docs" / "openapi"
GRAPHQL_SCHEMA_FILE = REPO_ROOT / "docs" / "schema.graphql"
# The gateway's API is GraphQL (its schema is its document); the others serve REST.
REST_SERVICES = tuple(service.name for service in SERVICES if service is not GATEWAY)
# Building an app reads settings; the secret is never used to document routes (a random one:
# the settings refuse a placeholder).
_DOCUMENTING_SECRET = secrets.token_urlsafe(48)


def asyncapi_texts() -> dict[str, str]:
    """File name -> YAML text of each AsyncAPI document."""
    import yaml

    return {
        f"{service}.yaml": yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
        for service, document in documents().items()
    }


def openapi_document(service: str) -> dict[str, Any]:
    """The OpenAPI document of one service's FastAPI app (nothing is started)."""
    os.environ.setdefault("JWT_SECRET", _DOCUMENTING_SECRET)
    module = importlib.import_module(f"{service}.main")
    app = module.create_app()
    document: dict[str, Any] = app.openapi()
    return document


def openapi_texts() -> dict[str, str]:
    """File name -> JSON text of each OpenAPI document."""
    return {
        f"{service}.json": json.dumps(openapi_document(service), indent=2, sort_keys=False) + "\n"
        for service in REST_SERVICES
    }


def graphql_schema_text() -> str:
    """The gateway's schema in GraphQL's schema language, as a client introspecting it sees it."""
    from graphql_gateway.schema import schema

    return f"{schema.as_str()}\n"


def expected_files() -> dict[Path, str]:
    """Every generated file and its text."""
    files = {GRAPHQL_SCHEMA_FILE: graphql_schema_text()}
    files.update({ASYNCAPI_DIR / name: text for name, text in asyncapi_texts().items()})
    files.update({OPENAPI_DIR / name: text for name, text in openapi_texts().items()})
    return files


def main() -> int:
    for path, text in expected_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

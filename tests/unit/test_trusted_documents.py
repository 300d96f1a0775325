"""The trusted-documents manifest (graphql_gateway/trusted_documents.py): one command writes it
from the shipped clients, the committed one is up to date, and the gateway loads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphql_gateway.persisted import (
    DEFAULT_MANIFEST,
    MANIFEST_FORMAT,
    document_hash,
    load_manifest,
)
from graphql_gateway.trusted_documents import (
    DEFAULT_SOURCES,
    build_manifest,
    main,
    postman_documents,
)


def test_the_committed_manifest_is_what_the_command_writes_now() -> None:
    committed = json.loads(DEFAULT_MANIFEST.read_text(encoding="utf-8"))
    assert committed == build_manifest(list(DEFAULT_SOURCES)), (
        "run `python -m graphql_gateway.trusted_documents` after changing a shipped client"
    )


def test_every_postman_request_is_trusted_as_it_is_sent() -> None:
    trusted = load_manifest(DEFAULT_MANIFEST)
    collection = json.loads(DEFAULT_SOURCES[0].read_text(encoding="utf-8"))
    documents = list(postman_documents(collection))
    assert len(documents) >= 13
    for name, document in documents:
        assert trusted.get(document_hash(document)) == document, name


def test_graphql_files_give_each_operation_with_its_fragments(tmp_path: Path) -> None:
    source = tmp_path / "demo.graphql"
    source.write_text(
        "fragment F on User { id }\n"
        "query A { getUserDetails { ...F } }\n"
        "query B { orders { id } }\n"
    )
    output = tmp_path / "manifest.json"
    main([str(source), "--output", str(output)])
    manifest = json.loads(output.read_text())
    assert manifest["format"] == MANIFEST_FORMAT
    bodies: dict[str, set[str]] = {}
    for operation in manifest["operations"]:
        bodies.setdefault(operation["name"], set()).add(operation["body"])
    a = "query A {\n  getUserDetails {\n    ...F\n  }\n}\n\nfragment F on User {\n  id\n}"
    assert bodies["A"] == {a, a + "\n"}
    b = "query B {\n  orders {\n    id\n  }\n}"
    assert bodies["B"] == {b, b + "\n"}
    assert set(load_manifest(output).values()) == bodies["A"] | bodies["B"]


def test_a_manifest_whose_ids_lie_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    body = "{ __typename }"
    path.write_text(json.dumps({"format": MANIFEST_FORMAT, "version": 1, "operations": [
        {"id": document_hash(body + " "), "name": "x", "type": "query", "body": body}
    ]}))  # fmt: skip
    with pytest.raises(ValueError, match="not its sha256"):
        load_manifest(path)

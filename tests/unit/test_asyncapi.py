"""The committed GraphQL schema (docs/schema.graphql), AsyncAPI (docs/asyncapi) and OpenAPI
(docs/openapi) documents are exactly what `python -m devstack.apidocs` generates from the gateway's
schema, the topic registry, the event models and the apps;
the AsyncAPI documents cover every topic and every consumer group, and every `$ref` resolves."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from devstack.apidocs import (
    ASYNCAPI_DIR,
    GRAPHQL_SCHEMA_FILE,
    OPENAPI_DIR,
    REST_SERVICES,
    expected_files,
)
from devstack.asyncapi import SERVICES, documents
from shared.events.models import EVENT_TYPES
from shared.events.topics import TOPICS
from shared.services import GATEWAY, publishers_of

REGENERATE = (
    "run `python -m devstack.apidocs` and commit docs/schema.graphql, docs/asyncapi and "
    "docs/openapi"
)


def test_the_committed_documents_are_the_generated_ones() -> None:
    expected = expected_files()
    assert len(expected) == 1 + len(SERVICES) + len(REST_SERVICES)
    stale = [
        str(path.name)
        for path, text in expected.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert stale == [], f"out of date: {stale}; {REGENERATE}"
    committed = {GRAPHQL_SCHEMA_FILE, *ASYNCAPI_DIR.iterdir(), *OPENAPI_DIR.iterdir()}
    assert committed == set(expected), f"files nobody generates: {committed - set(expected)}"


def test_every_event_has_a_publisher_among_the_services() -> None:
    for model in EVENT_TYPES.values():
        publishers = publishers_of(model.topic)
        assert publishers, model.topic
        assert set(publishers) <= set(SERVICES)


def operations(document: dict[str, Any], action: str) -> set[str]:
    channels = document["channels"]
    return {
        channels[op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
        for op in document["operations"].values()
        if op["action"] == action
    }


def test_every_topic_is_sent_by_someone_and_every_group_receives_its_topics() -> None:
    docs = documents()
    sent = set().union(*(operations(doc, "send") for doc in docs.values()))
    assert {t.name for t in TOPICS} <= sent
    for t in TOPICS:
        for group in t.consumer_groups:
            assert t.name in operations(docs[group], "receive"), (group, t.name)
            assert t.dead_letter in operations(docs[group], "send"), (group, t.dead_letter)
    assert set(GATEWAY.broadcasts_read) == operations(docs[GATEWAY.name], "receive")


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in refs(item)]
    return []


@pytest.mark.parametrize("service", SERVICES)
def test_every_reference_of_a_committed_document_resolves(service: str) -> None:
    document = yaml.safe_load((ASYNCAPI_DIR / f"{service}.yaml").read_text(encoding="utf-8"))
    assert document["asyncapi"].startswith("3.")
    found = refs(document)
    assert found
    for ref in found:
        assert resolve(document, ref) is not None, ref
    for channel_id in document["channels"]:
        assert channel_id.replace("-", "").replace("_", "").isalnum(), channel_id

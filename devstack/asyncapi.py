"""AsyncAPI 3 documents of the fleet's events, one per service, generated from the service
registry (shared/services.py: who publishes and reads what), the topic registry
(shared/events/topics.py) and the payload models (shared/events/models.py, as pydantic JSON
schema). `python -m devstack.apidocs` writes them to docs/asyncapi/<service>.yaml;
tests/unit/test_asyncapi.py checks the committed files equal what this generates."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from shared.events.envelope import Envelope
from shared.events.models import EVENT_TYPES, Event
from shared.events.topics import DLQ_PARTITIONS, dead_letter_topic, topic
from shared.publisher import CORRELATION_HEADER, EVENT_TYPE_HEADER
from shared.services import SERVICES as REGISTERED_SERVICES
from shared.services import service_named

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
DOCS_VERSION = "1.0.0"
SCHEMAS = "#/components/schemas/"

# The services with events to document (the registry says who publishes and reads what).
SERVICES = tuple(
    service.name
    for service in REGISTERED_SERVICES
    if service.publishes or service.consumes or service.broadcasts_read
)
DLQ_HEADERS = {
    "dlq_error": "The last error: its type and message.",
    "dlq_failure": (
        "Why: poison (not an envelope, or invalid), permanent (refused for good) or transient"
        " (kept failing past the retry horizon)."
    ),
    "dlq_attempts": "How many times the handler ran (0: the bytes were not an envelope).",
    "dlq_original_topic": "The topic the message came from.",
    "dlq_original_partition": "Its partition there.",
    "dlq_original_offset": "Its offset there.",
    "dlq_first_failure": "When the first attempt failed (ISO 8601, UTC).",
    "dlq_consumer_group": "The consumer group whose handler failed.",
}


def _channel_id(name: str) -> str:
    return name.replace(".", "_")


def _event_of_topic() -> dict[str, type[Event]]:
    return {model.topic: model for model in EVENT_TYPES.values()}


def component_schemas() -> dict[str, Any]:
    """The JSON schema of every payload model (and what they refer to)."""
    models = [(model, "validation") for model in EVENT_TYPES.values()]
    _, top = models_json_schema(models, ref_template=SCHEMAS + "{model}")  # type: ignore[arg-type]
    return dict(sorted(top["$defs"].items()))


def _envelope_schema(model: type[Event]) -> dict[str, Any]:
    envelope = Envelope.model_json_schema()
    properties = dict(envelope["properties"])
    properties["type"] = {"const": model.event_type, "type": "string", "title": "Type"}
    properties["data"] = {"$ref": SCHEMAS + model.__name__}
    return {
        "type": "object",
        "title": f"{model.event_type} envelope",
        "description": "The fleet's JSON envelope; `id` is the idempotency key.",
        "required": envelope["required"],
        "properties": properties,
    }


def _message(model: type[Event]) -> dict[str, Any]:
    return {
        "name": model.event_type,
        "title": model.event_type,
        "summary": (model.__doc__ or model.event_type).strip().splitlines()[0],
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "properties": {
                CORRELATION_HEADER: {"type": "string", "description": "The correlation id."},
                EVENT_TYPE_HEADER: {"type": "string", "const": model.event_type},
                "traceparent": {
                    "type": "string",
                    "description": "W3C trace context of the publish, when tracing is on.",
                },
                "tracestate": {
                    "type": "string",
                    "description": "W3C trace state, when tracing is on and there is some.",
                },
            },
        },
        "payload": {"$ref": f"{SCHEMAS}{model.event_type}Envelope"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"The `{model.key_field}`."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "DeadLetter",
        "title": "Dead letter",
        "summary": "A message whose handler kept failing, unchanged, with why in headers.",
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "properties": {
                name: {"type": "string", "description": text} for name, text in DLQ_HEADERS.items()
            },
        },
        "payload": {"description": "The original message's bytes, as they were."},
    }


def service_document(service: str) -> dict[str, Any]:
    """The AsyncAPI document of one service: the topics it sends to and receives from."""
    by_topic = _event_of_topic()
    registered = service_named(service)
    sends = sorted(registered.publishes)
    grouped = sorted(registered.consumes)
    receives = sorted({*grouped, *registered.broadcasts_read})

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas = component_schemas()

    def add_channel(name: str) -> str:
        model = by_topic[name]
        channel_id = _channel_id(name)
        messages[model.event_type] = _message(model)
        schemas[f"{model.event_type}Envelope"] = _envelope_schema(model)
        channels[channel_id] = {
            "address": name,
            "title": name,
            "messages": {model.event_type: {"$ref": f"#/components/messages/{model.event_type}"}},
            "bindings": {
                "kafka": {
                    "topic": name,
                    "partitions": topic(name).partitions,
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        return channel_id

    def message_ref(channel_id: str, name: str) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{channel_id}/messages/{by_topic[name].event_type}"}]

    for name in sends:
        channel_id = add_channel(name)
        operations[f"send_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"Publishes {by_topic[name].event_type} (acks=all, key = user id).",
            "messages": message_ref(channel_id, name),
        }
    for name in receives:
        channel_id = add_channel(name)
        grouped_here = name in grouped
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": (
                f"Consumes {by_topic[name].event_type} in group `{service}`; idempotent on the "
                "envelope id; commits after the work is stored."
                if grouped_here
                else f"Reads {by_topic[name].event_type} on every replica, without a group."
            ),
            "messages": message_ref(channel_id, name),
        }
        if grouped_here:
            operation["bindings"] = {
                "kafka": {
                    "groupId": {"type": "string", "const": service},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            }
        operations[f"receive_{channel_id}"] = operation
        if grouped_here:
            dlq = dead_letter_topic(name)
            dlq_id = _channel_id(dlq)
            messages["DeadLetter"] = _dead_letter_message()
            channels[dlq_id] = {
                "address": dlq,
                "title": dlq,
                "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
                "bindings": {
                    "kafka": {
                        "topic": dlq,
                        "partitions": DLQ_PARTITIONS,
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
            }
            operations[f"send_{dlq_id}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{dlq_id}"},
                "summary": f"A {name} message that keeps failing goes here and never blocks.",
                "messages": [{"$ref": f"#/channels/{dlq_id}/messages/DeadLetter"}],
            }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"{service} events",
            "version": DOCS_VERSION,
            "description": (
                f"What {service} publishes to and consumes from Kafka. Generated by "
                "`python -m devstack.apidocs` from shared/events; do not edit by hand."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "KAFKA_BROKER (make run starts an embedded broker).",
            }
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": dict(sorted(messages.items())),
            "schemas": _reachable(schemas, messages),
        },
    }


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = (
            {node["$ref"][len(SCHEMAS) :]}
            if str(node.get("$ref", "")).startswith(SCHEMAS)
            else set()
        )
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def _reachable(schemas: dict[str, Any], messages: dict[str, Any]) -> dict[str, Any]:
    """Only the schemas the messages use, directly or not, sorted by name."""
    todo, kept = _refs(messages), set()
    while todo:
        name = todo.pop()
        if name not in kept:
            kept.add(name)
            todo |= _refs(schemas[name])
    return {name: schemas[name] for name in sorted(kept)}


def documents() -> dict[str, dict[str, Any]]:
    """Every service's document, by service name."""
    return {service: service_document(service) for service in SERVICES}

"""One placed order is one trace: gateway (GraphQL operation) -> order service -> outbox publish
-> user service consumer -> notification service consumer -> SMTP send, linked parent to child
across the HTTP and Kafka hops. The services run in this process under uvicorn on free ports
(one tracer provider, the SDK's in-memory exporter), on the session's broker; the
spans never carry a token, a password or an email body.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from devstack.parts import LOOPBACK
from graphql_gateway.main import create_app as gateway_app
from graphql_gateway.settings import GatewaySettings
from notification_service.main import create_app as notification_app
from notification_service.settings import NotificationSettings
from order_service.main import create_app as order_app
from order_service.settings import OrderSettings
from shared import tracing
from tests.fixtures.parts import TEST_JWT_SECRET, SmtpRecorder, eventually
from tests.integration.test_gateway import Served
from user_service.main import create_app as user_app
from user_service.settings import UserSettings

pytestmark = pytest.mark.integration

PASSWORD = "tracing secret " + uuid.uuid4().hex[:8]
REGISTER = """
mutation Register($name: String!, $email: String!, $password: String!) {
  registerUser(name: $name, email: $email, password: $password) { token user { id } }
}"""
PLACE = """
mutation PlaceOrder($products: [ProductInput!]!) {
  placeOrder(products: $products) { id status }
}"""
LAMP = {"productId": "7", "quantity": 1}  # a product of the shipped catalog


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this module's services, every span kept in memory."""
    exporter = InMemorySpanExporter()
    assert tracing.configure("fleet-under-test", SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing.shutdown()
        assert not tracing.enabled()


@dataclass
class TracedFleet:
    gateway: httpx.AsyncClient
    smtp: SmtpRecorder
    exporter: InMemorySpanExporter

    async def graphql(
        self, query: str, variables: dict[str, Any], token: str | None = None
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.gateway.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert "errors" not in response.json(), response.text
        return response

    async def register(self, name: str) -> tuple[str, str]:
        """A new user's email and token."""
        email = f"{name.lower()}-{uuid.uuid4().hex}@example.com"
        registered = await self.graphql(
            REGISTER, {"name": name, "email": email, "password": PASSWORD}
        )
        return email, registered.json()["data"]["registerUser"]["token"]


@pytest.fixture(scope="module")
async def fleet(
    spans: InMemorySpanExporter, kafka_broker: str, redis_url: str, smtp_server: SmtpRecorder
) -> AsyncIterator[TracedFleet]:
    common: dict[str, Any] = {
        "_env_file": None,
        "kafka_broker": kafka_broker,
        "jwt_secret": TEST_JWT_SECRET,
        "mongo_uri": "memory://",
        "kafka_fetch_max_wait_ms": 50,
    }
    database = f"trace_{uuid.uuid4().hex[:8]}"
    users = await Served(
        user_app(UserSettings(**common, mongo_database=f"u{database}")), "on"
    ).start()
    orders = await Served(
        order_app(OrderSettings(**common, mongo_database=f"o{database}")), "on"
    ).start()
    notifications = await Served(
        notification_app(
            NotificationSettings(
                **common,
                mongo_database=f"n{database}",
                smtp_host=LOOPBACK,
                smtp_port=smtp_server.port,
                smtp_starttls=False,
                mail_poll_interval_seconds=0.2,
            )
        ),
        "on",
    ).start()
    gateway = await Served(
        gateway_app(
            GatewaySettings(
                _env_file=None,
                kafka_broker=kafka_broker,
                jwt_secret=TEST_JWT_SECRET,
                redis_url=redis_url,
                user_service_url=users.url,
                order_service_url=orders.url,
                notification_service_url=notifications.url,
            )
        ),
        "on",
    ).start()
    served = [gateway, notifications, orders, users]
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            yield TracedFleet(client, smtp_server, spans)
    finally:
        for server in served:
            await server.stop()


def by_id(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {span.context.span_id: span for span in spans}


def parent_of(span: ReadableSpan, index: dict[int, ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    assert span.parent.span_id in index, f"the parent of {span.name} is not in the trace"
    return index[span.parent.span_id]


def ancestors(span: ReadableSpan, index: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None and span.parent.span_id in index:
        span = index[span.parent.span_id]
        chain.append(span)
    return chain


def one(spans: list[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    found = [span for span in spans if span.name == name and span.kind == kind]
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


async def test_a_placed_order_is_one_trace_from_the_gateway_to_the_smtp_send(
    fleet: TracedFleet,
) -> None:
    email, token = await fleet.register("Tracy")
    placed = await fleet.graphql(PLACE, {"products": [LAMP]}, token)
    correlation_id = placed.headers["x-correlation-id"]
    order_id = placed.json()["data"]["placeOrder"]["id"]

    def order_trace() -> list[ReadableSpan] | None:
        finished = list(fleet.exporter.get_finished_spans())
        operation = [s for s in finished if s.name == "mutation PlaceOrder"]
        if not operation:
            return None
        trace_id = operation[0].context.trace_id
        trace = [s for s in finished if s.context.trace_id == trace_id]
        return trace if any(s.name == "smtp send" for s in trace) else None

    trace = await eventually(order_trace, timeout=60, what="the order's trace to reach SMTP")
    assert order_id
    # The welcome mail, then the order's.
    await eventually(lambda: len(fleet.smtp.to(email)) == 2, what="the order's mail")
    index = by_id(trace)

    # Gateway: the request, its GraphQL operation, the call to the order service.
    operation = one(trace, "mutation PlaceOrder", SpanKind.INTERNAL)
    assert operation.attributes is not None
    assert operation.attributes["graphql.operation.name"] == "PlaceOrder"
    assert operation.attributes["graphql.operation.type"] == "mutation"
    request = parent_of(operation, index)
    assert request.kind == SpanKind.SERVER
    # The root: the request, or (httpx is instrumented in this whole process) the test's call.
    assert [s.kind for s in ancestors(request, index)] in ([], [SpanKind.CLIENT])
    assert request.attributes is not None and request.attributes["url.path"] == "/graphql"
    assert request.attributes["fleet.correlation_id"] == correlation_id

    # Order service: a server span whose parent is the gateway's client span (HTTP hop).
    [order_request] = [
        s
        for s in trace
        if s.kind == SpanKind.SERVER and (s.attributes or {}).get("url.path") == "/orders"
    ]
    call = parent_of(order_request, index)
    assert call.kind == SpanKind.CLIENT and operation in ancestors(call, index)
    assert (order_request.attributes or {})["fleet.correlation_id"] == correlation_id

    # Outbox publish -> the user service's consumer (Kafka hop).
    sent_order = one(trace, "send order.placed", SpanKind.PRODUCER)
    assert order_request in ancestors(sent_order, index)
    got_order = one(trace, "process order.placed", SpanKind.CONSUMER)
    assert parent_of(got_order, index) is sent_order
    attributes = got_order.attributes or {}
    assert attributes["messaging.destination.name"] == "order.placed"
    assert attributes["messaging.consumer.group.name"] == "user_service"
    assert "messaging.destination.partition.id" in attributes
    assert attributes["fleet.correlation_id"] == correlation_id
    assert "messaging.destination.partition.id" in (sent_order.attributes or {})

    # The user service's notification request -> the notification service's consumer.
    sent_request = one(trace, "send notification.requested", SpanKind.PRODUCER)
    assert parent_of(sent_request, index) is got_order
    got_request = one(trace, "process notification.requested", SpanKind.CONSUMER)
    assert parent_of(got_request, index) is sent_request
    assert (got_request.attributes or {})["messaging.consumer.group.name"] == (
        "notification_service"
    )

    # The background sender continues the trace of the event that asked for the mail.
    smtp = one(trace, "smtp send", SpanKind.CLIENT)
    assert parent_of(smtp, index) is got_request
    assert (smtp.attributes or {})["fleet.correlation_id"] == correlation_id
    assert smtp.end_time is not None and smtp.status.is_ok


DETAILS = "query Me { getUserDetails { id name } }"


async def test_a_read_answered_from_the_cache_still_names_its_operation(
    fleet: TracedFleet,
) -> None:
    _email, token = await fleet.register("Cass")

    async def answered_from_the_cache() -> ReadableSpan | None:
        # The first read fills the cache (stored once its answer is sent); a later one hits it.
        answered = await fleet.graphql(DETAILS, {}, token)
        correlation_id = answered.headers["x-correlation-id"]
        return next(
            (
                s
                for s in fleet.exporter.get_finished_spans()
                if s.kind == SpanKind.SERVER
                and (s.attributes or {}).get("fleet.correlation_id") == correlation_id
                and (s.attributes or {}).get("fleet.graphql.cached_answer")
            ),
            None,
        )

    span = await eventually(answered_from_the_cache, what="a read answered from the cache")
    assert (span.attributes or {})["graphql.operation.name"] == "Me"


_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


async def test_no_span_carries_a_token_password_or_email_body(fleet: TracedFleet) -> None:
    email, token = await fleet.register("Sid")
    await fleet.graphql(PLACE, {"products": [LAMP]}, token)
    mails = await eventually(lambda: fleet.smtp.to(email), timeout=60, what="a mail")
    body = "\n".join(
        part.get_payload(decode=True).decode()  # type: ignore[union-attr]
        for part in mails[0].walk()
        if part.get_content_maintype() == "text"
    )
    pixel = re.search(r"/track/([^\"'\s]+)\.gif", body)
    assert pixel is not None, body
    opened = await fleet.gateway.get(f"/track/{pixel.group(1)}.gif")
    assert opened.status_code == 200
    await eventually(
        lambda: any(
            "/track/" in str((s.attributes or {}).get("url.path", ""))
            for s in fleet.exporter.get_finished_spans()
            if s.kind == SpanKind.SERVER
        ),
        what="the pixel's server spans",
    )
    secrets = [PASSWORD, token, pixel.group(1), email]
    body_lines = [line.strip() for line in body.splitlines() if len(line.strip()) > 20]
    for span in fleet.exporter.get_finished_spans():
        values = [str(value) for value in (span.attributes or {}).values()]
        values += [str(v) for event in span.events for v in (event.attributes or {}).values()]
        for value in values:
            assert not _JWT.search(value), f"{span.name}: {value}"
            for secret in secrets:
                assert secret not in value, f"{span.name} carries a secret: {value}"
            for line in body_lines:
                assert line not in value, f"{span.name} carries the email body: {value}"

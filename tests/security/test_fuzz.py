"""Fuzzing with numbers: schemathesis against each service's OpenAPI schema and the gateway's
GraphQL schema, hypothesis for the event envelope and the consumers. Zero 5xx (and zero
INTERNAL_SERVER_ERROR) over every case run; the counts are printed (`pytest -s` shows them).

Hypothesis runs in a worker thread; each generated request is sent on the test's event loop
(where the in-process apps live) and waited for. FUZZ_MAX_EXAMPLES sets the cases per operation
and mode (positive: valid by the schema; negative: not).
"""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import schemathesis
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from devstack.apidocs import REST_SERVICES
from shared.events import Envelope
from shared.events.topics import TOPICS, dead_letter_topic
from tests.fixtures.parts import eventually, read_all
from tests.security.conftest import World, register, unique_email

pytestmark = pytest.mark.integration

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "20"))
POISON_PER_TOPIC = int(os.environ.get("FUZZ_POISON_PER_TOPIC", "4"))
CALL_TIMEOUT_SECONDS = 30.0
SERVER_ERROR = 500
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=False,
    phases=[Phase.generate],  # counts, not shrinking: a 5xx is reported with its request
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Tally:
    """Status codes seen per operation, and every request that answered a server error."""

    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def report(self, title: str) -> None:
        total = sum(self.statuses.values())
        print(f"\n{title}: {total} cases; statuses {dict(sorted(self.statuses.items()))}")


def in_thread(loop: asyncio.AbstractEventLoop) -> Callable[[Any], Any]:
    """Run a coroutine on the test's loop from hypothesis's thread, and wait for it."""

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(CALL_TIMEOUT_SECONDS)

    return run


async def send(client: httpx.AsyncClient, kwargs: dict[str, Any]) -> httpx.Response:
    content = kwargs.get("data")
    if isinstance(content, str):
        content = content.encode()
    return await client.request(
        kwargs["method"],
        kwargs["url"],
        headers=kwargs.get("headers"),
        params=kwargs.get("params"),
        json=kwargs.get("json") if "json" in kwargs else None,
        content=content if isinstance(content, bytes) else None,
    )


def fuzz_openapi(
    schema_dict: dict[str, Any], client: httpx.AsyncClient, token: str, run: Callable[[Any], Any]
) -> Tally:
    tally = Tally()
    schema = schemathesis.openapi.from_dict(schema_dict)
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ_SETTINGS
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                kwargs = case.as_transport_kwargs(
                    base_url=str(client.base_url).rstrip("/"),
                    headers={"authorization": f"Bearer {token}"},
                )
                response = run(send(client, kwargs))
                tally.statuses[str(response.status_code)] += 1
                if response.status_code >= SERVER_ERROR:
                    tally.failures.append(
                        f"{kwargs['method']} {kwargs['url']} {kwargs.get('json')!r}"
                        f" -> {response.status_code} {response.text[:200]}"
                    )

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    check()
                except Unsatisfiable:
                    # Nothing to get wrong (no parameters, no body): no negative cases.
                    assert mode is GenerationMode.NEGATIVE
    return tally


@pytest.mark.parametrize("service", REST_SERVICES)
async def test_openapi_fuzzing_finds_no_server_error(world: World, service: str) -> None:
    fuzzer = await register(world.clients["user_service"], unique_email("fuzz"))
    token = world.admin.token if service == "kafka_admin_service" else fuzzer.token
    app = world.apps[service]
    run = in_thread(asyncio.get_running_loop())
    tally = await asyncio.to_thread(fuzz_openapi, app.openapi(), world.clients[service], token, run)
    tally.report(f"schemathesis {service}")
    assert sum(tally.statuses.values()) > 0
    assert tally.failures == []


INTROSPECTION = """query {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types {
      kind name
      fields(includeDeprecated: true) {
        name
        args { name defaultValue type { ...TypeRef } }
        type { ...TypeRef }
        isDeprecated deprecationReason
      }
      inputFields { name defaultValue type { ...TypeRef } }
      interfaces { ...TypeRef }
      enumValues(includeDeprecated: true) { name isDeprecated deprecationReason }
      possibleTypes { ...TypeRef }
    }
    directives { name locations args { name defaultValue type { ...TypeRef } } }
  }
}
fragment TypeRef on __Type {
  kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } }
}"""


def fuzz_graphql(
    introspection: dict[str, Any], client: httpx.AsyncClient, token: str, run: Callable[[Any], Any]
) -> Tally:
    tally = Tally()
    schema = schemathesis.graphql.from_dict(introspection)
    for result in schema.get_all_operations():
        operation = result.ok()

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            body = {"query": case.body}
            response = run(
                client.post("/graphql", json=body, headers={"authorization": f"Bearer {token}"})
            )
            codes = []
            if response.headers.get("content-type", "").startswith("application/json"):
                errors = response.json().get("errors") or []
                codes = [(e.get("extensions") or {}).get("code") for e in errors]
            tally.statuses[f"{response.status_code}:{'error' if codes else 'data'}"] += 1
            if response.status_code >= SERVER_ERROR or "INTERNAL_SERVER_ERROR" in codes:
                tally.failures.append(f"{body!r} -> {response.status_code} {response.text[:300]}")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check()
    return tally


async def test_graphql_fuzzing_finds_no_server_error(world: World) -> None:
    fuzzer = await register(world.clients["user_service"], unique_email("fuzz"))
    async with httpx.AsyncClient(
        base_url=world.gateway_url, timeout=CALL_TIMEOUT_SECONDS
    ) as client:
        introspection = (await client.post("/graphql", json={"query": INTROSPECTION})).json()
        run = in_thread(asyncio.get_running_loop())
        tally = await asyncio.to_thread(
            fuzz_graphql, introspection["data"], client, fuzzer.token, run
        )
    tally.report("schemathesis graphql")
    assert sum(tally.statuses.values()) > 0
    assert tally.failures == []


LINK_PAGES = ("/verify-email", "/reset-password", "/unsubscribe")
URL_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


async def test_link_pages_fuzzing_finds_no_server_error(world: World) -> None:
    """The pages of emailed links take any token and any form body: never a server error."""
    tally = Tally()
    async with httpx.AsyncClient(
        base_url=world.gateway_url, timeout=CALL_TIMEOUT_SECONDS
    ) as client:
        run = in_thread(asyncio.get_running_loop())

        @FUZZ_SETTINGS
        @given(
            page=st.sampled_from(LINK_PAGES),
            method=st.sampled_from(["GET", "POST"]),
            token=URL_TEXT.filter(lambda t: t not in ("", ".", "..") and "/" not in t),
            form=st.binary(max_size=500),
        )
        def check(page: str, method: str, token: str, form: bytes) -> None:
            url = f"{page}/{quote(token, safe='')}"
            headers = {"content-type": "application/x-www-form-urlencoded"}
            response = run(client.request(method, url, content=form, headers=headers))
            tally.statuses[str(response.status_code)] += 1
            if response.status_code >= SERVER_ERROR:
                tally.failures.append(f"{method} {url} {form!r} -> {response.status_code}")

        await asyncio.to_thread(check)
    tally.report("hypothesis link pages")
    assert sum(tally.statuses.values()) > 0
    assert tally.failures == []


# --- the event envelope and the consumers -------------------------------------------------

POISON_MARKER = b"\xfe\xffpoison:"


@given(raw=st.binary(max_size=2048))
@settings(max_examples=500, deadline=None, database=None)
def test_envelope_parsing_only_ever_refuses_cleanly(raw: bytes) -> None:
    try:
        Envelope.from_bytes(raw)
    except Exception as exc:
        assert type(exc).__name__ == "EnvelopeError"


# What JSON can carry (orjson: 64-bit integers, no lone surrogates).
json_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4)
    ),
    max_leaves=12,
)


def poison_strategy(topic: str) -> st.SearchStrategy[bytes]:
    """Bytes that are not an envelope, JSON that is not one, and envelopes whose data does
    not fit the topic's event; each starts or carries a marker so the test finds it again."""
    marker = uuid.uuid4().hex
    not_json = st.binary(max_size=512).map(lambda b: POISON_MARKER + marker.encode() + b)
    not_envelope = json_values.map(lambda v: orjson.dumps({"poison": marker, "value": v}))
    bad_data = st.dictionaries(json_text, json_values, max_size=4).map(
        lambda data: orjson.dumps(
            {
                "id": str(uuid.uuid4()),
                "type": "Poison",
                "version": 1,
                "occurred_at": "2026-01-01T00:00:00Z",
                "source": "fuzz",
                "correlation_id": marker,
                "data": {**data, "poison": marker},
            }
        )
    )
    return st.one_of(not_json, not_envelope, bad_data)


def draw_poison(topic: str, count: int) -> list[bytes]:
    drawn: list[bytes] = []

    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate])
    @given(raw=poison_strategy(topic))
    def collect(raw: bytes) -> None:
        drawn.append(raw)

    collect()
    return list(dict.fromkeys(drawn))


CONSUMED = [t for t in TOPICS if t.consumer_groups]
BROADCAST = [t for t in TOPICS if not t.consumer_groups]


async def test_random_bytes_on_every_consumed_topic_end_in_its_dlq(
    world: World, kafka_broker: str
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker, acks="all")
    await producer.start()
    sent: dict[str, list[bytes]] = {}
    try:
        for topic in CONSUMED:
            payloads = await asyncio.to_thread(draw_poison, topic.name, POISON_PER_TOPIC)
            sent[topic.name] = payloads
            for raw in payloads:
                await producer.send_and_wait(topic.name, raw, key=b"fuzz")
        # Topics read without a group (the gateway's broadcast reader): skipped, no crash.
        for topic in BROADCAST:
            for raw in await asyncio.to_thread(draw_poison, topic.name, POISON_PER_TOPIC):
                await producer.send_and_wait(topic.name, raw, key=b"fuzz")
    finally:
        await producer.stop()

    for topic in CONSUMED:
        wanted = sent[topic.name]

        async def dead_lettered(topic: Any = topic, wanted: list[bytes] = wanted) -> bool:
            values = Counter(r.value for r in await read_all(kafka_broker, topic.dead_letter))
            # Each consuming group dead-letters its own copy.
            return all(values[raw] >= len(topic.consumer_groups) for raw in wanted)

        await eventually(dead_lettered, timeout=60, what=f"the poison of {topic.name} in its DLQ")
        assert dead_letter_topic(topic.name) == topic.dead_letter
    counts = {t.name: len(sent[t.name]) for t in CONSUMED}
    print(f"\nhypothesis poison messages per topic (all dead-lettered): {counts}")
    # Nobody crashed: every service and the gateway are still ready.
    for name, client in world.clients.items():
        ready = await client.get("/ready")
        assert ready.status_code == 200, f"{name}: {ready.text}"
    async with httpx.AsyncClient(base_url=world.gateway_url) as gateway:
        ready = await gateway.get("/ready")
        assert ready.status_code == 200, ready.text

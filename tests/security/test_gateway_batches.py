"""A batch (a JSON array of operations) buys nothing against the limits: every operation in it
is checked for depth, aliases and cost on its own and counts against the rate limits as if sent
alone; the batch size is capped (GRAPHQL_BATCH_MAX_OPERATIONS)."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi import FastAPI

from tests.fixtures.apps import asgi_client
from tests.security import test_rate_limits
from tests.security.conftest import gateway_settings, running_gateway, send_users_to, unique_email
from tests.security.test_rate_limits import GATEWAY_PEER, LOGIN_PER_ADDRESS, unique_address

pytestmark = pytest.mark.integration
user_app = test_rate_limits.user_app

LOGIN = 'mutation($e: String!) { login(email: $e, password: "wrong-password") { token } }'


# Three levels below the root field (introspection fields count for no depth).
DEEP = "{ getUserDetails { purchase_history { products { title } } } }"
# 11 fields, two levels below the root field, no alias.
COSTLY = """{ getUserDetails {
  id name email preferences order_status orders { productId title category price } } }"""


async def test_each_operation_of_a_batch_meets_the_document_limits(
    redis_url: str, kafka_broker: str
) -> None:
    settings = gateway_settings(
        redis_url, kafka_broker, graphql_max_depth=2, graphql_max_aliases=3, graphql_max_cost=10
    )
    async with running_gateway(settings) as running:
        app = running.app
        async with asgi_client(app, "gw") as client:
            batch = [
                {"query": "{ __typename }"},
                {"query": DEEP},
                {"query": "{ " + " ".join(f"a{i}: __typename" for i in range(4)) + " }"},
                {"query": '{ __type(name: "Query") { fields { name type { name } } } }'},
                {"query": COSTLY},
            ]  # fmt: skip
            response = await client.post("/graphql", json=batch)
            assert response.status_code == 200
            ok, deep, aliased, fine, costly = response.json()
            assert ok == {"data": {"__typename": "Query"}}
            assert "exceeds maximum operation depth" in deep["errors"][0]["message"]
            assert "aliases" in aliased["errors"][0]["message"]
            assert "errors" not in fine, fine
            assert costly["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

            over = await client.post(
                "/graphql",
                json=[{"query": "{ __typename }"}] * (settings.graphql_batch_max_operations + 1),
            )
            assert over.status_code == 400


async def test_each_operation_of_a_batch_counts_against_the_rate_limits(
    user_app: FastAPI, redis_url: str, kafka_broker: str
) -> None:
    settings = gateway_settings(redis_url, kafka_broker)
    async with running_gateway(settings) as running:
        app = running.app
        send_users_to(running, user_app, GATEWAY_PEER)
        async with asgi_client(app, "gw", client=(unique_address(), 5555)) as client:
            batch = [
                {"query": LOGIN, "variables": {"e": unique_email("batch")}}
                for _ in range(LOGIN_PER_ADDRESS + 1)
            ]
            response = await client.post("/graphql", json=batch)
    assert response.status_code == 200
    found = Counter(item["errors"][0]["extensions"]["code"] for item in response.json())
    # One address, LOGIN_PER_ADDRESS allowed per minute: one batch is no way around it.
    assert found == {"UNAUTHENTICATED": LOGIN_PER_ADDRESS, "RATE_LIMITED": 1}

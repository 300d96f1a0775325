"""Promotions end to end, through GraphQL only, on a fleet of this module's own started like
`make run` with PROMOTION_INTERVAL_SECONDS set: a subscribed customer who opted in gets
promotions (never of what they bought) in the app and by email with a List-Unsubscribe
header, subscribing twice is one subscription, and they stop after the cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from scheduler_service.domain import promotion_order
from shared.catalog import shipped_products
from tests.e2e.conftest import running_fleet
from tests.e2e.test_recommendations import HISTORY, NOTIFICATIONS, PLACE, REGISTER
from tests.e2e.test_welcome_flow import PASSWORD, data_of, emails_to, error_code, graphql
from tests.e2e.test_welcome_flow import unique_email as new_email
from tests.fixtures.fleet import RunningFleet
from tests.fixtures.parts import eventually

pytestmark = pytest.mark.e2e

INTERVAL_SECONDS = "2"
FLOW_TIMEOUT_SECONDS = 30.0
SUBSCRIBED = "You are subscribed to promotions."
UNSUBSCRIBED = "You are unsubscribed from promotions."
# The first product of the rotation: bought, so it must never be promoted.
FIRST = promotion_order(shipped_products())[0]


@pytest.fixture(scope="module")
def promo_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    with running_fleet(
        tmp_path_factory.mktemp("promo-fleet"), {"PROMOTION_INTERVAL_SECONDS": INTERVAL_SECONDS}
    ) as running:
        yield running


@pytest.fixture
async def client(promo_fleet: RunningFleet) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def customer(
    client: httpx.AsyncClient, fleet: RunningFleet, preferences: list[str]
) -> tuple[str, str]:
    address = new_email()
    body = await graphql(
        client,
        fleet,
        REGISTER,
        {"name": "Pat", "email": address, "password": PASSWORD, "prefs": preferences},
    )
    return address, data_of(body)["registerUser"]["token"]


async def promotions(client: httpx.AsyncClient, fleet: RunningFleet, token: str) -> list[str]:
    body = await graphql(client, fleet, NOTIFICATIONS, token=token)
    return [n["content"] for n in data_of(body)["getUserNotifications"] if n["type"] == "promotion"]


async def test_promotions_arrive_exclude_purchases_and_stop_after_cancel(
    client: httpx.AsyncClient, promo_fleet: RunningFleet
) -> None:
    fleet = promo_fleet
    address, token = await customer(client, fleet, ["promotions"])
    line = {"productId": FIRST.id, "title": FIRST.title, "category": FIRST.category}
    data_of(await graphql(client, fleet, PLACE, {"products": [line]}, token=token))

    async def in_history() -> bool:
        body = await graphql(client, fleet, HISTORY, token=token)
        return bool(data_of(body)["getUserDetails"]["purchase_history"])

    await eventually(in_history, timeout=FLOW_TIMEOUT_SECONDS, what="the order in the history")
    for _ in range(2):
        body = await graphql(client, fleet, "mutation { taskSchedular }", token=token)
        assert data_of(body)["taskSchedular"] == SUBSCRIBED

    async def two() -> list[str]:
        found = await promotions(client, fleet, token)
        return found if len(found) >= 2 else []

    received = await eventually(two, timeout=FLOW_TIMEOUT_SECONDS, what="two promotions")
    assert all(FIRST.title not in content for content in received)
    assert len(set(received)) == len(received)  # one per period, rotating

    def mailed() -> list[Any]:
        return [m for m in emails_to(fleet.mail_dir, address) if m["List-Unsubscribe"]]

    [first_mail, *_] = await eventually(
        mailed, timeout=FLOW_TIMEOUT_SECONDS, what="a promotion email"
    )
    assert "/unsubscribe/" in first_mail["List-Unsubscribe"]
    assert first_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The one-click link (RFC 8058) goes through the gateway's public URL to the scheduler.
    link = first_mail["List-Unsubscribe"].strip().strip("<>")
    assert link.startswith(fleet.graphql.removesuffix("/graphql"))
    # A GET (a mail scanner, a link preview) only shows the confirm page.
    shown = await client.get(link)
    assert shown.status_code == 200
    assert '<form method="post">' in shown.text
    forged = await client.post(link[:-2] + ("xx" if not link.endswith("xx") else "yy"))
    assert forged.status_code == 404
    one_click = {"List-Unsubscribe": "One-Click"}
    unsubscribed = await client.post(link, data=one_click)
    assert unsubscribed.status_code == 200, unsubscribed.text
    assert "<h1>Unsubscribed</h1>" in unsubscribed.text

    body = await graphql(client, fleet, "mutation { cancelTaskSchedular }", token=token)
    assert data_of(body)["cancelTaskSchedular"] == UNSUBSCRIBED
    after_cancel = len(await promotions(client, fleet, token))

    # A second subscriber is the clock: each of its promotions is one more period.
    _, clock = await customer(client, fleet, [])
    body = await graphql(client, fleet, "mutation { taskSchedular }", token=clock)
    assert data_of(body)["taskSchedular"] == SUBSCRIBED

    async def periods(count: int) -> bool:
        return len(await promotions(client, fleet, clock)) >= count

    await eventually(lambda: periods(2), timeout=FLOW_TIMEOUT_SECONDS, what="two periods")
    # A promotion published in the instant of the cancel may still be stored after it.
    settled = len(await promotions(client, fleet, token))
    assert settled <= after_cancel + 1
    await eventually(lambda: periods(4), timeout=FLOW_TIMEOUT_SECONDS, what="two more periods")
    assert len(await promotions(client, fleet, token)) == settled


async def test_subscribing_needs_a_token(
    client: httpx.AsyncClient, promo_fleet: RunningFleet
) -> None:
    body = await graphql(client, promo_fleet, "mutation { taskSchedular }")
    assert error_code(body) == "UNAUTHENTICATED"

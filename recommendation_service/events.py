"""The recommendation flow (docs/contract.md section 3) and the co-purchase learning.

In (group `recommendation_service`): `order.placed` (co-purchase counts, once per order id),
`purchase-history.provided` (the user service's answer: score and publish).
Out, through the outbox of the request document: `purchase-history.requested`, then
`recommendation.generated` and `notification.requested` (type `recommendation`, emailed only
if the user has the `recommendations` preference).

A catalog outage leaves the request with its history; the retry loop scores it later. A
result is stored (with its events) before it becomes the user's latest list; if that second
write fails, a redelivery of the history or the retry loop finishes it.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from recommendation_service import recommender
from recommendation_service.repository import CoPurchaseLimits, RecommendationRepository
from recommendation_service.settings import RecommendationSettings
from shared.bus import Handler
from shared.catalog import CatalogClient, CatalogUnavailable, Product
from shared.events.envelope import Envelope
from shared.events.models import (
    NotificationRequested,
    OrderPlaced,
    PurchaseHistoryProvided,
    PurchaseHistoryRequested,
    RecommendationGenerated,
)
from shared.logging import get_logger
from shared.outbox import OutboxRelay, outbox_entry
from shared.publisher import EventPublisher
from shared.services import RECOMMENDATION
from shared.times import as_utc

log = get_logger(__name__)

CONSUMER_GROUP = RECOMMENDATION.name
EMAIL_PREFERENCE = "recommendations"
SUBJECT = "Products picked for you"


def notification_content(products: list[Product]) -> str:
    """What the user reads: the recommended titles."""
    if not products:
        return "We have no new recommendations for you right now; check back after your next order."
    return "Recommended for you: " + "; ".join(p.title for p in products) + "."


def history_items(event: PurchaseHistoryProvided) -> list[recommender.BoughtItem]:
    """Every product line of the history, with its purchase date."""
    return [
        recommender.BoughtItem(
            product_id=line.productId,
            title=line.title,
            category=line.category,
            bought_at=purchase.purchase_date,
        )
        for purchase in event.purchases
        for line in purchase.products
    ]


@dataclass
class RecommendationFlow:
    """Starts requests, learns from orders, scores answered requests."""

    settings: RecommendationSettings
    repository: RecommendationRepository
    publisher: EventPublisher
    relay: OutboxRelay
    catalog: CatalogClient

    def handlers(self) -> dict[str, Handler]:
        """The consumer's topic -> handler map."""
        return {
            OrderPlaced.topic: self.on_order_placed,
            PurchaseHistoryProvided.topic: self.on_history_provided,
        }

    @property
    def weights(self) -> recommender.Weights:
        s = self.settings
        return recommender.Weights(
            co_purchase=s.recommendation_weight_co_purchase,
            category=s.recommendation_weight_category,
            quality=s.recommendation_weight_quality,
            recency_half_life_days=s.recommendation_recency_half_life_days,
        )

    @property
    def co_purchase_limits(self) -> CoPurchaseLimits:
        s = self.settings
        return CoPurchaseLimits(
            top_size=s.co_purchase_top_size,
            recent_orders=s.co_purchase_recent_orders,
            write_attempts=s.co_purchase_write_attempts,
        )

    def _expiry(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.recommendation_request_ttl_seconds)

    async def request(self, user_id: str) -> str:
        """Store a request and ask the user service for the history (via the outbox)."""
        request_id = str(uuid.uuid4())
        event = PurchaseHistoryRequested(
            request_id=request_id,
            user_id=user_id,
            max_orders=self.settings.recommendation_history_orders,
        )
        entry = outbox_entry(self.publisher, event)
        now = datetime.now(UTC)
        await self.repository.insert_request(
            request_id, user_id, now, [entry], expires_at=self._expiry(now)
        )
        await self.relay.flush_document(self.repository.requests, request_id)
        log.info("recommendation requested", request_id=request_id)
        return request_id

    async def on_order_placed(self, envelope: Envelope, event: OrderPlaced) -> None:
        """Learn which products are bought together (idempotent per order id)."""
        del envelope
        counted = await self.repository.record_order(
            event.order_id, [line.productId for line in event.products], self.co_purchase_limits
        )
        log.info("co-purchases counted", order_id=event.order_id, products=counted)

    async def on_history_provided(self, envelope: Envelope, event: PurchaseHistoryProvided) -> None:
        """Keep the answer with its request, then score it."""
        del envelope
        history = event.model_dump(mode="python")
        now = datetime.now(UTC)
        if not await self.repository.store_history(
            event.request_id, event.user_id, history, now, expires_at=self._expiry(now)
        ):
            # Done already; a redelivery after a half-done result finishes it.
            if not await self.finish(event.request_id):
                log.info("recommendation already done", request_id=event.request_id)
            return
        await self.score(event.request_id)

    async def score(self, request_id: str) -> bool:
        """Score a request that has its history; False if the catalog is down or it is taken."""
        now = datetime.now(UTC)
        doc = await self.repository.claim(
            request_id, now, self.settings.recommendation_retry_seconds
        )
        if doc is None:
            return False
        event = PurchaseHistoryProvided.model_validate(doc["history"])
        try:
            catalog = await self.catalog.products()
        except CatalogUnavailable:
            log.error(
                "recommendation deferred: the catalog is unavailable",
                request_id=request_id,
                retry_in_seconds=self.settings.recommendation_retry_seconds,
            )
            return False
        history = history_items(event)
        co_counts = await self.repository.co_counts(sorted({i.product_id for i in history}))
        products = recommender.recommend(
            catalog,
            history,
            co_counts,
            now,
            limit=self.settings.recommendation_limit,
            weights=self.weights,
        )
        lines = [p.as_line() for p in products]
        outbox = [
            outbox_entry(
                self.publisher,
                RecommendationGenerated.model_validate(
                    {
                        "request_id": request_id,
                        "user_id": event.user_id,
                        "products": lines,
                        "generated_at": now,
                    }
                ),
            ),
            outbox_entry(
                self.publisher,
                NotificationRequested(
                    user_id=event.user_id,
                    type="recommendation",
                    content=notification_content(products),
                    email=event.email,
                    send_email=event.email is not None and EMAIL_PREFERENCE in event.preferences,
                    subject=SUBJECT,
                ),
            ),
        ]
        if not await self.repository.complete(request_id, lines, now, outbox):
            return False
        await self._make_latest(request_id, event.user_id, lines, now)
        log.info("recommendation generated", request_id=request_id, products=len(lines))
        return True

    async def finish(self, request_id: str) -> bool:
        """Make a stored result the user's latest list if that step failed; False if there was
        nothing to finish."""
        doc = await self.repository.half_done(request_id)
        if doc is None:
            return False
        await self._make_latest(
            request_id, doc["user_id"], list(doc["products"]), as_utc(doc["generated_at"])
        )
        log.info("half-done recommendation finished", request_id=request_id)
        return True

    async def _make_latest(
        self, request_id: str, user_id: str, lines: list[dict[str, Any]], generated_at: datetime
    ) -> None:
        await self.repository.set_latest(user_id, request_id, lines, generated_at)
        await self.repository.latest_written(request_id)
        await self.relay.flush_document(self.repository.requests, request_id)

    async def retry_due(self) -> int:
        """Score every request whose earlier attempt failed or stalled."""
        scored = 0
        for request_id in await self.repository.due(
            datetime.now(UTC), self.settings.recommendation_retry_batch
        ):
            scored += await self.score(request_id) or await self.finish(request_id)
        return scored

    async def run_retries(self) -> None:
        """The background retry loop (stopped by cancellation)."""
        while True:
            await asyncio.sleep(self.settings.recommendation_retry_seconds)
            try:
                await self.retry_due()
            except Exception:
                log.exception("recommendation retry pass failed")


def product_lines(products: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored lines as the public contract shapes them."""
    keys = ("productId", "title", "category", "price")
    return [{key: line.get(key) for key in keys} for line in products]

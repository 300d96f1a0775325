"""The recommendation service's use cases (docs/contract.md section 3): start a request, learn
co-purchases from orders, keep and score an answered request, retry what failed or stalled.
The only writer of the requests' outbox.

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

from recommendation_service import domain, events, recommender
from recommendation_service.repository import CoPurchaseLimits, RecommendationRepository
from recommendation_service.settings import RecommendationSettings
from shared.catalog import CatalogClient, CatalogUnavailable
from shared.events.models import PurchaseHistoryProvided, PurchaseHistoryRequested
from shared.logging import get_logger
from shared.outbox import OutboxRelay, outbox_entry
from shared.publisher import EventPublisher
from shared.times import as_utc

log = get_logger(__name__)


@dataclass
class Recommendations:
    """What the HTTP routes, the consumer and the retry loop call."""

    settings: RecommendationSettings
    repository: RecommendationRepository
    publisher: EventPublisher
    relay: OutboxRelay
    catalog: CatalogClient

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
        log.info("recommendation requested", request_id=request_id, routine=True)
        return request_id

    async def latest(self, user_id: str) -> list[dict[str, Any]]:
        """The user's latest recommended product lines ([] before the first)."""
        return await self.repository.latest(user_id)

    async def count_co_purchases(self, order_id: str, product_ids: list[str]) -> None:
        """Learn which products are bought together (idempotent per order id)."""
        counted = await self.repository.record_order(order_id, product_ids, self.co_purchase_limits)
        log.info("co-purchases counted", order_id=order_id, products=counted, routine=True)

    async def take_history(self, history: PurchaseHistoryProvided) -> None:
        """Keep the user service's answer with its request, then score it."""
        now = datetime.now(UTC)
        if not await self.repository.store_history(
            history.request_id,
            history.user_id,
            history.model_dump(mode="python"),
            now,
            expires_at=self._expiry(now),
        ):
            # Done already; a redelivery after a half-done result finishes it.
            if not await self.finish(history.request_id):
                log.info("recommendation already done", request_id=history.request_id)
            return
        await self.score(history.request_id)

    async def score(self, request_id: str) -> bool:
        """Score a request that has its history; False if the catalog is down or it is taken."""
        now = datetime.now(UTC)
        doc = await self.repository.claim(
            request_id, now, self.settings.recommendation_retry_seconds
        )
        if doc is None:
            return False
        history = PurchaseHistoryProvided.model_validate(doc["history"])
        try:
            catalog = await self.catalog.products()
        except CatalogUnavailable:
            log.error(
                "recommendation deferred: the catalog is unavailable",
                request_id=request_id,
                retry_in_seconds=self.settings.recommendation_retry_seconds,
            )
            return False
        bought = domain.history_items(history)
        co_counts = await self.repository.co_counts(sorted({i.product_id for i in bought}))
        products = recommender.recommend(
            catalog,
            bought,
            co_counts,
            now,
            limit=self.settings.recommendation_limit,
            weights=self.weights,
        )
        lines = [p.as_line() for p in products]
        outbox = [
            outbox_entry(
                self.publisher,
                events.recommendation_generated(request_id, history.user_id, lines, now),
            ),
            outbox_entry(self.publisher, events.recommendation_notification(history, products)),
        ]
        if not await self.repository.complete(request_id, lines, now, outbox):
            return False
        await self._make_latest(request_id, history.user_id, lines, now)
        log.info(
            "recommendation generated", request_id=request_id, products=len(lines), routine=True
        )
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
        """The retry loop, every `recommendation_retry_seconds` (a worker on the runtime,
        stopped by cancellation)."""
        while True:
            await asyncio.sleep(self.settings.recommendation_retry_seconds)
            try:
                await self.retry_due()
            except Exception:
                log.exception("recommendation retry pass failed")

"""The promotion job and the copies of user data it needs.

In (group `scheduler_service`): `user.registered` and `user.preferences-updated` (a copy of each
user's preferences: promotion emails go out only with `promotions` on; unknown = no email),
`order.placed` (what each user bought: never promoted).
Out, through the outbox of the subscription: `notification.requested` (type `promotion`, with
a one-click unsubscribe link) and `promotion.published`.

Each firing takes its period's lease in the shared lock store (scheduler_service.locks) and
marks the period done only after every subscribed user's promotion is written with its events
and published (or left to the outbox relay when the broker is away); with any number of
replicas each period runs once. A run that fails (the catalog is down) or crashes leaves the
period unfinished, and the catch-up run of any replica finishes it; users already served in
that period are skipped, and each promotion's events have ids derived from the job, the period
and the user, so nothing is sent twice.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scheduler_service import domain
from scheduler_service.locks import SlotLock
from scheduler_service.repository import SchedulerRepository
from scheduler_service.settings import SchedulerSettings
from shared.bus import Handler
from shared.catalog import CatalogClient, CatalogUnavailable
from shared.events.envelope import Envelope
from shared.events.models import (
    NotificationRequested,
    OrderPlaced,
    PromotionPublished,
    UserPreferencesUpdated,
    UserRegistered,
)
from shared.logging import get_logger
from shared.outbox import OutboxRelay, outbox_entry
from shared.publisher import EventPublisher
from shared.services import SCHEDULER

log = get_logger(__name__)

CONSUMER_GROUP = SCHEDULER.name


@dataclass
class PromotionJob:
    """One firing: take the period's lease, one promotion per subscribed user, mark it done."""

    settings: SchedulerSettings
    repository: SchedulerRepository
    publisher: EventPublisher
    relay: OutboxRelay
    catalog: CatalogClient
    lock: SlotLock

    def handlers(self) -> dict[str, Handler]:
        """The consumer's topic -> handler map."""
        return {
            UserRegistered.topic: self.on_user_registered,
            UserPreferencesUpdated.topic: self.on_preferences_updated,
            OrderPlaced.topic: self.on_order_placed,
        }

    async def on_user_registered(self, envelope: Envelope, event: UserRegistered) -> None:
        await self.repository.set_preferences(
            event.user_id, list(event.preferences), envelope.occurred_at
        )

    async def on_preferences_updated(
        self, envelope: Envelope, event: UserPreferencesUpdated
    ) -> None:
        await self.repository.set_preferences(
            event.user_id, list(event.preferences), envelope.occurred_at
        )

    async def on_order_placed(self, envelope: Envelope, event: OrderPlaced) -> None:
        del envelope
        await self.repository.add_purchases(
            event.user_id, [line.productId for line in event.products]
        )

    def unsubscribe_base(self) -> str:
        return self.settings.promotion_unsubscribe_base_url or (
            f"{self.settings.public_base_url.rstrip('/')}/unsubscribe"
        )

    async def fire(self) -> int:
        """The scheduled entry point (APScheduler); never raises."""
        try:
            return await self.run(datetime.now(UTC))
        except Exception:
            log.exception("promotion run failed; the catch-up run finishes the period")
            return 0

    async def catch_up(self) -> int:
        """The periodic entry point that finishes periods a failed or crashed run left
        unfinished (within `promotion_catch_up_seconds`); never raises."""
        since = datetime.now(UTC) - timedelta(seconds=self.settings.promotion_catch_up_seconds)
        try:
            return await self.catch_up_since(since)
        except Exception:
            log.exception("promotion catch-up failed; the next one tries again")
            return 0

    async def catch_up_since(self, since: datetime) -> int:
        """Run every unfinished period since `since`, oldest first; how many were queued."""
        queued = 0
        for slot in await self.lock.unfinished(since):
            queued += await self.run_slot(slot)
        return queued

    async def run(self, now: datetime) -> int:
        """Run the period `now` falls in; returns how many promotions were queued."""
        return await self.run_slot(domain.slot_for(now, self.settings.promotion_interval_seconds))

    async def run_slot(self, slot: datetime) -> int:
        """Run one period unless it is done or another run holds it; it is marked done only
        once its work is published. Raises (the lease given back) when the work failed."""
        token = await self.lock.acquire(slot)
        if token is None:
            log.info("promotion period done or in hand elsewhere", slot=slot.isoformat())
            return 0
        try:
            queued = await self._promote(slot)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.lock.release(slot, token)
            raise
        await self.lock.complete(slot)
        log.info("promotions queued", slot=slot.isoformat(), count=queued)
        return queued

    async def _promote(self, slot: datetime) -> int:
        """One promotion per subscribed user not yet served in this period."""
        try:
            ordered = domain.promotion_order(await self.catalog.products())
        except CatalogUnavailable:
            log.error("promotions wait: the catalog is unavailable", slot=slot.isoformat())
            raise
        subscriptions = await self.repository.all_subscriptions()
        user_ids = [s["_id"] for s in subscriptions]
        preferences = await self.repository.preferences_of(user_ids)
        purchases = await self.repository.purchases_of(user_ids)
        queued = 0
        for subscription in subscriptions:
            user_id = subscription["_id"]
            pick = domain.next_promotion(
                ordered, purchases.get(user_id, set()), subscription.get("sent", [])
            )
            if pick is None:
                continue
            token = domain.unsubscribe_token(
                self.settings.jwt_secret.get_secret_value(),
                user_id,
                self.settings.unsubscribe_link_ttl_seconds,
            )
            notification = NotificationRequested(
                user_id=user_id,
                type="promotion",
                content=domain.promotion_content(pick.product),
                email=subscription["email"],
                send_email=domain.EMAIL_PREFERENCE in preferences.get(user_id, []),
                subject=f"{domain.SUBJECT}: {pick.product.title}",
                unsubscribe_url=domain.unsubscribe_url(self.unsubscribe_base(), token),
            )
            published = PromotionPublished.model_validate(
                {"user_id": user_id, "product": pick.product.as_line(), "slot": slot}
            )
            job = self.settings.promotion_job_name
            outbox = [
                outbox_entry(
                    self.publisher,
                    event,
                    domain.promotion_event_id(job, slot, user_id, event.event_type),
                )
                for event in (notification, published)
            ]
            if await self.repository.record_promotion(
                user_id, slot, pick.product.id, pick.restarted, outbox
            ):
                queued += 1
                await self.relay.flush_document(self.repository.subscriptions, user_id)
        return queued

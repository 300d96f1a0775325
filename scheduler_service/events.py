"""The promotion job and the copies of user data it needs.

In (group `scheduler_service`): `user.registered` and `user.preferences-updated` (a copy of each
user's preferences: promotion emails go out only with `promotions` on; unknown = no email),
`order.placed` (what each user bought: never promoted).
Out, through the outbox of the subscription: `notification.requested` (type `promotion`, with
a one-click unsubscribe link) and `promotion.published`.

Each firing first claims its slot (job name + scheduled time) in the shared lock store, so with
any number of replicas each period runs once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

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

log = get_logger(__name__)

CONSUMER_GROUP = "scheduler_service"


@dataclass
class PromotionJob:
    """One firing: claim the slot, then one promotion per subscribed user."""

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
            log.exception("promotion run failed; the next period tries again")
            return 0

    async def run(self, now: datetime) -> int:
        """Run the slot `now` falls in, unless another replica claimed it; returns how many
        promotions were queued."""
        slot = domain.slot_for(now, self.settings.promotion_interval_seconds)
        key = domain.lock_key(self.settings.promotion_job_name, slot)
        if not await self.lock.claim(key):
            log.info("promotion slot taken by another replica", slot=slot.isoformat())
            return 0
        try:
            ordered = domain.promotion_order(await self.catalog.products())
        except CatalogUnavailable:
            log.error("promotions skipped: the catalog is unavailable", slot=slot.isoformat())
            return 0
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
            outbox = [
                outbox_entry(self.publisher, notification),
                outbox_entry(self.publisher, published),
            ]
            if await self.repository.record_promotion(
                user_id, slot, pick.product.id, pick.restarted, outbox
            ):
                queued += 1
                await self.relay.flush_document(self.repository.subscriptions, user_id)
        log.info("promotions queued", slot=slot.isoformat(), count=queued)
        return queued

"""The user service's use cases: register, log in, read and change one's own account; apply
order events to users' purchases and summaries; answer purchase-history requests.

`Users` is what `main.wire` builds and the routes and consumer handlers call. It also holds the
use cases of sessions (`sessions.py`: tokens, refresh, ending them) and of identity
(`identity.py`: password checks, emailed links, password changes, admin grants), so a route
takes one dependency.

Each state change and the events announcing it are one single-document write (the outbox);
the events are then published at once, best effort (the relay retries what is left).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.auth import Caller, hash_password
from shared.errors import NotFound
from shared.events.envelope import Envelope
from shared.events.models import Preference, PurchaseHistoryProvided, PurchaseHistoryRequested
from shared.links import LinkPurpose
from shared.logging import get_logger
from shared.outbox import outbox_entry
from shared.publisher import EventPublisher
from shared.runtime import ServiceRuntime
from shared.tracing import event_scope
from user_service import domain, events
from user_service.identity import Identity
from user_service.limits import AuthLimits
from user_service.repository import UserRepository
from user_service.schemas import AuthOut, LoginIn, PurchaseOut, RegisterIn, UserOut
from user_service.sessions import USER_GONE, Sessions
from user_service.settings import UserSettings

log = get_logger(__name__)

# An order event as its use case takes it: its envelope (ids, trace), its user, what it says.
OrderArrival = tuple[Envelope, str, domain.OrderFact]
Arrived = tuple[Envelope, domain.OrderFact]
# Outbox entries queued, by purchase (order id), to publish at the end of a batch.
Queued = dict[str, list[dict[str, Any]]]


class OrderUpdateContended(RuntimeError):
    """Other order changes of the user kept landing between read and write; the bus retries."""


@dataclass
class Users:
    """The use cases of the user service."""

    settings: UserSettings
    runtime: ServiceRuntime
    repository: UserRepository
    limits: AuthLimits

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.settings, self.repository, self.runtime)
        self.identity = Identity(
            self.settings, self.repository, self.runtime, self.sessions, self.limits
        )

    # --- accounts -------------------------------------------------------------------------------

    async def register(self, body: RegisterIn, client_address: str | None = None) -> AuthOut:
        """Store a new user (with a first session and a verification link) and queue
        `user.registered` (which carries the link to the welcome email) in the same write."""
        name = domain.clean_name(body.name, self.settings.input_limits)
        domain.check_password(body.password, self.settings.input_limits)
        await self.limits.register(domain.normalize_email(str(body.email)), client_address)
        user_id = domain.new_user_id()
        session = self.sessions.new(user_id)
        verify_token_id = domain.new_user_id()
        user = domain.new_user_document(
            user_id=user_id,
            name=name,
            email=domain.normalize_email(str(body.email)),
            password_hash=await hash_password(body.password),
            preferences=domain.normalize_preferences(body.preferences),
            created_at=datetime.now(UTC),
            verify_token_id=verify_token_id,
            session=session,
        )
        verification_url = self.identity.link(LinkPurpose.VERIFY_EMAIL, user_id, verify_token_id)
        entry = outbox_entry(self.runtime.publisher, events.user_registered(user, verification_url))
        await self.repository.insert(user, [entry])
        await self.runtime.outbox_relay.flush_document(self.repository.users, user["_id"])
        return self.sessions.signed_in(user, session)

    async def login(self, body: LoginIn, client_address: str | None = None) -> AuthOut:
        """Unknown email and wrong password fail alike, after one Argon2 verification each."""
        await self.limits.login(domain.normalize_email(body.email), client_address)
        user = await self.identity.authenticate(
            await self.repository.by_email(domain.normalize_email(body.email)), body.password
        )
        return await self.sessions.open(user)

    async def me(self, caller: Caller) -> UserOut:
        """The caller's own account."""
        user = await self.repository.by_id(caller.user_id)
        if user is None:
            raise NotFound(USER_GONE)
        purchases = await self.repository.newest_purchases(
            caller.user_id, self.settings.purchase_history_page_default
        )
        return domain.user_out(user, purchases)

    async def purchase_history(self, caller: Caller, first: int | None) -> list[PurchaseOut]:
        """The caller's newest purchases, newest first (the page size is capped)."""
        size = min(
            first or self.settings.purchase_history_page_default,
            self.settings.purchase_history_page_max,
        )
        purchases = await self.repository.newest_purchases(caller.user_id, size)
        return [domain.purchase_out(p) for p in purchases]

    async def update_preferences(self, caller: Caller, preferences: list[Preference]) -> UserOut:
        """Replace the caller's preferences and queue `user.preferences-updated`."""
        cleaned = domain.normalize_preferences(preferences)
        event = events.preferences_updated(caller.user_id, cleaned)
        entry = outbox_entry(self.runtime.publisher, event)
        user = await self.repository.set_preferences(caller.user_id, cleaned, entry)
        if user is None:
            raise NotFound(USER_GONE)
        await self.runtime.outbox_relay.flush_document(self.repository.users, caller.user_id)
        return domain.user_out(user)

    # --- order events ---------------------------------------------------------------------------

    async def apply_order_events(self, arrivals: Sequence[OrderArrival]) -> None:
        """Record new orders and statuses as purchases and in their users' summaries, exactly
        once per (order, status), in arrival order (a batch: one partition's fetch). Per user
        of the batch: one read of the summary and one of the batch's purchases, one summary
        write, one write per order queueing `user.purchase-history-updated` and
        `notification.requested` for each new status; then the batch's events are published
        together. The summary goes first: see `domain` for why."""
        by_user: dict[str, list[Arrived]] = {}
        for envelope, user_id, fact in arrivals:
            by_user.setdefault(user_id, []).append((envelope, fact))
        pending: Queued = {}
        for user_id, arrived in by_user.items():
            pending.update(await self._apply_order_events_of(user_id, arrived))
        if pending:
            await self.runtime.outbox_relay.flush_entries(self.repository.purchases, pending)

    async def _apply_order_events_of(self, user_id: str, arrived: list[Arrived]) -> Queued:
        """Apply one user's facts, retried while other order changes of the user land
        in between."""
        facts = [fact for _, fact in arrived]
        for _ in range(self.settings.order_event_write_attempts):
            user = await self.repository.for_order_events(user_id)
            if user is None:
                # Nothing to enrich or record; retrying or dead-lettering would not help.
                for envelope, fact in arrived:
                    log.warning(
                        "order event for an unknown user skipped",
                        event_id=str(envelope.id),
                        user_id=user_id,
                        order_id=fact.order_id,
                    )
                return {}
            applied = await self.repository.applied_statuses(
                sorted({fact.order_id for fact in facts})
            )
            plan = domain.plan_batch(user, applied, facts)
            _log_repeats(arrived, plan)
            if not plan.purchases:
                return {}
            if plan.summary and not await self.repository.set_order_summary(
                user_id, version=user.get(domain.VERSION_FIELD), fields=plan.summary
            ):
                continue
            queued = await self._record_purchases(user, arrived, plan)
            log.info(
                "order events applied",
                user_id=user_id,
                count=len(plan.new_facts),
                routine=True,
            )
            return queued
        raise OrderUpdateContended(
            f"{len(arrived)} order event(s) of user {user_id} lost every write race"
        )

    async def _record_purchases(
        self, user: Mapping[str, Any], arrived: list[Arrived], plan: domain.BatchPlan
    ) -> Queued:
        """Write each order's new statuses with their events; those whose write another
        delivery made first are left to it (their events are queued there)."""
        publisher = self.runtime.publisher
        queued: Queued = {}
        for order_id, write in plan.purchases.items():
            outbox: list[dict[str, Any]] = []
            for position in write.facts:
                envelope, fact = arrived[position]
                with event_scope(envelope):
                    # The events carry the correlation id (and trace) of the order event
                    # that caused them.
                    updated = events.purchase_history_updated(user["_id"], fact)
                    outbox.append(outbox_entry(publisher, updated))
                    requested = events.order_update_requested(user, fact)
                    outbox.append(outbox_entry(publisher, requested))
            if await self.repository.apply_statuses(
                order_id,
                fields=domain.purchase_fields(user["_id"], write),
                statuses=write.statuses,
                outbox=outbox,
            ):
                queued[order_id] = outbox
            else:
                log.info("order statuses applied meanwhile", order_id=order_id)
        return queued

    # --- purchase-history requests (the recommendation flow) ------------------------------------

    async def provide_purchase_history(self, request: PurchaseHistoryRequested) -> None:
        """Publish `purchase-history.provided` with the request's id: the user's email,
        preferences and newest `max_orders` purchases (PURCHASE_HISTORY_WINDOW_DEFAULT if none,
        at most PURCHASE_HISTORY_WINDOW_MAX), cut further, oldest first, until the message fits
        KAFKA_MAX_MESSAGE_BYTES. Read-only, so a redelivered request is simply answered again
        (the recommendation service scores each request once); an unknown user gets no answer
        (logged)."""
        user = await self.repository.by_id(request.user_id)
        if user is None:
            log.warning("purchase history requested for an unknown user", user_id=request.user_id)
            return
        window = min(
            request.max_orders or self.settings.purchase_history_window_default,
            self.settings.purchase_history_window_max,
        )
        purchases = await self.repository.newest_purchases(request.user_id, window)
        publisher = self.runtime.publisher
        answer = _fitted(
            events.purchase_history_provided(request.request_id, user, purchases), publisher
        )
        if len(answer.purchases) < len(purchases):
            log.warning(
                "purchase history cut to fit the message size limit",
                request_id=request.request_id,
                orders=len(purchases),
                kept=len(answer.purchases),
            )
        await publisher.publish(answer)
        log.info("purchase history provided", request_id=request.request_id, routine=True)


def _log_repeats(arrived: list[Arrived], plan: domain.BatchPlan) -> None:
    new = set(plan.new_facts)
    for position, (envelope, fact) in enumerate(arrived):
        if position not in new:
            log.info(
                "order event already applied",
                event_id=str(envelope.id),
                order_id=fact.order_id,
                status=fact.status,
            )


def _fitted(answer: PurchaseHistoryProvided, publisher: EventPublisher) -> PurchaseHistoryProvided:
    """The answer without its oldest purchases, as few as needed for it to fit the size limit
    (halving the cut, so a long history costs a few encodings, not one per order)."""
    if publisher.fits(answer):
        return answer
    low, high = 0, len(answer.purchases)  # keeping `low` fits, keeping `high` does not
    while high - low > 1:
        middle = (low + high) // 2
        if publisher.fits(answer.model_copy(update={"purchases": answer.purchases[:middle]})):
            low = middle
        else:
            high = middle
    return answer.model_copy(update={"purchases": answer.purchases[:low]})

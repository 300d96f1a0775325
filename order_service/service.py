"""The order service's use cases: place an order, list one's orders, change an order's status.

Each state change and the event announcing it are one single-document write (the outbox);
the event is then published at once from what is in hand (no read back), bounded by the outbox
flush timeout; the relay retries what is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from order_service import domain, events
from order_service.repository import PENDING_FIELD, OrderRepository
from order_service.schemas import (
    CatalogProductOut,
    OrderOut,
    ProductPageOut,
    RatingOut,
)
from order_service.settings import OrderSettings
from shared.auth import Caller
from shared.catalog import CatalogClient, Product, page_of
from shared.errors import Conflict, NotFound
from shared.events.models import OrderStatus
from shared.logging import get_logger
from shared.outbox import OUTBOX_FIELD, in_hand, outbox_entry
from shared.runtime import ServiceRuntime
from shared.times import as_utc

log = get_logger(__name__)


def order_out(order: Mapping[str, Any]) -> OrderOut:
    """The public view of a stored order."""
    return OrderOut(
        id=order["_id"],
        userId=order["user_id"],
        products=order["products"],
        total=order.get("total"),
        status=order["status"],
        createdAt=as_utc(order["created_at"]),
        updatedAt=as_utc(order["updated_at"]),
    )


def new_order_out(order: domain.NewOrder) -> OrderOut:
    """The public view of an order just placed (its own lines, not read back)."""
    created_at = as_utc(order.created_at)
    return OrderOut(
        id=order.id,
        userId=order.user_id,
        products=order.products,
        total=order.total,
        status=domain.PLACED,
        createdAt=created_at,
        updatedAt=created_at,
    )


def catalog_product_out(product: Product) -> CatalogProductOut:
    """The public view of a catalog product."""
    return CatalogProductOut(
        productId=product.id,
        title=product.title,
        category=product.category,
        price=product.price,
        description=product.description,
        image=product.image,
        rating=RatingOut(rate=product.rating.rate, count=product.rating.count),
    )


@dataclass
class Orders:
    """What the HTTP routes call."""

    settings: OrderSettings
    runtime: ServiceRuntime
    repository: OrderRepository
    catalog: CatalogClient

    @property
    def _limits(self) -> domain.ProductLimits:
        return domain.ProductLimits(
            max_products=self.settings.order_max_products,
            id_max_length=self.settings.product_id_max_length,
            max_quantity=self.settings.order_max_quantity,
            title_max_length=self.settings.product_title_max_length,
            category_max_length=self.settings.product_category_max_length,
        )

    async def place(
        self,
        caller: Caller,
        products: Sequence[domain.ProductInput],
        idempotency_key: str | None = None,
    ) -> OrderOut:
        """Store a new Placed order, priced by the catalog, and queue `order.placed` in the
        same write. With a key, a second call within the window answers the first order and
        stores and publishes nothing new.

        The products arrive as validated at the edge; once priced, each is one `ProductLine`
        carried by the order, its event and the answer alike, and turned into the stored form
        only by `NewOrder.document`."""
        key = domain.check_idempotency_key(
            idempotency_key, self.settings.order_idempotency_key_max_length
        )
        now = domain.now()
        key_id = domain.idempotency_id(caller.user_id, key) if key is not None else None
        if key_id is not None:
            first = await self.repository.keyed(key_id, now)
            if first is not None:
                return await self._finish_first(first)
        # CatalogUnavailable is SERVICE_UNAVAILABLE: no order is priced by a guess.
        order = domain.NewOrder(
            id=domain.new_order_id(),
            user_id=caller.user_id,
            products=domain.price_products(products, await self.catalog.by_id(), self._limits),
            created_at=now,
        )
        entry = outbox_entry(self.runtime.publisher, events.order_placed(order))
        document = order.document()
        if key_id is not None:
            window = timedelta(seconds=self.settings.order_idempotency_window_seconds)
            first = await self.repository.claim_key(
                key_id,
                user_id=caller.user_id,
                order=document,
                outbox=[entry],
                now=now,
                expires_at=now + window,
            )
            if first is not None:
                return await self._finish_first(first)
        if await self.repository.insert(document, [entry]):
            await self.runtime.outbox_relay.flush_entries(
                self.repository.orders, {order.id: [entry]}
            )
            log.info("order placed", order_id=order.id, products=len(order.products), routine=True)
        return new_order_out(order)

    async def _finish_first(self, first: Mapping[str, Any]) -> OrderOut:
        """The order of the request that used the key first, as it is now; stored here if that
        request stopped before storing it (then its event is published here, once)."""
        order: dict[str, Any] = first["order"]
        pending: list[dict[str, Any]] = first[PENDING_FIELD]
        if await self.repository.insert(order, pending):
            await self.runtime.outbox_relay.flush_entries(
                self.repository.orders, {order["_id"]: pending}
            )
            log.info("keyed order placed by a repeated request", order_id=order["_id"])
        current = await self.repository.by_id(order["_id"])
        log.info("repeated order request answered with the first order", order_id=order["_id"])
        return order_out(current or order)

    async def browse(
        self, *, category: str | None, search: str | None, first: int | None, after: str | None
    ) -> ProductPageOut:
        """A page of the catalog (the one orders are priced from)."""
        size = min(first or self.settings.catalog_page_default, self.settings.catalog_page_max)
        limit = self.settings.catalog_filter_max_length
        page = page_of(
            await self.catalog.products(),
            category=domain.check_filter(category, "category", limit),
            search=domain.check_filter(search, "search", limit),
            first=size,
            after=after,
        )
        return ProductPageOut(
            items=[catalog_product_out(p) for p in page.items],
            endCursor=page.end_cursor,
            hasNextPage=page.has_next_page,
        )

    async def product(self, product_id: str) -> CatalogProductOut:
        """One catalog product; NOT_FOUND if the catalog has no such id."""
        found = (await self.catalog.by_id()).get(product_id)
        if found is None:
            raise NotFound("That product is not in the catalog.")
        return catalog_product_out(found)

    async def list_mine(self, caller: Caller, *, limit: int | None, offset: int) -> list[OrderOut]:
        """A page of the caller's orders, newest first (the page size is capped)."""
        size = min(limit or self.settings.orders_page_default, self.settings.orders_page_max)
        orders = await self.repository.of_user(caller.user_id, limit=size, offset=offset)
        return [order_out(o) for o in orders]

    async def change_status(self, caller: Caller, order_id: str, status: OrderStatus) -> OrderOut:
        """Apply a transition the caller may make; a concurrent change makes it CONFLICT."""
        order = await self.repository.by_id(order_id)
        if order is None:
            raise NotFound(domain.ORDER_NOT_FOUND)
        domain.check_transition(
            caller=caller, owner_id=order["user_id"], current=order["status"], target=status
        )
        changed_at = domain.now()
        event = events.order_status_changed(order, status=status, changed_at=changed_at)
        entry = outbox_entry(self.runtime.publisher, event)
        updated = await self.repository.change_status(
            order_id,
            expected=order["status"],
            status=status,
            changed_at=changed_at,
            outbox_entry=entry,
        )
        if updated is None:
            raise Conflict(domain.CHANGED_MEANWHILE)
        # Every pending event of the order, in order: one left over from an earlier change is
        # not overtaken by this one.
        pending = in_hand(updated.pop(OUTBOX_FIELD, []), [entry])
        await self.runtime.outbox_relay.flush_entries(self.repository.orders, {order_id: pending})
        log.info(
            "order status changed",
            order_id=order_id,
            previous_status=order["status"],
            status=status,
            by_admin=caller.is_admin,
        )
        return order_out(updated)

"""The order service's HTTP routes (the gateway calls exactly these)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from order_service.schemas import (
    CatalogProductOut,
    OrderOut,
    PlaceOrderIn,
    ProductPageOut,
    StatusIn,
)
from order_service.service import Orders
from shared.http import CallerDep
from shared.service_app import service_of

router = APIRouter()

# MongoDB's skip is a 64-bit integer: a larger offset is BAD_USER_INPUT, not a failed encode.
OFFSET_MAX = 2**63 - 1
# A cursor is a product id in base64: longer than any id could make is not one.
CURSOR_MAX_LENGTH = 512


OrdersDep = Annotated[Orders, Depends(service_of)]


@router.post("/orders", status_code=status.HTTP_201_CREATED, response_model=OrderOut)
async def place_order(body: PlaceOrderIn, caller: CallerDep, service: OrdersDep) -> OrderOut:
    return await service.place(caller, body.products, body.idempotencyKey)


@router.get("/orders", response_model=list[OrderOut])
async def list_orders(
    caller: CallerDep,
    service: OrdersDep,
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX)] = 0,
) -> list[OrderOut]:
    return await service.list_mine(caller, limit=limit, offset=offset)


@router.post("/orders/{order_id}/status", response_model=OrderOut)
async def update_status(
    order_id: str, body: StatusIn, caller: CallerDep, service: OrdersDep
) -> OrderOut:
    return await service.change_status(caller, order_id, body.status)


@router.get("/products", response_model=ProductPageOut)
async def list_products(
    service: OrdersDep,
    category: str | None = None,
    search: str | None = None,
    first: Annotated[int | None, Query(ge=1)] = None,
    after: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
) -> ProductPageOut:
    """Public (no token): the catalog orders are priced from, a page at a time."""
    return await service.browse(
        category=category,
        search=search,
        first=first,
        after=after,
    )


@router.get("/products/{product_id}", response_model=CatalogProductOut)
async def get_product(product_id: str, service: OrdersDep) -> CatalogProductOut:
    """Public (no token): one catalog product."""
    return await service.product(product_id)

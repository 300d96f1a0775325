"""Browsing the catalog: filter by category and text, page with an opaque cursor. Pure.

A cursor is the id of the last product of a page, base64url-encoded: the next page starts
after that product in catalog order, so paging is stable while the catalog does not change.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from shared.catalog.models import Product
from shared.errors import BadUserInput

CURSOR_PREFIX = "product:"
BAD_CURSOR = "after is not a cursor this catalog gave out; start again without it."


@dataclass(frozen=True, slots=True)
class CatalogPage:
    """One page of products, where the next one starts, and whether there is one."""

    items: list[Product]
    end_cursor: str | None
    has_next_page: bool


def cursor_of(product_id: str) -> str:
    """The opaque cursor pointing after this product."""
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{product_id}".encode()).decode()


def product_id_of(cursor: str) -> str:
    """The product id a cursor points after; anything else is bad input."""
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise BadUserInput(BAD_CURSOR) from None
    if not decoded.startswith(CURSOR_PREFIX):
        raise BadUserInput(BAD_CURSOR)
    return decoded[len(CURSOR_PREFIX) :]


def matches(product: Product, *, category: str | None, search: str | None) -> bool:
    """Same category (ignoring case), and the text in the title or description (ignoring
    case); an absent filter matches everything."""
    if category is not None and product.category.casefold() != category.strip().casefold():
        return False
    if search is None or not search.strip():
        return True
    needle = search.strip().casefold()
    return needle in product.title.casefold() or needle in product.description.casefold()


def page_of(
    products: Sequence[Product],
    *,
    category: str | None = None,
    search: str | None = None,
    first: int,
    after: str | None = None,
) -> CatalogPage:
    """The `first` products matching the filters after the cursor, in catalog order."""
    found = [p for p in products if matches(p, category=category, search=search)]
    start = 0
    if after is not None:
        last_id = product_id_of(after)
        positions = [n for n, p in enumerate(found) if p.id == last_id]
        if not positions:
            raise BadUserInput(BAD_CURSOR)
        start = positions[0] + 1
    items = found[start : start + first]
    return CatalogPage(
        items=items,
        end_cursor=cursor_of(items[-1].id) if items else None,
        has_next_page=start + first < len(found),
    )

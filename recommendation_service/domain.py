"""Pure rules of recommendations: what the user reads, who is emailed, what a history holds.

The scoring itself is `recommender.py`; this module has no I/O either.
"""

from __future__ import annotations

from recommendation_service import recommender
from shared.catalog.models import Product
from shared.events.models import PurchaseHistoryProvided

EMAIL_PREFERENCE = "recommendations"
SUBJECT = "Products picked for you"


def notification_content(products: list[Product]) -> str:
    """What the user reads: the recommended titles."""
    if not products:
        return "We have no new recommendations for you right now; check back after your next order."
    return "Recommended for you: " + "; ".join(p.title for p in products) + "."


def wants_email(history: PurchaseHistoryProvided) -> bool:
    """Emailed only with an address and the `recommendations` preference (else in-app only)."""
    return history.email is not None and EMAIL_PREFERENCE in history.preferences


def history_items(history: PurchaseHistoryProvided) -> list[recommender.BoughtItem]:
    """Every product line of the history, with its purchase date."""
    return [
        recommender.BoughtItem(
            product_id=line.productId,
            title=line.title,
            category=line.category,
            bought_at=purchase.purchase_date,
        )
        for purchase in history.purchases
        for line in purchase.products
    ]

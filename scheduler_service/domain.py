"""Pure rules of promotions: schedule slots, lock keys, rotation, unsubscribe tokens, words."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.catalog.models import Product
from shared.links import LinkPurpose, LinkSigner

# Interval schedules are laid on a grid from this instant, so every replica fires at the same
# times and computes the same slot.
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
EMAIL_PREFERENCE = "promotions"
SUBJECT = "A promotion for you"


def slot_for(now: datetime, interval_seconds: float | None) -> datetime:
    """The scheduled time of the firing running at `now`.

    Firings never start early, so the slot is the latest grid point not after `now`: a
    multiple of the interval from EPOCH, or (cron, whose finest unit is the minute) the minute.
    """
    if interval_seconds is None:
        return now.astimezone(UTC).replace(second=0, microsecond=0)
    elapsed = (now - EPOCH).total_seconds()
    steps = math.floor(elapsed / interval_seconds)
    return EPOCH + timedelta(seconds=steps * interval_seconds)


def lock_key(job_name: str, slot: datetime) -> str:
    """The claim of one firing: job name + scheduled time."""
    return f"job-run:{job_name}:{slot.astimezone(UTC).isoformat()}"


_EVENT_IDS = uuid.UUID("3f0c6a52-5a4b-4c2e-9d55-0b8f0f5c1e77")  # namespace of promotion event ids


def promotion_event_id(job_name: str, slot: datetime, user_id: str, event_type: str) -> uuid.UUID:
    """The id of one user's promotion event of one period: the same however often the period
    runs, so consumers (idempotent on the id) act on it once."""
    return uuid.uuid5(_EVENT_IDS, f"{lock_key(job_name, slot)}:{user_id}:{event_type}")


def promotion_order(catalog: Iterable[Product]) -> list[Product]:
    """The rotation order: best rated and most rated first, then by id."""
    return sorted(catalog, key=lambda p: (-p.rating.rate, -p.rating.count, p.id))


@dataclass(frozen=True, slots=True)
class Pick:
    """The product to promote, and whether the rotation started over."""

    product: Product
    restarted: bool


def next_promotion(
    ordered: Sequence[Product], bought: set[str], sent: Sequence[str]
) -> Pick | None:
    """The first product in rotation order the user neither bought nor was sent; when all were
    sent, the rotation starts over. None when the user bought everything."""
    unbought = [p for p in ordered if p.id not in bought]
    if not unbought:
        return None
    already = set(sent)
    for product in unbought:
        if product.id not in already:
            return Pick(product, restarted=False)
    return Pick(unbought[0], restarted=True)


def promotion_content(product: Product) -> str:
    """The in-app notification's words."""
    return (
        f"Promotion: {product.title} ({product.category}) for {product.price:.2f}, "
        f"rated {product.rating.rate:.1f}/5."
    )


def unsubscribe_token(secret: str, user_id: str, ttl_seconds: float) -> str:
    """A signed link token (shared.links) that can only unsubscribe this user from promotions,
    for `ttl_seconds`."""
    return LinkSigner(secret).sign(LinkPurpose.UNSUBSCRIBE, user_id, ttl_seconds=ttl_seconds)


def user_of_unsubscribe_token(secret: str, token: str) -> str | None:
    """The user a valid, unexpired token names; None for anything forged, expired or
    malformed."""
    claims = LinkSigner(secret).verify(LinkPurpose.UNSUBSCRIBE, token)
    return claims.subject if claims else None


def unsubscribe_url(base_url: str, token: str) -> str:
    """The one-click unsubscribe link of a promotion email."""
    return f"{base_url.rstrip('/')}/{token}"

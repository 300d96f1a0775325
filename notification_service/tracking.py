"""Read-tracking tokens: signed links (shared.links, purpose `pixel`) naming a notification and
its owner, so nobody without the secret can mark another user's notification read. They expire
after TRACKING_LINK_TTL_SECONDS; an expired or foreign token still gets the pixel, and marks
nothing."""

from __future__ import annotations

from dataclasses import dataclass

from shared.links import LinkPurpose, LinkSigner

_NOTIFICATION_CLAIM = "n"


@dataclass(frozen=True, slots=True)
class TrackedRead:
    """What a valid token names."""

    notification_id: str
    user_id: str


def sign(links: LinkSigner, notification_id: str, user_id: str, ttl_seconds: float) -> str:
    """A token naming the notification and its owner."""
    return links.sign(
        LinkPurpose.PIXEL,
        user_id,
        ttl_seconds=ttl_seconds,
        token_id=notification_id,
        **{_NOTIFICATION_CLAIM: notification_id},
    )


def verify(links: LinkSigner, token: str) -> TrackedRead | None:
    """What the token names, or None when it is malformed, expired or not signed by us."""
    claims = links.verify(LinkPurpose.PIXEL, token)
    notification_id = claims.data.get(_NOTIFICATION_CLAIM) if claims else None
    if claims is None or not notification_id:
        return None
    return TrackedRead(notification_id=notification_id, user_id=claims.subject)

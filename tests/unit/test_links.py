"""Signed links (shared.links): one scheme, an audience per purpose, an expiry for each."""

from __future__ import annotations

import time

import jwt
import pytest

from shared.auth import issue_token
from shared.links import LinkPurpose, LinkSigner, link_url

SECRET = "unit-test-secret-for-links-long-enough-0"


def test_a_link_names_its_subject_id_and_data() -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign(LinkPurpose.PIXEL, "user-1", ttl_seconds=60, token_id="t-1", n="note-1")
    claims = signer.verify(LinkPurpose.PIXEL, token)
    assert claims is not None
    assert (claims.subject, claims.token_id, claims.data) == ("user-1", "t-1", {"n": "note-1"})
    assert time.time() < claims.expires_at <= time.time() + 61
    # URL-safe as it is.
    assert all(c.isalnum() or c in "-_." for c in token)


@pytest.mark.parametrize("purpose", list(LinkPurpose))
def test_a_link_of_one_purpose_is_refused_for_every_other(purpose: LinkPurpose) -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign(purpose, "user-1", ttl_seconds=60)
    for other in LinkPurpose:
        assert (signer.verify(other, token) is not None) is (other is purpose)


def test_expired_forged_and_malformed_links_are_refused() -> None:
    signer = LinkSigner(SECRET)
    expired = signer.sign(LinkPurpose.UNSUBSCRIBE, "user-1", ttl_seconds=-1)
    forged = LinkSigner("another-secret-" + "x" * 32).sign(
        LinkPurpose.UNSUBSCRIBE, "user-1", ttl_seconds=60
    )
    for token in (expired, forged, "garbage", "", "a.b.c"):
        assert signer.verify(LinkPurpose.UNSUBSCRIBE, token) is None


def test_an_access_token_is_never_a_link() -> None:
    access = issue_token(
        user_id="user-1",
        email="a@example.com",
        roles=["customer", "admin"],
        secret=SECRET,
        issuer="fleet",
        ttl_seconds=60,
    )
    assert all(LinkSigner(SECRET).verify(p, access) is None for p in LinkPurpose)
    # Links use a key of their own: a JWT signed with the plain secret and the right audience
    # is refused too.
    raw = jwt.encode(
        {"aud": "fleet:pixel", "sub": "u", "exp": int(time.time()) + 60, "jti": "j"},
        SECRET,
        algorithm="HS256",
    )
    assert LinkSigner(SECRET).verify(LinkPurpose.PIXEL, raw) is None


def test_reserved_claims_cannot_be_overridden() -> None:
    with pytest.raises(ValueError, match="reserved"):
        LinkSigner(SECRET).sign(LinkPurpose.PIXEL, "u", ttl_seconds=60, exp="never")


def test_link_url_joins_the_public_base() -> None:
    assert link_url("http://x:4000/", "/verify-email/", "tok") == "http://x:4000/verify-email/tok"

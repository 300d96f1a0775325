import time

import jwt
import pytest

from shared.auth import (
    ALGORITHM,
    bearer_token,
    hash_password,
    issue_token,
    verify_password,
    verify_token,
)
from shared.errors import Unauthenticated
from shared.links import LinkPurpose, LinkSigner

SECRET = "unit-test-secret-that-is-long-enough-000"
ISSUER = "fleet"


def token_for(**overrides: object) -> str:
    claims: dict[str, object] = {
        "sub": "user-1",
        "email": "ada@example.com",
        "roles": ["customer"],
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "iss": ISSUER,
    }
    claims.update(overrides)
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, SECRET, algorithm=ALGORITHM
    )


def test_issued_token_round_trips_with_every_claim() -> None:
    token = issue_token(
        user_id="u1",
        email="a@b.co",
        roles=["customer", "admin"],
        secret=SECRET,
        issuer=ISSUER,
        ttl_seconds=60,
    )
    claims = jwt.decode(token, SECRET, algorithms=[ALGORITHM], issuer=ISSUER)
    assert {"sub", "email", "roles", "iat", "exp", "iss"} <= claims.keys()
    assert claims["exp"] - claims["iat"] == 60
    caller = verify_token(token, secret=SECRET, issuer=ISSUER)
    assert caller.user_id == "u1"
    assert caller.is_admin


def test_missing_token_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated):
        verify_token(None, secret=SECRET, issuer=ISSUER)


def test_forged_signature_is_unauthenticated() -> None:
    forged = jwt.encode(
        {"sub": "u", "email": "e", "roles": [], "iat": 1, "exp": 2**40, "iss": ISSUER},
        "another-secret-that-is-also-long-enough",
        algorithm=ALGORITHM,
    )
    with pytest.raises(Unauthenticated, match="not valid"):
        verify_token(forged, secret=SECRET, issuer=ISSUER)


def test_expired_token_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(token_for(exp=int(time.time()) - 10), secret=SECRET, issuer=ISSUER)


def test_algorithm_is_pinned_none_is_refused() -> None:
    unsigned = jwt.encode(
        {"sub": "u", "email": "e", "roles": [], "iat": 1, "exp": 2**40, "iss": ISSUER},
        None,
        algorithm="none",
    )
    with pytest.raises(Unauthenticated):
        verify_token(unsigned, secret=SECRET, issuer=ISSUER)


@pytest.mark.parametrize("missing", ["sub", "email", "roles", "iat", "exp", "iss"])
def test_token_missing_a_claim_is_refused(missing: str) -> None:
    with pytest.raises(Unauthenticated):
        verify_token(token_for(**{missing: None}), secret=SECRET, issuer=ISSUER)


def test_wrong_issuer_and_bad_roles_are_refused() -> None:
    with pytest.raises(Unauthenticated):
        verify_token(token_for(iss="someone-else"), secret=SECRET, issuer=ISSUER)
    with pytest.raises(Unauthenticated):
        verify_token(token_for(roles="admin"), secret=SECRET, issuer=ISSUER)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("abc", "abc"),
        ("", None),
        (None, None),
        ("Bearer ", "Bearer"),
    ],
)
def test_bearer_token_accepts_scheme_or_bare_token(
    header: str | None, expected: str | None
) -> None:
    assert bearer_token(header) == expected


def test_a_token_names_its_session() -> None:
    token = issue_token(
        user_id="u-sid",
        email="ada@example.com",
        roles=["customer"],
        secret=SECRET,
        issuer=ISSUER,
        ttl_seconds=60,
        session_id="s-1",
    )
    assert verify_token(token, secret=SECRET, issuer=ISSUER).session_id == "s-1"
    without = issue_token(
        user_id="u-sid",
        email="a@example.com",
        roles=[],
        secret=SECRET,
        issuer=ISSUER,
        ttl_seconds=60,
    )
    assert verify_token(without, secret=SECRET, issuer=ISSUER).session_id is None
    with pytest.raises(Unauthenticated):
        verify_token(token_for(sid=7), secret=SECRET, issuer=ISSUER)


def test_a_signed_link_never_passes_as_an_access_token() -> None:
    link = LinkSigner(SECRET).sign(LinkPurpose.VERIFY_EMAIL, "user-1", ttl_seconds=60)
    with pytest.raises(Unauthenticated):
        verify_token(link, secret=SECRET, issuer=ISSUER)
    # Not even signed with the JWT key itself: the audience is refused.
    with pytest.raises(Unauthenticated):
        verify_token(token_for(aud="fleet:verify-email"), secret=SECRET, issuer=ISSUER)


async def test_password_hash_is_argon2_and_verifies() -> None:
    hashed = await hash_password("correct horse battery")
    assert hashed.startswith("$argon2")
    assert "correct horse" not in hashed
    assert await verify_password("correct horse battery", hashed)
    assert not await verify_password("wrong password", hashed)


async def test_verify_against_missing_hash_is_false() -> None:
    assert not await verify_password("anything at all", None)

"""The user service's pure rules: normalisation, limits, stored shape, public view, settings."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from shared.errors import BadUserInput
from shared.times import as_utc
from tests.fixtures.parts import TEST_JWT_SECRET
from user_service import domain
from user_service.events import preferences_updated, user_registered
from user_service.schemas import RegisterIn
from user_service.settings import UserSettings

LIMITS = domain.InputLimits(password_min_length=8, password_max_length=128, name_max_length=100)


def test_email_is_lower_cased_and_trimmed() -> None:
    assert domain.normalize_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"


def test_preferences_default_to_order_updates() -> None:
    assert domain.normalize_preferences(None) == ["order_updates"]


def test_preferences_drop_duplicates_and_keep_order() -> None:
    assert domain.normalize_preferences(
        ["recommendations", "promotions", "recommendations", "promotions"]
    ) == ["recommendations", "promotions"]


def test_an_empty_preference_list_means_no_emails() -> None:
    assert domain.normalize_preferences([]) == []


def test_unknown_preference_is_rejected_at_the_edge() -> None:
    with pytest.raises(ValidationError):
        RegisterIn(name="A", email="a@example.com", password="x" * 8, preferences=["spam"])


def test_malformed_email_is_rejected_at_the_edge() -> None:
    with pytest.raises(ValidationError):
        RegisterIn(name="A", email="not-an-email", password="x" * 8)


def test_name_is_trimmed() -> None:
    assert domain.clean_name("  Ada  ", LIMITS) == "Ada"


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_empty_or_long_names_are_bad_input(name: str) -> None:
    with pytest.raises(BadUserInput):
        domain.clean_name(name, LIMITS)


def test_name_at_the_limit_is_fine() -> None:
    assert domain.clean_name("x" * 100, LIMITS) == "x" * 100


@pytest.mark.parametrize("password", ["", "1234567", "x" * 129])
def test_password_outside_bounds_is_bad_input(password: str) -> None:
    with pytest.raises(BadUserInput):
        domain.check_password(password, LIMITS)


@pytest.mark.parametrize("password", ["12345678", "x" * 128])
def test_password_within_bounds_is_fine(password: str) -> None:
    domain.check_password(password, LIMITS)


def test_new_user_starts_without_orders_unverified_a_customer_with_one_session() -> None:
    now = datetime.now(UTC)
    session = domain.new_session("u1", now, 60)
    user = domain.new_user_document(
        user_id="u1",
        name="Ada",
        email="ada@example.com",
        password_hash="argon2-hash",
        preferences=["order_updates"],
        created_at=now,
        verify_token_id="v1",
        session=session,
    )
    assert user == {
        "_id": "u1",
        "name": "Ada",
        "email": "ada@example.com",
        "password_hash": "argon2-hash",
        "preferences": ["order_updates"],
        "order_status": "none",
        "orders": [],
        "created_at": now,
        "roles": ["customer"],
        "email_verified": False,
        "verify_jti": "v1",
        "sessions": {session.session_id: session.document},
        "auth_version": 1,
    }
    # Purchases are kept in their own collection, never in the user (issue 15).
    assert "purchase_history" not in user


def test_user_ids_are_uuid4_hex() -> None:
    first, second = domain.new_user_id(), domain.new_user_id()
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


def test_public_view_uses_contract_names_and_never_the_hash() -> None:
    bought = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    product = {"productId": "7", "title": "Lamp", "category": "home", "price": 12.5}
    user = {
        "_id": "u1",
        "name": "Ada",
        "email": "ada@example.com",
        "password_hash": "secret-hash",
        "preferences": ["promotions"],
        "order_status": "Shipped",
        "orders": [product],
        "outbox": [{"id": "e1"}],
    }
    purchase = {"_id": "o1", "user_id": "u1", "products": [product], "purchase_date": bought}
    view = domain.user_out(user, [purchase]).model_dump(mode="json")
    line = {**product, "quantity": 1}  # lines stored before quantities are one of each
    assert view == {
        "id": "u1",
        "name": "Ada",
        "email": "ada@example.com",
        "preferences": ["promotions"],
        "order_status": "Shipped",
        "orders": [line],
        "purchase_history": [
            {"orderId": "o1", "products": [line], "purchaseDate": "2025-01-02T01:04:05Z"}
        ],
        "emailVerified": False,
    }


def test_naive_stored_datetimes_are_read_as_utc() -> None:
    assert as_utc(datetime(2025, 1, 1, 12)) == datetime(2025, 1, 1, 12, tzinfo=UTC)


def test_events_carry_the_user() -> None:
    user = {"_id": "u1", "name": "Ada", "email": "ada@example.com", "preferences": []}
    registered = user_registered(user, "http://x/verify-email/t")
    assert (registered.key, registered.topic) == ("u1", "user.registered")
    assert registered.model_dump() == {
        "user_id": "u1",
        "name": "Ada",
        "email": "ada@example.com",
        "preferences": [],
        "verification_url": "http://x/verify-email/t",
    }
    updated = preferences_updated("u1", ["promotions"])
    assert (updated.key, updated.topic, updated.preferences) == (
        "u1",
        "user.preferences-updated",
        ["promotions"],
    )


def test_settings_defaults() -> None:
    settings = UserSettings(jwt_secret=TEST_JWT_SECRET, _env_file=None)
    assert (settings.service_name, settings.port, settings.database_name) == (
        "user_service",
        5000,
        "user_service",
    )
    assert settings.password_min_length == 8


# --- roles and sessions (issue 13) ---------------------------------------------------------

ADMINS = frozenset({"boss@example.com"})


def test_a_listed_address_becomes_admin_only_when_verified() -> None:
    # Registering stores customer only, whatever ADMIN_EMAILS says.
    assert domain.stored_roles({"roles": ["customer"]}) == ["customer"]
    assert domain.stored_roles({}) == ["customer"]
    assert domain.roles_when_verified("Boss@Example.com", ["customer"], ADMINS) == [
        "customer",
        "admin",
    ]
    assert domain.roles_when_verified("ada@example.com", ["customer"], ADMINS) == ["customer"]
    assert domain.roles_when_verified("boss@example.com", ["customer", "admin"], ADMINS) == [
        "customer",
        "admin",
    ]


def test_granting_and_revoking_a_role_keeps_customer() -> None:
    assert domain.with_role(["customer"], "admin", granted=True) == ["customer", "admin"]
    assert domain.with_role(["customer", "admin"], "admin", granted=False) == ["customer"]
    assert domain.with_role([], "admin", granted=False) == ["customer"]


def test_a_refresh_token_names_user_and_session_and_is_stored_hashed() -> None:
    now = datetime.now(UTC)
    session = domain.new_session("u1", now, 60)
    parsed = domain.parse_refresh_token(session.refresh_token)
    assert parsed is not None
    assert (parsed.user_id, parsed.session_id) == ("u1", session.session_id)
    assert domain.same_hash(parsed.secret_hash, session.document["hash"])
    secret = session.refresh_token.rsplit(".", 1)[1]
    assert secret not in str(session.document)
    assert session.document["expires_at"] == now + timedelta(seconds=60)


@pytest.mark.parametrize(
    "token", ["", "a.b", "a.b.c.d", "u1.$where.x", "u1.a.b.", "u1. .x", "u1.sess.é"]
)
def test_malformed_refresh_tokens_are_refused(token: str) -> None:
    assert domain.parse_refresh_token(token) is None


def test_expired_sessions_are_found() -> None:
    now = datetime.now(UTC)
    sessions = {
        "old": {"expires_at": now - timedelta(seconds=1)},
        "live": {"expires_at": now + timedelta(seconds=1)},
    }
    assert domain.expired_sessions(sessions, now) == ["old"]


def test_the_oldest_live_sessions_are_over_the_cap() -> None:
    now = datetime.now(UTC)
    later = now + timedelta(hours=1)
    sessions = {
        "b": {"created_at": now - timedelta(minutes=2), "expires_at": later},
        "a": {"created_at": now - timedelta(minutes=3), "expires_at": later},
        "c": {"created_at": now - timedelta(minutes=1), "expires_at": later},
        "gone": {"created_at": now - timedelta(days=9), "expires_at": now},
    }
    assert domain.sessions_over(sessions, now, 1) == ["a", "b"]
    assert domain.sessions_over(sessions, now, 5) == []

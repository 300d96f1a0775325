"""Promotion rules: slots, lock keys, rotation, unsubscribe tokens, and the slot locks."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta

import fakeredis
from mongomock_motor import AsyncMongoMockClient

from notification_service import emails
from scheduler_service import domain
from scheduler_service.locks import RedisSlotLock, SlotLock
from scheduler_service.repository import MongoSlotLock
from shared.catalog import Product
from tests.fixtures.parts import eventually


def product(pid: str, rate: float, count: int = 10) -> Product:
    return Product.model_validate(
        {
            "id": pid,
            "title": pid,
            "price": 1,
            "category": "c",
            "rating": {"rate": rate, "count": count},
        }
    )


def test_interval_slots_sit_on_a_grid_shared_by_every_replica() -> None:
    slot = domain.slot_for(domain.EPOCH + timedelta(seconds=7.3), 2)
    assert slot == domain.EPOCH + timedelta(seconds=6)
    assert domain.slot_for(domain.EPOCH + timedelta(seconds=7.9), 2) == slot
    assert domain.slot_for(domain.EPOCH + timedelta(seconds=8.0), 2) != slot


def test_cron_slots_are_minutes() -> None:
    now = datetime(2026, 3, 1, 10, 5, 0, 250_000, tzinfo=UTC)
    assert domain.slot_for(now, None) == datetime(2026, 3, 1, 10, 5, tzinfo=UTC)


def test_lock_keys_name_job_and_slot() -> None:
    slot = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    assert domain.lock_key("promotions", slot) == "job-run:promotions:2026-03-01T10:05:00+00:00"


def test_rotation_skips_bought_and_sent_then_restarts() -> None:
    ordered = domain.promotion_order([product("a", 3), product("b", 5), product("c", 4)])
    assert [p.id for p in ordered] == ["b", "c", "a"]
    pick = domain.next_promotion(ordered, bought={"b"}, sent=[])
    assert pick is not None and pick.product.id == "c" and not pick.restarted
    pick = domain.next_promotion(ordered, bought={"b"}, sent=["c"])
    assert pick is not None and pick.product.id == "a"
    pick = domain.next_promotion(ordered, bought={"b"}, sent=["c", "a"])
    assert pick is not None and pick.product.id == "c" and pick.restarted
    assert domain.next_promotion(ordered, bought={"a", "b", "c"}, sent=[]) is None


def test_unsubscribe_tokens_name_their_user_and_resist_forgery() -> None:
    secret = "s" * 40
    token = domain.unsubscribe_token(secret, "user-1", 60)
    assert domain.user_of_unsubscribe_token(secret, token) == "user-1"
    assert domain.user_of_unsubscribe_token("t" * 40, token) is None
    header, _, signature = token.split(".")
    other_payload = domain.unsubscribe_token(secret, "user-2", 60).split(".")[1]
    assert domain.user_of_unsubscribe_token(secret, f"{header}.{other_payload}.{signature}") is None
    assert domain.user_of_unsubscribe_token(secret, "garbage") is None
    # The old scheme's tokens never expired; these do.
    assert (
        domain.user_of_unsubscribe_token(secret, domain.unsubscribe_token(secret, "u", -1)) is None
    )


SLOT = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
NEXT = SLOT + timedelta(minutes=5)


def locks(lease_seconds: float) -> list[SlotLock]:
    return [
        RedisSlotLock(fakeredis.FakeAsyncRedis(), "promotions", 600, lease_seconds),
        MongoSlotLock(AsyncMongoMockClient()["t"]["job_runs"], "promotions", lease_seconds),
    ]


async def test_a_period_is_leased_once_until_done_and_never_after() -> None:
    for lock in locks(lease_seconds=60):
        token = await lock.acquire(SLOT)
        assert token is not None, lock
        assert await lock.acquire(SLOT) is None, "a live lease is not taken twice"
        assert await lock.acquire(NEXT) is not None, "another period is another lease"
        assert await lock.unfinished(SLOT - timedelta(hours=1)) == [SLOT, NEXT]
        await lock.complete(SLOT)
        assert await lock.acquire(SLOT) is None, "a done period is not run again"
        assert await lock.unfinished(SLOT - timedelta(hours=1)) == [NEXT]


async def test_a_released_or_expired_lease_lets_another_run_finish_the_period() -> None:
    for lock in locks(lease_seconds=60):
        token = await lock.acquire(SLOT)
        assert token is not None
        await lock.release(SLOT, "someone else's token")
        assert await lock.acquire(SLOT) is None, "only the holder gives a lease back"
        await lock.release(SLOT, token)
        assert await lock.acquire(SLOT) is not None, lock
    for lock in locks(lease_seconds=0.05):
        assert await lock.acquire(SLOT) is not None  # then the run crashes
        await eventually(lambda lock=lock: lock.acquire(SLOT), what="the lease to expire")


def test_promotion_emails_carry_a_one_click_list_unsubscribe_header() -> None:
    content = emails.notification_email("promotion", "Deal", None, "http://p/x.gif")
    url = "http://localhost:4000/unsubscribe/abc.def"
    built = emails.build_message(
        content,
        sender="shop@example.com",
        sender_name="Fleet",
        recipient="a@example.com",
        unsubscribe_url=url,
    )
    message = email.message_from_bytes(built.data)
    assert message["List-Unsubscribe"] == f"<{url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    plain = emails.build_message(
        content, sender="shop@example.com", sender_name="Fleet", recipient="a@example.com"
    )
    assert email.message_from_bytes(plain.data)["List-Unsubscribe"] is None

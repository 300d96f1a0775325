"""Create every registry topic, idempotently, retrying until the broker answers."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shared.events.topics import all_topic_names, partitions_of
from shared.logging import get_logger

log = get_logger(__name__)

TOPIC_ALREADY_EXISTS = 36
_REPLICATION_FACTOR = 1


class TopicCreationError(RuntimeError):
    """The broker refused to create a topic for a reason other than 'it exists'."""


async def ensure_topics(
    bootstrap: str,
    *,
    replication_factor: int = _REPLICATION_FACTOR,
    timeout_seconds: float = 60,
    request_timeout_ms: int = 10_000,
) -> list[str]:
    """Create every topic of the registry (and its dead-letter topic); existing ones are fine.

    Returns the names that exist afterwards. Retries with exponential backoff until the broker
    answers or `timeout_seconds` passes.
    """
    names = all_topic_names()
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((KafkaError, OSError)),
        wait=wait_exponential(multiplier=0.2, max=3),
        stop=stop_after_delay(timeout_seconds),
        reraise=True,
    ):
        with attempt:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms
            )
            await admin.start()
            try:
                response = await admin.create_topics(
                    [NewTopic(name, partitions_of(name), replication_factor) for name in names]
                )
                _raise_unexpected_errors(response)
                existing = set(await admin.list_topics())
            finally:
                await admin.close()
    missing = [name for name in names if name not in existing]
    if missing:
        raise TopicCreationError(f"topics still missing after creation: {missing}")
    log.info("topics ready", count=len(names))
    return names


def _raise_unexpected_errors(response: object) -> None:
    errors = getattr(response, "topic_errors", None) or getattr(response, "topic_error_codes", [])
    for item in errors:
        name, code = item[0], item[1]
        if code not in (0, TOPIC_ALREADY_EXISTS):
            raise TopicCreationError(f"broker refused topic {name!r} with error code {code}")


async def missing_topics(bootstrap: str, request_timeout_ms: int = 5000) -> list[str]:
    """Registry topics the broker does not list (lists only: describing would create them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [name for name in all_topic_names() if name not in existing]

"""Shared fixtures: real parts in tests/fixtures/parts.py; everything binds to 127.0.0.1."""

from tests.fixtures.logs import logging_restored  # noqa: F401
from tests.fixtures.memory import filter_calls  # noqa: F401
from tests.fixtures.parts import kafka_broker, redis_url, smtp_server  # noqa: F401

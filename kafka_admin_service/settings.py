"""Settings of the kafka admin service (the common ones come from ServiceSettings)."""

from __future__ import annotations

from pydantic import Field

from shared.services import KAFKA_ADMIN
from shared.settings import ServiceSettings


class KafkaAdminSettings(ServiceSettings):
    """What topic provisioning and monitoring add to the common settings."""

    service_name: str = KAFKA_ADMIN.name
    port: int = Field(default=KAFKA_ADMIN.port, ge=1, le=65535)

    # One round of ensure_topics retries with backoff for this long before it starts over.
    topic_creation_attempt_seconds: float = Field(default=30, gt=0)
    # Pause between two rounds while the broker is still unreachable.
    topic_creation_pause_seconds: float = Field(default=1, gt=0)
    # /ready lists the broker's topics; a broker slower than this counts as not ready.
    topic_check_timeout_ms: int = Field(default=3000, ge=100)

    # The Prometheus gauges (consumer lag, dead-letter depth) are refreshed this often.
    admin_metrics_interval_seconds: float = Field(default=15, gt=0)
    # A replay reads the dead letters in fetches of at most this long each.
    replay_fetch_timeout_ms: int = Field(default=1000, ge=10)

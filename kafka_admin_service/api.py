"""Monitoring API (admin only): topics, consumer-group lag, dead-letter depths, replay."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request

from kafka_admin_service.monitor import BrokerMonitor, dead_letter_topics
from kafka_admin_service.provisioning import TopicProvisioner
from kafka_admin_service.replay import DlqReplayer
from shared.auth import Caller
from shared.errors import Forbidden, NotFound, ServiceUnavailable
from shared.http import CallerDep

ADMIN_ONLY = "Only an admin may use the monitoring API."
UNKNOWN_DLQ = "That dead-letter topic does not exist."
TOPICS_NOT_READY = "The topics are not created yet; try again shortly."
BROKER_UNAVAILABLE = "The broker did not answer; try again shortly."

T = TypeVar("T")


async def _asking(broker: BrokerMonitor, call: Awaitable[T]) -> T:
    """A broker failure is a 503 (and fresh clients next time), not an internal error."""
    try:
        return await call
    except (KafkaError, OSError) as exc:
        await broker.reset()
        raise ServiceUnavailable(BROKER_UNAVAILABLE) from exc


def admin(caller: CallerDep) -> Caller:
    """The caller, who must hold the admin role (no or bad token: 401 before this)."""
    if not caller.is_admin:
        raise Forbidden(ADMIN_ONLY)
    return caller


def monitor(request: Request) -> BrokerMonitor:
    """The monitor, once every registry topic exists (asking earlier could auto-create one)."""
    provisioner: TopicProvisioner = request.app.state.provisioner
    if not provisioner.created.is_set():
        raise ServiceUnavailable(TOPICS_NOT_READY)
    found: BrokerMonitor = request.app.state.monitor
    return found


def replayer(request: Request) -> DlqReplayer:
    """The replayer, built in the lifespan."""
    found: DlqReplayer = request.app.state.replayer
    return found


router = APIRouter(prefix="/api", tags=["monitoring"], dependencies=[Depends(admin)])
MonitorDep = Annotated[BrokerMonitor, Depends(monitor)]
ReplayerDep = Annotated[DlqReplayer, Depends(replayer)]


@router.get("/topics")
async def list_topics(broker: MonitorDep) -> list[dict[str, Any]]:
    return await _asking(broker, broker.topics())


@router.get("/consumer-groups")
async def list_consumer_groups(broker: MonitorDep) -> list[dict[str, Any]]:
    return [row.as_json() for row in await _asking(broker, broker.consumer_lag())]


@router.get("/dlq")
async def list_dead_letter_topics(broker: MonitorDep) -> list[dict[str, Any]]:
    return await _asking(broker, broker.dlq_depths())


@router.post("/dlq/{topic}/replay")
async def replay_dead_letters(
    topic: str, broker: MonitorDep, replay: ReplayerDep
) -> dict[str, Any]:
    if topic not in dead_letter_topics():
        raise NotFound(UNKNOWN_DLQ)
    return {"topic": topic, "replayed": await _asking(broker, replay.replay(topic))}

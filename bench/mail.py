"""Issue 16 (5): mails per second from the notification service's background sender to the
local SMTP sink of `make run` (devstack/smtp_sink.py, a process of its own on loopback).

N pending notifications are stored in the in-process store (`memory://`), then the clock runs
from the sender's start until the SMTP server has taken every mail: the whole path of a mail
(claim, compose, SMTP exchange, settle), through the real MailSender and Mailer with the
service's default settings, in a process of its own logging JSON lines as the service does
(to /dev/null). The sink's mbox is counted afterwards.

    python -m bench.mail [--mails N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from devstack.mbox import Mailbox
from devstack.parts import LOOPBACK, free_port
from notification_service import domain
from notification_service.mailer import Mailer
from notification_service.repository import NotificationRepository
from notification_service.sender import MailSender
from notification_service.settings import NotificationSettings
from shared.links import LinkSigner
from shared.logging import configure_logging
from shared.mongo import MongoStore

MAILS = 3_000
SINK_READY_TIMEOUT_SECONDS = 10.0
TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.05
BENCH_SECRET = "bench-secret-of-at-least-32-characters"  # noqa: S105 - a throwaway store's key


def _sent_so_far() -> float:
    labels = {
        "service": NotificationSettings.model_fields["service_name"].default,
        "outcome": "sent",
    }
    return REGISTRY.get_sample_value("mail_deliveries_total", labels) or 0.0


def _wait_for_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + SINK_READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"the SMTP sink did not listen on {port}")


async def _store_pending(repository: NotificationRepository, run: str, mails: int) -> None:
    now = datetime.now(UTC)
    for index in range(mails):
        notification = domain.new_notification(
            notification_id=f"bench-{run}-{index}",
            user_id=f"bench-user-{index % 100}",
            kind="order_update",
            content=f"Your order bench-{index} is confirmed.",
            email=f"bench-{index}@example.com",
            subject=None,
            delivery=domain.initial_delivery(wants=True, mail_enabled=True, now=now),
            sent_at=now,
        )
        await repository.insert_new(notification, [])


async def _send_all(port: int, mails: int) -> dict[str, Any]:
    settings = NotificationSettings(
        smtp_host=LOOPBACK,
        smtp_port=port,
        mongo_uri="memory://",
        mongo_database=f"bench_mail_{uuid.uuid4().hex[:8]}",
        jwt_secret=BENCH_SECRET,
    )
    store = MongoStore(settings.mongo_uri, settings.database_name)
    repository = NotificationRepository(store.db)
    await repository.ensure_indexes()
    await _store_pending(repository, uuid.uuid4().hex[:8], mails)
    sender = MailSender(settings, repository, Mailer(settings), LinkSigner(BENCH_SECRET))
    goal = _sent_so_far() + mails
    started = time.perf_counter()
    sender.start()
    try:
        for _ in range(int(TIMEOUT_SECONDS / POLL_SECONDS)):
            if _sent_so_far() >= goal:
                break
            await asyncio.sleep(POLL_SECONDS)
        elapsed = time.perf_counter() - started
    finally:
        await sender.stop()
        await store.close()
    sent = mails - (goal - _sent_so_far())
    return {
        "mails": mails,
        "sent": int(sent),
        "seconds": round(elapsed, 2),
        "mail_per_second": round(sent / elapsed, 1),
        "smtp_max_connections": settings.smtp_max_connections,
        "smtp_connections_opened": sender.mailer.connections_opened,
    }


def measure_mail(mails: int = MAILS) -> dict[str, Any]:
    """Send `mails` mails through the real sender to a fresh SMTP sink; mails per second."""
    with tempfile.TemporaryDirectory(prefix="bench-mail-") as tmp:
        folder, result = Path(tmp) / "mail", Path(tmp) / "result.json"
        port = free_port()
        sink = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "devstack.smtp_sink", "--port", str(port), str(folder)],
            stdout=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port)
            sender = ["--sender-only", str(port), str(result)]
            subprocess.run(  # noqa: S603 - our own module, fixed arguments
                [sys.executable, "-m", "bench.mail", "--mails", str(mails), *sender],
                stdout=subprocess.DEVNULL,
                check=True,
                timeout=TIMEOUT_SECONDS + SINK_READY_TIMEOUT_SECONDS,
            )
        finally:
            sink.terminate()
            sink.wait(timeout=10)
        return {**json.loads(result.read_text()), "delivered": Mailbox(folder).count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=MAILS)
    parser.add_argument("--sender-only", nargs=2, metavar=("SMTP_PORT", "RESULT_FILE"))
    args = parser.parse_args()
    if args.sender_only is None:
        print(json.dumps(measure_mail(args.mails), indent=2))
        return
    port, result = args.sender_only
    defaults = NotificationSettings.model_fields
    configure_logging(
        defaults["service_name"].default,
        routine_per_second=defaults["log_routine_per_second"].default,
    )
    Path(result).write_text(json.dumps(asyncio.run(_send_all(int(port), args.mails))))


if __name__ == "__main__":
    main()

"""Email delivery with the real broker and real SMTP servers (aiosmtpd): the consumer never waits
on SMTP, the background sender retries with backoff, and when SMTP comes back every pending mail
goes out exactly once. Each test prints a tally (sent, stored, delivered, duplicated)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiosmtpd.controller import Controller
from prometheus_client import REGISTRY

from devstack.parts import LOOPBACK, free_port
from devstack.smtp_sink import OffersPipelining
from notification_service import domain, emails
from notification_service.emails import OutgoingMail
from notification_service.mailer import Mailer
from notification_service.main import create_app
from notification_service.repository import NotificationRepository
from notification_service.sender import MailSender
from notification_service.settings import NotificationSettings
from shared.bus import EventConsumer
from shared.events import Envelope, NotificationRequested, UserRegistered
from shared.events.topics import partitions_of
from shared.links import LinkSigner
from shared.mongo import MongoStore
from shared.publisher import EventPublisher
from tests.fixtures.apps import running_service, service_settings
from tests.fixtures.parts import SmtpRecorder, eventually

pytestmark = pytest.mark.integration

EVENTS = 6
FAULT_EVENTS = 20
# How long SMTP refuses in the quick test, and is down (no listener) in the fault test.
REFUSAL_SECONDS = 3.0
OUTAGE_SECONDS = 30.0


def mail_settings(broker: str, smtp: SmtpRecorder, **overrides: Any) -> NotificationSettings:
    values: dict[str, Any] = {
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "smtp_mail": "fleet@example.test",
        "smtp_timeout_seconds": 2.0,
        "mail_retry_base_seconds": 0.2,
        "mail_retry_max_seconds": 1.0,
        "mail_max_attempts": 1000,
        "mail_poll_interval_seconds": 0.1,
        **overrides,
    }
    return service_settings(NotificationSettings, broker, **values)


@dataclass
class Running:
    repository: NotificationRepository
    publisher: EventPublisher


@asynccontextmanager
async def notification_service(settings: NotificationSettings) -> AsyncIterator[Running]:
    """The service app in-process, in a consumer group of its own (Tansu is slow to re-admit a
    group that another test just left), with a publisher for the test."""
    publisher = EventPublisher(settings.model_copy(update={"service_name": "test"}))
    await publisher.start()
    group = f"notification_service-test-{uuid.uuid4().hex[:8]}"
    await start_group_at_the_end(settings.kafka_broker, group)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("notification_service.main.CONSUMER_GROUP", group)
            async with running_service(create_app, settings) as running:
                app = running.app
                consumer: EventConsumer = app.state.runtime.consumers[0]
                await eventually(consumer.assigned, timeout=60, what="the consumer's partitions")
                yield Running(app.state.service.repository, publisher)
    finally:
        await publisher.stop()


async def start_group_at_the_end(broker: str, group: str) -> None:
    """Commit the group at the topics' ends, so it does not replay what other tests published."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in (UserRegistered.topic, NotificationRequested.topic)
            for p in range(partitions_of(topic))
        ]
        consumer.assign(tps)
        await consumer.commit(dict(await consumer.end_offsets(tps)))
    finally:
        await consumer.stop()


def mail_request(address: str, run: str, index: int) -> NotificationRequested:
    return NotificationRequested(
        user_id=f"user-{run}-{index}",
        type="promotion",
        content=f"Offer {index} of run {run}.",
        email=address,
        send_email=True,
        subject=f"Offer {index}",
    )


async def publish_requests(running: Running, addresses: list[str], run: str) -> list[Envelope]:
    envelopes = []
    for index, address in enumerate(addresses):
        event = mail_request(address, run, index)
        envelope = running.publisher.envelope_for(event)
        await running.publisher.publish_envelope(event.topic, event.key, envelope)
        envelopes.append(envelope)
    return envelopes


async def deliveries(running: Running, envelopes: list[Envelope]) -> list[dict[str, Any]]:
    found = [await running.repository.get(str(e.id)) for e in envelopes]
    return [n["delivery"] for n in found if n is not None]


def tally(label: str, *, sent: int, stored: int, received: Counter[str]) -> int:
    duplicated = sum(count - 1 for count in received.values() if count > 1)
    print(
        f"\n[{label}] sent={sent} stored={stored} delivered={len(received)} duplicated={duplicated}"
    )
    return duplicated


async def test_refused_mail_is_retried_and_delivered_exactly_once(
    kafka_broker: str, smtp_server: SmtpRecorder
) -> None:
    run = uuid.uuid4().hex[:8]
    addresses = [f"retry-{run}-{i}@example.com" for i in range(EVENTS)]
    async with notification_service(mail_settings(kafka_broker, smtp_server)) as running:
        sent_before = counted("sent")
        smtp_server.refuse = True
        try:
            envelopes = await publish_requests(running, addresses, run)

            async def all_retrying() -> bool:
                found = await deliveries(running, envelopes)
                return len(found) == EVENTS and all(
                    d["status"] == "pending" and d["attempts"] >= 2 and "451" in d["last_error"]
                    for d in found
                )

            # Stored while SMTP refuses (the consumer does not wait on it), each retried.
            await eventually(all_retrying, timeout=30, what="every mail to be stored and retried")
            # Holding the fault for its duration (not waiting for a condition).
            await asyncio.sleep(REFUSAL_SECONDS)
            assert not any(smtp_server.to(a) for a in addresses)
        finally:
            smtp_server.refuse = False

        async def all_sent() -> bool:
            found = await deliveries(running, envelopes)
            return len(found) == EVENTS and all(d["status"] == "sent" for d in found)

        await eventually(all_sent, timeout=30, what="every mail to be sent once SMTP is back")
        # At least: the counter is the process's, and other tests' senders may run meanwhile.
        assert counted("sent") - sent_before >= EVENTS
        found = await deliveries(running, envelopes)
        # `sent` is final: nothing sends it again, so these counts are the end state.
        received = Counter({a: len(smtp_server.to(a)) for a in addresses if smtp_server.to(a)})
        duplicated = tally("smtp refused 3 s", sent=EVENTS, stored=len(found), received=received)
        assert duplicated == 0
        assert sorted(received) == sorted(addresses)
        assert all(d["last_error"] is None and d["sent_at"] is not None for d in found)


async def test_mail_is_given_up_after_the_last_attempt(
    kafka_broker: str, smtp_server: SmtpRecorder
) -> None:
    run = uuid.uuid4().hex[:8]
    address = f"give-up-{run}@example.com"
    settings = mail_settings(kafka_broker, smtp_server, mail_max_attempts=3)
    before = {outcome: counted(outcome) for outcome in ("retrying", "failed")}
    async with notification_service(settings) as running:
        smtp_server.refuse = True
        try:
            [envelope] = await publish_requests(running, [address], run)

            async def failed() -> dict[str, Any] | None:
                found = await deliveries(running, [envelope])
                return found[0] if found and found[0]["status"] == "failed" else None

            delivery = await eventually(failed, timeout=30, what="the mail to be given up")
        finally:
            smtp_server.refuse = False
    assert delivery["attempts"] == 3
    assert "451" in delivery["last_error"]
    assert delivery["next_attempt_at"] is None
    assert smtp_server.to(address) == []
    # The dashboard's and the MailFailing alert's counters.
    # At least: the counter is the process's, and other tests' senders may run meanwhile.
    assert counted("retrying") - before["retrying"] >= 2
    assert counted("failed") - before["failed"] >= 1


def counted(outcome: str) -> float:
    labels = {"service": "notification_service", "outcome": outcome}
    return REGISTRY.get_sample_value("mail_deliveries_total", labels) or 0.0


@pytest.mark.parametrize("batches", [False, True], ids=["one by one", "batches"])
async def test_two_senders_never_send_the_same_mail(
    smtp_server: SmtpRecorder, batches: bool
) -> None:
    """Two replicas' senders over one collection: each claim is exclusive, also when both
    work through the same batch of due mail several at a time."""
    run = uuid.uuid4().hex[:8]
    count = 30
    settings = mail_settings("127.0.0.1:1", smtp_server, smtp_max_connections=3)
    addresses = [f"pair-{run}-{i}@example.com" for i in range(count)]

    async def drain(sender: MailSender) -> int:
        if batches:
            return await sender.send_due()
        sent = 0
        while await sender.send_one():
            sent += 1
        return sent

    async with pending_mail(settings, addresses) as repository:
        senders = [
            MailSender(settings, repository, Mailer(settings), LinkSigner("k" * 32))
            for _ in range(2)
        ]
        try:
            per_sender = await asyncio.gather(*(drain(s) for s in senders))
        finally:
            for sender in senders:
                sender.mailer.close()
    received = Counter({a: len(smtp_server.to(a)) for a in addresses if smtp_server.to(a)})
    duplicated = tally("two senders", sent=count, stored=count, received=received)
    assert sum(per_sender) == count
    assert duplicated == 0
    assert sorted(received) == sorted(addresses)


class RestartableSmtp:
    """An SMTP server of the test's own that can really go away (nothing listens) and return
    on the same port."""

    def __init__(self) -> None:
        self.recorder = SmtpRecorder(LOOPBACK, free_port())
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.recorder, hostname=LOOPBACK, port=self.recorder.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def own_smtp() -> Iterator[RestartableSmtp]:
    server = RestartableSmtp()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.fault
async def test_smtp_down_30_s_every_mail_delivered_once_afterwards(
    kafka_broker: str, own_smtp: RestartableSmtp
) -> None:
    """Issue 5, 7c: the SMTP server is gone for 30 s while events keep coming."""
    run = uuid.uuid4().hex[:8]
    addresses = [f"outage-{run}-{i}@example.com" for i in range(FAULT_EVENTS)]
    settings = mail_settings(kafka_broker, own_smtp.recorder, mail_retry_max_seconds=2.0)
    async with notification_service(settings) as running:
        await asyncio.to_thread(own_smtp.stop)
        down_until = time.monotonic() + OUTAGE_SECONDS
        envelopes: list[Envelope] = []
        try:
            # Events flow through the outage, spread over it.
            pause = OUTAGE_SECONDS / 2 / FAULT_EVENTS
            for index in range(FAULT_EVENTS):
                envelopes += await publish_requests(running, [addresses[index]], f"{run}-{index}")
                await asyncio.sleep(pause)

            async def all_stored_and_failing() -> bool:
                found = await deliveries(running, envelopes)
                return len(found) == FAULT_EVENTS and all(
                    d["status"] == "pending" and d["attempts"] >= 1 for d in found
                )

            await eventually(all_stored_and_failing, timeout=OUTAGE_SECONDS, what="all stored")
            # Holding the outage for its full duration (not waiting for a condition).
            await asyncio.sleep(max(down_until - time.monotonic(), 0))
            assert own_smtp.recorder.messages == []
        finally:
            await asyncio.to_thread(own_smtp.start)

        async def all_sent() -> bool:
            found = await deliveries(running, envelopes)
            return len(found) == FAULT_EVENTS and all(d["status"] == "sent" for d in found)

        await eventually(all_sent, timeout=30, what="every mail to be sent after the outage")
        found = await deliveries(running, envelopes)
        recorder = own_smtp.recorder
        received = Counter({a: len(recorder.to(a)) for a in addresses if recorder.to(a)})
        duplicated = tally(
            "smtp down 30 s", sent=FAULT_EVENTS, stored=len(found), received=received
        )
        assert duplicated == 0
        assert sorted(received) == sorted(addresses)
        assert max(d["attempts"] for d in found) >= 2


class SlowFirstExchange(SmtpRecorder):
    """An SMTP server whose first session answers every command just inside the per-step
    timeout: no step times out, the whole exchange takes longer than the mail's lease."""

    step_seconds: float = 0.0
    slow_session: Any = None

    async def _stall(self, session: Any) -> None:
        if self.slow_session is None:
            self.slow_session = session
        if session is self.slow_session:
            await asyncio.sleep(self.step_seconds)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        await self._stall(session)
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await self._stall(session)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await self._stall(session)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await self._stall(session)
        return await super().handle_DATA(server, session, envelope)


async def test_a_slow_smtp_exchange_ends_inside_its_lease_so_no_other_sender_repeats_it() -> None:
    """Per-step timeouts alone let a slow server stretch one send past its lease, and a second
    replica sends the same mail; the overall send timeout ends it first."""
    step, lease = 0.7, 2.0  # four stalled steps (2.8 s), each inside the 1 s step timeout
    smtp = SlowFirstExchange(LOOPBACK, free_port())
    smtp.step_seconds = step
    controller = Controller(smtp, hostname=LOOPBACK, port=smtp.port)
    controller.start()
    run = uuid.uuid4().hex[:8]
    settings = mail_settings(
        "127.0.0.1:1",
        smtp,
        smtp_timeout_seconds=1.0,
        smtp_send_timeout_seconds=1.5,
        mail_lease_seconds=lease,
        mail_retry_base_seconds=0.1,
    )
    store = MongoStore(settings.mongo_uri, settings.database_name)
    repository = NotificationRepository(store.db)
    address = f"slow-{run}@example.com"
    now = datetime.now(UTC)
    notification = domain.new_notification(
        notification_id=f"slow-{run}",
        user_id=f"user-{run}",
        kind="promotion",
        content="Offer",
        email=address,
        subject=None,
        delivery=domain.initial_delivery(wants=True, mail_enabled=True, now=now),
        sent_at=now,
    )
    try:
        await repository.ensure_indexes()
        assert await repository.insert_new(notification, [])
        first, second = (
            MailSender(settings, repository, Mailer(settings), LinkSigner("k" * 32)) for _ in "ab"
        )
        slow = asyncio.create_task(first.send_one())  # claims the mail, meets the slow server
        await eventually(lambda: smtp.slow_session is not None, what="the slow exchange")
        # The other replica claims the mail once the first gives it back or its lease expires.
        await eventually(second.send_one, timeout=10, what="the second sender's claim")
        await slow
        stored = await repository.get(f"slow-{run}")
    finally:
        controller.stop()
        await store.close()
    received = Counter({address: len(smtp.to(address))})
    duplicated = tally("slow smtp", sent=1, stored=1, received=received)
    assert stored is not None and stored["delivery"]["status"] == "sent"
    assert duplicated == 0, "the mail was sent again while the first exchange still ran"
    assert received[address] == 1


# --- kept-open SMTP connections (issue 16) ---------------------------------------------------


class ConnectionCountingSmtp(SmtpRecorder):
    """Records which connection (aiosmtpd session) carried each message; `drop_at_mail` and
    `drop_after_data` make it cut the connection of the n-th MAIL command or DATA (counted from
    1) without answering, as a server dropping an idle client or dying mid-message would."""

    sessions: list[Any]
    mail_commands: int = 0
    drop_at_mail: int | None = None
    data_commands: int = 0
    drop_after_data: int | None = None

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.mail_commands += 1
        if self.mail_commands == self.drop_at_mail:
            server.transport.close()
            return "421 closing"  # never reaches the client: the connection is gone
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sessions.append(session)
        answer = await super().handle_DATA(server, session, envelope)
        self.data_commands += 1
        if self.data_commands == self.drop_after_data:
            server.transport.close()  # the message arrived; the client never hears so
        return answer

    def connections(self) -> int:
        return len({id(session) for session in self.sessions})


class PipeliningCountingSmtp(OffersPipelining, ConnectionCountingSmtp):
    """The same, offering PIPELINING as devstack's sink does: MAIL, RCPT and DATA come in one
    write, and a connection cut at MAIL loses all three."""


@asynccontextmanager
async def counting_smtp(pipelining: bool = False) -> AsyncIterator[ConnectionCountingSmtp]:
    kind = PipeliningCountingSmtp if pipelining else ConnectionCountingSmtp
    smtp = kind(LOOPBACK, free_port())
    smtp.sessions = []
    controller = Controller(smtp, hostname=LOOPBACK, port=smtp.port)
    controller.start()
    try:
        yield smtp
    finally:
        controller.stop()


@asynccontextmanager
async def pending_mail(
    settings: NotificationSettings, addresses: list[str]
) -> AsyncIterator[NotificationRepository]:
    """A repository (in-process store) holding one due mail to each address, id = address."""
    store = MongoStore(settings.mongo_uri, settings.database_name)
    repository = NotificationRepository(store.db)
    await repository.ensure_indexes()
    now = datetime.now(UTC)
    for index, address in enumerate(addresses):
        notification = domain.new_notification(
            notification_id=address,
            user_id=f"user-{index}",
            kind="promotion",
            content=f"Offer {index}",
            email=address,
            subject=None,
            delivery=domain.initial_delivery(wants=True, mail_enabled=True, now=now),
            sent_at=now,
        )
        assert await repository.insert_new(notification, [])
    try:
        yield repository
    finally:
        await store.close()


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
async def test_many_mails_share_a_few_kept_open_connections(pipelining: bool) -> None:
    run = uuid.uuid4().hex[:8]
    count, connections = 40, 3
    addresses = [f"pooled-{run}-{i}@example.com" for i in range(count)]
    async with counting_smtp(pipelining) as smtp:
        settings = mail_settings("127.0.0.1:1", smtp, smtp_max_connections=connections)
        async with pending_mail(settings, addresses) as repository:
            mailer = Mailer(settings)
            sender = MailSender(settings, repository, mailer, LinkSigner("k" * 32))
            try:
                assert await sender.send_due() == count
            finally:
                mailer.close()
            found = [await repository.get(a) for a in addresses]
    received = Counter({a: len(smtp.to(a)) for a in addresses if smtp.to(a)})
    assert tally("pooled", sent=count, stored=count, received=received) == 0
    assert sorted(received) == sorted(addresses)
    assert all(n is not None and n["delivery"]["status"] == "sent" for n in found)
    # One connection per mail before: 40 connections for 40 mails.
    assert 1 <= smtp.connections() <= connections
    assert mailer.connections_opened <= connections


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
async def test_a_kept_connection_dropped_by_the_server_costs_no_mail_and_no_copy(
    pipelining: bool,
) -> None:
    """The server drops the kept connection as the next mail begins (before anything of that
    mail was handed over): the mail goes out once on a new connection, no failure counted."""
    run = uuid.uuid4().hex[:8]
    first, second = (f"dropped-{run}-{n}@example.com" for n in "ab")
    async with counting_smtp(pipelining) as smtp:
        smtp.drop_at_mail = 2  # the second mail's MAIL FROM, on the connection kept from the first
        settings = mail_settings("127.0.0.1:1", smtp, smtp_max_connections=1)
        async with pending_mail(settings, [first]) as repository:
            mailer = Mailer(settings)
            sender = MailSender(settings, repository, mailer, LinkSigner("k" * 32))
            try:
                assert await sender.send_one()
                await repository.insert_new(
                    {**(await repository.get(first) or {}), "_id": second, "email": second}
                    | {"delivery": domain.initial_delivery(wants=True, mail_enabled=True)},
                    [],
                )
                assert await sender.send_one()
            finally:
                mailer.close()
            delivery = (await repository.get(second) or {})["delivery"]
    assert len(smtp.to(first)) == 1
    assert len(smtp.to(second)) == 1
    assert delivery["status"] == "sent"
    assert delivery["attempts"] == 1 and delivery["last_error"] is None
    assert mailer.connections_opened == 2
    assert smtp.connections() == 2


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
async def test_a_connection_lost_after_the_message_went_over_is_not_resent_at_once(
    pipelining: bool,
) -> None:
    """Only a mail that never reached DATA is retried on a new connection: one lost after its
    content was sent may have been taken, so it waits for its backoff like any failure."""
    run = uuid.uuid4().hex[:8]
    address = f"lost-{run}@example.com"
    async with counting_smtp(pipelining) as smtp:
        smtp.drop_after_data = 1
        settings = mail_settings(
            "127.0.0.1:1", smtp, mail_retry_base_seconds=60.0, mail_retry_max_seconds=60.0
        )
        async with pending_mail(settings, [address]) as repository:
            mailer = Mailer(settings)
            sender = MailSender(settings, repository, mailer, LinkSigner("k" * 32))
            try:
                assert await sender.send_one()
                assert not await sender.send_one()  # not due again before its backoff
            finally:
                mailer.close()
            delivery = (await repository.get(address) or {})["delivery"]
    assert len(smtp.to(address)) == 1
    assert delivery["status"] == "pending"
    assert delivery["attempts"] == 1 and delivery["last_error"]
    assert mailer.connections_opened == 1


async def test_a_connection_idle_too_long_is_closed_and_the_next_mail_opens_one() -> None:
    run = uuid.uuid4().hex[:8]
    first, second = (f"idle-{run}-{n}@example.com" for n in "ab")
    async with counting_smtp() as smtp:
        settings = mail_settings("127.0.0.1:1", smtp, smtp_connection_idle_seconds=0.2)
        mailer = Mailer(settings)
        try:
            await mailer.send(build_mail(settings, first))
            mailer.close_idle()  # not idle long enough yet: kept
            await mailer.send(build_mail(settings, second))
            assert (mailer.connections_opened, mailer.kept_connections) == (1, 1)
            await asyncio.sleep(0.3)  # idle past SMTP_CONNECTION_IDLE_SECONDS
            mailer.close_idle()
            assert mailer.kept_connections == 0
            await mailer.send(build_mail(settings, first))
            assert mailer.connections_opened == 2
        finally:
            mailer.close()
    assert smtp.connections() == 2


def build_mail(settings: NotificationSettings, address: str) -> OutgoingMail:
    content = emails.notification_email("promotion", "Offer", None, "http://p/x.gif")
    return emails.build_message(
        content, sender=settings.smtp_mail, sender_name="Fleet", recipient=address
    )


# --- TLS: the pipelined session on a secured connection -------------------------------------


@pytest.fixture
def loopback_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A self-signed certificate for 127.0.0.1 (openssl), trusted by this process's default
    TLS contexts (SSL_CERT_FILE): the mailer checks certificates as against a real server."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(  # noqa: S603 - fixed arguments
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={LOOPBACK}", "-addext", f"subjectAltName=IP:{LOOPBACK}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
async def test_mail_over_tls_is_pipelined_on_the_secured_connection(
    loopback_certificate: Path, implicit: bool
) -> None:
    """After aiosmtplib's TLS (STARTTLS, or TLS from the first byte) the session's reader reads
    the secured connection: mails go out pipelined, one connection for all of them."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(loopback_certificate, loopback_certificate.with_name("key.pem"))
    smtp = PipeliningCountingSmtp(LOOPBACK, free_port())
    smtp.sessions = []
    tls = (
        {"ssl_context": context} if implicit else {"tls_context": context, "require_starttls": True}
    )
    controller = Controller(smtp, hostname=LOOPBACK, port=smtp.port, **tls)
    controller.start()
    run = uuid.uuid4().hex[:8]
    addresses = [f"tls-{run}-{n}@example.com" for n in range(3)]
    try:
        settings = mail_settings(
            "127.0.0.1:1",
            smtp,
            smtp_use_tls=implicit,
            smtp_starttls=None if implicit else True,
            smtp_max_connections=1,
        )
        mailer = Mailer(settings)
        try:
            for address in addresses:
                await mailer.send(build_mail(settings, address))
            assert mailer._idle[0].session.pipelining
        finally:
            mailer.close()
    finally:
        controller.stop()
    assert all(len(smtp.to(a)) == 1 for a in addresses)
    assert mailer.connections_opened == smtp.connections() == 1

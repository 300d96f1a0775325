"""The notification service's pure rules: tokens, email composition, delivery states, SMTP."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage, Message

import pytest

from notification_service import domain, emails, tracking
from notification_service.mailer import SMTP_PORT, SMTPS_PORT, resolve_endpoint
from notification_service.service import Notifications
from notification_service.settings import NotificationSettings
from shared.events.models import NotificationRequested
from shared.links import LinkPurpose, LinkSigner
from tests.fixtures.parts import TEST_JWT_SECRET

LINKS = LinkSigner(TEST_JWT_SECRET)
TTL = 3600


def settings(**overrides: object) -> NotificationSettings:
    return NotificationSettings(jwt_secret=TEST_JWT_SECRET, _env_file=None, **overrides)  # type: ignore[arg-type]


# --- tracking tokens (signed links of purpose `pixel`) ------------------------------------


def test_a_signed_token_names_the_notification_and_user() -> None:
    token = tracking.sign(LINKS, "n-1", "u-1", TTL)
    assert tracking.verify(LINKS, token) == tracking.TrackedRead("n-1", "u-1")


def test_tokens_are_url_path_safe() -> None:
    token = tracking.sign(LINKS, str(uuid.uuid4()), uuid.uuid4().hex, TTL)
    assert re.fullmatch(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+", token)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    other = LinkSigner("another-secret-" + "x" * 32)
    assert tracking.verify(LINKS, tracking.sign(other, "n-1", "u-1", TTL)) is None


def test_a_token_expires() -> None:
    """The old hand-written scheme's tokens never expired."""
    assert tracking.verify(LINKS, tracking.sign(LINKS, "n-1", "u-1", -1)) is None


def test_a_link_of_another_purpose_is_refused() -> None:
    unsubscribe = LINKS.sign(LinkPurpose.UNSUBSCRIBE, "u-1", ttl_seconds=TTL, n="n-1")
    assert tracking.verify(LINKS, unsubscribe) is None


def _flip(char: str) -> str:
    return "A" if char != "A" else "B"


def test_a_tampered_token_is_refused() -> None:
    token = tracking.sign(LINKS, "n-1", "u-1", TTL)
    header, payload, signature = token.split(".")
    assert (
        tracking.verify(LINKS, f"{header}.{payload}.{signature[:-2]}{_flip(signature[-2])}x")
        is None
    )
    forged_payload = tracking.sign(LINKS, "n-2", "u-1", TTL).split(".")[1]
    assert tracking.verify(LINKS, f"{header}.{forged_payload}.{signature}") is None


@pytest.mark.parametrize("token", ["", ".", "abc", "abc.", ".abc", "é.é", "a.b.c", "%%%.%%%"])
def test_malformed_tokens_are_refused(token: str) -> None:
    assert tracking.verify(LINKS, token) is None


def test_a_validly_signed_link_without_a_notification_is_refused() -> None:
    assert tracking.verify(LINKS, LINKS.sign(LinkPurpose.PIXEL, "u-1", ttl_seconds=TTL)) is None


# --- email composition -------------------------------------------------------------------


def _parts(message: Message) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_payload(decode=True).decode()  # type: ignore[union-attr]
        for part in message.walk()
        if not part.is_multipart()
    }


def test_welcome_email_has_subject_text_html_and_pixel() -> None:
    pixel = emails.pixel_url("https://shop.example.com/", "tok.sig")
    assert pixel == "https://shop.example.com/track/tok.sig.gif"
    content = emails.welcome_email("Ada <b>", pixel)
    assert content.subject == "Welcome to Fleet"
    assert "Welcome to Fleet, Ada <b>!" in content.text
    assert "Ada &lt;b&gt;" in content.html
    assert f'<img src="{pixel}" width="1" height="1" alt="">' in content.html
    assert pixel not in content.text


def test_the_message_is_multipart_alternative() -> None:
    pixel = emails.pixel_url("http://localhost:4000", "t.s")
    content = emails.welcome_email("Ada", pixel)
    built = emails.build_message(
        content, sender="fleet@example.com", sender_name="Fleet", recipient="ada@example.com"
    )
    parsed = email.message_from_bytes(built.data)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["Subject"] == "Welcome to Fleet"
    assert parsed["To"] == "ada@example.com"
    assert parsed["From"] == "Fleet <fleet@example.com>"
    parts = _parts(parsed)
    assert "Welcome to Fleet, Ada!" in parts["text/plain"]
    assert "http://localhost:4000/track/t.s.gif" in parts["text/html"]


def test_a_message_outside_ascii_is_valid_mime_that_reads_back_the_same() -> None:
    """Built without EmailMessage (issue 16): RFC 2047 headers, quoted-printable bodies, lines
    within the limits, no defect a parser finds."""
    subject = "Ça marche — votre commande numéro 12345 est confirmée, merci beaucoup !"
    text = "Héllo wörld, " * 100 + "\n.a line starting with a dot\n=equals"
    content = emails.notification_email("other", text, subject, "http://p/x.gif")
    built = emails.build_message(
        content,
        sender="fleet@example.com",
        sender_name="Flëet, Inc.",
        recipient="ada@example.com",
        unsubscribe_url="http://localhost:4000/unsubscribe/a.b",
        message_id="n-1",
    )
    assert built.data.isascii() and not built.international
    lines = built.data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 78
    assert b"\n" not in built.data.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(built.data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.defects == [] and all(part.defects == [] for part in parsed.walk())
    assert parsed["Subject"] == subject
    assert parsed["From"].addresses[0].display_name == "Flëet, Inc."
    assert parsed["Message-ID"] == "<n-1@example.com>"
    assert parsed["List-Unsubscribe"] == "<http://localhost:4000/unsubscribe/a.b>"
    assert parsed.get_content_type() == "multipart/alternative"
    plain, rich = parsed.iter_parts()
    assert isinstance(plain, EmailMessage) and isinstance(rich, EmailMessage)
    assert plain.get_content().replace("\r\n", "\n") == content.text
    assert rich.get_content().replace("\r\n", "\n") == content.html


def test_requested_email_subject_defaults_by_type_and_stays_on_one_line() -> None:
    assert (
        emails.notification_email("promotion", "50% off", None, "p").subject
        == (emails.SUBJECTS["promotion"])
    )
    injected = emails.notification_email("other", "hi", "Hello\r\nBcc: evil@example.com", "p")
    assert injected.subject == "Hello Bcc: evil@example.com"


# --- rules -------------------------------------------------------------------------------


def test_notification_id_is_the_event_id() -> None:
    event_id = uuid.uuid4()
    assert domain.notification_id_for(event_id) == str(event_id)


def test_welcome_content_names_the_user() -> None:
    assert domain.welcome_content("Ada").startswith("Welcome to Fleet, Ada!")


@pytest.mark.parametrize(
    ("send_email", "address", "expected"),
    [(True, "a@example.com", True), (True, None, False), (False, "a@example.com", False)],
)
def test_requested_notifications_are_emailed_only_when_asked_and_addressed(
    send_email: bool, address: str | None, expected: bool
) -> None:
    event = NotificationRequested(
        user_id="u", type="promotion", content="c", email=address, send_email=send_email
    )
    assert domain.wants_email(event) is expected


@pytest.mark.parametrize(
    ("wants", "enabled", "status"),
    [(True, True, "pending"), (True, False, "skipped"), (False, True, "skipped")],
)
def test_initial_delivery(wants: bool, enabled: bool, status: str) -> None:
    delivery = domain.initial_delivery(wants=wants, mail_enabled=enabled)
    assert delivery["status"] == status
    assert delivery["attempts"] == 0
    assert (delivery["last_error"] is None) is (status == "pending")


def test_public_view() -> None:
    sent = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
    stored = domain.new_notification(
        notification_id="n",
        user_id="u",
        kind="other",
        content="hello",
        email="a@example.com",
        subject=None,
        delivery=domain.initial_delivery(wants=False, mail_enabled=True),
        sent_at=sent,
    )
    assert domain.notification_out(stored).model_dump(mode="json") == {
        "id": "n",
        "userId": "u",
        "type": "other",
        "content": "hello",
        "sentAt": "2025-05-06T07:08:09Z",
        "read": False,
    }


# --- SMTP endpoint and settings ----------------------------------------------------------


def test_no_host_and_no_service_disables_email() -> None:
    assert resolve_endpoint(settings()) is None


def test_explicit_host() -> None:
    endpoint = resolve_endpoint(settings(smtp_host="mail.local", smtp_port=2525))
    assert endpoint is not None
    assert (endpoint.host, endpoint.port, endpoint.use_tls, endpoint.start_tls) == (
        "mail.local",
        2525,
        False,
        None,
    )
    assert endpoint.username is None


def test_known_service_fills_host_port_and_tls() -> None:
    endpoint = resolve_endpoint(
        settings(smtp_service="Gmail", smtp_mail="me@gmail.com", smtp_password="app-pass")
    )
    assert endpoint is not None
    assert (endpoint.host, endpoint.port, endpoint.use_tls, endpoint.start_tls) == (
        "smtp.gmail.com",
        SMTPS_PORT,
        True,
        False,
    )
    assert (endpoint.username, endpoint.password) == ("me@gmail.com", "app-pass")


def test_host_without_port_uses_the_submission_port() -> None:
    endpoint = resolve_endpoint(settings(smtp_host="mail.local"))
    assert endpoint is not None and endpoint.port == SMTP_PORT


def test_settings_defaults() -> None:
    defaults = settings()
    assert (defaults.service_name, defaults.port, defaults.notifications_page_limit) == (
        "notification_service",
        6000,
        100,
    )


def test_retry_delay_doubles_up_to_the_cap() -> None:
    delays = [domain.retry_delay(n, base_seconds=2, max_seconds=30) for n in range(1, 7)]
    assert delays == [2, 4, 8, 16, 30, 30]
    assert domain.retry_delay(10_000, base_seconds=2, max_seconds=30) == 30


def test_pending_mail_is_due_at_once_and_skipped_mail_never() -> None:
    now = datetime.now(UTC)
    pending = domain.initial_delivery(wants=True, mail_enabled=True, now=now)
    assert pending["next_attempt_at"] == now and pending["lease"] is None
    assert domain.initial_delivery(wants=False, mail_enabled=True)["next_attempt_at"] is None


# --- send times ----------------------------------------------------------------------------


def test_send_times_keep_the_partition_order_at_stored_precision() -> None:
    notifications = Notifications(
        settings=settings(),
        repository=None,  # type: ignore[arg-type]
        publisher=None,  # type: ignore[arg-type]
        relay=None,  # type: ignore[arg-type]
        links=LINKS,
        mail_enabled=False,
        wake_sender=lambda: None,
    )
    now = datetime(2026, 1, 1, 12, 0, 0, 123_456, tzinfo=UTC)
    first = notifications._stamps(now, 3)
    # The same instant again (a next batch within the millisecond): still after the first.
    second = notifications._stamps(now, 2)
    stamps = first + second
    assert all(s.microsecond % 1000 == 0 for s in stamps)  # what MongoDB keeps
    assert stamps == sorted(set(stamps))
    assert first[0] == now.replace(microsecond=123_000)

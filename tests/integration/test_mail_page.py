"""The local stack's mail page: what the SMTP sink received, listed and shown, as a person and a
script see it (a real sink process, real SMTP, real HTTP); and the sink's one mbox file, read back
exactly through devstack.mbox and opened by the standard library's `mailbox.mbox`."""

from __future__ import annotations

import email.policy
import mailbox
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from devstack.mbox import MBOX_NAME, Mailbox
from devstack.parts import LOOPBACK, EmbeddedPart, free_port, start_smtp_sink
from notification_service.emails import OutgoingMail
from notification_service.mail_session import MailSession
from tests.fixtures.parts import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[EmbeddedPart]:
    part = start_smtp_sink(tmp_path / "mail", page_port=free_port())
    try:
        yield part
    finally:
        part.stop()


def send(part: EmbeddedPart, *, to: str, subject: str, html: str | None, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Fleet <no-reply@fleet.test>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
        message.set_boundary(
            "fleet-boundary"
        )  # the one sent is then the one kept, header for header
    host, port = part.url.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=10) as smtp:
        # Its bytes as they are (send_message would quote a body line starting with "From ").
        smtp.sendmail(message["From"], [message["To"]], message.as_bytes(policy=email.policy.SMTP))
    return message


async def test_the_page_lists_each_message_and_shows_its_headers_and_html(
    sink: EmbeddedPart,
) -> None:
    assert sink.page_url is not None and sink.page_url.startswith(f"http://{LOOPBACK}:")
    send(sink, to="ada@example.com", subject="Welcome, Ada", text="plain", html=None)
    send(
        sink,
        to="bob@example.com",
        subject="Your order <shipped>",
        text="plain body",
        html="<p>Order <b>o-1</b> shipped</p><script>alert(1)</script>",
    )
    async with httpx.AsyncClient(base_url=sink.page_url, timeout=10) as page:

        async def listed() -> list[dict[str, str]]:
            answer = await page.get("/api/messages")
            messages: list[dict[str, str]] = answer.json()["messages"]
            return messages if len(messages) == 2 else []

        newest, oldest = await eventually(listed, what="both messages listed")
        assert (newest["to"], newest["subject"]) == ("bob@example.com", "Your order <shipped>")
        assert (oldest["to"], oldest["subject"]) == ("ada@example.com", "Welcome, Ada")
        assert newest["received_at"] >= oldest["received_at"]

        index = await page.get("/")
        assert index.status_code == 200
        assert "text/html" in index.headers["content-type"]
        assert "Your order &lt;shipped&gt;" in index.text  # escaped, never markup
        assert "bob@example.com" in index.text and "ada@example.com" in index.text

        shown = await page.get(f"/messages/{newest['id']}")
        assert shown.status_code == 200
        assert "no-reply@fleet.test" in shown.text  # the headers table
        # The HTML body in a sandboxed frame: shown, its script never runs.
        assert "<iframe sandbox='allow-popups allow-popups-to-escape-sandbox' srcdoc=" in shown.text
        assert "&lt;base target=&#x27;_blank&#x27;&gt;" in shown.text  # links open a tab
        assert "&lt;b&gt;o-1&lt;/b&gt;" in shown.text

        details = (await page.get(f"/api/messages/{newest['id']}")).json()
        assert "<b>o-1</b>" in details["html"]
        assert details["text"].strip() == "plain body"
        assert ["Subject", "Your order <shipped>"] in details["headers"]

        plain = await page.get(f"/messages/{oldest['id']}")
        assert "<pre>plain" in plain.text

        raw = await page.get(f"/messages/{oldest['id']}/raw")
        assert "Subject: Welcome, Ada" in raw.text


# Not a message's id: unknown, outside the folder, absolute, or not a plain decimal number.
@pytest.mark.parametrize(
    "message_id",
    [
        "nope",
        "7",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "%2e%2e%2fx",
        "%2Fetc%2Fpasswd",
        "messages.mbox",
        "-1",
        "00",
        "+0",
        "0x0",
        "%C2%B2",
        "%200",
    ],
)
async def test_an_unknown_or_outside_message_is_not_found(
    sink: EmbeddedPart, message_id: str
) -> None:
    assert sink.page_url is not None
    send(sink, to="ada@example.com", subject="the only one", text="plain", html=None)
    async with httpx.AsyncClient(base_url=sink.page_url, timeout=10) as page:
        await eventually(lambda: _listed_ids(page), what="the message listed")
        assert (await page.get("/api/messages/0")).status_code == 200
        for path in (
            f"/messages/{message_id}",
            f"/messages/{message_id}/raw",
            f"/api/messages/{message_id}",
        ):
            assert (await page.get(path)).status_code == 404, path


async def _listed_ids(page: httpx.AsyncClient) -> list[str]:
    return [m["id"] for m in (await page.get("/api/messages")).json()["messages"]]


async def test_every_message_lands_in_the_one_mbox_and_reads_back_exactly(
    sink: EmbeddedPart, tmp_path: Path
) -> None:
    assert sink.page_url is not None
    tricky = "Dear Ada,\nFrom now on, orders ship daily.\n>From the desk of Bob\n\nFrom the fleet\n"
    sent = [
        send(sink, to="ada@example.com", subject="First", text="one\n", html=None),
        send(sink, to="ada@example.com", subject="From lines", text=tricky, html="<p>hi</p>"),
        send(sink, to="bob@example.com", subject="Third", text="three\n", html=None),
    ]
    folder = tmp_path / "mail"
    await eventually(lambda: Mailbox(folder).count() == len(sent), what="three messages kept")
    assert [p.name for p in folder.iterdir()] == [MBOX_NAME]

    received = Mailbox(folder).messages()
    assert [m.id for m in received] == ["0", "1", "2"]
    for mail, message in zip(received, sent, strict=True):
        assert mail.message.items() == message.items()
        assert mail.body("plain") == message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert received[1].body("plain") == tricky
    assert received[1].body("html") == "<p>hi</p>\n"

    # The stored form is mbox: the body's From lines quoted, and the standard library (as mutt
    # or any mail client) finds the same three messages.
    stored = (folder / MBOX_NAME).read_bytes()
    assert b"\n>From now on" in stored and b"\n>>From the desk" in stored
    standard = mailbox.mbox(folder / MBOX_NAME, create=False)
    assert [m["Subject"] for m in standard] == ["First", "From lines", "Third"]

    async with httpx.AsyncClient(base_url=sink.page_url, timeout=10) as page:
        assert await _listed_ids(page) == ["2", "1", "0"]
        index = await page.get("/")
        assert (
            index.text.index("Third") < index.text.index("From lines") < index.text.index("First")
        )
        details = (await page.get("/api/messages/1")).json()
        assert (details["id"], details["subject"], details["text"]) == ("1", "From lines", tricky)
        raw = await page.get("/messages/1/raw")
        assert "\nFrom now on, orders ship daily.\n>From the desk of Bob\n" in raw.text


async def test_the_sink_offers_pipelining_and_takes_pipelined_mail(
    sink: EmbeddedPart, tmp_path: Path
) -> None:
    """The fleet's mailer pipelines where offered (notification_service/mail_session.py): the
    sink says it may, and answers MAIL, RCPT and DATA sent in one write."""
    host, port = sink.url.rsplit(":", 1)
    client = aiosmtplib.SMTP(hostname=host, port=int(port), start_tls=False, timeout=10)
    await client.connect()
    session = await MailSession.take_over(client, 10.0)
    try:
        assert session.pipelining
        for n in range(3):  # one session, one write of commands per mail
            mail = OutgoingMail("no-reply@fleet.test", f"u{n}@example.com", b"Subject: n\r\n\r\nx")
            await session.send(mail)
    finally:
        session.close()
    folder = tmp_path / "mail"
    await eventually(lambda: Mailbox(folder).count() == 3, what="three messages kept")
    assert [m.message["Subject"] for m in Mailbox(folder).messages()] == ["n"] * 3

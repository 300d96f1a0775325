"""The local stack's mail page: what the SMTP sink received, listed and shown, as a person and a
script see it (a real sink process, real SMTP, real HTTP)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from devstack.parts import LOOPBACK, EmbeddedPart, free_port, start_smtp_sink
from tests.fixtures.parts import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[EmbeddedPart]:
    part = start_smtp_sink(tmp_path / "mail", page_port=free_port())
    try:
        yield part
    finally:
        part.stop()


def send(part: EmbeddedPart, *, to: str, subject: str, html: str | None, text: str) -> None:
    message = EmailMessage()
    message["From"] = "Fleet <no-reply@fleet.test>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    host, port = part.url.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=10) as smtp:
        smtp.send_message(message)


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


@pytest.mark.parametrize("message_id", ["nope", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "%2e%2e%2fx"])
async def test_an_unknown_or_outside_message_is_not_found(
    sink: EmbeddedPart, message_id: str
) -> None:
    assert sink.page_url is not None
    async with httpx.AsyncClient(base_url=sink.page_url, timeout=10) as page:
        for path in (f"/messages/{message_id}", f"/api/messages/{message_id}"):
            assert (await page.get(path)).status_code == 404

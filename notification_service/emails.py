"""What the emails say: subject, plain text and HTML (with the read-tracking pixel). Pure."""

from __future__ import annotations

import html
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

from shared.events.models import NotificationType

WELCOME_SUBJECT = "Welcome to Fleet"
SUBJECTS: dict[str, str] = {
    "promotion": "A promotion for you",
    "order_update": "An update on your order",
    "recommendation": "Products picked for you",
    "alert": "An alert about your account",
    "other": "A message from Fleet",
}
_SIGNATURE = "The Fleet team"


@dataclass(frozen=True, slots=True)
class EmailContent:
    """One email's words, before addressing."""

    subject: str
    text: str
    html: str


def pixel_url(public_base_url: str, token: str) -> str:
    """Where the tracking pixel of a notification is served (through the gateway)."""
    return f"{public_base_url.rstrip('/')}/track/{token}.gif"


def _one_line(value: str) -> str:
    """Header values must not contain line breaks (they would inject headers)."""
    return " ".join(value.split())


def _html_body(paragraphs: list[str], pixel: str) -> str:
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (
        '<!DOCTYPE html>\n<html><body style="font-family: sans-serif">\n'
        f"{body}\n"
        f'<img src="{html.escape(pixel, quote=True)}" width="1" height="1" alt="">\n'
        "</body></html>\n"
    )


def _compose(subject: str, paragraphs: list[str], pixel: str) -> EmailContent:
    return EmailContent(
        subject=_one_line(subject),
        text="\n\n".join(paragraphs) + "\n",
        html=_html_body(paragraphs, pixel),
    )


def welcome_email(name: str, pixel: str) -> EmailContent:
    """The welcome email every new user gets, whatever their preferences."""
    return _compose(
        WELCOME_SUBJECT,
        [
            f"Welcome to Fleet, {name}!",
            "Your account is ready. We will keep you posted about your orders, and you can "
            "choose which emails you receive in your preferences.",
            _SIGNATURE,
        ],
        pixel,
    )


def notification_email(
    kind: NotificationType, content: str, subject: str | None, pixel: str
) -> EmailContent:
    """The email of a requested notification; the subject defaults by type."""
    return _compose(subject or SUBJECTS[kind], [content, _SIGNATURE], pixel)


def build_message(
    content: EmailContent,
    *,
    sender: str,
    sender_name: str,
    recipient: str,
    unsubscribe_url: str | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """A multipart/alternative message: the plain text first, the HTML as the richer part."""
    message = EmailMessage()
    message["Subject"] = content.subject
    message["From"] = formataddr((_one_line(sender_name), sender))
    message["To"] = recipient
    message["Date"] = formatdate(usegmt=True)
    sender_domain = sender.rpartition("@")[2] or None
    # A stable id (the notification's) lets a receiver recognise a resent copy.
    message["Message-ID"] = (
        f"<{message_id}@{sender_domain or 'fleet.local'}>"
        if message_id
        else make_msgid(domain=sender_domain)
    )
    if unsubscribe_url:  # RFC 2369 / RFC 8058 one-click unsubscribe
        message["List-Unsubscribe"] = f"<{_one_line(unsubscribe_url)}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(content.text)
    message.add_alternative(content.html, subtype="html")
    return message

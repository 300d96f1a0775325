"""What the emails say: subject, plain text and HTML (with the read-tracking pixel). Pure."""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from email import quoprimime
from email.header import Header
from email.utils import formataddr, formatdate, make_msgid

from shared.events.models import NotificationType

WELCOME_SUBJECT = "Welcome to Fleet"
VERIFY_LINK = "verify-email"
RESET_LINK = "reset-password"
VERIFY_SUBJECT = "Confirm your email address"
RESET_SUBJECT = "Reset your Fleet password"
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


@dataclass(frozen=True, slots=True)
class Link:
    """A link of an email: shown as a button in HTML, as `label: url` in plain text."""

    label: str
    url: str


def _paragraph(part: str | Link) -> str:
    if isinstance(part, Link):
        return f'<p><a href="{html.escape(part.url, quote=True)}">{html.escape(part.label)}</a></p>'
    return f"<p>{html.escape(part)}</p>"


def _html_body(paragraphs: list[str | Link], pixel: str) -> str:
    body = "\n".join(_paragraph(p) for p in paragraphs)
    return (
        '<!DOCTYPE html>\n<html><body style="font-family: sans-serif">\n'
        f"{body}\n"
        f'<img src="{html.escape(pixel, quote=True)}" width="1" height="1" alt="">\n'
        "</body></html>\n"
    )


def _text(part: str | Link) -> str:
    return f"{part.label}: {part.url}" if isinstance(part, Link) else part


def _compose(subject: str, paragraphs: list[str | Link], pixel: str) -> EmailContent:
    return EmailContent(
        subject=_one_line(subject),
        text="\n\n".join(_text(p) for p in paragraphs) + "\n",
        html=_html_body(paragraphs, pixel),
    )


def welcome_email(name: str, pixel: str, verification_url: str | None = None) -> EmailContent:
    """The welcome email every new user gets, whatever their preferences (with the link that
    verifies the address, for users registered since verification exists)."""
    paragraphs: list[str | Link] = [
        f"Welcome to Fleet, {name}!",
        "Your account is ready. We will keep you posted about your orders, and you can "
        "choose which emails you receive in your preferences.",
    ]
    if verification_url:
        paragraphs += [
            "Please confirm that this email address is yours:",
            Link("Confirm my email address", verification_url),
        ]
    return _compose(WELCOME_SUBJECT, [*paragraphs, _SIGNATURE], pixel)


def link_email(kind: str, url: str, pixel: str) -> EmailContent:
    """The email of a verification link (`verify-email`) or a password reset link."""
    subject, paragraphs = LINK_EMAILS[kind]
    return _compose(subject, [*paragraphs[:-1], Link(paragraphs[-1], url), _SIGNATURE], pixel)


# Subject and words of each emailed link; the last line is the link's label.
LINK_EMAILS: dict[str, tuple[str, list[str]]] = {
    VERIFY_LINK: (
        VERIFY_SUBJECT,
        [
            "Please confirm that this email address is yours. "
            "The link works once, for a limited time.",
            "Confirm my email address",
        ],
    ),
    RESET_LINK: (
        RESET_SUBJECT,
        [
            "Someone (hopefully you) asked to reset the password of your Fleet account. "
            "The link works once, for a short while; if it was not you, ignore this email.",
            "Choose a new password",
        ],
    ),
}


def notification_email(
    kind: NotificationType, content: str, subject: str | None, pixel: str
) -> EmailContent:
    """The email of a requested notification; the subject defaults by type."""
    return _compose(subject or SUBJECTS[kind], [content, _SIGNATURE], pixel)


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A mail ready for SMTP: its envelope and its bytes (CRLF lines), built once."""

    sender: str
    recipient: str
    data: bytes

    @property
    def international(self) -> bool:
        """An address outside ASCII needs SMTPUTF8 (RFC 6531)."""
        return not (self.sender + self.recipient).isascii()


def build_message(
    content: EmailContent,
    *,
    sender: str,
    sender_name: str,
    recipient: str,
    unsubscribe_url: str | None = None,
    message_id: str | None = None,
) -> OutgoingMail:
    """A multipart/alternative message: the plain text first, the HTML as the richer part.

    Written directly rather than through `email.message.EmailMessage`, whose header parsing
    and folding were most of the sender's time: every header is one line of ASCII (RFC 2047
    words for a subject or name outside ASCII), bodies 7bit or quoted-printable, so the
    result is valid MIME whatever the text.
    """
    sender_domain = sender.rpartition("@")[2] or None
    # A stable id (the notification's) lets a receiver recognise a resent copy.
    message_id_header = (
        f"<{message_id}@{sender_domain or 'fleet.local'}>"
        if message_id
        else make_msgid(domain=sender_domain)
    )
    boundary = f"=_fleet_{uuid.uuid4().hex}"
    headers = [
        f"Subject: {_header_text('Subject', content.subject)}",
        f"From: {_header_text('From', formataddr((_one_line(sender_name), sender)))}",
        f"To: {_one_line(recipient)}",
        f"Date: {formatdate(usegmt=True)}",
        f"Message-ID: {_one_line(message_id_header)}",
    ]
    if unsubscribe_url:  # RFC 2369 / RFC 8058 one-click unsubscribe
        headers.append(f"List-Unsubscribe: <{_one_line(unsubscribe_url)}>")
        headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    headers += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative;{_CRLF} boundary="{boundary}"',  # folded
    ]
    data = _CRLF.join(
        [
            *headers,
            "",
            f"--{boundary}",
            *_body_part("plain", content.text),
            f"--{boundary}",
            *_body_part("html", content.html),
            f"--{boundary}--",
            "",
        ]
    )
    return OutgoingMail(sender, recipient, data.encode())


_CRLF = "\r\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# RFC 5322: a header line should stay within 78 characters; a body line must within 998.
_HEADER_LINE = 78
_BODY_LINE = 998


def _header_text(name: str, value: str) -> str:
    """The value as written after `name: `; RFC 2047 words (folded) when not plain ASCII."""
    if value.isascii() and len(name) + 2 + len(value) <= _HEADER_LINE:
        return value
    charset = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset, header_name=name).encode(linesep=_CRLF)


def _body_part(subtype: str, text: str) -> list[str]:
    lines = _LINE_BREAK.split(text)
    plain = text.isascii() and all(len(line) <= _BODY_LINE for line in lines)
    # quoprimime encodes code points below 256 as bytes: hence UTF-8 read as Latin-1.
    body = (
        _CRLF.join(lines)
        if plain
        else quoprimime.body_encode("\n".join(lines).encode().decode("latin-1"), eol=_CRLF)
    )
    return [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        f"Content-Transfer-Encoding: {'7bit' if plain else 'quoted-printable'}",
        "",
        body,
    ]

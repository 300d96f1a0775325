"""The local stack's mail page: every message the SMTP sink kept, as Mailpit shows them in compose.

`/` lists the messages (newest first) with time, sender, recipient and subject; a message's page
shows its headers and its HTML body (in a sandboxed frame: no scripts, no requests back to this
page), or its text body; `/api/messages` and `/api/messages/{id}` answer the same as JSON for
scripts and tests. It reads the sink's folder on every request: nothing to keep in step.
"""

from __future__ import annotations

import email
import email.policy
import html
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

MESSAGE_SUFFIX = ".eml"
# The newest this many messages are listed; the folder keeps them all.
LISTED_MESSAGES = 500
_NOT_FOUND = "No such message."


@dataclass(frozen=True, slots=True)
class StoredMail:
    """One message of the sink's folder, parsed."""

    id: str
    received_at: datetime
    message: EmailMessage

    def header(self, name: str) -> str:
        """A header as text ('' when absent)."""
        return str(self.message.get(name, ""))

    def body(self, subtype: str) -> str | None:
        """The body part of that subtype (html or plain), if the message has one."""
        part = self.message.get_body(preferencelist=(subtype,))
        if part is None or part.get_content_subtype() != subtype:
            return None
        content = part.get_content()
        return content if isinstance(content, str) else None

    def summary(self) -> dict[str, str]:
        """What the list shows of it."""
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "from": self.header("From"),
            "to": self.header("To"),
            "subject": self.header("Subject"),
        }

    def details(self) -> dict[str, Any]:
        """Everything the message page shows."""
        return {
            **self.summary(),
            "headers": [[name, str(value)] for name, value in self.message.items()],
            "html": self.body("html"),
            "text": self.body("plain"),
        }


class MailFolder:
    """The sink's folder: one `.eml` file a message, named so that names sort by arrival."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def newest(self, limit: int = LISTED_MESSAGES) -> list[StoredMail]:
        """The newest messages first."""
        paths = sorted(self.folder.glob(f"*{MESSAGE_SUFFIX}"), reverse=True)[:limit]
        return [self._read(path) for path in paths]

    def get(self, message_id: str) -> StoredMail | None:
        """A message by its id (the file name without suffix); None for anything else."""
        path = self.folder / f"{message_id}{MESSAGE_SUFFIX}"
        # Only a plain name of this folder: no separators, no parent, nothing outside it.
        if path.parent != self.folder or not path.is_file() or "/" in message_id:
            return None
        return self._read(path)

    def raw(self, message_id: str) -> bytes | None:
        """A message's bytes as received."""
        found = self.get(message_id)
        return (self.folder / f"{found.id}{MESSAGE_SUFFIX}").read_bytes() if found else None

    @staticmethod
    def _read(path: Path) -> StoredMail:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        received_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        return StoredMail(path.name.removesuffix(MESSAGE_SUFFIX), received_at, message)


def mail_page_app(folder: Path) -> Starlette:
    """The mail page over the sink's folder (plain functions: Starlette runs them in its thread
    pool, as they read files)."""
    mail = MailFolder(folder)

    def index(request: Request) -> HTMLResponse:
        return HTMLResponse(_list_page(mail.newest()))

    def message_page(request: Request) -> Response:
        found = mail.get(request.path_params["message_id"])
        if found is None:
            return PlainTextResponse(_NOT_FOUND, status_code=404)
        return HTMLResponse(_message_page(found))

    def message_raw(request: Request) -> Response:
        data = mail.raw(request.path_params["message_id"])
        if data is None:
            return PlainTextResponse(_NOT_FOUND, status_code=404)
        return PlainTextResponse(data.decode("utf-8", errors="replace"))

    def api_list(request: Request) -> JSONResponse:
        return JSONResponse({"messages": [m.summary() for m in mail.newest()]})

    def api_message(request: Request) -> JSONResponse:
        found = mail.get(request.path_params["message_id"])
        if found is None:
            return JSONResponse({"detail": _NOT_FOUND}, status_code=404)
        return JSONResponse(found.details())

    return Starlette(
        routes=[
            Route("/", index),
            Route("/messages/{message_id}", message_page),
            Route("/messages/{message_id}/raw", message_raw),
            Route("/api/messages", api_list),
            Route("/api/messages/{message_id}", api_message),
        ]
    )


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2330; }
h1 { font-size: 1.3rem; } a { color: #0b57d0; text-decoration: none; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e3e6ec;
         vertical-align: top; }
th { background: #f4f6fa; } tr:hover td { background: #f9fafc; }
.muted { color: #6b7280; } iframe { width: 100%; height: 70vh; border: 1px solid #e3e6ec; }
pre { white-space: pre-wrap; background: #f4f6fa; padding: .8rem; }
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def _list_page(messages: list[StoredMail]) -> str:
    rows = "".join(
        "<tr>"
        f"<td class='muted'>{html.escape(m.received_at.strftime('%Y-%m-%d %H:%M:%S'))} UTC</td>"
        f"<td>{html.escape(m.header('To'))}</td>"
        f"<td><a href='/messages/{html.escape(m.id)}'>"
        f"{html.escape(m.header('Subject') or '(no subject)')}</a></td>"
        f"<td class='muted'>{html.escape(m.header('From'))}</td>"
        "</tr>"
        for m in messages
    )
    empty = "<p class='muted'>No mail yet. Register a user in GraphiQL and come back.</p>"
    table = (
        f"<table><tr><th>received</th><th>to</th><th>subject</th><th>from</th></tr>{rows}</table>"
    )
    return _page(
        "Mail",
        f"<h1>Mail sent by the fleet ({len(messages)})</h1>{table if messages else empty}",
    )


def _message_page(mail: StoredMail) -> str:
    headers = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>"
        for name, value in mail.message.items()
    )
    html_body = mail.body("html")
    text_body = mail.body("plain")
    if html_body is not None:
        # srcdoc in a sandbox without allow-scripts or allow-same-origin: the mail's HTML shows,
        # its scripts do not run, and it cannot reach this page. Its links (verify, reset,
        # unsubscribe: pages that refuse to be framed) open in a tab of their own.
        framed = f"<base target='_blank'>{html_body}"
        shown = (
            "<iframe sandbox='allow-popups allow-popups-to-escape-sandbox' "
            f"srcdoc='{html.escape(framed, quote=True)}'></iframe>"
        )
    elif text_body is not None:
        shown = f"<pre>{html.escape(text_body)}</pre>"
    else:
        shown = "<p class='muted'>This message has no text or HTML body.</p>"
    return _page(
        mail.header("Subject") or "Mail",
        f"<p><a href='/'>&larr; all mail</a> &middot; "
        f"<a href='/messages/{html.escape(mail.id)}/raw'>raw message</a></p>"
        f"<h1>{html.escape(mail.header('Subject') or '(no subject)')}</h1>"
        f"<table>{headers}</table><h2>Body</h2>{shown}",
    )

"""The local stack's mail page: every message the SMTP sink kept, as Mailpit shows them in compose.

`/` lists the messages (newest first) with time, sender, recipient and subject; a message's page
shows its headers and its HTML body (in a sandboxed frame: no scripts, no requests back to this
page), or its text body; `/api/messages` and `/api/messages/{id}` answer the same as JSON for
scripts and tests. It reads the sink's mbox (devstack/mbox.py) on every request, only what was
appended since the last: nothing to keep in step. A message's id is its position in the mbox.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from devstack.mbox import Mailbox, StoredMail

# The newest this many messages are listed; the mbox keeps them all.
LISTED_MESSAGES = 500
_NOT_FOUND = "No such message."


def summary(mail: StoredMail) -> dict[str, str]:
    """What the list shows of a message."""
    return {
        "id": mail.id,
        "received_at": mail.received_at.isoformat(),
        "from": mail.header("From"),
        "to": mail.header("To"),
        "subject": mail.header("Subject"),
    }


def details(mail: StoredMail) -> dict[str, Any]:
    """Everything the message page shows."""
    return {
        **summary(mail),
        "headers": [[name, str(value)] for name, value in mail.message.items()],
        "html": mail.body("html"),
        "text": mail.body("plain"),
    }


def mail_page_app(folder: Path) -> Starlette:
    """The mail page over the sink's folder (plain functions: Starlette runs them in its thread
    pool, as they read the file)."""
    mail = Mailbox(folder)

    def index(request: Request) -> HTMLResponse:
        return HTMLResponse(_list_page(mail.newest(LISTED_MESSAGES)))

    def message_page(request: Request) -> Response:
        found = mail.get(request.path_params["message_id"])
        if found is None:
            return PlainTextResponse(_NOT_FOUND, status_code=404)
        return HTMLResponse(_message_page(found))

    def message_raw(request: Request) -> Response:
        found = mail.get(request.path_params["message_id"])
        if found is None:
            return PlainTextResponse(_NOT_FOUND, status_code=404)
        return PlainTextResponse(found.raw.decode("utf-8", errors="replace"))

    def api_list(request: Request) -> JSONResponse:
        return JSONResponse({"messages": [summary(m) for m in mail.newest(LISTED_MESSAGES)]})

    def api_message(request: Request) -> JSONResponse:
        found = mail.get(request.path_params["message_id"])
        if found is None:
            return JSONResponse({"detail": _NOT_FOUND}, status_code=404)
        return JSONResponse(details(found))

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

"""The pages emailed links open, through the gateway's public URL: a GET only shows a page with
a button (mail scanners and link previews follow GETs), and that button's POST acts.

- `/verify-email/{token}`: confirm the address (the user service checks the signed token);
- `/reset-password/{token}`: a form for the new password (form field `password`);
- `/unsubscribe/{token}`: leave promotions; the POST is also RFC 8058's one-click target
  (`List-Unsubscribe-Post: List-Unsubscribe=One-Click`).

The token in the path is the only credential; no cookie is involved, so there is nothing for a
cross-site request to borrow. Pages are never stored, never framed, and send no Referer.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from graphql_gateway.schema.context import Gateway
from shared.errors import AppError

router = APIRouter(include_in_schema=False)

PAGE_HEADERS = {
    "cache-control": "no-store, no-cache, must-revalidate, max-age=0",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
PASSWORD_FIELD = "password"  # noqa: S105 - a form field's name


def page(title: str, paragraphs: list[str], form: str = "", status: int = 200) -> HTMLResponse:
    """A small self-contained HTML page (no scripts, no external resources)."""
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return HTMLResponse(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto">'
        f"<h1>{html.escape(title)}</h1>\n{body}\n{form}</body></html>\n",
        status_code=status,
        headers=PAGE_HEADERS,
    )


def button(label: str, fields: str = "") -> str:
    """A form that POSTs to the page's own URL."""
    return f'<form method="post">{fields}<button type="submit">{html.escape(label)}</button></form>'


def _failed(title: str, error: AppError) -> HTMLResponse:
    return page(title, [error.message], status=error.http_status)


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (its size is bounded by the gateway's body limit)."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=8)
    return {name: values[0] for name, values in fields.items() if values}


@router.get("/verify-email/{token}")
async def verify_email_page(token: str) -> HTMLResponse:
    """The page of a verification link: a button that confirms."""
    del token  # checked by the POST
    return page(
        "Confirm your email address",
        ["Press the button to confirm that this email address is yours."],
        button("Confirm my email address"),
    )


@router.post("/verify-email/{token}")
async def verify_email(token: str, request: Request) -> HTMLResponse:
    """Verify the address (as `verifyEmail`), and drop the user's cached details."""
    gateway = _gateway(request)
    try:
        user = orjson.loads(await gateway.clients.users.verify_email(token))
    except AppError as exc:
        return _failed("The address could not be confirmed", exc)
    await gateway.cache.forget_user(str(user["id"]))
    return page("Email address confirmed", [f"Thank you: {user['email']} is confirmed."])


@router.get("/reset-password/{token}")
async def reset_password_page(token: str) -> HTMLResponse:
    """The page of a reset link: a form for the new password."""
    del token  # checked by the POST
    field = (
        f'<p><label>New password <input type="password" name="{PASSWORD_FIELD}" required '
        'autocomplete="new-password"></label></p>'
    )
    return page(
        "Choose a new password",
        ["Every device signed in to your account will be signed out."],
        button("Set the new password", field),
    )


@router.post("/reset-password/{token}")
async def reset_password(token: str, request: Request) -> HTMLResponse:
    """Set the new password of the form (as `resetPassword`)."""
    password = (await _form(request)).get(PASSWORD_FIELD, "")
    try:
        await _gateway(request).clients.users.reset_password(token, password)
    except AppError as exc:
        return _failed("The password was not changed", exc)
    return page("Password changed", ["Your password is changed: log in with it."])


@router.get("/unsubscribe/{token}")
async def unsubscribe_page(token: str) -> HTMLResponse:
    """The page of a promotion email's unsubscribe link: a button that unsubscribes."""
    del token  # checked by the POST
    return page(
        "Unsubscribe from promotions",
        ["Press the button to stop receiving promotions from Fleet."],
        button("Unsubscribe"),
    )


@router.post("/unsubscribe/{token}")
async def unsubscribe(token: str, request: Request) -> HTMLResponse:
    """Unsubscribe (the page's button, or a mail client's RFC 8058 one-click POST)."""
    answer = await _gateway(request).clients.scheduler.unsubscribe_by_link(token)
    if answer.is_error:
        try:
            message = str(orjson.loads(answer.content)["error"]["message"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = "That unsubscribe link is not valid."
        return page("Not unsubscribed", [message], status=answer.status_code)
    return page("Unsubscribed", ["You will not receive promotions from Fleet any more."])

"""Demo data through the public GraphQL API (`fleet demo`, `make demo`): a few customers with
orders of real catalog products, their notifications and recommendations, and a verified admin.

Running it again does no harm: an address that exists logs in instead of registering, and every
order carries an idempotency key (a repeat within the order service's window places nothing).
The admin: `admin@demo.fleet` must be listed in the fleet's ADMIN_EMAILS (the local stack lists
it when ADMIN_EMAILS is unset) and becomes admin when it follows the link of its welcome mail,
read from the mail page's JSON API (the local stack's, or Mailpit's in compose).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from graphql import DocumentNode, OperationDefinitionNode, parse, print_ast

from shared.errors import ErrorCode

T = TypeVar("T")

DEMO_ADMIN_EMAIL = "admin@demo.fleet"
# Everyone's password: a demo of a local stack, printed on the terminal anyway.
DEMO_PASSWORD = "fleet demo password"  # noqa: S105 - a published demo login
DOCUMENTS = Path(__file__).resolve().parents[1] / "clients" / "documents" / "demo.graphql"
# Products read from the catalog's first page to choose the demo's orders from.
CATALOG_PAGE = 20
# Where an emailed link points: `{PUBLIC_BASE_URL}/verify-email/{token}`.
VERIFY_LINK = re.compile(r"/verify-email/([^\s\"'<>&?#]+)")
ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class DemoUser:
    """One demo account: its orders are (catalog position, quantity) lists, one per order."""

    name: str
    email: str
    preferences: tuple[str, ...]
    orders: tuple[tuple[tuple[int, int], ...], ...] = ()


CUSTOMERS: tuple[DemoUser, ...] = (
    DemoUser(
        "Ada Lovelace",
        "ada@demo.fleet",
        ("order_updates", "recommendations"),
        (((0, 1), (1, 2)), ((2, 1),)),
    ),
    DemoUser(
        "Grace Hopper",
        "grace@demo.fleet",
        ("order_updates", "recommendations", "promotions"),
        (((3, 1),), ((4, 3), (5, 1))),
    ),
    DemoUser("Alan Turing", "alan@demo.fleet", ("order_updates",), (((6, 2),),)),
)
ADMIN = DemoUser("Fleet Admin", DEMO_ADMIN_EMAIL, ("order_updates",))


class DemoError(RuntimeError):
    """The fleet refused or failed a step; `code` is the GraphQL error code when there is one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Account:
    """What the demo made of one user: the login, a fresh access token, what it owns."""

    name: str
    email: str
    password: str
    token: str
    roles: list[str]
    registered: bool
    verified: bool = False
    orders: list[dict[str, Any]] = field(default_factory=list)
    notifications: int = 0
    recommendation: str = ""


@dataclass
class DemoResult:
    """Every account (customers first, the admin last) and what to tell the person."""

    accounts: list[Account]
    admin: Account
    warnings: list[str] = field(default_factory=list)

    @property
    def admin_ready(self) -> bool:
        """The admin's token carries the admin role."""
        return ADMIN_ROLE in self.admin.roles

    @property
    def export_line(self) -> str:
        """The shell line that gives `fleet` the admin's token."""
        return f"export FLEET_TOKEN={self.admin.token}"


def load_operations(path: Path = DOCUMENTS) -> dict[str, str]:
    """Each operation of the demo's documents by name, printed as the manifest lists it."""
    document = parse(path.read_text(encoding="utf-8"))
    operations: dict[str, str] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and definition.name:
            operations[definition.name.value] = print_ast(DocumentNode(definitions=(definition,)))
    return operations


def token_roles(token: str) -> list[str]:
    """The roles claim of a JWT, read without checking it (the services check it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return [str(role) for role in claims.get("roles", [])]
    except (IndexError, ValueError, AttributeError):
        return []


def poll(
    attempt: Callable[[], T | None], timeout: float, interval: float, clock: Any = time
) -> T | None:
    """`attempt()` until it answers something or `timeout` seconds pass (then None)."""
    deadline = clock.monotonic() + timeout
    while True:
        found = attempt()
        if found is not None or clock.monotonic() >= deadline:
            return found
        clock.sleep(interval)


class GraphQLClient:
    """POSTs the demo's operations to the gateway's /graphql."""

    def __init__(self, http: httpx.Client, graphql_url: str, operations: dict[str, str]) -> None:
        self._http = http
        self._url = graphql_url
        self._operations = operations

    def call(
        self, operation: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """The answer's data; its first error raised as DemoError."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        body = {
            "query": self._operations[operation],
            "operationName": operation,
            "variables": variables or {},
        }
        try:
            response = self._http.post(self._url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DemoError(
                f"The gateway at {self._url} did not answer ({type(exc).__name__}): is the "
                "fleet running (make run)?"
            ) from exc
        try:
            answer = response.json()
        except ValueError:
            raise DemoError(f"{operation}: HTTP {response.status_code} from {self._url}") from None
        errors = answer.get("errors") or []
        if errors:
            first = errors[0]
            code = (first.get("extensions") or {}).get("code")
            raise DemoError(f"{operation}: {code}: {first.get('message')}", code)
        if response.is_error or not isinstance(answer.get("data"), dict):
            raise DemoError(f"{operation}: HTTP {response.status_code} from {self._url}")
        data: dict[str, Any] = answer["data"]
        return data


class MailBox:
    """The mail page's JSON API: the local stack's (`/api/messages`) or Mailpit's
    (`/api/v1/messages`)."""

    def __init__(self, http: httpx.Client, base_url: str) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")

    def _get(self, path: str) -> Any:
        response = self._http.get(f"{self.base_url}{path}")
        response.raise_for_status()
        return response.json()

    def messages_to(self, address: str) -> list[tuple[str, str]]:
        """(id, body) of each message to `address`, newest first; the HTML and text bodies
        joined. Raises DemoError when neither API answers."""
        wanted = address.lower()
        try:
            listed = self._get("/api/messages")["messages"]
            ids = [str(m["id"]) for m in listed if wanted in str(m.get("to", "")).lower()]
            details = [self._get(f"/api/messages/{i}") for i in ids]
            return [
                (i, f"{d.get('html') or ''}\n{d.get('text') or ''}")
                for i, d in zip(ids, details, strict=True)
            ]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        try:  # Mailpit
            listed = self._get("/api/v1/messages")["messages"]
            ids = [
                str(m["ID"])
                for m in listed
                if any(wanted == str(to.get("Address", "")).lower() for to in m.get("To") or [])
            ]
            details = [self._get(f"/api/v1/message/{i}") for i in ids]
            return [
                (i, f"{d.get('HTML') or ''}\n{d.get('Text') or ''}")
                for i, d in zip(ids, details, strict=True)
            ]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise DemoError(
                f"The mail page at {self.base_url} has no message API (tried /api/messages and "
                f"Mailpit's /api/v1/messages): {type(exc).__name__}"
            ) from exc

    def verify_tokens(self, address: str, skip: set[str]) -> list[tuple[str, str]]:
        """(message id, token) of each verification link mailed to `address`, newest first,
        leaving out the messages in `skip`."""
        found = []
        for message_id, body in self.messages_to(address):
            if message_id in skip:
                continue
            match = VERIFY_LINK.search(body)
            if match:
                found.append((message_id, match.group(1)))
        return found


class Demo:
    """One run of the demo against a running fleet."""

    def __init__(
        self,
        api: GraphQLClient,
        mail: MailBox,
        *,
        mail_timeout: float,
        poll_interval: float,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.api = api
        self.mail = mail
        self.mail_timeout = mail_timeout
        self.poll_interval = poll_interval
        self.say = say

    def run(self) -> DemoResult:
        """Customers with orders, notifications and recommendations; then the admin."""
        catalog = self.api.call("DemoCatalog", {"first": CATALOG_PAGE})["products"]["items"]
        if not catalog:
            raise DemoError("The catalog is empty: no product to order.")
        warnings: list[str] = []
        accounts = [self._customer(user, catalog) for user in CUSTOMERS]
        for account in accounts:
            account.notifications = self._notifications(account)
        admin = self._admin(warnings)
        return DemoResult([*accounts, admin], admin, warnings)

    # -- accounts ---------------------------------------------------------------------------

    def _sign_in(self, user: DemoUser) -> Account:
        """Register, or log in when the address exists (a second run)."""
        registered = True
        try:
            answer = self.api.call(
                "DemoRegister",
                {
                    "name": user.name,
                    "email": user.email,
                    "password": DEMO_PASSWORD,
                    "preferences": list(user.preferences),
                },
            )["registerUser"]
        except DemoError as exc:
            if exc.code != ErrorCode.CONFLICT:
                raise
            registered = False
            answer = self._login(user.email)
        self.say(f"{user.email}: {'registered' if registered else 'exists, logged in'}")
        token = str(answer["token"])
        return Account(
            user.name,
            user.email,
            DEMO_PASSWORD,
            token,
            token_roles(token),
            registered,
            verified=bool(answer["user"]["emailVerified"]),
        )

    def _login(self, email: str) -> dict[str, Any]:
        try:
            login: dict[str, Any] = self.api.call(
                "DemoLogin", {"email": email, "password": DEMO_PASSWORD}
            )["login"]
        except DemoError as exc:
            if exc.code == ErrorCode.UNAUTHENTICATED:
                raise DemoError(
                    f"{email} exists with another password: the demo cannot log in as it "
                    "(restart the stack for a fresh store, or remove the user)."
                ) from exc
            raise
        return login

    def _customer(self, user: DemoUser, catalog: list[dict[str, Any]]) -> Account:
        account = self._sign_in(user)
        for number, lines in enumerate(user.orders, start=1):
            products = [
                {"productId": catalog[position % len(catalog)]["productId"], "quantity": quantity}
                for position, quantity in lines
            ]
            key = f"demo-{user.email.split('@')[0]}-order-{number}"
            order = self.api.call(
                "DemoPlaceOrder", {"products": products, "idempotencyKey": key}, account.token
            )["placeOrder"]
            account.orders.append(order)
        if not account.registered:
            # Asked on the run that registered it: another run adds no notification.
            return account
        try:
            account.recommendation = str(
                self.api.call("DemoRecommend", token=account.token)["productRecommendation"]
            )
        except DemoError as exc:
            if exc.code != ErrorCode.RATE_LIMITED:
                raise
            account.recommendation = "asked too often just now; the last request stands"
        return account

    def _notifications(self, account: Account) -> int:
        """How many notifications the account has once the first arrives (welcome, orders)."""

        def some() -> int | None:
            found = self.api.call("DemoNotifications", token=account.token)
            return len(found["getUserNotifications"]) or None

        return poll(some, self.mail_timeout, self.poll_interval) or 0

    # -- the admin --------------------------------------------------------------------------

    def _admin(self, warnings: list[str]) -> Account:
        account = self._sign_in(ADMIN)
        if ADMIN_ROLE in account.roles:
            return account
        try:
            self._verify(account)
        except DemoError as exc:
            warnings.append(
                f"{exc} Open the mail page, follow the link of the welcome mail to "
                f"{ADMIN.email}, then run the demo again."
            )
            return account
        token = str(self._login(ADMIN.email)["token"])
        account.token, account.roles = token, token_roles(token)
        if ADMIN_ROLE not in account.roles:
            warnings.append(
                f"{ADMIN.email} is verified but not admin: the fleet's ADMIN_EMAILS does not "
                f"list it. Start the stack with ADMIN_EMAILS={ADMIN.email} (make run does when "
                "ADMIN_EMAILS is unset), or have an admin run "
                f"`fleet users grant-admin {ADMIN.email}`, then run the demo again."
            )
        return account

    def _verify(self, account: Account) -> None:
        """Follow the newest verification link mailed to the admin; if it no longer works
        (used, replaced, expired), ask for a new one and follow that."""
        if account.verified:
            return
        tried: set[str] = set()
        for resend in (False, True):
            if resend:
                self.api.call("DemoResendVerification", token=account.token)
            links = poll(
                lambda: self.mail.verify_tokens(account.email, tried) or None,
                self.mail_timeout,
                self.poll_interval,
            )
            if not links:
                raise DemoError(
                    f"No verification mail to {account.email} at {self.mail.base_url} within "
                    f"{self.mail_timeout:g} s."
                )
            message_id, token = links[0]
            tried.update(message_id for message_id, _ in links)
            try:
                self.api.call("DemoVerifyEmail", {"token": token})
            except DemoError as exc:
                if exc.code != ErrorCode.BAD_USER_INPUT or resend:
                    raise
                continue
            self.say(f"{account.email}: verified through the link of mail {message_id}")
            account.verified = True
            return


def run_demo(
    graphql_url: str,
    mail_url: str,
    *,
    http_timeout: float,
    mail_timeout: float,
    poll_interval: float,
    say: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    """The demo against the gateway at `graphql_url`, reading mail from `mail_url`."""
    with httpx.Client(timeout=http_timeout) as http:
        demo = Demo(
            GraphQLClient(http, graphql_url, load_operations()),
            MailBox(http, mail_url),
            mail_timeout=mail_timeout,
            poll_interval=poll_interval,
            say=say,
        )
        return demo.run()

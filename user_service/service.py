"""The user service's use cases: register, log in, read and change one's own account.

Each state change and the event announcing it are one single-document write (the outbox);
the event is then published at once, best effort (the relay retries what is left). Sessions
(tokens, refresh, ending them) are in `sessions`; the emailed links (verification, password
reset) and operator role changes are in `identity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.auth import Caller, hash_password, verify_password
from shared.errors import NotFound, Unauthenticated
from shared.events.models import Preference
from shared.links import LinkPurpose, LinkSigner, link_url
from shared.outbox import OutboxRelay, outbox_entry
from shared.runtime import ServiceRuntime
from user_service import domain, events
from user_service.limits import AuthLimits
from user_service.repository import UserRepository
from user_service.schemas import AuthOut, LoginIn, PurchaseOut, RegisterIn, UserOut
from user_service.sessions import USER_GONE, Sessions
from user_service.settings import UserSettings

LOGIN_FAILED = "The email or password is incorrect."
VERIFY_PATH = "verify-email"
RESET_PATH = "reset-password"


@dataclass
class UserAccounts:
    """What the HTTP routes call."""

    settings: UserSettings
    runtime: ServiceRuntime
    repository: UserRepository
    limits: AuthLimits

    def __post_init__(self) -> None:
        self.links = LinkSigner(self.settings.jwt_secret.get_secret_value())

    @property
    def input_limits(self) -> domain.InputLimits:
        return domain.InputLimits(
            password_min_length=self.settings.password_min_length,
            password_max_length=self.settings.password_max_length,
            name_max_length=self.settings.name_max_length,
        )

    @property
    def relay(self) -> OutboxRelay:
        assert self.runtime.relay is not None, "the outbox relay is set up in the lifespan"
        return self.runtime.relay

    @property
    def sessions(self) -> Sessions:
        """Sessions of users (tokens, refresh, ending them)."""
        return Sessions(self.settings, self.repository, self.runtime.publisher, self.relay)

    def link(self, purpose: LinkPurpose, user_id: str, token_id: str) -> str:
        """The URL of an emailed link (verification or reset) for a user."""
        ttl, path = {
            LinkPurpose.VERIFY_EMAIL: (self.settings.email_verification_ttl_seconds, VERIFY_PATH),
            LinkPurpose.RESET_PASSWORD: (self.settings.password_reset_ttl_seconds, RESET_PATH),
        }[purpose]
        token = self.links.sign(purpose, user_id, ttl_seconds=ttl, token_id=token_id)
        return link_url(self.settings.public_base_url, path, token)

    async def register(self, body: RegisterIn, client_address: str | None = None) -> AuthOut:
        """Store a new user (with a first session and a verification link) and queue
        `user.registered` (which carries the link to the welcome email) in the same write."""
        name = domain.clean_name(body.name, self.input_limits)
        domain.check_password(body.password, self.input_limits)
        await self.limits.register(domain.normalize_email(str(body.email)), client_address)
        user_id = domain.new_user_id()
        session = self.sessions.new(user_id)
        verify_token_id = domain.new_user_id()
        user = domain.new_user_document(
            user_id=user_id,
            name=name,
            email=domain.normalize_email(str(body.email)),
            password_hash=await hash_password(body.password),
            preferences=domain.normalize_preferences(body.preferences),
            created_at=datetime.now(UTC),
            verify_token_id=verify_token_id,
            session=session,
        )
        verification_url = self.link(LinkPurpose.VERIFY_EMAIL, user_id, verify_token_id)
        entry = outbox_entry(self.runtime.publisher, events.user_registered(user, verification_url))
        await self.repository.insert(user, [entry])
        await self.relay.flush_document(self.repository.users, user["_id"])
        return self.sessions.signed_in(user, session)

    async def login(self, body: LoginIn, client_address: str | None = None) -> AuthOut:
        """Unknown email and wrong password fail alike, after one Argon2 verification each."""
        await self.limits.login(domain.normalize_email(body.email), client_address)
        user = await self.check_password(
            await self.repository.by_email(domain.normalize_email(body.email)), body.password
        )
        return await self.sessions.open(user)

    async def check_password(self, user: dict[str, Any] | None, password: str) -> dict[str, Any]:
        """The user, if the password is theirs; otherwise UNAUTHENTICATED (after the same work
        for an unknown user as for a wrong password)."""
        if len(password) > self.settings.password_max_length:
            # No stored password is this long; refuse without hashing attacker-sized input.
            raise Unauthenticated(LOGIN_FAILED)
        stored_hash = user["password_hash"] if user else None
        if not await verify_password(password, stored_hash) or user is None:
            raise Unauthenticated(LOGIN_FAILED)
        return user

    async def me(self, caller: Caller) -> UserOut:
        """The caller's own account."""
        user = await self.repository.by_id(caller.user_id)
        if user is None:
            raise NotFound(USER_GONE)
        purchases = await self.repository.purchases.newest(
            caller.user_id, self.settings.purchase_history_page_default
        )
        return domain.user_out(user, purchases)

    async def purchase_history(self, caller: Caller, first: int | None) -> list[PurchaseOut]:
        """The caller's newest purchases, newest first (the page size is capped)."""
        size = min(
            first or self.settings.purchase_history_page_default,
            self.settings.purchase_history_page_max,
        )
        purchases = await self.repository.purchases.newest(caller.user_id, size)
        return [domain.purchase_out(p) for p in purchases]

    async def update_preferences(self, caller: Caller, preferences: list[Preference]) -> UserOut:
        """Replace the caller's preferences and queue `user.preferences-updated`."""
        cleaned = domain.normalize_preferences(preferences)
        event = events.preferences_updated(caller.user_id, cleaned)
        entry = outbox_entry(self.runtime.publisher, event)
        user = await self.repository.set_preferences(caller.user_id, cleaned, entry)
        if user is None:
            raise NotFound(USER_GONE)
        await self.relay.flush_document(self.repository.users, caller.user_id)
        return domain.user_out(user)

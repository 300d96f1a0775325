"""The user service's use cases: register, log in, read and change one's own account.

Each state change and the event announcing it are one single-document write (the outbox);
the event is then published at once, best effort (the relay retries what is left).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.auth import Caller, hash_password, issue_token, roles_for, verify_password
from shared.errors import NotFound, Unauthenticated
from shared.events.models import Preference
from shared.outbox import OutboxRelay, outbox_entry
from shared.runtime import ServiceRuntime
from user_service import domain, events
from user_service.limits import AuthLimits
from user_service.repository import UserRepository
from user_service.schemas import AuthOut, LoginIn, PurchaseOut, RegisterIn, UserOut
from user_service.settings import UserSettings

LOGIN_FAILED = "The email or password is incorrect."
USER_GONE = "That user no longer exists."


@dataclass
class UserAccounts:
    """What the HTTP routes call."""

    settings: UserSettings
    runtime: ServiceRuntime
    repository: UserRepository
    limits: AuthLimits

    @property
    def _limits(self) -> domain.InputLimits:
        return domain.InputLimits(
            password_min_length=self.settings.password_min_length,
            password_max_length=self.settings.password_max_length,
            name_max_length=self.settings.name_max_length,
        )

    @property
    def _relay(self) -> OutboxRelay:
        assert self.runtime.relay is not None, "the outbox relay is set up in the lifespan"
        return self.runtime.relay

    async def register(self, body: RegisterIn, client_address: str | None = None) -> AuthOut:
        """Store a new user and queue `user.registered` in the same write."""
        name = domain.clean_name(body.name, self._limits)
        domain.check_password(body.password, self._limits)
        await self.limits.register(domain.normalize_email(str(body.email)), client_address)
        user = domain.new_user_document(
            user_id=domain.new_user_id(),
            name=name,
            email=domain.normalize_email(str(body.email)),
            password_hash=await hash_password(body.password),
            preferences=domain.normalize_preferences(body.preferences),
            created_at=datetime.now(UTC),
        )
        entry = outbox_entry(self.runtime.publisher, events.user_registered(user))
        await self.repository.insert(user, [entry])
        await self._relay.flush_document(self.repository.users, user["_id"])
        return self._signed_in(user)

    async def login(self, body: LoginIn, client_address: str | None = None) -> AuthOut:
        """Unknown email and wrong password fail alike, after one Argon2 verification each."""
        await self.limits.login(domain.normalize_email(body.email), client_address)
        if len(body.password) > self.settings.password_max_length:
            # No stored password is this long; refuse without hashing attacker-sized input.
            raise Unauthenticated(LOGIN_FAILED)
        user = await self.repository.by_email(domain.normalize_email(body.email))
        stored_hash = user["password_hash"] if user else None
        if not await verify_password(body.password, stored_hash) or user is None:
            raise Unauthenticated(LOGIN_FAILED)
        return self._signed_in(user)

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
        await self._relay.flush_document(self.repository.users, caller.user_id)
        return domain.user_out(user)

    def _signed_in(self, user: dict[str, Any]) -> AuthOut:
        token = issue_token(
            user_id=user["_id"],
            email=user["email"],
            roles=roles_for(user["email"], self.settings.admin_email_set),
            secret=self.settings.jwt_secret.get_secret_value(),
            issuer=self.settings.jwt_issuer,
            ttl_seconds=self.settings.jwt_ttl_seconds,
        )
        return AuthOut(token=token, user=domain.user_out(user))

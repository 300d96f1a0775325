"""Use cases (service layer) of proving and changing who one is: the password check of a
login, email verification, password reset and change, and the operator's admin grants.

Each emailed link is single use: the user stores the id of the one link of each kind that still
works (`verify_jti`, `reset_jti`) and clears it when used. The routes reach these through
`service.Users.identity`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.auth import ROLE_ADMIN, Caller, hash_password, verify_password
from shared.errors import BadUserInput, Forbidden, NotFound, Unauthenticated
from shared.events.models import EmailVerificationRequested, Event, PasswordResetRequested
from shared.links import LinkPurpose, LinkSigner, link_url
from shared.logging import get_logger
from shared.outbox import outbox_entry
from shared.runtime import ServiceRuntime
from user_service import domain
from user_service.limits import AuthLimits
from user_service.repository import UserRepository
from user_service.schemas import AuthOut, UserOut
from user_service.sessions import USER_GONE, Sessions
from user_service.settings import UserSettings

log = get_logger(__name__)

LOGIN_FAILED = "The email or password is incorrect."
VERIFY_PATH = "verify-email"
RESET_PATH = "reset-password"
LINK_REFUSED = "This link is not valid, has expired or was already used."
ALREADY_VERIFIED = "Your email address is already verified."
VERIFICATION_SENT = "A new verification link is on its way to your email address."
RESET_SENT = "If that address belongs to an account, a reset link is on its way to it."
NO_SUCH_ACCOUNT = "No account has that email address."
NOT_AN_ADMIN = "Only an admin with a current session may do that."


@dataclass
class Identity:
    """Password checks, verification, password reset and change, and admin grants."""

    settings: UserSettings
    repository: UserRepository
    runtime: ServiceRuntime
    sessions: Sessions
    limits: AuthLimits

    def __post_init__(self) -> None:
        self.links = LinkSigner(self.settings.jwt_secret.get_secret_value())

    def link(self, purpose: LinkPurpose, user_id: str, token_id: str) -> str:
        """The URL of an emailed link (verification or reset) for a user."""
        ttl, path = {
            LinkPurpose.VERIFY_EMAIL: (self.settings.email_verification_ttl_seconds, VERIFY_PATH),
            LinkPurpose.RESET_PASSWORD: (self.settings.password_reset_ttl_seconds, RESET_PATH),
        }[purpose]
        token = self.links.sign(purpose, user_id, ttl_seconds=ttl, token_id=token_id)
        return link_url(self.settings.public_base_url, path, token)

    async def authenticate(self, user: dict[str, Any] | None, password: str) -> dict[str, Any]:
        """The user, if the password is theirs; otherwise UNAUTHENTICATED (after the same work
        for an unknown user as for a wrong password)."""
        if len(password) > self.settings.password_max_length:
            # No stored password is this long; refuse without hashing attacker-sized input.
            raise Unauthenticated(LOGIN_FAILED)
        stored_hash = user["password_hash"] if user else None
        if not await verify_password(password, stored_hash) or user is None:
            raise Unauthenticated(LOGIN_FAILED)
        return user

    async def verify_email(self, token: str) -> UserOut:
        """Mark the address of a verification link verified (an ADMIN_EMAILS address becomes
        admin); a link that is forged, expired, replaced or used is refused."""
        claims = self.links.verify(LinkPurpose.VERIFY_EMAIL, token)
        if claims is None:
            raise BadUserInput(LINK_REFUSED)
        user = await self.repository.by_id(claims.subject)
        if user is None or user.get(domain.VERIFY_JTI_FIELD) != claims.token_id:
            raise BadUserInput(LINK_REFUSED)
        roles = domain.roles_when_verified(
            user["email"], domain.stored_roles(user), self.settings.admin_email_set
        )
        verified = await self.repository.set_fields(
            claims.subject,
            {domain.VERIFIED_FIELD: True, domain.ROLES_FIELD: roles, domain.VERIFY_JTI_FIELD: None},
            when={domain.VERIFY_JTI_FIELD: claims.token_id},
        )
        if verified is None:  # used by a concurrent request
            raise BadUserInput(LINK_REFUSED)
        log.info("email verified", user_id=claims.subject, admin=ROLE_ADMIN in roles)
        return domain.user_out(verified)

    async def resend_verification(self, caller: Caller) -> str:
        """Mail a new verification link (the earlier ones stop working)."""
        user = await self._user(caller.user_id)
        if user.get(domain.VERIFIED_FIELD):
            return ALREADY_VERIFIED
        await self.limits.mail_link(user["email"])
        token_id = uuid.uuid4().hex
        event = EmailVerificationRequested(
            user_id=user["_id"],
            name=user["name"],
            email=user["email"],
            verification_url=self.link(LinkPurpose.VERIFY_EMAIL, user["_id"], token_id),
        )
        await self._set_with_event(user["_id"], {domain.VERIFY_JTI_FIELD: token_id}, event)
        return VERIFICATION_SENT

    async def request_password_reset(self, email: str) -> str:
        """Mail a reset link if the address is known; the answer is the same either way."""
        normalized = domain.normalize_email(email)
        await self.limits.mail_link(normalized)
        user = await self.repository.by_email(normalized)
        if user is not None:
            token_id = uuid.uuid4().hex
            event = PasswordResetRequested(
                user_id=user["_id"],
                name=user["name"],
                email=user["email"],
                reset_url=self.link(LinkPurpose.RESET_PASSWORD, user["_id"], token_id),
            )
            await self._set_with_event(user["_id"], {domain.RESET_JTI_FIELD: token_id}, event)
        return RESET_SENT

    async def reset_password(self, token: str, new_password: str) -> AuthOut:
        """Set a new password with a reset link: every session ends, a new one starts."""
        domain.check_password(new_password, self.settings.input_limits)
        claims = self.links.verify(LinkPurpose.RESET_PASSWORD, token)
        if claims is None:
            raise BadUserInput(LINK_REFUSED)
        password_hash = await hash_password(new_password)

        def change(user: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
            if user.get(domain.RESET_JTI_FIELD) != claims.token_id:
                raise BadUserInput(LINK_REFUSED)
            return {"password_hash": password_hash}, [domain.RESET_JTI_FIELD]

        user, session = await self.sessions.end(claims.subject, change, reopen=True)
        assert session is not None
        log.info("password reset", user_id=claims.subject)
        return self.sessions.signed_in(user, session)

    async def change_password(self, caller: Caller, current: str, new_password: str) -> AuthOut:
        """Set a new password, proving the current one: every session ends, a new one starts
        (a pending reset link stops working too)."""
        domain.check_password(new_password, self.settings.input_limits)
        await self.authenticate(await self.repository.by_id(caller.user_id), current)
        password_hash = await hash_password(new_password)
        user, session = await self.sessions.end(
            caller.user_id,
            lambda _: ({"password_hash": password_hash}, [domain.RESET_JTI_FIELD]),
            reopen=True,
        )
        assert session is not None
        log.info("password changed", user_id=caller.user_id)
        return self.sessions.signed_in(user, session)

    async def require_admin(self, caller: Caller) -> None:
        """The caller is an admin now: the token says so, its session has not ended, and the
        stored roles still include admin."""
        user = await self.repository.by_id(caller.user_id) if caller.is_admin else None
        if (
            user is None
            or ROLE_ADMIN not in domain.stored_roles(user)
            or caller.session_id not in (user.get(domain.SESSIONS_FIELD) or {})
        ):
            raise Forbidden(NOT_AN_ADMIN)

    async def set_admin(self, caller: Caller, email: str, *, granted: bool) -> UserOut:
        """An operator grants or revokes the admin role; that user's sessions end (their next
        login carries the new roles)."""
        await self.require_admin(caller)
        user = await self.repository.by_email(domain.normalize_email(email))
        if user is None:
            raise NotFound(NO_SUCH_ACCOUNT)

        def change(current: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
            roles = domain.with_role(domain.stored_roles(current), ROLE_ADMIN, granted=granted)
            return {domain.ROLES_FIELD: roles}, []

        changed, _ = await self.sessions.end(user["_id"], change)
        log.info("admin role changed", user_id=user["_id"], granted=granted, by=caller.user_id)
        return domain.user_out(changed)

    async def _user(self, user_id: str) -> dict[str, Any]:
        user = await self.repository.by_id(user_id)
        if user is None:
            raise NotFound(USER_GONE)
        return user

    async def _set_with_event(self, user_id: str, fields: dict[str, Any], event: Event) -> None:
        entry = outbox_entry(self.runtime.publisher, event)
        await self.repository.set_fields(user_id, fields, outbox=[entry])
        await self.runtime.outbox_relay.flush_document(self.repository.users, user_id)

"""Use cases (service layer) of sessions: open one, refresh its tokens, end sessions.

A session lives in its user's document (`sessions.<id>`: the hash of the current refresh
token, the last used ones, its expiry). Ending sessions, and whatever change causes it (a new
password, new roles), is one write of that document together with `user.sessions-revoked`
(the outbox): the gateway refuses the ended sessions' access tokens from then on. The routes
reach these through `service.Users.sessions`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.auth import Caller, issue_token
from shared.errors import Conflict, NotFound, Unauthenticated
from shared.events.models import Event, SessionsRevoked
from shared.logging import get_logger
from shared.outbox import outbox_entry
from shared.runtime import ServiceRuntime
from shared.times import as_utc
from user_service import domain
from user_service.repository import UserRepository
from user_service.schemas import AuthOut
from user_service.settings import UserSettings

log = get_logger(__name__)

REFRESH_FAILED = "The refresh token is not valid; log in again."
REFRESH_REUSED = "That refresh token was already used, so its session has ended; log in again."
USER_GONE = "That user no longer exists."
BUSY = "The account changed meanwhile; try again."

# What a change decides from the user it read: the fields to set and unset, or an error.
Change = Callable[[Mapping[str, Any]], tuple[dict[str, Any], list[str]]]


@dataclass
class Sessions:
    """Opens, refreshes and ends sessions of users."""

    settings: UserSettings
    repository: UserRepository
    runtime: ServiceRuntime

    def new(self, user_id: str) -> domain.NewSession:
        """A session to store (with its user, or through `open`)."""
        return domain.new_session(
            user_id, datetime.now(UTC), self.settings.refresh_token_ttl_seconds
        )

    def signed_in(self, user: Mapping[str, Any], session: domain.NewSession) -> AuthOut:
        """The answer of a sign-in: an access token of the session, its refresh token, the user."""
        return self._answer(user, session.session_id, session.refresh_token)

    def _answer(self, user: Mapping[str, Any], session_id: str, refresh_token: str) -> AuthOut:
        token = issue_token(
            user_id=user["_id"],
            email=user["email"],
            roles=domain.stored_roles(user),
            secret=self.settings.jwt_secret.get_secret_value(),
            issuer=self.settings.jwt_issuer,
            ttl_seconds=self.settings.access_token_ttl_seconds,
            session_id=session_id,
        )
        return AuthOut(token=token, refreshToken=refresh_token, user=domain.user_out(user))

    async def open(self, user: Mapping[str, Any]) -> AuthOut:
        """Open a session for a user who proved who they are (login); expired sessions are
        dropped, and the oldest live ones ended past MAX_SESSIONS_PER_USER."""
        session = self.new(user["_id"])
        sessions = user.get(domain.SESSIONS_FIELD) or {}
        now = datetime.now(UTC)
        over = domain.sessions_over(sessions, now, self.settings.max_sessions_per_user - 1)
        outbox = (
            [outbox_entry(self.runtime.publisher, self._revoked(user["_id"], over))] if over else []
        )
        await self.repository.open_session(
            user["_id"], session, domain.expired_sessions(sessions, now) + over, outbox
        )
        if outbox:
            await self.runtime.outbox_relay.flush_document(self.repository.users, user["_id"])
        return self.signed_in(user, session)

    async def refresh(self, refresh_token: str) -> AuthOut:
        """Rotate a refresh token: a new pair for the current one; a used one ends its session
        (someone else holds a copy); anything else is refused."""
        parsed = domain.parse_refresh_token(refresh_token)
        if parsed is None:
            raise Unauthenticated(REFRESH_FAILED)
        user = await self.repository.by_id(parsed.user_id)
        session = ((user or {}).get(domain.SESSIONS_FIELD) or {}).get(parsed.session_id)
        now = datetime.now(UTC)
        if user is None or session is None or as_utc(session["expires_at"]) <= now:
            raise Unauthenticated(REFRESH_FAILED)
        if domain.same_hash(parsed.secret_hash, session["hash"]):
            token, new_hash = domain.rotated_secret(parsed.user_id, parsed.session_id)
            if await self.repository.rotate_session(
                parsed.user_id,
                parsed.session_id,
                old_hash=session["hash"],
                new_hash=new_hash,
                expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
                keep=self.settings.refresh_reuse_memory,
            ):
                return self._answer(user, parsed.session_id, token)
            # Another refresh used this token at the same moment: one of the two is a copy.
        elif not any(domain.same_hash(parsed.secret_hash, h) for h in session.get("used", [])):
            raise Unauthenticated(REFRESH_FAILED)
        log.warning("refresh token reused; ending its session", user_id=parsed.user_id)
        await self.end(parsed.user_id, lambda _: ({}, []), only=[parsed.session_id])
        raise Unauthenticated(REFRESH_REUSED)

    async def logout(self, caller: Caller) -> bool:
        """End the session of the caller's token; False when it has none (already ended)."""
        if caller.session_id is None:
            return False
        user = await self.repository.by_id(caller.user_id)
        if caller.session_id not in ((user or {}).get(domain.SESSIONS_FIELD) or {}):
            return False
        await self.end(caller.user_id, lambda _: ({}, []), only=[caller.session_id])
        return True

    async def end(
        self,
        user_id: str,
        change: Change,
        *,
        only: list[str] | None = None,
        reopen: bool = False,
        events: Callable[[Mapping[str, Any]], list[Event]] | None = None,
    ) -> tuple[dict[str, Any], domain.NewSession | None]:
        """End the user's sessions (`only` these, or all) together with `change` (computed
        from the user as read; it may raise), and open a new session if `reopen`: one write,
        repeated while another change of the session set lands in between."""
        for _ in range(self.settings.session_write_attempts):
            user = await self.repository.by_id(user_id)
            if user is None:
                raise NotFound(USER_GONE)
            fields, unset = change(user)
            current = list((user.get(domain.SESSIONS_FIELD) or {}).keys())
            ended = [sid for sid in current if only is None or sid in only]
            new = self.new(user_id) if reopen else None
            queued = list(events(user) if events else [])
            if ended:
                queued.append(self._revoked(user_id, ended))
            written = await self.repository.replace_sessions(
                user_id,
                version=user.get(domain.AUTH_VERSION_FIELD),
                ended=ended,
                new=new,
                fields=fields,
                unset=unset,
                outbox=[outbox_entry(self.runtime.publisher, event) for event in queued],
            )
            if written is not None:
                if queued:
                    await self.runtime.outbox_relay.flush_document(self.repository.users, user_id)
                if ended:
                    log.info("sessions ended", user_id=user_id, count=len(ended))
                return written, new
        raise Conflict(BUSY)

    def _revoked(self, user_id: str, session_ids: list[str]) -> SessionsRevoked:
        # After this instant every access token of these sessions has expired on its own.
        until = datetime.now(UTC) + timedelta(seconds=self.settings.access_token_ttl_seconds)
        return SessionsRevoked(user_id=user_id, session_ids=session_ids, expires_at=until)

"""The rate limits the use cases check (in Redis, `shared/ratelimit.py`): login and registration
per email and per client address, mails with a link per address."""

from __future__ import annotations

from dataclasses import dataclass

from shared.ratelimit import RateLimiter, Rule, parse_limit
from user_service.settings import UserSettings

TOO_MANY_LOGINS = "Too many login attempts; try again later."
TOO_MANY_REGISTRATIONS = "Too many registrations; try again later."
TOO_MANY_MAILS = "Too many emails were asked for this address; try again later."


@dataclass(frozen=True, slots=True)
class AuthLimits:
    """The rules, checked before any password is hashed or verified."""

    limiter: RateLimiter
    login_per_email: Rule
    login_per_address: Rule
    register_per_email: Rule
    register_per_address: Rule
    mail_link_per_email: Rule

    @classmethod
    def from_settings(cls, settings: UserSettings) -> AuthLimits:
        """The limiter on REDIS_URL (none: no limits) and the rules the settings name."""
        return cls(
            limiter=RateLimiter.from_settings(settings),
            login_per_email=Rule("login-email", parse_limit(settings.login_limit_per_email)),
            login_per_address=Rule("login-address", parse_limit(settings.login_limit_per_address)),
            register_per_email=Rule(
                "register-email", parse_limit(settings.register_limit_per_email)
            ),
            register_per_address=Rule(
                "register-address", parse_limit(settings.register_limit_per_address)
            ),
            mail_link_per_email=Rule(
                "mail-link-email", parse_limit(settings.mail_link_limit_per_email)
            ),
        )

    async def login(self, email: str, address: str | None) -> None:
        """Count a login attempt; RATE_LIMITED when the address or the email is over."""
        if address:
            await self.limiter.hit(self.login_per_address, address, TOO_MANY_LOGINS)
        await self.limiter.hit(self.login_per_email, email, TOO_MANY_LOGINS)

    async def register(self, email: str, address: str | None) -> None:
        """Count a registration attempt; RATE_LIMITED when the address or the email is over."""
        if address:
            await self.limiter.hit(self.register_per_address, address, TOO_MANY_REGISTRATIONS)
        await self.limiter.hit(self.register_per_email, email, TOO_MANY_REGISTRATIONS)

    async def mail_link(self, email: str) -> None:
        """Count a mail with a link to this address; RATE_LIMITED when it is over."""
        await self.limiter.hit(self.mail_link_per_email, email, TOO_MANY_MAILS)

"""Mail transactions on an SMTP session aiosmtplib opened: MAIL FROM, RCPT TO, DATA, the content.

Where the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA leave in one write and their
three replies are read after it, so a mail costs two round trips instead of four (and the
client two writes and two wake-ups instead of four); elsewhere the commands go one at a time.

Why not aiosmtplib's `mail`/`rcpt`/`data`: its protocol reads one reply per command written and
drops replies that arrive while none is awaited (its `read_response` says so), so it cannot
pipeline. aiosmtplib still opens every session (greeting, EHLO, STARTTLS, AUTH); once it is
open, `MailSession.take_over` puts a reader of our own on the connection.

A session that ended before a mail's content was written (the server closed it, or answered
421 "closing") raises `SessionLost`: nothing of that mail was handed over, so it may go out on
another connection at once. Any other failure leaves the session in an unknown state; the
caller closes it.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque

import aiosmtplib
from aiosmtplib.email import quote_address

from notification_service.emails import OutgoingMail

CRLF = b"\r\n"
# Bare CR or LF become CRLF (RFC 5321 2.3.8), then a line starting with a dot gets another
# (4.5.2): the content's end is the line holding a dot alone.
_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_END_OF_CONTENT = b".\r\n"
# What must never reach a command line from an address (it could end the line, or confuse the
# server): aiosmtplib refuses the same in every command it sends itself.
_CONTROL_CHARACTERS = re.compile(rb"[\x00-\x1f\x7f]")
# A reply longer than this is not an SMTP server's (RFC 5321 4.5.3.1.5 allows 512 a line).
MAX_REPLY_BYTES = 64 * 1024

COMPLETED = 250
WILL_FORWARD = 251
START_INPUT = 354
CLOSING = 421


class SessionLost(aiosmtplib.SMTPServerDisconnected):
    """The session ended before this mail's content was written: nothing was handed over."""


def message_content(data: bytes) -> bytes:
    """What follows DATA's 354: `data` with CRLF line ends, dot-stuffed, then the lone dot."""
    content = _LEADING_DOT.sub(b"..", _LINE_ENDINGS.sub(CRLF, data))
    if not content.endswith(CRLF):
        content += CRLF
    return content + _END_OF_CONTENT


class _Replies(asyncio.Protocol):
    """The server's replies in the order they come, each one to the next waiting reader.

    Replies may arrive together (pipelining) or split across reads; a reply nobody waits for
    yet is kept until asked for.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._ready: deque[aiosmtplib.SMTPResponse] = deque()
        self._waiting: deque[asyncio.Future[aiosmtplib.SMTPResponse]] = deque()
        self.ended: aiosmtplib.SMTPException | None = None

    @property
    def unasked(self) -> int:
        """Replies that came without a command waiting for them (a server's 421 while idle)."""
        return len(self._ready)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > MAX_REPLY_BYTES:
            self._end(aiosmtplib.SMTPResponseException(-1, "The server's reply is too long"))
            return
        try:
            while (reply := self._next_reply()) is not None:
                self._deliver(reply)
        except aiosmtplib.SMTPResponseException as exc:
            self._end(exc)

    def eof_received(self) -> bool:
        return False  # the transport closes, and connection_lost ends the session

    def connection_lost(self, exc: Exception | None) -> None:
        ended = aiosmtplib.SMTPServerDisconnected("Connection lost")
        ended.__cause__ = exc
        self._end(ended)

    async def next(self, seconds: float | None) -> aiosmtplib.SMTPResponse:
        """The next reply, waited for at most `seconds`; the session's end or the wait's
        raises."""
        if self._ready:
            return self._ready.popleft()
        if self.ended is not None:
            raise self.ended
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                return await waiter
        except TimeoutError as exc:
            raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for a reply") from exc
        finally:
            if waiter in self._waiting:
                self._waiting.remove(waiter)

    def _next_reply(self) -> aiosmtplib.SMTPResponse | None:
        """The first complete reply in the buffer, taken out of it (None while incomplete)."""
        lines: list[bytes] = []
        offset = 0
        while (end := self._buffer.find(b"\n", offset)) != -1:
            line = bytes(self._buffer[offset : end + 1])
            offset = end + 1
            code = line[:3]
            if not code.isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                text = line.decode("utf-8", "replace").strip()
                raise aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP reply: {text!r}")
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                del self._buffer[:offset]
                message = b"\n".join(lines).decode("utf-8", "surrogateescape")
                return aiosmtplib.SMTPResponse(int(code), message)
        return None

    def _deliver(self, reply: aiosmtplib.SMTPResponse) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(reply)
                return
        self._ready.append(reply)

    def _end(self, exc: aiosmtplib.SMTPException) -> None:
        if self.ended is None:
            self.ended = exc
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(exc)


class MailSession:
    """An open, logged-in SMTP session carrying one mail transaction at a time."""

    def __init__(self, client: aiosmtplib.SMTP, reply_seconds: float | None) -> None:
        transport = client.transport
        if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Not connected")
        self._client = client  # closes the connection, TLS included
        self._transport = transport
        self._replies = _Replies()
        self.reply_seconds = reply_seconds
        self.pipelining = client.supports_extension("pipelining")
        self.smtputf8 = client.supports_extension("smtputf8")
        # From here on the replies come to our reader, not to aiosmtplib's.
        transport.set_protocol(self._replies)

    @classmethod
    async def take_over(cls, client: aiosmtplib.SMTP, reply_seconds: float | None) -> MailSession:
        """The session `client` opened (connected; TLS and login as configured), greeted with
        EHLO (HELO where refused) if its connect did not, read from now on by this class;
        `client` must not send anything itself afterwards."""
        if client.is_ehlo_or_helo_needed:
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        return cls(client, reply_seconds)

    @property
    def is_open(self) -> bool:
        """Whether a next mail may be tried on it (the server has not ended it)."""
        return (
            not self._transport.is_closing()
            and self._replies.ended is None
            and not self._replies.unasked
        )

    async def send(self, mail: OutgoingMail) -> None:
        """Hand one message to the server; an aiosmtplib.SMTPException says why it was not
        (SessionLost when nothing of it was handed over), ValueError an address that cannot
        be sent on a command line."""
        if mail.international and not self.smtputf8:
            raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
        encoding = "utf-8" if mail.international else "ascii"
        options = b" SMTPUTF8" if mail.international else b""
        commands = (
            b"MAIL FROM:" + _mailbox(mail.sender, encoding) + options + CRLF,
            b"RCPT TO:" + _mailbox(mail.recipient, encoding) + CRLF,
            b"DATA" + CRLF,
        )
        if not self.is_open:
            raise SessionLost("The server ended the session")
        if self.pipelining:
            self._write(b"".join(commands))
            replies = [await self._before_content() for _ in commands]
        else:
            replies = []
            for command in commands:
                self._write(command)
                replies.append(await self._before_content())
                if replies[-1].code not in (COMPLETED, WILL_FORWARD):
                    break  # MAIL or RCPT refused: DATA is not sent
        _check_envelope(replies, mail.sender, mail.recipient)
        self._write(message_content(mail.data))
        accepted = await self._replies.next(self.reply_seconds)
        if accepted.code != COMPLETED:
            raise aiosmtplib.SMTPDataError(accepted.code, accepted.message)

    def close(self) -> None:
        """Close the connection (no QUIT: a stopping service does not wait on SMTP)."""
        self._client.close()

    def _write(self, data: bytes) -> None:
        if self._transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._transport.write(data)

    async def _before_content(self) -> aiosmtplib.SMTPResponse:
        """A reply to MAIL, RCPT or DATA: the session's end, or a 421, is SessionLost."""
        try:
            reply = await self._replies.next(self.reply_seconds)
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise SessionLost(str(exc)) from exc
        if reply.code == CLOSING:
            raise SessionLost(f"{reply.code} {reply.message}")
        return reply


def _mailbox(address: str, encoding: str) -> bytes:
    """`<address>` for MAIL or RCPT; ValueError for one no command line may carry."""
    mailbox = quote_address(address).encode(encoding)
    if _CONTROL_CHARACTERS.search(mailbox):
        raise ValueError(f"Address {address!r} contains characters not permitted in a command")
    return mailbox


def _check_envelope(replies: list[aiosmtplib.SMTPResponse], sender: str, recipient: str) -> None:
    """The first refusal among the replies to MAIL, RCPT and DATA (RFC 2920: every reply of a
    group is read and checked, in order)."""
    mail, *rest = replies
    if mail.code != COMPLETED:
        raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, sender)
    rcpt, *data = rest
    if rcpt.code not in (COMPLETED, WILL_FORWARD):
        raise aiosmtplib.SMTPRecipientRefused(rcpt.code, rcpt.message, recipient)
    # DATA was sent and answered: one at a time, it follows accepted MAIL and RCPT.
    if data[0].code != START_INPUT:
        raise aiosmtplib.SMTPDataError(data[0].code, data[0].message)

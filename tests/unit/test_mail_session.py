"""notification_service/mail_session.py against a scripted SMTP server on loopback: aiosmtplib
opens each session (greeting, EHLO), the mail transaction is ours, pipelined where offered."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiosmtplib
import pytest

from notification_service.emails import OutgoingMail
from notification_service.mail_session import MailSession, SessionLost, message_content
from tests.fixtures.parts import eventually

LOOPBACK = "127.0.0.1"
SENDER = "fleet@example.com"
RECIPIENT = "ada@example.com"
END_OF_CONTENT = b"\r\n.\r\n"


@dataclass
class ScriptedSmtp:
    """Answers EHLO with the extensions given and every command with `answers` (by verb, else
    250); records the commands each read brought and the contents received. `on_command` may
    act on a command (close the connection, say) before it is answered."""

    extensions: tuple[str, ...] = ("PIPELINING",)
    answers: dict[str, bytes] = field(default_factory=dict)
    on_command: Callable[[str, asyncio.StreamWriter], bool] | None = None
    reads: list[list[str]] = field(default_factory=list)
    contents: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(b"220 scripted ready\r\n")
        buffer = b""
        in_content = False
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                buffer += chunk
                if in_content:
                    if END_OF_CONTENT not in buffer:
                        continue
                    content, _, buffer = buffer.partition(END_OF_CONTENT)
                    self.contents.append(content + b"\r\n")
                    writer.write(self.answers.get("CONTENT", b"250 queued\r\n"))
                    in_content = False
                    continue
                lines = buffer.split(b"\r\n")
                buffer = lines.pop()
                commands = [line.decode() for line in lines]
                self.reads.append(commands)
                answers = []
                for command in commands:
                    verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
                    if self.on_command and self.on_command(command, writer):
                        return
                    answers.append(self._answer(verb))
                    in_content = in_content or (verb == "DATA" and answers[-1].startswith(b"354"))
                writer.write(b"".join(answers))  # pipelined replies leave together too
                await writer.drain()

    def _answer(self, verb: str) -> bytes:
        if verb == "EHLO":
            lines = ["scripted", *self.extensions]
            return b"".join(
                f"250{'-' if n < len(lines) - 1 else ' '}{line}\r\n".encode()
                for n, line in enumerate(lines)
            )
        return self.answers.get(verb, b"354 go on\r\n" if verb == "DATA" else b"250 OK\r\n")

    def mail_reads(self) -> list[list[str]]:
        """The reads after EHLO, that is those of the mail transactions."""
        return [r for r in self.reads if not any(c.startswith("EHLO") for c in r)]


@contextlib.asynccontextmanager
async def scripted(smtp: ScriptedSmtp) -> AsyncIterator[int]:
    server = await asyncio.start_server(smtp.serve, LOOPBACK, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in smtp.writers:
            writer.close()
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def session_on(smtp: ScriptedSmtp, reply_seconds: float = 5.0) -> AsyncIterator[MailSession]:
    """A session aiosmtplib opened on the scripted server, taken over; closed afterwards."""
    async with scripted(smtp) as port:
        client = aiosmtplib.SMTP(
            hostname=LOOPBACK, port=port, start_tls=False, timeout=reply_seconds
        )
        await client.connect()
        session = await MailSession.take_over(client, reply_seconds)
        try:
            yield session
        finally:
            session.close()


MESSAGE = b"Subject: hi\r\n\r\nline one\n.starts with a dot\r\nlast"


async def test_pipelined_commands_leave_in_one_write_and_every_reply_is_read() -> None:
    smtp = ScriptedSmtp()
    async with session_on(smtp) as session:
        assert session.pipelining
        await session.send(OutgoingMail(SENDER, RECIPIENT, MESSAGE))
        await session.send(
            OutgoingMail(SENDER, "bob@example.com", MESSAGE)
        )  # the session is reused
    expected = [
        [f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RECIPIENT}>", "DATA"],
        [f"MAIL FROM:<{SENDER}>", "RCPT TO:<bob@example.com>", "DATA"],
    ]
    assert smtp.mail_reads() == expected
    assert smtp.contents == [b"Subject: hi\r\n\r\nline one\r\n..starts with a dot\r\nlast\r\n"] * 2


async def test_without_pipelining_each_command_waits_for_its_reply() -> None:
    smtp = ScriptedSmtp(extensions=("8BITMIME",))
    async with session_on(smtp) as session:
        assert not session.pipelining
        await session.send(OutgoingMail(SENDER, RECIPIENT, MESSAGE))
    assert smtp.mail_reads() == [[f"MAIL FROM:<{SENDER}>"], [f"RCPT TO:<{RECIPIENT}>"], ["DATA"]]
    assert len(smtp.contents) == 1


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_refused_recipient_raises_and_no_content_is_sent(pipelining: bool) -> None:
    smtp = ScriptedSmtp(
        extensions=("PIPELINING",) if pipelining else (),
        answers={"RCPT": b"550 no such user\r\n", "DATA": b"554 no valid recipients\r\n"},
    )
    async with session_on(smtp) as session:
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await session.send(OutgoingMail(SENDER, RECIPIENT, MESSAGE))
    assert refused.value.code == 550
    assert smtp.contents == []
    sent = [c for r in smtp.mail_reads() for c in r]
    assert sent == [f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RECIPIENT}>"] + (["DATA"] * pipelining)


async def test_a_refused_sender_and_a_refused_data_say_which() -> None:
    for answers, error, code in (
        ({"MAIL": b"553 not yours\r\n"}, aiosmtplib.SMTPSenderRefused, 553),
        ({"DATA": b"451 try later\r\n"}, aiosmtplib.SMTPDataError, 451),
        ({"CONTENT": b"552 too big\r\n"}, aiosmtplib.SMTPDataError, 552),
    ):
        smtp = ScriptedSmtp(answers=answers)
        async with session_on(smtp) as session:
            with pytest.raises(error) as raised:
                await session.send(OutgoingMail(SENDER, RECIPIENT, MESSAGE))
        assert raised.value.code == code


async def test_a_session_closed_by_the_server_at_mail_is_lost_with_nothing_handed_over() -> None:
    def close_at_mail(command: str, writer: asyncio.StreamWriter) -> bool:
        if command.startswith("MAIL"):
            writer.close()
            return True
        return False

    smtp = ScriptedSmtp(on_command=close_at_mail)
    async with session_on(smtp) as session:
        with pytest.raises(SessionLost):
            await session.send(OutgoingMail(SENDER, RECIPIENT, MESSAGE))
    assert smtp.contents == []


async def test_a_421_while_idle_ends_the_session_before_anything_is_written() -> None:
    smtp = ScriptedSmtp()
    async with session_on(smtp) as session:
        await session.send(OutgoingMail(SENDER, RECIPIENT, MESSAGE))
        smtp.writers[0].write(b"421 idle too long, closing\r\n")  # unasked, as servers do
        await smtp.writers[0].drain()
        await eventually(lambda: not session.is_open, what="the 421 read")
        with pytest.raises(SessionLost):
            await session.send(OutgoingMail(SENDER, RECIPIENT, MESSAGE))
    assert len(smtp.mail_reads()) == 1  # the second mail wrote nothing


async def test_a_421_answering_a_command_is_lost_too() -> None:
    smtp = ScriptedSmtp(answers={"RCPT": b"421 shutting down\r\n"})
    async with session_on(smtp) as session:
        with pytest.raises(SessionLost, match="421"):
            await session.send(OutgoingMail(SENDER, RECIPIENT, MESSAGE))


async def test_a_session_lost_after_the_content_is_not_session_lost() -> None:
    """Once the content went over the server may have taken it: not a free retry."""
    smtp = ScriptedSmtp(answers={"CONTENT": b""})
    async with session_on(smtp) as session:
        sending = asyncio.create_task(session.send(OutgoingMail(SENDER, RECIPIENT, MESSAGE)))
        await eventually(lambda: smtp.contents, what="the content at the server")
        smtp.writers[0].close()
        with pytest.raises(aiosmtplib.SMTPServerDisconnected) as lost:
            await sending
    assert not isinstance(lost.value, SessionLost)
    assert len(smtp.contents) == 1


async def test_a_silent_server_times_out() -> None:
    smtp = ScriptedSmtp(answers={"MAIL": b"", "RCPT": b"", "DATA": b""})
    async with session_on(smtp, reply_seconds=0.2) as session:
        with pytest.raises(aiosmtplib.SMTPReadTimeoutError):
            await session.send(OutgoingMail(SENDER, RECIPIENT, MESSAGE))


async def test_replies_split_across_reads_and_multiline_replies_are_whole() -> None:
    smtp = ScriptedSmtp()
    async with session_on(smtp) as session:
        replies = session._replies
        replies.data_received(b"250-a\r\n25")  # a reply in pieces, as TCP may deliver it
        assert replies.unasked == 0
        replies.data_received(b"0 b\r\n251 forwarded\r\n")
        assert replies.unasked == 2
        assert await replies.next(1.0) == aiosmtplib.SMTPResponse(250, "a\nb")
        assert await replies.next(1.0) == aiosmtplib.SMTPResponse(251, "forwarded")


async def test_a_malformed_reply_ends_the_session() -> None:
    smtp = ScriptedSmtp(answers={"MAIL": b"hello there\r\n"})
    async with session_on(smtp) as session:
        with pytest.raises(aiosmtplib.SMTPResponseException, match="Malformed"):
            await session.send(OutgoingMail(SENDER, RECIPIENT, MESSAGE))
        assert not session.is_open


async def test_international_addresses_need_smtputf8() -> None:
    international = "zoë@example.com"
    smtp = ScriptedSmtp(extensions=("PIPELINING", "SMTPUTF8"))
    async with session_on(smtp) as session:
        await session.send(OutgoingMail(SENDER, international, MESSAGE))
    assert smtp.mail_reads()[0][:2] == [
        f"MAIL FROM:<{SENDER}> SMTPUTF8",
        f"RCPT TO:<{international}>",
    ]

    plain = ScriptedSmtp()
    async with session_on(plain) as session:
        with pytest.raises(aiosmtplib.SMTPNotSupported):
            await session.send(OutgoingMail(SENDER, international, MESSAGE))
    assert plain.mail_reads() == []


async def test_an_address_cannot_add_a_command_or_carry_a_control_character() -> None:
    smtp = ScriptedSmtp()
    async with session_on(smtp) as session:
        for address in ("ada\x00@example.com", "ada\x7f@example.com"):
            with pytest.raises(ValueError, match="not permitted"):
                await session.send(OutgoingMail(SENDER, address, MESSAGE))
        assert smtp.mail_reads() == []  # refused before anything was written
        await session.send(
            OutgoingMail(SENDER, "ada@example.com>\r\nRCPT TO:<eve@example.com", MESSAGE)
        )
    sent = [c for r in smtp.mail_reads() for c in r]
    assert sent == [f"MAIL FROM:<{SENDER}>", "RCPT TO:<ada@example.com>", "DATA"]


def test_message_content_ends_lines_with_crlf_and_stuffs_leading_dots() -> None:
    assert message_content(b"a\nb\rc\r\n.d\n..e") == b"a\r\nb\r\nc\r\n..d\r\n...e\r\n.\r\n"
    assert message_content(b"ends\r\n") == b"ends\r\n.\r\n"

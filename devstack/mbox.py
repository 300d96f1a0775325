"""The SMTP sink's mail: one append-only mbox file, `messages.mbox`, in the sink's folder.

The one writer (the sink) and the one reader (the mail page, the bench, the tests) of it. Each
message is an entry as Python's `mailbox.mbox` writes one: a `From <sender> <asctime UTC>` line,
the message with `\\n` line ends, then a blank line; so `mutt -f`, any mail client or
`mailbox.mbox` opens the file. Body lines are quoted the mboxrd way (`From ` and `>From `, with
any number of `>`, get one more `>`; the reader takes it off again), so every message reads back
exactly as it was received, and a line starting with `From ` is always a separator.

The writer appends each entry with one write call under an exclusive `flock`; a reader reads the
file's size under a shared one, and only that many bytes: it never sees half an entry. A message's
id is its 0-based position in the file (arrival order), a plain decimal number.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import fcntl
import mmap
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

MBOX_NAME = "messages.mbox"
NO_SENDER = "MAILER-DAEMON"

_SEPARATOR = b"From "
_LINE_SEPARATOR = b"\n" + _SEPARATOR
_QUOTE = re.compile(rb"^(>*From )", re.MULTILINE)
_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)
_ASCTIME = "%a %b %d %H:%M:%S %Y"
_ASCTIME_FIELDS = 5
# A canonical decimal (no sign, no leading zero, ASCII digits only): nothing else names a message.
_MESSAGE_ID = re.compile(r"0|[1-9][0-9]{0,17}")


def mbox_path(folder: Path) -> Path:
    """The sink's mbox file in its folder."""
    return folder / MBOX_NAME


@dataclass(frozen=True, slots=True)
class StoredMail:
    """One message of the sink's mbox, parsed."""

    id: str
    received_at: datetime
    raw: bytes
    message: EmailMessage

    def header(self, name: str) -> str:
        """A header as text ('' when absent)."""
        return str(self.message.get(name, ""))

    def body(self, subtype: str) -> str | None:
        """The body part of that subtype (html or plain), if the message has one."""
        part = self.message.get_body(preferencelist=(subtype,))
        if part is None or part.get_content_subtype() != subtype:
            return None
        content = part.get_content()
        return content if isinstance(content, str) else None


def encode_entry(content: bytes, sender: str, received_at: datetime) -> bytes:
    """A message as received over SMTP, as its mbox entry (separator line, quoted body, blank
    line)."""
    sender = re.sub(r"[\s<>]", "", sender) or NO_SENDER
    stamp = time.asctime(received_at.astimezone(UTC).timetuple())
    body = content.replace(b"\r\n", b"\n")
    if not body.endswith(b"\n"):
        body += b"\n"
    if _SEPARATOR in body:  # a scan in C: the regular expression costs ~25 us a welcome mail
        body = _QUOTE.sub(rb">\1", body)
    return b"%s%s %s\n%s\n" % (_SEPARATOR, sender.encode(), stamp.encode(), body)


def decode_entry(message_id: str, entry: bytes) -> StoredMail:
    """An mbox entry (from its separator line to the next one) as the message it holds."""
    separator, _, body = entry.partition(b"\n")
    if body.endswith(b"\n\n"):
        body = body[:-1]
    raw = _UNQUOTE.sub(rb"\1", body) if _SEPARATOR in body else body
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return StoredMail(message_id, _received_at(separator), raw, message)


def _received_at(separator: bytes) -> datetime:
    stamp = " ".join(separator.decode(errors="replace").split()[-_ASCTIME_FIELDS:])
    try:
        return datetime.strptime(stamp, _ASCTIME).replace(tzinfo=UTC)
    except ValueError:  # a separator some other tool wrote
        return datetime.fromtimestamp(0, UTC)


class MboxWriter:
    """Appends messages to the mbox of a folder; keeps the file open."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = mbox_path(folder)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lead = _missing_blank_line(self.path)

    def append(self, content: bytes, sender: str, received_at: datetime) -> None:
        """Append one message, whole, in one write (readers see all of it or nothing)."""
        entry = self._lead + encode_entry(content, sender, received_at)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            view = memoryview(entry)
            while view:  # one call on a regular file, short only when the disk is full
                view = view[os.write(self._fd, view) :]
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lead = b""

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)


def _missing_blank_line(path: Path) -> bytes:
    """What the file lacks to end with a blank line (an entry cut off by a crash, say), so that
    the next separator starts a line of its own."""
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        if size == 0:
            return b""
        file.seek(max(size - 2, 0))
        tail = file.read()
    if tail.endswith(b"\n\n"):
        return b""
    return b"\n" if tail.endswith(b"\n") else b"\n\n"


class Mailbox:
    """Reads the sink's mbox: its messages in arrival order. Keeps where each entry starts and
    reads only what was appended since, so counting and listing stay cheap as the file grows."""

    def __init__(self, folder: Path) -> None:
        self.path = mbox_path(folder)
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None
        self._starts: list[int] = []
        self._end = 0

    def count(self) -> int:
        """How many messages the file holds."""
        with self._snapshot() as (_, starts):
            return len(starts)

    def messages(self) -> list[StoredMail]:
        """Every message, oldest first."""
        with self._snapshot() as (data, starts):
            return [_entry(data, starts, index) for index in range(len(starts))]

    def newest(self, limit: int) -> list[StoredMail]:
        """The newest `limit` messages, newest first (only those are parsed)."""
        with self._snapshot() as (data, starts):
            first = max(len(starts) - limit, 0)
            return [_entry(data, starts, index) for index in reversed(range(first, len(starts)))]

    def get(self, message_id: str) -> StoredMail | None:
        """A message by its id; None for an id of no message, or of any other form."""
        if not _MESSAGE_ID.fullmatch(message_id):
            return None
        with self._snapshot() as (data, starts):
            index = int(message_id)
            return _entry(data, starts, index) if index < len(starts) else None

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[tuple[bytes | mmap.mmap, list[int]]]:
        """The file's complete entries: its bytes up to the last whole entry, and their starts."""
        try:
            file = self.path.open("rb")
        except FileNotFoundError:
            yield b"", []
            return
        with file:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH)
            try:
                stat = os.fstat(file.fileno())
            finally:
                fcntl.flock(file.fileno(), fcntl.LOCK_UN)
            if stat.st_size == 0:
                yield b"", []
                return
            with mmap.mmap(file.fileno(), stat.st_size, access=mmap.ACCESS_READ) as data:
                starts = self._index(data, (stat.st_dev, stat.st_ino))
                yield data, starts

    def _index(self, data: mmap.mmap, identity: tuple[int, int]) -> list[int]:
        with self._lock:
            if identity != self._identity or len(data) < self._end:  # a new or rewritten file
                self._identity, self._starts, self._end = identity, [], 0
            if self._end == 0 and data[: len(_SEPARATOR)] == _SEPARATOR:
                self._starts.append(0)
            found = data.find(_LINE_SEPARATOR, max(self._end - 1, 0))
            while found != -1:
                self._starts.append(found + 1)
                found = data.find(_LINE_SEPARATOR, found + 1)
            self._end = len(data)
            return list(self._starts)


def _entry(data: bytes | mmap.mmap, starts: list[int], index: int) -> StoredMail:
    stop = starts[index + 1] if index + 1 < len(starts) else len(data)
    return decode_entry(str(index), data[starts[index] : stop])

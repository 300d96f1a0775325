"""The SMTP sink's mbox (devstack/mbox.py): what the writer appends reads back exactly, the
standard library and our reader agree on it, and a reader never sees half a message."""

from __future__ import annotations

import mailbox
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from devstack.mbox import MBOX_NAME, Mailbox, MboxWriter

RECEIVED_AT = datetime(2025, 3, 7, 9, 5, 1, tzinfo=UTC)
# Several pages each, so that an unlocked reader could catch one half written.
LARGE_BODY_LINES = 3000
LARGE_MESSAGES = 60


def message_bytes(subject: str, text: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Fleet <no-reply@fleet.test>"
    message["To"] = "ada@example.com"
    message["Subject"] = subject
    message.set_content(text)
    # As SMTP carries it: CRLF line ends.
    return message.as_bytes().replace(b"\n", b"\r\n")


def test_messages_read_back_exactly_in_arrival_order(tmp_path: Path) -> None:
    texts = {
        "plain": "one line\n",
        "from lines": "From the start\n>From quoted\n>>From twice\nFrom  end\n",
        "no final newline": "last line without end",
    }
    writer = MboxWriter(tmp_path)
    for subject, text in texts.items():
        writer.append(message_bytes(subject, text), "<no-reply@fleet.test>", RECEIVED_AT)
    writer.close()

    mails = Mailbox(tmp_path).messages()
    assert [m.id for m in mails] == ["0", "1", "2"]
    for mail, (subject, text) in zip(mails, texts.items(), strict=True):
        assert mail.header("Subject") == subject
        assert mail.header("To") == "ada@example.com"
        assert mail.body("plain") == text if text.endswith("\n") else text + "\n"
        assert mail.received_at == RECEIVED_AT.replace(microsecond=0)
        assert mail.raw == message_bytes(subject, text).replace(b"\r\n", b"\n")

    stored = (tmp_path / MBOX_NAME).read_bytes()
    assert stored.startswith(b"From no-reply@fleet.test Fri Mar  7 09:05:01 2025\n")
    assert b"\n>From the start\n>>From quoted\n>>>From twice\n>From  end\n" in stored
    standard = mailbox.mbox(tmp_path / MBOX_NAME, create=False)
    assert [m["Subject"] for m in standard] == list(texts)
    assert standard[0].get_from() == "no-reply@fleet.test Fri Mar  7 09:05:01 2025"


def test_a_reopened_writer_appends_after_what_is_there(tmp_path: Path) -> None:
    # A file the standard library wrote, its last entry cut short (a crash, say).
    standard = mailbox.mbox(tmp_path / MBOX_NAME)
    standard.add(message_bytes("by the standard library", "hello\n"))
    standard.close()
    with (tmp_path / MBOX_NAME).open("ab") as file:
        file.write(b"From x Fri Mar  7 09:05:01 2025\nSubject: cut")
    for _ in range(2):
        writer = MboxWriter(tmp_path)
        writer.append(message_bytes("by the sink", "hi\n"), "", RECEIVED_AT)
        writer.close()
    subjects = [m.header("Subject") for m in Mailbox(tmp_path).messages()]
    assert subjects == ["by the standard library", "cut", "by the sink", "by the sink"]


def test_the_reader_follows_appends_and_a_replaced_file(tmp_path: Path) -> None:
    reader = Mailbox(tmp_path)
    assert (reader.count(), reader.messages(), reader.get("0")) == (0, [], None)
    writer = MboxWriter(tmp_path)
    for index in range(5):
        writer.append(message_bytes(f"m{index}", "x\n"), "a@b", RECEIVED_AT)
        assert reader.count() == index + 1
    writer.close()
    assert [m.header("Subject") for m in reader.newest(2)] == ["m4", "m3"]
    assert [m.header("Subject") for m in reader.newest(50)] == ["m4", "m3", "m2", "m1", "m0"]

    (tmp_path / MBOX_NAME).unlink()
    writer = MboxWriter(tmp_path)
    writer.append(message_bytes("fresh", "x\n"), "a@b", RECEIVED_AT)
    writer.close()
    assert reader.count() == 1
    fresh = reader.get("0")
    assert fresh is not None and fresh.header("Subject") == "fresh"


@pytest.mark.parametrize(
    "message_id", ["", "1", "-0", "00", "+0", " 0", "0 ", "²", "\u0660", "../0", "/0", "0.0", "1e0"]
)
def test_only_the_id_of_a_message_names_it(tmp_path: Path, message_id: str) -> None:
    writer = MboxWriter(tmp_path)
    writer.append(message_bytes("only", "x\n"), "a@b", RECEIVED_AT)
    writer.close()
    reader = Mailbox(tmp_path)
    assert reader.get("0") is not None
    assert reader.get(message_id) is None


def test_a_reader_during_writing_never_returns_half_a_message(tmp_path: Path) -> None:
    line = "The quick brown fox jumps over the lazy dog, again and again.\n"
    writer = MboxWriter(tmp_path)
    done = threading.Event()

    def write() -> None:
        try:
            for index in range(LARGE_MESSAGES):
                text = line * LARGE_BODY_LINES + f"end of {index}\n"
                writer.append(message_bytes(f"large {index}", text), "a@b", RECEIVED_AT)
        finally:
            writer.close()
            done.set()

    thread = threading.Thread(target=write)
    reader, seen, reads = Mailbox(tmp_path), 0, 0
    thread.start()
    while not done.is_set() or seen < LARGE_MESSAGES:
        for mail in reader.newest(1):
            index = int(mail.id)
            assert mail.header("Subject") == f"large {index}"
            assert mail.body("plain") == line * LARGE_BODY_LINES + f"end of {index}\n"
            seen = max(seen, index + 1)
        reads += 1
    thread.join()
    assert reader.count() == LARGE_MESSAGES and reads > 1

"""The launcher's console: every line of every child with its name as a fixed-width prefix."""

from __future__ import annotations

import sys
import threading
from typing import IO

# Bright, readable on dark and light terminals; cycled over the children.
_COLOURS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
_RESET = "\x1b[0m"
_BOLD = "1"


class Console:
    """Writes prefixed lines from tasks and threads alike (one lock, one flush per line)."""

    def __init__(self, names: list[str], stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stdout
        self._colour = self._stream.isatty()
        self._width = max(len(name) for name in names)
        self._codes = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(names)}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def is_terminal(self) -> bool:
        """Whether a person is reading (the stream is a terminal)."""
        return self._colour

    def line(self, name: str, text: str) -> None:
        """Print one line of `name`'s output."""
        prefix = f"{name:<{self._width}} |"
        if self._colour:
            prefix = f"\x1b[{self._codes.get(name, _BOLD)}m{prefix}{_RESET}"
        self._write(f"{prefix} {text.rstrip()}\n")

    def raw_line(self, name: str, data: bytes) -> None:
        """Print a line as read from a pipe (undecodable bytes replaced)."""
        self.line(name, data.decode("utf-8", errors="replace"))

    def block(self, text: str) -> None:
        """Print a block of text as it is (the table of URLs)."""
        self._write(text if text.endswith("\n") else text + "\n")

    def _write(self, text: str) -> None:
        # A closed terminal or pipe must not stop the supervisor from shutting the fleet down.
        with self._lock:
            if self._closed:
                return
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):
                self._closed = True

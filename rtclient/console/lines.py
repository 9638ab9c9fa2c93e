"""Input lines for ``rtclient chat``: split and size-checked before anything else sees them.

:class:`LineSplitter` is sans-I/O (bytes in, lines out) and never holds more than one
line's worth of bytes: a line longer than the limit is counted and dropped as it
streams by, so a 100 MB line costs 100 MB of reading, not of memory.
:func:`read_stdin` feeds a queue from stdin through the event loop (no thread), so a
fatal error can end the program while stdin is still open.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from dataclasses import dataclass

__all__ = ["MAX_TEXT_CHARS", "LineSplitter", "TooLong", "read_stdin", "too_long_text"]

MAX_TEXT_CHARS = 8000
"""fake_server's ``maxTextLength``: longer messages are refused here, before sending."""

_READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class TooLong:
    """An input line over the limit; ``chars`` is its length (at least, when cut short)."""

    chars: int


def too_long_text(chars: int, limit: int = MAX_TEXT_CHARS) -> str:
    """What the user reads about a line that is too long to send."""
    return f"{chars:,} characters, over the {limit:,}-character limit of a message"


class LineSplitter:
    """Splits a byte stream into text lines of at most ``max_chars`` characters.

    Feed bytes with :meth:`feed`, call :meth:`end` at end of input; both return the
    complete lines (``str``, without the line break) and :class:`TooLong` markers.
    """

    def __init__(self, max_chars: int = MAX_TEXT_CHARS) -> None:
        self.max_chars = max_chars
        self._max_bytes = 4 * max_chars + 2  # UTF-8 takes at most 4 bytes a character
        self._buffer = bytearray()
        self._dropped: int | None = None  # characters seen of a line over the limit

    def feed(self, data: bytes) -> list[str | TooLong]:
        out: list[str | TooLong] = []
        start = 0
        while True:
            newline = data.find(b"\n", start)
            piece = data[start:] if newline < 0 else data[start:newline]
            self._take(piece)
            if newline < 0:
                return out
            out.append(self._finish())
            start = newline + 1

    def end(self) -> list[str | TooLong]:
        if self._buffer or self._dropped is not None:
            return [self._finish()]
        return []

    def _take(self, piece: bytes) -> None:
        if self._dropped is not None:
            self._dropped += _chars(piece)
            return
        self._buffer += piece
        if len(self._buffer) > self._max_bytes:
            self._dropped = _chars(self._buffer)
            self._buffer = bytearray()

    def _finish(self) -> str | TooLong:
        if self._dropped is not None:
            result: str | TooLong = TooLong(self._dropped)
            self._dropped = None
            return result
        text = self._buffer.decode("utf-8", errors="replace").rstrip("\r")
        self._buffer = bytearray()
        return TooLong(len(text)) if len(text) > self.max_chars else text


def _chars(data: bytes | bytearray) -> int:
    """UTF-8 characters in ``data``: the bytes that do not continue a character."""
    return len(data) - sum(data.count(byte) for byte in range(0x80, 0xC0))


async def read_stdin(
    queue: asyncio.Queue[str | TooLong | None],
    *,
    max_chars: int = MAX_TEXT_CHARS,
    fd: int | None = None,
) -> None:
    """Put stdin's lines (``fd``'s) into ``queue``, then None; cancel it to stop reading.

    A pipe, socket or terminal is read through the event loop (its blocking flag is
    restored after); a regular file or a device like /dev/null, which never blocks
    and which epoll refuses, is read directly.
    """
    if fd is None:
        if sys.stdin is None:  # descriptor 0 was closed (`<&-`): no input at all
            queue.put_nowait(None)
            return
        fd = sys.stdin.fileno()
    splitter = LineSplitter(max_chars)
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
        while data := os.read(fd, _READ_SIZE):
            for line in splitter.feed(data):
                queue.put_nowait(line)
            await asyncio.sleep(0)
    else:
        loop = asyncio.get_running_loop()
        was_blocking = os.get_blocking(fd)
        reader = asyncio.StreamReader(limit=_READ_SIZE)
        pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while data := await reader.read(_READ_SIZE):
                for line in splitter.feed(data):
                    queue.put_nowait(line)
        finally:
            transport.close()
            os.set_blocking(fd, was_blocking)
    for line in splitter.end():
        queue.put_nowait(line)
    queue.put_nowait(None)

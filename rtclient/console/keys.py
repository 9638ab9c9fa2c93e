"""Keyboard input of the interactive chat, priced by what a line costs.

prompt_toolkit handles every key press on its own (~0.35 ms each: the key bindings
are matched against the whole layout), so a 100 KB paste that arrives as plain
characters (no bracketed paste: tmux ``send-keys``, some terminals) froze the chat for
half a minute. :class:`CoalescingInput` hands a run of plain characters read at once to
prompt_toolkit as one paste, and :func:`size_limit_bindings` refuses a paste or a
keystroke that would take the line past the message limit before anything is inserted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from itertools import groupby

from prompt_toolkit.buffer import Buffer
from prompt_toolkit.document import Document
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.key_binding.key_processor import KeyPress
from prompt_toolkit.keys import Keys

from .lines import MAX_TEXT_CHARS

__all__ = [
    "CoalescingInput",
    "PasteGuard",
    "Piece",
    "coalesce",
    "size_limit_bindings",
    "trim_to_limit",
]


def _plain(press: KeyPress) -> bool:
    key = press.key
    return isinstance(key, str) and len(key) == 1 and key.isprintable()


class Piece(str):
    """The data of a paste made by :func:`coalesce`: characters read at once, which may
    be one piece of a longer paste (a bracketed paste from the terminal is whole)."""

    __slots__ = ()


def coalesce(presses: list[KeyPress]) -> list[KeyPress]:
    """``presses`` with each run of two or more plain characters made one paste."""
    out: list[KeyPress] = []
    for plain, group in groupby(presses, key=_plain):
        run = list(group)
        if plain and len(run) > 1:
            out.append(KeyPress(Keys.BracketedPaste, Piece("".join(p.data for p in run))))
        else:
            out.extend(run)
    return out


class CoalescingInput(Input):
    """An Input that reads from ``inner`` and coalesces plain characters (see module)."""

    def __init__(self, inner: Input) -> None:
        self.inner = inner

    def fileno(self) -> int:
        return self.inner.fileno()

    def typeahead_hash(self) -> str:
        return self.inner.typeahead_hash()

    def read_keys(self) -> list[KeyPress]:
        return coalesce(self.inner.read_keys())

    def flush_keys(self) -> list[KeyPress]:
        return coalesce(self.inner.flush_keys())

    def flush(self) -> None:
        self.inner.flush()

    @property
    def closed(self) -> bool:
        return self.inner.closed

    def raw_mode(self) -> AbstractContextManager[None]:
        return self.inner.raw_mode()

    def cooked_mode(self) -> AbstractContextManager[None]:
        return self.inner.cooked_mode()

    def attach(self, input_ready_callback: Callable[[], None]) -> AbstractContextManager[None]:
        return self.inner.attach(input_ready_callback)

    def detach(self) -> AbstractContextManager[None]:
        return self.inner.detach()

    def close(self) -> None:
        self.inner.close()


class PasteGuard:
    """Decides, paste by paste, what a paste past the limit leaves in the line: nothing.

    Without bracketed paste a terminal delivers a long paste in pieces (a read each),
    which :class:`CoalescingInput` hands over as one paste each. The pieces of one
    paste (the line untouched between them, each within ``gap`` seconds of the last)
    are a burst: when a piece would take the line past ``limit``, the line goes back to
    what it was before the burst, ``refused`` is told once, and the burst's later
    pieces are refused too.
    """

    MIN_PIECE = 64
    """Characters in a piece that another piece of the same paste may follow."""

    def __init__(
        self,
        refused: Callable[[int], None],
        limit: int = MAX_TEXT_CHARS,
        *,
        gap: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refused = refused
        self.limit = limit
        self.gap = gap
        self.clock = clock
        self._last = -math.inf  # when the last piece came
        self._left: Document | None = None  # the line as the last piece left it
        self._before: Document | None = None  # the line before the burst
        self._chars = 0  # characters of the burst so far
        self._refusing = False

    def paste(self, buffer: Buffer, data: str, *, piece: bool = True) -> None:
        """Insert ``data`` or refuse it; ``piece``: it may continue the last paste (a
        bracketed paste is whole: it neither continues nor is continued)."""
        now = self.clock()
        same_burst = (
            piece
            and now - self._last <= self.gap
            and buffer.document == self._left  # nothing else touched the line
        )
        # Only a long piece can have a next one (a person's keys come a few at a time).
        self._last = now if piece and len(data) >= self.MIN_PIECE else -math.inf
        if not same_burst:
            self._before, self._chars, self._refusing = buffer.document, 0, False
        self._chars += len(data)
        assert self._before is not None
        if not self._refusing and len(buffer.text) + len(data) <= self.limit:
            buffer.insert_text(data)
        else:
            if not self._refusing:  # said once per paste
                self.refused(len(self._before.text) + self._chars)
            self._refusing = True
            buffer.document = self._before
        self._left = buffer.document


def size_limit_bindings(refused: Callable[[int], None], limit: int = MAX_TEXT_CHARS) -> KeyBindings:
    """A paste binding that keeps the input line within ``limit`` characters: a paste
    that would pass it is not inserted at all (see :class:`PasteGuard`), and
    ``refused(chars)`` is told the length the line would have had (so far). (A
    keystroke past the limit is undone by :func:`trim_to_limit`.)"""
    bindings = KeyBindings()
    guard = PasteGuard(refused, limit)

    @bindings.add(Keys.BracketedPaste, eager=True)
    def _paste(event: KeyPressEvent) -> None:
        data = event.data.replace("\r\n", "\n").replace("\r", "\n")
        guard.paste(event.current_buffer, data, piece=isinstance(event.data, Piece))

    return bindings


def trim_to_limit(buffer: Buffer, refused: Callable[[int], None], limit: int) -> None:
    """Cut ``buffer`` back to ``limit`` characters if a keystroke took it past."""
    if len(buffer.text) > limit:
        chars = len(buffer.text)
        buffer.document = Document(buffer.text[:limit], min(buffer.cursor_position, limit))
        refused(chars)

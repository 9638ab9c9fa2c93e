"""Keyboard input of the interactive chat, priced by what a line costs.

prompt_toolkit handles every key press on its own (~0.35 ms each: the key bindings
are matched against the whole layout), so a 100 KB paste that arrives as plain
characters (no bracketed paste: tmux ``send-keys``, some terminals) froze the chat for
half a minute. :class:`CoalescingInput` hands a run of plain characters read at once to
prompt_toolkit as one paste, and :func:`size_limit_bindings` refuses a paste or a
keystroke that would take the line past the message limit before anything is inserted.
"""

from __future__ import annotations

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

__all__ = ["CoalescingInput", "coalesce", "size_limit_bindings", "trim_to_limit"]


def _plain(press: KeyPress) -> bool:
    key = press.key
    return isinstance(key, str) and len(key) == 1 and key.isprintable()


def coalesce(presses: list[KeyPress]) -> list[KeyPress]:
    """``presses`` with each run of two or more plain characters made one paste."""
    out: list[KeyPress] = []
    for plain, group in groupby(presses, key=_plain):
        run = list(group)
        if plain and len(run) > 1:
            out.append(KeyPress(Keys.BracketedPaste, "".join(p.data for p in run)))
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


def size_limit_bindings(refused: Callable[[int], None], limit: int = MAX_TEXT_CHARS) -> KeyBindings:
    """A paste binding that keeps the input line within ``limit`` characters: a paste
    that would pass it is not inserted at all, and ``refused(chars)`` is told the
    length the line would have had. (A keystroke past the limit is undone by
    :func:`trim_to_limit`.)"""
    bindings = KeyBindings()

    @bindings.add(Keys.BracketedPaste, eager=True)
    def _paste(event: KeyPressEvent) -> None:
        data = event.data.replace("\r\n", "\n").replace("\r", "\n")
        buffer = event.current_buffer
        if len(buffer.text) + len(data) > limit:
            refused(len(buffer.text) + len(data))
            return
        buffer.insert_text(data)

    return bindings


def trim_to_limit(buffer: Buffer, refused: Callable[[int], None], limit: int) -> None:
    """Cut ``buffer`` back to ``limit`` characters if a keystroke took it past."""
    if len(buffer.text) > limit:
        chars = len(buffer.text)
        buffer.document = Document(buffer.text[:limit], min(buffer.cursor_position, limit))
        refused(chars)

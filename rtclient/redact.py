"""Keeping tokens out of logs and exception texts.

rtclient never formats a token into a message or an exception. The libraries
underneath may: websockets logs request headers (``Authorization: Bearer …``) and
frames (a ``token:refresh`` payload) at DEBUG level, and shortens a long frame to its
start and end, so a ``"token":"`` prefix a pattern would look for can be cut away
while the end of the token stays. Two defences, applied together by :func:`redact`:

- the live tokens: the client registers every token it obtains
  (:func:`remember_token`); any run of 8 or more characters of a registered token —
  as text, or as websockets' hex dump of a binary frame — is masked. The registry is
  process-wide (loggers are); each client keeps its current and previous token there;
- patterns for what looks like a credential (a JWT, an ``Authorization`` header, a
  ``"token": "…"`` field), for tokens the client never saw (a peer's, a user's typo).

The libraries' loggers are wrapped in :class:`RedactingLogger`, which formats each
record and redacts it before it reaches a handler.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
import weakref
from collections import deque
from collections.abc import Iterable
from typing import Any

__all__ = [
    "MASK",
    "RedactingLogger",
    "peer_text",
    "redact",
    "remember_query_parameter",
    "remember_token",
]

_PATTERNS = (
    # JWTs: three base64url parts, the first of which starts with {" → "eyJ".
    re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"),
    re.compile(r"(?i)(authorization:?\s*(?:bearer\s+)?)\S+"),
    re.compile(
        r"""(?i)("(?:token|access_token|password)"\s*:\s*"|(?:token|password)=)[^"\s,&}]+"""
    ),
)
MASK = "[redacted]"
FRAGMENT = 8
"""The shortest run of a token's characters that is masked."""
KEEP = 2
"""Tokens kept per owner: the one in use and the one it replaced."""
_HEX_RUN = re.compile(r"(?:[0-9a-f]{2} ){7,}[0-9a-f]{2}")  # FRAGMENT bytes or more


class _Registry:
    """The tokens to mask, as a count of their 8-character windows.

    Each owner (a Client, a transport) keeps its last :data:`KEEP` tokens here, until
    it is garbage-collected; tokens registered without an owner share 16 places. So
    the registry holds what live clients use, whatever their number and age.

    The windows (about 85 bytes per character of a token: 50 MB for 1,000 clients
    with two 300-character JWTs each) are built on the first :func:`redact`: the
    first library record that reaches a log, or the first server close reason (see
    :class:`~rtclient.errors.ConnectionLost`). Until then the tokens alone are held.
    """

    def __init__(self) -> None:
        self._windows: dict[str, int] = {}
        self._short: dict[str, int] = {}
        self._held: dict[int, deque[str]] = {}
        self._indexed = False

    @property
    def windows(self) -> dict[str, int]:
        """The 8-character windows of the tokens of 8 characters or more, counted."""
        self._index()
        return self._windows

    @property
    def short(self) -> dict[str, int]:
        """The tokens shorter than 8 characters, counted."""
        self._index()
        return self._short

    def _index(self) -> None:
        if not self._indexed:
            self._indexed = True
            for held in list(self._held.values()):
                for token in held:
                    self._count(token, 1)

    def add(self, token: str, owner: object | None) -> None:
        key = 0 if owner is None else id(owner)
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = deque()
            if owner is not None:
                weakref.finalize(owner, self._drop, key)
        if token in held:
            return
        held.append(token)
        self._count(token, 1)
        while len(held) > (KEEP if owner is not None else 16):
            self._count(held.popleft(), -1)

    def _drop(self, key: int) -> None:
        for token in self._held.pop(key, ()):
            self._count(token, -1)

    def _count(self, token: str, step: int) -> None:
        if not self._indexed:
            return  # counted when the index is built
        if len(token) < FRAGMENT:
            keys: Iterable[str] = (token,) if len(token) >= 4 else ()
            table = self._short
        else:
            keys = {token[i : i + FRAGMENT] for i in range(len(token) - FRAGMENT + 1)}
            table = self._windows
        for key in keys:
            count = table.get(key, 0) + step
            if count > 0:
                table[key] = count
            else:
                table.pop(key, None)


_registry = _Registry()


def remember_token(token: str | None, owner: object | None = None) -> None:
    """Register a token: from now on no piece of it (8+ characters) reaches a log.

    ``owner`` (the Client that obtained it) keeps its last two tokens registered for
    as long as it lives. Tokens shorter than 8 characters are masked where they occur
    whole (from 4 characters on: a shorter "token" is no secret worth a mask).
    """
    if token:
        _registry.add(token, owner)


_query_names: set[str] = set()
_query_pattern: list[re.Pattern[str]] = []


def remember_query_parameter(name: str) -> None:
    """Mask the value of the URL query parameter ``name`` wherever it shows (``name=…``).

    For a client told to put its token in the URL (``token_query``): the value is masked
    even when the token itself was never registered (a URL a library logs whole).
    """
    if not name or name in _query_names:
        return
    _query_names.add(name)
    names = "|".join(re.escape(n) for n in sorted(_query_names))
    _query_pattern[:] = [re.compile(rf"((?:^|[?&;\s])(?:{names})=)[^&#;\s'\"]+")]


def redact(text: str) -> str:
    """Return ``text`` with every piece of a known token and anything that looks like a
    credential replaced by a mask."""
    text = _mask_fragments(text)
    text = _PATTERNS[0].sub(MASK, text)
    for pattern in (*_PATTERNS[1:], *_query_pattern):
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


def peer_text(text: str) -> str:
    """A text of the server's (a close reason, an error message), redacted: a server
    may echo the token it refuses."""
    return redact(text) if len(text) >= FRAGMENT else text


def _mask_fragments(text: str) -> str:
    windows = _registry.windows
    for token in list(_registry.short):
        text = text.replace(token, MASK)
    if not windows or len(text) < FRAGMENT:
        return text
    if " " in text:  # websockets prints binary frames as hex pairs
        text = _HEX_RUN.sub(lambda m: _mask_hex(m.group(0), windows), text)
    spans = _covered(text, windows)
    if not spans:
        return text
    parts = []
    last = 0
    for start, end in spans:
        parts += [text[last:start], MASK]
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _covered(text: str, windows: dict[str, int]) -> list[tuple[int, int]]:
    """The runs of ``text`` covered by windows of a registered token, merged."""
    spans: list[tuple[int, int]] = []
    start = end = -1
    for i in range(len(text) - FRAGMENT + 1):
        if text[i : i + FRAGMENT] in windows:
            if i <= end:
                end = i + FRAGMENT
            else:
                if end >= 0:
                    spans.append((start, end))
                start, end = i, i + FRAGMENT
    if end >= 0:
        spans.append((start, end))
    return spans


def _mask_hex(dump: str, windows: dict[str, int]) -> str:
    """Mask a hex dump (``"65 79 4a …"``) if its bytes hold a piece of a token."""
    decoded = bytes.fromhex(dump).decode("latin-1")
    return MASK if _covered(decoded, windows) else dump


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that redacts the formatted message of every record it passes on."""

    def __init__(
        self, logger: logging.Logger, *, quiet: tuple[str, ...] = (), info_is_debug: bool = False
    ) -> None:
        super().__init__(logger, {})
        self._quiet = quiet
        self._info_is_debug = info_is_debug

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Format, redact, then log (only when the level is enabled: no cost otherwise).

        Messages starting with one of the ``quiet`` prefixes are demoted to DEBUG; with
        ``info_is_debug`` every INFO record is (python-socketio and engine.io log each
        packet, with its data, at INFO).
        """
        if level == logging.INFO and self._info_is_debug:
            level = logging.DEBUG
        if self._quiet and level > logging.DEBUG and str(msg).startswith(self._quiet):
            level = logging.DEBUG
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        exc_info = kwargs.pop("exc_info", None)
        if exc_info:
            # The exception's text may be a peer's data: formatted here, redacted
            # with the message (a handler would format it unredacted).
            if isinstance(exc_info, BaseException):
                text += "\n" + "".join(traceback.format_exception(exc_info)).rstrip()
            else:
                info = sys.exc_info() if exc_info is True else exc_info
                if info[0] is not None:
                    text += "\n" + "".join(traceback.format_exception(*info)).rstrip()
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, redact(text), **kwargs)

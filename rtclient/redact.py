"""Keeping tokens out of logs.

rtclient never formats a token into a message or an exception. The libraries
underneath may: websockets logs request headers (``Authorization: Bearer …``) and
frames (a ``token:refresh`` payload) at DEBUG level. Their logger is wrapped in
:class:`RedactingLogger`, which formats each record and masks anything that looks like
a credential before it reaches a handler.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["RedactingLogger", "redact"]

_PATTERNS = (
    # JWTs: three base64url parts, the first of which starts with {" → "eyJ".
    re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"),
    re.compile(r"(?i)(authorization:?\s*(?:bearer\s+)?)\S+"),
    re.compile(
        r"""(?i)("(?:token|access_token|password)"\s*:\s*"|(?:token|password)=)[^"\s,&}]+"""
    ),
)
MASK = "[redacted]"


def redact(text: str) -> str:
    """Return ``text`` with anything that looks like a credential replaced by a mask."""
    text = _PATTERNS[0].sub(MASK, text)
    for pattern in _PATTERNS[1:]:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that redacts the formatted message of every record it passes on."""

    def __init__(self, logger: logging.Logger, *, quiet: tuple[str, ...] = ()) -> None:
        super().__init__(logger, {})
        self._quiet = quiet

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Format, redact, then log (only when the level is enabled: no cost otherwise).

        Messages starting with one of the ``quiet`` prefixes are demoted to DEBUG.
        """
        if self._quiet and level > logging.DEBUG and str(msg).startswith(self._quiet):
            level = logging.DEBUG
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, redact(text), **kwargs)

"""The one parser of a server's "wait before you try again" hints.

A server (or a proxy in front of it) can ask the client to wait in three places:

- an HTTP ``Retry-After`` header on a refused upgrade (RFC 9110 §10.2.3: delta-seconds
  or an HTTP-date);
- ``retryAfter=<seconds>`` in a close frame's reason (close 1013 "try again later");
- ``retryAfter`` in an error reply (``RATE_LIMIT``), a JSON number.

Every one of them goes through :func:`parse_delay`, and every delay the client then
obeys is capped by :func:`capped` with the client's ``max_server_delay`` (see
:class:`rtclient.Client`). What is not a finite, non-negative number of seconds (``inf``,
``nan``, ``-5``, ``1e999``, ``"soon"``, ``true``) is ignored: the client falls back to its
own backoff, it never believes a hint it cannot read.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from email.utils import parsedate_to_datetime

__all__ = ["DEFAULT_MAX_SERVER_DELAY", "capped", "parse_delay", "reason_delay"]

DEFAULT_MAX_SERVER_DELAY = 60.0
"""The longest a server can make the client wait, unless ``max_server_delay`` says so."""

_DELTA = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
_IN_REASON = re.compile(r"retryAfter=([^\s;,&]*)")


def parse_delay(value: object, *, now: float | None = None) -> float | None:
    """A server's delay hint in seconds, or None when absent or not believable.

    ``value`` is a JSON number (an ack's ``retryAfter``), or a string: delta-seconds
    (``"120"``, ``"0.5"``) or, when ``now`` (epoch seconds) is given, an HTTP-date
    (``"Wed, 21 Oct 2026 07:28:00 GMT"``; a date in the past means 0). Not capped:
    see :func:`capped`.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range
            return None
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _DELTA.fullmatch(text):
        return float(text)
    if now is None or not text:
        return None
    try:
        when: datetime = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None  # RFC 9110 dates are GMT; one without a zone is not an HTTP-date
    return max(0.0, when.timestamp() - now)


def reason_delay(reason: str) -> float | None:
    """The ``retryAfter=<seconds>`` hint in a close reason (None without a readable one)."""
    match = _IN_REASON.search(reason)
    return parse_delay(match.group(1)) if match else None


def capped(hint: float | None, cap: float) -> float | None:
    """``hint`` no longer than ``cap`` (None stays None)."""
    return None if hint is None else min(hint, cap)

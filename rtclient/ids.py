"""Client-made message ids: UUIDv7 (RFC 9562), unique across processes and time-ordered.

The millisecond timestamp leads, so ids sort by creation time; the rest is random,
so two processes never make the same id. ``uuid.uuid7`` is in the standard library
from Python 3.14; before that the ``uuid6`` package provides the same function.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 14):  # pragma: no cover - depends on the interpreter
    from uuid import uuid7
else:  # pragma: no cover - depends on the interpreter
    from uuid6 import uuid7

__all__ = ["new_message_id"]


def new_message_id() -> str:
    """Return a fresh message id (36 characters, time-ordered)."""
    return str(uuid7())

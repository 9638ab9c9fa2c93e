"""Warnings about what the peer sent, bounded however much it sends.

A server that floods malformed frames or broken sync pages must not flood the
application's log as well. Each kind of complaint is logged at WARNING for its first
:data:`FIRST` occurrences and then only when its count reaches a power of two (with the
count, so nothing is hidden: ``stats()`` has the exact figures); the others go to DEBUG.
Counting, not a clock, keeps this usable from the sans-I/O session: a flood of N frames
costs about ``FIRST + log2(N)`` warnings.

A message can quote the peer's text, which may hold lone surrogates (a JSON string
``"\\ud800"`` decodes to one): they are written as ``\\ud800``, so a handler that writes
UTF-8 strictly (a ``FileHandler(encoding="utf-8")``) does not fail on the record.
"""

from __future__ import annotations

import logging
from collections import Counter

FIRST = 10
"""How many complaints of one kind are always logged at WARNING."""


class PeerLog:
    """Logs complaints about the peer, each kind throttled by its count."""

    __slots__ = ("_counts", "_log")

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._counts: Counter[str] = Counter()

    def warn(self, kind: str, message: str) -> None:
        """Log ``message`` at WARNING unless ``kind`` has been seen too often lately."""
        self._counts[kind] += 1
        n = self._counts[kind]
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        if n <= FIRST:
            self._log.warning("%s", message)
        elif n & (n - 1) == 0:
            self._log.warning("%s (%d of this kind so far)", message, n)
        else:
            self._log.debug("%s", message)

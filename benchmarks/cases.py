"""The suite's cases, by name: the table ``python -m benchmarks --only NAME`` picks from.

A case is an async function that measures, adds :class:`~benchmarks.results.Row` s
(with a :class:`~benchmarks.results.Target` where there is one) through its
:class:`~benchmarks.context.Context`, and fills its own field of the details. To add a
case, write the function next to what it measures and add one entry here:

- :class:`OnServer` for a function ``(ctx, server)``: it runs against the suite's
  shared benchmark server (``benchmarks.server``, one process for all such cases, which
  run first, in table order);
- :class:`Local` for a function ``(ctx)`` that needs no server (run afterwards).

``quick=False`` leaves a case out of ``--quick`` runs of every case (``--only`` still
runs it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from . import codecs, memory, profiling, recovery, scale, store, throughput
from .context import Context
from .harness import ServerProcess

__all__ = ["CASES", "Case", "Local", "OnServer", "select"]


@dataclass(frozen=True)
class OnServer:
    """A case measured against the shared benchmark server."""

    run: Callable[[Context, ServerProcess], Awaitable[None]]
    quick: bool = True


@dataclass(frozen=True)
class Local:
    """A case that starts what it needs itself (or needs nothing)."""

    run: Callable[[Context], Awaitable[None]]
    quick: bool = True


Case = OnServer | Local

CASES: Mapping[str, Case] = {
    "send": OnServer(throughput.send),
    "receive": OnServer(throughput.receive),
    "socketio": OnServer(throughput.socketio),
    "recovery": OnServer(recovery.case),
    "memory": OnServer(memory.case),
    "codecs": Local(codecs.case),
    "store": Local(store.case),
    "scale": Local(scale.case),
    "profile": OnServer(profiling.case, quick=False),
}


def select(cases: Mapping[str, Case], only: set[str], quick: bool) -> list[str]:
    """The names to run, in table order: ``only``, else every case (that runs in ``quick``)."""
    if only:
        return [name for name in cases if name in only]
    return [name for name, case in cases.items() if case.quick or not quick]

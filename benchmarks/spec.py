"""What crosses the process boundary to a worker: its spec and its result.

The suite runs ``python -m benchmarks.worker '<WorkerSpec as JSON>'``; the worker prints
its :class:`WorkerResult` as JSON on its last line of stdout. Both are TypedDicts: they
are JSON on the way and plain dicts on both sides.
"""

from __future__ import annotations

from typing import Literal, NotRequired, Required, TypedDict

__all__ = ["Kind", "Transport", "WorkerResult", "WorkerSpec"]

Transport = Literal["websocket", "aiohttp", "socketio"]
"""rtclient's built-in transports (``Client(transport=...)``)."""

Kind = Literal[
    "send_rt",
    "send_rt_nowait",
    "send_ws",
    "send_rt_sio",
    "send_rt_aio",
    "send_sio",
    "send_aio",
    "recv_rt",
    "recv_rt_aio",
    "recv_rt_sio",
    "recv_ws",
    "recv_aio",
    "recv_sio",
    "idle_rt",
    "idle_rt_aio",
    "idle_ws",
]
"""One measurement a worker can make (``benchmarks.worker.KINDS`` maps each to its code)."""


class WorkerSpec(TypedDict, total=False):
    """One worker's task. The suite adds the server's addresses to a case's spec."""

    kind: Required[Kind]
    url: str
    """The server's raw WebSocket URL."""
    http: str
    """The server's HTTP root (Socket.IO)."""
    control_port: int
    """The server's loopback control port (``flood``)."""
    n: int
    """Messages to send or receive."""
    window: int
    """Requests outstanding at once (send kinds)."""
    compression: bool
    """Negotiate permessage-deflate (default: on)."""
    transport: Transport
    """rtclient's ``transport=``; set by the ``*_aio`` / ``*_sio`` kinds."""
    clients: int
    """Idle connections to open (idle kinds)."""
    tracemalloc: bool
    """Trace Python allocations too, and report the largest sites (idle kinds)."""


class WorkerResult(TypedDict):
    """What a worker measured: ``count`` in ``seconds`` (wall) using ``cpu`` (seconds)."""

    count: int
    seconds: float
    cpu: float
    extensions: NotRequired[str]
    """The negotiated WebSocket extensions ("none", "?" when unknown)."""
    resent: NotRequired[int]
    """rtclient's ``stats()["resent"]`` after a send run."""
    server_seconds: NotRequired[float]
    """How long the server took to push a flood (receive kinds)."""
    rss_bytes: NotRequired[int]
    traced_bytes: NotRequired[int]
    connected_in: NotRequired[float]
    tasks: NotRequired[int]
    held: NotRequired[int]
    sites: NotRequired[list[tuple[str, int]]]
    """The largest allocation sites (tracemalloc), as (file:line, bytes)."""

"""One proxied TCP connection (a *link*): its pumps, its toxics and how it ends.

A link is two flows, upstream (client → server) and downstream (server → client).
Each flow is two tasks joined by a bounded queue of ``(release_time, chunk)``:

* the *reader* reads from the source, applies the toxics that act on arrival
  (blackhole, limit_data, latency stamps a release time) and queues the result;
* the *writer* waits for each release time, then applies the toxics that act on
  delivery (slicer, bandwidth, slow_close) and writes to the destination.

One FIFO queue and one writer per flow mean jitter cannot reorder bytes; release times are
also kept monotone, so no chunk falls due before the one ahead of it. Backpressure is the
streams' own: a slow destination blocks ``drain()``, the queue fills, the reader
stops reading, and asyncio pauses the source socket.

All tasks of a link live in one ``asyncio.TaskGroup`` inside :meth:`Link.run`; ending the
link (``stop()``) raises ``_Stop`` in a watcher task, which cancels the pumps, and the
sockets are closed in ``finally``. Socket errors never leave the link: a peer's RST is
counted and passed on as an RST to the other peer; any other ``OSError`` closes both.
"""

from __future__ import annotations

import asyncio
import enum
import random
import socket
import struct
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Literal

from .toxics import (
    Bandwidth,
    Blackhole,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    Stream,
    TokenBucket,
    Toxic,
    latency_delay,
    slice_sizes,
)

__all__ = ["Link", "ProxyStats", "Side"]

Side = Literal["client", "server"]
"""A peer of the proxy: the client connected to it, or the upstream server."""

_READ_SIZE = 64 * 1024
_QUEUE_CHUNKS = 64  # per flow; with _READ_SIZE, at most 4 MiB held per direction


@dataclass
class ProxyStats:
    """Counters of a FaultProxy since it was created (``proxy.stats`` returns a copy)."""

    connections_total: int = 0
    """Client connections accepted."""
    upstream_failures: int = 0
    """Accepted connections whose upstream could not be reached (closed at once)."""
    bytes_upstream: int = 0
    """Bytes delivered to the server."""
    bytes_downstream: int = 0
    """Bytes delivered to clients."""
    bytes_dropped: int = 0
    """Bytes swallowed by blackholes or cut off by limit_data."""
    peer_resets: int = 0
    """Connection resets received from a client or the server."""
    resets_sent: int = 0
    """Sockets closed with RST by the proxy (reset_peer, ``down(reset=True)``, passed-on RSTs)."""
    toxics_applied: int = 0
    """Times a toxic was put on a connection (its toxicity draw said yes)."""


class _Signal(enum.Enum):
    EOF = "eof"  # the source half-closed: half-close the destination
    CUT = "cut"  # limit_data reached: close the whole link


class _Stop(Exception):
    """Raised inside the link's task group to end it."""


_Item = tuple[float, bytes | _Signal]


class _Flow:
    """State of one direction of a link."""

    def __init__(self, stream: Stream) -> None:
        self.stream: Stream = stream
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=_QUEUE_CHUNKS)
        self.floor = 0.0  # last release time queued
        self.limits: dict[object, int] = {}  # LimitData key -> bytes still allowed
        self.buckets: dict[object, TokenBucket] = {}
        self.closed = False  # EOF delivered to the destination


def _reset_on_close(writer: asyncio.StreamWriter) -> None:
    """Make the coming close of this socket send RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _sleep_until(deadline: float) -> None:
    left = deadline - asyncio.get_running_loop().time()
    if left > 0:
        await asyncio.sleep(left)


class Link:
    """One client connection and its upstream; owned and driven by FaultProxy.

    The proxy calls :meth:`attach` / :meth:`detach` as toxics come and go (keys are the
    proxy's handles), :meth:`stop` to end the link, and awaits :meth:`run` in a task.
    """

    def __init__(
        self,
        ident: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        *,
        upstream: tuple[str, int],
        stats: ProxyStats,
        rng: random.Random,
    ) -> None:
        self.id = ident
        self._client = client
        self._server: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._upstream = upstream
        self._stats = stats
        self._rng = rng
        self._toxics: dict[object, Toxic] = {}
        self._reset_timers: dict[object, asyncio.Task[None]] = {}
        self._flows = {"upstream": _Flow("upstream"), "downstream": _Flow("downstream")}
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._rst: set[Side] = set()
        self._changed = asyncio.Event()

    # -- called by the proxy ---------------------------------------------------------------

    def attach(self, key: object, toxic: Toxic) -> None:
        """Put ``toxic`` on this link from now on."""
        self._toxics[key] = toxic
        if isinstance(toxic, ResetPeer) and self._server is not None:
            self._arm_reset(key, toxic)
        self._signal_change()

    def detach(self, key: object) -> None:
        """Take the toxic ``key`` off this link (no-op if it is not on it)."""
        if self._toxics.pop(key, None) is None:
            return
        timer = self._reset_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        for flow in self._flows.values():
            flow.limits.pop(key, None)
            flow.buckets.pop(key, None)
        self._signal_change()

    def stop(self, rst: Iterable[Side] = ()) -> None:
        """End the link soon; the peers in ``rst`` get an RST, the others a plain close."""
        self._rst.update(rst)
        self._stopping.set()

    async def run(self) -> None:
        """Dial the upstream, pump both flows until :meth:`stop`, then close both sockets."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._watch_stop())
                tg.create_task(self._dial(tg))
        except* _Stop:
            pass
        finally:
            self._tg = None
            await self._close()

    # -- lifecycle -------------------------------------------------------------------------

    async def _watch_stop(self) -> None:
        await self._stopping.wait()
        raise _Stop

    async def _dial(self, tg: asyncio.TaskGroup) -> None:
        try:
            self._server = await asyncio.open_connection(*self._upstream)
        except OSError:
            self._stats.upstream_failures += 1
            self.stop()
            return
        ends = {
            "upstream": (self._client, self._server),
            "downstream": (self._server, self._client),
        }
        for name, flow in self._flows.items():
            (src, _), (_, dst) = ends[name]
            tg.create_task(self._read_loop(flow, src))
            tg.create_task(self._write_loop(flow, dst))
        for key, toxic in list(self._toxics.items()):
            if isinstance(toxic, ResetPeer):
                self._arm_reset(key, toxic)

    def _arm_reset(self, key: object, toxic: ResetPeer) -> None:
        receivers: dict[str, tuple[Side, ...]] = {
            "downstream": ("client",),
            "upstream": ("server",),
            "both": ("client", "server"),
        }
        sides = receivers[toxic.direction]
        if toxic.after == 0:
            self.stop(rst=sides)
        elif self._tg is not None and not self._stopping.is_set():
            self._reset_timers[key] = self._tg.create_task(self._reset_later(toxic.after, sides))

    async def _reset_later(self, after_ms: float, sides: tuple[Side, ...]) -> None:
        await asyncio.sleep(after_ms / 1000.0)
        self.stop(rst=sides)

    async def _close(self) -> None:
        writers: list[asyncio.StreamWriter] = []
        for side, pair in (("client", self._client), ("server", self._server)):
            if pair is None:
                continue
            writer = pair[1]
            if side in self._rst:
                _reset_on_close(writer)
                self._stats.resets_sent += 1
            # abort, not close: whatever is still buffered was cut off by this very close.
            writer.transport.abort()
            writers.append(writer)
        for writer in writers:
            with suppress(OSError):
                await writer.wait_closed()

    def _peer_failed(self, peer: Side, exc: OSError) -> None:
        if isinstance(exc, ConnectionResetError):
            self._stats.peer_resets += 1
            self.stop(rst=["server" if peer == "client" else "client"])
        else:
            self.stop()

    def _signal_change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _active(self, flow: _Flow) -> list[tuple[object, Toxic]]:
        return [(k, t) for k, t in self._toxics.items() if t.acts_on(flow.stream)]

    # -- reader side -----------------------------------------------------------------------

    async def _read_loop(self, flow: _Flow, src: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await src.read(_READ_SIZE):
                data, delay, cut = self._on_arrival(flow, data)
                if data:
                    flow.floor = max(loop.time() + delay, flow.floor)
                    await flow.queue.put((flow.floor, data))
                if cut:
                    await flow.queue.put((flow.floor, _Signal.CUT))
                    return
        except OSError as exc:
            self._peer_failed("client" if flow.stream == "upstream" else "server", exc)
            return
        await self._hold_while_blackholed(flow)
        await flow.queue.put((flow.floor, _Signal.EOF))

    def _on_arrival(self, flow: _Flow, data: bytes) -> tuple[bytes, float, bool]:
        """Apply blackhole, limit_data and latency; return (data to queue, delay, cut)."""
        active = self._active(flow)
        if any(isinstance(t, Blackhole) for _, t in active):
            self._stats.bytes_dropped += len(data)
            return b"", 0.0, False
        delay, cut = 0.0, False
        for key, toxic in active:
            if isinstance(toxic, LimitData):
                allowed = flow.limits.setdefault(key, toxic.n_bytes)
                if len(data) >= allowed:
                    self._stats.bytes_dropped += len(data) - allowed
                    data, cut = data[:allowed], True
                flow.limits[key] = allowed - len(data)
            elif isinstance(toxic, Latency):
                delay += latency_delay(toxic, self._rng)
        return data, delay, cut

    async def _hold_while_blackholed(self, flow: _Flow) -> None:
        """A close is data too: a blackhole keeps it back until it is removed."""
        while True:
            changed = self._changed
            if not any(isinstance(t, Blackhole) for _, t in self._active(flow)):
                return
            await changed.wait()

    # -- writer side -----------------------------------------------------------------------

    async def _write_loop(self, flow: _Flow, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                release, item = await flow.queue.get()
                await _sleep_until(release)
                if item is _Signal.CUT:
                    self.stop()
                    return
                if item is _Signal.EOF:
                    await self._deliver_eof(flow, dst)
                    return
                await self._deliver(flow, dst, item)
        except OSError as exc:
            self._peer_failed("server" if flow.stream == "upstream" else "client", exc)

    async def _deliver_eof(self, flow: _Flow, dst: asyncio.StreamWriter) -> None:
        delay = max((t.delay for _, t in self._active(flow) if isinstance(t, SlowClose)), default=0)
        if delay:
            await asyncio.sleep(delay / 1000.0)
        if dst.can_write_eof():
            dst.write_eof()
        flow.closed = True
        if all(f.closed for f in self._flows.values()):
            self.stop()

    async def _deliver(self, flow: _Flow, dst: asyncio.StreamWriter, data: bytes) -> None:
        active = self._active(flow)
        slicer = next((t for _, t in active if isinstance(t, Slicer)), None)
        buckets = [
            flow.buckets.setdefault(k, TokenBucket(t.bytes_per_second, self._now()))
            for k, t in active
            if isinstance(t, Bandwidth)
        ]
        sizes = slice_sizes(len(data), slicer, self._rng) if slicer else [len(data)]
        step = min((b.piece_size for b in buckets), default=len(data))
        offset = 0
        for i, size in enumerate(sizes):
            if i and slicer is not None and slicer.delay:
                await asyncio.sleep(slicer.delay / 1000.0)
            for start in range(offset, offset + size, step):
                part = data[start : min(start + step, offset + size)]
                for bucket in buckets:
                    now = self._now()
                    await _sleep_until(now + bucket.reserve(len(part), now))
                dst.write(part)
                await dst.drain()
                if flow.stream == "upstream":
                    self._stats.bytes_upstream += len(part)
                else:
                    self._stats.bytes_downstream += len(part)
            offset += size

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

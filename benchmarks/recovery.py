"""Recovery cases: how long until a client is back after the connection goes away.

Two situations, each measured from the moment the suite acts (client-side clock):

- **drop**: the server stays up and aborts every TCP connection (``drop_connections``:
  no close frame). rtclient is timed to *fully recovered*: state CONNECTED again, the
  room rejoined and synced, and the messages queued while offline acknowledged
  (``stats()["queued"] == 0``). The baselines are timed to *merely connected*:
  websockets' own reconnect loop (``async for ws in websockets.connect(...)``) to the
  next yielded connection, python-socketio's own reconnection to its ``connect``
  event. Each client is measured alone (one at a time).
- **restart**: the server process is killed (SIGKILL) and a new one started on the same
  port (a new epoch: rtclient reports a gap and syncs). All clients are connected at
  once and timed from the kill; the server's own start-up time is reported with them.

rtclient runs with ``Backoff(stable_after=0.5)``: after a connection that stayed up
``stable_after`` seconds drops, the first attempt goes out after ``uniform(0,
first_delay)`` (50 ms); the default ``stable_after`` is 10 s, which would need 10 s of
idle time before every drop. Everything else is the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
import websockets
from websockets.exceptions import ConnectionClosed

from rtclient import Backoff, Client
from rtclient.events import ConnectionState

from .context import Context
from .harness import ServerProcess, Token, median, percentile
from .results import RecoveryDetails, Row, at_most

ROOM = "bench"
STABLE = 0.5
QUEUED_WHILE_OFFLINE = 5
TIMEOUT = 20.0


@dataclass
class Probe:
    """One client under test: ``arm()`` before the fault, ``back()`` returns when recovered."""

    name: str
    goal: str
    arm: Callable[[], Awaitable[None]]
    back: Callable[[], Awaitable[float]]
    close: Callable[[], Awaitable[None]]
    times: list[float] = field(default_factory=list)


async def rt_probe(server: ServerProcess, user: str = "rt") -> Probe:
    client = Client(
        server.ws_url, token=Token()(user), ping_interval=None, backoff=Backoff(stable_after=STABLE)
    )
    await client.connect()
    await client.join(ROOM)
    lost: asyncio.Task[None] | None = None

    async def arm() -> None:
        nonlocal lost
        lost = asyncio.create_task(
            client.wait_for(ConnectionState.RECONNECTING, ConnectionState.CONNECTING)
        )
        await asyncio.sleep(0)

    async def back() -> float:
        assert lost is not None
        await lost
        for _ in range(QUEUED_WHILE_OFFLINE):
            client.send_nowait(ROOM, "queued while offline")
        await client.wait_for(ConnectionState.CONNECTED)
        # Polls the public stats(): 0.5 ms of resolution, no private hook.
        while client.stats()["queued"]:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        return time.monotonic()

    async def close() -> None:
        if lost is not None:
            lost.cancel()
        await client.close(flush=False)

    return Probe("rtclient", "fully recovered", arm, back, close)


async def ws_probe(server: ServerProcess) -> Probe:
    """websockets' own reconnection: ``async for ws in connect(...)``, library defaults."""
    connected = asyncio.Event()
    stamps: list[float] = []
    headers = {"Authorization": f"Bearer {Token()('ws')}"}

    async def loop() -> None:
        async for ws in websockets.connect(
            server.ws_url, additional_headers=headers, ping_interval=None
        ):
            stamps.append(time.monotonic())
            connected.set()
            try:
                async for _ in ws:
                    pass
            except ConnectionClosed:
                continue

    task = asyncio.create_task(loop())
    async with asyncio.timeout(TIMEOUT):
        await connected.wait()

    async def arm() -> None:
        connected.clear()

    async def back() -> float:
        await connected.wait()
        return stamps[-1]

    async def close() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return Probe("websockets", "connected", arm, back, close)


async def sio_probe(server: ServerProcess, name: str, **options: Any) -> Probe:
    """python-socketio's own reconnection (WebSocket transport, like rtclient's)."""
    sio = socketio.AsyncClient(reconnection=True, **options)
    connected = asyncio.Event()
    stamps: list[float] = []

    def on_connect() -> None:
        stamps.append(time.monotonic())
        connected.set()

    sio.on("connect", on_connect)
    await sio.connect(server.http_url, auth={"token": Token()("sio")}, transports=["websocket"])
    async with asyncio.timeout(TIMEOUT):
        await connected.wait()

    async def arm() -> None:
        connected.clear()

    async def back() -> float:
        await connected.wait()
        return stamps[-1]

    async def close() -> None:
        with contextlib.suppress(Exception):
            await sio.disconnect()

    return Probe(name, "connected", arm, back, close)


PROBES: dict[str, Callable[[ServerProcess], Awaitable[Probe]]] = {
    "rtclient": rt_probe,
    "websockets": ws_probe,
    "python-socketio (defaults)": lambda s: sio_probe(s, "python-socketio (defaults)"),
    "python-socketio (delay 50 ms)": lambda s: sio_probe(
        s, "python-socketio (delay 50 ms)", reconnection_delay=0.05
    ),
}


async def _timed(probe: Probe, start: float) -> None:
    try:
        async with asyncio.timeout(TIMEOUT):
            probe.times.append(await probe.back() - start)
    except TimeoutError:
        probe.times.append(float("inf"))


async def drop(server: ServerProcess, runs: int) -> list[Probe]:
    """Each client alone: ``runs`` drops with the server up."""
    done: list[Probe] = []
    for make in PROBES.values():
        probe = await make(server)
        try:
            for _ in range(runs):
                await asyncio.sleep(STABLE + 0.15)  # a stable connection before each drop
                await probe.arm()
                start = time.monotonic()
                await server.command("drop")
                await _timed(probe, start)
        finally:
            await probe.close()
        done.append(probe)
    return done


async def herd(server: ServerProcess, clients: int) -> list[float]:
    """``clients`` rtclients, one drop: when each was fully recovered (seconds)."""
    probes = [await rt_probe(server, f"herd-{i}") for i in range(clients)]
    try:
        await asyncio.sleep(STABLE + 0.15)
        for probe in probes:
            await probe.arm()
        start = time.monotonic()
        await server.command("drop")
        await asyncio.gather(*(_timed(p, start) for p in probes))
    finally:
        await asyncio.gather(*(p.close() for p in probes), return_exceptions=True)
    return sorted(p.times[0] for p in probes)


async def restart(server: ServerProcess, runs: int) -> tuple[list[Probe], list[float]]:
    """Every client at once: ``runs`` crashes and restarts of the server process."""
    probes: list[Probe] = []
    started: list[float] = []
    try:
        for make in PROBES.values():
            probes.append(await make(server))
        for _ in range(runs):
            await asyncio.sleep(STABLE + 0.15)
            for probe in probes:
                await probe.arm()
            start = time.monotonic()
            waits = [asyncio.create_task(_timed(p, start)) for p in probes]
            await server.restart()
            started.append(time.monotonic() - start)
            await asyncio.gather(*waits)
    finally:
        await asyncio.gather(*(p.close() for p in probes), return_exceptions=True)
    return probes, started


def summary(times: list[float]) -> dict[str, float]:
    return {
        "p50": median(times),
        "p90": percentile(times, 0.9),
        "min": min(times, default=float("nan")),
        "max": max(times, default=float("nan")),
    }


async def case(ctx: Context, server: ServerProcess) -> None:
    """The ``recovery`` case: a dropped connection (target: p50 <= 50 ms), a restart."""
    s = ctx.sizes
    ctx.say(f"recovery: {s.drop_runs} dropped connections, {s.restart_runs} server restarts")
    details = ctx.results.details.recovery = RecoveryDetails()
    dropped = await drop(server, s.drop_runs)
    details.drop = {p.name: p.times for p in dropped}
    rt = next(p for p in dropped if p.name == "rtclient")
    rt_p50 = median(rt.times)
    others = ", ".join(f"{p.name} {median(p.times) * 1000:.0f} ms" for p in dropped if p is not rt)
    ctx.row(
        Row(
            "recovery, dropped connection (server up), p50",
            f"{rt_p50 * 1000:.0f} ms to fully recovered",
            f"to merely connected: {others}",
            None,
            at_most(0.050, "≤ 50 ms"),
            measured=rt_p50,
        )
    )
    if s.herd:
        spread = await herd(server, s.herd)
        details.herd = spread
        ctx.say(
            f"  {s.herd} rtclients, one drop: fully recovered after "
            f"{spread[0] * 1000:.0f}..{spread[-1] * 1000:.0f} ms "
            f"(p50 {median(spread) * 1000:.0f} ms)"
        )
    # Its own server: a crash must not disturb the other cases' server.
    async with ServerProcess() as crashing:
        probes, started = await restart(crashing, s.restart_runs)
    details.restart = {p.name: p.times for p in probes}
    details.restart_server_start = started
    rt = next(p for p in probes if p.name == "rtclient")
    others = ", ".join(f"{p.name} {median(p.times) * 1000:.0f} ms" for p in probes if p is not rt)
    ctx.row(
        Row(
            "recovery, server process killed and restarted, p50",
            f"{median(rt.times) * 1000:.0f} ms to fully recovered",
            f"to merely connected: {others}",
            None,
            note=f"the new server process was listening after {median(started) * 1000:.0f} ms",
        )
    )

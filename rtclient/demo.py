"""``rtclient demo``: bots chat through a scripted storm; a report says what survived.

Starts a FakeServer and a FaultProxy in this process, connects a few bots through the
proxy (one over Socket.IO), lets them chat in two rooms, and breaks things on a
schedule: a network drop, a half-open link that only the heartbeat notices, a latency
spike the quality tracker reports, a server restart, and every token expiring. Progress
lines show what the clients do; the closing table counts what was sent, acknowledged,
delivered, lost and doubled (checked by :mod:`rtclient.testing.chaos`). The exit status
is 0 only when nothing was lost, doubled, reordered or skipped unannounced.

Run ``rtclient demo`` or ``python -m rtclient.demo [--seconds 25] [--seed 1] [--bots 3]
[--quiet]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO

from .backoff import Backoff
from .events import ConnectionState
from .testing.chaos import (
    Acked,
    Announced,
    Delivered,
    Lab,
    LabConfig,
    QualityMoved,
    Report,
    Sent,
    StateMoved,
    calm,
    check,
    percentile,
    recovery_times,
)

__all__ = ["main"]

_NOISY = ("rtclient", "fake_server", "engineio", "socketio", "websockets", "aiohttp")
Step = Callable[[Lab], Awaitable[str | None]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return 0 when nothing was lost or doubled, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="rtclient demo", description="bots chat through a scripted network storm"
    )
    parser.add_argument("--seconds", type=float, default=25.0, help="length of the storm")
    parser.add_argument("--seed", type=int, default=1, help="seed of the bots and the proxy")
    parser.add_argument("--bots", type=int, default=3, help="how many bots (one on Socket.IO)")
    parser.add_argument("--quiet", action="store_true", help="print the report only")
    args = parser.parse_args(argv)
    if args.bots < 2 or args.seconds < 4:
        parser.error("the demo needs --bots >= 2 and --seconds >= 4")
    levels = {name: logging.getLogger(name).level for name in _NOISY}
    for name in _NOISY:  # the progress lines say what these loggers would
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return asyncio.run(Demo(args.seconds, args.seed, args.bots, args.quiet).run())
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class Demo:
    """One demo run: the lab, the storm script and the printing."""

    def __init__(
        self, seconds: float, seed: int, bots: int, quiet: bool, out: TextIO | None = None
    ) -> None:
        self.seconds, self.seed, self.quiet = seconds, seed, quiet
        self.out = out or sys.stdout
        self.config = LabConfig(
            bots=bots,
            rooms=2,
            seed=seed,
            socketio=(1,),
            ping_interval=0.25,
            ping_timeout=0.6,
            ack_timeout=2.0,
            connect_timeout=2.0,
            backoff=Backoff(base=0.4, cap=2.0, first_delay=0.4, stable_after=1.0),
        )
        self.started = time.monotonic()
        self._lost_at: dict[str, float] = {}

    def say(self, text: str, *, always: bool = False) -> None:
        if always or not self.quiet:
            print(text, file=self.out, flush=True)

    def stamp(self, text: str) -> None:
        self.say(f"[{time.monotonic() - self.started:5.1f}s] {text}")

    async def run(self) -> int:
        c = self.config
        self.say(
            f"rtclient demo: {c.bots} bots ({c.bots - 1} WebSocket, 1 Socket.IO) in "
            f"{c.rooms} rooms through a FaultProxy, {self.seconds:g} s of storm, seed {self.seed}"
        )
        lab = Lab(c)
        lab.history.listeners.append(self._progress)
        async with lab:
            self.started = time.monotonic()
            self.stamp(f"server {lab.server.ws_url}, proxy {lab.proxy.url('ws', '/ws')}")
            stop = asyncio.Event()
            senders = lab.start_senders(stop, rate=8.0)
            ticker = asyncio.create_task(self._ticker(lab, stop))
            try:
                for at, what, step in self._script():
                    await self._until(at * self.seconds)
                    self.stamp(f"STORM: {what}")
                    if (outcome := await step(lab)) is not None:
                        self.stamp(f"STORM: {outcome}")
                await self._until(self.seconds)
            finally:
                stop.set()
                await senders
                await ticker
                await calm(lab)
            self.stamp("storm over: waiting for every ack and every room to catch up")
            settled = await lab.settle(timeout=15.0)
        report = check(lab.history)
        self.say(self._table(lab, report, settled), always=True)
        return 0 if report.ok and settled and not lab.leftover else 1

    def _script(self) -> list[tuple[float, str, Step]]:
        spike = max(2.0, 0.15 * self.seconds)
        return [
            (0.10, "network drop: the server aborts every TCP connection", _drop),
            (0.22, "half-open link: bytes vanish, sockets stay open", _half_open),
            (0.40, f"latency spike: +200±40 ms each way for {spike:.1f} s", _latency(spike)),
            (0.62, "server restart: 0.5 s down, log kept", _restart),
            (0.80, "token expiry: every token revoked (4002)", _expire_tokens),
        ]

    async def _until(self, offset: float) -> None:
        delay = self.started + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # the storm's schedule

    async def _ticker(self, lab: Lab, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(max(2.0, self.seconds / 6)):
                    await stop.wait()
            except TimeoutError:
                records = lab.history.records
                sent = sum(isinstance(r, Sent) for r in records)
                acked = sum(isinstance(r, Acked) for r in records)
                delivered = sum(isinstance(r, Delivered) for r in records)
                self.stamp(f"sent {sent}, acked {acked}, delivered {delivered}")

    def _progress(self, record: object) -> None:
        if isinstance(record, StateMoved):
            self._state(record)
        elif isinstance(record, QualityMoved):
            # The level is judged on the median; the p95 still holds the slow samples.
            figures = [
                f"{name} {value * 1000:.0f} ms"
                for name, value in (("median", record.p50), ("p95", record.p95))
                if value is not None
            ]
            if record.missed_ratio:
                figures.append(f"{record.missed_ratio:.0%} of pongs missed")
            why = f" ({', '.join(figures)})" if figures else ""
            self.stamp(f"{record.client}  quality {record.old} -> {record.new}{why}")
        elif isinstance(record, Announced):
            self.stamp(f"{record.client}  gap in {record.room}: {record.reason}")

    def _state(self, record: StateMoved) -> None:
        old, new, name = record.old.value, record.new.value, record.client
        if new == ConnectionState.RECONNECTING.value:
            self._lost_at.setdefault(name, record.at)
            why = f" ({record.reason})" if record.reason else ""
            delay = f", reconnecting in {record.delay:.2f} s" if record.delay is not None else ""
            self.stamp(f"{name}  {old} -> {new}{why}{delay}")
        elif new == ConnectionState.CONNECTED.value and name in self._lost_at:
            back = record.at - self._lost_at.pop(name)
            self.stamp(f"{name}  {old} -> {new} (back after {back:.2f} s)")
        elif new in (ConnectionState.CLOSED.value,) and record.reason:
            self.stamp(f"{name}  {old} -> {new}: {record.reason}")

    def _table(self, lab: Lab, report: Report, settled: bool) -> str:
        history = lab.history.records
        rows: list[tuple[object, ...]] = []
        head = (
            "bot",
            "transport",
            "sent",
            "acked",
            "delivered",
            "lost",
            "duplicated",
            "reconnects",
            "recovery p50",
            "recovery p95",
            "quality transitions",
        )
        for bot in lab.bots:
            name = bot.name
            times = recovery_times(lab.history, name)
            rows.append(
                (
                    name,
                    bot.transport,
                    sum(isinstance(r, Sent) and r.client == name for r in history),
                    sum(isinstance(r, Acked) and r.client == name for r in history),
                    sum(isinstance(r, Delivered) and r.client == name for r in history),
                    sum(a.client == name for a in report.of("lost")),
                    sum(a.client == name for a in report.of("duplicated")),
                    lab.final_stats.get(name, {}).get("reconnects", 0),
                    _seconds(percentile(times, 0.5)),
                    _seconds(percentile(times, 0.95)),
                    sum(isinstance(r, QualityMoved) and r.client == name for r in history),
                )
            )
        figures = lab.figures(report)
        rows.append(
            (
                "total",
                "",
                figures.sent,
                figures.acked,
                figures.delivered,
                figures.lost,
                figures.duplicated,
                figures.reconnects,
                _seconds(percentile(figures.recovery, 0.5)),
                _seconds(percentile(figures.recovery, 0.95)),
                figures.quality_transitions,
            )
        )
        cells = [[str(v) for v in row] for row in (head, *rows)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
        lines = ["", "report"]
        for n, row in enumerate(cells):
            lines.append(
                "  ".join(
                    v.ljust(w) if i < 2 else v.rjust(w)
                    for i, (v, w) in enumerate(zip(row, widths, strict=True))
                )
            )
            if n == 0 or n == len(cells) - 2:
                lines.append("  ".join("-" * w for w in widths))
        wall = time.monotonic() - self.started
        if report.ok and settled:
            lines.append(f"\nOK: nothing lost or duplicated ({wall:.1f} s)")
        else:
            lines.append(f"\nFAILED ({wall:.1f} s, settled={settled}): {report.describe()}")
        return "\n".join(lines)


async def _drop(lab: Lab) -> None:
    await lab.server.drop_connections()


async def _half_open(lab: Lab) -> str:
    started = time.monotonic()
    lost = (ConnectionState.RECONNECTING, ConnectionState.CLOSED)
    with lab.proxy.blackhole():
        try:
            async with asyncio.timeout(3 * lab.heartbeat_window):
                await asyncio.gather(*(bot.client.wait_for(*lost) for bot in lab.bots))
        except TimeoutError:
            return "the heartbeats did not notice the dead link in time"
    return f"every bot's heartbeat noticed the dead link within {time.monotonic() - started:.2f} s"


def _latency(seconds: float) -> Step:
    async def spike(lab: Lab) -> str:
        with lab.proxy.latency(200, 40, direction="both"):
            await asyncio.sleep(seconds)  # the spike's length
        return "latency back to normal"

    return spike


async def _restart(lab: Lab) -> None:
    await lab.server.restart(downtime=0.5, keep_log=True)


async def _expire_tokens(lab: Lab) -> None:
    await lab.server.expire_tokens()


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


if __name__ == "__main__":
    sys.exit(main())

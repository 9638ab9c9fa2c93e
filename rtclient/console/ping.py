"""``rtclient ping URL``: round-trip times of ``ping`` requests, then p50, p95 and a level.

Each sample is one ``ping`` request answered by the server's ack, timed on this side;
the level is what :class:`~rtclient.quality.QualityTracker` (the client's own judge)
makes of the samples: ``good`` < 100 ms, ``degraded`` < 300 ms, ``poor`` beyond or with
lost replies.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..backoff import Backoff
from ..client import Client
from ..errors import AckTimeout, RtClientError
from ..quality import QualityLevel, QualityTracker
from .auth import (
    UsageError,
    add_connection_arguments,
    check_credentials,
    make_client,
    urls_of,
)
from .auth import token_provider as token_source
from .render import describe_error

__all__ = ["PingSummary", "add_arguments", "ping", "run", "summarize"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``ping`` subcommand's arguments."""
    add_connection_arguments(parser)
    how_long = parser.add_mutually_exclusive_group()
    how_long.add_argument("--count", "-c", type=int, help="number of pings (default 5)")
    how_long.add_argument("--seconds", "-s", type=float, help="ping for this many seconds")
    parser.add_argument("--interval", "-i", type=float, default=1.0, help="seconds between pings")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply")
    parser.add_argument(
        "--give-up", type=float, default=10.0, metavar="S", help="stop connecting after S seconds"
    )


@dataclass(frozen=True, slots=True)
class PingSummary:
    """The figures of a run of pings; times in seconds (None without any reply)."""

    sent: int
    answered: int
    minimum: float | None
    p50: float | None
    p95: float | None
    maximum: float | None
    level: QualityLevel

    @property
    def lost(self) -> int:
        return self.sent - self.answered

    def lines(self) -> list[str]:
        """The summary as printed."""
        loss = 100.0 * self.lost / self.sent if self.sent else 0.0
        first = f"{self.sent} sent, {self.answered} answered, {self.lost} lost ({loss:.0f} %)"
        if self.answered:
            values = (self.minimum, self.p50, self.p95, self.maximum)
            figures = "/".join(f"{v * 1000:.2f}" for v in values if v is not None)
            return [first, f"rtt min/p50/p95/max = {figures} ms, level {self.level.value}"]
        return [first, f"level {self.level.value}"]


def summarize(rtts: Sequence[float | None]) -> PingSummary:
    """Figures for samples in order (None: no reply); p95 by nearest rank."""
    answered = sorted(r for r in rtts if r is not None)
    tracker = QualityTracker()
    for rtt in rtts:
        if rtt is None:
            tracker.missed()
        else:
            tracker.pong(rtt)
    if not answered:
        level = QualityLevel.POOR if rtts else QualityLevel.UNKNOWN
        return PingSummary(len(rtts), 0, None, None, None, None, level)
    p95 = answered[max(0, math.ceil(0.95 * len(answered)) - 1)]
    return PingSummary(
        len(rtts),
        len(answered),
        answered[0],
        statistics.median(answered),
        p95,
        answered[-1],
        tracker.level,
    )


async def ping(
    client: Client,
    *,
    count: int | None = 5,
    seconds: float | None = None,
    interval: float = 1.0,
    timeout: float = 5.0,
    write: Callable[[str], None] = print,
) -> PingSummary:
    """Connect, ping ``count`` times (or for ``seconds``), close; return the figures."""
    await client.connect()
    write(f"PING {client.endpoint} as {client.user_id}")
    rtts: list[float | None] = []
    started = time.monotonic()
    try:
        while True:
            if count is not None and len(rtts) >= count:
                break
            if seconds is not None and time.monotonic() - started >= seconds:
                break
            sent_at = time.monotonic()
            seq = len(rtts) + 1
            try:
                await client.request("ping", {"ts": time.time(), "seq": seq}, timeout=timeout)
            except AckTimeout:
                rtts.append(None)
                write(f"seq={seq} no reply within {timeout:g} s")
            else:
                rtt = time.monotonic() - sent_at
                rtts.append(rtt)
                write(f"seq={seq} rtt={rtt * 1000:.2f} ms")
            last = count is not None and len(rtts) >= count
            if not last:
                await asyncio.sleep(max(0.0, sent_at + interval - time.monotonic()))
    finally:
        await client.close(flush=False)
    summary = summarize(rtts)
    write(f"--- {client.endpoint} ping summary ---")
    for line in summary.lines():
        write(line)
    return summary


def run(args: argparse.Namespace) -> int:
    """Run ``rtclient ping``; returns the exit status (1 when nothing answered)."""
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    if (args.count is not None and args.count < 1) or args.interval < 0:
        print("rtclient ping: error: --count must be >= 1, --interval >= 0", file=sys.stderr)
        return 2
    try:
        source = token_source(args, urls_of(args))
        await check_credentials(source)
        client = make_client(
            args, source, backoff=Backoff(max_elapsed=args.give_up), ping_interval=None
        )
    except UsageError as exc:
        print(f"rtclient ping: error: {exc}", file=sys.stderr)
        return 2
    except RtClientError as exc:
        print(f"rtclient ping: {describe_error(exc)}", file=sys.stderr)
        return 1
    count = 5 if args.count is None and args.seconds is None else args.count
    try:
        summary = await ping(
            client, count=count, seconds=args.seconds, interval=args.interval, timeout=args.timeout
        )
    except RtClientError as exc:
        await client.close(flush=False)
        print(f"rtclient ping: {describe_error(exc)}", file=sys.stderr)
        return 1
    return 0 if summary.answered else 1

"""Throughput cases: ``send``, ``receive`` and ``socketio``, rtclient against bare clients.

Each case runs its worker specs ``repeats`` times, interleaved (rtclient, baseline,
rtclient, ...), keeps every run in the details and compares the best runs. The rows
against python-socketio (the issue's 1.8x and 3x targets) appear as soon as both sides
of a pair have been measured, whichever case measured them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .context import Context
from .harness import ServerProcess, median, run_worker, worker_spec
from .results import Row, Target, Throughput, at_least
from .spec import WorkerResult, WorkerSpec

__all__ = ["AIO", "receive", "send", "socketio"]

AIO = "transport='aiohttp'"
"""How the rows of rtclient on its aiohttp transport are labelled."""
WS = "websockets"
SIO_CALL = "python-socketio call()"
SIO_HANDLER = "python-socketio handler"


def _rate(runs: list[WorkerResult]) -> float:
    """The best run: on a shared machine, other load only ever slows a run down."""
    return float(max(r["count"] / r["seconds"] for r in runs))


def _cpu_us(runs: list[WorkerResult]) -> float:
    return float(min(r["cpu"] / r["count"] * 1e6 for r in runs))


def _busy(runs: list[WorkerResult]) -> float:
    return median([r["cpu"] / r["seconds"] for r in runs])


def _fmt_rate(rate: float) -> str:
    return f"{rate:,.0f} msg/s"


async def measure(ctx: Context, server: ServerProcess, kinds: dict[str, WorkerSpec]) -> None:
    """Run each worker spec ``repeats`` times, interleaved; keep every run in the details."""
    runs: dict[str, list[WorkerResult]] = {label: [] for label in kinds}
    for _ in range(ctx.sizes.repeats):
        for label, spec in kinds.items():
            runs[label].append(await run_worker(worker_spec(server, spec)))
    for label, got in runs.items():
        ctx.results.details.throughput[label] = Throughput(
            spec=kinds[label],
            rate=_rate(got),
            median=median([r["count"] / r["seconds"] for r in got]),
            cpu_us=_cpu_us(got),
            busy=_busy(got),
            rates=[r["count"] / r["seconds"] for r in got],
            extensions=got[-1].get("extensions", ""),
            server_seconds=[r.get("server_seconds") for r in got],
        )


@dataclass(frozen=True)
class Compare:
    """A row comparing two measurements by their best rate."""

    case: str
    subject: str
    baseline: str
    baseline_name: str = WS
    target: Target | None = None
    note: str = ""


def compare(ctx: Context, c: Compare) -> None:
    measured = ctx.results.details.throughput
    rt, base = measured[c.subject], measured[c.baseline]
    cpu = (
        f"client CPU per message {rt.cpu_us:.1f} vs {base.cpu_us:.1f} µs "
        f"({rt.cpu_us / base.cpu_us:.2f}x)"
    )
    ctx.row(
        Row(
            c.case,
            _fmt_rate(rt.rate),
            f"{c.baseline_name} {_fmt_rate(base.rate)}",
            rt.rate / base.rate,
            c.target,
            note=f"{c.note}; {cpu}" if c.note else cpu,
        )
    )


async def send(ctx: Context, server: ServerProcess) -> None:
    s = ctx.sizes
    ctx.say(f"send + ack: window 1 ({s.send_w1} msgs), window 64 ({s.send_w64} msgs)")
    w1, w64 = s.send_w1, s.send_w64
    await measure(
        ctx,
        server,
        {
            "send rt w1": {"kind": "send_rt", "n": w1, "window": 1},
            "send ws w1": {"kind": "send_ws", "n": w1, "window": 1},
            "send rt w64": {"kind": "send_rt", "n": w64, "window": 64},
            "send ws w64": {"kind": "send_ws", "n": w64, "window": 64},
            "send rt nowait w64": {"kind": "send_rt_nowait", "n": s.send_nowait, "window": 64},
            "send rt w64 plain": {"kind": "send_rt", "n": w64, "window": 64, "compression": False},
            "send ws w64 plain": {"kind": "send_ws", "n": w64, "window": 64, "compression": False},
            "send aio w64 plain": {"kind": "send_aio", "n": w64, "window": 64},
            "send rt w1 plain": {"kind": "send_rt", "n": w1, "window": 1, "compression": False},
            "send rta w1": {"kind": "send_rt_aio", "n": w1, "window": 1},
            "send rta w64": {"kind": "send_rt_aio", "n": w64, "window": 64},
            "send rta w64 plain": {
                "kind": "send_rt_aio",
                "n": w64,
                "window": 64,
                "compression": False,
            },
        },
    )
    for row in (
        Compare("send + ack, window 1", "send rt w1", "send ws w1", target=at_least(0.9)),
        Compare("send + ack, window 64", "send rt w64", "send ws w64", target=at_least(0.8)),
        Compare(
            "send + ack, window 64, compression off on both",
            "send rt w64 plain",
            "send ws w64 plain",
            target=at_least(0.8),
            note="without permessage-deflate: the libraries' own costs, nothing else",
        ),
        Compare(
            "ceiling: bare aiohttp vs bare websockets, send window 64, no compression",
            "send aio w64 plain",
            "send ws w64 plain",
            note="both bare; what an aiohttp transport could start from (the 'rtclient' "
            "column is aiohttp here)",
        ),
        Compare(f"send + ack, window 1, {AIO}", "send rta w1", "send ws w1", target=at_least(0.9)),
        Compare(
            f"send + ack, window 64, {AIO}", "send rta w64", "send ws w64", target=at_least(0.8)
        ),
        Compare(
            f"send + ack, window 64, {AIO}, compression off on both",
            "send rta w64 plain",
            "send ws w64 plain",
            target=at_least(0.8),
        ),
        Compare(
            "send_nowait, window 64",
            "send rt nowait w64",
            "send ws w64",
            note=f"{s.send_nowait} queued at once, then wait for every ack",
        ),
    ):
        compare(ctx, row)
    _against_socketio(ctx)


async def receive(ctx: Context, server: ServerProcess) -> None:
    n = ctx.sizes.receive
    ctx.say(f"receive: the server floods {n} chat:message into the room")
    await measure(
        ctx,
        server,
        {
            "recv rt": {"kind": "recv_rt", "n": n},
            "recv ws": {"kind": "recv_ws", "n": n},
            "recv rt plain": {"kind": "recv_rt", "n": n, "compression": False},
            "recv ws plain": {"kind": "recv_ws", "n": n, "compression": False},
            "recv aio plain": {"kind": "recv_aio", "n": n},
            "recv rta": {"kind": "recv_rt_aio", "n": n},
            "recv rta plain": {"kind": "recv_rt_aio", "n": n, "compression": False},
        },
    )
    for row in (
        Compare("receive", "recv rt", "recv ws", target=at_least(0.9)),
        Compare(
            "receive, compression off on both",
            "recv rt plain",
            "recv ws plain",
            target=at_least(0.9),
            note="without permessage-deflate",
        ),
        Compare(f"receive, {AIO}", "recv rta", "recv ws", target=at_least(0.9)),
        Compare(
            f"receive, {AIO}, compression off on both",
            "recv rta plain",
            "recv ws plain",
            target=at_least(0.9),
        ),
        Compare(
            "ceiling: bare aiohttp vs bare websockets, receive, no compression",
            "recv aio plain",
            "recv ws plain",
            note="both bare (the 'rtclient' column is aiohttp here)",
        ),
    ):
        compare(ctx, row)
    _against_socketio(ctx)


async def socketio(ctx: Context, server: ServerProcess) -> None:
    s = ctx.sizes
    ctx.say(f"Socket.IO: call() window 1 ({s.sio_send} msgs), receive ({s.sio_receive} msgs)")
    await measure(
        ctx,
        server,
        {
            "sio rt send": {"kind": "send_rt_sio", "n": s.sio_send},
            "sio call": {"kind": "send_sio", "n": s.sio_send},
            "sio rt recv": {"kind": "recv_rt_sio", "n": s.sio_receive},
            "sio recv": {"kind": "recv_sio", "n": s.sio_receive},
        },
    )
    compare(
        ctx,
        Compare(
            "Socket.IO send + ack, window 1",
            "sio rt send",
            "sio call",
            SIO_CALL,
            note="rtclient transport='socketio' (built on python-socketio)",
        ),
    )
    compare(
        ctx,
        Compare(
            "Socket.IO receive",
            "sio rt recv",
            "sio recv",
            SIO_HANDLER,
            note="rtclient transport='socketio'",
        ),
    )
    _against_socketio(ctx)


# python-socketio negotiates no compression (engine.io opens its WebSocket without
# permessage-deflate): the "compression off" rows compare like with like.
AGAINST_SOCKETIO = (
    Compare("send + ack, window 1: rtclient (raw WS) vs Socket.IO", "send rt w1", "sio call",
            SIO_CALL, at_least(1.8)),
    Compare("send + ack, window 1, compression off (as python-socketio): rtclient (raw WS) "
            "vs Socket.IO", "send rt w1 plain", "sio call", SIO_CALL, at_least(1.8),
            "neither compresses"),
    Compare("send + ack, window 1: rtclient (transport='aiohttp') vs Socket.IO", "send rta w1",
            "sio call", SIO_CALL, at_least(1.8)),
    Compare("receive: rtclient (raw WS) vs Socket.IO", "recv rt", "sio recv", SIO_HANDLER,
            at_least(3.0)),
    Compare("receive: rtclient (transport='aiohttp') vs Socket.IO", "recv rta", "sio recv",
            SIO_HANDLER, at_least(3.0)),
    # At window 1 the round trip includes the server's work on each endpoint: how far the
    # raw endpoint is ahead of the Socket.IO one bounds the ratios above.
    Compare("ceiling: bare websockets vs python-socketio call(), window 1", "send ws w1",
            "sio call", SIO_CALL, None,
            "both bare, same server: what any raw-WebSocket client can reach against "
            "python-socketio here (the 'rtclient' column is bare websockets)"),
)  # fmt: skip
"""The issue's targets against python-socketio: rtclient on its raw transports."""


def _against_socketio(ctx: Context) -> None:
    """Add each row of :data:`AGAINST_SOCKETIO` once both its sides are measured."""
    done = {r.case for r in ctx.results.rows}
    measured = ctx.results.details.throughput
    for c in AGAINST_SOCKETIO:
        if c.case not in done and c.subject in measured and c.baseline in measured:
            compare(ctx, c)

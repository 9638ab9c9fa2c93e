"""The fault catalogue: every FaultProxy toxic and every FakeServer fault, as coroutines.

Each fault is ``async def fault(lab, rng) -> str``: it draws its parameters from ``rng``,
puts the fault in force, holds it as long as it lasts (a toxic's window, a pause, a
restart's downtime), lifts it, and returns a one-line description. Faults never overlap
when run one after the other; :func:`calm` lifts whatever may still be in force.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..toxics import Direction

if TYPE_CHECKING:
    from .lab import Lab

__all__ = ["EPOCH_FAULTS", "FAULTS", "Fault", "calm"]

Fault = Callable[["Lab", random.Random], Awaitable[str]]

_DIRECTIONS: tuple[Direction, ...] = ("both", "upstream", "downstream")


def _direction(rng: random.Random) -> Direction:
    return rng.choice(_DIRECTIONS)


async def _hold(seconds: float) -> None:
    # The fault's window: pacing of the workload, not synchronisation.
    await asyncio.sleep(seconds)


async def latency(lab: Lab, rng: random.Random) -> str:
    ms = rng.uniform(30, 120)
    jitter, direction = ms / 2, _direction(rng)
    toxicity = rng.choice((0.5, 1.0))
    with lab.proxy.latency(ms, jitter, direction=direction, toxicity=toxicity):
        await _hold(rng.uniform(0.8, 1.5))
    return f"latency {ms:.0f}±{jitter:.0f} ms {direction} toxicity={toxicity}"


async def bandwidth(lab: Lab, rng: random.Random) -> str:
    rate, direction = rng.uniform(15, 60), _direction(rng)
    with lab.proxy.bandwidth(rate, direction=direction):
        await _hold(rng.uniform(0.8, 1.5))
    return f"bandwidth {rate:.0f} KB/s {direction}"


async def blackhole(lab: Lab, rng: random.Random) -> str:
    direction = _direction(rng)
    toxicity = rng.choice((0.5, 1.0))
    window = rng.uniform(0.5, 1.0) + lab.heartbeat_window
    with lab.proxy.blackhole(direction=direction, toxicity=toxicity):
        await _hold(window)
    return f"blackhole (half-open) {direction} toxicity={toxicity} for {window:.2f} s"


async def reset_peer(lab: Lab, rng: random.Random) -> str:
    direction, after = _direction(rng), rng.uniform(0, 150)
    with lab.proxy.reset_peer(direction=direction, after=after):
        await _hold(rng.uniform(0.2, 0.4))
    return f"reset_peer (RST) to {direction} after {after:.0f} ms"


async def slow_close(lab: Lab, rng: random.Random) -> str:
    delay = rng.uniform(100, 500)
    code = rng.choice((None, 1001, 1012))
    with lab.proxy.slow_close(delay, direction=_direction(rng)):
        if code is None:
            await lab.server.drop_connections()
        else:
            await lab.server.close_all(code)
        await _hold(delay / 1000 + 0.2)
    closing = "drop_connections" if code is None else f"close_all({code})"
    return f"slow_close {delay:.0f} ms around {closing}"


async def limit_data(lab: Lab, rng: random.Random) -> str:
    n_bytes, direction = rng.randint(200, 20_000), _direction(rng)
    with lab.proxy.limit_data(n_bytes, direction=direction):
        await _hold(rng.uniform(0.3, 0.8))
    return f"limit_data {n_bytes} bytes {direction} (cut mid-frame)"


async def slicer(lab: Lab, rng: random.Random) -> str:
    size = rng.randint(4, 64)
    delay = rng.uniform(0, 1.5)
    with lab.proxy.slicer(size, size // 2, delay, direction=_direction(rng)):
        await _hold(rng.uniform(0.8, 1.5))
    return f"slicer {size}±{size // 2} bytes, {delay:.1f} ms apart"


async def down_up(lab: Lab, rng: random.Random) -> str:
    reset, downtime = rng.random() < 0.5, rng.uniform(0.2, 0.6)
    await lab.proxy.down(reset=reset)
    await _hold(downtime)
    await lab.proxy.up()
    return f"proxy down ({'RST' if reset else 'FIN'}) for {downtime:.2f} s, then up"


async def restart(lab: Lab, rng: random.Random) -> str:
    downtime = rng.uniform(0.1, 0.4)
    await lab.server.restart(downtime=downtime, keep_log=True)
    return f"server restart (keep_log) with {downtime:.2f} s downtime"


async def restart_losing_log(lab: Lab, rng: random.Random) -> str:
    downtime = rng.uniform(0.1, 0.3)
    await lab.server.restart(downtime=downtime, keep_log=False)
    return f"server restart WITHOUT its log (new epoch) with {downtime:.2f} s downtime"


async def drop(lab: Lab, rng: random.Random) -> str:
    await lab.server.drop_connections()
    return "server drop_connections (TCP abort)"


async def close_all(lab: Lab, rng: random.Random) -> str:
    code = rng.choice((1001, 1011, 1012))
    await lab.server.close_all(code)
    return f"server close_all({code})"


async def pause(lab: Lab, rng: random.Random) -> str:
    frozen = rng.uniform(0.3, 0.6) + lab.heartbeat_window
    await lab.server.pause()
    try:
        await _hold(frozen)
    finally:
        await lab.server.resume()
    return f"server pause (frozen peer) for {frozen:.2f} s"


async def lose_acks(lab: Lab, rng: random.Random) -> str:
    n = rng.randint(1, 6)
    await lab.server.lose_next_acks(n)
    await _hold(0.3)
    return f"server lose_next_acks({n})"


async def duplicate_events(lab: Lab, rng: random.Random) -> str:
    n = rng.randint(1, 10)
    await lab.server.duplicate_next_events(n)
    await _hold(0.2)
    return f"server duplicate_next_events({n})"


async def expire_tokens(lab: Lab, rng: random.Random) -> str:
    await lab.server.expire_tokens()
    return "server expire_tokens (4002, fresh tokens from the provider)"


async def reject_handshakes(lab: Lab, rng: random.Random) -> str:
    n, status = rng.randint(1, 4), rng.choice((503, 429, 1013))
    await lab.server.reject_handshakes(n, status, retry_after=0.1)
    await lab.server.drop_connections()
    await _hold(0.3)
    await lab.server.reject_handshakes(0, 503)
    return f"server reject_handshakes({n}, {status}) after a drop"


async def server_latency(lab: Lab, rng: random.Random) -> str:
    ms = rng.uniform(20, 80)
    await lab.server.set_latency(ms)
    try:
        await _hold(rng.uniform(0.5, 1.0))
    finally:
        await lab.server.set_latency(0)
    return f"server set_latency({ms:.0f} ms)"


FAULTS: dict[str, Fault] = {
    "latency": latency,
    "bandwidth": bandwidth,
    "blackhole": blackhole,
    "reset_peer": reset_peer,
    "slow_close": slow_close,
    "limit_data": limit_data,
    "slicer": slicer,
    "down_up": down_up,
    "restart": restart,
    "drop_connections": drop,
    "close_all": close_all,
    "pause": pause,
    "lose_next_acks": lose_acks,
    "duplicate_next_events": duplicate_events,
    "expire_tokens": expire_tokens,
    "reject_handshakes": reject_handshakes,
    "server_latency": server_latency,
}
"""Every fault by name: the soak draws from all of them."""

EPOCH_FAULTS: dict[str, Fault] = {"restart_new_epoch": restart_losing_log}
"""Faults that lose data on purpose (a new epoch): only with ``run_soak(kinds=...)``."""


async def calm(lab: Lab) -> None:
    """Lift every fault that may still be in force (after a cancelled fault, at the end)."""
    lab.proxy.clear()
    if not lab.proxy.is_up:
        await lab.proxy.up()
    await lab.server.resume()
    await lab.server.set_latency(0)
    await lab.server.lose_next_acks(0)
    await lab.server.duplicate_next_events(0)
    await lab.server.reject_handshakes(0, 503)

"""The ``memory`` case: what an idle connected client holds, rtclient against websockets.

Each kind is one worker process that opens ``idle_clients`` connections (a room each)
and reports its RSS delta and its asyncio tasks (``benchmarks.worker``'s idle kinds).
"""

from __future__ import annotations

from .context import Context
from .harness import ServerProcess, run_worker, worker_spec
from .results import Row, at_most
from .spec import Kind, WorkerSpec

__all__ = ["case"]

KINDS: tuple[Kind, ...] = ("idle_rt", "idle_ws", "idle_rt_aio")


async def case(ctx: Context, server: ServerProcess) -> None:
    n = ctx.sizes.idle_clients
    ctx.say(f"memory: {n} idle connected clients, RSS delta of the client process")
    got = ctx.results.details.memory
    for kind in KINDS:
        spec: WorkerSpec = {"kind": kind, "clients": n}
        got[kind] = await run_worker(worker_spec(server, spec), timeout=180.0)
    ws = got["idle_ws"]
    ws_rss = ws["rss_bytes"] / n
    for kind, label in (("idle_rt", ""), ("idle_rt_aio", ", transport='aiohttp'")):
        rt = got[kind]
        rt_rss = rt["rss_bytes"] / n
        ratio = rt_rss / ws_rss
        ctx.row(
            Row(
                f"memory per idle client ({n} clients){label}",
                f"{rt_rss / 1024:.1f} KiB",
                f"websockets {ws_rss / 1024:.1f} KiB",
                ratio,
                at_most(1.25),
                note=f"{rt['tasks'] / n:.0f} asyncio tasks per client against "
                f"{ws['tasks'] / n:.0f}",
            )
        )

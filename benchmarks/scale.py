"""Many clients through a rolling restart: ``python -m benchmarks.scale``.

``--clients 100,300,1000`` rtclients in client processes of ``--per-process`` clients
each (``benchmarks.scale_load``: one asyncio loop per process), every client in two
rooms of about ``2 * --room-size`` members, each sending ``--rate`` messages/s. After
``--warmup`` seconds of steady traffic the nodes are restarted one after the other
(:mod:`benchmarks.scale_nodes`), the traffic goes on for ``--tail`` seconds, the
senders stop, everything settles, and the coordinator gathers every process's records:

- **time to fully recovered** per outage (:mod:`benchmarks.scale_metrics` defines it),
  p50 / p99 / max, and how many outages never recovered;
- **lost / duplicated / reordered / unannounced gaps / unacknowledged** by the chaos
  checker (:func:`rtclient.testing.chaos.check`) over the whole run.

The clients use rtclient's defaults (backoff, heartbeats, ack timeout). The machine's
load average is recorded before and after each run: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rtclient.testing.chaos import check
from rtclient.testing.chaos.history import Announced, History, Record
from rtclient.testing.programs import ProgramMissing, require_program

from .context import Context
from .harness import ROOT, BenchError, percentile
from .report import scale_table
from .results import Row, ScaleDetails, ScaleRun, at_most
from .scale_load import LoadSpec
from .scale_metrics import Head, decode, latencies, merge, recovery, undelivered
from .scale_nodes import NODE_KINDS, Nodes

__all__ = ["Settings", "case", "main", "run"]


@dataclass(frozen=True)
class Settings:
    clients: int
    nodes: str = "single"
    """A key of :data:`benchmarks.scale_nodes.NODE_KINDS`."""
    per_process: int = 250
    room_size: int = 10
    rate: float = 0.2
    warmup: float = 3.0
    tail: float = 5.0
    settle: float = 60.0
    connect_concurrency: int = 50
    seed: int = 1
    logs: Path | None = None
    redis_query: str = ""
    restart: bool = True
    """False: no restart (the steady traffic alone, for comparison)."""
    """Added to the nodes' Redis URL: the redis client's options (``max_connections=N``)."""
    """Keep the nodes' logs in this folder (``node-<i>.log``)."""


class LoadProcess:
    """One ``benchmarks.scale_load`` child, spoken to line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, spec: LoadSpec) -> LoadProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.scale_load",
            json.dumps(spec),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        return cls(proc)

    async def expect(self, word: str, timeout: float) -> str:
        """The rest of the next line, which must start with ``word``."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            line = (await self.proc.stdout.readline()).decode().strip()
        head, _, rest = line.partition(" ")
        if head != word:
            raise BenchError(f"client process {self.proc.pid}: expected {word}, got {line!r}")
        return rest

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()


def _take(path: Path) -> Any:
    """The JSON a client process left in ``path``; the file is removed."""
    try:
        return json.loads(path.read_text())
    finally:
        path.unlink()


def _load() -> float:
    return os.getloadavg()[0]


async def run(settings: Settings, say: Callable[[str], None] = print) -> ScaleRun:
    """One run: start the nodes and the client processes, restart every node, gather."""
    s = settings
    tag = f"s{uuid.uuid4().hex[:6]}"
    figures = ScaleRun(clients=s.clients, nodes=s.nodes, load_before=_load())
    nodes: Nodes = NODE_KINDS[s.nodes](s.logs, s.redis_query)
    procs: list[LoadProcess] = []
    began = time.monotonic()
    try:
        await nodes.start()
        counts = [s.per_process] * (s.clients // s.per_process)
        if s.clients % s.per_process:
            counts.append(s.clients % s.per_process)
        first = 0
        for count in counts:
            spec: LoadSpec = {
                "urls": nodes.urls,
                "first": first,
                "count": count,
                "total": s.clients,
                "room_size": s.room_size,
                "rate": s.rate,
                "run": tag,
                "settle": s.settle,
                "connect_concurrency": s.connect_concurrency,
                "seed": s.seed,
                "secret": nodes.secret,
            }
            procs.append(await LoadProcess.start(spec))
            first += count
        figures.processes = len(procs)
        ready = await asyncio.gather(*(p.expect("READY", 60 + s.clients / 5) for p in procs))
        figures.connect_seconds = max(float(r.split()[0]) for r in ready)
        figures.join_retries = sum(int(r.split()[1]) for r in ready)
        say(
            f"  {s.clients} clients in {len(procs)} processes connected in "
            f"{figures.connect_seconds:.1f} s"
        )
        for p in procs:
            p.tell("go")
        await asyncio.gather(*(p.expect("GOING", 30) for p in procs))
        await asyncio.sleep(s.warmup)  # steady traffic before the restarts
        restart_began = time.monotonic()
        if s.restart:
            figures.node_restarts = await nodes.rolling_restart(say)
        figures.restart_seconds = time.monotonic() - restart_began
        figures.failed_drains = list(nodes.failed_drains)
        await asyncio.sleep(s.tail)  # traffic goes on while the clients recover
        for p in procs:
            p.tell("stop")
        stopped = time.monotonic()
        seen = await asyncio.gather(*(p.expect("SETTLED", s.settle + 30) for p in procs))
        figures.settle_seconds = time.monotonic() - stopped
        top: dict[str, Head] = merge(json.loads(line) for line in seen)
        for p in procs:
            p.tell("heads " + json.dumps(top))
        settled = time.monotonic()
        paths = await asyncio.gather(*(p.expect("DONE", s.settle + 60) for p in procs))
        figures.catch_up_seconds = time.monotonic() - settled
        states: dict[str, str] = {}
        behind: list[str] = []
        records: list[Record] = []
        for path in paths:
            data = await asyncio.to_thread(_take, Path(path))
            records += decode(data["records"])
            states.update(data["states"])
            behind += data["behind"]
        figures.not_connected_at_end = sum(state != "CONNECTED" for state in states.values())
        figures.behind_at_end = len(behind)
    finally:
        await asyncio.gather(*(p.kill() for p in procs), return_exceptions=True)
        await nodes.stop()
    _judge(figures, records, set(behind))
    figures.seconds = time.monotonic() - began
    figures.load_after = _load()
    return figures


def _judge(figures: ScaleRun, records: list[Record], late: set[str]) -> None:
    """Fill ``figures`` from every process's records: the checker's counts, the outages."""
    report = check(History(records=records))
    figures.sent, figures.acked, figures.delivered = report.sent, report.acked, report.delivered
    figures.anomalies = report.counts()
    figures.announced_gaps = report.gaps
    figures.missed_under_gaps = undelivered(records) - report.counts()["lost"]
    figures.lost_to_late = sum(a.client in late for a in report.of("lost"))
    lags = latencies(records)
    figures.latency = [percentile(lags, q) for q in (0.5, 0.99)]
    figures.gap_reasons = dict(Counter(r.reason for r in records if isinstance(r, Announced)))
    found = recovery(records)
    figures.outages = len(found.outages)
    figures.times = found.times
    figures.connected = found.connected
    figures.never = found.never
    figures.with_gap = found.with_gap
    figures.clients_disrupted = len({o.client for o in found.outages})


def describe(r: ScaleRun) -> str:
    a = r.anomalies
    return (
        f"  {r.clients} clients ({r.processes} processes, nodes: {r.nodes}): "
        f"{r.outages} outages of {r.clients_disrupted} clients, CONNECTED again p50 "
        f"{percentile(r.connected, 0.5) * 1000:.0f} ms p99 "
        f"{percentile(r.connected, 0.99) * 1000:.0f} ms, fully recovered p50 "
        f"{r.p50 * 1000:.0f} ms p99 {r.p99 * 1000:.0f} ms max {r.max * 1000:.0f} ms, "
        f"never {r.never}, with a gap {r.with_gap}; ack to delivery p50 / p99 "
        f"{' / '.join(f'{t * 1000:.0f}' for t in r.latency)} ms; sent {r.sent} acked {r.acked} "
        f"delivered {r.delivered}; lost {a.get('lost', 0)} duplicated "
        f"{a.get('duplicated', 0)} reordered {a.get('reordered', 0)} unannounced gaps "
        f"{a.get('unannounced_gaps', 0)} unacked {a.get('unacked', 0)} failed sends "
        f"{a.get('failed', 0)}; announced gaps {r.announced_gaps} {r.gap_reasons}, "
        f"deliveries missed under them {r.missed_under_gaps}; "
        f"lost owed to clients still behind at the end {r.lost_to_late}; "
        f"drains that did not end {len(r.failed_drains)}; at the end {r.not_connected_at_end} "
        f"clients not CONNECTED, {r.behind_at_end} not at every room's head; "
        f"joins retried at the start {r.join_retries}; node restarts "
        f"{', '.join(f'{t:.2f}' for t in r.node_restarts)} s; "
        f"load {r.load_before:.2f} -> {r.load_after:.2f}; {r.seconds:.0f} s (settled in "
        f"{r.settle_seconds:.1f} s, caught up and closed in {r.catch_up_seconds:.1f} s)"
    )


async def case(ctx: Context) -> None:
    """The ``scale`` case: a rolling restart under many clients.

    ``--quick``: 30 clients, one in-memory node restarted (no Redis needed); a full run:
    100 clients on the three-node Redis cluster (skipped, and said so, without
    redis-server).
    """
    quick = ctx.quick
    clients = 30 if quick else 100
    settings = Settings(
        clients=clients,
        nodes="single" if quick else "cluster",
        per_process=15 if quick else 50,
        rate=0.5,
        warmup=1.0 if quick else 3.0,
        tail=1.0 if quick else 3.0,
        settle=20.0,
    )
    if settings.nodes == "cluster":
        try:
            require_program("redis-server")
        except ProgramMissing as exc:
            ctx.skip("scale on a Redis cluster", str(exc))
            return
    ctx.say(f"scale: {clients} clients, rolling restart ({settings.nodes} nodes)")
    got = await run(settings, ctx.say)
    ctx.say(describe(got))
    details = ctx.results.details.scale = ctx.results.details.scale or ScaleDetails()
    details.runs.append(got)
    ctx.row(
        Row(
            f"scale, {clients} clients, rolling restart, p50 / p99",
            f"{got.p50 * 1000:.0f} / {got.p99 * 1000:.0f} ms to fully recovered",
            f"{got.outages} outages, nodes: {got.nodes}",
            None,
        )
    )
    broken = sum(got.anomalies.get(k, 0) for k in ("lost", "duplicated", "reordered"))
    broken += got.anomalies.get("unannounced_gaps", 0) + got.never
    ctx.row(
        Row(
            f"scale, {clients} clients: lost + duplicated + reordered + unannounced + never",
            f"{broken}",
            f"{got.sent} sent, {got.delivered} delivered",
            None,
            at_most(0, "0"),
            measured=broken,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", default="100,300,1000", help="comma-separated sizes")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--nodes", default="cluster", choices=list(NODE_KINDS))
    parser.add_argument("--per-process", type=int, default=250)
    parser.add_argument("--room-size", type=int, default=10)
    parser.add_argument("--rate", type=float, default=0.2, help="messages/s per client")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--tail", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print each run's figures")
    parser.add_argument("--logs", type=Path, help="keep the nodes' logs in this folder")
    parser.add_argument("--no-restart", action="store_true", help="steady traffic only")
    parser.add_argument(
        "--redis-query",
        default="",
        help="options for the nodes' redis client, as a URL query (max_connections=1000)",
    )
    args = parser.parse_args(argv)
    runs: list[ScaleRun] = []
    for _ in range(args.repeats):
        for clients in (int(n) for n in args.clients.split(",")):
            settings = Settings(
                clients=clients,
                nodes=args.nodes,
                per_process=args.per_process,
                room_size=args.room_size,
                rate=args.rate,
                warmup=args.warmup,
                tail=args.tail,
                logs=args.logs,
                redis_query=args.redis_query,
                restart=not args.no_restart,
            )
            got = asyncio.run(run(settings))
            runs.append(got)
            print(describe(got), flush=True)
            if args.json:
                print(json.dumps(asdict(got)), flush=True)
    print("\n".join(["", *scale_table(runs)]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

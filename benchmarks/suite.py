"""``python -m benchmarks``: run the cases of :data:`benchmarks.cases.CASES`, report, judge.

Each case starts what it needs and stops it again, whatever happens: the server is a
child process (``benchmarks.server``), every client measurement a worker process
(``benchmarks.worker``), both killed on the way out. Results are printed as they come
and, for a full run of every case, written into ``docs/benchmarks.md`` between the
``<!-- results -->`` markers (the hand-written text around them is kept).

Every row with a target that was not met is printed as ``MISSED``, and a measurement
that was skipped (a missing optional library) as ``SKIPPED`` with the number of targets
it would have judged; with ``--check`` the exit status is 1 when a target was missed or
not measured (a run that fails outright exits non-zero either way).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .cases import CASES, Case, Local, OnServer, select
from .context import Context
from .harness import ROOT, ServerProcess, machine
from .report import write_report
from .results import Results, Sizes

__all__ = ["main", "parse", "run"]


async def run(
    args: argparse.Namespace,
    cases: Mapping[str, Case] = CASES,
    out: Callable[[str], None] | None = None,
) -> Results:
    """Run the selected cases: those on the shared server first, then the local ones."""
    began = time.perf_counter()
    results = Results(
        quick=args.quick,
        command=_command(),
        machine={**machine(), "load": _load()},
        sizes=Sizes.of(args.quick),
    )
    ctx = Context(results) if out is None else Context(results, out)
    wanted = select(cases, args.only, args.quick)
    ctx.say(f"rtclient benchmarks: {', '.join(wanted)}{' (quick)' if args.quick else ''}")
    m = results.machine
    ctx.say(f"{m['cpu']}, {m['cores']} cores, {m['python']}; {m['libraries']}")
    selected = [cases[name] for name in wanted]
    on_server = [case for case in selected if isinstance(case, OnServer)]
    if on_server:
        async with ServerProcess() as server:
            for case in on_server:
                await case.run(ctx, server)
    for local in (case for case in selected if isinstance(case, Local)):
        await local.run(ctx)
    results.seconds = time.perf_counter() - began
    results.machine["load"] += " -> " + _load()
    return results


def _load() -> str:
    """The 1-minute load average: other work on the machine skews the figures."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def _command() -> str:
    """The command line of this run, as typed from the repository root."""
    exe = sys.executable
    shown = os.path.relpath(exe, ROOT) if exe.startswith(str(ROOT)) else exe
    return shlex.join([shown, "-m", "benchmarks", *sys.argv[1:]])


def parse(argv: list[str] | None = None, cases: Mapping[str, Case] = CASES) -> argparse.Namespace:
    names = ", ".join(cases)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="rtclient against bare websockets and python-socketio, same server.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (about 40 s)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these cases (repeat or comma-separate): {names}",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit with status 1 when a row misses its target (each is printed as MISSED)",
    )
    write = parser.add_mutually_exclusive_group()
    write.add_argument(
        "--write",
        dest="write",
        action="store_true",
        default=None,
        help="write docs/benchmarks.md (default: full runs of every case)",
    )
    write.add_argument("--no-write", dest="write", action="store_false")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args(argv)
    only = {name.strip() for item in args.only for name in item.split(",") if name.strip()}
    unknown = only - set(cases)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}: choose from {names}")
    args.only = only
    if args.write is None:
        args.write = not args.quick and not only
    return args


def main(argv: list[str] | None = None, cases: Mapping[str, Case] = CASES) -> int:
    args = parse(argv, cases)
    results = asyncio.run(run(args, cases))
    print(f"\ndone in {results.seconds:.0f} s")
    missed = results.missed()
    for row in missed:
        print(row.miss())
    for what, why in results.skipped.items():
        unjudged = results.unjudged.get(what, 0)
        print(f"SKIPPED: {what}: {why}" + (f" ({unjudged} targets not met)" if unjudged else ""))
    if args.write:
        write_report(results, Path(args.output))
        print(f"wrote {args.output}")
    if args.check:
        unjudged = sum(results.unjudged.values())
        targets = sum(row.target is not None for row in results.rows) + unjudged
        skipped = f", {unjudged} not measured (skipped): not a pass" if unjudged else ""
        print(f"--check: {len(missed)} of {targets} targets missed{skipped}")
        return 1 if missed or unjudged else 0
    return 0

"""Profiles of rtclient's hot paths: py-spy on a worker, summed up by function and package.

py-spy samples the worker process from outside (``py-spy record --function -f raw``),
so rtclient's code runs unmodified; idle time (the event loop waiting in epoll) is not
sampled. Stacks under an ``import`` are left out (start-up, not the hot path). The
summary gives each function's *self* share (samples where it was the running frame),
the *inclusive* share of rtclient's functions (samples where it was on the stack) and
the self share per package — rtclient's own code against the libraries it wraps.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

from .context import Context
from .harness import ServerProcess, run_worker, worker_spec
from .results import Profile, ProfileDetails
from .spec import Kind, WorkerSpec

_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>.*?):(?P<line>\d+)\)$")


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    match = re.search(r"/lib/python3\.\d+/(.*)", path)
    return match.group(1) if match else path


def _package(path: str) -> str:
    short = _short_path(path)
    if short.startswith("rtclient/"):
        return "rtclient"
    if short.startswith(("websockets/",)):
        return "websockets"
    if short.startswith(("asyncio/", "selectors.py")):
        return "asyncio"
    if short.startswith("json/"):
        return "json"
    if short.startswith(("socketio/", "engineio/")):
        return "python-socketio/engineio"
    if short.startswith(("aiohttp/", "yarl/", "multidict/")):
        return "aiohttp"
    if short.startswith(("uuid6/", "uuid.py", "random.py")):
        return "uuid/random"
    if short.startswith("benchmarks/"):
        return "benchmark harness"
    return "other (stdlib, C)"


def _label(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if match is None:
        return frame or "(native)", "other (stdlib, C)"
    path = match["path"]
    return f"{match['func']} ({_short_path(path)})", _package(path)


def summarize(raw: str, *, top: int = 16) -> Profile:
    """Sum up py-spy's raw (collapsed) stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if any("_find_and_load" in f for f in frames):
            continue
        count = int(count_text)
        total += count
        leaf, package = _label(frames[-1])
        own[leaf] += count
        packages[package] += count
        for label in {_label(f)[0] for f in frames}:
            if "(rtclient/" in label:
                inclusive[label] += count
    share = 100.0 / total if total else 0.0
    return Profile(
        samples=total,
        own=[(name, n * share) for name, n in own.most_common(top)],
        rtclient_inclusive=[(name, n * share) for name, n in inclusive.most_common(top)],
        packages=[(name, n * share) for name, n in packages.most_common()],
    )


async def profile(spec: WorkerSpec, *, rate: int = 250) -> Profile | None:
    """Run the worker ``spec`` under py-spy; None when py-spy is not installed."""
    exe = py_spy()
    if exe is None:
        return None
    with tempfile.TemporaryDirectory(prefix="rtclient-prof-") as tmp:
        out = Path(tmp) / "profile.txt"
        wrap = [exe, "record", "--function", "-f", "raw", "-r", str(rate), "-o", str(out), "--"]
        result = await run_worker(spec, wrap=wrap, timeout=180.0)
        summary = summarize(out.read_text())
    return replace(summary, result=result)


PROFILED: dict[str, WorkerSpec] = {
    "send + ack, window 1": {"kind": "send_rt", "n": 6000, "window": 1},
    "send + ack, window 64": {"kind": "send_rt", "n": 20000, "window": 64},
    "receive": {"kind": "recv_rt", "n": 60000},
    "send + ack, window 64, transport='aiohttp'": {"kind": "send_rt_aio", "n": 20000, "window": 64},
    "receive, transport='aiohttp'": {"kind": "recv_rt_aio", "n": 60000},
}
"""The suite's profiled runs (sizes fixed: enough samples, quick or not)."""


async def case(ctx: Context, server: ServerProcess) -> None:
    """The ``profile`` case: py-spy on :data:`PROFILED`, tracemalloc on idle clients."""
    if py_spy() is None:
        ctx.skip("profile", "py-spy is not installed (pip install py-spy)")
        ctx.say("profile: skipped, py-spy is not installed")
        return
    ctx.say("profile: py-spy on rtclient send (window 1, 64) and receive, both raw transports")
    got = ctx.results.details.profile = ProfileDetails()
    for name, spec in PROFILED.items():
        summary = await profile(worker_spec(server, spec))
        if summary is not None:
            got.runs[name] = summary
            rtclient_share = dict(summary.packages).get("rtclient", 0.0)
            ctx.say(f"  {name}: {rtclient_share:.0f} % of the samples in rtclient's own code")
    ctx.say("profile: tracemalloc on 200 idle clients")
    idle: tuple[Kind, ...] = ("idle_rt", "idle_ws")
    for kind in idle:
        traced: WorkerSpec = {"kind": kind, "clients": 200, "tracemalloc": True}
        got.memory[kind] = await run_worker(worker_spec(server, traced), timeout=180.0)

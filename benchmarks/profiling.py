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
from pathlib import Path
from typing import Any

from .harness import run_worker

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


def summarize(raw: str, *, top: int = 16) -> dict[str, Any]:
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
    return {
        "samples": total,
        "self": [(name, n * share) for name, n in own.most_common(top)],
        "rtclient_inclusive": [(name, n * share) for name, n in inclusive.most_common(top)],
        "packages": [(name, n * share) for name, n in packages.most_common()],
    }


async def profile(spec: dict[str, Any], *, rate: int = 250) -> dict[str, Any] | None:
    """Run the worker ``spec`` under py-spy; None when py-spy is not installed."""
    exe = py_spy()
    if exe is None:
        return None
    with tempfile.TemporaryDirectory(prefix="rtclient-prof-") as tmp:
        out = Path(tmp) / "profile.txt"
        wrap = [exe, "record", "--function", "-f", "raw", "-r", str(rate), "-o", str(out), "--"]
        result = await run_worker(spec, wrap=wrap, timeout=180.0)
        summary = summarize(out.read_text())
    summary["result"] = result
    return summary

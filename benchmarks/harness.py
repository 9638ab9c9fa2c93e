"""What every case shares: the server process, workers, tokens, machine facts, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Self

from fake_server.auth import TokenAuthority

from .spec import WorkerResult, WorkerSpec

__all__ = [
    "ROOT",
    "BenchError",
    "ServerProcess",
    "Token",
    "machine",
    "median",
    "run_worker",
    "worker_spec",
]

ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-secret-not-for-production-0123456789"
READY_TIMEOUT = 20.0


class BenchError(RuntimeError):
    """A benchmark could not run (a process failed, a timeout)."""


class Token:
    """Mints tokens the benchmark server accepts (same secret)."""

    def __init__(self, secret: str = SECRET) -> None:
        self._authority = TokenAuthority(secret, leeway=2.0)

    def __call__(self, user: str, ttl: float = 3600.0) -> str:
        return self._authority.issue(user, now=time.time(), ttl=ttl, roles=())


@dataclass
class ServerProcess:
    """``python -m benchmarks.server`` as a child process, killed on exit whatever happens.

    ``restart()`` is a crash and a new process on the same port: SIGKILL, wait for the
    old process to be gone, start a new one (same secret, so tokens stay valid).
    """

    port: int = 0
    ping_interval: float | None = None
    control_port: int = 0
    started_in: float = 0.0
    """Seconds the last start took, from spawn to READY."""
    _proc: asyncio.subprocess.Process | None = field(default=None, repr=False)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        command = [sys.executable, "-m", "benchmarks.server", "--secret", SECRET]
        command += ["--port", str(self.port)]
        if self.ping_interval is not None:
            command += ["--ping-interval", str(self.ping_interval)]
        began = time.perf_counter()
        self._proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C on the suite must not hit it first
        )
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                while True:
                    line = await self._proc.stdout.readline()
                    if not line:
                        raise BenchError("benchmark server exited before it was ready")
                    words = line.decode().split()
                    if words[:1] == ["READY"]:
                        self.port, self.control_port = int(words[1]), int(words[2])
                        break
        except BaseException:
            await self.kill()
            raise
        self.started_in = time.perf_counter() - began

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the process (SIGKILL by default) and reap it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                async with asyncio.timeout(5.0):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def restart(self) -> None:
        """Crash the server (SIGKILL) and start a new process on the same port."""
        await self.kill()
        await self.start()

    async def command(self, line: str, timeout: float = 60.0) -> list[str]:
        """Send one control command; return the words of the answer after ``OK``."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.control_port)
            try:
                writer.write(line.encode() + b"\n")
                await writer.drain()
                answer = (await reader.readline()).decode().split()
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
        if answer[:1] != ["OK"]:
            raise BenchError(f"server control {line!r}: {' '.join(answer) or 'no answer'}")
        return answer[1:]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.kill(signal.SIGTERM)


def worker_spec(server: ServerProcess, spec: WorkerSpec) -> WorkerSpec:
    """``spec`` with the addresses of ``server`` filled in."""
    return {
        "url": server.ws_url,
        "http": server.http_url,
        "control_port": server.control_port,
        **spec,
    }


async def run_worker(
    spec: WorkerSpec,
    *,
    timeout: float = 120.0,
    wrap: Sequence[str] = (),
) -> WorkerResult:
    """Run ``python -m benchmarks.worker`` on ``spec``; return the JSON it prints last.

    ``wrap`` goes in front of the interpreter (e.g. ``py-spy record ... --``). The
    worker is killed, with its process group, when the timeout passes or the caller is
    cancelled.
    """
    command = [*wrap, sys.executable, "-m", "benchmarks.worker", json.dumps(spec)]
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = err.decode().strip().splitlines()[-15:]
        raise BenchError(
            f"worker {spec.get('kind')} failed ({proc.returncode}):\n  " + "\n  ".join(tail)
        )
    result: WorkerResult = json.loads(lines[-1])
    return result


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    if pos == low or math.isinf(ordered[low]):
        return ordered[low]
    if math.isinf(ordered[high]):
        return ordered[high]  # a run that never finished: inf, not inf * 0 = nan
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """The facts a reader needs to compare runs."""
    try:
        mem_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        memory = f"{mem_kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "?"
    libraries = [
        "rtclient",
        "websockets",
        "python-socketio",
        "python-engineio",
        "aiohttp",
        "msgpack",
        "orjson",
        "ormsgpack",
        "py-spy",
    ]
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "libraries": ", ".join(f"{name} {_version(name)}" for name in libraries),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }

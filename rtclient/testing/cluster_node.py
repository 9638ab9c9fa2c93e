"""One ``rtclient serve`` node of a test cluster, as a real subprocess.

A :class:`NodeProcess` owns the process, its port (kept across restarts, so clients'
URLs stay good) and a log file (stdout and stderr of every run, appended). Readiness is
``GET /health`` answering 200 with this process's ``pid``, polled; never a fixed sleep
(a port picked free may be taken by another program before the node binds it: that
one's /health is not the node's, and the node, failing to bind, exits). :mod:`.cluster` puts several
of them together.

On Linux each node is asked to die with the process that started it
(``PR_SET_PDEATHSIG``), so a test runner that is itself killed leaves no node behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from .waiting import wait_until

__all__ = ["NodeFailed", "NodeProcess", "die_with_parent", "open_log"]

READY_TIMEOUT = 30.0
"""Seconds a node may take to answer /health (a loaded 2-core machine imports slowly)."""

DRAIN_TIMEOUT = 20.0
"""Seconds a SIGTERMed node may take to drain and exit before it is SIGKILLed."""


class NodeFailed(RuntimeError):
    """A node did not start, did not become healthy, or did not exit cleanly.

    The text ends with the last lines of the node's log.
    """


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child SIGKILLed when its parent dies (Linux), or None.

    (A child that outlives a killed test runner would hold its port and its Redis.)
    Linux takes the *thread* that started the child for its parent: a child started
    from an event loop on a worker thread dies when that thread ends.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - a libc without a name to load
        return None
    prctl = libc.prctl
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return set_pdeathsig


def open_log(path: Path, header: str) -> BinaryIO:
    """Open ``path`` to append a child's output to, after a ``header`` line.

    A local file opened once per start: not worth a thread.
    """
    log = open(path, "ab")  # noqa: SIM115 - the caller closes it once the child has it
    log.write(f"--- {header}\n".encode())
    log.flush()
    return log


class NodeProcess:
    """``rtclient serve`` on ``host:port`` with ``argv`` after ``serve``; not started yet.

    Call :meth:`start`; stop it with :meth:`kill` (SIGKILL) or :meth:`terminate`
    (SIGTERM: a drain, returning the exit status). The caller must stop it in the end.
    """

    def __init__(
        self,
        index: int,
        *,
        host: str,
        port: int,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.index = index
        self.host = host
        self.port = port
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.argv = list(argv)
        """The flags after ``serve``; a change applies from the next :meth:`start`."""
        self._env = env
        self._process: asyncio.subprocess.Process | None = None
        self.starts = 0
        """How many times the process was started."""

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<NodeProcess {self.index} {self.host}:{self.port} {state}>"

    # -- addresses ---------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def sio_url(self) -> str:
        """The base URL a Socket.IO client connects to (path ``/socket.io/``)."""
        return self.http_url

    def url(self, transport: str = "websocket") -> str:
        """The URL a client of ``transport`` connects to."""
        return self.sio_url if transport == "socketio" else self.ws_url

    # -- state -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "rtclient", "serve", *self.argv]

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines the node wrote (every run, appended)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the process and return once ``/health`` answers 200.

        Raises :class:`NodeFailed` (the process is killed first) when it exits or does
        not become healthy within ``ready_timeout``.
        """
        if self.running:
            return
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self._env or {})}
        with open_log(self.log_path, f"start {self.starts + 1}: port {self.port}") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent(),
            )
        self.starts += 1
        try:
            await self.wait_healthy(self.ready_timeout)
        except BaseException:
            await self.kill()
            raise

    async def wait_healthy(self, timeout: float) -> dict[str, Any]:
        """Poll ``/health`` until this process answers 200; return its document."""
        healthy: dict[str, Any] = {}
        async with aiohttp.ClientSession() as session:

            async def answered() -> bool:
                process = self._process
                if process is None or process.returncode is not None:
                    code = None if process is None else process.returncode
                    raise self.failure(f"exited with status {code} while starting")
                document = await self._get_health(session)
                # Our process's, not another server's that took the port meanwhile.
                if document is None or document.get("pid") != process.pid:
                    return False
                healthy.update(document)
                return True

            try:
                await wait_until(answered, timeout, interval=0.02)
            except TimeoutError:
                raise self.failure(f"no healthy /health within {timeout} s") from None
        return healthy

    async def health(self) -> dict[str, Any] | None:
        """The node's ``/health`` document, or None when it does not answer 200."""
        async with aiohttp.ClientSession() as session:
            return await self._get_health(session)

    async def _get_health(self, session: aiohttp.ClientSession) -> dict[str, Any] | None:
        timeout = aiohttp.ClientTimeout(total=2.0)
        try:
            async with session.get(f"{self.http_url}/health", timeout=timeout) as response:
                if response.status != 200:
                    return None
                document = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        return document if isinstance(document, dict) else None

    async def kill(self) -> None:
        """SIGKILL the process (a crash: no close frames, nothing flushed); idempotent."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

    async def terminate(self, timeout: float = DRAIN_TIMEOUT) -> int:
        """SIGTERM the process (``rtclient serve`` drains) and return its exit status.

        After ``timeout`` s it is SIGKILLed and :class:`NodeFailed` raised.
        """
        process = self._process
        if process is None or process.returncode is not None:
            raise self.failure("is not running")
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                return await process.wait()
        except TimeoutError:
            await self.kill()
            raise self.failure(f"still running {timeout} s after SIGTERM") from None

    def failure(self, what: str) -> NodeFailed:
        """A :class:`NodeFailed` saying ``what`` of this node, with the end of its log."""
        return NodeFailed(
            f"node {self.index} ({self.http_url}) {what}; its log ends:\n{self.log_tail()}"
        )

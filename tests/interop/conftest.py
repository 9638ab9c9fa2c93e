"""Interop fixtures: the Node.js socket.io 4.8 reference server (server.js) and the seed's
``ws`` server (ws_server.js), as subprocesses.

The npm dependencies are installed with ``npm ci`` from the committed lockfile once per
test session, when ``node_modules`` is missing or was installed from another lockfile.
That happens at the end of collection, so it does not count against a test's timeout.
Without node / npm the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rtclient import Backoff, TransportError
from rtclient.transports import SocketIOTransport

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
STAMP = NODE_MODULES / ".rtclient-interop-lock.sha256"
NPM_CI_TIMEOUT = 300.0

# Millisecond backoff: the reconnect logic runs for real, only faster.
FAST = Backoff(base=0.01, cap=0.2, stable_after=0.3)

_setup: dict[str, str | float | None] = {"error": None, "npm_ci_seconds": None}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _lock_digest() -> str:
    return hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()


def _installed() -> bool:
    return (
        STAMP.is_file()
        and STAMP.read_text().strip() == _lock_digest()
        and (NODE_MODULES / "socket.io" / "package.json").is_file()
        and (NODE_MODULES / "ws" / "package.json").is_file()
    )


def _prepare() -> str | None:
    """Check node / npm and run ``npm ci`` if needed; return why it cannot run, or None."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        return f"{missing} not found on PATH: the socket.io interop tests need Node.js >= 18"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    major = version.stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < 18:
        return f"Node.js >= 18 needed for socket.io 4.8, found {version.stdout.strip()!r}"
    # Several test runs may share this tree: one npm ci at a time.
    lock_name = "rtclient-interop-" + hashlib.sha256(str(HERE).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"{lock_name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed():
            return None
        started = time.monotonic()
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=HERE,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"npm ci in {HERE} took more than {NPM_CI_TIMEOUT:.0f} s"
        _setup["npm_ci_seconds"] = time.monotonic() - started
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-2000:]
            return f"npm ci in {HERE} failed (exit {done.returncode}):\n{output}"
        STAMP.write_text(_lock_digest() + "\n")
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(HERE in Path(str(item.path)).parents for item in items):
        _setup["error"] = _prepare()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    seconds = _setup["npm_ci_seconds"]
    if seconds is not None:
        terminalreporter.write_line(f"tests/interop: npm ci took {seconds:.1f} s")


@pytest.fixture(scope="session")
def node_ready() -> None:
    """Skip (or, under CI=true, fail) when the reference server cannot run."""
    error = _setup["error"]
    if error is None and not _installed():
        error = _prepare()  # collected without this hook having seen the items
    if error is not None:
        if _in_ci():
            pytest.fail(f"CI=true and the interop tests cannot run: {error}", pytrace=False)
        pytest.skip(f"socket.io interop tests skipped: {error}")


class NodeServer:
    """A running server.js: its URL and its HTTP control endpoints."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._http: aiohttp.ClientSession | None = None

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def get(self, path: str, **params: str) -> Any:
        http = await self._session()
        async with http.get(self.url + path, params=params) as response:
            response.raise_for_status()
            return await response.json()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        http = await self._session()
        async with http.post(self.url + path, json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def state(self) -> dict[str, Any]:
        """What the server saw: authAttempts, connections, echoes, said, streams, …"""
        result: dict[str, Any] = await self.get("/control/state")
        return result

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(5):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()


StartServer = Callable[..., Awaitable[NodeServer]]


@pytest.fixture
async def start_server(node_ready: None) -> AsyncIterator[StartServer]:
    """``await start_server(recovery=True, max_disconnection_ms=300, skip_middlewares=True)``.

    Every server started is stopped at teardown (SIGTERM, then SIGKILL); a server also
    exits by itself when this process dies, since its stdin closes.
    """
    servers: list[NodeServer] = []

    async def start(
        *,
        recovery: bool = False,
        max_disconnection_ms: int = 120_000,
        skip_middlewares: bool = False,
    ) -> NodeServer:
        args = [f"--max-disconnection-ms={max_disconnection_ms}"]
        if recovery:
            args.append("--recovery")
        if skip_middlewares:
            args.append("--skip-middlewares")
        node = shutil.which("node")
        assert node is not None
        process = await asyncio.create_subprocess_exec(
            node,
            str(HERE / "server.js"),
            *args,
            cwd=HERE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(15):
                line = await process.stdout.readline()  # type: ignore[union-attr]
            port = int(json.loads(line)["port"])
        except (TimeoutError, ValueError, KeyError) as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise AssertionError(f"server.js did not report its port: {line!r}") from exc
        server = NodeServer(process, port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def _spawn(script: str, *args: str) -> NodeServer:
    """Run ``script`` with node; return once it printed its port."""
    node = shutil.which("node")
    assert node is not None
    process = await asyncio.create_subprocess_exec(
        node,
        str(HERE / script),
        *args,
        cwd=HERE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    line = b""
    try:
        async with asyncio.timeout(15):
            line = await process.stdout.readline()  # type: ignore[union-attr]
        port = int(json.loads(line)["port"])
    except (TimeoutError, ValueError, KeyError) as exc:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise AssertionError(f"{script} did not report its port: {line!r}") from exc
    return NodeServer(process, port)


StartWsServer = Callable[..., Awaitable[NodeServer]]


@pytest.fixture
async def start_ws_server(node_ready: None) -> AsyncIterator[StartWsServer]:
    """``await start_ws_server(ping_ms=200)``: the seed's ``ws`` server (ws_server.js).

    Its WebSocket URL is ``ws://127.0.0.1:<port>/``; every server started is stopped at
    teardown, and exits by itself when this process dies (its stdin closes).
    """
    servers: list[NodeServer] = []

    async def start(*, ping_ms: int = 30_000) -> NodeServer:
        server = await _spawn("ws_server.js", f"--ping-ms={ping_ms}")
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


class GatedTransport:
    """rtclient's Socket.IO transport (as generic mode builds it) behind a gate.

    While the gate is shut, connection attempts fail like an unreachable server, so a
    test can keep a client away for as long as it needs.
    """

    def __init__(self) -> None:
        self.inner = SocketIOTransport(welcome="synthesize", app_ping=False)
        self.open = asyncio.Event()
        self.open.set()
        self.refused = 0

    async def connect(self, url: str, *, token: str | None, open_timeout: float) -> Any:
        if not self.open.is_set():
            self.refused += 1
            raise TransportError("gate shut (test)")
        return await self.inner.connect(url, token=token, open_timeout=open_timeout)

"""A real ``redis-server`` for tests: started on a free loopback port, stopped on exit.

    async with RedisServer() as redis:
        node = FakeServer(redis_url=redis.url)
        ...
        await redis.restart()                 # same data set (kept in memory by a SAVE)
        await redis.restart(keep_data=False)  # the data set is lost: a new epoch

Nothing is written outside a temporary folder of its own; persistence is off unless a
restart asks to keep the data.  See :mod:`.programs` for how the program is found.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from .cluster_node import die_with_parent
from .programs import free_port, require_program
from .waiting import wait_until

__all__ = ["RedisServer"]

START_TIMEOUT = 10.0


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1``; ``url`` is ``redis://127.0.0.1:PORT/0``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._program = require_program("redis-server")
        self._dir = Path(tempfile.mkdtemp(prefix="rtclient-redis-"))
        self._process: asyncio.subprocess.Process | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisServer({self.url}, {state})"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def start(self, *, load: bool = False) -> None:
        """Start the server; with ``load``, from the dump a :meth:`restart` saved."""
        if self.running:
            return
        dump = self._dir / "dump.rdb"
        if not load:
            dump.unlink(missing_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            self._program,
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self._dir),
            "--dbfilename",
            "dump.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent(),  # a killed test runner leaves no redis-server
        )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        async def ready() -> bool:
            process = self._process
            if process is None or process.returncode is not None:
                err = b""
                if process is not None and process.stderr is not None:
                    err = await process.stderr.read()
                raise RuntimeError(f"redis-server exited at start: {err.decode(errors='replace')}")
            with contextlib.suppress(OSError):
                return await self._ping()
            return False

        await wait_until(
            ready,
            START_TIMEOUT,
            interval=0.02,
            message=f"redis-server on port {self.port} answering PING",
        )

    async def _ping(self) -> bool:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 1.0)
            return line.startswith(b"+PONG")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def command(self, *args: str) -> bytes:
        """Send one command (inline form) and return the first reply line."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write((" ".join(args) + "\r\n").encode())
            await writer.drain()
            return await asyncio.wait_for(reader.readline(), 5.0)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _shutdown_saving(self) -> None:
        """``SHUTDOWN SAVE``: stop taking writes, save, exit — nothing acknowledged is lost.

        (A ``SAVE`` and then a kill would lose every write between the two.)
        """
        process = self._process
        if process is None:
            return
        reply = await self.command("SHUTDOWN", "SAVE")
        try:
            await asyncio.wait_for(process.wait(), START_TIMEOUT)
        except TimeoutError:
            raise RuntimeError(f"redis SHUTDOWN SAVE did not stop the server: {reply!r}") from None
        if process.returncode != 0:
            raise RuntimeError(f"redis SHUTDOWN SAVE failed ({process.returncode}): {reply!r}")

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); the data set is not saved."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5.0)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def kill(self) -> None:
        """SIGKILL the server: its data set is lost."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.kill()
        await process.wait()

    async def restart(self, *, keep_data: bool = True, downtime: float = 0.0) -> None:
        """Restart on the same port; ``keep_data=False`` loses the data set (a new epoch)."""
        if keep_data and self.running:
            await self._shutdown_saving()
        await self.kill()
        if downtime > 0:
            await asyncio.sleep(downtime)
        await self.start(load=keep_data)

"""A real ``nats-server`` for tests: JetStream and a WebSocket listener, on free ports.

    async with NatsServer(token="s3cret") as nats:
        await nats.request("$JS.API.STREAM.CREATE.CHAT", {"name": "CHAT", "subjects": ["chat.>"]})
        client = Client(nats.ws_url, protocol="generic", adapter=NatsJetStream("CHAT"), token=...)

The server stores its streams in a temporary folder of its own, removed on exit.
:meth:`NatsServer.request` speaks NATS over a plain TCP connection (the server's side
of the test: creating streams, reading what a stream holds), not over WebSocket.
See :mod:`.programs` for how the program is found (``nats-server``, Debian's package).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ..adapters.nats_wire import Message, NatsReader
from .programs import free_port, require_program
from .waiting import wait_until

__all__ = ["NatsServer"]

START_TIMEOUT = 10.0


class NatsServer:
    """One ``nats-server`` on ``127.0.0.1`` with JetStream; ``ws_url`` is its WebSocket."""

    def __init__(self, *, token: str | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.token = token
        self.port = free_port(host)
        self.ws_port = free_port(host)
        self._program = require_program("nats-server")
        self._dir = Path(tempfile.mkdtemp(prefix="rtclient-nats-"))
        self._process: asyncio.subprocess.Process | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/"

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

    async def start(self) -> None:
        """Write the configuration and start the server; return once it answers."""
        store = json.dumps(str(self._dir / "jetstream"))
        config = [
            f"listen: {self.host}:{self.port}",
            f"jetstream {{ store_dir: {store}, max_memory_store: 67108864,"
            " max_file_store: 268435456 }",
            f'websocket {{ listen: "{self.host}:{self.ws_port}", no_tls: true }}',
        ]
        if self.token:
            config.append(f"authorization {{ token: {json.dumps(self.token)} }}")
        path = self._dir / "nats.conf"
        path.write_text("\n".join(config) + "\n")
        self._process = await asyncio.create_subprocess_exec(
            self._program,
            "-c",
            str(path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        process = self._process

        async def ready() -> bool:
            if process.returncode is not None:
                err = await process.stderr.read() if process.stderr else b""
                raise RuntimeError(f"nats-server exited at start: {err.decode(errors='replace')}")
            with contextlib.suppress(OSError, TimeoutError):  # (its own request timeout)
                await self.request("$JS.API.INFO", None)
                return True
            return False

        await wait_until(
            ready,
            START_TIMEOUT,
            interval=0.05,
            message=f"nats-server on port {self.port} answering JetStream INFO",
        )

    async def request(self, subject: str, payload: Any, *, timeout: float = 5.0) -> Any:
        """Publish ``payload`` (JSON) with a reply subject; return the JSON answer."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        parser = NatsReader()
        try:
            connect: dict[str, Any] = {"verbose": False, "pedantic": False, "headers": True}
            if self.token:
                connect["auth_token"] = self.token
            body = b"" if payload is None else json.dumps(payload).encode()
            writer.write(
                b"CONNECT " + json.dumps(connect).encode() + b"\r\n"
                b"SUB _INBOX.test 1\r\n"
                + f"PUB {subject} _INBOX.test {len(body)}\r\n".encode()
                + body
                + b"\r\n"
            )
            await writer.drain()
            async with asyncio.timeout(timeout):
                while True:
                    data = await reader.read(65536)
                    if not data:
                        raise OSError("nats-server closed the connection")
                    for op in parser.feed(data):
                        if isinstance(op, Message):
                            return json.loads(op.payload) if op.payload else None
                        if op.name == "PING":
                            writer.write(b"PONG\r\n")
                        elif op.name == "-ERR":
                            raise OSError(f"nats-server: {op.arg}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def stream_count(self, stream: str) -> int:
        """How many messages the stream holds."""
        info = await self.request(f"$JS.API.STREAM.INFO.{stream}", None)
        count: int = info["state"]["messages"]
        return count

    async def stream_messages(self, stream: str) -> list[tuple[int, Any]]:
        """Every message the stream holds: (sequence, JSON data), in order."""
        info = await self.request(f"$JS.API.STREAM.INFO.{stream}", None)
        state = info["state"]
        out: list[tuple[int, Any]] = []
        for seq in range(state["first_seq"], state["last_seq"] + 1):
            reply = await self.request(f"$JS.API.STREAM.MSG.GET.{stream}", {"seq": seq})
            message = reply.get("message")
            if message is not None:
                out.append((seq, json.loads(base64.b64decode(message["data"]))))
        return out

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5.0)
        except TimeoutError:
            process.kill()
            await process.wait()

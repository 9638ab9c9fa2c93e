"""fake_server.listening: stop_site finds aiohttp's asyncio server (or fails loudly), and
stop_accepting covers Unix-socket servers as well as TCP ones."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest
from aiohttp import web

from fake_server.listening import stop_accepting, stop_site

from ..leaks import ACCEPT_STEPS, no_resource_warnings


async def _runner() -> web.AppRunner:
    runner = web.AppRunner(web.Application())
    await runner.setup()
    return runner


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_stop_site_stops_accepting_on_the_sites_asyncio_server(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiohttp keeps a site's server in the private BaseSite._server: if that moved, the
    # fix would silently not run. Here it must run, on each kind of site fake_server uses.
    seen: list[asyncio.AbstractServer] = []

    async def spy(server: asyncio.AbstractServer) -> None:
        seen.append(server)
        await stop_accepting(server)

    monkeypatch.setattr("fake_server.listening.stop_accepting", spy)
    runner = await _runner()
    try:
        site: web.BaseSite
        if kind == "tcp":
            site = web.TCPSite(runner, "127.0.0.1", 0)
        else:
            site = web.UnixSite(runner, str(tmp_path / "s"))
        await site.start()
        await stop_site(site)
        assert len(seen) == 1 and isinstance(seen[0], asyncio.AbstractServer)
        assert not seen[0].is_serving()
    finally:
        await runner.cleanup()


async def test_stop_site_fails_loudly_without_an_asyncio_server() -> None:
    runner = await _runner()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        try:
            del site._server  # as if an aiohttp release had renamed it
            with pytest.raises(TypeError, match="does not know this aiohttp"):
                await stop_site(site)
        finally:
            site._server = server
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("steps", ACCEPT_STEPS)
async def test_a_unix_connection_accepted_as_the_server_stops_reaches_its_callback(
    steps: int, tmp_path: Path
) -> None:
    path = str(tmp_path / "s")
    writers: list[asyncio.StreamWriter] = []

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    with no_resource_warnings():
        server = await asyncio.start_unix_server(accepted, path)
        client = socket.socket(socket.AF_UNIX)
        try:
            client.connect(path)  # completes at once: the kernel queues it
            client.setblocking(False)
            for _ in range(steps):
                await asyncio.sleep(0)
            await stop_accepting(server)
            server.close()
            for writer in writers:
                writer.close()
            await server.wait_closed()
            # Accepted (its callback ran and closed it) or never accepted (gone with the
            # listening socket): either way the client hears the end, it does not wait.
            async with asyncio.timeout(5):
                with contextlib.suppress(ConnectionError):
                    assert await asyncio.get_running_loop().sock_recv(client, 1) == b""
            assert len(writers) <= 1
        finally:
            client.close()

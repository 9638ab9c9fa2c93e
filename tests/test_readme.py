"""Every Python block of README.md runs, each in the setting its text describes.

The blocks are extracted here (a fenced block opened with "```python"), and each has
a runner below: the number of runners must match the number of blocks, so a new block
needs one. No Markdown-testing library is used: pytest-examples and
pytest-markdown-docs run a block as it is, but these blocks need a server of their
own, a URL swapped in, a forced reconnect while one runs, or a pytest run in strict
mode, which is the code here either way; the extraction is a regular expression.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fake_server import FakeServer
from rtclient import Client
from rtclient.testing import wait_until
from rtclient.testing.plugin import need_program

from .integration.test_generic_mode import PlainServer

README = Path(__file__).parent.parent / "README.md"
BLOCKS = [
    m.group(1) for m in re.finditer(r"^```python\n(.*?)^```$", README.read_text(), re.M | re.S)
]


async def run_with_top_level_await(source: str, namespace: dict[str, Any]) -> None:
    code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if result is not None:
        await result


def block(*words: str) -> str:
    """The one block that holds all of ``words``."""
    found = [b for b in BLOCKS if all(w in b for w in words)]
    assert len(found) == 1, f"{len(found)} README blocks hold {words}"
    return found[0]


def test_every_block_has_a_runner() -> None:
    assert len(BLOCKS) == 9, "a README block was added or removed: give it a runner here"


async def test_using_it_keeps_running_through_a_reconnect() -> None:
    # Was: the loop raised AttributeError on the first StateChanged after a drop.
    source = block("async for event in client.events()")
    async with FakeServer(admin_token="readme-admin") as server:
        port = server.ws_url.split(":")[2].split("/")[0]
        program = source.replace("127.0.0.1:8765", f"127.0.0.1:{port}")
        bot = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            program,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "RTCLIENT_ADMIN_TOKEN": "readme-admin"},
        )
        assert bot.stdout is not None and bot.stderr is not None
        seen: list[str] = []

        async def read_until(text: str) -> None:
            async with asyncio.timeout(20):
                while not any(text in line for line in seen):
                    line = await bot.stdout.readline()  # type: ignore[union-attr]
                    assert line, "the README's program ended: " + "".join(seen)
                    seen.append(line.decode())

        try:
            bob = Client(server.ws_url, token=server.issue_token("bob"))
            async with bob:
                await bob.join("lobby")
                await read_until("fire and forget")  # the loop is running
                await bob.send("lobby", "before the drop")
                await read_until("bob before the drop")
                await server.drop_connections()  # the forced reconnect
                await read_until("recovering -> connected")
                await bob.send("lobby", "after the drop")
                await read_until("bob after the drop")
        finally:
            bot.kill()
            await bot.wait()
        err = (await bot.stderr.read()).decode()
        assert "Traceback" not in err, err
        assert any(line.startswith("connected -> reconnecting") for line in seen), seen


async def test_quality_snippet(tmp_path: Path) -> None:
    source = block('client.on("quality"')
    printed: list[str] = []
    async with (
        FakeServer() as server,
        Client(server.ws_url, token=server.issue_token("q"), ping_interval=0.05) as c,
    ):
        namespace = {"client": c, "print": lambda *a: printed.append(" ".join(map(str, a)))}
        await run_with_top_level_await(source, namespace)
        await wait_until(lambda: any(p.startswith("unknown -> good") for p in printed), 10)
    assert printed[0].startswith("QualitySnapshot(")


async def test_generic_socketio_snippet() -> None:
    source = block('protocol="generic"')
    server = PlainServer()
    await server.start()
    try:
        printed: list[str] = []
        namespace: dict[str, Any] = {
            "Client": Client,
            "get_token": lambda: "good",
            "print": lambda *a: printed.append(" ".join(map(str, a))),
        }
        program = source.replace("127.0.0.1:3000", f"127.0.0.1:{server.port}")
        await run_with_top_level_await(program, namespace)
    finally:
        await server.stop()
    assert printed[0].startswith("{'text': 'hi', 'messageId': ")
    assert printed[1] == "False"


async def test_store_snippet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = block('store="bot.db"')
    monkeypatch.chdir(tmp_path)
    async with FakeServer() as server:
        namespace: dict[str, Any] = {
            "Client": Client,
            "url": server.ws_url,
            "token": server.issue_token("bot"),
        }
        await run_with_top_level_await(source, namespace)
        await wait_until(lambda: len(server.room_events("lobby")) == 1, 10)
    assert namespace["message_id"] == server.room_events("lobby")[0]["messageId"]


PYTEST_ARGS = ("-p", "no:cacheprovider", "test_readme_example.py")


def test_testing_example_passes_in_strict_mode(tmp_path: Path) -> None:
    (tmp_path / "test_readme_example.py").write_text(block("make_rt_client"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-o", "asyncio_mode=strict", *PYTEST_ARGS],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in result.stdout


@pytest.mark.cluster
def test_cluster_example_passes_in_strict_mode(tmp_path: Path) -> None:
    need_program("redis-server")
    (tmp_path / "test_readme_example.py").write_text(block("rt_cluster.kill"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-o", "asyncio_mode=strict", *PYTEST_ARGS],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in result.stdout


async def test_fake_server_snippet() -> None:
    source = block("from fake_server import FakeServer", "set_latency")
    await run_with_top_level_await(source, {"Client": Client})


async def test_failover_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    source = block("url_order=", "a.drain(")
    namespace: dict[str, Any] = {}
    await run_with_top_level_await(source, namespace)
    first, moved = capsys.readouterr().out.splitlines()
    b = namespace["b"]
    assert first == namespace["a"].ws_url
    assert moved == f"{b.ws_url} 1 1"  # on b, one failover, one drain
    assert namespace["ack"].duplicate is False


async def test_hostile_server_example() -> None:
    source = block("HostileServer()", "async def test_my_bot")
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    await namespace["test_my_bot_survives_a_lost_ack_and_a_garbage_frame"]()

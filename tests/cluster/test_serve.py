"""``rtclient serve --redis`` as real processes: two nodes, one Redis, one room."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from fake_server.auth import TokenAuthority
from fake_server.cli import main
from rtclient.testing.redis_server import RedisServer

from ..server.conftest import SECRET
from ..server.helpers import bearer, open_ws

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def serve(redis_url: str, node_id: str) -> AsyncIterator[int]:
    """Run ``rtclient serve --redis`` until the block ends (SIGTERM); yield its port."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    args = ["--port", "0", "--redis", redis_url, "--node-id", node_id, "--secret", SECRET]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from rtclient.cli import main; sys.exit(main())",
        "serve",
        *args,
        "--admin-token",
        "a",
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    try:
        banner = ""
        async with asyncio.timeout(15):
            while "Ctrl-C" not in banner:
                line = (await proc.stdout.readline()).decode()
                assert line, f"process ended early: {banner}"
                banner += line
        assert f"cluster node {node_id} on redis" in banner
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", banner)
        assert match, banner
        yield int(match.group(1))
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(15):
            _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()


async def test_two_serve_processes_share_a_room(redis: RedisServer) -> None:
    authority = TokenAuthority(SECRET, leeway=0.0)

    def token(user: str) -> str:
        return authority.issue(user, now=time.time(), ttl=60.0)

    async with serve(redis.url, "a") as port_a, serve(redis.url, "b") as port_b:
        alice = await open_ws(f"ws://127.0.0.1:{port_a}/ws", bearer(token("alice")))
        bob = await open_ws(f"ws://127.0.0.1:{port_b}/ws", bearer(token("bob")))
        try:
            epoch = (await alice.expect("connected"))["epoch"]
            assert (await bob.expect("connected"))["epoch"] == epoch
            await alice.join("lobby")
            await bob.join("lobby")
            ack = await alice.say("lobby", "hi", id="m1")
            got = await bob.expect("chat:message")
            assert (got["eventId"], got["text"]) == (ack["eventId"], "hi") == (1, "hi")
            again = await bob.say("lobby", "hi", id="m1")  # bob's own id: a new message
            assert again["eventId"] == 2
            page = await bob.ok("sync:messages", {"roomId": "lobby", "lastEventId": 0})
            assert [e["eventId"] for e in page["events"]] == [1, 2]
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port_b}/health") as resp,
            ):
                health = await resp.json()
            assert health["node"] == "b" and health["redis"]["reachable"] is True
        finally:
            await alice.ws.close()
            await bob.ws.close()


def test_serve_refuses_a_bad_redis_url_or_node_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--redis", "http://nope", "--ephemeral", "--port", "0"]) == 2
    assert "--redis" in capsys.readouterr().err
    assert main(["--redis", "redis://127.0.0.1:1/0", "--node-id", "a|b", "--ephemeral"]) == 2
    assert "--node-id" in capsys.readouterr().err


def test_serve_says_so_when_redis_does_not_answer(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--redis", "redis://127.0.0.1:1/0", "--ephemeral", "--port", "0"])
    assert code == 1
    assert "cannot reach redis" in capsys.readouterr().err

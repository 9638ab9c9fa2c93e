"""Nothing lost when the bot itself restarts: Client(store=...) end to end."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState
from rtclient.store import MemoryStore, StoreLocked
from rtclient.testing import wait_until

from .conftest import GatedTransport, MakeClient, Recorder

FAST = Backoff(base=0.01, cap=0.1, stable_after=0.3)
BOT = Path(__file__).with_name("store_bot.py")


async def test_queued_messages_and_rooms_survive_a_restart(
    server: FakeServer, tmp_path: Path
) -> None:
    path = str(tmp_path / "bot.db")
    token = server.issue_token("bot")
    gate = GatedTransport()
    gate.wrap("websocket")
    first = Client(server.ws_url, token=token, store=path, backoff=FAST, transport=gate)
    await first.connect()
    await first.join("lobby")
    gate.cut()
    await first.wait_for(ConnectionState.RECONNECTING)
    ids = [await first.enqueue("lobby", f"offline-{i}") for i in range(20)]
    await first.close(flush=False)  # the process goes away with 20 unsent messages

    second = Client(server.ws_url, token=token, store=path, backoff=FAST)
    assert second.rooms == []
    await second.connect()
    assert second.rooms == ["lobby"]  # rejoined from the store, no join() call
    await wait_until(lambda: len(server.room_events("lobby")) == 20)
    await second.close()
    assert [e["messageId"] for e in server.room_events("lobby")] == ids
    assert second.stats()["queued"] == 0

    third = Client(server.ws_url, token=token, store=path, backoff=FAST)
    await third.connect()
    assert third.stats()["queued"] == 0  # acknowledged messages left the store
    await third.close()


async def test_a_message_committed_before_the_crash_is_not_doubled(
    server: FakeServer, tmp_path: Path
) -> None:
    path = str(tmp_path / "bot.db")
    token = server.issue_token("bot")
    first = Client(server.ws_url, token=token, store=path, backoff=FAST, ack_timeout=30)
    await first.connect()
    await first.join("lobby")
    await server.lose_next_acks(1)
    message_id = await first.enqueue("lobby", "committed, ack lost")
    await wait_until(lambda: len(server.room_events("lobby")) == 1)
    await first.close(flush=False)  # crash before the ack

    second = Client(server.ws_url, token=token, store=path, backoff=FAST)
    await second.connect()
    await wait_until(lambda: second.stats()["duplicate_acks"] == 1)
    await second.close()
    assert [e["messageId"] for e in server.room_events("lobby")] == [message_id]


async def test_cursor_resume_delivers_what_was_missed_once(
    server: FakeServer, make_client: MakeClient, tmp_path: Path
) -> None:
    path = str(tmp_path / "reader.db")
    token = server.issue_token("reader")
    writer = await make_client("writer", rooms=("news",))
    reader = Client(server.ws_url, token=token, store=path, backoff=FAST)
    seen = Recorder(reader)
    await reader.connect()
    await reader.join("news")
    for i in range(3):
        await writer.send("news", f"before-{i}")
    await wait_until(lambda: len(seen.messages) == 3)
    await reader.close()
    for i in range(25):  # broadcast while the reader process is down
        await writer.send("news", f"missed-{i}")

    again = Client(server.ws_url, token=token, store=path, backoff=FAST, sync_page_size=10)
    seen_again = Recorder(again)
    await again.connect()
    await wait_until(lambda: len(seen_again.messages) == 25)
    await writer.send("news", "live")
    await wait_until(lambda: len(seen_again.messages) == 26)
    await again.close()
    assert seen_again.texts() == [f"missed-{i}" for i in range(25)] + ["live"]
    assert all(m.replayed for m in seen_again.messages[:25])


async def test_one_store_per_client_identity(server: FakeServer, tmp_path: Path) -> None:
    path = str(tmp_path / "bot.db")
    token = server.issue_token("bot")
    first = Client(server.ws_url, token=token, store=path, backoff=FAST)
    await first.connect()
    second = Client(server.ws_url, token=token, store=path, backoff=FAST)
    with pytest.raises(StoreLocked):
        await second.connect()
    await first.close()


async def test_memory_store_object(server: FakeServer) -> None:
    store = MemoryStore()
    client = Client(server.ws_url, token=server.issue_token("a"), store=store, backoff=FAST)
    await client.connect()
    await client.join("x")
    await client.send("x", "hi")
    await client.close()


async def test_sigkilled_bot_loses_nothing_and_doubles_nothing(
    server: FakeServer, tmp_path: Path
) -> None:
    """Kill a queueing bot at random points; a fresh process delivers every message once."""
    rng = random.Random(int(os.environ.get("RT_KILL_SEED", "20261125")))
    env = {**os.environ, "RT_TOKEN": server.issue_token("bot", ttl=600)}
    printed: list[str] = []
    kills = 0
    for round_ in range(4):
        path = str(tmp_path / f"bot{round_}.db")
        await server.reject_handshakes(10**6, 503)  # the bot queues offline
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(BOT),
            server.ws_url,
            path,
            "queue",
            "400",
            "kills",
            stdout=subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None
        target = rng.randint(1, 300)
        got: list[str] = []
        async with asyncio.timeout(20):
            while len(got) < target:
                line = (await proc.stdout.readline()).decode().strip()
                if not line or line == "done":
                    break
                got.append(line)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        kills += 1
        printed += got
        await server.reject_handshakes(0, 503)
        drain = await asyncio.create_subprocess_exec(
            sys.executable, str(BOT), server.ws_url, path, "drain", env=env
        )
        async with asyncio.timeout(30):
            assert await drain.wait() == 0
    logged = [e["messageId"] for e in server.room_events("kills")]
    assert set(printed) <= set(logged), "a message reported durable was lost"
    assert len(logged) == len(set(logged)), "a message was delivered twice"
    print(
        f"\n[store] {kills} SIGKILLs, {len(printed)} durable messages, "
        f"{len(logged)} delivered, lost 0, duplicated 0"
    )

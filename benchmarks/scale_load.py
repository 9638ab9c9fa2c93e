"""One client process of the scale benchmark: ``python -m benchmarks.scale_load '<spec>'``.

It holds ``count`` rtclients (numbers ``first`` .. ``first + count - 1`` of ``total``)
on one event loop, each joined to its rooms (:func:`rooms_of`), and records what each
one sends, gets acknowledged, delivers and goes through (a chaos ``History``, stamped
with ``time.monotonic()``: one clock for every process of the machine). The
coordinator (``benchmarks.scale``) drives it with one line at a time on stdin and reads
one line back on stdout:

- (start) → ``READY <seconds to connect>``: every client connected and in its rooms;
- ``go`` → ``GOING``: each client sends to its first room, ``rate`` messages/s with
  random spacing, whatever its state (offline sends wait in its outbox);
- ``stop`` → ``SETTLED <json>``: senders stopped, every client CONNECTED with an empty
  outbox (or ``settle`` seconds passed); the JSON holds the rooms' heads this process
  saw acknowledged;
- ``heads <json>`` (every process's heads, merged) → ``DONE <path>``: every client has
  delivered each room's head (or ``settle`` seconds passed); the records and each
  client's stats are written to ``path`` (JSON) and the clients closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from typing import Any, TypedDict

from rtclient import Client
from rtclient.errors import RequestRejected
from rtclient.events import ConnectionState
from rtclient.testing.chaos.history import Delivered, History, Record

from .harness import Token
from .scale_metrics import Head, encode, heads
from .server import die_with_parent, raise_nofile

__all__ = ["LoadSpec", "main", "rooms_of"]

JOIN_ATTEMPTS = 8


class LoadSpec(TypedDict):
    urls: list[str]
    first: int
    count: int
    total: int
    room_size: int
    """Clients per room (each client is in two rooms: see :func:`rooms_of`)."""
    rate: float
    """Messages/s per client."""
    run: str
    """Prefix of room names and users: a run never meets an earlier run's rooms."""
    settle: float
    connect_concurrency: int
    seed: int
    secret: str
    """The nodes' token secret."""


def rooms_of(i: int, total: int, room_size: int, run: str) -> list[str]:
    """Client ``i``'s rooms: ``i mod R`` and ``(i div room_size) mod R`` (R = rooms).

    Each room then has about ``2 * room_size`` members, spread over every client
    process (the first rule strides across the whole range of clients).
    """
    count = max(1, total // room_size)
    names = [f"{run}-r{i % count}", f"{run}-r{(i // room_size) % count}"]
    return list(dict.fromkeys(names))


def urls_of(i: int, urls: list[str]) -> str | list[str]:
    """Client ``i``'s URL, or its list of URLs rotated by ``i``: with a client that tries
    its list in order, the clients still start spread over every node."""
    if len(urls) == 1:
        return urls[0]
    k = i % len(urls)
    return urls[k:] + urls[:k]


class Load:
    """The process's clients and their history."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.history = History()
        self.clients: dict[str, Client] = {}
        self.rooms: dict[str, list[str]] = {}
        self.rng = random.Random(spec["seed"] + spec["first"])
        self.token = Token(spec["secret"])
        self.pending: set[asyncio.Task[None]] = set()
        """``History.send`` tasks: each ends with its ack (or the client's close)."""
        self.last: dict[tuple[str, str], tuple[str | None, int]] = {}
        """Each client's last delivered (epoch, event id) per room."""
        self.history.listeners.append(self._seen)
        self.join_retries = 0
        """Joins the server refused with INTERNAL ("send again later") and were retried."""

    def _seen(self, record: Record) -> None:
        if isinstance(record, Delivered):
            self.last[record.client, record.room] = (record.epoch, record.event_id)

    async def connect(self) -> None:
        spec = self.spec
        gate = asyncio.Semaphore(spec["connect_concurrency"])

        async def one(i: int) -> None:
            name = f"{spec['run']}-c{i}"
            where: Any = urls_of(i, spec["urls"])  # a list: rtclient's failover across nodes
            client = Client(where, token=self.token(name, ttl=24 * 3600))
            self.history.watch(client, name)
            self.clients[name] = client
            self.rooms[name] = rooms_of(i, spec["total"], spec["room_size"], spec["run"])
            async with gate:
                await client.connect()
                for room in self.rooms[name]:
                    await self._join(client, room)
                    self.history.joined(name, room, 0, None)

        async with asyncio.TaskGroup() as group:
            for i in range(spec["first"], spec["first"] + spec["count"]):
                group.create_task(one(i))

    async def _join(self, client: Client, room: str) -> None:
        """``client.join(room)``, again after a rejection that says "later" (counted)."""
        for attempt in range(JOIN_ATTEMPTS):
            try:
                await client.join(room)
                return
            except RequestRejected as exc:
                if exc.code != "INTERNAL" or attempt == JOIN_ATTEMPTS - 1:
                    raise
                self.join_retries += 1
                await asyncio.sleep(self.rng.uniform(0.5, 1.5) * 0.2 * 2**attempt)

    async def send(self, stop: asyncio.Event) -> None:
        """Every client sends to its first room at ``rate``/s until ``stop``."""
        period = 1.0 / self.spec["rate"]

        async def sender(name: str, client: Client) -> None:
            room = self.rooms[name][0]
            n = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.rng.uniform(0, period)):
                    await stop.wait()  # a random phase: the clients do not send in step
            while not stop.is_set():
                task = asyncio.create_task(self.history.send(client, name, room, f"{name}:{n}"))
                self.pending.add(task)
                task.add_done_callback(self.pending.discard)
                n += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.rng.uniform(0.5, 1.5) * period):
                        await stop.wait()

        async with asyncio.TaskGroup() as group:
            for name, client in self.clients.items():
                group.create_task(sender(name, client))

    async def settle(self) -> dict[str, Head]:
        """Wait until every client is CONNECTED with an empty outbox; the heads seen."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.spec["settle"]):
                while not all(_idle(c) for c in self.clients.values()):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # polls the public state and stats()
        return heads(self.history.records)

    async def catch_up(self, top: dict[str, tuple[str | None, int]]) -> None:
        """Wait until every client has delivered each of its rooms' ``top`` event."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.spec["settle"]):
                while not self._caught_up(top):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # polls the history the handlers fill

    def _caught_up(self, top: dict[str, tuple[str | None, int]]) -> bool:
        return not self.behind(top)

    def behind(self, top: dict[str, tuple[str | None, int]]) -> list[str]:
        """The clients that have not delivered some room's ``top`` event yet."""
        return [
            name
            for name, rooms in self.rooms.items()
            if any(top.get(room) not in (None, self.last.get((name, room))) for room in rooms)
        ]

    async def close(self) -> None:
        """Close every client; a send still waiting then fails (and is recorded so)."""
        await asyncio.gather(
            *(c.close(flush=False) for c in self.clients.values()), return_exceptions=True
        )
        if self.pending:
            await asyncio.wait(self.pending, timeout=10.0)


def _idle(client: Client) -> bool:
    stats = client.stats()
    return client.state is ConnectionState.CONNECTED and not stats["queued"]


async def _line(reader: asyncio.StreamReader) -> str:
    line = await reader.readline()
    if not line:
        raise SystemExit("scale_load: the coordinator went away")
    return line.decode().strip()


def _say(text: str) -> None:
    print(text, flush=True)


async def _run(spec: LoadSpec) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    load = Load(spec)
    try:
        began = time.monotonic()
        await load.connect()
        _say(f"READY {time.monotonic() - began:.3f} {load.join_retries}")
        if await _line(reader) != "go":
            raise SystemExit("scale_load: expected 'go'")
        stop = asyncio.Event()
        sending = asyncio.create_task(load.send(stop))
        _say("GOING")
        if await _line(reader) != "stop":
            raise SystemExit("scale_load: expected 'stop'")
        stop.set()
        await sending  # the senders stop at once; their sends go on in ``pending``
        _say("SETTLED " + json.dumps(await load.settle()))
        words = (await _line(reader)).split(" ", 1)
        if words[0] != "heads":
            raise SystemExit("scale_load: expected 'heads'")
        top = {
            room: (epoch, event_id) for room, (_, epoch, event_id) in json.loads(words[1]).items()
        }
        await load.catch_up(top)
        behind = load.behind(top)
        stats = {name: client.stats() for name, client in load.clients.items()}
        states = {name: client.state.name for name, client in load.clients.items()}
    finally:
        await load.close()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as out:
        data = {"records": encode(load.history.records), "stats": stats, "states": states}
        json.dump({**data, "behind": behind}, out)
    _say(f"DONE {out.name}")


def main() -> None:
    spec: LoadSpec = json.loads(sys.argv[1])
    die_with_parent()
    raise_nofile()
    asyncio.run(_run(spec))


if __name__ == "__main__":
    main()

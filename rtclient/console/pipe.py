"""``rtclient chat`` for scripts: stdin lines are sent, everything comes out as JSON lines.

Each non-blank input line is sent to the first ``--room``. Stdout gets one JSON object
per line: every server event (``{"event": "chat:message", "room", "from", "text",
"eventId", "replayed", …}``), every state change, gap, quality change and error, and
for each input line an ``ack`` (or ``failed``) record. At end of input the outbox is
flushed (``close(flush=True)``) and the exit status is 0 if every line was
acknowledged, 1 otherwise or on a fatal error (described on stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from ..client import Client
from ..errors import ClientClosed, RequestRejected, RtClientError
from ..events import ConnectionState, Delivered, StateChanged
from .lines import TooLong, read_stdin, too_long_text
from .render import ack_record, describe_error, failure_record, item_record, json_line

__all__ = ["pipe", "run_pipe"]

_KINDS = ("*", "state", "gap", "error", "quality")
_EOF = None


def _stdout_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run_pipe(args: argparse.Namespace) -> int:
    """``rtclient chat`` with stdin not a terminal; returns the exit status."""
    from .chat import open_client

    client = await open_client(args)
    if isinstance(client, int):
        return client
    queue: asyncio.Queue[str | TooLong | None] = asyncio.Queue()
    reader = asyncio.create_task(read_stdin(queue), name="rtclient stdin")
    try:
        return await pipe(client, args.room, queue, flush_timeout=args.flush_timeout)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def pipe(
    client: Client,
    rooms: list[str],
    lines: asyncio.Queue[str | TooLong | None],
    *,
    flush_timeout: float = 10.0,
    write: Callable[[str], None] = _stdout_line,
    error: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> int:
    """Send each line from ``lines`` (None ends them) to ``rooms[0]``; write JSON lines.

    The client connects and joins in the background, so input is read (and queued in
    the outbox) while the server cannot be reached. At the end of the lines the outbox
    is flushed for up to ``flush_timeout`` seconds. Returns the exit status; ``client``
    is closed when it returns.
    """
    fatal: list[BaseException] = []

    def record(item: Delivered) -> None:
        write(json_line(item_record(item)))
        if isinstance(item, StateChanged) and item.new is ConnectionState.CLOSED:
            if item.error is not None:
                fatal.append(item.error)
            lines.put_nowait(_EOF)  # stop reading: nothing more can be sent

    for kind in _KINDS:
        client.on(kind, record)
    await client.connect(wait=False)
    failures: list[str] = []

    async def join(room: str) -> None:
        try:
            await client.join(room)
        except ClientClosed:
            pass  # input ended (or a fatal error, reported as such) before the join
        except RtClientError as exc:
            if not fatal:
                failures.append(f"cannot join {room}: {describe_error(exc)}")
                write(json_line({"event": "error", "code": "JOIN", "message": failures[-1]}))

    joins = [asyncio.create_task(join(room)) for room in rooms]
    await asyncio.sleep(0)  # the rooms are the client's before the first line is sent

    async def deliver(text: str, number: int) -> bool:
        try:
            ack = await client.send(rooms[0], text)
        except RtClientError as exc:
            write(json_line(failure_record(rooms[0], text, number, exc)))
            return False
        write(json_line(ack_record(ack, text, number)))
        return True

    sends: list[asyncio.Task[bool]] = []
    refused = 0
    while (line := await lines.get()) is not _EOF:
        number = len(sends) + refused + 1
        if isinstance(line, TooLong):  # never sent: the server would refuse it
            refused += 1
            too_long = RequestRejected("TEXT_TOO_LONG", too_long_text(line.chars))
            write(json_line(failure_record(rooms[0], "", number, too_long)))
        elif line.strip() and client.state is not ConnectionState.CLOSED:
            sends.append(asyncio.create_task(deliver(line, number)))
            await asyncio.sleep(0)  # let it reach the outbox before close() looks there
    await client.close(flush=True, timeout=flush_timeout)
    delivered = await asyncio.gather(*sends)
    await asyncio.gather(*joins)
    if fatal:
        error(f"rtclient chat: {describe_error(fatal[0])}")
        return 1
    for failure in failures:
        error(f"rtclient chat: {failure}")
    undelivered = delivered.count(False) + refused
    if undelivered:
        error(f"rtclient chat: {undelivered} line(s) not delivered")
        return 1
    return 1 if failures else 0

"""What ``rtclient chat`` does between a Client and a screen, without the terminal.

:class:`ChatController` takes input lines (:meth:`~ChatController.handle_line`) and
keystrokes (:meth:`~ChatController.user_typed`), writes lines through ``out`` and
gives the toolbar's text (:meth:`~ChatController.toolbar`). The prompt_toolkit side is
in :mod:`.chat`; tests drive this class directly or through a pipe input.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from ..client import Client
from ..errors import RtClientError
from ..events import ConnectionState, Delivered, Event, StateChanged
from .commands import HELP, Command, Message, parse_line
from .lines import MAX_TEXT_CHARS, too_long_text
from .render import (
    ack_line,
    clip,
    describe_error,
    event_line,
    failure_line,
    item_line,
    paint,
    pending_line,
    shown,
)
from .status import (
    EchoFilter,
    LinkStatus,
    ToolbarFacts,
    TypingThrottle,
    TypingTracker,
    toolbar_text,
)

__all__ = ["ChatController"]

_KINDS = ("*", "state", "gap", "error", "quality")


class ChatController:
    """The interactive chat's logic. Call :meth:`start`, feed it lines, then :meth:`stop`.

    ``done`` is set when the user asked to quit or the client stopped for good (then
    ``fatal`` holds why). Every task it starts is ended by :meth:`stop`.
    """

    def __init__(
        self,
        client: Client,
        rooms: list[str],
        *,
        out: Callable[[str], None],
        invalidate: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        typing_interval: float = 2.0,
        request_timeout: float = 10.0,
        history: int = 10,
        colour: bool = False,
    ) -> None:
        self.client = client
        self.initial_rooms = list(dict.fromkeys(rooms))
        self.current: str | None = self.initial_rooms[0] if self.initial_rooms else None
        self.out = out
        self.invalidate = invalidate
        self.clock = clock
        self.request_timeout = request_timeout
        self.history = history
        self.colour = colour
        self.link = LinkStatus()
        self.typing = TypingTracker()
        self.throttle = TypingThrottle(interval=typing_interval)
        self.echoes = EchoFilter()
        self.done = asyncio.Event()
        self.fatal: BaseException | None = None
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen to the client, start connecting and join the rooms (in the background)."""
        for kind in _KINDS:
            self.client.on(kind, self._on_item)
        await self.client.connect(wait=False)
        for room in self.initial_rooms:
            self._spawn(self._join(room, announce=True))

    async def stop(self, *, flush_timeout: float = 2.0) -> None:
        """Close the client (flushing the outbox up to ``flush_timeout``), end every task."""
        await asyncio.sleep(0)  # sends just typed reach the outbox before close() looks
        await self.client.close(flush=True, timeout=flush_timeout)
        tasks = list(self._tasks)
        if tasks:  # closing settled every send, join and request: these end at once
            await asyncio.wait(tasks, timeout=1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for kind in _KINDS:
            self.client.off(kind, self._on_item)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def say(self, line: str) -> None:
        """Write ``line`` above the prompt."""
        self.out(line)
        self.invalidate()

    # -- what the user does --------------------------------------------------------------

    def handle_line(self, line: str) -> None:
        """Act on an entered line: send it, or run the command (slow ones in the background)."""
        parsed = parse_line(line)
        if parsed is None:
            return
        if isinstance(parsed, Message):
            self.send(parsed.text)
        else:
            self.command(parsed)

    def user_typed(self, text: str) -> None:
        """The input buffer changed: tell the room we are typing, at most every few seconds."""
        room = self.current
        if room is None or not text.strip() or (text.startswith("/") and not text.startswith("//")):
            return
        if self.client.state is ConnectionState.CONNECTED and self.throttle.should_send(
            self.clock()
        ):
            self.client.typing(room)

    def send(self, text: str) -> None:
        """Send ``text`` to the current room: a pending line now, ✓ or ✗ when settled."""
        room = self.current
        if room is None:
            self.say("· no room to talk in: /join one first")
            return
        if len(text) > MAX_TEXT_CHARS:
            self.say(f"✗ not sent: {too_long_text(len(text))}  [{room}] {clip(text)}")
            return
        online = self.client.state is ConnectionState.CONNECTED
        if self.throttle.reset() and online:
            self.client.typing(room, False)
        self.echoes.sent()
        self.say(pending_line(room, text, online=online))
        self._spawn(self._deliver(room, text))

    async def _deliver(self, room: str, text: str) -> None:
        try:
            ack = await self.client.send(room, text)
        except RtClientError as exc:
            self.failed += 1
            released = self.echoes.settled(None)
            self.say(failure_line(room, text, exc))
        else:
            released = self.echoes.settled(ack.message_id)
            self.say(ack_line(ack, text))
        for event in released:
            self._show_event(event)

    def command(self, command: Command) -> None:
        """Run a parsed ``/command``."""
        if command.error is not None:
            self.say(f"· {command.error}")
            return
        name, arg = command.name, command.arg
        if name == "help":
            self.say("commands:\n" + HELP)
        elif name == "quit":
            self.done.set()
        elif name == "rooms":
            rooms = self.client.rooms
            listed = [f"{r} (current)" if r == self.current else r for r in rooms]
            self.say(f"· rooms: {', '.join(listed) or 'none'}")
        elif name == "room":
            assert arg is not None
            if arg in self.client.rooms:
                self.current = arg
                self.say(f"· talking in {arg}")
            else:
                self.say(f"· not in {arg}: /join {arg}")
        elif name == "join":
            assert arg is not None
            self.current = arg
            self._spawn(self._join(arg, announce=True))
        elif name == "leave":
            room = arg or self.current
            if room is None or room not in self.client.rooms:
                self.say(f"· not in {room or 'any room'}")
                return
            if room == self.current:
                others = [r for r in self.client.rooms if r != room]
                self.current = others[0] if others else None
            self._spawn(self._leave(room))
        elif name == "dm":
            assert arg is not None and command.text is not None
            if len(command.text) > MAX_TEXT_CHARS:
                self.say(f"✗ not sent: {too_long_text(len(command.text))}")
                return
            self.say(pending_line(f"dm → {arg}", command.text, online=self._online()))
            self._spawn(self._direct(arg, command.text))
        elif name == "who":
            room = arg or self.current
            if room is None:
                self.say("· which room? /who ROOM")
                return
            self._spawn(self._who(room))
        self.invalidate()

    def _online(self) -> bool:
        return self.client.state is ConnectionState.CONNECTED

    async def _direct(self, user: str, text: str) -> None:
        try:
            ack = await self.client.send_direct(user, text)
        except RtClientError as exc:
            self.failed += 1
            self.say(failure_line(f"dm → {user}", text, exc))
            return
        self.say(f"✓ #{ack.event_id}  [dm → {user}] {clip(text)}")

    async def _history(self, room: str) -> None:
        """The room's last ``history`` messages from the server's log, marked as history.

        Events after the newest id of the first reply came live (we had joined by then).
        """
        try:
            async with asyncio.timeout(self.request_timeout):
                probe = await self.client.request(
                    "sync:messages", {"roomId": room, "lastEventId": 0, "limit": 1}
                )
                newest = int(probe.get("lastEventId") or 0)
                if newest == 0:
                    return
                after = max(0, newest - self.history)
                page = await self.client.request(
                    "sync:messages", {"roomId": room, "lastEventId": after, "limit": self.history}
                )
        except (RtClientError, TimeoutError, ValueError, TypeError):
            return  # history is a courtesy: the live chat goes on without it
        for data in page.get("events") or []:
            if not isinstance(data, dict) or not isinstance(data.get("eventId"), int):
                continue
            if data["eventId"] > newest:
                continue
            event = Event(
                "chat:message",
                data,
                room=room,
                event_id=data["eventId"],
                sender=data.get("from") or data.get("userId"),
            )  # not marked replayed: the line says "(history)" instead
            line = event_line(event)
            if line is not None:
                line = paint(line, event.sender, self.colour)
                self.say(self._stamped(event, line) + " (history)")

    def _stamped(self, event: Event, line: str) -> str:
        stamp = event.data.get("timestamp")
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            try:
                return time.strftime("%H:%M ", time.localtime(stamp)) + line
            except (OverflowError, OSError, ValueError):
                pass
        return line

    async def _join(self, room: str, *, announce: bool) -> None:
        try:
            members = await self.client.join(room, timeout=None)
        except RtClientError as exc:
            if self.current == room:
                others = [r for r in self.client.rooms if r != room]
                self.current = others[0] if others else None
            self.say(f"✗ cannot join {room}: {describe_error(exc)}")
            return
        if announce:
            self.say(f"· joined {room} ({len(members)} here: {shown(', '.join(members))})")
            if self.history > 0:
                await self._history(room)

    async def _leave(self, room: str) -> None:
        try:
            await self.client.leave(room)
        except RtClientError as exc:
            self.say(f"✗ cannot leave {room}: {describe_error(exc)}")
            return
        self.say(f"· left {room}" + (f"; talking in {self.current}" if self.current else ""))

    async def _who(self, room: str) -> None:
        try:
            async with asyncio.timeout(self.request_timeout):
                members = await self.client.members(room)
        except (RtClientError, TimeoutError) as exc:
            self.say(f"✗ /who {room}: {describe_error(exc)}")
            return
        self.say(f"· in {room}: {shown(', '.join(members)) or 'nobody'}")

    # -- what the client does ------------------------------------------------------------

    def _on_item(self, item: Delivered) -> None:
        now = self.clock()
        if isinstance(item, StateChanged):
            self.link.update(item, now)
            if item.new is ConnectionState.CLOSED:
                self.fatal = item.error
                self.done.set()
        if isinstance(item, Event):
            changed = self.typing.update(item, now)
            if changed and item.name.startswith("typing:"):
                self.invalidate()
            if not self.echoes.admit(item, self.client.user_id):
                return
            self._show_event(item)
            return
        line = item_line(item)
        if line is not None:
            if isinstance(item, StateChanged) and item.new is ConnectionState.CONNECTED:
                node = node_of(self.client)
                if node is not None:
                    line += f" to {node}"
                line += f" as {self.client.user_id}"
            self.say(line)
        else:
            self.invalidate()

    def _show_event(self, event: Event) -> None:
        line = event_line(event)
        if line is not None:
            if event.name in ("chat:message", "dm:message"):
                line = self._stamped(event, paint(line, event.sender, self.colour))
            self.say(line)

    def toolbar(self) -> str:
        """The bottom toolbar's text right now."""
        now = self.clock()
        return toolbar_text(
            ToolbarFacts(
                status=self.link.label(now),
                quality=self.client.quality,
                queued=self.client.stats()["queued"],
                room=self.current,
                user=self.client.user_id,
                typing=self.typing.typing(now),
                endpoint=node_of(self.client),
            )
        )


def node_of(client: Client) -> str | None:
    """The node the client is on (``host:port``) when it was given several URLs, else None."""
    if len(client.urls) < 2:
        return None
    return urlsplit(client.endpoint).netloc or client.endpoint

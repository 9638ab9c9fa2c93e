"""The rooms contract as a :class:`~rtclient.testing.HostileServer` speaks it by default.

Just enough of docs/protocol.md to get a client to CONNECTED and keep it there: the
welcome, ``room:join`` / ``room:leave`` / ``room:members`` acks, ``chat:send`` with a
per-room event log and a dedupe table by message id, paged ``sync:messages``,
``token:refresh``, ``ping``, typing and read receipts. No authentication, no rate
limits, no retention: a test scripts those misbehaviours itself. Everything here is
the well-behaved baseline a script departs from.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hostile import HostileServer, Request
    from .hostile_conn import HostileConnection

__all__ = ["RoomsContract"]


class RoomsContract:
    """Rooms, event logs and a dedupe table shared by every connection of one server.

    ``logs[room]`` holds the ``chat:message`` payloads in event-id order; a test may
    append to it (or read it) directly.
    """

    def __init__(self, server: HostileServer, *, epoch: str, sync_page_max: int) -> None:
        self._server = server
        self.epoch = epoch
        self.sync_page_max = sync_page_max
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self._acks: dict[str, dict[str, Any]] = {}

    def head(self, room: str) -> int:
        """The room's newest event id (0 when empty)."""
        log = self.logs.get(room)
        return int(log[-1]["eventId"]) if log else 0

    def append(
        self, room: str, text: str, *, sender: str = "someone", message_id: str = ""
    ) -> dict[str, Any]:
        """Add a message to the room's log; return its ``chat:message`` payload (not sent)."""
        event = {
            "roomId": room,
            "eventId": self.head(room) + 1,
            "epoch": self.epoch,
            "messageId": message_id or f"m-{room}-{self.head(room) + 1}",
            "from": sender,
            "text": text,
            "timestamp": time.time(),
        }
        self.logs.setdefault(room, []).append(event)
        return event

    def sync_page(self, room: str, after: int, limit: int) -> dict[str, Any]:
        """The contract's sync reply for events after ``after`` (at most ``limit``)."""
        log = self.logs.get(room, [])
        newer = [e for e in log if e["eventId"] > after]
        page = newer[: max(1, min(limit, self.sync_page_max))]
        return {
            "success": True,
            "roomId": room,
            "epoch": self.epoch,
            "events": page,
            "more": len(newer) > len(page),
            "truncated": False,
            "lastEventId": self.head(room),
        }

    def page(self, room: str, ids: list[int], **fields: Any) -> dict[str, Any]:
        """A made-up sync reply: the logged events ``ids``, in that order (holes allowed).

        ``fields`` override the rest (``more=True``, ``truncated=True``, ``epoch=…``)::

            srv.on("sync:messages", lambda c, r: c.ack(r, **srv.contract.page("lobby", [4, 2, 3])))
        """
        logged = {e["eventId"]: e for e in self.logs.get(room, [])}
        reply = {
            "success": True,
            "roomId": room,
            "epoch": self.epoch,
            "events": [logged[i] for i in ids if i in logged],
            "more": False,
            "truncated": False,
            "lastEventId": self.head(room),
        }
        return {**reply, **fields}

    async def answer(self, conn: HostileConnection, req: Request) -> None:
        """Answer ``req`` as a well-behaved server would."""
        payload = req.payload
        room = payload.get("roomId")
        match req.type:
            case "room:join":
                conn.rooms.add(str(room))
                await conn.ack(
                    req,
                    roomId=room,
                    members=[self._server.user_id],
                    epoch=self.epoch,
                    lastEventId=self.head(str(room)),
                )
            case "room:leave":
                conn.rooms.discard(str(room))
                await conn.ack(req, roomId=room)
            case "room:members":
                await conn.ack(req, roomId=room, members=[self._server.user_id])
            case "chat:send":
                await self._chat_send(conn, req)
            case "sync:messages":
                after = payload.get("lastEventId")
                limit = payload.get("limit")
                await conn.ack(
                    req,
                    **self.sync_page(
                        str(room),
                        after if isinstance(after, int) else 0,
                        limit if isinstance(limit, int) else 100,
                    ),
                )
            case "token:refresh":
                await conn.ack(req, expiresAt=time.time() + 3600)
            case "ping":
                if req.id is None:
                    await conn.emit("pong", {"ts": payload.get("ts"), "serverTime": time.time()})
                else:
                    await conn.ack(req, ts=payload.get("ts"), serverTime=time.time())
            case "typing:start" | "typing:stop" | "message:read":
                if req.id is not None:
                    await conn.ack(req, roomId=room)
            case _:
                await conn.reject(req, "UNKNOWN_TYPE", f"unknown request type {req.type!r}")

    async def _chat_send(self, conn: HostileConnection, req: Request) -> None:
        ack = await self.commit(req)
        if ack is None:
            await conn.reject(req, "BAD_REQUEST", "chat:send needs an id")
        else:
            await conn.ack(req, **ack)

    async def commit(self, req: Request) -> dict[str, Any] | None:
        """Carry out a ``chat:send`` without acknowledging it: log, broadcast; return the ack.

        A resend of a known message id is not logged again: its original ack comes back
        with ``duplicate: true``. None for a request without a message id. For hooks
        that lose acks: ``await srv.contract.commit(req); await conn.close(1012)``.
        """
        message_id = req.message_id
        if message_id is None:
            return None
        known = self._acks.get(message_id)
        if known is not None:
            return {**known, "duplicate": True}
        room = str(req.payload.get("roomId"))
        event = self.append(
            room, str(req.payload.get("text")), sender=self._server.user_id, message_id=message_id
        )
        ack = {
            "roomId": room,
            "eventId": event["eventId"],
            "messageId": message_id,
            "epoch": self.epoch,
            "timestamp": event["timestamp"],
            "duplicate": False,
        }
        self._acks[message_id] = ack
        for other in self._server.connections:
            if room in other.rooms and not other.closed:
                with contextlib.suppress(ConnectionError):  # a client that just left
                    await other.emit("chat:message", event)
        return ack

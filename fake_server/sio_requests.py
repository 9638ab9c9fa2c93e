"""Socket.IO events → hub requests, and their replies → Socket.IO acks.

An event ``name`` with (at most) one data argument becomes the raw protocol's request
of type ``name``; the hub carries it out exactly as for ``/ws``.  Differences in the
shape of the data (the seed's bare room id or token string, ``messageId`` inside the
data, the multi-room ``sync:messages``) are resolved here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import requests
from .envelope import MAX_ID_LENGTH, Request, check_numbers
from .errors import ErrorCode, RequestError

if TYPE_CHECKING:
    from .hub import Connection, Hub
    from .sio_peer import SioPeer

__all__ = ["decode", "handle_event"]

log = logging.getLogger("fake_server.sio")

ROOM_EVENTS = frozenset({"room:join", "room:leave", "room:members", "typing:start", "typing:stop"})
"""Events whose data may be the bare room id (``emit("room:join", "lobby")``)."""
MESSAGE_EVENTS = frozenset({"chat:send", "dm:send"})
"""Events whose data must carry ``messageId`` (the idempotency key)."""
MAX_SYNC_ROOMS = 100


def _bad(message: str) -> RequestError:
    return RequestError(ErrorCode.BAD_REQUEST, message)


def handle_event(
    hub: Hub, peer: SioPeer, conn: Connection, ack_id: int | None, data: list[Any]
) -> None:
    """Carry out one event ``[name, *args]``; the reply goes to ``ack_id`` or ``error``."""
    name = data[0] if data and isinstance(data[0], str) and data[0] else None
    try:
        if name is None:
            raise _bad("the event name must be a non-empty string")
        request = decode(name, data[1:], ack_id)
        if name == "sync:messages" and "rooms" in request.payload:
            hub.run(conn, _sync_rooms(hub, peer, conn, _room_requests(hub, request), ack_id))
            return
    except RequestError as exc:
        hub.counters.bump("bad_requests")
        shown = (name or "")[:64]
        log.info("refused %r from %s: %s %s", shown, peer.sid, exc.code.value, exc.message)
        peer.reply(ack_id, shown, {"success": False, "error": exc.payload()})
        return
    hub.handle_request(conn, request, peer.answer_to(ack_id, request.type))


def decode(name: str, args: list[Any], ack_id: int | None) -> Request:
    """The hub request an event stands for; :class:`RequestError` when malformed.

    The request id is ``messageId`` for ``chat:send``/``dm:send``, an internal id when
    the client asked for an ack, else ``None`` (fire-and-forget).
    """
    request_id = None if ack_id is None else f"sio:{ack_id}"
    if name not in requests.HANDLERS:
        return Request(type=name, id=request_id)  # the hub answers UNKNOWN_TYPE
    if len(args) > 1:
        raise _bad("one data argument expected")
    data = args[0] if args else None
    if data is None:
        payload: dict[str, Any] = {}
    elif isinstance(data, dict):
        payload = data
    elif isinstance(data, str) and name in ROOM_EVENTS:
        payload = {"roomId": data}
    elif isinstance(data, str) and name == "token:refresh":
        payload = {"token": data}
    else:
        raise _bad("data must be an object")
    check_numbers(payload)
    if name in MESSAGE_EVENTS:
        message_id = payload.get("messageId")
        if not isinstance(message_id, str) or not 1 <= len(message_id) <= MAX_ID_LENGTH:
            raise _bad(f"messageId must be a string of 1 to {MAX_ID_LENGTH} characters")
        request_id = message_id
    return Request(type=name, id=request_id, payload=payload)


def _room_requests(hub: Hub, request: Request) -> list[Request]:
    """The seed's ``sync:messages {lastEventId, rooms: [...]}`` as one request per room."""
    rooms = request.payload["rooms"]
    if (
        not isinstance(rooms, list)
        or not 1 <= len(rooms) <= MAX_SYNC_ROOMS
        or not all(isinstance(r, str) for r in rooms)
    ):
        raise _bad(f"rooms must be a list of 1 to {MAX_SYNC_ROOMS} room ids")
    # One reply for all the rooms: they share one page, so that it is no bigger than a
    # single room's (the bounded outgoing queue lets one oversized item through).
    cfg = hub.config
    share = max(1, cfg.sync_page_max // len(rooms))
    out = []
    for room_id in rooms:
        sub: dict[str, Any] = {"roomId": room_id, "limit": min(cfg.sync_page_default, share)}
        for key in ("lastEventId", "epoch", "limit"):
            value = request.payload.get(key)
            if isinstance(value, dict):  # per room: {roomId: value}
                value = value.get(room_id)
            if value is not None:
                sub[key] = value
        limit = sub["limit"]
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > share:
            sub["limit"] = share  # a page cut short says so: ``more: true``
        out.append(Request("sync:messages", "sync", sub))
    return out


async def _sync_rooms(
    hub: Hub, peer: SioPeer, conn: Connection, per_room: list[Request], ack_id: int | None
) -> None:
    """Answer the rooms' syncs together: ``{success, rooms: {roomId: reply}}``."""
    replies: dict[str, Any] = {}
    for request in per_room:
        reply = await hub.process(conn, request)
        replies[request.payload["roomId"]] = reply.get("payload") if reply else None
    peer.reply(ack_id, "sync:messages", {"success": True, "rooms": replies})

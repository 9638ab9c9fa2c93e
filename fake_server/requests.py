"""The request types of the protocol, one function each, and :func:`dispatch`.

A handler validates its payload, raises :class:`~fake_server.errors.RequestError` to
refuse, and returns the ack envelope to send (``None``: no ack).  Handlers are
coroutines because the shared state (:class:`~fake_server.store.Store`) may live in
Redis; with the in-memory store they never suspend and the hub runs them inline.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .auth import AuthFailure
from .envelope import Request, ack, event, get_int, get_room_id, get_str
from .errors import ErrorCode, RequestError
from .store import EPHEMERAL, MESSAGES, QUERY, Message, check_same, run_inline

if TYPE_CHECKING:
    from .hub import Connection, Hub

__all__ = ["HANDLERS", "dispatch"]

Reply = dict[str, Any] | None
Handler = Callable[["Hub", "Connection", Request], Coroutine[Any, Any, Reply]]


def unknown_type(request: Request) -> RequestError:
    return RequestError(ErrorCode.UNKNOWN_TYPE, f"unknown request type {request.type[:64]!r}")


async def dispatch_async(hub: Hub, conn: Connection, request: Request) -> Reply:
    """Run the handler of ``request.type``; ``UNKNOWN_TYPE`` when there is none."""
    handler = HANDLERS.get(request.type)
    if handler is None:
        raise unknown_type(request)
    return await handler(hub, conn, request)


def dispatch(hub: Hub, conn: Connection, request: Request) -> Reply:
    """:func:`dispatch_async`, inline: for a hub on the in-memory store only."""
    return run_inline(dispatch_async(hub, conn, request))


def _reply(request: Request, payload: dict[str, Any]) -> Reply:
    return None if request.id is None else ack(request.id, payload)


def _accessible_room(hub: Hub, conn: Connection, request: Request) -> str:
    room_id = get_room_id(request.payload)
    if not hub.can_access(conn.principal, room_id):
        raise RequestError(ErrorCode.FORBIDDEN, f"not allowed in room {room_id}")
    return room_id


def _joined_room(hub: Hub, conn: Connection, request: Request) -> str:
    room_id = _accessible_room(hub, conn, request)
    if not hub.is_member(conn, room_id):
        raise RequestError(ErrorCode.NOT_IN_ROOM, f"join {room_id} first")
    return room_id


def _limited(hub: Hub, retry_after: float) -> None:
    """Refuse with ``RATE_LIMIT`` when taking a token said to wait ``retry_after`` s.

    Handlers call ``_limited(hub, await hub.storage.take(bucket, conn.user_id))``.
    """
    if retry_after > 0:
        hub.counters.bump("rate_limited")
        raise RequestError(
            ErrorCode.RATE_LIMIT, "too many requests", retryAfter=round(retry_after, 3)
        )


# -- rooms -----------------------------------------------------------------------------------


def _room_limits(hub: Hub, conn: Connection) -> None:
    """Refuse one more room beyond the connection's or the user's limit (inboxes free)."""
    cfg = hub.config
    limit = cfg.max_rooms_per_connection
    if len(conn.rooms) - 1 >= limit:
        hub.counters.bump("limited")
        raise RequestError(ErrorCode.FORBIDDEN, f"too many rooms (at most {limit})", limit=limit)
    limit = cfg.max_rooms_per_user
    if hub.user_rooms(conn.user_id) >= limit:
        hub.counters.bump("limited")
        raise RequestError(
            ErrorCode.FORBIDDEN, f"too many rooms for this user (at most {limit})", limit=limit
        )


async def room_join(hub: Hub, conn: Connection, request: Request) -> Reply:
    room_id = _accessible_room(hub, conn, request)
    _limited(hub, await hub.storage.take(QUERY, conn.user_id))
    if not hub.is_member(conn, room_id):
        _room_limits(hub, conn)
    members, epoch, last_event_id = await hub.join(conn, room_id)
    return _reply(
        request,
        {"roomId": room_id, "members": members, "epoch": epoch, "lastEventId": last_event_id},
    )


async def room_leave(hub: Hub, conn: Connection, request: Request) -> Reply:
    room_id = get_room_id(request.payload)
    _limited(hub, await hub.storage.take(QUERY, conn.user_id))
    # The inbox membership is implicit and permanent.
    if room_id != f"user:{conn.user_id}":
        await hub.leave(conn, room_id)
    return _reply(request, {"roomId": room_id})


async def room_members(hub: Hub, conn: Connection, request: Request) -> Reply:
    room_id = _accessible_room(hub, conn, request)
    _limited(hub, await hub.storage.take(QUERY, conn.user_id))
    return _reply(request, {"roomId": room_id, "members": await hub.storage.members(room_id)})


# -- messages --------------------------------------------------------------------------------


def _message(
    hub: Hub, conn: Connection, request: Request, room_id: str, text: str, kind: str, **extra: str
) -> Message:
    assert request.id is not None
    return Message(
        user_id=conn.user_id,
        message_id=request.id,
        room_id=room_id,
        kind=kind,
        text=text,
        extra=tuple(extra.items()),
        now=hub.clock(),
    )


def _committed(hub: Hub, request: Request, receipt: dict[str, Any]) -> Reply:
    """The ack of a commit (:meth:`Store.commit` appended, fanned out and deduplicated)."""
    assert request.id is not None
    if receipt["duplicate"]:
        hub.counters.bump("duplicates")
        return ack(request.id, receipt)
    hub.counters.bump("messages_committed")
    if hub.faults.take_lost_ack():
        hub.counters.bump("acks_lost")
        return None
    return ack(request.id, receipt)


def _message_id(request: Request) -> None:
    if request.id is None:
        raise RequestError(ErrorCode.BAD_REQUEST, f"{request.type} needs an id (the message id)")


async def chat_send(hub: Hub, conn: Connection, request: Request) -> Reply:
    _message_id(request)
    assert request.id is not None
    room_id = get_room_id(request.payload)
    text = get_str(request.payload, "text", max_length=hub.config.max_text_length)
    _limited(hub, await hub.storage.take(MESSAGES, conn.user_id))
    # A resend is answered before the membership check: after a reconnect (maybe to
    # another node) the client may resend before it rejoined, and the answer must
    # still be the original one.
    if not hub.is_member(conn, room_id):
        entry = await hub.storage.find(conn.user_id, request.id)
        if entry is None:
            _joined_room(hub, conn, request)
        else:
            check_same(entry, Message(conn.user_id, request.id, room_id, "", text, (), 0.0))
            hub.counters.bump("duplicates")
            return ack(request.id, {**entry.ack, "duplicate": True})
    message = _message(hub, conn, request, room_id, text, "chat:message")
    return _committed(hub, request, await hub.storage.commit(message, duplicate=hub.take_duplicate))


async def dm_send(hub: Hub, conn: Connection, request: Request) -> Reply:
    _message_id(request)
    to_user = get_str(request.payload, "toUserId", max_length=64)
    text = get_str(request.payload, "text", max_length=hub.config.max_text_length)
    _limited(hub, await hub.storage.take(MESSAGES, conn.user_id))
    message = _message(hub, conn, request, f"user:{to_user}", text, "dm:message", to=to_user)
    return _committed(hub, request, await hub.storage.commit(message, duplicate=hub.take_duplicate))


async def sync_messages(hub: Hub, conn: Connection, request: Request) -> Reply:
    room_id = _accessible_room(hub, conn, request)
    payload = request.payload
    after = get_int(payload, "lastEventId", default=0)
    cfg = hub.config
    limit = min(
        get_int(payload, "limit", minimum=1, default=cfg.sync_page_default), cfg.sync_page_max
    )
    epoch = payload.get("epoch")
    if epoch is not None and not isinstance(epoch, str):
        raise RequestError(ErrorCode.BAD_REQUEST, "epoch must be a string")
    _limited(hub, await hub.storage.take(QUERY, conn.user_id))
    if conn.peer.in_flight("sync:messages") >= cfg.max_syncs_in_flight:
        hub.counters.bump("limited")
        raise RequestError(
            ErrorCode.RATE_LIMIT,
            f"too many syncs in flight (at most {cfg.max_syncs_in_flight})",
            retryAfter=0.1,
        )
    hub.counters.bump("syncs")
    current, page = await hub.storage.page(room_id, after=after, limit=limit, epoch=epoch)
    return _reply(
        request,
        {
            "roomId": room_id,
            "epoch": current,
            "events": page.events,
            "more": page.more,
            "truncated": page.truncated,
            "lastEventId": page.last_event_id,
        },
    )


# -- ephemeral events ------------------------------------------------------------------------


async def typing_start(hub: Hub, conn: Connection, request: Request) -> Reply:
    room_id = _joined_room(hub, conn, request)
    _limited(hub, await hub.storage.take(EPHEMERAL, conn.user_id))
    await hub.start_typing(conn, room_id)
    return _reply(request, {"roomId": room_id})


async def typing_stop(hub: Hub, conn: Connection, request: Request) -> Reply:
    room_id = _joined_room(hub, conn, request)
    _limited(hub, await hub.storage.take(EPHEMERAL, conn.user_id))
    await hub.stop_typing(room_id, conn.user_id)
    return _reply(request, {"roomId": room_id})


async def message_read(hub: Hub, conn: Connection, request: Request) -> Reply:
    room_id = _joined_room(hub, conn, request)
    event_id = get_int(request.payload, "eventId", minimum=1)
    _limited(hub, await hub.storage.take(EPHEMERAL, conn.user_id))
    receipt = {
        "roomId": room_id,
        "eventId": event_id,
        "userId": conn.user_id,
        "timestamp": hub.clock(),
    }
    await hub.storage.publish(room_id, event("message:read", receipt), exclude=conn.client_id)
    return _reply(request, {"roomId": room_id, "eventId": event_id})


async def ping(hub: Hub, conn: Connection, request: Request) -> Reply:
    ts = request.payload.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float | str)):
        raise RequestError(ErrorCode.BAD_REQUEST, "ts must be a number or a string")
    pong = {"ts": ts, "serverTime": hub.clock()}
    conn.peer.send(event("pong", pong))
    return _reply(request, pong)


async def token_refresh(hub: Hub, conn: Connection, request: Request) -> Reply:
    token = request.payload.get("token")
    if not isinstance(token, str) or not token:
        raise RequestError(ErrorCode.BAD_REQUEST, "token must be a non-empty string")
    try:
        principal = hub.authenticate(token)
    except AuthFailure as exc:
        raise RequestError(exc.code, exc.why) from None
    if principal.user_id != conn.user_id:
        raise RequestError(ErrorCode.USER_MISMATCH, "the token is for another user")
    conn.principal = principal
    hub.arm_token_timers(conn)
    return _reply(request, {"expiresAt": principal.expires_at})


async def auth_again(hub: Hub, conn: Connection, request: Request) -> Reply:
    raise RequestError(
        ErrorCode.BAD_REQUEST, "already authenticated; use token:refresh to replace the token"
    )


HANDLERS: dict[str, Handler] = {
    "room:join": room_join,
    "room:leave": room_leave,
    "room:members": room_members,
    "chat:send": chat_send,
    "dm:send": dm_send,
    "sync:messages": sync_messages,
    "typing:start": typing_start,
    "typing:stop": typing_stop,
    "message:read": message_read,
    "ping": ping,
    "token:refresh": token_refresh,
    "auth": auth_again,
}

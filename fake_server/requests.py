"""The request types of the protocol, one function each, and :func:`dispatch`.

A handler validates its payload, raises :class:`~fake_server.errors.RequestError` to
refuse, and returns the ack envelope to send (``None``: no ack).  Handlers run inside
the hub and never await.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .auth import AuthFailure
from .dedupe import Entry, digest
from .envelope import Request, ack, event, get_int, get_room_id, get_str
from .errors import ErrorCode, RequestError
from .ratelimit import RateLimiter

if TYPE_CHECKING:
    from .hub import Connection, Hub

__all__ = ["HANDLERS", "dispatch"]

Handler = Callable[["Hub", "Connection", Request], "dict[str, Any] | None"]


def dispatch(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
    """Run the handler of ``request.type``; ``UNKNOWN_TYPE`` when there is none."""
    handler = HANDLERS.get(request.type)
    if handler is None:
        raise RequestError(ErrorCode.UNKNOWN_TYPE, f"unknown request type {request.type[:64]!r}")
    return handler(hub, conn, request)


def _reply(request: Request, payload: dict[str, Any]) -> dict[str, Any] | None:
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


def _rate_limit(hub: Hub, conn: Connection, limiter: RateLimiter | None = None) -> None:
    """Take a token from ``limiter`` (default: the messages' one) for the user."""
    retry_after = (hub.limiter if limiter is None else limiter).take(conn.user_id, hub.monotonic())
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


def room_join(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
    room_id = _accessible_room(hub, conn, request)
    _rate_limit(hub, conn, hub.query_limiter)
    if not hub.is_member(conn, room_id):
        _room_limits(hub, conn)
    hub.join(conn, room_id)
    return _reply(
        request,
        {
            "roomId": room_id,
            "members": hub.members(room_id),
            "epoch": hub.epoch,
            "lastEventId": hub.store.last_event_id(room_id, now=hub.clock()),
        },
    )


def room_leave(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
    room_id = get_room_id(request.payload)
    _rate_limit(hub, conn, hub.query_limiter)
    # The inbox membership is implicit and permanent.
    if room_id != f"user:{conn.user_id}":
        hub.leave(conn, room_id)
    return _reply(request, {"roomId": room_id})


def room_members(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
    room_id = _accessible_room(hub, conn, request)
    _rate_limit(hub, conn, hub.query_limiter)
    return _reply(request, {"roomId": room_id, "members": hub.members(room_id)})


# -- messages --------------------------------------------------------------------------------


def _commit(
    hub: Hub, conn: Connection, request: Request, room_id: str, text: str, kind: str, **extra: str
) -> dict[str, Any] | None:
    """Append, broadcast and ack one message; resends are answered from the dedupe table."""
    assert request.id is not None
    message_id = request.id
    now = hub.clock()
    entry = hub.dedupe.get(conn.user_id, message_id, now=now)
    if entry is not None:
        if entry.room_id != room_id or entry.text_digest != digest(text):
            raise RequestError(
                ErrorCode.IDEMPOTENCY_CONFLICT,
                "message id already used for a different message",
            )
        hub.counters.bump("duplicates")
        return ack(message_id, {**entry.ack, "duplicate": True})
    log = hub.store.for_append(room_id, now=now)
    payload = {
        "roomId": room_id,
        "eventId": log.next_event_id(),
        "epoch": hub.epoch,
        "messageId": message_id,
        "from": conn.user_id,
        **extra,
        "text": text,
        "timestamp": now,
    }
    log.append(payload)
    log.prune(now=now, max_count=hub.store.max_count, max_age=hub.store.max_age)
    receipt = {
        "roomId": room_id,
        "eventId": payload["eventId"],
        "messageId": message_id,
        "epoch": hub.epoch,
        "timestamp": now,
    }
    hub.dedupe.put(conn.user_id, message_id, Entry(room_id, digest(text), receipt, now))
    hub.counters.bump("messages_committed")
    times = 1
    if hub.faults.take_duplicate():
        hub.counters.bump("events_duplicated")
        times = 2
    hub.broadcast(room_id, event(kind, dict(payload)), times=times)
    if hub.faults.take_lost_ack():
        hub.counters.bump("acks_lost")
        return None
    return ack(message_id, {**receipt, "duplicate": False})


def _message_id(request: Request) -> None:
    if request.id is None:
        raise RequestError(ErrorCode.BAD_REQUEST, f"{request.type} needs an id (the message id)")


def chat_send(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
    _message_id(request)
    room_id = get_room_id(request.payload)
    text = get_str(request.payload, "text", max_length=hub.config.max_text_length)
    _rate_limit(hub, conn)
    # A resend is answered before the membership check: after a reconnect the client
    # may resend before it rejoined, and the answer must still be the original one.
    if hub.dedupe.get(conn.user_id, request.id or "", now=hub.clock()) is None:
        _joined_room(hub, conn, request)
    return _commit(hub, conn, request, room_id, text, "chat:message")


def dm_send(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
    _message_id(request)
    to_user = get_str(request.payload, "toUserId", max_length=64)
    text = get_str(request.payload, "text", max_length=hub.config.max_text_length)
    _rate_limit(hub, conn)
    return _commit(hub, conn, request, f"user:{to_user}", text, "dm:message", to=to_user)


def sync_messages(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
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
    _rate_limit(hub, conn, hub.query_limiter)
    if conn.peer.in_flight("sync:messages") >= cfg.max_syncs_in_flight:
        hub.counters.bump("limited")
        raise RequestError(
            ErrorCode.RATE_LIMIT,
            f"too many syncs in flight (at most {cfg.max_syncs_in_flight})",
            retryAfter=0.1,
        )
    hub.counters.bump("syncs")
    page = hub.store.page(
        room_id,
        now=hub.clock(),
        after=after,
        limit=limit,
        same_epoch=epoch is None or epoch == hub.epoch,
    )
    return _reply(
        request,
        {
            "roomId": room_id,
            "epoch": hub.epoch,
            "events": page.events,
            "more": page.more,
            "truncated": page.truncated,
            "lastEventId": page.last_event_id,
        },
    )


# -- ephemeral events ------------------------------------------------------------------------


def typing_start(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
    room_id = _joined_room(hub, conn, request)
    _rate_limit(hub, conn, hub.ephemeral_limiter)
    hub.start_typing(conn, room_id)
    return _reply(request, {"roomId": room_id})


def typing_stop(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
    room_id = _joined_room(hub, conn, request)
    _rate_limit(hub, conn, hub.ephemeral_limiter)
    hub.stop_typing(room_id, conn.user_id)
    return _reply(request, {"roomId": room_id})


def message_read(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
    room_id = _joined_room(hub, conn, request)
    event_id = get_int(request.payload, "eventId", minimum=1)
    _rate_limit(hub, conn, hub.ephemeral_limiter)
    receipt = {
        "roomId": room_id,
        "eventId": event_id,
        "userId": conn.user_id,
        "timestamp": hub.clock(),
    }
    hub.broadcast(room_id, event("message:read", receipt), exclude=conn)
    return _reply(request, {"roomId": room_id, "eventId": event_id})


def ping(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
    ts = request.payload.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float | str)):
        raise RequestError(ErrorCode.BAD_REQUEST, "ts must be a number or a string")
    pong = {"ts": ts, "serverTime": hub.clock()}
    conn.peer.send(event("pong", pong))
    return _reply(request, pong)


def token_refresh(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
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


def auth_again(hub: Hub, conn: Connection, request: Request) -> dict[str, Any] | None:
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

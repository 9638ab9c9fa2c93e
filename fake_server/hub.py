"""The transport-agnostic hub: connections, rooms, presence, token lifetimes.

An endpoint (raw WebSocket today, Socket.IO later) authenticates a peer, calls
:meth:`Hub.attach`, feeds it every frame with :meth:`Hub.handle_frame` (or decoded
requests with :meth:`Hub.handle_request`) and calls :meth:`Hub.detach` once the
connection is gone.  The hub talks to peers through the :class:`Peer` protocol, whose
methods only queue work, and schedules timers on a :class:`~fake_server.timers.Scheduler`.
The request types themselves are in :mod:`fake_server.requests`.

Shared state (logs, dedupe, presence, rate limits, fan-out) is behind a
:class:`~fake_server.store.Store`.  With the in-memory store (the default) the hub never
awaits: every request is carried out inline, as its frame arrives.  With a store that
waits for Redis, each connection's requests run in order on its
:class:`~fake_server.lanes.Lane`, so that replies keep the order of the requests.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import requests
from .auth import AuthFailure, Principal, TokenAuthority
from .config import ServerConfig
from .dedupe import DedupeTable
from .envelope import FrameError, Request, error_ack, event, parse_envelope, parse_frame
from .errors import CloseCode, CloseReason, ErrorCode, RequestError
from .eventlog import LogStore
from .faults import FaultState
from .lanes import Lane, TaskSet
from .stats import Counters
from .store import MemoryStore, Store, StoreUnavailable, run_inline
from .timers import Scheduler, Timer

__all__ = ["Connection", "Hub", "Peer", "inbox_room"]

log = logging.getLogger("fake_server.hub")

BASE_FEATURES = ("token:refresh", "sync")
"""What every endpoint supports; the raw WebSocket endpoint adds ``batch``."""

MAX_BATCH = 100
"""Most requests in one ``batch`` envelope."""

Answer = Callable[[dict[str, Any], "str | None"], None]
"""Where a request's reply goes: ``answer(envelope, tag)`` (default: the peer's ``send``)."""


class Peer(Protocol):
    """One client connection as a transport sees it.  None of these may block."""

    def send(self, envelope: dict[str, Any], *, tag: str | None = None) -> None:
        """Queue one envelope for this peer, after everything queued before.

        ``tag`` (a request type) is counted by :meth:`in_flight` until written.
        """

    def in_flight(self, tag: str) -> int:
        """Envelopes queued with ``tag`` and not written yet."""

    def close(self, code: int, reason: str) -> None:
        """Queue a close with ``code``/``reason`` after the envelopes already queued."""

    def abort(self) -> None:
        """Cut the connection now, without a close frame."""


def inbox_room(user_id: str) -> str:
    """The room that holds ``user_id``'s direct messages."""
    return f"user:{user_id}"


@dataclass(eq=False, slots=True)
class Connection:
    """The hub's state for one authenticated peer."""

    client_id: str
    peer: Peer
    principal: Principal
    rooms: set[str] = field(default_factory=set)
    token_timers: list[Timer] = field(default_factory=list)
    warned_for: float | None = None
    """``exp`` of the token ``token:expiring`` was sent for (once per token)."""
    lane: Lane | None = None
    """Where its requests wait their turn (a store that waits for Redis); else None."""

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    def __repr__(self) -> str:
        return f"Connection({self.client_id}, user={self.user_id!r})"


class Hub:
    """Users, connections, rooms, logs, dedupe, presence, auth and rate limits."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        authority: TokenAuthority,
        faults: FaultState,
        counters: Counters,
        scheduler: Scheduler,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        storage: Store | None = None,
    ) -> None:
        self.config = config
        self.authority = authority
        self.faults = faults
        self.counters = counters
        self.scheduler = scheduler
        self.clock = clock
        self.monotonic = monotonic
        self.storage: Store = (
            storage
            if storage is not None
            else MemoryStore(config, clock=clock, monotonic=monotonic)
        )
        self.storage.bind(self)
        self.tasks = TaskSet()
        """Lanes and the presence updates of closed connections (a waiting store only)."""
        self.connections: dict[str, Connection] = {}
        self.by_user: dict[str, set[Connection]] = {}
        """Each user's live connections (for per-user limits)."""
        self.rooms: dict[str, set[Connection]] = {}
        self.typing: dict[tuple[str, str], Timer] = {}
        self.disabled: set[str] = set()
        """Users refused at the handshake (``USER_DISABLED``); see :meth:`disable_user`."""

    # -- log lifecycle -----------------------------------------------------------------

    @property
    def store(self) -> LogStore:
        """The in-memory logs (an in-memory store only)."""
        return self._memory().logs

    @property
    def dedupe(self) -> DedupeTable:
        """The in-memory dedupe table (an in-memory store only)."""
        return self._memory().dedupe

    def _memory(self) -> MemoryStore:
        if not isinstance(self.storage, MemoryStore):
            raise AttributeError("the logs are in Redis: use hub.storage")
        return self.storage

    @property
    def epoch(self) -> str:
        return self.storage.epoch

    async def reset_log(self) -> None:
        """Forget every log and the dedupe table: a new epoch, event ids from 1."""
        await self.storage.reset()
        log.info("event log reset, new epoch %s", self.epoch)

    def take_duplicate(self) -> bool:
        """Whether the message being committed goes out twice (``duplicate_next_events``)."""
        if self.faults.take_duplicate():
            self.counters.bump("events_duplicated")
            return True
        return False

    def run(self, conn: Connection, work: Coroutine[Any, Any, None]) -> None:
        """Carry out ``work`` for ``conn`` after its earlier requests (now, when inline)."""
        if conn.lane is None:
            run_inline(work)
        else:
            conn.lane.submit(work)

    def backlog(self, conn: Connection) -> Awaitable[None] | None:
        """Something for the connection's reader to await before it reads more, or None."""
        lane = conn.lane
        return lane.wait_room() if lane is not None and lane.full() else None

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Carry out ``work`` that belongs to no connection (now, when inline)."""
        if self.storage.immediate:
            run_inline(work)
        else:
            self.tasks.spawn(self._logged(work))

    async def _logged(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except StoreUnavailable as exc:
            log.info("shared store unavailable: %s", exc)

    # -- connections -------------------------------------------------------------------

    def authenticate(self, token: object) -> Principal:
        """Verify ``token`` now; raise :class:`AuthFailure` (counted) when refused."""
        try:
            return self.authority.verify(token, now=self.clock())
        except AuthFailure as exc:
            self.counters.bump("auth_failures")
            log.info("authentication refused: %s", exc)
            raise

    def attach(
        self, peer: Peer, principal: Principal, *, features: tuple[str, ...] = BASE_FEATURES
    ) -> Connection:
        """Register an authenticated peer and send it ``connected``.

        ``features`` is what the peer's endpoint supports (the welcome lists them).

        The peer is a live member of its inbox room from now on.  The caller must call
        :meth:`detach` exactly once when the connection is gone.
        """
        conn = Connection(client_id=f"c-{secrets.token_hex(6)}", peer=peer, principal=principal)
        self.connections[conn.client_id] = conn
        self.by_user.setdefault(conn.user_id, set()).add(conn)
        self.counters.bump("connections_opened")
        if conn.user_id in self.disabled:
            # An endpoint that cannot refuse earlier: no welcome, closed with 4003.
            log.info("refusing client=%s user=%s: user disabled", conn.client_id, conn.user_id)
            peer.close(CloseCode.FORBIDDEN, CloseReason.USER_DISABLED)
            return conn
        cfg = self.config
        peer.send(
            event(
                "connected",
                {
                    "clientId": conn.client_id,
                    "userId": conn.user_id,
                    "epoch": self.epoch,
                    "expiresAt": principal.expires_at,
                    "serverTime": self.clock(),
                    "features": list(features),
                    "limits": {
                        "maxMessageSize": cfg.max_message_size,
                        "maxTextLength": cfg.max_text_length,
                        "syncPageMax": cfg.sync_page_max,
                    },
                },
            )
        )
        if not self.storage.immediate:
            conn.lane = Lane(self.tasks, conn.client_id)
        # The inbox is node-local: direct messages reach it through the fan-out.
        self._join_local(conn, inbox_room(conn.user_id))
        self.arm_token_timers(conn)
        log.info("connected client=%s user=%s", conn.client_id, conn.user_id)
        return conn

    def detach(self, conn: Connection, *, code: int | None, reason: str) -> None:
        """Forget ``conn``: leave its rooms (presence), cancel its timers, log why."""
        if self.connections.pop(conn.client_id, None) is None:
            return
        siblings = self.by_user.get(conn.user_id, set())
        siblings.discard(conn)
        if not siblings:
            self.by_user.pop(conn.user_id, None)
        for timer in conn.token_timers:
            timer.cancel()
        conn.token_timers.clear()
        if conn.lane is not None:
            conn.lane.close()
        for room_id in sorted(conn.rooms):
            self._later(self.leave(conn, room_id))
        self.counters.bump("connections_closed")
        log.info(
            "disconnected client=%s user=%s code=%s reason=%s",
            conn.client_id,
            conn.user_id,
            code,
            reason or "-",
        )

    # -- token lifetime ----------------------------------------------------------------

    def arm_token_timers(self, conn: Connection) -> None:
        """(Re)schedule ``token:expiring`` and the 4002 close for the current token."""
        for timer in conn.token_timers:
            timer.cancel()
        conn.token_timers.clear()
        expires_at = conn.principal.expires_at
        now = self.clock()
        if conn.warned_for != expires_at:
            warn_in = expires_at - self.config.token_warning - now
            conn.token_timers.append(
                self.scheduler.call_later(warn_in, lambda: self._warn_expiry(conn))
            )
        close_in = expires_at + self.authority.leeway - now
        conn.token_timers.append(
            self.scheduler.call_later(close_in, lambda: self._expire(conn, "token expired"))
        )

    def _warn_expiry(self, conn: Connection) -> None:
        expires_at = conn.principal.expires_at
        if conn.warned_for == expires_at or conn.client_id not in self.connections:
            return
        conn.warned_for = expires_at
        expires_in = max(0.0, expires_at - self.clock())
        conn.peer.send(
            event("token:expiring", {"expiresIn": round(expires_in, 3), "expiresAt": expires_at})
        )

    def _expire(self, conn: Connection, why: str) -> None:
        if conn.client_id not in self.connections:
            return
        log.info("closing client=%s user=%s: %s", conn.client_id, conn.user_id, why)
        conn.peer.close(CloseCode.TOKEN_EXPIRED, CloseReason.TOKEN_EXPIRED)

    def expire_tokens(self) -> None:
        """Revoke every token issued until now and close every connection with 4002."""
        self.authority.revoke_issued_before(self.clock())
        for conn in list(self.connections.values()):
            self._expire(conn, "expire_tokens")

    def disable_user(self, user_id: str) -> None:
        """Refuse ``user_id`` from now on and close its connections with 4003."""
        self.disabled.add(user_id)
        for conn in list(self.connections.values()):
            if conn.user_id == user_id:
                log.info("closing client=%s user=%s: user disabled", conn.client_id, user_id)
                conn.peer.close(CloseCode.FORBIDDEN, CloseReason.USER_DISABLED)

    def enable_user(self, user_id: str) -> None:
        self.disabled.discard(user_id)

    def close_all(self, code: int, reason: str) -> None:
        for conn in list(self.connections.values()):
            conn.peer.close(code, reason)

    # -- rooms and presence ------------------------------------------------------------

    def can_access(self, principal: Principal, room_id: str) -> bool:
        """Whether ``principal`` may join (and sync) ``room_id``."""
        if room_id.startswith("admin:"):
            return "admin" in principal.roles
        if room_id.startswith("user:"):
            return room_id == inbox_room(principal.user_id)
        return True

    def members(self, room_id: str) -> list[str]:
        """Sorted ids of the users with a live connection to this node in the room."""
        return sorted({c.user_id for c in self.rooms.get(room_id, ())})

    local_members = members

    def has_members(self, room_id: str) -> bool:
        return bool(self.rooms.get(room_id))

    def presence(self) -> dict[str, set[str]]:
        return {
            room_id: {c.user_id for c in conns}
            for room_id, conns in self.rooms.items()
            if conns and not room_id.startswith("user:")
        }

    def user_rooms(self, user_id: str) -> int:
        """Room memberships of the user's connections together, inboxes not counted."""
        inbox = inbox_room(user_id)
        return sum(len(c.rooms) - (inbox in c.rooms) for c in self.by_user.get(user_id, ()))

    def is_member(self, conn: Connection, room_id: str) -> bool:
        return room_id in conn.rooms

    def _join_local(self, conn: Connection, room_id: str) -> bool | None:
        """Add ``conn`` to the room here; True: the user's first connection in it on this
        node, None: ``conn`` was in it already."""
        members = self.rooms.setdefault(room_id, set())
        if conn in members:
            return None
        first = all(c.user_id != conn.user_id for c in members)
        members.add(conn)
        conn.rooms.add(room_id)
        return first

    async def join(self, conn: Connection, room_id: str) -> tuple[list[str], str, int]:
        """Add ``conn`` to the room; ``user:joined`` goes out on the user's first one.

        Return the room's members, the epoch and the last event id.
        """
        first = self._join_local(conn, room_id)
        return await self.storage.join(room_id, conn.user_id, first=first is True)

    async def leave(self, conn: Connection, room_id: str) -> None:
        """Remove ``conn``; ``user:left`` goes out when the user's last one leaves."""
        members = self.rooms.get(room_id)
        conn.rooms.discard(room_id)
        if members is None or conn not in members:
            return
        members.discard(conn)
        if any(c.user_id == conn.user_id for c in members):
            return
        if not members:
            del self.rooms[room_id]
        await self.stop_typing(room_id, conn.user_id)
        await self.storage.leave(room_id, conn.user_id)

    def deliver(
        self,
        room_id: str,
        envelope: dict[str, Any],
        *,
        skip_user: str | None = None,
        exclude: str | None = None,
        times: int = 1,
    ) -> None:
        """Send ``envelope`` ``times`` times to this node's connections in the room.

        ``exclude`` is a client id, ``skip_user`` a user id not to send to.
        """
        for conn in self._recipients(room_id):
            if conn.client_id == exclude or conn.user_id == skip_user:
                continue
            for _ in range(times):
                conn.peer.send(envelope)

    broadcast = deliver

    def _recipients(self, room_id: str) -> Iterable[Connection]:
        # Sorted so that tests and logs see a stable order.
        return sorted(self.rooms.get(room_id, ()), key=lambda c: c.client_id)

    def epoch_changed(self, epoch: str) -> None:
        """The shared log was lost (a new epoch): every client reconnects and sees a gap."""
        log.warning("shared event log lost: new epoch %s; closing every client", epoch)
        self.close_all(CloseCode.SERVICE_RESTART, "new epoch")

    def cut_off(self, retry_after: float) -> None:
        """The shared store is out of reach for too long: clients should go elsewhere."""
        log.warning("closing every client: shared store unreachable (retryAfter=%g)", retry_after)
        self.close_all(CloseCode.TRY_AGAIN_LATER, f"retryAfter={retry_after:g}")

    # -- typing ------------------------------------------------------------------------

    async def start_typing(self, conn: Connection, room_id: str) -> None:
        """Mark the user as typing (other users are told once) and (re)arm the auto-stop."""
        key = (room_id, conn.user_id)
        timer = self.typing.pop(key, None)
        if timer is not None:
            timer.cancel()
        user_id = conn.user_id
        self.typing[key] = self.scheduler.call_later(
            self.config.typing_timeout,
            lambda: self._later(self.stop_typing(room_id, user_id, expired=True)),
        )
        if timer is None:
            payload = {"roomId": room_id, "userId": user_id}
            await self.storage.publish(room_id, event("typing:start", payload), skip_user=user_id)

    async def stop_typing(self, room_id: str, user_id: str, *, expired: bool = False) -> None:
        """End ``user_id``'s typing in the room (if any) and tell the other users."""
        timer = self.typing.pop((room_id, user_id), None)
        if timer is None:
            return
        if not expired:
            timer.cancel()
        payload = {"roomId": room_id, "userId": user_id}
        await self.storage.publish(room_id, event("typing:stop", payload), skip_user=user_id)

    # -- requests ----------------------------------------------------------------------

    def handle_frame(self, conn: Connection, data: str | bytes, codec: str = "json") -> None:
        """Parse and carry out one frame from ``conn``; bad input gets an error reply."""
        if conn.lane is not None:
            conn.lane.submit(self._frame(conn, data, codec))
            return
        request = self._parse(conn, data, codec)
        if request is None:
            return
        if request.type != "batch":
            self._send_reply(conn, request, self._process_inline(conn, request), None)
            return
        for item in self._batch(conn, request):
            self._send_reply(conn, item, self._process_inline(conn, item), None)

    async def _frame(self, conn: Connection, data: str | bytes, codec: str) -> None:
        request = self._parse(conn, data, codec)
        if request is None:
            return
        items = self._batch(conn, request) if request.type == "batch" else (request,)
        for item in items:
            self._send_reply(conn, item, await self.process(conn, item), None)

    def _parse(self, conn: Connection, data: str | bytes, codec: str) -> Request | None:
        """The frame's request; None when it is not one (the error is answered)."""
        try:
            return parse_frame(data, codec)
        except FrameError as exc:
            self.counters.bump("bad_requests")
            log.info("bad frame from client=%s: %s", conn.client_id, exc.message)
            self._frame_error(conn, exc)
            return None

    def _batch(self, conn: Connection, batch: Request) -> Iterator[Request]:
        """The requests of ``{"type": "batch", "payload": {"items": [envelope, ...]}}``.

        Each item is a request of its own, acknowledged on its own; a bad item gets its
        own error, in its place among the replies (the caller carries out each request
        before it takes the next), and does not stop the others. Batches do not nest.
        """
        items = batch.payload.get("items")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            error = FrameError(f"batch items must be a list of 1 to {MAX_BATCH} requests")
            self.counters.bump("bad_requests")
            conn.peer.send(event("error", error.payload()))
            return
        self.counters.bump("batches")
        for item in items:
            try:
                request = parse_envelope(item)
                if request.type == "batch":
                    raise FrameError("batches do not nest", request.id)
            except FrameError as exc:
                self.counters.bump("bad_requests")
                self._frame_error(conn, exc)
                continue
            yield request

    @staticmethod
    def _frame_error(conn: Connection, exc: FrameError) -> None:
        if exc.request_id is not None:
            conn.peer.send(error_ack(exc.request_id, exc))
        else:
            conn.peer.send(event("error", exc.payload()))

    def handle_request(
        self, conn: Connection, request: Request, answer: Answer | None = None
    ) -> None:
        """Carry out one decoded request and send its ack, error or nothing.

        The reply goes to ``answer(envelope, tag)`` (default: the peer), after the
        replies to the connection's earlier requests.
        """
        if conn.lane is None:
            self._send_reply(conn, request, self._process_inline(conn, request), answer)
        else:
            conn.lane.submit(self._answer(conn, request, answer))

    async def _answer(self, conn: Connection, request: Request, answer: Answer | None) -> None:
        self._send_reply(conn, request, await self.process(conn, request), answer)

    @staticmethod
    def _send_reply(
        conn: Connection,
        request: Request,
        reply: dict[str, Any] | None,
        answer: Answer | None,
    ) -> None:
        if reply is None:
            return
        # Successful acks are tagged with the request type (``Peer.in_flight``).
        tag = request.type if reply.get("type") == "ack" and reply["payload"]["success"] else None
        if answer is None:
            conn.peer.send(reply, tag=tag)
        else:
            answer(reply, tag)

    async def process(self, conn: Connection, request: Request) -> dict[str, Any] | None:
        """Carry out one request; return the envelope to reply with, or None.

        The reply is its ack or error ack (a request with an id) or an ``error`` event
        (a refused request without one).
        """
        handler = requests.HANDLERS.get(request.type)
        try:
            if handler is None:
                raise requests.unknown_type(request)
            reply = await handler(self, conn, request)
        except Exception as exc:
            return self._failed(conn, request, exc)
        return reply if request.id is not None else None

    def _process_inline(self, conn: Connection, request: Request) -> dict[str, Any] | None:
        """:meth:`process` on an immediate store, one coroutine fewer (the hot path)."""
        handler = requests.HANDLERS.get(request.type)
        try:
            if handler is None:
                raise requests.unknown_type(request)
            reply = run_inline(handler(self, conn, request))
        except Exception as exc:
            return self._failed(conn, request, exc)
        return reply if request.id is not None else None

    def _failed(self, conn: Connection, request: Request, exc: Exception) -> dict[str, Any]:
        """The reply to a request whose handler raised ``exc``."""
        if isinstance(exc, RequestError):
            return self._refusal(conn, request, exc)
        if isinstance(exc, StoreUnavailable):
            self.counters.bump("store_unavailable")
            refusal = RequestError(
                ErrorCode.INTERNAL,
                "shared store unavailable; send again later",
                retryAfter=exc.retry_after,
                reason="STORE_UNAVAILABLE",
            )
            return self._refusal(conn, request, refusal)
        self.counters.bump("errors")
        log.error("request %s from client=%s failed", request.type, conn.client_id, exc_info=exc)
        return self._refusal(conn, request, RequestError(ErrorCode.INTERNAL, "internal error"))

    def _refusal(self, conn: Connection, request: Request, exc: RequestError) -> dict[str, Any]:
        if exc.code in (ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_TYPE):
            self.counters.bump("bad_requests")
            log.info(
                "refused %s from client=%s: %s %s",
                request.type,
                conn.client_id,
                exc.code.value,
                exc.message,
            )
        if request.id is not None:
            return error_ack(request.id, exc)
        return event("error", {**exc.payload(), "requestType": request.type})

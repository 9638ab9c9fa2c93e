"""The transport-agnostic hub: connections, rooms, presence, token lifetimes.

An endpoint (raw WebSocket today, Socket.IO later) authenticates a peer, calls
:meth:`Hub.attach`, feeds it every frame with :meth:`Hub.handle_frame` (or decoded
requests with :meth:`Hub.handle_request`) and calls :meth:`Hub.detach` once the
connection is gone.  The hub talks to peers through the :class:`Peer` protocol, whose
methods only queue work, and schedules timers on a :class:`~fake_server.timers.Scheduler`.
How requests are carried out is in :mod:`fake_server.intake` (a base class of the hub);
the request types themselves are in :mod:`fake_server.requests`.

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
from collections.abc import Callable, Iterable
from typing import Any

from .auth import AuthFailure, Principal, TokenAuthority
from .config import ServerConfig
from .connection import Connection, Peer, inbox_room
from .dedupe import DedupeTable
from .envelope import event
from .errors import CloseCode, CloseReason
from .eventlog import LogStore
from .faults import FaultState
from .intake import MAX_BATCH, Answer, Intake
from .lanes import Lane, TaskSet
from .stats import Counters
from .store import MemoryStore, Store, StoreUnavailable
from .timers import Scheduler, Timer

__all__ = ["BASE_FEATURES", "MAX_BATCH", "Answer", "Connection", "Hub", "Peer", "inbox_room"]

log = logging.getLogger("fake_server.hub")

BASE_FEATURES = ("token:refresh", "sync")
"""What every endpoint supports; the raw WebSocket endpoint adds ``batch``."""


class Hub(Intake):
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
        try:
            return await self.storage.join(room_id, conn.user_id, first=first is True)
        except StoreUnavailable:
            if first is not None:
                # Not joined after all: the client's next join is a first one again
                # (one that finds the connection in the room would not record presence).
                members = self.rooms.get(room_id, set())
                members.discard(conn)
                conn.rooms.discard(room_id)
                if not members:
                    self.rooms.pop(room_id, None)
            raise

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

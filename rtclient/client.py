"""The asyncio client: the public facade over the session core, and outcome routing.

:class:`Client` holds the options and the public operations; each operation records
itself in the session (:mod:`rtclient.session`, where every decision is made) and
waits for its outcome. :meth:`Client._pump` (:mod:`rtclient._routing`) routes the
session's outcomes: settled futures, state waiters, dispatched events, store writes, a
woken writer and timer.
The running is elsewhere: the root task and reconnect loop in :mod:`rtclient._runner`,
one connection's life in :mod:`rtclient._connection`, writing in
:mod:`rtclient._writer`, the store in :mod:`rtclient._store_mirror`. ``close()`` ends
every task the client started (see docs/architecture.md for the map).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal, overload

from ._dispatch import Dispatcher, Handler
from ._flag import Flag
from ._generic import GenericOps
from ._routing import OutcomeRouter
from ._runner import Runner, SessionTimer
from ._store_mirror import StoreMirror
from ._writer import Writer
from .adapters.base import Adapter
from .backoff import Backoff
from .codec import Codec, payload_check
from .endpoints import UrlOrder, as_urls, endpoint_label, rotation
from .errors import (
    RtClientError,
)
from .events import Ack, ConnectionState, Delivered, Event
from .hints import DEFAULT_MAX_SERVER_DELAY
from .outbox import Overflow
from .quality import QualitySnapshot, QualityTracker
from .reconnect import ReconnectPolicy
from .session import Session, leave_key
from .sizing import size_function
from .store import SqliteStore, Store
from .tokens import StaticToken, TokenSource, as_provider
from .transports.adapted import AdaptedTransport
from .transports.base import Transport
from .transports.factory import make_transport
from .transports.socketio import SocketIOTransport

__all__ = ["Client"]

log = logging.getLogger("rtclient")

_RNG = random.Random()
"""Shuffles the URL lists of clients whose backoff has no seed."""


def _loop_time() -> float:
    """The running loop's clock (its timers' clock), or ``time.monotonic`` outside a loop.

    The standard loop's clock is ``time.monotonic``; a test loop with virtual time
    (looptime) moves both the session's deadlines and the loop's timers.
    """
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


class Client(GenericOps, OutcomeRouter):
    """A client that loses nothing and doubles nothing across reconnects.

    ::

        async with Client(url, token=token) as client:
            await client.join("room-1")
            ack = await client.send("room-1", "hello")
            async for event in client.events():
                ...

    :param url: the server's WebSocket URL (``ws://host:port/ws``), or a list (or
        tuple) of URLs: the nodes of a cluster. The client stays on a URL that works;
        when one fails it moves to the next at once (a dead node costs one attempt),
        and backs off only once every URL failed; a drain (close 1012 or a
        ``server:draining`` notice) moves it on at once. Cursors, the outbox, dedupe
        and Socket.IO's recovery state go with it. One token source for every URL.
    :param url_order: ``"shuffle"`` (default: the list is shuffled once per client, so
        a fleet spreads over the nodes, and so do a dead node's clients) or
        ``"given"`` (tried in the order given: a primary, then fallbacks).
    :param token: a string, a sync/async callable, or a TokenProvider; asked before
        every connection attempt, and again with ``force=True`` after a 4002 (and after
        a first 4001, unless it is a fixed string).
    :param transport: ``"websocket"`` (raw WebSocket on the websockets library),
        ``"aiohttp"`` (the same wire on aiohttp's client, cheaper per message),
        ``"socketio"``, or a
        :class:`~rtclient.transports.Transport`.
    :param protocol: ``"rooms"`` (the server speaks docs/protocol.md: rooms, event
        logs, sync) or ``"generic"`` (any server: use :meth:`emit`, :meth:`call`,
        :meth:`on` and :meth:`on_connect`). Generic mode speaks Socket.IO with
        ``transport="socketio"``, and any plain WebSocket server's own envelope on
        ``"websocket"`` / ``"aiohttp"`` through ``adapter``.
    :param adapter: generic mode on a raw WebSocket: what the server speaks (an
        :class:`~rtclient.adapters.Adapter`); default the seed's JSON envelope
        ``{"type", "payload"}`` (:class:`~rtclient.adapters.JsonEnvelope`).
    :param token_query: generic mode on a raw WebSocket: put the token in the URL's
        query under this name (``"token"``) instead of the ``Authorization`` header,
        for servers that read it only there; it is then redacted from every log line
        and exception text.
    :param namespace: the Socket.IO namespace.
    :param codec: ``"json"`` (default) or ``"msgpack"``: on the raw WebSocket transport
        negotiated with the subprotocol ``rtclient.v1.<codec>``; over Socket.IO the
        packet serializer (``socket.io-msgpack-parser`` compatible).
    :param compression: offer permessage-deflate (raw WebSocket transport).
    :param backoff: the reconnect schedule (see :mod:`rtclient.reconnect` for the
        decisions built on it).
    :param ack_timeout: seconds without an ack before a request is sent again.
    :param outbox_limit: most unacknowledged messages; ``outbox_max_bytes`` the most bytes.
    :param overflow: ``"raise"`` (OutboxFull) or ``"drop_oldest"`` when the outbox is full.
    :param max_in_flight: most messages sent and not yet acknowledged at once.
    :param sync_page_size: how many missed events to ask for per ``sync`` page after a
        reconnect.
    :param connect_timeout: seconds for one connection attempt (upgrade and welcome).
    :param max_token_refreshes: 4002 rejections in a row (no welcome between them)
        before TokenExpired.
    :param ping_interval: seconds between heartbeats (WebSocket pings; seed default 25 s).
    :param ping_timeout: a heartbeat unanswered this long means a dead link: the client
        drops the connection and reconnects. A frozen peer is noticed within
        ``ping_interval + ping_timeout``.
    :param quality_window: how many recent heartbeats the quality level is judged on.
    :param max_pending_events: most events waiting for the handlers (and per
        ``events()`` iterator); past it the client stops reading the socket until they
        caught up, so a slow application pushes back on the server instead of growing
        memory.
    :param batch_max: send up to this many requests in one ``batch`` frame (raw
        WebSocket, servers that list the ``batch`` feature); each is still acknowledged
        on its own. 1: no batching.
    :param batch_wait: with batching, wait this long for more requests before sending
        a batch that is not full (trades latency for fewer frames).
    :param store: a path (an SQLite file) or a :class:`~rtclient.store.Store`: the
        outbox, the joined rooms and their cursors survive the bot's own restart.
        Unacknowledged messages are sent again with their original ids (the server
        deduplicates them); rooms are rejoined and synced from where the last process
        got to. Cursors are recorded once the event was handed to the handlers, so
        after a crash an event may be delivered again, never skipped. One store per
        client identity: a second process opening it gets StoreLocked.
    :param max_server_delay: the longest the server can make the client wait (seconds,
        default 60): a ``Retry-After`` header, a ``retryAfter`` in a close reason or a
        rate-limit reply beyond it is cut down to it; unreadable ones are ignored.
    :param token_refresh_ahead: refresh the token in band (``token:refresh``, no
        reconnect) this long before its ``exp``, or at half its lifetime if sooner.
    :param clock: the monotonic clock of the session's deadlines (ack timeouts, TTLs,
        holds) and of the reconnect policy; default: the running event loop's clock, so
        that a test loop with virtual time (``looptime``) drives them with the loop's
        own timers.
    :param wall_clock: the clock token ``exp``/``iat`` claims are compared with
        (default ``time.time``); tests in virtual time pass one that moves with the loop.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        url_order: UrlOrder = "shuffle",
        token: TokenSource = None,
        transport: Literal["websocket", "aiohttp", "socketio"] | Transport = "websocket",
        protocol: Literal["rooms", "generic"] = "rooms",
        adapter: Adapter | None = None,
        token_query: str | None = None,
        namespace: str = "/",
        codec: Codec | str | None = None,
        compression: bool = True,
        backoff: Backoff | None = None,
        ack_timeout: float = 10.0,
        outbox_limit: int = 10_000,
        outbox_max_bytes: int = 64 * 1024 * 1024,
        overflow: Overflow = "raise",
        max_in_flight: int = 64,
        sync_page_size: int = 100,
        connect_timeout: float = 10.0,
        max_token_refreshes: int = 3,
        ping_interval: float | None = 25.0,
        ping_timeout: float = 20.0,
        token_refresh_ahead: float = 60.0,
        quality_window: int = 8,
        store: str | Store | None = None,
        max_pending_events: int = 10_000,
        batch_max: int = 1,
        batch_wait: float = 0.0,
        max_server_delay: float = DEFAULT_MAX_SERVER_DELAY,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.urls: tuple[str, ...] = as_urls(url)
        """The URLs as given (``url`` is the one in use)."""
        self.backoff = backoff or Backoff()
        seeded = random.Random(self.backoff.seed) if self.backoff.seed is not None else _RNG
        self._rotation = rotation(len(self.urls), url_order, seeded)
        """Indexes into :attr:`urls`, in the order they are tried."""
        self._labels = tuple(endpoint_label(u) for u in self.urls)
        self._tokens = as_provider(token)
        self.protocol = protocol
        self._check_payload = payload_check(
            codec,
            binary_attachments=transport == "socketio" or isinstance(transport, SocketIOTransport),
        )
        """Raises TypeError for a payload the wire cannot carry (the codec decides)."""
        self._transport = make_transport(
            self.urls,
            transport,
            codec,
            protocol,
            namespace,
            compression=compression,
            adapter=adapter,
            token_query=token_query,
        )
        self._acks: bool = getattr(self._transport, "acks", True)
        """False for a raw WebSocket whose adapter recognises no acks."""
        self._check_emit: Callable[[str, Any], None] = getattr(
            self._transport, "check_emit", lambda event, data: self._check_payload(data)
        )
        """Raises TypeError / ValueError for an emit the wire cannot carry (generic mode)."""
        self._hooks: list[Callable[[Client], Awaitable[None] | None]] = []
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.token_refresh_ahead = token_refresh_ahead
        if batch_max < 1 or batch_wait < 0:
            raise ValueError("batch_max must be >= 1 and batch_wait >= 0")
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self._wall_clock = wall_clock
        """For token times (``iat``, ``exp``): seconds since the epoch."""
        self.max_token_refreshes = max_token_refreshes
        self._clock = clock = clock or _loop_time
        self._session = Session(
            outbox_limit=outbox_limit,
            outbox_max_bytes=outbox_max_bytes,
            overflow=overflow,
            ack_timeout=ack_timeout,
            max_in_flight=max_in_flight,
            sync_page_size=sync_page_size,
            quality=QualityTracker(window=quality_window),
            max_server_delay=max_server_delay,
            size_of=size_function(codec),
        )
        if isinstance(self._transport, SocketIOTransport):
            # Connection state recovery's pid and offset are kept by the session.
            self._transport.resume = self._session.resume
        self._store: Store | None = SqliteStore(store) if isinstance(store, str) else store
        self._mirror = (
            StoreMirror(self._store, self._session, clock_offset=wall_clock() - clock())
            if self._store
            else None
        )
        self._dispatcher = Dispatcher(
            log,
            after=self._mirror.delivered if self._mirror else None,
            max_pending=max_pending_events,
        )
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._state_waiters: list[tuple[frozenset[ConnectionState], asyncio.Future[None]]] = []
        self._runner = Runner(self)
        self._writer = Writer(self._session)
        self._timer = SessionTimer(
            self._session,
            clock,
            self._timer_fired,
            self._running,
        )
        self._progress = Flag()
        self._policy = ReconnectPolicy(
            self.backoff,
            max_server_delay=max_server_delay,
            max_token_refreshes=max_token_refreshes,
            refreshable=not isinstance(self._tokens, StaticToken),
            max_unwelcomed=(
                3
                if (protocol == "rooms" and isinstance(self._transport, SocketIOTransport))
                or (
                    isinstance(self._transport, AdaptedTransport) and self._transport.adapter.greets
                )
                else None
            ),
            endpoints=len(self.urls),
        )
        self._session.endpoint = self.endpoint
        self._namespace = namespace
        self._fatal: RtClientError | None = None
        self._fatal_reported = False
        self._counters = {
            "attempts": 0,
            "reconnects": 0,
            "token_refreshes": 0,
            "in_band_refreshes": 0,
            "dead_links": 0,
            "read_pauses": 0,
            "pongs_unread": 0,
            "batches": 0,
            "failovers": 0,
            "drains": 0,
            "connect_refusals": 0,
            "refusals": 0,
        }

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL in use, or the one the next attempt goes to (one of :attr:`urls`)."""
        return self.urls[self._endpoint_index]

    @property
    def endpoint(self) -> str:
        """:attr:`url` as it may be shown: without its query or user info."""
        return self._labels[self._endpoint_index]

    @property
    def _endpoint_index(self) -> int:
        return self._rotation[self._policy.current]

    @property
    def state(self) -> ConnectionState:
        """The connection state (see :class:`~rtclient.events.ConnectionState`)."""
        return self._session.state

    @property
    def rooms(self) -> list[str]:
        """The joined rooms, in join order."""
        return list(self._session.rooms)

    @property
    def quality(self) -> QualitySnapshot:
        """The link's quality: level, SRTT, RTTVAR, RTO, p50 / p95 RTT, samples, missed ratio."""
        return self._session.quality_snapshot()

    @property
    def recovered(self) -> bool:
        """Whether the server recovered the session on the last (re)connect.

        Socket.IO v4 connection state recovery: True when the server replayed what was
        missed; after a reconnect where it could not, a ``gap`` event was delivered.
        """
        return self._session.welcome.recovered is True

    @property
    def user_id(self) -> str | None:
        """The user id the server welcomed us as (None before the first welcome)."""
        return self._session.welcome.user_id

    async def connect(self, *, wait: bool = True) -> None:
        """Start the client; with ``wait``, return once it is live (CONNECTED).

        Retryable failures are retried under the backoff policy meanwhile; a fatal one
        (bad credentials, forbidden, protocol mismatch, retries exhausted) raises. If it
        raises or is cancelled, the client is closed: no task of it goes on running.
        """
        if self._runner.task is not None:
            raise RtClientError("connect() was already called")
        if self._mirror is not None:
            await self._mirror.restore(on_failure=self._restore_failed)
        self._session.connecting()
        self._pump()
        self._runner.start()
        if wait:
            try:
                await self.wait_for(ConnectionState.CONNECTED)
            except BaseException:
                # Failed or cancelled (``asyncio.timeout`` around ``async with``): the
                # caller will not close what it never got, so nothing may go on running.
                await self.close(flush=False)
                raise

    async def close(self, *, flush: bool = True, timeout: float | None = None) -> None:
        """Stop the client; returns when every task it started has ended.

        With ``flush`` (the default) the client first waits up to ``timeout`` seconds
        (default: ``ack_timeout``) for the outbox to drain while connected; whatever is
        still unacknowledged then fails with ClientClosed.
        """
        runner = self._runner.task
        if runner is None:
            self._session.closing()
            self._session.closed()
            self._pump()
            return
        if flush and self._fatal is None and len(self._session.outbox):
            limit = self._session.ack_timeout if timeout is None else timeout
            try:
                async with asyncio.timeout(limit):
                    while len(self._session.outbox) and not runner.done():
                        self._progress.clear()
                        await self._progress.wait()
            except TimeoutError:
                log.warning(
                    "close: %d messages not acknowledged in time", len(self._session.outbox)
                )
        if self.state not in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            self._session.closing()
            self._pump()
        self._runner.stop.set()
        conn = self._runner.link.conn
        if conn is not None:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await conn.close(1000, "client closing")
            except (RtClientError, TimeoutError):
                conn.abort()
        self._runner.interrupt()  # an attempt or a backoff sleep under way
        if asyncio.current_task() is self._runner.dispatch_task:
            # Called from a handler: the dispatcher cannot end before this handler
            # returns, so do not wait for it; everything ends right after.
            return
        await asyncio.shield(runner)

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def wait_for(self, *states: ConnectionState, timeout: float | None = None) -> None:
        """Wait until the client is in one of ``states``.

        Raises the fatal error (or ClientClosed) if the client closes first, unless
        CLOSED is one of ``states``.
        """
        wanted = frozenset(states)
        if self.state in wanted:
            return
        self._check_not_closed(wanted)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._state_waiters.append((wanted, future))
        async with asyncio.timeout(timeout):
            await future

    # -- the application's operations ----------------------------------------------------

    async def join(self, room: str, *, timeout: float | None = None) -> list[str]:
        """Join ``room`` and return its members. The room is rejoined after every reconnect.

        While offline this waits for the next connection. Raises Forbidden if the
        server refuses the room.
        """
        key = self._session.join(room, self._clock())
        future = self._waiter(key)
        self._pump(wake_writer=False)  # _await writes it
        result: list[str] = await self._await(future, timeout)
        return result

    async def leave(self, room: str) -> None:
        """Leave ``room``: it is forgotten, its queued messages fail with NotJoined."""
        future = self._waiter(leave_key(room))
        self._session.leave(room, self._clock())
        self._pump(wake_writer=False)  # _await writes it
        await self._await(future, None)

    def send_nowait(self, room: str, text: str, *, ttl: float | None = None) -> str:
        """Queue a message for ``room`` and return its message id at once.

        The message is delivered exactly once, however many reconnects it takes
        (unless ``ttl`` passes first). Problems arrive as ``error`` events.
        """
        message_id = self._session.send(room, text, self._clock(), ttl=ttl)
        self._pump()
        return message_id

    async def send(
        self, room: str, text: str, *, ttl: float | None = None, timeout: float | None = None
    ) -> Ack:
        """Send a message to ``room``; return the server's :class:`~rtclient.events.Ack`.

        Queued while offline, sent again after reconnects until acknowledged. Raises
        NotJoined, OutboxFull, MessageDropped, MessageExpired (``ttl``), RequestRejected,
        ClientClosed; AckTimeout if ``timeout`` passes first (the message stays queued).
        """
        message_id = self._session.send(room, text, self._clock(), ttl=ttl)
        future = self._waiter(message_id)
        self._pump(wake_writer=False)  # _await writes it
        ack: Ack = await self._await(future, timeout)
        return ack

    def send_volatile(self, room: str, text: str) -> bool:
        """Send now or never (presence pings, cursors, game ticks): never queued.

        Returns False — and counts it in ``stats()["volatile_dropped"]`` — when the
        client is not live or ``max_in_flight`` acks are outstanding (congestion).
        """
        sent = self._session.send_volatile(room, text)
        self._pump()
        return sent

    async def send_direct(self, user_id: str, text: str, *, ttl: float | None = None) -> Ack:
        """Send a direct message to every connection of ``user_id``."""
        message_id = self._session.send_direct(user_id, text, self._clock(), ttl=ttl)
        future = self._waiter(message_id)
        self._pump(wake_writer=False)  # _await writes it
        ack: Ack = await self._await(future, None)
        return ack

    def cancel(self, message_id: str) -> bool:
        """Withdraw a queued message that has not been transmitted; True if withdrawn."""
        withdrawn = self._session.cancel(message_id)
        self._pump()
        return withdrawn

    async def request(
        self, type_: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send any request that the server acknowledges; return the ack's payload.

        ``payload`` must be encodable by the codec (TypeError otherwise, at once):
        JSON values, plus ``bytes`` under MessagePack.
        """
        self._check_payload(payload)
        result: dict[str, Any] = await self._request(type_, payload, timeout)
        return result

    async def _request(
        self, type_: str, payload: Any, timeout: float | None, *, resend: bool = True
    ) -> Any:
        key = self._session.request(type_, payload, self._clock(), resend=resend)
        future = self._waiter(key)
        self._pump(wake_writer=False)  # _await writes it
        return await self._await(future, timeout)

    async def members(self, room: str) -> list[str]:
        """The users currently in ``room``, from the server."""
        reply = await self.request("room:members", {"roomId": room})
        members = reply.get("members")
        return [m for m in members if isinstance(m, str)] if isinstance(members, list) else []

    def typing(self, room: str, active: bool = True) -> bool:
        """Send a typing indicator (volatile: False when not connected, nothing queued)."""
        sent = self._session.notify("typing:start" if active else "typing:stop", {"roomId": room})
        self._pump()
        return sent

    def mark_read(self, room: str, event_id: int) -> bool:
        """Send a read receipt (volatile: False when not connected)."""
        sent = self._session.notify("message:read", {"roomId": room, "eventId": event_id})
        self._pump()
        return sent

    def on_connect(self, hook: Callable[[Client], Awaitable[None] | None]) -> None:
        """Run ``hook(client)`` after every (re)connect, before queued messages flush.

        For resubscribing on servers that forget subscriptions (use :meth:`call` in it).
        A hook that raises is reported as an ``error`` event; the client goes live anyway.
        """
        self._hooks.append(hook)
        self._session.gate_on_welcome = True

    def on(self, name: str, handler: Handler) -> None:
        """Call ``handler(event)`` for every ``name`` event, in order.

        Names: server events (``"chat:message"``, ``"user:joined"``, …, ``"*"`` for all
        of them), and ``"state"``, ``"gap"``, ``"error"``. Handlers may be async.
        """
        self._dispatcher.on(name, handler)

    def off(self, name: str, handler: Handler) -> None:
        """Remove a handler added with :meth:`on`."""
        self._dispatcher.off(name, handler)

    @overload
    def events(self, *, everything: Literal[False] = False) -> AsyncIterator[Event]: ...
    @overload
    def events(self, *, everything: Literal[True]) -> AsyncIterator[Delivered]: ...
    def events(self, *, everything: bool = False) -> AsyncIterator[Delivered]:
        """Iterate over the server's events from now on; ends when the client closes.

        Only :class:`~rtclient.events.Event` items, so a loop reading ``event.name``
        runs through reconnects; ``everything=True`` also yields what the client itself
        reports (StateChanged, Gap, QualityChanged, ErrorEvent), each in its place.
        """
        return self._dispatcher.stream(events_only=not everything)

    def stats(self) -> dict[str, int]:
        """Counters: sent, acked, resent, delivered, duplicates dropped, queued, reconnects, …

        ``endpoint`` is the index in :attr:`urls` of the URL in use (or tried next);
        ``failovers`` counts moves to another URL, ``drains`` the connections the
        server ended by draining, ``connect_refusals`` the Socket.IO connects the
        server refused for a reason other than the credentials (retried), ``refusals``
        the fatal answers (401/403, 4001/4003, a protocol error) of one URL that moved
        the client on to the next one.
        """
        return {
            **self._session.stats(),
            **self._counters,
            **getattr(self._transport, "counters", {}),
            "handler_errors": self._dispatcher.handler_errors,
            "endpoint": self._endpoint_index,
        }

    def __repr__(self) -> str:
        return f"<Client {self.endpoint} {self.state.name}>"

    # -- internals: outcomes (the routing is in OutcomeRouter, rtclient/_routing.py) ---

    async def enqueue(self, room: str, text: str, *, ttl: float | None = None) -> str:
        """Queue a message and return its id once it is safe: durable with a ``store``.

        Delivery goes on in the background (as with :meth:`send_nowait`); a bot that is
        killed after this returned sends the message from its next process.
        """
        message_id = self.send_nowait(room, text, ttl=ttl)
        if self._store is not None:
            await self._store.flush()
        return message_id

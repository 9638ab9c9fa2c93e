"""The asyncio client: runs the session core over a transport and keeps it connected.

:class:`Client` owns one task group with three long-lived tasks — the supervisor
(connect, read, reconnect with backoff), the timer (ack timeouts, TTLs) and the
dispatcher (handlers and ``events()``) — plus a writer task per connection, nested
under the supervisor. ``close()`` ends all of them; nothing is left running.
All decisions are the session's (:mod:`rtclient.session`); this module only does the
waiting, the sleeping and the socket work.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Literal, overload

from .backoff import Backoff
from .codec import Codec, payload_check
from .dispatch import Delivered, Dispatcher, Handler
from .errors import (
    AckTimeout,
    ClientClosed,
    ConnectionLost,
    MessageDropped,
    ProtocolError,
    RtClientError,
    TransportError,
)
from .events import Ack, ConnectionState, ErrorEvent, Event, StateChanged
from .flag import Flag
from .hints import DEFAULT_MAX_SERVER_DELAY
from .journal import CursorForgotten, CursorSet, Enqueued, Removed, RoomsSet
from .outbox import Overflow
from .outgoing import Outgoing
from .quality import QualitySnapshot, QualityTracker
from .reconnect import NoWelcome, ReconnectPolicy, Step
from .redact import remember_token
from .session import Completed, Failed, Session, leave_key
from .sizing import size_function
from .store import SqliteStore, Store, StoredMessage
from .tokens import StaticToken, TokenSource, as_provider, token_times
from .transports.aiohttp_ws import AiohttpTransport
from .transports.base import Connection, Transport
from .transports.socketio import SocketIOTransport
from .transports.websocket import WebSocketTransport

__all__ = ["Client"]

log = logging.getLogger("rtclient")


def _loop_time() -> float:
    """The running loop's clock (its timers' clock), or ``time.monotonic`` outside a loop.

    The standard loop's clock is ``time.monotonic``; a test loop with virtual time
    (looptime) moves both the session's deadlines and the loop's timers.
    """
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


class Client:
    """A client that loses nothing and doubles nothing across reconnects.

    ::

        async with Client(url, token=token) as client:
            await client.join("room-1")
            ack = await client.send("room-1", "hello")
            async for event in client.events():
                ...

    :param url: the server's WebSocket URL (``ws://host:port/ws``).
    :param token: a string, a sync/async callable, or a TokenProvider; asked before
        every connection attempt, and again with ``force=True`` after a 4002 (and after
        a first 4001, unless it is a fixed string).
    :param transport: ``"websocket"`` (raw WebSocket on the websockets library),
        ``"aiohttp"`` (the same wire on aiohttp's client, cheaper per message),
        ``"socketio"``, or a
        :class:`~rtclient.transports.Transport`.
    :param protocol: ``"rooms"`` (the server speaks docs/protocol.md: rooms, event
        logs, sync) or ``"generic"`` (any Socket.IO server: use :meth:`emit`,
        :meth:`call`, :meth:`on` and :meth:`on_connect`).
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
        holds); default: the running event loop's clock, so that a test loop with
        virtual time (``looptime``) drives them with the loop's own timers.
    :param wall_clock: the clock token ``exp``/``iat`` claims are compared with
        (default ``time.time``); tests in virtual time pass one that moves with the loop.
    """

    def __init__(
        self,
        url: str,
        *,
        token: TokenSource = None,
        transport: Literal["websocket", "aiohttp", "socketio"] | Transport = "websocket",
        protocol: Literal["rooms", "generic"] = "rooms",
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
        self.url = url
        self._tokens = as_provider(token)
        self.protocol = protocol
        self._check_payload = payload_check(
            codec,
            binary_attachments=transport == "socketio" or isinstance(transport, SocketIOTransport),
        )
        """Raises TypeError for a payload the wire cannot carry (the codec decides)."""
        self._transport = _make_transport(
            url, transport, codec, protocol, namespace, compression=compression
        )
        self._hooks: list[Callable[[Client], Awaitable[None] | None]] = []
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.token_refresh_ahead = token_refresh_ahead
        if batch_max < 1 or batch_wait < 0:
            raise ValueError("batch_max must be >= 1 and batch_wait >= 0")
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self._token: str | None = None
        self._token_fetched_at = 0.0
        self._refresh_timer: asyncio.TimerHandle | None = None
        self._refresh_due = 0.0
        """When (wall clock) the in-band refresh of the current token is due."""
        self._refresh_floor = 0.0
        """The earliest the server's ``token:expiring`` may pull it to: half the lifetime."""
        self.max_token_refreshes = max_token_refreshes
        self._clock = clock or _loop_time
        self._wall_clock = wall_clock
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
        self._session.track_changes = self._store is not None
        self._clock_offset = wall_clock() - self._clock()
        self._dispatcher = Dispatcher(
            log,
            after=self._delivered if self._store else None,
            max_pending=max_pending_events,
        )
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._state_waiters: list[tuple[frozenset[ConnectionState], asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._stop = Flag()
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._progress = Flag()
        self._interrupt: asyncio.Timeout | None = None
        self._policy = ReconnectPolicy(
            self.backoff,
            max_server_delay=max_server_delay,
            max_token_refreshes=max_token_refreshes,
            refreshable=not isinstance(self._tokens, StaticToken),
            max_unwelcomed=(
                3
                if protocol == "rooms" and isinstance(self._transport, SocketIOTransport)
                else None
            ),
        )
        self._conn: Connection | None = None
        self._hook_group: asyncio.TaskGroup | None = None
        self._helpers: list[asyncio.Task[None]] = []
        self._out: Outgoing | None = None
        self._dispatch_task: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._read_pauses_begun = 0
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
        }

    # -- lifecycle ---------------------------------------------------------------------

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
        if self._runner is not None:
            raise RtClientError("connect() was already called")
        if self._store is not None:
            await self._restore(self._store)
        self._session.connecting()
        self._pump()
        self._runner = asyncio.create_task(self._main(), name=f"rtclient {self.url}")
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
        if self._runner is None:
            self._session.closing()
            self._session.closed()
            self._pump()
            return
        if flush and self._fatal is None and len(self._session.outbox):
            limit = self._session.ack_timeout if timeout is None else timeout
            try:
                async with asyncio.timeout(limit):
                    while len(self._session.outbox) and not self._runner.done():
                        self._progress.clear()
                        await self._progress.wait()
            except TimeoutError:
                log.warning(
                    "close: %d messages not acknowledged in time", len(self._session.outbox)
                )
        if self.state not in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            self._session.closing()
            self._pump()
        self._stop.set()
        conn = self._conn
        if conn is not None:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await conn.close(1000, "client closing")
            except (RtClientError, TimeoutError):
                conn.abort()
        if self._interrupt is not None and self._interrupt.when() is None:
            self._interrupt.reschedule(-1.0)  # an attempt or a backoff sleep under way
        if asyncio.current_task() is self._dispatch_task:
            # Called from a handler: the dispatcher cannot end before this handler
            # returns, so do not wait for it; everything ends right after.
            return
        await asyncio.shield(self._runner)

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

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        ack: bool = True,
        ttl: float | None = None,
        timeout: float | None = None,
        message_id_field: str | None = "messageId",
    ) -> Any:
        """Emit any event (generic mode); with ``ack``, return the server's ack arguments.

        Queued while offline and sent again after reconnects until acknowledged, like
        :meth:`send`; a dict ``data`` carries the message id under ``message_id_field``
        so the receiver can drop duplicates. ``ack=False`` returns once the event was
        written to a live connection. ``data`` must be encodable: JSON values, plus
        ``bytes`` (MessagePack, or Socket.IO's binary attachments); TypeError at once.
        """
        self._check_payload(data)
        future = self._waiter(
            self._session.emit(
                event, data, self._clock(), ack=ack, ttl=ttl, message_id_field=message_id_field
            )
        )
        self._pump(wake_writer=False)  # _await writes it
        return await self._await(future, timeout)

    def emit_nowait(
        self, event: str, data: Any = None, *, ack: bool = True, ttl: float | None = None
    ) -> str:
        """Queue an event (generic mode) and return its message id at once."""
        self._check_payload(data)
        message_id = self._session.emit(event, data, self._clock(), ack=ack, ttl=ttl)
        self._pump()
        return message_id

    async def call(self, event: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Emit ``event`` and return the ack's arguments; not kept in the outbox.

        Sent as soon as a connection is up — also from an :meth:`on_connect` hook,
        before the outbox flushes. If the connection drops first it is sent again on
        the next one; it fails with AckTimeout after ``ack_timeout`` unanswered.
        """
        self._check_payload(data)
        future = self._waiter(self._session.request(event, data, self._clock(), raw=True))
        self._pump(wake_writer=False)  # _await writes it
        return await self._await(future, timeout)

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
        """Counters: sent, acked, resent, delivered, duplicates dropped, queued, reconnects, …"""
        return {
            **self._session.stats(),
            **self._counters,
            "handler_errors": self._dispatcher.handler_errors,
        }

    def __repr__(self) -> str:
        return f"<Client {self.url} {self.state.name}>"

    # -- internals: tasks ----------------------------------------------------------------

    async def _main(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._dispatch_task = tg.create_task(self._dispatcher.run(), name="rtclient dispatcher")
            self._arm_timer()
            try:
                self._fatal = await self._supervise()
            finally:
                self._disarm_timer()
                aclose = getattr(self._tokens, "aclose", None)
                if aclose is not None:
                    await aclose()
                self._session.closing()
                self._session.closed(self._fatal)
                self._pump()
                self._dispatcher.end()
        if self._store is not None:
            await self._store.close()  # after the dispatcher: the last cursors are in

    async def _supervise(self) -> RtClientError | None:
        """Run connections until one ends fatally (its error) or :meth:`close` (None).

        Runs in the runner task itself, not a task of its own (one task less per
        client); ``close()`` interrupts whatever it awaits through ``_interrupt``, a
        timeout used as a cancel scope.
        """
        try:
            async with asyncio.timeout(None) as scope:
                self._interrupt = scope
                return await self._connections()
        except TimeoutError:
            if self._stop.is_set():
                return None  # close() interrupted an attempt or a backoff sleep
            raise
        finally:
            self._interrupt = None

    async def _connections(self) -> RtClientError | None:
        """Connect, run the connection, carry out the policy's decision; repeat until stopped."""
        policy = self._policy
        force_refresh = False
        while not self._stop.is_set():
            self._counters["attempts"] += 1
            try:
                token = await self._tokens.get(force=force_refresh)
                remember_token(token, self)  # no piece of it in any log from now on
                self._token, self._token_fetched_at = token, self._wall_clock()
            except Exception as exc:
                log.warning("token provider failed: %s", type(exc).__name__)
                self._dispatcher.put(ErrorEvent("TOKEN_PROVIDER", "token provider failed", exc))
                decision = policy.token_failed(self._clock())
                if decision.error is not None:
                    return decision.error
                await self._pause(exc, decision.delay, lost=False)
                continue
            force_refresh = False
            error, welcomed = await self._connect_once(token)
            if self._stop.is_set():
                return None
            decision = policy.decide(error, welcomed=welcomed, now=self._clock())
            log.info("connection ended: %s (%s)", error, decision.step.value)
            if welcomed:
                self._counters["reconnects"] += 1
            if decision.error is not None:
                return decision.error
            if decision.step is Step.REFRESH:
                self._counters["token_refreshes"] += 1
                force_refresh = True
            await self._pause(error, decision.delay, lost=welcomed)
        return None

    async def _pause(self, error: BaseException, delay: float, *, lost: bool) -> None:
        """Tell the session (state RECONNECTING with ``delay``), then sleep unless stopped."""
        if lost:
            self._session.connection_lost(error, delay)
        else:
            self._session.attempt_failed(error, delay)
        self._pump()
        try:
            async with asyncio.timeout(delay):
                await self._stop.wait()
        except TimeoutError:
            pass

    async def _connect_once(self, token: str | None) -> tuple[RtClientError, bool]:
        """One connection attempt and, if it opens, its whole life.

        Returns why it ended and whether the server's welcome arrived.
        """
        try:
            conn = await self._transport.connect(
                self.url, token=token, open_timeout=self.connect_timeout
            )
        except RtClientError as exc:
            return exc, False
        self._conn = conn
        self._out = Outgoing(
            conn,
            self._session,
            batchable=getattr(conn, "batchable", False),
            batch_max=self.batch_max,
            batch_wait=self.batch_wait,
            report=self._dispatcher.put,
            counters=self._counters,
        )
        self._session.connection_opened()
        welcomed = False
        try:
            async with asyncio.TaskGroup() as tg:
                self._hook_group = tg
                self._helpers = []
                self._kick_writer()
                if self.ping_interval is not None:
                    self._helpers.append(
                        tg.create_task(self._heartbeat(conn), name="rtclient heartbeat")
                    )
                try:
                    error, welcomed = await self._read(conn)
                finally:
                    self._cancel_refresh()
                    for helper in self._helpers:
                        helper.cancel()
                    if self._writer is not None:
                        self._writer.cancel()
        finally:
            self._conn = self._out = None
            self._hook_group = None
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await conn.close()  # idempotent; releases what the transport holds
            except (RtClientError, TimeoutError):
                conn.abort()
        return error, welcomed

    async def _read(self, conn: Connection) -> tuple[RtClientError, bool]:
        welcomed = False
        try:
            async with asyncio.timeout(self.connect_timeout):
                while not welcomed:
                    await self._receive(conn)
                    welcomed = self._session.welcomed
            self._policy.connected(self._clock())
            self._after_welcome()
            while True:
                await self._receive(conn)
                if self._dispatcher.backlog >= self._dispatcher.max_pending:
                    self._counters["read_pauses"] += 1
                    self._reading_paused = True
                    self._read_pauses_begun += 1
                    try:
                        await self._dispatcher.wait_for_room()
                    finally:
                        self._reading_paused = False
        except TimeoutError:
            conn.abort()
            return NoWelcome("no welcome from the server in time"), welcomed
        except (ConnectionLost, TransportError) as exc:
            return exc, welcomed

    async def _receive(self, conn: Connection) -> None:
        try:
            envelope = await conn.recv()
        except ProtocolError as exc:
            self._session.malformed(str(exc))
        else:
            try:
                self._session.receive(envelope, self._clock())
            except Exception as exc:  # a bug of ours must not take the client down
                log.exception("error handling a frame")
                self._session.malformed(f"frame could not be handled: {exc!r}")
        self._pump()

    def _kick_writer(self) -> None:
        """Start the connection's writer task unless someone is writing already.

        The task lives only while there is something to write: an idle client holds no
        writer (a caller writing its own request needs none either, see _write_now).
        """
        out, group = self._out, self._hook_group
        if self._writer is not None and self._writer.done():
            # Cancelled with its connection before it ever ran: its finally never cleared it.
            self._writer = None
        if out is None or group is None or out.busy or self._writer is not None:
            return  # no connection yet, or whoever writes takes this too
        if out.unsent or self._session.has_data_to_send():
            writing = self._write(out)
            try:
                self._writer = group.create_task(writing, name="rtclient writer")
            except RuntimeError:
                # The connection's group is finishing (its connection is ending, a
                # caller got here first): what is queued goes out after the reconnect.
                writing.close()

    async def _write(self, out: Outgoing) -> None:
        try:
            await out.flush()
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None

    async def _write_now(self) -> None:
        """Write what the session has now from the caller's task, or leave it to the writer.

        One round only: what other callers queue while this one waits on a full socket
        buffer is the writer task's, started when this caller is done.
        """
        out = self._out
        if out is not None and out.inline and self._writer is None:
            try:
                await out.flush(once=True)  # waits only on a full socket buffer
            finally:
                self._kick_writer()  # the rest, or what a cancelled caller left
        else:
            self._kick_writer()

    def _after_welcome(self) -> None:
        """Tell the app if its Socket.IO session was not recovered; start the hooks."""
        welcome = self._session.welcome
        gap = welcome.session_gap(self._namespace)
        if gap is not None:
            self._dispatcher.put(gap)
        group = self._hook_group
        if group is None:
            return
        if self._hooks:
            group.create_task(self._run_hooks(), name="rtclient on_connect")
        if welcome.refreshable:
            self._plan_refresh()

    # -- internals: in-band token refresh --------------------------------------------------

    def _plan_refresh(self) -> None:
        """Arm the refresh of the current token, if it expires (a timer: no task waits).

        Due ``token_refresh_ahead`` before ``exp``, or at half the token's lifetime if
        that is sooner.
        """
        self._cancel_refresh()
        iat, exp = token_times(self._token)
        if exp is None:
            return  # a token that does not expire needs no refresher
        lifetime = max(0.0, exp - (iat if iat is not None else self._token_fetched_at))
        self._refresh_due = exp - min(self.token_refresh_ahead, lifetime / 2)
        self._refresh_floor = exp - lifetime / 2
        self._arm_refresh()

    def _arm_refresh(self) -> None:
        delay = max(0.0, self._refresh_due - self._wall_clock())
        self._refresh_timer = asyncio.get_running_loop().call_later(delay, self._start_refresh)

    def _cancel_refresh(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None

    def _refresh_sooner(self) -> None:
        """The server warned that the token expires soon (``token:expiring``).

        The refresh moves forward, but never before half the token's life: a
        short-lived token must not refresh in a loop.
        """
        if self._refresh_timer is None:
            return  # none planned, or one under way
        due = min(self._refresh_due, max(self._refresh_floor, self._wall_clock()))
        if due < self._refresh_due:
            self._refresh_timer.cancel()
            self._refresh_due = due
            self._arm_refresh()

    def _start_refresh(self) -> None:
        self._refresh_timer = None
        group = self._hook_group
        if group is None:
            return  # the connection ended: the next welcome plans again
        self._helpers = [task for task in self._helpers if not task.done()]
        self._helpers.append(group.create_task(self._refresh_token(), name="rtclient refresh"))

    async def _run_hooks(self) -> None:
        for hook in list(self._hooks):
            try:
                result = hook(self)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.exception("on_connect hook %r failed", hook)
                self._dispatcher.put(ErrorEvent("HOOK", f"on_connect hook failed: {exc!r}", exc))
        self._session.open_gate(self._clock())
        self._pump()

    async def _heartbeat(self, conn: Connection) -> None:
        """Ping every ``ping_interval``; no pong within ``ping_timeout`` drops the link."""
        if self.ping_interval is None:
            return
        while True:
            await asyncio.sleep(self.ping_interval)
            pauses = self._read_pauses_begun
            try:
                async with asyncio.timeout(self.ping_timeout):
                    rtt = await conn.ping()
                if rtt is None:
                    continue  # the transport's own heartbeat watches this link
            except TimeoutError:
                if self._reading_paused or pauses != self._read_pauses_begun:
                    # We stopped reading (backpressure): the pong may be waiting unread.
                    self._counters["pongs_unread"] += 1
                    continue
                self._counters["dead_links"] += 1
                log.warning("no pong within %.3g s: dropping a dead link", self.ping_timeout)
                self._session.pong_missed()
                self._pump()
                conn.abort()
                return
            except RtClientError:
                return  # the reader reports how the connection ended
            self._session.pong(rtt)
            self._pump()

    async def _refresh_token(self) -> None:
        """Renew the token in band now (the server supports it), then plan the next.

        A refresh that fails is reported and tried again; if the token does expire,
        the server closes with 4002 and the reconnect fetches a fresh one.
        """
        await self.wait_for(ConnectionState.CONNECTED)
        while True:
            exp = token_times(self._token)[1]
            if exp is None:
                return
            try:
                token = await self._tokens.get(force=True)
                remember_token(token, self)
                new_exp = token_times(token)[1]
                if token is None or token == self._token or new_exp is None or new_exp <= exp:
                    # Nothing fresher to offer: let the server's 4002 and a reconnect
                    # fetch one, rather than asking again and again.
                    log.info("token provider has no fresher token: no in-band refresh")
                    return
                await self._request("token:refresh", {"token": token}, None, resend=False)
            except ClientClosed:
                return
            except Exception as exc:
                log.warning("in-band token refresh failed: %s", type(exc).__name__)
                self._dispatcher.put(ErrorEvent("TOKEN_REFRESH", "in-band refresh failed", exc))
                retry = max(0.05, (exp - self._wall_clock()) / 4)
                await asyncio.sleep(retry)
                continue
            self._token, self._token_fetched_at = token, self._wall_clock()
            self._counters["in_band_refreshes"] += 1
            self._plan_refresh()
            return

    def _arm_timer(self) -> None:
        """Set the one timer callback to the session's next deadline (or none).

        A loop callback, not a task: an idle client holds no coroutine for it.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._timer_due = self._session.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _disarm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = None

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self._session.tick(self._clock())
            self._pump(wake_timer=False)
        finally:
            if self._runner is not None and not self._runner.done():
                self._arm_timer()

    # -- internals: outcomes -------------------------------------------------------------

    def _pump(self, *, wake_timer: bool = True, wake_writer: bool = True) -> None:
        """Route the session's outcomes; wake the writer and, unless it is the caller, the timer.

        ``wake_writer=False``: the caller writes itself next (:meth:`_write_now`).
        """
        if self._store is not None:
            self._mirror(self._store)
        for item in self._session.outcomes():
            if isinstance(item, Completed | Failed):
                self._settle(item)
            else:
                if isinstance(item, StateChanged):
                    self._state_changed(item)
                elif isinstance(item, Event) and item.name == "token:expiring":
                    self._refresh_sooner()
                self._dispatcher.put(item)
        if wake_writer:
            self._kick_writer()
        new = self._session.take_new_deadline()
        if wake_timer and new is not None and (self._timer_due is None or new < self._timer_due):
            self._arm_timer()  # a deadline earlier than the one the timer is set for
        self._progress.set()

    def _settle(self, outcome: Completed | Failed) -> None:
        futures = self._waiters.pop(outcome.key, [])
        live = [f for f in futures if not f.done()]
        for future in live:
            if isinstance(outcome, Completed):
                future.set_result(outcome.result)
            else:
                future.set_exception(outcome.error)
        # Nobody waits (enqueue(), a restored message): the failure becomes an error
        # event, unless the session reported it already (a drop: MESSAGE_DROPPED).
        if (
            not live
            and isinstance(outcome, Failed)
            and not isinstance(outcome.error, ClientClosed | MessageDropped)
        ):
            error = outcome.error
            if error is self._fatal:
                if self._fatal_reported:
                    return  # every pending join and message fails with it: say it once
                self._fatal_reported = True
            self._dispatcher.put(ErrorEvent(type(error).__name__, str(error), error))

    def _state_changed(self, change: StateChanged) -> None:
        log.info("state %s -> %s", change.old.name, change.new.name)
        keep = []
        for wanted, future in self._state_waiters:
            if future.done():
                continue
            if change.new in wanted:
                future.set_result(None)
            elif change.new is ConnectionState.CLOSED:
                future.set_exception(self._closed_error())
            else:
                keep.append((wanted, future))
        self._state_waiters = keep

    def _waiter(self, key: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        return future

    async def _await(self, future: asyncio.Future[Any], timeout: float | None) -> Any:
        """Write the caller's request (see :meth:`_write_now`), then wait for its outcome."""
        try:
            if timeout is None:
                # Cancelling the caller cancels this future only: the message stays
                # queued (its outcome is then ignored), so no shield is needed.
                await self._write_now()
                return await future
            try:
                async with asyncio.timeout(timeout):
                    await self._write_now()
                    return await asyncio.shield(future)
            except TimeoutError:
                if future.done() and not future.cancelled():
                    # Answered while the caller was still draining its own write.
                    return future.result()
                raise AckTimeout(f"no answer within {timeout} s (still queued)") from None
        except BaseException:
            # Nobody waits for the outcome any more: it must not be reported as an
            # exception that was never retrieved.
            future.add_done_callback(_consume)
            raise

    async def enqueue(self, room: str, text: str, *, ttl: float | None = None) -> str:
        """Queue a message and return its id once it is safe: durable with a ``store``.

        Delivery goes on in the background (as with :meth:`send_nowait`); a bot that is
        killed after this returned sends the message from its next process.
        """
        message_id = self.send_nowait(room, text, ttl=ttl)
        if self._store is not None:
            await self._store.flush()
        return message_id

    async def _restore(self, store: Store) -> None:
        """Load the store into the session; on any failure close both, then raise.

        A store left open would stay locked for every later Client of this process.
        """
        state = await store.open()
        try:
            cursors = {room: (c.epoch, c.last_event_id) for room, c in state.cursors.items()}
            entries = [m.to_entry(clock_offset=self._clock_offset) for m in state.outbox]
            self._session.restore(state.rooms, cursors, entries)
        except BaseException as exc:
            try:
                await store.close()
            except Exception as close_error:  # the restore's error is the one to raise
                log.warning("closing the store after a failed restore: %r", close_error)
            finally:
                self._session.closed(exc if isinstance(exc, RtClientError) else None)
                self._session.store_changes()  # the store is closed: nothing to mirror
                self._pump()
            raise
        if state.rooms or entries:
            log.info("restored %d rooms and %d queued messages", len(state.rooms), len(entries))

    def _mirror(self, store: Store) -> None:
        """Apply the session's changes to the store (buffered: a commit follows shortly)."""
        for change in self._session.store_changes():
            match change:
                case Enqueued(entry):
                    store.enqueue(StoredMessage.from_entry(entry, clock_offset=self._clock_offset))
                case Removed(message_id):
                    store.remove(message_id)
                case RoomsSet(rooms):
                    store.set_rooms(list(rooms))
                case CursorForgotten(room):
                    store.forget_cursor(room)
                case CursorSet(room, epoch, last_event_id):
                    store.set_cursor(room, epoch, last_event_id)

    def _delivered(self, item: Delivered) -> None:
        """The handlers have had ``item``: a logged event's room cursor may move on."""
        if (
            self._store is not None
            and isinstance(item, Event)
            and item.room in self._session.rooms
            and item.event_id is not None
        ):
            self._store.set_cursor(item.room, item.epoch, item.event_id)

    def _closed_error(self) -> RtClientError:
        return self._fatal or ClientClosed("the client is closed")

    def _check_not_closed(self, wanted: Iterable[ConnectionState]) -> None:
        if self.state is ConnectionState.CLOSED and ConnectionState.CLOSED not in wanted:
            raise self._closed_error()


def _make_transport(
    url: str,
    transport: str | Transport,
    codec: Codec | str | None,
    protocol: str,
    namespace: str,
    *,
    compression: bool = True,
) -> Transport:
    """Build the transport named by ``transport`` after checking the URL fits it."""
    if protocol not in ("rooms", "generic"):
        raise ValueError(f"protocol is 'rooms' or 'generic', not {protocol!r}")
    if protocol == "generic" and transport in ("websocket", "aiohttp"):
        raise ValueError("generic mode is for Socket.IO servers: transport='socketio'")
    if transport in ("websocket", "aiohttp"):
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"a WebSocket url starts with ws:// or wss://, not {url[:16]!r}")
        if transport == "aiohttp":
            return AiohttpTransport(codec=codec, compression=compression)
        return WebSocketTransport(codec=codec, compression=compression)
    if transport == "socketio":
        if not url.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError(f"a Socket.IO url starts with http(s):// or ws(s)://: {url[:16]!r}")
        if codec not in (None, "json", "msgpack"):
            raise ValueError("over Socket.IO, codec= is 'json' or 'msgpack' (the serializer)")
        generic = protocol == "generic"
        return SocketIOTransport(
            serializer="msgpack" if codec == "msgpack" else "default",
            namespace=namespace,
            welcome="synthesize" if generic else "server",
            app_ping=not generic,
        )
    if isinstance(transport, str):
        raise ValueError(f"unknown transport {transport!r}: 'websocket', 'aiohttp' or 'socketio'")
    return transport


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()

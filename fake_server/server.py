"""``FakeServer``: the hub, the ``/ws`` and Socket.IO endpoints and the HTTP API on a real socket.

Use it in-process::

    async with FakeServer(secret="s", ping_interval=0.05) as server:
        token = server.issue_token("alice")
        ...  # connect to server.ws_url
        await server.restart(downtime=0.2, keep_log=False)

Every fault control is an ``async def`` usable while clients are connected.  Every
background task and timer belongs to the server: :meth:`FakeServer.stop` ends them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from .admission import guard
from .auth import TokenAuthority
from .config import ServerConfig
from .draining import drain_peers
from .endpoint import Endpoint
from .errors import CloseCode
from .faults import FaultState
from .http_api import AccessLogger, add_routes
from .hub import Hub
from .listening import stop_site
from .peer import QueuedPeer
from .sio_endpoint import SioEndpoint
from .stats import Counters, LatencyStats
from .store import Store
from .timers import Timers
from .ws_endpoint import WsEndpoint

__all__ = ["FakeServer"]

log = logging.getLogger("fake_server")

_MAX_HEADER = 256 * 1024


class FakeServer:
    """A real aiohttp server implementing ``docs/protocol.md``, with fault controls.

    ``overrides`` are :class:`ServerConfig` fields applied over ``config``.  ``port=0``
    picks a free port; :attr:`port` is the bound one once started, and stays the same
    across :meth:`restart`.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **overrides: Any,
    ) -> None:
        base = config if config is not None else ServerConfig()
        self.config = (base.replace(**overrides) if overrides else base).with_secret()
        self.host = host
        self._port = port
        self.counters = Counters()
        self.latency = LatencyStats()
        assert self.config.secret is not None
        self._authority = TokenAuthority(self.config.secret, leeway=self.config.token_leeway)
        self._faults = FaultState()
        self._timers = Timers()
        self.node_id = self.config.node_id or f"n-{secrets.token_hex(4)}"
        storage: Store | None = None
        if self.config.redis_url is not None:
            from .redis_store import RedisStore  # the redis package: the "cluster" extra

            storage = RedisStore(self.config, node_id=self.node_id, counters=self.counters)
        self.hub = Hub(
            self.config,
            authority=self._authority,
            faults=self._faults,
            counters=self.counters,
            scheduler=self._timers,
            storage=storage,
        )
        ws = WsEndpoint(
            self.hub,
            config=self.config,
            faults=self._faults,
            counters=self.counters,
            latency=self.latency,
        )
        sio = SioEndpoint(
            self.hub,
            config=self.config,
            faults=self._faults,
            counters=self.counters,
            latency=self.latency,
        )
        self._endpoints: tuple[Endpoint, ...] = (ws, sio)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started_at = 0.0
        self._restart_lock = asyncio.Lock()

    def __repr__(self) -> str:
        state = "running" if self._runner is not None else "stopped"
        return f"FakeServer({self.host}:{self._port}, {state})"

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on ``host:port``.  Call :meth:`stop` (or use ``async with``) after."""
        if self._runner is not None:
            raise RuntimeError("FakeServer already started")
        app = web.Application()
        for endpoint in self._endpoints:
            endpoint.attach(app)
        add_routes(app, self)
        runner = web.AppRunner(
            app,
            access_log_class=AccessLogger,
            shutdown_timeout=2.0,
            # aiohttp logs the first bytes of an over-long header line: raise the limit
            # well past any plausible token so that big tokens reach the auth check
            # (refused there, unlogged) instead.
            max_line_size=_MAX_HEADER,
            max_field_size=_MAX_HEADER,
            # Armed at accept and after each response: a request head that has not
            # fully arrived by then (a slowloris, a half-sent request) is cut.
            keepalive_timeout=self.config.header_timeout,
        )
        await runner.setup()
        try:
            await self.hub.storage.start()
        except BaseException:
            await runner.cleanup()
            raise
        assert runner.server is not None
        guard(
            runner.server,
            max_per_address=self.config.max_connections_per_address,
            counters=self.counters,
        )
        self._runner = runner
        for endpoint in self._endpoints:
            endpoint.start()
        self._started_at = time.monotonic()
        try:
            await self._listen()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "fake_server listening on %s (ws: %s, socket.io: %s/socket.io/)",
            self.http_url,
            self.ws_url,
            self.sio_url,
        )

    async def stop(self, *, within: float | None = None) -> None:
        """Close every client with 1001, stop listening and end every task and timer.

        ``within``: how long a client may take to answer the close before it is cut
        (default ``close_timeout`` + 1 s; a drain, which already waited, passes 1 s).
        """
        runner = self._runner
        if runner is None:
            return
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._faults.resume()
        await self._unlisten()
        await self._close_peers(CloseCode.GOING_AWAY, "server shutting down", within)
        self._timers.cancel_all()
        for endpoint in self._endpoints:
            await endpoint.shutdown()
        await self.hub.tasks.close()
        await self.hub.storage.close()
        self._runner = None
        await runner.cleanup()
        log.info("fake_server stopped")

    async def drain(
        self, timeout: float = 10.0, *, retry_after: float = 1.0, spread: float = 0.0
    ) -> bool:
        """Go away without losing anything: refuse newcomers, send clients on, then stop.

        New handshakes get HTTP 503 + ``Retry-After: <retry_after>``; every client gets
        ``server:draining``, then a close 1012 (``retryAfter=<s>``; Socket.IO: the
        binding's ``error`` event) behind every ack it is owed — all at once, or one
        after another over ``spread`` seconds. A request arriving after its close was
        queued is not carried out (the client sends it to the next node). Waits up to
        ``timeout`` s for the closes, cuts what is left, then :meth:`stop`. Returns
        True when every connection left in time. See docs/protocol.md, "Draining".
        """
        if self._runner is None:
            return True
        self.counters.bump("drains")
        in_time = await drain_peers(
            self.hub,
            self._endpoints,
            self._faults,
            timeout=timeout,
            retry_after=retry_after,
            spread=spread,
        )
        await self.stop(within=1.0)  # whoever is left was told and cut already
        self._faults.draining = None
        return in_time

    async def _listen(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        self._site = site
        self._port = site.port

    async def _unlisten(self) -> None:
        if self._site is not None:
            site, self._site = self._site, None
            await stop_site(site)  # not site.stop(): a connection being accepted would leak

    async def _close_peers(self, code: int, reason: str, within: float | None = None) -> None:
        if within is None:
            within = self.config.close_timeout + 1.0
        closing = [(e, e.close_all(code, reason)) for e in self._endpoints]
        await asyncio.gather(*(self._wait(e, peers, within) for e, peers in closing))
        if not self._faults.paused:
            for endpoint in self._endpoints:
                await endpoint.close_sessions(within)

    async def _wait(self, endpoint: Endpoint, peers: list[QueuedPeer[Any]], within: float) -> None:
        """Wait ``within`` s for ``peers`` to finish, then cut those that did not."""
        if self._faults.paused or not peers:
            return
        if not await endpoint.wait_finished(peers, within):
            for peer in peers:
                peer.abort()
            await endpoint.wait_finished(peers, 1.0)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by the server (cancelled by :meth:`stop`)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # -- facts -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def http_url(self) -> str:
        return f"http://{self._url_host}:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._url_host}:{self._port}/ws"

    @property
    def sio_url(self) -> str:
        """The base URL a Socket.IO client connects to (path ``/socket.io/``)."""
        return self.http_url

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def epoch(self) -> str:
        return self.hub.epoch

    def issue_token(self, user_id: str, ttl: float = 3600.0, roles: Iterable[str] = ()) -> str:
        """Mint a token this server accepts, for ``user_id``, valid ``ttl`` seconds."""
        return self._authority.issue(user_id, now=time.time(), ttl=ttl, roles=roles)

    def room_events(self, room_id: str) -> list[dict[str, Any]]:
        """The room's retained log: ``chat:message`` / ``dm:message`` payloads in order.

        In-memory node only; a cluster node reads the shared log with :meth:`read_log`.
        """
        log_ = self.hub.store.peek(room_id)
        return [] if log_ is None else log_.events()

    async def read_log(self, room_id: str, limit: int = 10_000) -> list[dict[str, Any]]:
        """The room's retained log (up to ``limit`` events), from whichever store."""
        _, page = await self.hub.storage.page(room_id, after=0, limit=limit, epoch=None)
        return page.events

    def connection_count(self) -> int:
        """Authenticated connections right now."""
        return len(self.hub.connections)

    def socket_count(self) -> int:
        """Open WebSockets and engine.io sessions, authenticated or not."""
        return sum(len(e) for e in self._endpoints)

    def members(self, room_id: str) -> list[str]:
        """Users with a connection to this node in the room (a cluster node: this node's
        only; ``await server.hub.storage.members(room_id)`` asks every node)."""
        return self.hub.members(room_id)

    def health(self) -> dict[str, Any]:
        """The ``/health`` document."""
        return {
            "status": "draining" if self._faults.draining is not None else "ok",
            "connections": self.connection_count(),
            "rooms": sum(1 for r in self.hub.rooms if not r.startswith("user:")),
            "node": self.node_id,
            **self.hub.storage.health(),
            "uptime": round(time.monotonic() - self._started_at, 3),
            "pid": os.getpid(),
            "epoch": self.epoch,
            "latency": self.latency.summary(),
            "counters": dict(self.counters),
        }

    # -- fault controls ----------------------------------------------------------------

    async def drop_connections(self) -> None:
        """Abort every TCP connection: no close frame (the client sees 1006)."""
        log.info("fault: drop_connections")
        await asyncio.gather(*(self._wait(e, e.abort_all(), 2.0) for e in self._endpoints))

    async def close_all(self, code: int = 1001, reason: str = "") -> None:
        """Close every connection with ``code`` and ``reason``."""
        log.info("fault: close_all code=%d", code)
        await self._close_peers(code, reason)

    async def restart(self, downtime: float = 0.0, keep_log: bool = True) -> None:
        """Stop listening, close all with 1012, wait ``downtime``, listen on the same port.

        ``keep_log=False`` is a server that lost its memory: a new epoch, empty logs
        and an empty dedupe table.
        """
        async with self._restart_lock:
            log.info("fault: restart downtime=%.3fs keep_log=%s", downtime, keep_log)
            await self._unlisten()
            await self._close_peers(CloseCode.SERVICE_RESTART, "service restart")
            if downtime > 0:
                await asyncio.sleep(downtime)
            if not keep_log:
                await self.hub.reset_log()
            if self._runner is not None:
                await self._listen()

    async def pause(self) -> None:
        """Freeze every connection: no reads, no writes, no pings; new handshakes hang."""
        log.info("fault: pause")
        self._faults.pause()

    async def resume(self) -> None:
        log.info("fault: resume")
        for endpoint in self._endpoints:
            endpoint.resumed()
        self._faults.resume()

    async def reject_handshakes(
        self, n: int, status_or_code: int, retry_after: float | None = None
    ) -> None:
        """Refuse the next ``n`` connection attempts.

        ``status_or_code`` < 1000: answer that HTTP status to the upgrade (with
        ``Retry-After`` when given).  >= 1000: accept, authenticate, send ``connected``,
        then close at once with that code (reason ``retryAfter=<s>`` when given).
        """
        if n < 0 or not (100 <= status_or_code <= 599 or 1000 <= status_or_code <= 4999):
            raise ValueError("n must be >= 0 and status an HTTP status or a close code")
        log.info("fault: reject_handshakes n=%d status=%d", n, status_or_code)
        self._faults.reject_next(n, status_or_code, retry_after)

    async def expire_tokens(self) -> None:
        """Close every authenticated connection with 4002 and revoke tokens issued so far."""
        log.info("fault: expire_tokens")
        peers = [c.peer for c in self.hub.connections.values()]
        self.hub.expire_tokens()
        await asyncio.gather(
            *(
                self._wait(e, [p for p in peers if isinstance(p, QueuedPeer) and e.owns(p)], 2.0)
                for e in self._endpoints
            )
        )

    async def lose_next_acks(self, n: int) -> None:
        """Commit and broadcast the next ``n`` new messages but send no ack for them."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._faults.lose_next_acks(n)

    async def duplicate_next_events(self, n: int) -> None:
        """Send each of the next ``n`` broadcast messages twice to every recipient."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._faults.duplicate_next_events(n)

    async def set_latency(self, ms: float) -> None:
        """Hold every outgoing frame back ``ms`` milliseconds, in order (0 = off)."""
        if ms < 0:
            raise ValueError("ms must be >= 0")
        self._faults.latency = ms / 1000.0

    async def disable_user(self, user_id: str) -> None:
        """Refuse ``user_id`` from now on (4003 / ``USER_DISABLED``), closing its connections."""
        log.info("fault: disable_user")
        self.hub.disable_user(user_id)

    async def enable_user(self, user_id: str) -> None:
        self.hub.enable_user(user_id)

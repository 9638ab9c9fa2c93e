"""A node's link to Redis: the client, the error boundary and whether Redis answers.

Errors of the ``redis`` package are mapped here (and in the fan-out's reader, which uses
:data:`UNREACHABLE`): an unreachable Redis becomes
:class:`~fake_server.store.StoreUnavailable` with a capped retry hint, each outage is
logged once (when it starts and when it ends) and counted for ``/health``.

A busy node is not an unreachable Redis: at most ``redis_max_connections`` commands run
at once (a semaphore taken in :meth:`RedisLink.calling`, over a blocking pool a few
connections larger, so a connection is always there for the holder); a request that
waits longer than ``redis_timeout`` for its turn gets :class:`~fake_server.store.StoreBusy`,
which counts no outage.  (redis-py's default pool raises ``Too many connections``, a
``ConnectionError``, past 100: that read as an outage under load.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import redis_scripts as scripts
from .config import ServerConfig
from .stats import Counters
from .store import StoreBusy, StoreUnavailable

__all__ = ["SCRIPTS", "UNREACHABLE", "RedisLink", "refusing", "stopping"]

log = logging.getLogger("fake_server.redis")

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
"""What an unreachable (restarting, partitioned) Redis raises; ``BusyLoadingError`` is a
``ConnectionError``."""

REFUSED = (OutOfMemoryError, ReadOnlyError, TryAgainError, ClusterDownError)
"""What a Redis that works but refuses commands for now raises (out of memory, a
primary demoted to a replica, a replica without its primary)."""

REFUSALS = ("BUSY", "NOREPLICAS", "MISCONF")
"""Error codes (kept in the message by redis-py) of the same: a script running too
long, too few replicas, a failed snapshot that stops writes."""


def refusing(exc: BaseException) -> bool:
    """``exc`` says Redis refuses commands for now (as good as unreachable)."""
    if isinstance(exc, REFUSED):
        return True
    return isinstance(exc, ResponseError) and str(exc).split(" ", 1)[0] in REFUSALS


POOL_SPARE = 4
"""Connections the pool holds beyond ``redis_max_connections``: the fan-out's subscriber
and its reads of missed events, which do not take a turn."""

SCRIPTS = (
    "COMMIT",
    "PAGE",
    "JOIN",
    "LEAVE",
    "MEMBERS",
    "SWEEP",
    "RATE",
    "ENSURE_EPOCH",
    "MARK",
    "REPLACE_EPOCH",
    "RESET",
)
"""The Lua scripts of :mod:`fake_server.redis_scripts` a node runs."""


def stopping() -> None:
    """Raise ``CancelledError`` when the current task is being cancelled.

    Called before a retry: on Python 3.11 a cancellation that meets an expiring timeout
    (the redis client's or ours) can surface as ``TimeoutError`` instead.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _WriteGuard(aioredis.connection.AbstractConnection):
    """A connection that says a write on a transport already lost is a reset.

    On CPython 3.12, 3.13.0-3.13.9 and 3.14.0 ``writelines()`` on a selector transport
    whose peer reset it (a Redis restart, a partition) raises ``AttributeError`` or
    ``TypeError`` (CPython gh-136234) instead of dropping the data; redis-py (up to
    8.1.0, redis-py issue #4287) passes that through, so it skipped the retry on a new
    connection and reached the request as an internal error. ``ConnectionResetError``
    is what a fixed CPython raises from the ``drain()`` after: redis-py maps it to its
    ``ConnectionError`` and retries. Nothing awaits between the check and the write.
    """

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        writer = self._writer
        if writer is not None and writer.transport.is_closing():
            raise ConnectionResetError("the connection to redis was lost")
        await super()._send_packed_command(command)


def _write_guarded(
    cls: type[aioredis.connection.AbstractConnection],
) -> type[aioredis.connection.AbstractConnection]:
    """``cls`` (the pool's choice for the URL's scheme) with :class:`_WriteGuard`."""
    return type(f"WriteGuarded{cls.__name__}", (_WriteGuard, cls), {})


class RedisLink:
    """The Redis client of one node, with its outage bookkeeping."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        node_id: str,
        counters: Counters,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        assert config.redis_url is not None
        self._config = config
        self._counters = counters
        self._clock = monotonic
        pool = aioredis.BlockingConnectionPool.from_url(
            config.redis_url,
            max_connections=config.redis_max_connections + POOL_SPARE,
            timeout=config.redis_timeout,
            socket_timeout=config.redis_timeout,
            socket_connect_timeout=config.redis_timeout,
            # One more try on a fresh connection (the old one may be dead after a
            # Redis restart); no waiting between: the request gets a retry reply instead.
            retry=Retry(NoBackoff(), 1),
            client_name=f"rtclient-{node_id}",
        )
        pool.connection_class = _write_guarded(pool.connection_class)
        self.client = aioredis.Redis.from_pool(pool)
        self.turns = asyncio.Semaphore(config.redis_max_connections)
        self._scripts = {
            name: self.client.register_script(getattr(scripts, name)) for name in SCRIPTS
        }
        self.down_since: float | None = None
        self.outages = 0
        self.cut_off = False
        """Set once per outage, when the node sent its clients away."""

    async def script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script (loaded again by the client after a Redis restart)."""
        return await self._scripts[name](keys=keys, args=args)

    @asynccontextmanager
    async def calling(self) -> AsyncIterator[None]:
        """Bound the calls inside by ``redis_timeout``; map an unreachable Redis (or one
        that refuses commands for now: :func:`refusing`) to :class:`StoreUnavailable`
        and keep track of the outage.

        Waits first for a turn (at most ``redis_timeout``, then :class:`StoreBusy`)."""
        try:
            async with asyncio.timeout(self._config.redis_timeout):
                await self.turns.acquire()
        except TimeoutError:
            stopping()
            cap = self._config.redis_retry_after
            raise StoreBusy("redis commands at the node's limit", min(cap, 0.5)) from None
        try:
            async with self._calling():
                yield
        finally:
            self.turns.release()

    @asynccontextmanager
    async def _calling(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._config.redis_timeout):
                yield
        except UNREACHABLE as exc:
            stopping()
            self.failed(exc)
            raise StoreUnavailable("redis unreachable", self.retry_after()) from exc
        except ResponseError as exc:
            if not refusing(exc):
                raise
            self.failed(exc)
            raise StoreUnavailable("redis refuses commands", self.retry_after()) from exc
        self.ok()

    def failed(self, exc: BaseException) -> None:
        """Redis did not answer (one WARNING per outage)."""
        self._counters.bump("redis_errors")
        if self.down_since is None:
            self.down_since = self._clock()
            self.outages += 1
            self._counters.bump("redis_outages")
            log.warning("redis unreachable: %s (retrying in the background)", exc or type(exc))

    def ok(self) -> None:
        if self.down_since is not None:
            log.warning("redis reachable again after %.3fs", self._clock() - self.down_since)
            self.down_since = None
            self.cut_off = False

    def down_for(self) -> float:
        return 0.0 if self.down_since is None else self._clock() - self.down_since

    def retry_after(self) -> float:
        """The hint for a refused request: the outage so far, at least 0.1 s, capped."""
        cap = self._config.redis_retry_after
        return round(min(cap, max(0.1, self.down_for())), 3)

    async def close(self) -> None:
        try:
            async with asyncio.timeout(self._config.redis_timeout):
                await self.client.aclose()
        except UNREACHABLE:
            log.debug("closing the redis connections failed", exc_info=True)

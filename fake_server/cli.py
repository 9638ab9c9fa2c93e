"""Run the fake server in the foreground: ``python -m fake_server --port 8765``.

Stops on Ctrl-C or SIGTERM by draining (:meth:`FakeServer.drain`): new handshakes get
503 + Retry-After, every client gets ``server:draining`` and a close 1012 behind the acks
it is owed, and the process exits 0 once they left (at most ``--drain-spread`` +
``--drain-timeout`` + :data:`DRAIN_GRACE` seconds, kept by a watchdog thread; a second
signal cuts the wait short). The token secret and
the admin token are kept across restarts in a per-user state file
(:mod:`.serve_state`), so tokens it issued stay valid when it is started again;
``--secret`` / ``--admin-token`` override them, ``--ephemeral`` makes fresh random
ones and writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .config import ServerConfig
from .serve_state import StateFileError, load_state, state_path
from .server import FakeServer

DRAIN_GRACE = 5.0
"""Seconds past ``--drain-spread`` + ``--drain-timeout`` the final stop may take (closing
the Redis link, aiohttp's cleanup) before the process exits regardless."""

__all__ = ["main"]


def _parser(prog: str) -> argparse.ArgumentParser:
    defaults = ServerConfig()
    p = argparse.ArgumentParser(prog=prog, description="Run the rtclient fake server.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    p.add_argument("--secret", help="HS256 secret for tokens (default: kept in the state file)")
    p.add_argument("--admin-token", help="bearer token of /admin (default: kept in the state file)")
    p.add_argument(
        "--ephemeral",
        action="store_true",
        help="random secret and admin token for this run only (no state file)",
    )
    p.add_argument("--retention-count", type=int, default=defaults.retention_count)
    p.add_argument("--retention-seconds", type=float, default=defaults.retention_seconds)
    p.add_argument("--ping-interval", type=float, default=defaults.ping_interval)
    p.add_argument("--ping-timeout", type=float, default=defaults.ping_timeout)
    p.add_argument(
        "--max-connections-per-address",
        type=int,
        default=defaults.max_connections_per_address,
        help="open TCP connections per client IP address; more get HTTP 503 "
        "(many clients on one loopback address: raise it)",
    )
    p.add_argument("--allow-query-token", action="store_true", help="accept ?token= on the URL")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="on SIGTERM/Ctrl-C, the longest wait for clients to leave (seconds)",
    )
    p.add_argument(
        "--drain-spread",
        type=float,
        default=0.0,
        help="close the clients one after another over this many seconds (default: at once)",
    )
    p.add_argument(
        "--drain-retry-after",
        type=float,
        default=1.0,
        help="the retry hint a drain gives clients (Retry-After, retryAfter=)",
    )
    p.add_argument(
        "--redis",
        metavar="URL",
        help="run as a cluster node on this Redis (redis://HOST:PORT/DB); every node "
        "needs the same --secret (docs/cluster.md)",
    )
    p.add_argument(
        "--redis-max-connections",
        type=int,
        default=defaults.redis_max_connections,
        help="Redis commands this node runs at once; more wait their turn (docs/cluster.md)",
    )
    p.add_argument("--node-id", help="this node's name in the cluster (default: random)")
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "fake_server") -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), serve until a signal; return the status."""
    args = _parser(prog).parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = ServerConfig(
            secret=args.secret,
            admin_token=args.admin_token or secrets.token_urlsafe(16),
            allow_query_token=args.allow_query_token,
            retention_count=args.retention_count,
            retention_seconds=args.retention_seconds,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
            max_connections_per_address=args.max_connections_per_address,
            redis_url=args.redis,
            node_id=args.node_id,
            redis_max_connections=args.redis_max_connections,
        )
        if args.node_id is not None and (not args.node_id or "|" in args.node_id):
            raise ValueError("--node-id must be non-empty and must not contain '|'")
        if args.redis is not None:
            _check_redis_url(args.redis)
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    state, path = None, state_path()
    if not args.ephemeral and not (args.secret and args.admin_token):
        try:  # only once the arguments are known to be good
            state = load_state(path, create=True)
        except StateFileError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 1
        if state is not None:
            config = dataclasses.replace(
                config,
                secret=args.secret or state.secret,
                admin_token=args.admin_token or state.admin_token,
            )
    kept = path if state is not None and not args.secret else None
    if not (args.drain_timeout >= 0 and args.drain_retry_after >= 0 and args.drain_spread >= 0):
        print(f"{prog}: error: drain times must be >= 0", file=sys.stderr)
        return 2
    drain = (args.drain_timeout, args.drain_retry_after, args.drain_spread)
    try:
        watchdog = _Watchdog()
        try:
            asyncio.run(
                _serve(config, args.host, args.port, kept=kept, drain=drain, watchdog=watchdog)
            )
        finally:
            watchdog.disarm()
    except ConnectionError as exc:  # the cluster's Redis did not answer at start
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _check_redis_url(url: str) -> None:
    """Refuse a ``--redis`` URL the redis client would not take, before anything starts."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise ValueError(
            "--redis needs the redis package: pip install 'rtclient[cluster]'"
        ) from None
    try:
        aioredis.ConnectionPool.from_url(url)
    except ValueError as exc:
        raise ValueError(f"--redis: {exc}") from None


async def _serve(
    config: ServerConfig,
    host: str,
    port: int,
    *,
    kept: Path | None,
    drain: tuple[float, float, float] = (10.0, 1.0, 0.0),
    watchdog: _Watchdog | None = None,
) -> None:
    stop = asyncio.Event()
    signals = 0
    loop = asyncio.get_running_loop()
    draining: asyncio.Task[bool] | None = None

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        stop.set()
        if signals > 1 and draining is not None:
            draining.cancel()  # a second signal: stop waiting for clients

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    async with FakeServer(config, host=host, port=port) as server:
        print(f"fake_server listening: {server.ws_url}  (health: {server.http_url}/health)")
        if config.redis_url is not None:
            print(f"cluster node {server.node_id} on redis (epoch {server.epoch})")
        # Stdout, not the log: the operator needs this credential to mint tokens.
        print(f"admin token: {config.admin_token}")
        if kept is not None:
            print(f"secret and admin token kept across restarts in {kept} (--ephemeral: not)")
            print(f"chat: rtclient chat {server.ws_url} --room lobby --user alice")
        print(
            "mint a token:\n"
            f"  curl -s -X POST {server.http_url}/admin/token "
            f"-H 'Authorization: Bearer {config.admin_token}' "
            """-d '{"userId": "alice", "ttl": 3600}'"""
        )
        print("press Ctrl-C to stop", flush=True)
        await stop.wait()
        timeout, retry_after, spread = drain
        bound = spread + timeout + DRAIN_GRACE
        if watchdog is not None:
            watchdog.arm(bound)
        print(f"draining (at most {bound:g} s; signal again to stop at once)", flush=True)
        draining = asyncio.create_task(
            server.drain(timeout, retry_after=retry_after, spread=spread)
        )
        try:
            in_time = await draining
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are cancelled ourselves, not only the drain
            # A second signal: cut what is left now (the stop below would otherwise
            # wait close_timeout for a client that does not answer its close).
            in_time = False
            await server.drop_connections()
        print(
            "drained: every client left" if in_time else "drain cut short",
            flush=True,
        )
        print("shutting down", flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(sig)


class _Watchdog:
    """The drain's bound, kept even by a stuck or saturated event loop: a thread that
    ends the process (status 0, as a second signal would) once the bound has passed."""

    def __init__(self) -> None:
        self._timer: threading.Timer | None = None

    def arm(self, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self._expired, args=(seconds,))
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    @staticmethod
    def _expired(seconds: float) -> None:
        logging.getLogger("fake_server").warning("drain overran %g s: exiting now", seconds)
        print(f"drain overran {seconds:g} s: exiting now", flush=True)
        os._exit(0)

"""Run the fake server in the foreground: ``python -m fake_server --port 8765``.

Stops on Ctrl-C or SIGTERM, closing every client with 1001 first. The token secret and
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
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import ServerConfig
from .serve_state import StateFileError, load_state, state_path
from .server import FakeServer

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
        )
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
    try:
        asyncio.run(_serve(config, args.host, args.port, kept=kept))
    except OSError as exc:
        print(f"{prog}: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(config: ServerConfig, host: str, port: int, *, kept: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with FakeServer(config, host=host, port=port) as server:
        print(f"fake_server listening: {server.ws_url}  (health: {server.http_url}/health)")
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
        print("shutting down", flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(sig)

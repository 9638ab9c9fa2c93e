"""``rtclient token --user U``: mint a token for a local fake_server and print it.

Signed here when the server's secret is known (``--secret`` / ``RTCLIENT_SECRET``),
else minted over the server's ``POST /admin/token`` (``--admin-token`` /
``RTCLIENT_ADMIN_TOKEN``; ``rtclient serve`` prints it). Printing the token is the
point of this command: nothing else in the CLI ever prints one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from ..errors import RtClientError
from .auth import (
    ENV_ADMIN_TOKEN,
    ENV_SECRET,
    add_auth_arguments,
    admin_provider,
    kept_secret,
    roles_of,
    sign_token,
)

__all__ = ["ENV_URL", "add_arguments", "mint", "run"]

ENV_URL = "RTCLIENT_URL"
DEFAULT_URL = "http://127.0.0.1:8765"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``token`` subcommand's arguments."""
    parser.add_argument(
        "--url",
        default=os.environ.get(ENV_URL, DEFAULT_URL),
        help=f"the server (ws:// or http://; default {DEFAULT_URL} or ${ENV_URL})",
    )
    add_auth_arguments(parser, user_only=True)


async def mint(args: argparse.Namespace) -> str:
    """The token the arguments ask for. Raises ValueError (usage) or RtClientError."""
    if not args.user:
        raise ValueError("--user is required")
    secret = args.secret or os.environ.get(ENV_SECRET)
    if secret:
        return sign_token(secret, args.user, ttl=args.ttl, roles=roles_of(args))
    admin = args.admin_token or os.environ.get(ENV_ADMIN_TOKEN)
    kept = None if admin else kept_secret(args.url)
    if kept:
        return sign_token(kept, args.user, ttl=args.ttl, roles=roles_of(args))
    if not admin:
        raise ValueError(
            f"give --admin-token (or {ENV_ADMIN_TOKEN}; `rtclient serve` prints it) "
            f"or --secret (or {ENV_SECRET})"
        )
    provider = admin_provider(args.url, admin, args.user, ttl=args.ttl, roles=roles_of(args))
    try:
        token = await provider.get()
    finally:
        await provider.aclose()
    assert token is not None
    return token


def run(args: argparse.Namespace) -> int:
    """Run ``rtclient token``; prints the token alone on stdout."""
    from .auth import UsageError

    try:
        token = asyncio.run(mint(args))
    except (ValueError, UsageError) as exc:
        print(f"rtclient token: error: {exc}", file=sys.stderr)
        return 2
    except RtClientError as exc:
        print(f"rtclient token: {exc} ({args.url})", file=sys.stderr)
        return 1
    print(token)
    return 0

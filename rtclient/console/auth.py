"""Where a command's token comes from, and the connection options ``chat`` and ``ping`` share.

Three sources, checked in this order:

- ``--token T`` (or ``RTCLIENT_TOKEN``): a fixed token;
- ``--token-cmd CMD``: a shell command run before every connection attempt, its
  stdout (stripped) being the token;
- ``--user U``: a token minted for the local fake_server, over its admin endpoint
  (``--admin-token`` / ``RTCLIENT_ADMIN_TOKEN``) or signed here with its HS256 secret
  (``--secret`` / ``RTCLIENT_SECRET``, else the one ``rtclient serve`` keeps in its
  state file, for a server on this machine).

Tokens and admin credentials never appear in anything this module prints or raises.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from ..backoff import Backoff
from ..client import Client
from ..codec import CODECS, codec_named
from ..errors import TokenProviderError
from ..tokens import HttpTokenProvider, TokenProvider, TokenSource

__all__ = [
    "ENV_ADMIN_TOKEN",
    "ENV_SECRET",
    "ENV_TOKEN",
    "AnyNode",
    "CommandToken",
    "SignedTokens",
    "UsageError",
    "add_auth_arguments",
    "add_connection_arguments",
    "admin_provider",
    "check_credentials",
    "http_base",
    "kept_secret",
    "make_client",
    "sign_token",
    "token_provider",
    "urls_of",
]

ENV_TOKEN = "RTCLIENT_TOKEN"
ENV_ADMIN_TOKEN = "RTCLIENT_ADMIN_TOKEN"
ENV_SECRET = "RTCLIENT_SECRET"


class UsageError(Exception):
    """The command line does not add up; the text is for the user (exit status 2)."""


def http_base(url: str) -> str:
    """The HTTP origin of a server URL: ``ws://h:p/ws`` → ``http://h:p``."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"not a ws://, wss://, http:// or https:// URL: {url[:40]!r}")
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def sign_token(
    secret: str, user: str, *, ttl: float, roles: Sequence[str] = (), now: float | None = None
) -> str:
    """An HS256 JWT for ``user`` (``sub``, ``iat``, ``exp``, ``roles``), as fake_server expects."""
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": user, "iat": issued, "exp": issued + ttl}
    if roles:
        claims["roles"] = list(roles)
    with warnings.catch_warnings():
        # The secret is the server's choice, not ours: signing with it is all we can do.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm="HS256")


class SignedTokens:
    """A token callable: signs a fresh token for every connection attempt."""

    def __init__(self, secret: str, user: str, *, ttl: float, roles: Sequence[str] = ()) -> None:
        self._secret = secret
        self.user = user
        self.ttl = ttl
        self.roles = tuple(roles)

    def __call__(self) -> str:
        return sign_token(self._secret, self.user, ttl=self.ttl, roles=self.roles)

    def __repr__(self) -> str:
        return f"SignedTokens(user={self.user!r})"


def admin_provider(
    url: str, admin_token: str, user: str, *, ttl: float, roles: Sequence[str] = ()
) -> HttpTokenProvider:
    """A provider minting tokens over fake_server's ``POST /admin/token``."""
    return HttpTokenProvider(
        f"{http_base(url)}/admin/token",
        json={"userId": user, "ttl": ttl, "roles": list(roles)},
        headers={"Authorization": f"Bearer {admin_token}"},
    )


class AnyNode:
    """Mints at the first of several nodes that answers (``POST /admin/token`` on each).

    The nodes of a cluster share the secret: a token from any of them is good on all,
    so a node that is down at start (or later) does not stop the chat.
    """

    def __init__(self, providers: Sequence[HttpTokenProvider]) -> None:
        self.providers = list(providers)
        self._next = 0

    async def get(self, *, force: bool = False) -> str | None:
        """A token from the node that answered last, else from the next that answers."""
        error: Exception | None = None
        for i in range(len(self.providers)):
            k = (self._next + i) % len(self.providers)
            try:
                token = await self.providers[k].get(force=force)
            except Exception as exc:  # that node is down or refused: the next one
                error = exc
                continue
            self._next = k
            return token
        assert error is not None
        raise error

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()


class CommandToken:
    """Runs a shell command for every connection attempt; its stdout is the token.

    :meth:`get` raises :class:`TokenProviderError` (without the command's output) when
    the command fails, prints nothing, or takes longer than ``timeout``.
    """

    def __init__(self, command: str, *, timeout: float = 30.0) -> None:
        self.command = command
        self.timeout = timeout
        self.runs = 0
        self._primed: str | None = None

    async def prime(self) -> None:
        """Run the command now; the next :meth:`get` (unless forced) returns that token."""
        self._primed = await self.get()

    async def get(self, *, force: bool = False) -> str | None:
        """Run the command and return what it printed, stripped."""
        primed, self._primed = self._primed, None
        if primed is not None and not force:
            return primed
        self.runs += 1
        process = await asyncio.create_subprocess_shell(
            self.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(self.timeout):
                out, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise TokenProviderError(f"token command took longer than {self.timeout:g} s") from None
        if process.returncode != 0:
            raise TokenProviderError(f"token command exited with status {process.returncode}")
        token = out.decode("utf-8", "replace").strip()
        if not token:
            raise TokenProviderError("token command printed nothing")
        return token

    def __repr__(self) -> str:
        return "CommandToken(…)"


async def check_credentials(source: object) -> None:
    """Ask a token provider once, so that a bad admin token or a failing ``--token-cmd``
    stops the command at once (TokenProviderError) instead of being retried forever."""
    if isinstance(source, CommandToken):
        await source.prime()
    elif isinstance(source, HttpTokenProvider | AnyNode):
        try:
            await source.get()  # cached: the first connection attempt uses this token
        except BaseException:
            await source.aclose()
            raise


def urls_of(args: argparse.Namespace) -> list[str]:
    """The server URLs given (one or several positional ``URL`` arguments)."""
    url = args.url
    return [url] if isinstance(url, str) else list(url)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """URL, transport and codec: what ``chat`` and ``ping`` both take."""
    parser.add_argument(
        "url",
        nargs="+",
        metavar="URL",
        help="server URL: ws://host:port/ws (Socket.IO: http://host:port); several URLs "
        "(the nodes of a cluster): the client fails over between them",
    )
    parser.add_argument(
        "--transport",
        choices=["websocket", "aiohttp", "socketio"],
        default="websocket",
        help="raw WebSocket on websockets (default) or on aiohttp, or Socket.IO",
    )
    parser.add_argument(
        "--codec", choices=sorted(CODECS), help="wire codec (raw WebSocket only; default json)"
    )
    add_auth_arguments(parser)


def add_auth_arguments(parser: argparse.ArgumentParser, *, user_only: bool = False) -> None:
    """``--user`` and how to mint for it; unless ``user_only``, also ``--token``/``--token-cmd``."""
    group = parser.add_argument_group("credentials (never printed)")
    if not user_only:
        group.add_argument("--token", help=f"a token (or set {ENV_TOKEN})")
        group.add_argument("--token-cmd", metavar="CMD", help="shell command printing a token")
    group.add_argument("--user", help="mint a token for this user from a local fake_server")
    group.add_argument(
        "--admin-token", help=f"fake_server's admin token, to mint (or set {ENV_ADMIN_TOKEN})"
    )
    group.add_argument("--secret", help=f"fake_server's HS256 secret (or set {ENV_SECRET})")
    group.add_argument("--ttl", type=float, default=3600.0, help="minted token lifetime, s")
    group.add_argument("--roles", default="", help="minted token roles, comma-separated")


def kept_secret(url: str, env: Mapping[str, str] | None = None) -> str | None:
    """The secret ``rtclient serve`` keeps in its state file, for a server on this
    machine (a loopback URL); None if there is none."""
    host = urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    from fake_server.serve_state import StateFileError, load_state, state_path

    try:
        state = load_state(state_path(env), create=False)
    except StateFileError as exc:
        raise UsageError(str(exc)) from None
    return None if state is None else state.secret


def roles_of(args: argparse.Namespace) -> list[str]:
    """The ``--roles`` list."""
    return [r.strip() for r in str(args.roles or "").split(",") if r.strip()]


def token_provider(
    args: argparse.Namespace, url: str | Sequence[str], env: Mapping[str, str] | None = None
) -> TokenProvider | SignedTokens | AnyNode | str:
    """The token source the arguments ask for; raises UsageError if there is none.

    With several URLs, tokens are minted at whichever node answers (:class:`AnyNode`);
    the secret ``rtclient serve`` keeps is looked up for the first URL.
    """
    urls = [url] if isinstance(url, str) else list(url)
    url = urls[0]
    env = os.environ if env is None else env
    token = getattr(args, "token", None) or env.get(ENV_TOKEN)
    command = getattr(args, "token_cmd", None)
    if sum(bool(x) for x in (getattr(args, "token", None), command, args.user)) > 1:
        raise UsageError("give only one of --token, --token-cmd, --user")
    if command:
        return CommandToken(command)
    if args.user:
        admin = args.admin_token or env.get(ENV_ADMIN_TOKEN)
        secret = args.secret or env.get(ENV_SECRET)
        if secret:
            return SignedTokens(secret, args.user, ttl=args.ttl, roles=roles_of(args))
        if admin:
            minters = [
                admin_provider(u, admin, args.user, ttl=args.ttl, roles=roles_of(args))
                for u in urls
            ]
            return minters[0] if len(minters) == 1 else AnyNode(minters)
        kept = kept_secret(url, env)
        if kept:
            return SignedTokens(kept, args.user, ttl=args.ttl, roles=roles_of(args))
        raise UsageError(
            f"--user needs --admin-token (or {ENV_ADMIN_TOKEN}) or --secret (or {ENV_SECRET}); "
            "`rtclient serve` prints its admin token"
        )
    if token:
        return str(token)
    raise UsageError(f"give --user, --token (or {ENV_TOKEN}) or --token-cmd")


def make_client(
    args: argparse.Namespace,
    source: TokenSource,
    *,
    backoff: Backoff | None = None,
    **options: Any,
) -> Client:
    """A Client for ``args.url`` (one URL or several) with the arguments' transport and
    codec, and ``source``."""
    codec = codec_named(args.codec) if args.codec else None
    if codec is not None and args.transport == "socketio":
        raise UsageError("--codec applies to the raw WebSocket transport only")
    try:
        return Client(
            urls_of(args),
            token=source,
            transport=args.transport,
            codec=codec,
            backoff=backoff,
            **options,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None

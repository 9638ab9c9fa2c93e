"""Where the client gets its token: asked before every connection attempt.

``token=`` accepts a string, ``None``, a sync or async callable returning a string,
or any object with ``async def get(self, *, force: bool) -> str | None``. ``force``
is true after the server said the token expired (close 4002): the provider must
not hand out a cached token then.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

import aiohttp
import jwt

from .errors import TokenProviderError

__all__ = [
    "CallableToken",
    "HttpTokenProvider",
    "StaticToken",
    "TokenProvider",
    "TokenSource",
    "as_provider",
    "token_times",
]


@runtime_checkable
class TokenProvider(Protocol):
    """Supplies a token for each connection attempt."""

    async def get(self, *, force: bool = False) -> str | None:
        """Return the token for the next attempt (a fresh one when ``force``)."""
        ...


TokenSource = str | None | Callable[[], str | Awaitable[str | None] | None] | TokenProvider


class StaticToken:
    """Always the same token (or none). Its repr never shows the token."""

    def __init__(self, token: str | None) -> None:
        self._token = token

    async def get(self, *, force: bool = False) -> str | None:
        """Return the token."""
        return self._token

    def __repr__(self) -> str:
        return f"StaticToken({'set' if self._token else 'none'})"


class CallableToken:
    """Calls a function (sync or async) for every attempt."""

    def __init__(self, func: Callable[[], str | Awaitable[str | None] | None]) -> None:
        self._func = func

    async def get(self, *, force: bool = False) -> str | None:
        """Call the function and return its token."""
        result = self._func()
        if inspect.isawaitable(result):
            result = await result
        if result is not None and not isinstance(result, str):
            raise TypeError(f"token callable returned {type(result).__name__}, not str")
        return result

    def __repr__(self) -> str:
        return f"CallableToken({getattr(self._func, '__qualname__', 'function')})"


def as_provider(source: TokenSource) -> TokenProvider:
    """Wrap whatever was passed as ``token=`` into a :class:`TokenProvider`."""
    if source is None or isinstance(source, str):
        return StaticToken(source)
    if inspect.iscoroutinefunction(getattr(source, "get", None)):
        return source  # type: ignore[return-value]
    if callable(source):
        return CallableToken(source)
    # Never show the value: it may be a token of the wrong type.
    raise TypeError(
        f"token must be a str, a callable or a TokenProvider, not {type(source).__name__}"
    )


def token_times(token: str | None) -> tuple[float | None, float | None]:
    """Return the token's ``(iat, exp)`` claims (epoch seconds), read without verifying.

    The client only uses them to refresh ahead of expiry; the server verifies. A token
    that is not a JWT, or has no such claims, gives ``(None, None)``.
    """
    if not token:
        return None, None
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return None, None
    iat, exp = claims.get("iat"), claims.get("exp")
    return (
        float(iat) if isinstance(iat, int | float) else None,
        float(exp) if isinstance(exp, int | float) else None,
    )


class HttpTokenProvider:
    """Fetches tokens from an HTTP endpoint with aiohttp; caches each until near its ``exp``.

    The endpoint answers JSON with the token under ``field`` (default ``"token"``).
    A cached token is handed out until ``margin`` seconds before its ``exp``; ``force``
    (after the server said "expired") always fetches. Failures raise
    :class:`~rtclient.errors.TokenProviderError` without the response body (it may
    hold a token). Call :meth:`aclose` when done (the Client does).
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "POST",
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        field: str = "token",
        margin: float = 30.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.method = method
        self._json = json
        self._headers = headers or {}
        self.field = field
        self.margin = margin
        self.timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def get(self, *, force: bool = False) -> str | None:
        """Return a token that is not about to expire, fetching one if needed."""
        async with self._lock:
            if not force and self._token is not None:
                _, exp = token_times(self._token)
                if exp is None or exp - self.margin > self._clock():
                    return self._token
            self._token = await self._fetch()
            return self._token

    async def _fetch(self) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self.fetches += 1
        try:
            async with self._session.request(
                self.method, self.url, json=self._json, headers=self._headers
            ) as response:
                if response.status != 200:
                    raise TokenProviderError(f"token endpoint answered HTTP {response.status}")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TokenProviderError(f"token endpoint failed: {type(exc).__name__}") from None
        token = body.get(self.field) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenProviderError(f"token endpoint's JSON has no string {self.field!r}")
        return token

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __repr__(self) -> str:
        return f"HttpTokenProvider({self.url!r}, cached={self._token is not None})"

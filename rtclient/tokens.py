"""Where the client gets its token: asked before every connection attempt.

``token=`` accepts a string, ``None``, a sync or async callable returning a string,
or any object with ``async def get(self, *, force: bool) -> str | None``. ``force``
is true after the server said the token expired (close 4002): the provider must
not hand out a cached token then.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

__all__ = ["CallableToken", "StaticToken", "TokenProvider", "TokenSource", "as_provider"]


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

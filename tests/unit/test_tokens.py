"""Unit tests for rtclient.tokens: as_provider and the providers it builds."""

from __future__ import annotations

import functools

import pytest

from rtclient.tokens import CallableToken, StaticToken, TokenProvider, as_provider

SECRET = "s3cret-token-value-XYZ"


async def test_string_token() -> None:
    provider = as_provider(SECRET)
    assert isinstance(provider, StaticToken)
    assert isinstance(provider, TokenProvider)
    assert await provider.get() == SECRET
    assert await provider.get(force=True) == SECRET


async def test_none_token() -> None:
    provider = as_provider(None)
    assert isinstance(provider, StaticToken)
    assert await provider.get() is None
    assert await provider.get(force=True) is None


async def test_sync_callable_is_called_for_every_attempt() -> None:
    tokens = iter(["t1", "t2", "t3"])
    calls = 0

    def make() -> str:
        nonlocal calls
        calls += 1
        return next(tokens)

    provider = as_provider(make)
    assert isinstance(provider, CallableToken)
    assert isinstance(provider, TokenProvider)
    assert await provider.get() == "t1"
    assert await provider.get(force=True) == "t2"
    assert await provider.get() == "t3"
    assert calls == 3


async def test_async_callable_is_awaited() -> None:
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        return f"async-{calls}"

    provider = as_provider(fetch)
    assert isinstance(provider, CallableToken)
    assert await provider.get() == "async-1"
    assert await provider.get(force=True) == "async-2"


async def test_callable_may_return_none() -> None:
    assert await as_provider(lambda: None).get() is None


async def test_callable_object_and_partial() -> None:
    class Maker:
        def __call__(self) -> str:
            return "from-object"

    assert await as_provider(Maker()).get() == "from-object"
    assert await as_provider(functools.partial(str, "from-partial")).get() == "from-partial"


async def test_custom_provider_is_used_as_is_and_gets_force() -> None:
    class Provider:
        def __init__(self) -> None:
            self.forced: list[bool] = []

        async def get(self, *, force: bool = False) -> str | None:
            self.forced.append(force)
            return "fresh" if force else "cached"

    custom = Provider()
    provider = as_provider(custom)
    assert provider is custom
    assert await provider.get() == "cached"
    assert await provider.get(force=True) == "fresh"
    assert custom.forced == [False, True]


async def test_existing_providers_are_not_wrapped_again() -> None:
    static = StaticToken("x")
    assert as_provider(static) is static
    wrapped = CallableToken(lambda: "y")
    assert as_provider(wrapped) is wrapped


@pytest.mark.parametrize("bad", [123, 1.5, b"bytes-token", ["list"]])
async def test_sync_callable_returning_non_str_raises_type_error(bad: object) -> None:
    provider = as_provider(lambda: bad)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError) as info:
        await provider.get()
    assert "bytes-token" not in str(info.value)


async def test_async_callable_returning_non_str_raises_type_error() -> None:
    async def fetch() -> object:
        return 42

    with pytest.raises(TypeError):
        await as_provider(fetch).get()  # type: ignore[arg-type]


@pytest.mark.parametrize("source", [42, 3.14, object()])
def test_unsupported_source_raises_type_error(source: object) -> None:
    with pytest.raises(TypeError):
        as_provider(source)  # type: ignore[arg-type]


def test_bytes_token_is_refused_without_showing_it() -> None:
    # rtclient.errors: "A token is never part of an exception's text."
    with pytest.raises(TypeError) as info:
        as_provider(SECRET.encode())  # type: ignore[arg-type]
    assert SECRET not in str(info.value)


def test_mapping_with_a_get_method_is_not_a_token_provider() -> None:
    # A dict has a ``get`` attribute but is not a TokenProvider (its get takes no force=).
    with pytest.raises(TypeError):
        as_provider({"token": SECRET})  # type: ignore[arg-type]


# -- reprs never show the token ------------------------------------------------------------


async def test_static_token_repr_hides_token() -> None:
    provider = StaticToken(SECRET)
    await provider.get()
    for text in (repr(provider), str(provider), f"{provider!r}", repr([provider])):
        assert SECRET not in text
        assert "s3cret" not in text
    assert "StaticToken" in repr(provider)
    assert "StaticToken" in repr(StaticToken(None))


async def test_callable_token_repr_hides_token() -> None:
    def issue_token() -> str:
        return SECRET

    for func in (issue_token, lambda: SECRET, functools.partial(str, SECRET)):
        provider = CallableToken(func)
        assert await provider.get() == SECRET
        assert SECRET not in repr(provider)
        assert SECRET not in str(provider)
        assert "CallableToken" in repr(provider)

"""Settings for every test."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Generator

import pytest


@pytest.fixture(autouse=True)
def _no_real_state_file(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rtclient serve`` (and ``--user``) never read or write the real state file in the
    home directory: each test has its own (``RTCLIENT_STATE_FILE``), children included."""
    path = tmp_path_factory.mktemp("state") / "serve.json"
    monkeypatch.setenv("RTCLIENT_STATE_FILE", str(path))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``soak`` scenarios first, the rest in their order.

    The suite runs on two pytest-xdist workers; a minute-long soak handed out last would
    leave one worker idle while the other finishes it. Handed out first, the long ones
    run beside the many short ones. (Longest first is the usual greedy schedule.)
    """
    items.sort(key=lambda item: item.get_closest_marker("soak") is None)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Give a sync test a current event loop for looptime's hook, and close it after.

    looptime 0.9 asks pytest-asyncio's ``event_loop_policy`` for the current loop around
    every test, sync ones included. Without one, that makes a loop nobody closes (the
    next async test fails on "unclosed event loop") and, from Python 3.12, warns "There
    is no current event loop" (both errors under ``filterwarnings = error``). So a sync
    test runs with a loop of its own set as current, closed when it ends.
    """
    if inspect.iscoroutinefunction(pyfuncitem.obj) or _policy_loop() is not None:
        return (yield)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return (yield)
    finally:
        if _policy_loop() is loop:
            asyncio.set_event_loop(None)
        loop.close()


def _policy_loop() -> asyncio.AbstractEventLoop | None:
    """The loop set on the policy for this thread, without making one."""
    local = getattr(asyncio.get_event_loop_policy(), "_local", None)
    loop = getattr(local, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None

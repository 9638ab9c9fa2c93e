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


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Close the event loop that looptime's hook makes for a sync test.

    looptime 0.9 asks pytest-asyncio's ``event_loop_policy`` for the loop of every test,
    sync ones included, which creates a loop nobody closes; the next async test then
    fails on "unclosed event loop" (``filterwarnings = error``). A sync test has no loop
    of its own: a loop the policy holds after the call and did not before is that one.
    """
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        return (yield)
    before = _policy_loop()
    try:
        return (yield)
    finally:
        loop = _policy_loop()
        if loop is not None and loop is not before and not loop.is_running():
            loop.close()
            asyncio.set_event_loop(before)


def _policy_loop() -> asyncio.AbstractEventLoop | None:
    """The loop set on the policy for this thread, without making one."""
    local = getattr(asyncio.get_event_loop_policy(), "_local", None)
    loop = getattr(local, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None

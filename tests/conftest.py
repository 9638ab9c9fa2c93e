"""Settings for every test."""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import tracemalloc
import warnings
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


# -- leaked sockets ------------------------------------------------------------------------

_FD_DIR = "/proc/self/fd"


def _open_sockets() -> dict[int, str] | None:
    """The process's open sockets, fd -> ``socket:[inode]``; None without /proc (not Linux)."""
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return None
    found = {}
    for name in names:
        try:
            target = os.readlink(f"{_FD_DIR}/{name}")
        except OSError:  # the listing's own fd, closed by now
            continue
        if target.startswith("socket:"):
            found[int(name)] = target
    return found


_sockets_before = pytest.StashKey[dict[int, str] | None]()

_held: dict[int, set[str]] = {}
"""Sockets opened by the setup of a live fixture scoped beyond one test (by the fixture's
id): that fixture closes them when its scope ends, not the test that happened to set it up.
(A socket such a fixture's object opens later, during a test, is still that test's.)"""


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    if fixturedef.scope == "function":
        return (yield)
    before = _open_sockets()
    try:
        return (yield)
    finally:
        after = _open_sockets()
        if before is not None and after is not None:
            _held[id(fixturedef)] = set(after.values()) - set(before.values())


@pytest.hookimpl
def pytest_fixture_post_finalizer(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> None:
    _held.pop(id(fixturedef), None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_sockets_before] = _open_sockets()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:  # its traceback holds what it had open: one failure is enough
        item.stash[_sockets_before] = None
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Fail the test that leaves a socket open once its fixtures (and loop) are gone.

    A socket nobody closed stays open until the garbage collector finds it, which then
    warns in whichever later test is running (CI failed that way). Reading /proc costs
    microseconds; the collector runs only when a socket is left over, to name it.
    """
    yield
    before = item.stash.get(_sockets_before, None)
    if before is None:
        return
    held = set().union(*_held.values())
    after = _open_sockets() or {}
    if not any(before.get(fd) != t and t not in held for fd, t in after.items()):
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    unclosed = [_opened_at(w) for w in caught if issubclass(w.category, ResourceWarning)]
    still = {
        fd: t for fd, t in (_open_sockets() or {}).items() if before.get(fd) != t and t not in held
    }
    if unclosed or still:
        raise AssertionError(
            "sockets left open by this test: "
            + "; ".join([*unclosed, *(f"fd {fd} still open ({t})" for fd, t in still.items())])
        )


def _opened_at(warning: warnings.WarningMessage) -> str:
    """The warning, and where its object was made when tracemalloc traces (PYTHONTRACEMALLOC=20)."""
    trace = tracemalloc.get_object_traceback(warning.source) if warning.source else None
    where = "".join(f"\n  {line}" for line in trace.format()) if trace else ""
    return f"{warning.message}{where}"

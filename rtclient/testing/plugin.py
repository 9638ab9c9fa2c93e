"""pytest plugin: a FakeServer, a FaultProxy in front of it, and rtclient clients, as fixtures.

Installed with rtclient (a ``pytest11`` entry point), or named explicitly with
``-p rtclient.testing.plugin`` / ``pytest_plugins = ["rtclient.testing.plugin"]``;
both at once register it once. The async fixtures are ``pytest_asyncio`` fixtures, so
they work in pytest-asyncio's auto and strict modes (mark tests ``@pytest.mark.asyncio``
in strict mode).

Fixtures:

``fake_server``
    a started :class:`~fake_server.FakeServer` on a free port with test-speed settings
    (:data:`SERVER_DEFAULTS`), stopped at teardown. Override its ``ServerConfig`` fields
    with ``@pytest.mark.fake_server(rate_per_second=5)`` (on a test, class or module;
    the closest wins) or ``@pytest.mark.parametrize("fake_server", [{...}], indirect=True)``.
``fault_proxy``
    a :class:`~rtclient.testing.FaultProxy` in front of ``fake_server``
    (``@pytest.mark.fault_proxy(seed=1)`` seeds it), closed at teardown.
``make_rt_client``
    ``await make_rt_client("alice", rooms=["lobby"], transport="socketio")``: a connected,
    joined :class:`~rtclient.Client` reaching the server through the proxy (``direct=True``:
    straight to the server), with a fresh token on every attempt, millisecond backoff and
    a fast heartbeat (:data:`CLIENT_DEFAULTS`; ``@pytest.mark.rt_client(**options)`` or
    keyword arguments override them). Teardown closes every client and **fails the test**
    if one left a task behind.
``rt_client``
    one such client, user ``"alice"``, joined to nothing.
``rt_cluster``
    a started :class:`~rtclient.testing.cluster.Cluster`: a real redis-server and three
    ``rtclient serve --redis`` node processes (``@pytest.mark.rt_cluster(nodes=5,
    redis=False, node_args=[...])`` or an indirect parameter of that dict changes it),
    every process stopped at teardown; the nodes' logs are in a temporary folder, and the
    end of each is shown when the test fails.
``rt_balancer``
    a :class:`~rtclient.testing.balancer.Balancer` (haproxy) in front of ``rt_cluster``.
``rt_haproxy``
    the path of haproxy (``rt_balancer`` asks for it before starting a cluster).

A program those two need (redis-server, haproxy) that is missing skips the test with the
package to install, except under ``CI=true``, where it is installed or the test fails.

Helpers to import: :func:`~rtclient.testing.wait_until` and :class:`~rtclient.testing.Inbox`;
:func:`need_program` for a test of your own that runs a program.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pytest

from ..backoff import Backoff

if TYPE_CHECKING:
    from fake_server import FakeServer

    from ..client import Client
    from .balancer import Balancer
    from .cluster import Cluster
    from .proxy import FaultProxy

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - without pytest-asyncio there are no async fixtures
    pytest_asyncio = None  # type: ignore[assignment]

__all__ = [
    "CLIENT_DEFAULTS",
    "FAST_BACKOFF",
    "SERVER_DEFAULTS",
    "RtClientFactory",
    "fake_server",
    "fault_proxy",
    "make_rt_client",
    "need_program",
    "rt_balancer",
    "rt_client",
    "rt_cluster",
    "rt_haproxy",
]

SERVER_DEFAULTS: dict[str, Any] = {
    "rate_per_second": 1_000_000.0,  # no rate limit to speak of
    "rate_burst": 1_000_000,
    "close_timeout": 1.0,
    "auth_timeout": 2.0,
}
"""ServerConfig overrides of the ``fake_server`` fixture: test-speed timeouts."""

FAST_BACKOFF = Backoff(base=0.01, cap=0.2, first_delay=0.01, stable_after=0.3)
"""Millisecond backoff: the reconnect logic runs for real, only faster."""

CLIENT_DEFAULTS: dict[str, Any] = {
    "backoff": FAST_BACKOFF,
    "ack_timeout": 2.0,
    "connect_timeout": 2.0,
    "ping_interval": 0.2,  # a half-open link is noticed within 0.6 s
    "ping_timeout": 0.4,
}
"""Client options of ``make_rt_client`` (besides the URL, the transport and the token)."""

Transport = Literal["websocket", "aiohttp", "socketio"]


class RtClientFactory(Protocol):
    """The ``make_rt_client`` fixture's signature."""

    async def __call__(
        self,
        user: str = "alice",
        *,
        rooms: Sequence[str] = (),
        transport: Transport = "websocket",
        direct: bool = False,
        connect: bool = True,
        **options: Any,
    ) -> Client: ...


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fake_server(**overrides): ServerConfig fields for the fake_server fixture"
    )
    config.addinivalue_line("markers", "fault_proxy(seed=None): options of the fault_proxy fixture")
    config.addinivalue_line(
        "markers", "rt_client(**options): default Client options of make_rt_client / rt_client"
    )
    config.addinivalue_line(
        "markers", "rt_cluster(nodes=3, redis=True, **options): the rt_cluster fixture's Cluster"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test on ``rt_cluster`` shows the end of every node's log."""
    report = yield
    cluster = getattr(item, "funcargs", {}).get("rt_cluster")
    if report.failed and report.when == "call" and cluster is not None:
        for node in cluster.nodes:
            report.sections.append((f"rt_cluster node {node.index} log", node.log_tail(40)))
    return report


def _marker_kwargs(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    """The keyword arguments of every ``name`` marker, the closest one winning."""
    merged: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(name))):
        merged.update(marker.kwargs)
    return merged


async def _fake_server(request: pytest.FixtureRequest) -> AsyncIterator[FakeServer]:
    from fake_server import FakeServer

    options = {**SERVER_DEFAULTS, **_marker_kwargs(request, "fake_server")}
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, dict):
            raise TypeError("an indirect fake_server parameter is a dict of ServerConfig fields")
        options.update(param)
    async with FakeServer(**options) as server:
        yield server


async def _fault_proxy(
    request: pytest.FixtureRequest, fake_server: FakeServer
) -> AsyncIterator[FaultProxy]:
    from .proxy import FaultProxy

    options = _marker_kwargs(request, "fault_proxy")
    async with FaultProxy(upstream=(fake_server.host, fake_server.port), **options) as proxy:
        yield proxy


async def _make_rt_client(
    request: pytest.FixtureRequest, fake_server: FakeServer, fault_proxy: FaultProxy
) -> AsyncIterator[RtClientFactory]:
    from ..client import Client

    clients: list[Client] = []
    before = asyncio.all_tasks()
    defaults = {**CLIENT_DEFAULTS, **_marker_kwargs(request, "rt_client")}

    async def make(
        user: str = "alice",
        *,
        rooms: Sequence[str] = (),
        transport: Transport = "websocket",
        direct: bool = False,
        connect: bool = True,
        **options: Any,
    ) -> Client:
        if transport in ("websocket", "aiohttp"):
            url = fake_server.ws_url if direct else fault_proxy.url("ws", "/ws")
        else:
            url = fake_server.sio_url if direct else fault_proxy.url("http")
        options = {**defaults, **options}
        options.setdefault("token", lambda: fake_server.issue_token(user))
        client = Client(url, transport=transport, **options)
        clients.append(client)
        if connect:
            await client.connect()
            for room in rooms:
                await client.join(room)
        return client

    yield make
    await asyncio.gather(*(client.close(flush=False) for client in clients))
    leftover = sorted(
        t.get_name()
        for t in asyncio.all_tasks() - before
        if "rtclient" in t.get_name() and not t.done()
    )
    if leftover:
        pytest.fail(f"closed rtclient clients left tasks behind: {leftover}", pytrace=False)


async def _rt_client(make_rt_client: RtClientFactory) -> Client:
    return await make_rt_client("alice")


def _program_missing(exc: Exception) -> None:
    """Skip off CI, fail under ``CI=true``: a test required in CI never skips."""
    from .programs import in_ci

    if in_ci():
        pytest.fail(f"CI=true and a required program is missing: {exc}", pytrace=False)
    pytest.skip(str(exc))


def need_program(name: str) -> str:
    """The path of ``name`` for a test, from :func:`~.programs.require_program`.

    When it is missing (and, under ``CI=true``, could not be installed): a skip that
    names the Debian package, or under ``CI=true`` a failure.
    """
    from .programs import ProgramMissing, require_program

    try:
        return require_program(name)
    except ProgramMissing as exc:
        _program_missing(exc)
        raise


async def _rt_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    from .cluster import Cluster
    from .programs import ProgramMissing

    options: dict[str, Any] = {"nodes": 3, **_marker_kwargs(request, "rt_cluster")}
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, dict):
            raise TypeError("an indirect rt_cluster parameter is a dict of Cluster options")
        options.update(param)
    options.setdefault("log_dir", tmp_path_factory.mktemp("cluster"))
    try:
        cluster = Cluster(**options)
    except ProgramMissing as exc:
        _program_missing(exc)
        raise
    async with cluster:
        yield cluster


def _rt_haproxy() -> str:
    return need_program("haproxy")


async def _rt_balancer(rt_haproxy: str, rt_cluster: Cluster) -> AsyncIterator[Balancer]:
    # rt_haproxy comes first: no cluster is started for a test that cannot run.
    from .balancer import Balancer

    async with Balancer(rt_cluster) as balancer:
        yield balancer


if pytest_asyncio is not None:
    fake_server = pytest_asyncio.fixture(_fake_server, name="fake_server")
    fault_proxy = pytest_asyncio.fixture(_fault_proxy, name="fault_proxy")
    make_rt_client = pytest_asyncio.fixture(_make_rt_client, name="make_rt_client")
    rt_client = pytest_asyncio.fixture(_rt_client, name="rt_client")
    rt_cluster = pytest_asyncio.fixture(_rt_cluster, name="rt_cluster")
    rt_balancer = pytest_asyncio.fixture(_rt_balancer, name="rt_balancer")
    rt_haproxy = pytest.fixture(_rt_haproxy, name="rt_haproxy")
else:  # pragma: no cover

    def _needs_pytest_asyncio() -> None:
        pytest.fail("rtclient's fixtures need pytest-asyncio: pip install pytest-asyncio")

    fake_server = pytest.fixture(_needs_pytest_asyncio, name="fake_server")
    fault_proxy = pytest.fixture(_needs_pytest_asyncio, name="fault_proxy")
    make_rt_client = pytest.fixture(_needs_pytest_asyncio, name="make_rt_client")
    rt_client = pytest.fixture(_needs_pytest_asyncio, name="rt_client")
    rt_cluster = pytest.fixture(_needs_pytest_asyncio, name="rt_cluster")
    rt_balancer = pytest.fixture(_needs_pytest_asyncio, name="rt_balancer")
    rt_haproxy = pytest.fixture(_rt_haproxy, name="rt_haproxy")

"""The pytest plugin, tested the way a user meets it: pytester runs a user's test suite.

``pytest_plugins`` is declared here, in a test module, rather than in
``tests/plugin/conftest.py``: pytest refuses ``pytest_plugins`` in a conftest below the
rootdir when the run starts at ``tests/`` (the default ``pytest`` run). The user's suites
run in a subprocess, as a user's would: an in-process run would share (and, when it
restores ``sys.modules``, duplicate) this process's imported modules and its
pytest-timeout alarm.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = {mode}
asyncio_default_fixture_loop_scope = function
filterwarnings = error
timeout = 30
"""

USER_TESTS = """
import asyncio

import pytest

from rtclient import ConnectionState
from rtclient.testing import Inbox, wait_until

pytestmark = pytest.mark.asyncio  # needed in strict mode, harmless in auto mode


async def test_a_message_crosses_a_half_open_link(fault_proxy, make_rt_client):
    alice = await make_rt_client("alice", rooms=["lobby"])
    bob = await make_rt_client("bob", rooms=["lobby"], transport="socketio")
    carol = await make_rt_client("carol", rooms=["lobby"], transport="aiohttp")
    inbox, carols = Inbox(bob), Inbox(carol)
    with fault_proxy.blackhole():  # bytes vanish, sockets stay open: only heartbeats tell
        await alice.wait_for(ConnectionState.RECONNECTING, timeout=5)
        await carol.wait_for(ConnectionState.RECONNECTING, timeout=5)
        sending = asyncio.ensure_future(alice.send("lobby", "through the storm"))
    await alice.wait_for(ConnectionState.CONNECTED, timeout=5)
    ack = await asyncio.wait_for(sending, 5)
    (event,) = await inbox.wait_for(1)
    assert (event.text, event.event_id) == ("through the storm", ack.event_id)
    (seen,) = await carols.wait_for(1)
    assert (seen.text, seen.event_id) == ("through the storm", ack.event_id)
    assert alice.stats()["dead_links"] >= 1 and carol.stats()["dead_links"] >= 1


async def test_rt_client_survives_a_server_drop(rt_client, fake_server):
    await rt_client.join("room")
    await fake_server.drop_connections()
    await rt_client.wait_for(ConnectionState.CONNECTED, timeout=5)
    ack = await rt_client.send("room", "hello", timeout=5)
    assert ack.event_id == 1
    await wait_until(lambda: len(fake_server.room_events("room")) == 1, timeout=5)


async def test_clients_can_skip_the_proxy(make_rt_client, fault_proxy, fake_server):
    client = await make_rt_client("carol", direct=True, ping_interval=None)
    assert client.url == fake_server.ws_url
    assert fault_proxy.connections == 0


@pytest.mark.fake_server(rate_per_second=2.0, rate_burst=3)
async def test_a_marker_configures_the_server(fake_server):
    assert (fake_server.config.rate_per_second, fake_server.config.rate_burst) == (2.0, 3)
    assert fake_server.config.close_timeout == 1.0  # the plugin's other settings stay


@pytest.mark.parametrize("fake_server", [{"retention_count": 5}], indirect=True)
async def test_an_indirect_parameter_configures_the_server(fake_server):
    assert fake_server.config.retention_count == 5


@pytest.mark.fault_proxy(seed=3)
@pytest.mark.rt_client(ack_timeout=0.5)
async def test_markers_configure_the_proxy_and_the_clients(make_rt_client, fault_proxy):
    client = await make_rt_client("dave", rooms=["x"])
    assert client._session.ack_timeout == 0.5
    assert fault_proxy.connections == 1
"""

LEAKY_TEST = """
import asyncio

import pytest

pytestmark = pytest.mark.asyncio


async def test_a_client_task_left_behind_fails_the_test(make_rt_client):
    await make_rt_client("alice")
    asyncio.get_running_loop().create_task(asyncio.sleep(60), name="rtclient leaked")
"""


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_the_fixtures_in_a_users_suite(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeini(INI.format(mode=mode))
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "rtclient.testing.plugin", "-q")
    result.assert_outcomes(passed=6)


def test_a_task_left_behind_is_an_error_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(mode="strict"))
    pytester.makepyfile(test_leak=LEAKY_TEST)
    result = pytester.runpytest_subprocess("-p", "rtclient.testing.plugin", "-q")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*left tasks behind*rtclient leaked*"])


def test_entry_point_and_explicit_registration_do_not_clash(pytester: pytest.Pytester) -> None:
    """Installed (the pytest11 entry point) and named in pytest_plugins and -p: loaded once."""
    dist = pytester.mkdir("rtclient_plugin_probe-0.dist-info")
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rtclient-plugin-probe\nVersion: 0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[pytest11]\nrtclient.testing.plugin = rtclient.testing.plugin\n"
    )
    pytester.makeini(INI.format(mode="auto"))
    pytester.makeconftest('pytest_plugins = ["rtclient.testing.plugin"]\n')
    pytester.makepyfile(
        test_once=textwrap.dedent(
            """
            def test_registered_once(request, fake_server):
                manager = request.config.pluginmanager
                plugin = manager.get_plugin("rtclient.testing.plugin")
                assert plugin is not None
                assert [p for p in manager.get_plugins() if p is plugin] == [plugin]
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "rtclient.testing.plugin", "-q")
    result.assert_outcomes(passed=1)

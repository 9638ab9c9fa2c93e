"""A failed test on ``rt_cluster`` shows the end of each node's log (run as a user's suite)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.cluster

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
timeout = 30
"""

USER_TESTS = """
import pytest


@pytest.mark.rt_cluster(nodes=2, redis=False)
async def test_fails_on_a_cluster(rt_cluster):
    assert rt_cluster.running() == []
"""


def test_a_failure_shows_every_nodes_log(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "rtclient.testing.plugin", "-q")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*rt_cluster node 0 log*", "--- start 1: port *", "*rt_cluster node 1 log*"],
        consecutive=False,
    )

"""A cluster test whose program is missing: a skip naming the package off CI, a failure in CI.

The user's suite runs in a subprocess (as in tests/plugin) with the program lookup made
to find nothing and apt-get made to fail, so that neither redis-server nor haproxy has
to be uninstalled for the test.
"""

from __future__ import annotations

import fnmatch

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

CONFTEST = """
import pytest

from rtclient.testing import programs


@pytest.fixture(autouse=True)
def _nothing_installed(monkeypatch, request):
    monkeypatch.setenv("CI", "true" if "in_ci" in request.node.name else "")
    monkeypatch.setattr(programs, "_which", lambda name: None)
    monkeypatch.setattr(programs, "_apt_install", lambda package: "apt-get refused (test)")
"""

USER_TESTS = """
import pytest


async def test_on_a_cluster(rt_cluster):
    raise AssertionError("never reached: redis-server is missing")


async def test_on_a_cluster_in_ci(rt_cluster):
    raise AssertionError("never reached: redis-server is missing")


@pytest.mark.rt_cluster(nodes=1, redis=False)
async def test_behind_a_balancer(rt_balancer):
    raise AssertionError("never reached: haproxy is missing")


@pytest.mark.rt_cluster(nodes=1, redis=False)
async def test_behind_a_balancer_in_ci(rt_balancer):
    raise AssertionError("never reached: haproxy is missing")
"""


def test_a_missing_program_skips_off_ci_and_fails_in_ci(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "rtclient.testing.plugin", "-q", "-rsE")
    result.assert_outcomes(skipped=2, errors=2)
    text = result.stdout.str()
    for line in (
        "SKIPPED * redis-server not found*apt-get install redis-server*",
        "SKIPPED * haproxy not found*apt-get install haproxy*",
        "ERROR *test_on_a_cluster_in_ci*CI=true and a required program is missing*redis-server*",
        "ERROR *test_behind_a_balancer_in_ci*CI=true and a required program is missing*haproxy*",
    ):
        assert fnmatch.fnmatch(text, f"*{line}*"), f"{line!r} not in\n{text}"

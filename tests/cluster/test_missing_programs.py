"""A cluster test whose program is missing: a skip naming the package off CI, a failure in CI.

The user's suite runs in a subprocess (as in tests/plugin) with the program lookup made
to find nothing and apt-get made to fail, so that neither redis-server nor haproxy has
to be uninstalled for the test.
"""

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

CONFTEST = """
import pytest

from rtclient.testing import programs


@pytest.fixture(autouse=True)
def _nothing_installed(monkeypatch):
    monkeypatch.setattr(programs, "_which", lambda name: None)
    monkeypatch.setattr(programs, "_apt_install", lambda package: "apt-get refused (test)")
"""

USER_TESTS = """
import pytest


async def test_on_a_cluster(rt_cluster):
    raise AssertionError("never reached: redis-server is missing")


@pytest.mark.rt_cluster(nodes=1, redis=False)
async def test_behind_a_balancer(rt_balancer):
    raise AssertionError("never reached: haproxy is missing")
"""


def _run(pytester: pytest.Pytester, ci: str) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_user=USER_TESTS)
    pytester._monkeypatch.setenv("CI", ci)
    return pytester.runpytest_subprocess("-p", "rtclient.testing.plugin", "-q", "-rs")


def test_off_ci_a_missing_program_is_a_skip_that_names_the_package(
    pytester: pytest.Pytester,
) -> None:
    result = _run(pytester, "")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*redis-server not found*apt-get install redis-server*",
            "*haproxy not found*apt-get install haproxy*",
        ],
        consecutive=False,
    )


def test_under_ci_a_missing_program_fails_the_test(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "true")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*CI=true and a required program is missing*redis-server*",
            "*CI=true and a required program is missing*haproxy*",
        ],
        consecutive=False,
    )

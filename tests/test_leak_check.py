"""The suite's leaked-socket check (tests/conftest.py), run by pytester on a small suite."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")

SUITE = """
import socket

import pytest

kept = []


@pytest.fixture(scope="module")
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def test_first_user_of_a_module_fixture(listener):
    assert listener.fileno() >= 0


def test_second_user_of_a_module_fixture(listener):
    assert listener.fileno() >= 0


def test_a_socket_left_open():
    kept.append(socket.socket())
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the check reads /proc (Linux)")
def test_a_socket_held_by_a_wider_fixture_is_not_the_tests_leak(pytester: pytest.Pytester) -> None:
    # A module- or session-scoped fixture opens its socket in the setup of the first test
    # that uses it and closes it at the end of its scope: not that test's leak. A socket
    # a test leaves open is still one.
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-q", "-p", "no:randomly")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_a_socket_left_open*"])

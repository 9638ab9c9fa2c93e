"""Fixtures for the CLI tests: a FakeServer with an admin token, and waiting helpers."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from fake_server import FakeServer

SECRET = "cli-test-secret-" + "0123456789abcdef" * 4
ADMIN = "cli-test-admin-token"


@pytest.fixture(autouse=True)
def state_file(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``rtclient serve``'s state file for this test: never the real one in the home."""
    path = tmp_path_factory.mktemp("state") / "serve.json"
    monkeypatch.setenv("RTCLIENT_STATE_FILE", str(path))
    return path


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    """A FakeServer on port 0 with a known secret and admin token, test-speed timeouts."""
    async with FakeServer(
        secret=SECRET,
        admin_token=ADMIN,
        rate_per_second=1_000_000.0,
        rate_burst=1_000_000,
        close_timeout=1.0,
        auth_timeout=2.0,
    ) as srv:
        yield srv


async def eventually(check: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Wait until ``check()`` is true (polled every 10 ms); fail after ``timeout``.

    Polled, not awaited on an event: what the tests look at (the toolbar's text) is a
    function of the clock and of the client's state, with no event of its own.
    """
    try:
        async with asyncio.timeout(timeout):
            while not check():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what or check}")


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(
    args: Sequence[str],
    *,
    stdin: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Completed:
    """Run ``python -m rtclient.cli ARGS`` in a subprocess, stdin not a terminal."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rtclient.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate(stdin.encode())
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())

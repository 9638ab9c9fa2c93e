"""Every example runs (each starts its own FakeServer) and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def _quickstart_shows_the_queued_message_delivered(out: str) -> None:
    assert "queued message delivered as event #2" in out
    assert out.count("bob got #") == 3


SHOWS: dict[str, Callable[[str], None]] = {
    "quickstart": _quickstart_shows_the_queued_message_delivered,
}
"""What an example's output must say, beyond something (each example runs once)."""

ENV = {**os.environ, "PYTEST_ADDOPTS": f"{os.environ.get('PYTEST_ADDOPTS', '')} -p no:xdist"}
"""As a user who installed rtclient and ``pytest pytest-asyncio`` (the README's "Testing
your bot") has it: no pytest-xdist. An example that runs pytest on itself must not need
this repository's settings (their ``-n 2``; two workers also made 4 s 13 s)."""


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip(), "the example printed nothing"
    check = SHOWS.get(path.stem)
    if check is not None:
        check(result.stdout)

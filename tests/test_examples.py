"""Every example runs (each starts its own FakeServer) and exits 0."""

from __future__ import annotations

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


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip(), "the example printed nothing"
    check = SHOWS.get(path.stem)
    if check is not None:
        check(result.stdout)

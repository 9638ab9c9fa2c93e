"""The small things a newcomer met in the first ten minutes (issue 15, item 7)."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import pytest

from fake_server import FakeServer
from rtclient.console.chat import exit_status
from rtclient.console.status import ToolbarFacts, toolbar_text
from rtclient.demo import Demo
from rtclient.quality import QualityLevel, QualitySnapshot
from rtclient.testing.chaos.history import QualityMoved

from .test_interactive import VISIBLE, running_chat

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def test_the_toolbar_does_not_show_an_unknown_user() -> None:
    quality = QualitySnapshot(QualityLevel.UNKNOWN, None, None, 1.0, None, None, 0, 0.0)
    text = toolbar_text(ToolbarFacts("connecting…", quality, 0, "lobby", None, []))
    assert "?" not in text and text.endswith("│ lobby")


async def test_ctrl_d_with_an_undelivered_message_exits_1(
    server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_chat(server, backoff=VISIBLE) as chat:
        await chat.wait_line("· joined lobby")
        await server.reject_handshakes(1000, 503)
        await server.drop_connections()
        await chat.wait_toolbar("offline")
        chat.type("never delivered\r")
        await chat.wait_toolbar("queued 1")
        chat.type("\x04")
        controller = await asyncio.wait_for(chat.task, 10)
    assert chat.saw("1 message(s) not delivered")
    assert exit_status(controller) == 1
    await server.reject_handshakes(0, 503)


def test_the_demo_prints_the_figure_the_quality_level_is_judged_on() -> None:
    out = io.StringIO()
    demo = Demo(1.0, 1, 2, quiet=False, out=out)
    demo._progress(QualityMoved("bot0", "poor", "good", p95=0.473, p50=0.012))
    assert "quality poor -> good (median 12 ms, p95 473 ms)" in out.getvalue()


@pytest.mark.parametrize("name", ["quickstart.py", "socketio_client.py", "notifier.py"])
def test_examples_answer_help_without_running(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")

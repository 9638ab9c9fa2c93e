"""``python -m fake_server`` as a real process: serves /health, stops on signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_module_serves_health_and_exits_on_signal(sig: signal.Signals) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fake_server",
        "--port",
        "0",
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(15):
            banner = ""
            while "Ctrl-C" not in banner:
                line = (await proc.stdout.readline()).decode()
                assert line, "process ended early"
                banner += line
        match = re.search(r"http://127\.0\.0\.1:(\d+)/health", banner)
        assert match, banner
        assert "curl" in banner and "/admin/token" in banner  # no --secret: say how
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{match.group(1)}/health") as resp,
        ):
            assert (await resp.json())["status"] == "ok"
        proc.send_signal(sig)
        async with asyncio.timeout(15):
            _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from fake_server.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--port", "not-a-port"], prog="rtclient serve")
    assert info.value.code == 2
    assert "rtclient serve" in capsys.readouterr().err
    assert main(["--ping-interval", "0"]) == 2


def test_the_connection_limit_per_address_is_a_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 clients on one loopback address (the scale benchmark) need more than 256."""
    from fake_server import cli
    from fake_server.config import ServerConfig

    served: list[ServerConfig] = []

    async def serve(config: ServerConfig, host: str, port: int, **_: object) -> None:
        served.append(config)

    monkeypatch.setattr(cli, "_serve", serve)
    assert cli.main(["--ephemeral", "--max-connections-per-address", "5000"]) == 0
    assert served[0].max_connections_per_address == 5000
    assert cli.main(["--ephemeral", "--max-connections-per-address", "0"]) == 2

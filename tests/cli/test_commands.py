"""The ``rtclient`` commands as a user runs them: subprocesses against an in-process server.

stdin is a pipe here, so ``rtclient chat`` runs in its scripting mode (JSON lines).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from fake_server import FakeServer
from rtclient import __version__
from rtclient.cli import main

from .conftest import ADMIN, SECRET, run_cli


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


async def test_version() -> None:
    result = await run_cli(["--version"])
    assert result.returncode == 0 and result.stdout.strip() == f"rtclient {__version__}"


def test_serve_still_takes_fake_servers_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: rtclient serve" in out and "--admin-token" in out


async def test_pipe_mode_sends_lines_and_prints_json(server: FakeServer) -> None:
    token = server.issue_token("alice")
    result = await run_cli(
        ["chat", server.ws_url, "--room", "lobby", "--room", "ops", "--codec", "json"],
        stdin="first line\n\nsecond line\n",
        env={"RTCLIENT_TOKEN": token},
    )
    assert result.returncode == 0, result.stderr
    assert [e["text"] for e in server.room_events("lobby")] == ["first line", "second line"]
    out = records(result.stdout)
    acks = [r for r in out if r["event"] == "ack"]
    assert [(a["line"], a["text"], a["eventId"]) for a in acks] == [
        (1, "first line", 1),
        (2, "second line", 2),
    ]
    messages = [r for r in out if r["event"] == "chat:message"]
    assert {"room": "lobby", "from": "alice", "text": "first line", "eventId": 1}.items() <= (
        messages[0].items()
    )
    assert messages[0]["replayed"] is False
    states = [r["new"] for r in out if r["event"] == "state"]
    assert states[0] == "connecting" and "connected" in states and states[-1] == "closed"
    assert token not in result.stdout + result.stderr


async def test_pipe_mode_mints_over_the_admin_endpoint(server: FakeServer) -> None:
    other = server.issue_token("bob")
    first = await run_cli(
        ["chat", server.ws_url, "--room", "lobby", "--token", other], stdin="from bob\n"
    )
    assert first.returncode == 0, first.stderr
    # A new session sees nothing old (it starts at the room's end), only what it sends.
    second = await run_cli(
        [
            "chat",
            server.ws_url,
            "--room",
            "lobby",
            "--user",
            "carol",
            "--admin-token",
            ADMIN,
            "--transport",
            "aiohttp",
            "--codec",
            "msgpack",
        ],
        stdin="from carol\n",
    )
    assert second.returncode == 0, second.stderr
    texts = [r["text"] for r in records(second.stdout) if r["event"] == "chat:message"]
    assert texts == ["from carol"]
    assert [e["from"] for e in server.room_events("lobby")] == ["bob", "carol"]


async def test_pipe_mode_socketio_and_token_command(server: FakeServer, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(server.issue_token("dave") + "\n")
    result = await run_cli(
        [
            "chat",
            server.sio_url,
            "--transport",
            "socketio",
            "--room",
            "lobby",
            "--token-cmd",
            f"cat {token_file}",
        ],
        stdin="over socket.io\n",
    )
    assert result.returncode == 0, result.stderr
    assert [(e["from"], e["text"]) for e in server.room_events("lobby")] == [
        ("dave", "over socket.io")
    ]


async def test_pipe_mode_fatal_error(server: FakeServer) -> None:
    result = await run_cli(
        ["chat", server.ws_url, "--room", "lobby", "--token", "garbage-token"], stdin="x\n"
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "rtclient chat: Unauthorized: INVALID_TOKEN"
    states = [r for r in records(result.stdout) if r["event"] == "state"]
    assert states[-1]["new"] == "closed"
    assert states[-1]["error"] == "Unauthorized: INVALID_TOKEN"
    assert "garbage-token" not in result.stdout + result.stderr
    assert server.room_events("lobby") == []


async def test_usage_errors(server: FakeServer) -> None:
    no_token = await run_cli(["chat", server.ws_url, "--room", "r"], env={"RTCLIENT_TOKEN": ""})
    assert no_token.returncode == 2 and "give --user" in no_token.stderr
    bad_admin = await run_cli(
        ["chat", server.ws_url, "--room", "r", "--user", "u", "--admin-token", "wrong"]
    )
    assert bad_admin.returncode == 1 and "HTTP 401" in bad_admin.stderr
    assert "wrong" not in bad_admin.stderr
    codec_on_sio = await run_cli(
        ["chat", server.sio_url, "--transport", "socketio", "--codec", "json", "--room", "r"],
        env={"RTCLIENT_TOKEN": "t"},
    )
    assert codec_on_sio.returncode == 2 and "raw WebSocket transport only" in codec_on_sio.stderr


async def test_token_command(server: FakeServer) -> None:
    result = await run_cli(
        [
            "token",
            "--url",
            server.ws_url,
            "--user",
            "erin",
            "--roles",
            "admin,ops",
            "--ttl",
            "120",
        ],
        env={"RTCLIENT_ADMIN_TOKEN": ADMIN},
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "erin" and claims["roles"] == ["admin", "ops"]
    assert 119 <= claims["exp"] - claims["iat"] <= 121

    signed = await run_cli(["token", "--user", "frank", "--secret", SECRET])
    assert jwt.decode(signed.stdout.strip(), SECRET, algorithms=["HS256"])["sub"] == "frank"

    refused = await run_cli(
        ["token", "--url", server.http_url, "--user", "x", "--admin-token", "nope"]
    )
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr and not refused.stdout
    missing = await run_cli(["token", "--user", "x"], env={"RTCLIENT_ADMIN_TOKEN": ""})
    assert missing.returncode == 2 and "--admin-token" in missing.stderr


async def test_ping(server: FakeServer) -> None:
    result = await run_cli(
        ["ping", server.ws_url, "--user", "gina", "--secret", SECRET, "-c", "4", "-i", "0.02"]
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"PING {server.ws_url} as gina"
    assert [line.split()[0] for line in lines[1:5]] == ["seq=1", "seq=2", "seq=3", "seq=4"]
    assert all(" rtt=" in line and line.endswith(" ms") for line in lines[1:5])
    assert lines[-2] == "4 sent, 4 answered, 0 lost (0 %)"
    assert lines[-1].startswith("rtt min/p50/p95/max = ") and lines[-1].endswith("level good")


async def test_ping_socketio_for_seconds(server: FakeServer) -> None:
    result = await run_cli(
        [
            "ping",
            server.sio_url,
            "--transport",
            "socketio",
            "--token",
            server.issue_token("hal"),
            "--seconds",
            "0.3",
            "-i",
            "0.05",
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "level good" in result.stdout and result.stdout.count("seq=") >= 3


async def test_ping_unauthorized(server: FakeServer) -> None:
    result = await run_cli(["ping", server.ws_url, "--token", "junk"])
    assert result.returncode == 1 and "Unauthorized" in result.stderr

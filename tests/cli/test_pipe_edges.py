"""Pipe mode at its edges: stdin left open, a server nobody can reach, an overlong line."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

from fake_server import FakeServer
from rtclient.console.lines import LineSplitter, TooLong

from .conftest import ADMIN, run_cli


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_fatal_error_while_stdin_is_still_open_exits_1_at_once(server: FakeServer) -> None:
    # Was: the error, then a wait for stdin to close, then "Fatal Python error:
    # _enter_buffered_busy" and status 134 (a daemon thread blocked reading stdin).
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "rtclient.cli", "chat", server.ws_url, "--room", "lobby", "--token", "garbage"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stderr is not None
    try:
        async with asyncio.timeout(15):  # stdin is never closed
            returncode = await process.wait()
        err = (await process.stderr.read()).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        process.stdin.close()
    assert returncode == 1, err
    assert "Fatal Python error" not in err
    assert err.strip() == "rtclient chat: Unauthorized: INVALID_TOKEN"


async def test_unreachable_server_end_of_input_flushes_for_a_bounded_time() -> None:
    # Was: still retrying at 300 s (connect() waited for the server before reading stdin).
    url = f"ws://127.0.0.1:{_unused_port()}/ws"
    result = await run_cli(
        ["chat", url, "--room", "lobby", "--token", "t", "--flush-timeout", "0.5"],
        stdin="hi\n",
        timeout=20,
    )
    assert result.returncode == 1
    assert "1 line(s) not delivered" in result.stderr
    failed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["event"], r["error"]) for r in failed if r["event"] == "failed"] == [
        ("failed", "ClientClosed")
    ]


async def test_give_up_ends_the_pipe_with_connection_failed() -> None:
    url = f"ws://127.0.0.1:{_unused_port()}/ws"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "rtclient.cli", "chat", url, "--room", "r", "--token", "t", "--give-up", "0.5"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stderr is not None
    try:
        async with asyncio.timeout(15):
            returncode = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        process.stdin.close()
    err = (await process.stderr.read()).decode()
    assert returncode == 1 and "ConnectionFailed" in err, err


async def test_an_overlong_line_is_refused_before_sending(server: FakeServer) -> None:
    token = server.issue_token("alice")
    result = await run_cli(
        ["chat", server.ws_url, "--room", "lobby"],
        stdin="before\n" + "x" * 102_300 + "\nafter\n",
        env={"RTCLIENT_TOKEN": token},
    )
    assert result.returncode == 1
    assert [e["text"] for e in server.room_events("lobby")] == ["before", "after"]
    failed = [r for r in map(json.loads, result.stdout.splitlines()) if r["event"] == "failed"]
    assert len(failed) == 1 and failed[0]["line"] == 2
    assert "102,300 characters" in failed[0]["message"]
    assert "over the 8,000-character limit" in failed[0]["message"]


def test_line_splitter_holds_at_most_one_line() -> None:
    splitter = LineSplitter(max_chars=4)
    assert splitter.feed(b"ab\ncd") == ["ab"]
    assert splitter.feed("é\r\n".encode()) == ["cdé"]
    assert splitter.feed(b"x" * 30) == []
    assert len(splitter._buffer) == 0  # dropped as it streamed by
    assert splitter.feed(b"yy\nok") == [TooLong(32)]
    assert splitter.feed("ééééé\n".encode()) == [TooLong(7)]
    assert splitter.end() == []
    assert splitter.feed(b"tail") == [] and splitter.end() == ["tail"]


async def test_stdin_from_a_regular_file_and_from_dev_null(
    server: FakeServer, tmp_path: Path
) -> None:
    token = server.issue_token("alice")
    path = tmp_path / "lines.txt"
    path.write_text("from a file\n")
    for source in (path, Path(os.devnull)):
        with source.open("rb") as stdin:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "rtclient.cli", "chat", server.ws_url, "--room", "lobby"),
                stdin=stdin,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "RTCLIENT_TOKEN": token},
            )
            async with asyncio.timeout(15):
                _, err = await process.communicate()
        assert process.returncode == 0, err.decode()
    assert [e["text"] for e in server.room_events("lobby")] == ["from a file"]


async def test_a_closed_stdin_is_no_input_not_a_traceback(server: FakeServer) -> None:
    # Was: AttributeError: 'NoneType' object has no attribute 'isatty' (`<&-` in a
    # shell: Python sets sys.stdin to None when descriptor 0 is closed).
    token = server.issue_token("alice")
    command = [sys.executable, "-m", "rtclient.cli", "chat", server.ws_url, "--room", "lobby"]
    process = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        'exec "$@" <&-',
        "sh",
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "RTCLIENT_TOKEN": token},
    )
    async with asyncio.timeout(15):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert b"Traceback" not in err
    states = [r["new"] for r in map(json.loads, out.splitlines()) if r["event"] == "state"]
    assert states[-1] == "closed"


async def test_several_urls_a_dead_one_first(server: FakeServer) -> None:
    dead = f"ws://127.0.0.1:{_unused_port()}/ws"
    done = await run_cli(
        ["chat", dead, server.ws_url, "--room", "lobby", "--token", server.issue_token("al")],
        stdin="through the second URL\n",
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    states = [(r["new"], r["endpoint"]) for r in records if r["event"] == "state"]
    # The given order is shuffled per client: the dead URL may or may not come first.
    assert ("connected", server.ws_url) in states
    assert {endpoint for _, endpoint in states} <= {dead, server.ws_url}
    assert [r["text"] for r in records if r["event"] == "ack"] == ["through the second URL"]


async def test_tokens_are_minted_at_a_node_that_answers(server: FakeServer) -> None:
    dead = f"ws://127.0.0.1:{_unused_port()}/ws"  # tried first for the token: refused
    done = await run_cli(
        ["chat", dead, server.ws_url, "--room", "lobby", "--user", "al", "--admin-token", ADMIN],
        stdin="minted elsewhere\n",
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["text"] for r in records if r["event"] == "ack"] == ["minted elsewhere"]

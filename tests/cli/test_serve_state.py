"""``rtclient serve`` keeps its secret and admin token across restarts (state file)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from fake_server.serve_state import StateFileError, load_state, state_path
from rtclient.console.auth import UsageError, kept_secret


def test_state_path_follows_xdg_and_defaults_to_the_home() -> None:
    assert state_path({"XDG_STATE_HOME": "/x"}) == Path("/x/rtclient/serve.json")
    home = Path(os.path.expanduser("~"))
    assert state_path({}) == home / ".local" / "state" / "rtclient" / "serve.json"
    assert state_path({"RTCLIENT_STATE_FILE": "/y/s.json", "XDG_STATE_HOME": "/x"}) == Path(
        "/y/s.json"
    )


def test_state_is_created_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "serve.json"
    assert load_state(path, create=False) is None
    first = load_state(path, create=True)
    assert first is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_state(path, create=True) == first
    assert first.secret not in repr(first)
    path.chmod(0o644)
    assert load_state(path, create=False) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # narrowed


def test_a_damaged_state_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "serve.json"
    path.write_text('{"secret": 1}')
    with pytest.raises(StateFileError, match=r"serve\.json.*--ephemeral"):
        load_state(path, create=True)
    with pytest.raises(UsageError, match=r"serve\.json"):
        kept_secret("ws://127.0.0.1:8765/ws", {"RTCLIENT_STATE_FILE": str(path)})


def test_kept_secret_only_for_a_server_on_this_machine(tmp_path: Path) -> None:
    path = tmp_path / "serve.json"
    state = load_state(path, create=True)
    assert state is not None
    env = {"RTCLIENT_STATE_FILE": str(path)}
    assert kept_secret("ws://127.0.0.1:8765/ws", env) == state.secret
    assert kept_secret("http://localhost:8765", env) == state.secret
    assert kept_secret("wss://chat.example.com/ws", env) is None


class Serve:
    """``rtclient serve --port P`` in a subprocess; what it printed at start."""

    def __init__(self, process: asyncio.subprocess.Process, lines: list[str]) -> None:
        self.process = process
        self.lines = lines
        self.url = lines[0].split()[2]
        self.admin = lines[1].removeprefix("admin token: ")

    @classmethod
    async def start(cls, *args: str) -> Serve:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "rtclient.cli", "serve", "--log-level", "ERROR", *args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert process.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(20):
            while not lines or lines[-1] != "press Ctrl-C to stop":
                line = await process.stdout.readline()
                assert line, f"serve ended: {lines}"
                lines.append(line.decode().rstrip("\n"))
        return cls(process, lines)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            async with asyncio.timeout(10):
                await self.process.wait()


def _port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


async def test_chat_with_user_alone_survives_serve_being_restarted(state_file: Path) -> None:
    port = _port()
    first = await Serve.start("--port", port)
    try:
        assert any(str(state_file) in line for line in first.lines)
        assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
    except BaseException:
        await first.stop()
        raise
    chat = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "rtclient.cli", "chat", first.url, "--room", "lobby", "--user", "alice"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert chat.stdin is not None and chat.stdout is not None and chat.stderr is not None
    second: Serve | None = None
    try:
        records: list[dict[str, object]] = []

        async def until(new: str) -> None:
            async with asyncio.timeout(20):
                while True:
                    line = await chat.stdout.readline()  # type: ignore[union-attr]
                    assert line, "chat ended"
                    records.append(json.loads(line))
                    if records[-1].get("event") == "state" and records[-1]["new"] == new:
                        return

        await until("connected")
        await first.stop()  # Ctrl-C / kill, then the same command again
        await until("reconnecting")
        second = await Serve.start("--port", port)
        assert second.admin == first.admin
        await until("connected")
        chat.stdin.write(b"after the restart\n")
        await chat.stdin.drain()
        chat.stdin.close()
        async with asyncio.timeout(20):
            out, err = await chat.communicate()
        assert chat.returncode == 0, err.decode()
        assert b'"text":"after the restart"' in out
    finally:
        if chat.returncode is None:
            chat.kill()
            await chat.wait()
        await first.stop()
        if second is not None:
            await second.stop()


async def test_ephemeral_and_explicit_credentials_write_nothing(state_file: Path) -> None:
    for args in (("--ephemeral",), ("--secret", "s" * 32, "--admin-token", "adm")):
        serve = await Serve.start("--port", "0", *args)
        await serve.stop()  # before any assertion: it must not outlive the test
        assert state_file.name not in os.listdir(state_file.parent)
        assert not any("kept across restarts" in line for line in serve.lines)
    assert serve.admin == "adm"


def test_the_state_file_never_exists_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: created empty (O_EXCL) and then written, so a second serve starting at the
    # same moment could read it empty and stop with "cannot use ...: JSONDecodeError".
    path = tmp_path / "serve.json"
    dump = json.dump

    def checked_dump(obj: object, fp: Any, **kwargs: Any) -> None:
        assert not path.exists(), "visible before it is complete"
        dump(obj, fp, **kwargs)

    monkeypatch.setattr(json, "dump", checked_dump)
    state = load_state(path, create=True)
    assert state is not None and load_state(path, create=False) == state
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["serve.json"]  # no temporary left


def test_a_state_file_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RTCLIENT_STATE_FILE in a shared directory: a file someone else made (or a symlink
    # to one) would hand them the secret serve signs with.
    path = tmp_path / "serve.json"
    assert load_state(path, create=True) is not None
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)
    with pytest.raises(StateFileError, match="another user"):
        load_state(path, create=True)

"""The CLI's logic without a terminal: parsing, lines, records, toolbar, tokens, figures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jwt
import pytest

from rtclient import (
    Ack,
    ConnectionLost,
    ConnectionState,
    ErrorEvent,
    Event,
    Gap,
    OutboxFull,
    QualityChanged,
    QualityLevel,
    QualitySnapshot,
    StateChanged,
    Unauthorized,
)
from rtclient.console.auth import (
    CommandToken,
    SignedTokens,
    UsageError,
    http_base,
    sign_token,
    token_provider,
)
from rtclient.console.chat import shown_url
from rtclient.console.commands import HELP, Command, Message, parse_line
from rtclient.console.ping import summarize
from rtclient.console.render import (
    ack_line,
    ack_record,
    event_line,
    failure_line,
    failure_record,
    item_line,
    item_record,
    json_line,
    pending_line,
)
from rtclient.console.status import (
    EchoFilter,
    LinkStatus,
    ToolbarFacts,
    TypingThrottle,
    TypingTracker,
    toolbar_text,
)
from rtclient.tokens import HttpTokenProvider

S = ConnectionState
SECRET = "parts-secret-" + "x" * 40


def chat(text: str, sender: str = "bob", *, mid: str = "m1", replayed: bool = False) -> Event:
    return Event(
        "chat:message",
        {"roomId": "lobby", "text": text, "from": sender},
        room="lobby",
        event_id=7,
        sender=sender,
        message_id=mid,
        replayed=replayed,
    )


def snapshot(srtt: float | None = None, p50: float | None = None) -> QualitySnapshot:
    return QualitySnapshot(QualityLevel.GOOD, srtt, None, None, p50, None, 3, 0.0)


# -- commands -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("", None),
        ("   ", None),
        ("hello", Message("hello")),
        ("//etc/passwd", Message("/etc/passwd")),
        ("/join ops", Command("join", "ops")),
        ("/JOIN  ops ", Command("join", "ops")),
        ("/leave", Command("leave")),
        ("/who lobby", Command("who", "lobby")),
        ("/rooms", Command("rooms")),
        ("/q", Command("quit")),
        ("/exit", Command("quit")),
        ("/help", Command("help")),
    ],
)
def test_parse_line(line: str, parsed: object) -> None:
    assert parse_line(line) == parsed


def test_parse_line_errors() -> None:
    unknown = parse_line("/frobnicate x")
    assert isinstance(unknown, Command) and unknown.error and "/help" in unknown.error
    missing = parse_line("/join")
    assert isinstance(missing, Command) and missing.error == "usage: /join ROOM"
    two = parse_line("/join a b")
    assert isinstance(two, Command) and two.error
    assert all(f"/{name}" in HELP for name in ("join", "leave", "rooms", "who", "quit", "help"))


# -- lines and records ----------------------------------------------------------------------


def test_event_lines() -> None:
    assert item_line(chat("hi")) == "[lobby] #7 bob: hi"
    assert item_line(chat("hi", replayed=True)) == "[lobby] #7 bob: hi (replayed)"
    joined = Event("user:joined", {"roomId": "lobby", "userId": "carol"}, room="lobby")
    assert item_line(joined) == "[lobby] * carol joined"
    typing = Event("typing:start", {"roomId": "lobby", "userId": "carol"}, room="lobby")
    assert item_line(typing) is None
    dm = Event("dm:message", {"text": "psst", "to": "alice"}, sender="bob", event_id=2)
    assert item_line(dm) == "[dm] #2 bob → alice: psst"
    # Not a room's event: said as a status line, not "[?] server:draining {…}".
    draining = Event("server:draining", {"retryAfter": 1.0, "reason": "draining"})
    assert item_line(draining) == "· the server is draining (going away): reconnecting"


def test_state_and_other_lines() -> None:
    lost = StateChanged(S.CONNECTED, S.RECONNECTING, 2.125, ConnectionLost(None))
    assert item_line(lost) == (
        "· connection lost (ConnectionLost: connection closed (no close frame)); "
        "reconnecting in 2.1 s"
    )
    failed = StateChanged(S.RECONNECTING, S.RECONNECTING, 0.04, ConnectionLost(1013))
    assert "cannot connect" in (item_line(failed) or "") and "0.04 s" in (item_line(failed) or "")
    closed = StateChanged(S.CONNECTING, S.CLOSED, None, Unauthorized("INVALID_TOKEN"))
    assert item_line(closed) == "· closed: Unauthorized: INVALID_TOKEN"
    assert item_line(StateChanged(S.RECOVERING, S.CONNECTED)) == "· connected"
    assert item_line(StateChanged(S.CONNECTING, S.RECOVERING)) is None
    gap = Gap("lobby", "epoch", 12, "e1", "e2", 1)
    assert item_line(gap) == "! [lobby] events after #12 are lost (epoch), resuming at #1"
    assert item_line(ErrorEvent("TOKEN_PROVIDER", "token provider failed")) == (
        "! TOKEN_PROVIDER: token provider failed"
    )
    change = QualityChanged(QualityLevel.GOOD, QualityLevel.POOR, snapshot(p50=0.4))
    assert item_line(change) == "· link quality good → poor (p50 400 ms, p95 -)"


def test_own_message_lines() -> None:
    assert pending_line("lobby", "hi", online=True) == "… pending  [lobby] hi"
    assert pending_line("lobby", "hi", online=False).endswith("(offline: queued)")
    ack = Ack("m1", "lobby", 12)
    assert ack_line(ack, "hi") == "✓ #12  [lobby] hi"
    assert "(duplicate)" in ack_line(Ack("m1", "lobby", 12, duplicate=True), "hi")
    assert failure_line("lobby", "hi", OutboxFull("outbox full")) == (
        "✗ OutboxFull: outbox full  [lobby] hi"
    )
    long = ack_line(ack, "word " * 40)
    assert long.endswith("…") and len(long) < 90


def test_records_are_one_json_line() -> None:
    record = item_record(chat("hi\nthere"))
    assert record == {
        "event": "chat:message",
        "room": "lobby",
        "from": "bob",
        "text": "hi\nthere",
        "eventId": 7,
        "replayed": False,
        "messageId": "m1",
    }
    line = json_line(record)
    assert "\n" not in line and json.loads(line) == record
    joined = item_record(Event("user:joined", {"roomId": "r", "userId": "c"}, room="r"))
    assert joined["from"] == "c" and joined["data"] == {"roomId": "r", "userId": "c"}
    state = item_record(
        StateChanged(S.CONNECTING, S.CLOSED, None, Unauthorized("bad"), "ws://a:1/ws")
    )
    assert state == {
        "event": "state",
        "old": "connecting",
        "new": "closed",
        "delay": None,
        "error": "Unauthorized: bad",
        "endpoint": "ws://a:1/ws",
    }
    assert item_record(ErrorEvent("X", "y")) == {"event": "error", "code": "X", "message": "y"}
    assert item_record(Gap("r", "retention", 3, None, None))["event"] == "gap"
    assert ack_record(Ack("m", "r", 4), "t", 1)["eventId"] == 4
    assert failure_record("r", "t", 2, OutboxFull("full"))["error"] == "OutboxFull"


# -- toolbar model --------------------------------------------------------------------------


def test_link_status_counts_down() -> None:
    link = LinkStatus()
    assert link.label(0.0) == "offline"
    link.update(StateChanged(S.IDLE, S.CONNECTING), 0.0)
    assert link.label(0.0) == "connecting…"
    link.update(StateChanged(S.CONNECTING, S.RECOVERING), 0.0)
    assert link.label(0.0) == "recovering"
    link.update(StateChanged(S.RECOVERING, S.CONNECTED), 0.0)
    assert link.label(0.0) == "connected"
    link.update(StateChanged(S.CONNECTED, S.RECONNECTING, 3.0, ConnectionLost(None)), 10.0)
    assert link.label(10.9) == "reconnecting in 2.1 s"
    assert link.label(12.5) == "reconnecting in 0.50 s"
    assert link.label(13.0) == "reconnecting…"
    link.update(StateChanged(S.RECONNECTING, S.RECONNECTING, 2.0, ConnectionLost(1013)), 13.0)
    assert link.label(13.0) == "offline · retry in 2.0 s"
    assert link.label(15.0) == "offline · connecting…"
    link.update(StateChanged(S.CONNECTED, S.CLOSED), 20.0)
    assert link.label(20.0) == "closed"


def test_toolbar_text() -> None:
    facts = ToolbarFacts("connected", snapshot(srtt=0.0123), 2, "lobby", "alice", [])
    assert toolbar_text(facts) == (
        " connected │ rtt 12 ms │ quality good │ queued 2 │ alice @ lobby"
    )
    p50_only = ToolbarFacts("connected", snapshot(p50=0.2), 0, None, None, [("ops", "bob")])
    text = toolbar_text(p50_only)
    assert "rtt 200 ms" in text and "(no room)" in text and "bob (ops) is typing…" in text
    two = ToolbarFacts("x", snapshot(), 0, "r", "a", [("r", "bob"), ("r", "carol")])
    assert "rtt -" in toolbar_text(two) and "bob, carol are typing…" in toolbar_text(two)
    on_b = ToolbarFacts("connected", snapshot(), 0, "r", "a", [], endpoint="127.0.0.1:8766")
    assert toolbar_text(on_b).startswith(" connected · 127.0.0.1:8766 │ rtt -")


def test_the_node_is_shown_only_for_several_urls() -> None:
    from rtclient import Client
    from rtclient.console.controller import node_of

    assert node_of(Client("ws://127.0.0.1:8765/ws")) is None
    both = Client(["ws://127.0.0.1:8765/ws?token=x", "ws://127.0.0.1:8766/ws"], url_order="given")
    assert node_of(both) == "127.0.0.1:8765"


def test_typing_tracker() -> None:
    tracker = TypingTracker(linger=6.0)
    start = Event("typing:start", {"roomId": "r", "userId": "bob"}, room="r")
    stop = Event("typing:stop", {"roomId": "r", "userId": "bob"}, room="r")
    assert tracker.update(start, 0.0) and tracker.typing(1.0) == [("r", "bob")]
    assert tracker.typing(6.5) == []
    tracker.update(start, 10.0)
    assert tracker.update(stop, 11.0) and tracker.typing(11.0) == []
    tracker.update(start, 20.0)
    message = Event("chat:message", {"roomId": "r", "text": "x"}, room="r", sender="bob")
    assert tracker.update(message, 21.0) and tracker.typing(21.0) == []


def test_typing_throttle() -> None:
    throttle = TypingThrottle(interval=2.0)
    assert throttle.should_send(0.0)
    assert not throttle.should_send(1.9)
    assert throttle.should_send(2.0)
    assert throttle.reset() and not throttle.reset()
    assert throttle.should_send(2.1)


def test_echo_filter_either_order() -> None:
    echoes = EchoFilter()
    echoes.sent()
    assert not echoes.admit(chat("mine", "alice", mid="a"), "alice")  # echo before the ack
    assert echoes.settled("a") == []
    echoes.sent()
    assert echoes.settled("b") == []
    assert not echoes.admit(chat("mine", "alice", mid="b"), "alice")  # echo after the ack
    assert echoes.admit(chat("theirs", "bob", mid="c"), "alice")
    assert echoes.admit(chat("old", "alice", mid="d", replayed=True), "alice")
    echoes.sent()
    other_terminal = chat("from my phone", "alice", mid="e")
    assert not echoes.admit(other_terminal, "alice")
    assert echoes.settled(None) == [other_terminal]  # nothing claims it: shown after all
    assert echoes.admit(chat("idle", "alice", mid="f"), "alice")


# -- tokens ---------------------------------------------------------------------------------


def test_http_base() -> None:
    assert http_base("ws://127.0.0.1:8765/ws") == "http://127.0.0.1:8765"
    assert http_base("wss://example.com/ws?x=1") == "https://example.com"
    assert http_base("http://h:1/socket.io/") == "http://h:1"
    with pytest.raises(UsageError):
        http_base("ftp://h")
    assert shown_url("ws://h/ws?token=SECRET") == "ws://h/ws"


def test_sign_token() -> None:
    token = sign_token(SECRET, "alice", ttl=60, roles=["admin"], now=1000.0)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "alice", "iat": 1000.0, "exp": 1060.0, "roles": ["admin"]}
    short = sign_token("short", "bob", ttl=60)  # a short secret is the server's choice
    assert jwt.decode(short, options={"verify_signature": False})["sub"] == "bob"


def _args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {
        "token": None,
        "token_cmd": None,
        "user": None,
        "admin_token": None,
        "secret": None,
        "ttl": 60.0,
        "roles": "",
    }
    return argparse.Namespace(**{**base, **kw})


def test_token_provider_choices(tmp_path: Path) -> None:
    url = "ws://127.0.0.1:1/ws"
    # No `rtclient serve` state file: the environment names one that does not exist (an
    # explicit env is read as it is, so the conftest's per-test variable is not in it).
    none = {"RTCLIENT_STATE_FILE": str(tmp_path / "absent.json")}
    assert token_provider(_args(token="T"), url, none) == "T"
    assert token_provider(_args(), url, {**none, "RTCLIENT_TOKEN": "E"}) == "E"
    assert isinstance(token_provider(_args(token_cmd="echo x"), url, none), CommandToken)
    signed = token_provider(_args(user="u", roles="a, b"), url, {**none, "RTCLIENT_SECRET": SECRET})
    assert isinstance(signed, SignedTokens) and signed.roles == ("a", "b")
    assert "secret" not in repr(signed).lower() or SECRET not in repr(signed)
    minted = token_provider(_args(user="u", admin_token="A"), url, none)
    assert isinstance(minted, HttpTokenProvider)
    assert minted.url == "http://127.0.0.1:1/admin/token" and "A" not in repr(minted)
    with pytest.raises(UsageError, match="--admin-token"):
        token_provider(_args(user="u"), url, none)
    with pytest.raises(UsageError, match="only one"):
        token_provider(_args(user="u", token="T"), url, none)
    with pytest.raises(UsageError, match="give --user"):
        token_provider(_args(), url, none)


async def test_command_token(tmp_path: object) -> None:
    provider = CommandToken("printf ' tok-1 \\n'")
    assert await provider.get() == "tok-1"
    await provider.prime()
    assert provider.runs == 2 and await provider.get() == "tok-1" and provider.runs == 2
    assert "tok" not in repr(provider)
    with pytest.raises(Exception, match="status 3"):
        await CommandToken("exit 3").get()
    with pytest.raises(Exception, match="printed nothing"):
        await CommandToken("true").get()


# -- ping figures ---------------------------------------------------------------------------


def test_summarize() -> None:
    summary = summarize([0.010, 0.020, None, 0.030, 0.040])
    assert (summary.sent, summary.answered, summary.lost) == (5, 4, 1)
    assert summary.minimum == 0.010 and summary.maximum == 0.040
    assert summary.p50 == pytest.approx(0.025) and summary.p95 == 0.040
    good = summarize([0.001] * 5)
    assert good.level is QualityLevel.GOOD
    assert good.lines()[1] == "rtt min/p50/p95/max = 1.00/1.00/1.00/1.00 ms, level good"
    nothing = summarize([None])
    assert nothing.answered == 0 and nothing.lines()[1] == "level poor"


def test_a_peer_cannot_send_escape_sequences_to_the_terminal() -> None:
    # Was: text, names and rooms from the server went to the terminal as they came
    # (patch_stdout(raw=True)): a peer could clear the screen, retitle the window,
    # write the clipboard (OSC 52) or forge a line such as "· connected as".
    hostile = "a\x1b[2J\x1b]52;c;ZXZpbA==\x07b\r\x9bz"
    for event in (
        Event("chat:message", {"text": hostile, "from": "ev\x1b[8mil"}, room="lob\x1bby"),
        Event("dm:message", {"text": hostile, "from": "x", "to": "y\x1b[1A"}),
        Event("user:joined", {"userId": "j\x1b[2K"}, room="r"),
    ):
        line = event_line(event)
        assert line is not None
        assert not any(ch in line for ch in "\x1b\x07\r\x9b"), repr(line)
    line = event_line(Event("chat:message", {"text": "two\nlines\tand a tab", "from": "u"}))
    assert line is not None and "two\nlines\tand a tab" in line

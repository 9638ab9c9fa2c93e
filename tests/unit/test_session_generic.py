"""Generic emits in the sans-I/O session: a hook's emits go ahead of the outbox."""

from __future__ import annotations

from rtclient.events import ConnectionState, ErrorEvent, Event
from rtclient.session import OWN_EVENT, Completed, Session

WELCOME = {"type": "connected", "payload": {"features": []}}


def welcomed_but_gated(session: Session) -> None:
    """A connection that the server accepted, with on_connect hooks still to run."""
    session.gate_on_welcome = True
    if session.state is ConnectionState.IDLE:
        session.connecting()
    session.connection_opened()
    session.receive(WELCOME, 0.0)
    assert session.state is ConnectionState.RECOVERING


def test_a_hook_emit_is_written_ahead_of_the_offline_emits() -> None:
    session = Session()
    session.connecting()
    offline = [session.emit("say", {"n": n}, 0.0, ack=False) for n in range(3)]
    assert session.data_to_send() == []  # offline: they wait
    welcomed_but_gated(session)
    hook = session.emit("join:room", {"roomId": "r"}, 0.0, ack=False, early=True)
    assert [e["type"] for e in session.data_to_send()] == ["join:room"]
    assert Completed(hook, None) in session.outcomes()  # done once handed to the writer
    session.open_gate(0.0)
    assert [e["payload"]["n"] for e in session.data_to_send()] == [0, 1, 2]
    assert {o.key for o in session.outcomes() if isinstance(o, Completed)} == set(offline)


def test_an_acked_hook_emit_is_a_request_of_this_connection() -> None:
    session = Session()
    welcomed_but_gated(session)
    key = session.emit("subscribe", {"topic": "t"}, 0.0, early=True)
    (sent,) = session.data_to_send()
    assert sent["type"] == "subscribe" and sent["id"] and sent["raw"] is True
    session.connection_lost(ConnectionError("cut"), 0.1)
    failed = [o for o in session.outcomes() if getattr(o, "key", None) == key]
    assert type(failed[0].error).__name__ == "ConnectionLost"  # type: ignore[attr-defined]


def test_early_means_nothing_once_live_or_while_offline() -> None:
    session = Session()
    session.connecting()
    session.emit("say", {"n": 0}, 0.0, ack=False, early=True)  # offline: queued
    assert session.data_to_send() == []
    session.connection_opened()
    session.receive(WELCOME, 0.0)  # no gate: live at once
    session.emit("say", {"n": 1}, 0.0, ack=False, early=True)
    assert [e["payload"]["n"] for e in session.data_to_send()] == [0, 1]


def test_a_generic_servers_own_events_keep_their_names() -> None:
    """An adapter's events (``raw``) named like our contract's frames are the server's
    own: delivered as they are, not read as an ack, a welcome or a logged event."""
    session = Session()
    welcomed_but_gated(session)
    session.outcomes()
    for name in ("chat:message", "dm:message", "ack", "connected", "sync:messages"):
        session.receive({"type": name, "payload": {"text": name}, "own": OWN_EVENT}, 0.0)
    error = {"code": "BAD", "message": "m"}
    session.receive({"type": "error", "payload": error, "own": OWN_EVENT}, 0.0)
    out = session.outcomes()
    events = [(o.name, o.data) for o in out if isinstance(o, Event)]
    assert events == [
        (name, {"text": name})
        for name in ("chat:message", "dm:message", "ack", "connected", "sync:messages")
    ]
    errors = [o for o in out if isinstance(o, ErrorEvent)]
    assert [(e.code, e.message) for e in errors] == [("BAD", "m")]  # a server's error event
    assert session.stats()["malformed"] == 0


def test_a_server_cannot_mark_its_frame_as_a_generic_event() -> None:
    """Only generic mode's transports mark an event as the server's own: a rooms server's
    ``"own"`` / ``"raw"`` key (anything a frame can hold) changes nothing."""
    session = Session()
    welcomed_but_gated(session)
    session.outcomes()
    for mark in ({"own": "OWN_EVENT"}, {"raw": True}):
        session.receive({"type": "chat:message", "payload": {"text": "x"}, **mark}, 0.0)
    assert not [o for o in session.outcomes() if isinstance(o, Event)]
    assert session.stats()["malformed"] == 2

"""The welcome read into a typed record, and what it implies (a pure function)."""

from __future__ import annotations

from rtclient.errors import RequestRejected
from rtclient.events import Gap
from rtclient.session import Failed, Session
from rtclient.welcome import NO_WELCOME, RECENT_OFFSETS, SocketIOResume, interpret_welcome


def test_a_full_welcome_is_read_into_fields() -> None:
    welcome = interpret_welcome(
        {
            "userId": "alice",
            "features": ["batch", "token:refresh", 7],
            "limits": {"maxMessageSize": 65536},
            "epoch": "e1",
        }
    )
    assert welcome.user_id == "alice"
    assert welcome.features == frozenset({"batch", "token:refresh"})
    assert welcome.refreshable
    assert welcome.max_message_size == 65536
    assert welcome.recovered is None and welcome.previous_pid is None
    assert welcome.payload["epoch"] == "e1"


def test_fields_of_the_wrong_type_count_as_absent() -> None:
    welcome = interpret_welcome(
        {
            "userId": 5,
            "features": "token:refresh",
            "limits": {"maxMessageSize": True},
            "recovered": "yes",
        }
    )
    assert welcome.user_id is None
    assert welcome.features == frozenset() and not welcome.refreshable
    assert welcome.max_message_size is None
    assert welcome.recovered is None


def test_a_socketio_session_not_recovered_is_a_gap_of_the_namespace() -> None:
    lost = interpret_welcome({"features": [], "recovered": False, "previousPid": "p1"})
    assert lost.session_gap("/chat") == Gap(
        room="/chat", reason="session", after_event_id=0, old_epoch="p1", new_epoch=None
    )
    kept = interpret_welcome({"recovered": True, "previousPid": "p1"})
    assert kept.session_gap("/chat") is None
    first = interpret_welcome({"recovered": False})  # nothing was asked to be resumed
    assert first.session_gap("/chat") is None


def test_the_session_reads_the_welcome_once() -> None:
    session = Session()
    assert session.welcome is NO_WELCOME
    session.connecting()
    session.connection_opened()
    session.receive(
        {"type": "connected", "payload": {"userId": "me", "limits": {"maxMessageSize": 200}}}, 0.0
    )
    assert session.welcomed
    assert session.welcome.user_id == "me"
    session.outcomes()
    message_id = session.send_direct("bob", "x" * 300, 0.0)  # live: no rooms to recover
    (failed,) = [o for o in session.outcomes() if isinstance(o, Failed)]
    assert failed.key == message_id
    assert isinstance(failed.error, RequestRejected) and failed.error.code == "MESSAGE_TOO_LARGE"


def test_the_resume_holder_starts_over_when_the_session_was_not_recovered() -> None:
    resume = SocketIOResume()
    resume.connected("p1", recovered=False)
    resume.received("o5")
    resume.connected("p1", recovered=True)
    assert (resume.pid, resume.offset) == ("p1", "o5")
    resume.connected("p2", recovered=False)
    assert (resume.pid, resume.offset) == ("p2", None)


def test_the_resume_holder_tells_a_repeated_offset_and_keeps_its_position() -> None:
    resume = SocketIOResume()
    resume.connected("p1", recovered=False)
    assert [resume.received(o) for o in ("b", "a", "c")] == [True, True, True]
    assert resume.received("a") is False  # equality only: "a" < "c" means nothing
    assert resume.offset == "c"  # a repeat does not move the resume position back
    resume.connected("p1", recovered=True)
    assert resume.received("c") is False  # the same session: still remembered
    resume.connected("p2", recovered=False)
    assert resume.received("c") is True  # a new session: offsets start over


def test_the_resume_holder_remembers_a_bounded_number_of_offsets() -> None:
    resume = SocketIOResume()
    for n in range(RECENT_OFFSETS + 1):
        assert resume.received(f"o{n}")
    assert len(resume._recent) == RECENT_OFFSETS
    assert resume.received("o0") is True  # the oldest was forgotten
    assert resume.received(f"o{RECENT_OFFSETS}") is False


def test_a_failed_attempt_gives_back_the_resume_position_and_offsets() -> None:
    resume = SocketIOResume()
    resume.connected("p1", recovered=False)
    assert resume.received("o0")
    resume.attempting()
    assert resume.received("o1") and resume.received("o2")  # a replay, then the loss
    resume.failed()
    assert (resume.pid, resume.offset) == ("p1", "o0")
    resume.attempting()
    assert resume.received("o1")  # the replay again: not a repeat
    assert not resume.received("o0")  # what was delivered before still is
    resume.connected("p1", recovered=True)
    assert resume.offset == "o1"

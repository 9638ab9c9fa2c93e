"""A Hypothesis state machine over the session core against a simple model.

Random sends, other users' posts, lost acks, duplicated and reordered frames,
sync pages out of order, with a hole or short of their head (once), disconnects,
reconnects and time passing. Whatever happens, once the network settles: every
message sent is in the server's log exactly once and acknowledged with its event id;
every client sees every event of its rooms exactly once, in order.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rtclient.events import Ack, ConnectionState, Event
from rtclient.session import Completed, Failed, Session

from .sim import SimServer

ROOMS = ("a", "b")
ACK_TIMEOUT = 1.0


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.session = Session(ack_timeout=ACK_TIMEOUT, max_in_flight=4, sync_page_size=2)
        self.server = SimServer(page_limit=2)
        self.sent: list[str] = []
        self.acks: dict[str, list[Ack]] = {}
        self.delivered: dict[str, list[int]] = {room: [] for room in ROOMS}
        self.session.connecting()
        self.server.open(self.session)
        for room in ROOMS:
            self.session.join(room, self.now)
        self.pump()

    def pump(self, limit: int | None = None) -> None:
        self.server.deliver(self.session, self.now, limit=limit)
        self.collect()

    def collect(self) -> None:
        for out in self.session.outcomes():
            if isinstance(out, Completed) and isinstance(out.result, Ack):
                self.acks.setdefault(out.key, []).append(out.result)
            elif isinstance(out, Failed) and out.key in self.sent:
                raise AssertionError(f"send {out.key} failed: {out.error!r}")
            elif isinstance(out, Event) and out.name == "chat:message":
                assert out.room is not None and out.event_id is not None
                self.delivered[out.room].append(out.event_id)

    @rule(room=st.sampled_from(ROOMS), text=st.text(max_size=5))
    def send(self, room: str, text: str) -> None:
        self.sent.append(self.session.send(room, text, self.now))
        self.server.take(self.session)

    @rule(room=st.sampled_from(ROOMS))
    def other_user_posts(self, room: str) -> None:
        self.server.post(room, "from someone else")

    @rule(n=st.integers(min_value=1, max_value=5))
    def deliver(self, n: int) -> None:
        self.pump(limit=n)

    @rule()
    def lose_next_ack(self) -> None:
        self.server.lose_acks += 1

    @rule()
    def next_sync_page_backwards(self) -> None:
        self.server.reverse_pages += 1

    @rule()
    def next_sync_page_with_a_hole(self) -> None:
        self.server.holey_pages = 1  # once: asked again, the server fills it

    @rule()
    def next_last_sync_page_short(self) -> None:
        self.server.short_pages = 1  # once: asked again, the server fills it

    @precondition(lambda self: bool(self.server.wire))
    @rule()
    def duplicate_next_frame(self) -> None:
        self.server.wire.insert(0, dict(self.server.wire[0]))

    @precondition(lambda self: len(self.server.wire) >= 2)
    @rule(i=st.integers(min_value=0, max_value=10))
    def reorder_two_frames(self, i: int) -> None:
        wire = self.server.wire
        i = i % (len(wire) - 1)
        wire[i], wire[i + 1] = wire[i + 1], wire[i]

    @precondition(lambda self: self.server.connected)
    @rule()
    def disconnect(self) -> None:
        self.server.drop()
        self.session.connection_lost(ConnectionError("dropped"), 0.01)
        self.collect()

    @precondition(lambda self: not self.server.connected)
    @rule()
    def reconnect(self) -> None:
        self.server.open(self.session)
        self.collect()

    @rule(dt=st.floats(min_value=0.1, max_value=2.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self.session.tick(self.now)
        self.server.take(self.session)
        self.collect()

    @invariant()
    def nothing_doubled_and_order_kept(self) -> None:
        for room, ids in self.delivered.items():
            assert ids == sorted(set(ids)), f"{room}: {ids}"
        for message_id, acks in self.acks.items():
            assert len(acks) == 1, f"{message_id} acked {len(acks)} times"

    def teardown(self) -> None:
        if not self.server.connected:
            self.reconnect()
        for _ in range(200):
            self.pump()
            if not len(self.session.outbox) and self.session.state is ConnectionState.CONNECTED:
                break
            self.now += ACK_TIMEOUT
            self.session.tick(self.now)
        self.pump()
        assert self.session.state is ConnectionState.CONNECTED
        # Nothing sent is lost or doubled, and each caller got the server's event id.
        log_ids = {
            e["messageId"]: (room, e["eventId"])
            for room, log in self.server.logs.items()
            for e in log
        }
        committed = [e["messageId"] for log in self.server.logs.values() for e in log]
        for message_id in self.sent:
            assert committed.count(message_id) == 1, (
                f"{message_id} committed {committed.count(message_id)}x"
            )
            (ack,) = self.acks[message_id]
            assert (ack.room, ack.event_id) == log_ids[message_id]
        # Nothing received is lost or doubled: each room's whole log, in order.
        for room in ROOMS:
            expected = [e["eventId"] for e in self.server.logs.get(room, [])]
            assert self.delivered[room] == expected, room


SessionMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSessionModel = SessionMachine.TestCase

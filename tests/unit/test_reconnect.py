"""Unit tests for rtclient.reconnect: the reconnect decisions, with time passed in."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtclient.backoff import Backoff
from rtclient.errors import (
    ConnectionFailed,
    ConnectionLost,
    Forbidden,
    HandshakeRejected,
    ProtocolError,
    TokenExpired,
    TransportError,
    Unauthorized,
)
from rtclient.failures import Action, classify
from rtclient.hints import parse_delay
from rtclient.reconnect import Decision, NoWelcome, ReconnectPolicy, Step

HINTS = st.one_of(
    st.none(),
    st.sampled_from(["0", "1", "86400", "999999", "inf", "-5", "nan", "1e999", "soon"]),
    st.floats(min_value=0, max_value=1e9).map(lambda f: f"{f:.3f}"),
)


@st.composite
def failures(draw: st.DrawFn) -> BaseException:
    hint = draw(HINTS)
    reason = "" if hint is None else f"retryAfter={hint}"
    kind = draw(st.sampled_from(["close", "status", "network", "nowelcome", "token"]))
    if kind == "close":
        code = draw(st.sampled_from([None, 1000, 1001, 1006, 1011, 1012, 1013, 4001, 4002]))
        if code == 1012 and draw(st.booleans()):
            reason = "draining"  # a drain with no hint
        return ConnectionLost(code, reason)
    if kind == "status":
        status = draw(st.sampled_from([429, 503, 500, 408, 401]))
        return HandshakeRejected(status, retry_after=parse_delay(hint, now=0.0))
    if kind == "nowelcome":
        return NoWelcome("no welcome from the server in time")
    if kind == "token":
        return ProviderFailed("the token provider raised")
    return TransportError("connection refused")


class ProviderFailed(Exception):
    """Stands for a token provider that raised before the attempt (``token_failed``)."""


backoffs = st.builds(
    Backoff,
    base=st.floats(min_value=0.001, max_value=5.0),
    cap=st.floats(min_value=5.0, max_value=120.0),
    jitter=st.sampled_from(["full", "equal", "none"]),
    first_delay=st.floats(min_value=0.0, max_value=1.0),
    stable_after=st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=30.0)),
)


class Extreme(random.Random):
    """A jitter source that always draws one end of the range (``high`` or not)."""

    def __init__(self, *, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


# The jitter: the lowest draw (the floor must hold), the highest (the cap must hold),
# or seeded draws. Random jitter is rarely near 0, so only the lowest can catch a
# missing floor.
jitters = st.one_of(
    st.builds(Extreme, high=st.booleans()),
    st.integers(min_value=0, max_value=2**16).map(random.Random),
)


def policy_with(backoff: Backoff, jitter: random.Random, **options: Any) -> ReconnectPolicy:
    policy = ReconnectPolicy(backoff, **options)
    policy._schedule._rng = jitter  # the schedule's generator is private; drive it here
    return policy


outcomes = st.lists(
    st.tuples(failures(), st.booleans(), st.floats(min_value=0.0, max_value=1.0)),
    min_size=1,
    max_size=80,
)


def run(
    policy: ReconnectPolicy, steps: list[tuple[BaseException, bool, float]], *, stable: bool
) -> tuple[list[float], list[Decision]]:
    """Feed ``steps`` (failure, welcomed, share of stable_after the link stayed up).

    Returns when each attempt started and every decision; stops at the first STOP.
    """
    now, attempts, decisions = 0.0, [], []
    for failure, welcomed, up in steps:
        attempts.append(now)
        if isinstance(failure, ProviderFailed):
            decision = policy.token_failed(now)  # no connection was attempted
        else:
            if welcomed:
                policy.connected(now)
                # Without ``stable``, a welcomed link drops before it is stable.
                now += policy.stable_after * (up + 1.0 if stable else up * 0.99)
            decision = policy.decide(failure, welcomed=welcomed, now=now)
        decisions.append(decision)
        if decision.step is Step.STOP:
            break
        now += decision.delay
    return attempts, decisions


endpoint_counts = st.integers(min_value=1, max_value=5)
"""How many URLs the client was given (1: every rule as before lists existed)."""


@settings(max_examples=300, deadline=None)
@given(
    backoffs,
    jitters,
    st.floats(min_value=0.0, max_value=600.0),
    outcomes,
    st.booleans(),
    endpoint_counts,
)
def test_no_delay_exceeds_the_cap(
    backoff: Backoff,
    jitter: random.Random,
    max_server_delay: float,
    steps: list[tuple[BaseException, bool, float]],
    stable: bool,
    endpoints: int,
) -> None:
    policy = policy_with(
        backoff, jitter, max_server_delay=max_server_delay, refreshable=True, endpoints=endpoints
    )
    _, decisions = run(policy, steps, stable=stable)
    for decision in decisions:
        assert math.isfinite(decision.delay)
        assert 0 <= decision.delay <= max(backoff.cap, max_server_delay, backoff.base / 10)
        assert decision.delay <= policy.max_delay
        assert (decision.step is Step.STOP) == (decision.error is not None)
        assert 0 <= decision.endpoint < endpoints


@settings(max_examples=300, deadline=None)
@given(
    backoffs,
    jitters,
    outcomes,
    st.integers(min_value=0, max_value=10),
    st.booleans(),
    st.sampled_from([None, 3]),
    endpoint_counts,
)
def test_without_a_stable_connection_attempts_in_any_window_are_bounded(
    backoff: Backoff,
    jitter: random.Random,
    steps: list[tuple[BaseException, bool, float]],
    floors: int,
    refreshable: bool,
    max_unwelcomed: int | None,
    endpoints: int,
) -> None:
    policy = policy_with(
        backoff,
        jitter,
        refreshable=refreshable,
        max_unwelcomed=max_unwelcomed,
        endpoints=endpoints,
    )
    attempts, _ = run(policy, steps, stable=False)
    # Zero-delay retries: the first token refresh and the one 4001 refresh of a
    # series, and the moves to the untried URLs of a round (at most endpoints - 1
    # between two waits); every other retry waits at least min_delay. A window of
    # (floors + 0.5) min_delays holds at most ``floors`` waits. With one URL: 3 + floors.
    window = (floors + 0.5) * policy.min_delay
    for i, start in enumerate(attempts):
        within = [t for t in attempts[i:] if t <= start + window]
        assert len(within) <= 2 + (floors + 1) * endpoints


@settings(max_examples=300, deadline=None)
@given(backoffs, outcomes, st.booleans(), st.sampled_from([None, 3]), endpoint_counts)
def test_the_floor_holds_when_the_jitter_draws_zero(
    backoff: Backoff,
    steps: list[tuple[BaseException, bool, float]],
    refreshable: bool,
    max_unwelcomed: int | None,
    endpoints: int,
) -> None:
    full = dataclasses.replace(backoff, jitter="full")
    policy = policy_with(
        full,
        Extreme(high=False),
        refreshable=refreshable,
        max_unwelcomed=max_unwelcomed,
        endpoints=endpoints,
    )
    _, decisions = run(policy, steps, stable=False)
    retries = [d.delay for d in decisions if d.step is not Step.STOP]
    below = [delay < policy.min_delay for delay in retries]
    if endpoints == 1:
        # Below the floor: the first token refresh and the one 4001 refresh, nothing else.
        assert sum(below) <= 2
    # With a list, add the moves to a round's untried URLs: never more in a row.
    longest = run_ = 0
    for low in below:
        run_ = run_ + 1 if low else 0
        longest = max(longest, run_)
    assert longest <= endpoints + 1


@settings(max_examples=300, deadline=None)
@given(backoffs, jitters, outcomes, st.integers(min_value=2, max_value=5))
def test_a_url_that_failed_is_left_for_the_next_one(
    backoff: Backoff,
    jitter: random.Random,
    steps: list[tuple[BaseException, bool, float]],
    endpoints: int,
) -> None:
    """Without a stable link, every retry after a failure goes to the next URL in turn
    (a dead node costs one attempt, and each round tries every URL); a token refresh
    stays (the token is the same for every URL)."""
    policy = policy_with(backoff, jitter, refreshable=True, endpoints=endpoints)
    was = policy.current
    now = 0.0
    for failure, welcomed, up in steps:
        if isinstance(failure, ProviderFailed):
            decision = policy.token_failed(now)
            assert decision.step is Step.STOP or decision.endpoint == was
        else:
            if welcomed:
                policy.connected(now)
                now += policy.stable_after * up * 0.99
            decision = policy.decide(failure, welcomed=welcomed, now=now)
            if decision.step is Step.RETRY:
                assert decision.endpoint == (was + 1) % endpoints
            elif decision.step is Step.REFRESH:
                assert decision.endpoint == was
        if decision.step is Step.STOP:
            break
        was = decision.endpoint
        now += decision.delay


def test_a_dead_cluster_backs_off_once_per_round() -> None:
    policy = ReconnectPolicy(Backoff(base=1.0, cap=8.0, jitter="none"), endpoints=3)
    decisions = []
    now = 0.0
    for _ in range(12):
        decision = policy.decide(TransportError("refused"), welcomed=False, now=now)
        decisions.append((decision.endpoint, decision.delay))
        now += decision.delay
    assert decisions == [
        (1, 0.0), (2, 0.0), (0, 1.0),
        (1, 0.0), (2, 0.0), (0, 2.0),
        (1, 0.0), (2, 0.0), (0, 4.0),
        (1, 0.0), (2, 0.0), (0, 8.0),
    ]  # fmt: skip


def test_max_attempts_counts_rounds_over_the_list() -> None:
    policy = ReconnectPolicy(Backoff(max_attempts=2, jitter="none"), endpoints=2)
    steps = [
        policy.decide(TransportError("refused"), welcomed=False, now=float(i)).step
        for i in range(4)
    ]
    assert steps == [Step.RETRY, Step.RETRY, Step.RETRY, Step.STOP]


def test_a_stable_link_that_drops_is_retried_on_the_same_url_first() -> None:
    policy = ReconnectPolicy(Backoff(first_delay=0.05, stable_after=1.0), endpoints=3)
    policy.current = 1
    policy.connected(0.0)
    again = policy.decide(ConnectionLost(1006), welcomed=True, now=5.0)
    assert again.step is Step.RETRY and again.endpoint == 1 and again.delay <= 0.05
    moved = policy.decide(TransportError("refused"), welcomed=False, now=5.1)
    assert (moved.endpoint, moved.delay) == (2, 0.0)  # that node is gone: one attempt


@pytest.mark.parametrize("hint", ["", "retryAfter=5"])
def test_a_drain_after_a_stable_link_moves_on_at_once(hint: str) -> None:
    policy = ReconnectPolicy(Backoff(base=1.0, jitter="none", stable_after=1.0), endpoints=2)
    policy.connected(0.0)
    drained = policy.decide(ConnectionLost(1012, hint), welcomed=True, now=5.0)
    assert (drained.step, drained.endpoint, drained.delay) == (Step.RETRY, 1, 0.0)
    # The drained URL counts as tried: if the other fails too, the backoff applies.
    failed = policy.decide(TransportError("refused"), welcomed=False, now=5.0)
    assert (failed.endpoint, failed.delay) == (0, 1.0)


def test_a_drain_with_one_url_waits_the_capped_hint_then_comes_back() -> None:
    policy = ReconnectPolicy(
        Backoff(base=1.0, jitter="none", first_delay=0.0, stable_after=1.0), max_server_delay=3.0
    )
    policy.connected(0.0)
    decision = policy.decide(ConnectionLost(1012, "retryAfter=120"), welcomed=True, now=5.0)
    assert (decision.endpoint, decision.delay) == (0, 3.0)


def test_welcome_then_1012_every_time_backs_off_across_the_list() -> None:
    """A hostile cluster that welcomes and drains at once: no free moves for ever."""
    policy = ReconnectPolicy(
        Backoff(base=1.0, cap=4.0, jitter="none", stable_after=1.0), endpoints=2
    )
    now, delays = 0.0, []
    for _ in range(6):
        policy.connected(now)
        decision = policy.decide(ConnectionLost(1012, ""), welcomed=True, now=now + 0.01)
        delays.append(decision.delay)
        now += 0.01 + decision.delay
    assert delays == [0.0, 1.0, 0.0, 2.0, 0.0, 4.0]


def test_welcome_then_4002_refreshes_once_at_once_then_backs_off() -> None:
    policy = ReconnectPolicy(Backoff(base=1.0, cap=8.0, jitter="none", stable_after=10.0))
    now, delays = 0.0, []
    for _ in range(6):
        policy.connected(now)
        decision = policy.decide(ConnectionLost(4002, "expired"), welcomed=True, now=now + 0.01)
        assert decision.step is Step.REFRESH
        delays.append(decision.delay)
        now += 0.01 + decision.delay
    assert delays == [0.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # the backoff series goes on (1 s: first)


def test_4002_before_any_welcome_ends_in_token_expired() -> None:
    policy = ReconnectPolicy(Backoff(), max_token_refreshes=2)
    steps = [policy.decide(ConnectionLost(4002, ""), welcomed=False, now=i) for i in range(3)]
    assert [s.step for s in steps] == [Step.REFRESH, Step.REFRESH, Step.STOP]
    assert steps[0].delay == 0.0 and steps[1].delay > 0
    assert isinstance(steps[-1].error, TokenExpired)


def test_a_stable_connection_makes_the_next_refresh_immediate_again() -> None:
    policy = ReconnectPolicy(Backoff(stable_after=1.0), max_token_refreshes=1)
    for start in (0.0, 10.0, 20.0):
        policy.connected(start)
        decision = policy.decide(ConnectionLost(4002, ""), welcomed=True, now=start + 5)
        assert decision == Decision(Step.REFRESH, 0.0)


@pytest.mark.parametrize(
    "failure",
    [
        HandshakeRejected(429, retry_after=999999.0),
        HandshakeRejected(503, retry_after=86400.0),
        ConnectionLost(1013, "retryAfter=86400"),
    ],
)
def test_server_hints_are_capped(failure: BaseException) -> None:
    policy = ReconnectPolicy(Backoff(base=0.1, cap=1.0), max_server_delay=42.0)
    assert policy.decide(failure, welcomed=False, now=0.0) == Decision(Step.RETRY, 42.0)


def test_a_hint_is_a_floor_it_never_shortens_the_backoff() -> None:
    policy = ReconnectPolicy(Backoff(base=1.0, cap=30.0, jitter="none"))
    delays = [
        policy.decide(HandshakeRejected(503, retry_after=hint), welcomed=False, now=t).delay
        for t, hint in enumerate([5.0, 0.5, 100.0])
    ]
    assert delays == [5.0, 2.0, 60.0]  # raises the 1 s window, not the 2 s one; capped


def test_an_unreadable_hint_leaves_the_backoff() -> None:
    policy = ReconnectPolicy(Backoff(base=0.1, cap=1.0, jitter="none"))
    decision = policy.decide(ConnectionLost(1013, "retryAfter=inf"), welcomed=False, now=0.0)
    assert decision == Decision(Step.RETRY, 0.1)


def test_4001_with_a_refreshable_provider_refreshes_once() -> None:
    policy = ReconnectPolicy(Backoff(), refreshable=True)
    first = policy.decide(ConnectionLost(4001, "bad signature"), welcomed=False, now=0.0)
    assert first == Decision(Step.REFRESH, 0.0)
    second = policy.decide(ConnectionLost(4001, "bad signature"), welcomed=False, now=0.1)
    assert second.step is Step.STOP and isinstance(second.error, Unauthorized)


def test_4001_with_a_fixed_token_is_fatal_at_once() -> None:
    policy = ReconnectPolicy(Backoff(), refreshable=False)
    decision = policy.decide(HandshakeRejected(401), welcomed=False, now=0.0)
    assert decision.step is Step.STOP and isinstance(decision.error, Unauthorized)


def test_connections_without_a_welcome_end_in_a_protocol_error_naming_generic() -> None:
    policy = ReconnectPolicy(Backoff(), max_unwelcomed=3)
    steps = [policy.decide(NoWelcome("x"), welcomed=False, now=float(i)) for i in range(3)]
    assert [s.step for s in steps] == [Step.RETRY, Step.RETRY, Step.STOP]
    assert isinstance(steps[-1].error, ProtocolError)
    assert 'protocol="generic"' in str(steps[-1].error)


def test_only_the_welcome_less_connections_that_count_stop_and_with_their_advice() -> None:
    """Generic mode on a raw WebSocket: a silent server may be stalled (retried for
    ever); one that sent frames but no greeting speaks another envelope (fatal)."""
    policy = ReconnectPolicy(Backoff(), max_unwelcomed=2)
    silent = NoWelcome("nothing", counts=False)
    assert all(
        policy.decide(silent, welcomed=False, now=float(i)).step is Step.RETRY for i in range(5)
    )
    foreign = NoWelcome("frames", advice="use JsonEnvelope(greeting=None)")
    assert policy.decide(foreign, welcomed=False, now=5.0).step is Step.RETRY
    stop = policy.decide(foreign, welcomed=False, now=6.0)
    assert stop.step is Step.STOP and isinstance(stop.error, ProtocolError)
    assert "greeting=None" in str(stop.error) and "rooms" not in str(stop.error)


def test_a_welcome_resets_the_count_of_welcome_less_connections() -> None:
    policy = ReconnectPolicy(Backoff(), max_unwelcomed=2)
    assert policy.decide(NoWelcome("x"), welcomed=False, now=0.0).step is Step.RETRY
    policy.connected(1.0)
    assert policy.decide(ConnectionLost(1006), welcomed=True, now=1.5).step is Step.RETRY
    assert policy.decide(NoWelcome("x"), welcomed=False, now=2.0).step is Step.RETRY


def test_token_provider_failures_give_up_with_max_attempts() -> None:
    policy = ReconnectPolicy(Backoff(max_attempts=2))
    assert policy.token_failed(0.0).step is Step.RETRY
    decision = policy.token_failed(1.0)
    assert decision.step is Step.STOP and isinstance(decision.error, ConnectionFailed)


def test_max_server_delay_must_be_finite() -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(max_server_delay=math.inf)
    with pytest.raises(ValueError):
        ReconnectPolicy(max_server_delay=-1.0)


@pytest.mark.parametrize("code", [4002, 1000])
def test_stable_after_0_gives_no_zero_delay_loop(code: int) -> None:
    backoff = Backoff(base=1.0, jitter="full", first_delay=0.0, stable_after=0.0)
    policy = policy_with(backoff, Extreme(high=False), refreshable=True)
    delays = []
    for i in range(5):  # welcomed, then closed at the same instant
        policy.connected(float(i))
        delays.append(policy.decide(ConnectionLost(code, ""), welcomed=True, now=float(i)).delay)
    assert sum(delay < policy.min_delay for delay in delays) <= 1


def test_a_link_shorter_than_the_floor_does_not_reset_the_series() -> None:
    policy = ReconnectPolicy(Backoff(base=1.0, cap=8.0, jitter="none", stable_after=0.0))
    now, delays = 0.0, []
    for _ in range(4):  # up 0.05 s each time: past stable_after, not past min_delay
        policy.connected(now)
        delay = policy.decide(ConnectionLost(1000, ""), welcomed=True, now=now + 0.05).delay
        delays.append(delay)
        now += 0.05 + delay
    assert delays == [1.0, 2.0, 4.0, 8.0]


REFUSALS = [
    ConnectionLost(4001, "bad signature"),
    ConnectionLost(4003, "banned"),
    HandshakeRejected(401),
    HandshakeRejected(403),
    ConnectionLost(1002, "protocol error"),
]


@st.composite
def refusals_and_failures(draw: st.DrawFn) -> BaseException:
    """A fatal answer half of the time, else any failure (retryable, 4002, 1012, …)."""
    if draw(st.booleans()):
        return draw(st.sampled_from(REFUSALS))
    return draw(failures())


mixed_outcomes = st.lists(
    st.tuples(refusals_and_failures(), st.booleans(), st.floats(min_value=0.0, max_value=1.0)),
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(backoffs, jitters, mixed_outcomes, st.booleans(), endpoint_counts)
def test_refusals_and_failures_never_give_more_than_endpoints_minus_1_moves_in_a_row(
    backoff: Backoff,
    jitter: random.Random,
    steps: list[tuple[BaseException, bool, float]],
    refreshable: bool,
    endpoints: int,
) -> None:
    """Among decisions with no wait between them, at most ``endpoints - 1`` move to
    another URL: refusals move on like failures, inside the round's budget."""
    policy = policy_with(backoff, jitter, refreshable=refreshable, endpoints=endpoints)
    _, decisions = run(policy, steps, stable=False)
    was, moves = 0, 0
    for decision in decisions:
        if decision.step is Step.STOP:
            break
        if decision.delay > 0:
            moves = 0
        elif decision.endpoint != was:
            moves += 1
            assert moves <= endpoints - 1
        was = decision.endpoint


@settings(max_examples=300, deadline=None)
@given(backoffs, jitters, mixed_outcomes, st.booleans(), st.booleans(), endpoint_counts)
def test_the_client_stops_once_each_url_refused_since_the_last_welcome(
    backoff: Backoff,
    jitter: random.Random,
    steps: list[tuple[BaseException, bool, float]],
    stable: bool,
    refreshable: bool,
    endpoints: int,
) -> None:
    """A model of the rule: the URLs that answered fatally since the last welcomed link
    that ended retryably. The policy stops with the refusal's error exactly when that
    set holds every URL (one URL: at the first refusal), and never stops on a refusal
    before; so with no welcome it stops within one round of refusals."""
    policy = policy_with(backoff, jitter, refreshable=refreshable, endpoints=endpoints)
    refused: set[int] = set()
    at = policy.current
    refreshed = False  # the one immediate 4001 refresh of a refreshable provider
    now = 0.0
    for failure, welcomed, up in steps:
        if isinstance(failure, ProviderFailed):
            decision = policy.token_failed(now)
            if decision.step is Step.STOP:
                break
            now += decision.delay
            continue
        if welcomed:
            policy.connected(now)
            since, now = now, now + policy.stable_after * (up + 1.0 if stable else up * 0.99)
            if now - since >= policy.stable_after:
                refreshed = False  # a stable link gives the 4001 refresh back
        verdict = classify(failure)
        fatal = verdict.action is Action.FATAL
        decision = policy.decide(failure, welcomed=welcomed, now=now)
        if fatal and refreshable and not refreshed and isinstance(verdict.error, Unauthorized):
            refreshed = True  # 4001/401: one forced refresh, on the same URL
            assert decision == Decision(Step.REFRESH, 0.0, endpoint=at)
        elif fatal:
            refused.add(at)
            if len(refused) == endpoints:
                assert decision.step is Step.STOP
                assert isinstance(decision.error, (Unauthorized, Forbidden, ProtocolError))
                break
            assert decision.step is Step.RETRY and decision.endpoint == (at + 1) % endpoints
        elif welcomed and decision.step is not Step.STOP:
            refused.clear()
        if decision.step is Step.STOP:
            break
        at = decision.endpoint
        now += decision.delay


def test_a_refusal_with_one_url_is_fatal_at_once() -> None:
    policy = ReconnectPolicy(Backoff(), endpoints=1)
    decision = policy.decide(ConnectionLost(4003, "banned"), welcomed=False, now=0.0)
    assert decision.step is Step.STOP and isinstance(decision.error, Forbidden)


@pytest.mark.parametrize("refusal", REFUSALS, ids=repr)
def test_a_refusal_moves_to_the_next_url_and_all_refusing_stops(refusal: BaseException) -> None:
    policy = ReconnectPolicy(Backoff(base=1.0, jitter="none"), endpoints=3)
    first = policy.decide(refusal, welcomed=False, now=0.0)
    assert first == Decision(Step.RETRY, 0.0, endpoint=1)
    second = policy.decide(refusal, welcomed=False, now=0.0)
    assert second == Decision(Step.RETRY, 0.0, endpoint=2)
    last = policy.decide(refusal, welcomed=False, now=0.0)
    assert last.step is Step.STOP
    assert type(last.error) is type(classify(refusal).error)


def test_a_refusing_node_among_dead_ones_is_retried_under_the_backoff() -> None:
    policy = ReconnectPolicy(Backoff(base=1.0, jitter="none"), endpoints=2)
    refused = HandshakeRejected(401)
    assert policy.decide(refused, welcomed=False, now=0.0) == Decision(Step.RETRY, 0.0, endpoint=1)
    down = TransportError("connection refused")
    assert policy.decide(down, welcomed=False, now=0.0) == Decision(Step.RETRY, 1.0, endpoint=0)
    assert policy.decide(refused, welcomed=False, now=1.0) == Decision(Step.RETRY, 0.0, endpoint=1)
    # The second node answers at last, with a refusal too: each URL refused, no welcome.
    last = policy.decide(HandshakeRejected(403), welcomed=False, now=1.0)
    assert last.step is Step.STOP and isinstance(last.error, Forbidden)


def test_a_welcomed_link_that_ends_retryably_clears_the_refusals() -> None:
    policy = ReconnectPolicy(Backoff(base=1.0, jitter="none"), endpoints=2)
    assert policy.decide(HandshakeRejected(401), welcomed=False, now=0.0).endpoint == 1
    policy.connected(0.0)
    assert policy.decide(ConnectionLost(1006, ""), welcomed=True, now=0.5).endpoint == 0
    # Node 0 refuses again: not every URL refused since the welcome, so move on.
    assert policy.decide(HandshakeRejected(401), welcomed=False, now=1.5).step is Step.RETRY


def test_welcomed_then_refused_is_a_refusal_not_a_welcome() -> None:
    """A node that welcomes and closes 4003 at once, on every URL: it stops after a round."""
    policy = ReconnectPolicy(Backoff(base=1.0, jitter="none"), endpoints=2)
    policy.connected(0.0)
    first = policy.decide(ConnectionLost(4003, "banned"), welcomed=True, now=0.0)
    assert first == Decision(Step.RETRY, 0.0, endpoint=1)
    policy.connected(0.0)
    last = policy.decide(ConnectionLost(4003, "banned"), welcomed=True, now=0.0)
    assert last.step is Step.STOP and isinstance(last.error, Forbidden)


def test_4001_with_several_urls_refreshes_once_then_moves_on() -> None:
    policy = ReconnectPolicy(Backoff(base=1.0, jitter="none"), refreshable=True, endpoints=2)
    bad = ConnectionLost(4001, "bad signature")
    assert policy.decide(bad, welcomed=False, now=0.0) == Decision(Step.REFRESH, 0.0, endpoint=0)
    assert policy.decide(bad, welcomed=False, now=0.0) == Decision(Step.RETRY, 0.0, endpoint=1)
    last = policy.decide(bad, welcomed=False, now=0.0)
    assert last.step is Step.STOP and isinstance(last.error, Unauthorized)

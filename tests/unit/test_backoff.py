"""Unit tests for rtclient.backoff: the reconnect schedule (no sleeping, time passed in)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtclient.backoff import Backoff

REL = 1e-9  # float rounding slack of random.uniform(a, b) = a + (b - a) * random()


def ceiling(policy: Backoff, n: int) -> float:
    """The n-th failure's window ceiling: min(cap, base * 2 ** (n - 1))."""
    if n - 1 > 1100:  # 2.0 ** 1100 overflows; the cap applies long before
        return policy.cap
    return min(policy.cap, policy.base * 2.0 ** (n - 1))


def delays(policy: Backoff, n: int) -> list[float]:
    schedule = policy.schedule()
    out = []
    for i in range(n):
        delay = schedule.failure(float(i))
        assert delay is not None
        out.append(delay)
    return out


policies = st.builds(
    lambda base, factor, seed: (base, base * factor, seed),
    st.floats(min_value=0.001, max_value=10.0),
    st.floats(min_value=1.0, max_value=1000.0),
    st.integers(min_value=0, max_value=2**32),
)


# -- jitter bounds -----------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(policies, st.integers(min_value=1, max_value=40))
def test_full_jitter_within_zero_and_ceiling(params: tuple[float, float, int], n: int) -> None:
    base, cap, seed = params
    policy = Backoff(base=base, cap=cap, jitter="full", seed=seed)
    for i, delay in enumerate(delays(policy, n), start=1):
        assert 0.0 <= delay <= ceiling(policy, i) * (1 + REL)
        assert delay <= cap * (1 + REL)


@settings(max_examples=150, deadline=None)
@given(policies, st.integers(min_value=1, max_value=40))
def test_equal_jitter_within_half_ceiling_and_ceiling(
    params: tuple[float, float, int], n: int
) -> None:
    base, cap, seed = params
    policy = Backoff(base=base, cap=cap, jitter="equal", seed=seed)
    for i, delay in enumerate(delays(policy, n), start=1):
        c = ceiling(policy, i)
        assert c / 2 * (1 - REL) <= delay <= c * (1 + REL)
        assert delay <= cap * (1 + REL)


@settings(max_examples=100, deadline=None)
@given(policies, st.integers(min_value=1, max_value=40))
def test_no_jitter_is_exactly_the_ceiling(params: tuple[float, float, int], n: int) -> None:
    base, cap, seed = params
    policy = Backoff(base=base, cap=cap, jitter="none", seed=seed)
    got = delays(policy, n)
    assert got == pytest.approx([ceiling(policy, i) for i in range(1, n + 1)], rel=REL)


def test_no_jitter_doubles_from_base_up_to_cap() -> None:
    policy = Backoff(base=0.5, cap=10.0, jitter="none")
    assert delays(policy, 8) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_cap_holds_after_very_many_failures() -> None:
    policy = Backoff(base=1.0, cap=30.0, jitter="none")
    schedule = policy.schedule()
    for i in range(3000):
        delay = schedule.failure(float(i))
        assert delay is not None and delay <= 30.0
    assert delay == 30.0


# -- spread and reproducibility ------------------------------------------------------


def test_full_jitter_spreads_over_the_whole_window() -> None:
    policy = Backoff(base=8.0, cap=8.0, jitter="full", seed=1234)  # ceiling is always 8
    got = delays(policy, 1000)
    assert len(set(got)) > 990
    assert min(got) < 0.1 * 8.0
    assert max(got) > 0.9 * 8.0
    assert 3.0 < sum(got) / len(got) < 5.0  # uniform: mean near 4


def test_equal_jitter_spreads_over_the_upper_half() -> None:
    policy = Backoff(base=8.0, cap=8.0, jitter="equal", seed=1234)
    got = delays(policy, 1000)
    assert len(set(got)) > 990
    assert min(got) < 4.0 + 0.1 * 4.0
    assert max(got) > 4.0 + 0.9 * 4.0


def test_same_seed_same_sequence() -> None:
    policy = Backoff(seed=42)
    assert delays(policy, 50) == delays(policy, 50)
    assert delays(Backoff(seed=42), 50) == delays(Backoff(seed=42), 50)


def test_different_seeds_differ() -> None:
    assert delays(Backoff(seed=1), 20) != delays(Backoff(seed=2), 20)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_seeded_schedules_are_reproducible_including_stable_resets(seed: int) -> None:
    def run() -> list[float | None]:
        schedule = Backoff(seed=seed, stable_after=5.0, first_delay=0.1).schedule()
        out = [schedule.failure(0.0), schedule.failure(1.0)]
        schedule.connected(2.0)
        out.append(schedule.disconnected(20.0))
        out.append(schedule.failure(21.0))
        return out

    assert run() == run()


# -- stable connections ---------------------------------------------------------------


def test_drop_after_stable_connection_gives_short_delay_and_resets_series() -> None:
    policy = Backoff(base=1.0, cap=60.0, jitter="none", first_delay=0.05, stable_after=10.0)
    schedule = policy.schedule()
    for i in range(5):
        schedule.failure(float(i))
    assert schedule.failures == 5
    schedule.connected(100.0)
    delay = schedule.disconnected(110.0)  # up exactly stable_after
    assert delay is not None and 0.0 <= delay <= 0.05
    assert schedule.failures == 0
    assert schedule.failure(110.1) == 1.0  # back to the base window
    assert schedule.failure(111.2) == 2.0


def test_stable_drop_delay_is_spread_within_first_delay() -> None:
    schedule = Backoff(first_delay=0.05, stable_after=1.0, seed=7).schedule()
    got = []
    for i in range(500):
        schedule.connected(10.0 * i)
        delay = schedule.disconnected(10.0 * i + 5.0)
        assert delay is not None
        got.append(delay)
    assert all(0.0 <= d <= 0.05 for d in got)
    assert min(got) < 0.005
    assert max(got) > 0.045


def test_full_jitter_window_restarts_at_base_after_stable_drop() -> None:
    policy = Backoff(base=1.0, cap=60.0, jitter="full", stable_after=10.0, seed=3)
    for _ in range(20):
        schedule = policy.schedule()
        for i in range(6):
            schedule.failure(float(i))
        schedule.connected(100.0)
        schedule.disconnected(200.0)
        delay = schedule.failure(200.5)
        assert delay is not None and 0.0 <= delay <= 1.0


def test_drop_before_stable_counts_as_failure_and_delays_keep_growing() -> None:
    # A server that accepts and closes at once.
    policy = Backoff(base=1.0, cap=1000.0, jitter="none", stable_after=10.0)
    schedule = policy.schedule()
    now = 0.0
    got = []
    for _ in range(6):
        schedule.connected(now)
        delay = schedule.disconnected(now + 9.99)
        assert delay is not None
        got.append(delay)
        now += 9.99 + delay
    assert got == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert schedule.failures == 6


def test_disconnected_without_connected_is_a_failure() -> None:
    schedule = Backoff(base=1.0, jitter="none").schedule()
    assert schedule.disconnected(0.0) == 1.0
    assert schedule.disconnected(1.0) == 2.0
    assert schedule.failures == 2


# -- giving up ------------------------------------------------------------------------


def test_max_attempts_gives_up_after_that_many_failures() -> None:
    schedule = Backoff(max_attempts=3, seed=0).schedule()
    assert schedule.failure(0.0) is not None
    assert schedule.failure(1.0) is not None
    assert schedule.failure(2.0) is None


def test_max_attempts_counts_unstable_drops() -> None:
    schedule = Backoff(max_attempts=2, stable_after=10.0, seed=0).schedule()
    assert schedule.failure(0.0) is not None
    schedule.connected(1.0)
    assert schedule.disconnected(2.0) is None


def test_max_attempts_restarts_after_stable_connection() -> None:
    schedule = Backoff(max_attempts=2, stable_after=10.0, seed=0).schedule()
    assert schedule.failure(0.0) is not None
    schedule.connected(1.0)
    assert schedule.disconnected(50.0) is not None  # stable: reset
    assert schedule.failure(51.0) is not None
    assert schedule.failure(52.0) is None


def test_max_elapsed_gives_up_once_failures_span_that_long() -> None:
    schedule = Backoff(max_elapsed=10.0, max_attempts=None, seed=0).schedule()
    assert schedule.failure(1000.0) is not None  # measured from the first failure
    assert schedule.failure(1005.0) is not None
    assert schedule.failure(1009.9) is not None
    assert schedule.failure(1010.0) is None


def test_max_elapsed_restarts_after_stable_connection() -> None:
    schedule = Backoff(max_elapsed=10.0, stable_after=5.0, seed=0).schedule()
    assert schedule.failure(0.0) is not None
    assert schedule.failure(9.0) is not None
    schedule.connected(9.5)
    assert schedule.disconnected(100.0) is not None
    assert schedule.failure(101.0) is not None
    assert schedule.failure(110.9) is not None
    assert schedule.failure(111.0) is None


def test_no_limits_never_gives_up() -> None:
    schedule = Backoff(seed=0).schedule()
    for i in range(500):
        assert schedule.failure(i * 1000.0) is not None


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": 0.0},
        {"base": -1.0},
        {"base": 10.0, "cap": 5.0},
        {"first_delay": -0.1},
        {"stable_after": -1.0},
        {"max_attempts": 0},
        {"max_attempts": -3},
        {"max_elapsed": -1.0},
        {"jitter": "bogus"},
        {"jitter": "Full"},
        {"base": math.nan},
    ],
    ids=repr,
)
def test_invalid_arguments_raise_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": 2.0, "cap": 2.0},
        {"first_delay": 0.0},
        {"stable_after": 0.0},
        {"jitter": "equal"},
        {"jitter": "none"},
    ],
    ids=repr,
)
def test_valid_edge_arguments_are_accepted(kwargs: dict[str, object]) -> None:
    assert Backoff(**kwargs).schedule().failure(0.0) is not None  # type: ignore[arg-type]


def test_defaults_follow_the_seed_guide() -> None:
    policy = Backoff()
    assert (policy.base, policy.cap, policy.jitter) == (1.0, 30.0, "full")


def test_max_elapsed_is_not_overshot_by_a_whole_delay() -> None:
    # `rtclient chat --give-up 5` gave up after 17.7 s: a 1-2-4-8 s series checks the
    # budget only at failures, so the last delay ran far past it.
    schedule = Backoff(base=1.0, cap=30.0, jitter="none", max_elapsed=5.0).schedule()
    now, delays = 0.0, []
    while (delay := schedule.failure(now)) is not None:
        delays.append(delay)
        now += delay
    assert delays == [1.0, 2.0, 2.0]  # the third is cut to what is left of the budget
    assert now == 5.0

"""The quality tracker: RFC 6298 smoothing, percentiles, levels with hysteresis."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtclient.quality import QualityLevel, QualityTracker

G, D, P = QualityLevel.GOOD, QualityLevel.DEGRADED, QualityLevel.POOR


def test_rfc6298_smoothing() -> None:
    q = QualityTracker()
    q.pong(0.100)
    assert (q.srtt, q.rttvar) == (0.100, 0.050)
    q.pong(0.200)
    assert q.rttvar == pytest.approx(0.75 * 0.050 + 0.25 * 0.100)
    assert q.srtt == pytest.approx(0.875 * 0.100 + 0.125 * 0.200)
    assert q.rto == pytest.approx(q.srtt + 4 * q.rttvar)


def test_rto_is_clamped() -> None:
    q = QualityTracker(rto_floor=0.5, rto_cap=2.0)
    assert q.rto is None
    q.pong(0.001)
    assert q.rto == 0.5
    q.pong(10.0)
    assert q.rto == 2.0


def test_levels_follow_latency_steps_in_one_move_each() -> None:
    q = QualityTracker(window=8)
    changes = []
    for rtt, n in ((0.010, 10), (0.150, 10), (0.400, 10), (0.005, 10)):
        for _ in range(n):
            level = q.pong(rtt)
            if level is not None:
                changes.append(level)
    assert changes == [G, D, P, G]


def test_jitter_around_a_level_does_not_flap() -> None:
    rng = random.Random(7)
    q = QualityTracker()
    changes = []
    for base in (0.030, 0.150, 0.400, 0.030):
        for _ in range(40):
            level = q.pong(base * rng.uniform(0.8, 1.2))
            if level is not None:
                changes.append(level)
    assert changes == [G, D, P, G]


def test_hysteresis_near_a_threshold() -> None:
    q = QualityTracker(window=1, hysteresis=0.2)
    assert q.pong(0.110) is D
    assert q.pong(0.095) is None  # within 20 % of 100 ms: stays degraded
    assert q.pong(0.079) is G
    assert q.pong(0.310) is P
    assert q.pong(0.250) is None  # within 20 % of 300 ms: stays poor
    assert q.pong(0.230) is D


def test_missed_pongs_mean_poor_until_pongs_come_back() -> None:
    q = QualityTracker(window=8)
    q.pong(0.010)
    assert q.missed() is P
    assert q.missed_ratio == 0.5
    assert q.pong(0.010) is None  # 1 of 3 missed: still poor
    for _ in range(2):
        q.pong(0.010)
    assert q.level is G
    assert q.snapshot().missed_ratio == pytest.approx(1 / 5)


def test_ack_samples_feed_srtt_but_not_the_level() -> None:
    q = QualityTracker()
    q.pong(0.010)
    q.ack_rtt(2.0)
    assert q.level is G
    assert q.srtt is not None and q.srtt > 0.2


def test_snapshot_percentiles() -> None:
    q = QualityTracker(window=20)
    for ms in range(1, 21):
        q.pong(ms / 1000)
    snap = q.snapshot()
    assert snap.samples == 20
    assert snap.p50 == pytest.approx(0.0105)
    assert snap.p95 == pytest.approx(0.019)
    assert snap.level is G


@given(st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=50))
def test_any_samples_give_a_consistent_snapshot(rtts: list[float]) -> None:
    q = QualityTracker()
    for rtt in rtts:
        q.pong(rtt)
    snap = q.snapshot()
    assert snap.level is not QualityLevel.UNKNOWN
    assert snap.p50 is not None and snap.p95 is not None and snap.p50 <= snap.p95
    assert snap.rto is not None and q.rto_floor <= snap.rto <= q.rto_cap


def test_invalid_thresholds() -> None:
    with pytest.raises(ValueError):
        QualityTracker(good_below=0.3, poor_from=0.1)

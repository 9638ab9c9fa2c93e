"""Unit tests for rtclient.hints: the one parser of server delay hints."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtclient.hints import capped, parse_delay, reason_delay

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0.5", 0.5),
        ("0", 0.0),
        ("999999", 999999.0),  # parsed; the cap is the caller's (see capped)
        (3, 3.0),
        (2.5, 2.5),
        ("inf", None),
        ("Infinity", None),
        ("nan", None),
        ("-5", None),
        ("1e999", None),
        ("1e3", None),  # not delta-seconds
        ("soon", None),
        ("", None),
        (None, None),
        (True, None),
        (-1, None),
        (math.inf, None),
        (math.nan, None),
        (10**400, None),
        ({"s": 1}, None),
    ],
)
def test_parse_delay(value: object, expected: float | None) -> None:
    assert parse_delay(value, now=NOW) == expected


def test_http_date_is_seconds_from_now() -> None:
    assert parse_delay("Fri, 15 Jan 2027 08:01:00 GMT", now=NOW) == pytest.approx(60.0)
    assert parse_delay("Fri, 15 Jan 2027 07:00:00 GMT", now=NOW) == 0.0  # past: now
    assert parse_delay("Fri, 15 Jan 2027 08:01:00 GMT") is None  # no clock: ignored
    assert parse_delay("Fri, 15 Jan 2027 08:01:00", now=NOW) is None  # no zone
    assert parse_delay("Fri, 99 Foo 2027 08:01:00 GMT", now=NOW) is None


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("retryAfter=86400", 86400.0),
        ("overloaded; retryAfter=2.5", 2.5),
        ("retryAfter=inf", None),
        ("retryAfter=-1", None),
        ("retryAfter=", None),
        ("try again later", None),
    ],
)
def test_reason_delay(reason: str, expected: float | None) -> None:
    assert reason_delay(reason) == expected


def test_capped() -> None:
    assert capped(999999.0, 60.0) == 60.0
    assert capped(3.0, 60.0) == 3.0
    assert capped(None, 60.0) is None


@given(st.one_of(st.text(max_size=40), st.floats(), st.integers(), st.none(), st.booleans()))
def test_anything_parses_to_a_finite_non_negative_delay_or_none(value: object) -> None:
    seconds = parse_delay(value, now=NOW)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
    seconds = reason_delay(f"retryAfter={value}")
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)

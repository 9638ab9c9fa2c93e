"""Token-refresh planning (rtclient._refresh) in virtual time: no clock, no loop."""

from __future__ import annotations

import jwt

from rtclient._refresh import MIN_RETRY, RefreshPlan, fresher, plan_refresh, retry_delay

T0 = 1_700_000_000.0  # a wall-clock instant; nothing here reads the real clock


def token(*, exp: float | None, iat: float | None = None, sub: str = "u") -> str:
    claims: dict[str, object] = {"sub": sub}
    if exp is not None:
        claims["exp"] = int(exp)
    if iat is not None:
        claims["iat"] = int(iat)
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def test_no_plan_for_a_token_that_does_not_expire() -> None:
    assert plan_refresh(None, T0, 60) is None
    assert plan_refresh("opaque-token", T0, 60) is None
    assert plan_refresh(token(exp=None, iat=T0), T0, 60) is None


def test_due_ahead_of_expiry_for_a_long_lived_token() -> None:
    plan = plan_refresh(token(iat=T0, exp=T0 + 3600), T0, 60)
    assert plan == RefreshPlan(exp=T0 + 3600, due=T0 + 3540, floor=T0 + 1800)
    assert plan.delay(T0) == 3540
    assert plan.delay(T0 + 4000) == 0.0  # overdue: at once, never negative


def test_due_at_half_life_when_that_is_sooner() -> None:
    plan = plan_refresh(token(iat=T0, exp=T0 + 100), T0, 60)
    assert plan is not None
    assert (plan.due, plan.floor) == (T0 + 50, T0 + 50)


def test_lifetime_runs_from_the_fetch_when_the_token_has_no_iat() -> None:
    plan = plan_refresh(token(exp=T0 + 100), T0 + 20, 60)
    assert plan is not None
    assert plan.due == T0 + 60  # lifetime 80 s: half of it (40) is sooner than 60


def test_an_expired_token_is_due_at_once() -> None:
    plan = plan_refresh(token(iat=T0, exp=T0 + 10), T0 + 50, 60)
    assert plan is not None
    assert plan.due == T0 + 5  # half of its 10 s life
    assert plan.delay(T0 + 50) == 0.0


def test_token_expiring_pulls_the_refresh_forward_but_never_before_half_life() -> None:
    plan = plan_refresh(token(iat=T0, exp=T0 + 3600), T0, 60)
    assert plan is not None
    early = plan.sooner(T0 + 10)  # a warning early in the token's life
    assert early is not None
    assert early.due == T0 + 1800  # the floor: half the lifetime
    late = plan.sooner(T0 + 2000)  # past half-life: refresh now
    assert late is not None
    assert late.due == T0 + 2000
    assert late.sooner(T0 + 2500) is None  # already due sooner than that
    assert plan.sooner(T0 + 3550) is None  # later than planned: unchanged


def test_retry_after_a_failed_refresh_is_a_quarter_of_the_time_left() -> None:
    assert retry_delay(T0 + 400, T0) == 100
    assert retry_delay(T0 + 0.01, T0) == MIN_RETRY
    assert retry_delay(T0, T0 + 30) == MIN_RETRY  # expired already


def test_only_a_different_token_that_expires_later_is_offered() -> None:
    old = token(iat=T0, exp=T0 + 100)
    assert fresher(old, token(iat=T0 + 50, exp=T0 + 200))
    assert not fresher(old, old)
    assert not fresher(old, None)
    assert not fresher(old, "opaque-token")  # no exp: cannot tell it is fresher
    assert not fresher(old, token(iat=T0, exp=T0 + 100, sub="other"))  # not later
    assert not fresher(old, token(iat=T0, exp=T0 + 50))

"""When to renew a token in band (``token:refresh``): pure decisions, no I/O, no clock.

Every function takes the wall-clock time it needs (``now``, seconds since the epoch,
the scale of a JWT's ``iat`` / ``exp``), so the plan is tested in virtual time; the
Client's connection code (:mod:`rtclient._connection`) arms the timers and does the
asking.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tokens import token_times

__all__ = ["RefreshPlan", "fresher", "plan_refresh", "retry_delay"]

MIN_RETRY = 0.05
"""The shortest wait before asking again after a failed in-band refresh (seconds)."""


@dataclass(frozen=True, slots=True)
class RefreshPlan:
    """When the refresh of one token is due, and the earliest it may be pulled to."""

    exp: float
    """The token's expiry (wall clock)."""
    due: float
    """When to refresh: ``ahead`` before ``exp``, or at half the lifetime if sooner."""
    floor: float
    """Half the token's life: a server's ``token:expiring`` never pulls ``due`` before it,
    so a short-lived token does not refresh in a loop."""

    def delay(self, now: float) -> float:
        """Seconds from ``now`` until the refresh is due (never negative)."""
        return max(0.0, self.due - now)

    def sooner(self, now: float) -> RefreshPlan | None:
        """The plan after the server warned that the token expires soon; None: unchanged."""
        due = min(self.due, max(self.floor, now))
        if due < self.due:
            return RefreshPlan(self.exp, due, self.floor)
        return None


def plan_refresh(token: str | None, fetched_at: float, ahead: float) -> RefreshPlan | None:
    """The refresh plan of ``token`` (fetched at ``fetched_at``); None if it never expires.

    The lifetime runs from the token's ``iat``, or from when it was fetched if it has none.
    """
    iat, exp = token_times(token)
    if exp is None:
        return None  # a token that does not expire needs no refresher
    lifetime = max(0.0, exp - (iat if iat is not None else fetched_at))
    return RefreshPlan(exp=exp, due=exp - min(ahead, lifetime / 2), floor=exp - lifetime / 2)


def retry_delay(exp: float, now: float) -> float:
    """How long to wait before asking again after a failed refresh: a quarter of the time
    left, at least :data:`MIN_RETRY`."""
    return max(MIN_RETRY, (exp - now) / 4)


def fresher(old: str | None, new: str | None) -> bool:
    """Whether ``new`` is worth offering in place of ``old``: a different token that
    expires later. Otherwise the server's 4002 and a reconnect fetch one."""
    old_exp, new_exp = token_times(old)[1], token_times(new)[1]
    return (
        new is not None
        and new != old
        and new_exp is not None
        and (old_exp is None or new_exp > old_exp)
    )

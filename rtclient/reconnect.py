"""What the client does after a connection attempt or a connection ended: a pure policy.

:class:`ReconnectPolicy` takes what happened (the failure, whether the server's welcome
had arrived, the time) and returns a :class:`Decision`: retry after a delay, fetch a
fresh token and retry, or stop with an error. It never sleeps, reads no clock and
touches no socket; :class:`rtclient.Client` carries the decision out.

The rules, on top of :func:`rtclient.failures.classify` and the
:class:`~rtclient.backoff.Backoff` schedule (tenacity's strategies):

- **Only a stable connection resets the schedule.** A connection that stayed up
  ``stable_after`` seconds (and at least ``min_delay``) resets the backoff series, the
  immediate token refresh and the 4001 retry below; a welcome alone does not (a server
  that welcomes and then closes at once gets growing delays).
- **No zero-delay loop.** Outside the first try after a stable connection and the
  moves to untried URLs of a round (at most ``endpoints - 1`` in a row), every retry
  waits at least ``backoff.base / 10`` (:attr:`ReconnectPolicy.min_delay`), whatever the
  jitter draws; a token refresh is immediate only once per stable connection.
- **Server hints are capped.** ``Retry-After`` / ``retryAfter`` (parsed by
  :mod:`rtclient.hints`) are a floor for the delay, but never above
  ``max_server_delay``.
- **4002** (token expired): a fresh token (``force=True``) and retry — at once for the
  first 4002 after a stable connection, under the backoff after that (a server that
  welcomes and then says 4002 every time gets growing delays, not a storm); after
  ``max_token_refreshes`` in a row without a welcome between them: TokenExpired.
- **4001** (invalid token): with a provider that can hand out another token (anything
  but a fixed string), one forced refresh and retry — the server may have rotated its
  signing key; a second 4001 before a stable connection is a refusal (Unauthorized:
  fatal with one URL; with several, see below).
- **Several URLs** (``endpoints`` > 1; the Client gives them in its rotation order):
  a failure moves to the next URL *at once* while the current round has a URL not
  yet tried since the last stable connection, so a dead node costs one attempt;
  only when every URL failed does the backoff apply (one backoff step per round: a
  dead cluster backs off as one dead server does). A stable connection that drops is
  retried on the *same* URL first (it worked: a network blip, a proxy's idle timeout),
  after the usual short first delay. With one URL every rule is as before.
- **A refusal with several URLs** (a fatal answer: 401/403, 4001/4003, a protocol
  error): the verdict of one node, not of the cluster (one misconfigured node in a
  rolling deploy or a secret rotation). The client moves to the next URL as after any
  failure (at once while the round has an untried URL, else one backoff step) and
  stops with that answer's error only when *each URL refused since the last welcomed
  connection that ended for a retryable reason* (one welcomed and then refused does
  not count as welcomed). So with no welcome it stops after at most one round of
  refusals, and a node that refuses while the others are down (restarting) is retried
  under the backoff, not given up on. With one URL a refusal is fatal at once.
- **Drains** (close 1012, or a ``server:draining`` notice before the close): not a
  failure of the link. After a stable connection the client moves to the next URL at
  once (one URL: it waits the short first delay, or the server's capped hint, and
  comes back); the drained URL counts as tried in the new round, so a cluster that
  drains everywhere, or a server that welcomes and says 1012 every time, still meets
  the backoff once each URL was tried.
- **No welcome** on ``max_unwelcomed`` connections in a row (the Client sets it for
  Socket.IO in rooms mode, where the server answered the namespace connect and so is
  alive): the server does not speak the rooms protocol; fatal ProtocolError that names
  ``protocol="generic"``. None: retried under the backoff like any failure (the raw
  transports: a stalled server and a foreign one look the same there). Generic mode
  on a raw WebSocket with an adapter that waits for a greeting counts only the
  connections on which the server sent frames but not its greeting (a foreign
  envelope, not a stall), and the error says how to configure the adapter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .backoff import Backoff, BackoffSchedule
from .errors import (
    ConnectionFailed,
    ProtocolError,
    RtClientError,
    TokenExpired,
    TransportError,
    Unauthorized,
)
from .failures import Action, classify
from .hints import DEFAULT_MAX_SERVER_DELAY, capped

__all__ = ["Decision", "NoWelcome", "ReconnectPolicy", "Step"]


class NoWelcome(TransportError):
    """The connection opened, but the server's ``connected`` welcome never came.

    ``counts``: whether it counts towards ``max_unwelcomed`` (False: a server that said
    nothing at all, which may only be stalled). ``advice``: what the fatal error says
    after ``max_unwelcomed`` of them (None: the rooms protocol's advice).
    """

    def __init__(self, message: str, *, counts: bool = True, advice: str | None = None) -> None:
        super().__init__(message)
        self.counts = counts
        self.advice = advice


class Step(enum.Enum):
    """What the client does next."""

    RETRY = "retry"
    """Wait ``delay`` seconds, then connect again with the same token source."""
    REFRESH = "refresh"
    """Wait ``delay`` seconds, then connect again with a token asked for with ``force``."""
    STOP = "stop"
    """Stop the client; ``error`` is what the application is told."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer: a step, the delay before it, and (for STOP) the error."""

    step: Step
    delay: float = 0.0
    error: RtClientError | None = None
    endpoint: int = 0
    """The URL of the next attempt: an index into the rotation (0 with one URL)."""


class ReconnectPolicy:
    """The reconnect decisions of one client; see the module docstring for the rules.

    Call :meth:`connected` when the server's welcome arrives, then :meth:`decide` when
    the attempt or connection ended (or :meth:`token_failed` when the token provider
    failed before an attempt). Time is the caller's monotonic clock, in seconds.
    """

    def __init__(
        self,
        backoff: Backoff | None = None,
        *,
        max_server_delay: float = DEFAULT_MAX_SERVER_DELAY,
        max_token_refreshes: int = 3,
        refreshable: bool = False,
        max_unwelcomed: int | None = 3,
        endpoints: int = 1,
    ) -> None:
        if not max_server_delay >= 0 or max_server_delay == float("inf"):
            raise ValueError("max_server_delay must be a finite number of seconds >= 0")
        if max_token_refreshes < 0 or (max_unwelcomed is not None and max_unwelcomed < 1):
            raise ValueError("max_token_refreshes must be >= 0 and max_unwelcomed >= 1")
        if endpoints < 1:
            raise ValueError("endpoints must be >= 1")
        self.endpoints = endpoints
        self.current = 0
        """The URL in use or tried next: an index into the Client's rotation."""
        self._tried = 0
        """URLs of the current round that failed (or drained) since the last stable link."""
        self._refused: set[int] = set()
        """URLs that answered fatally since the last welcomed link that ended retryably."""
        self.backoff = backoff or Backoff()
        self.max_server_delay = max_server_delay
        self.max_token_refreshes = max_token_refreshes
        self.refreshable = refreshable
        self.max_unwelcomed = max_unwelcomed
        self.min_delay = self.backoff.base / 10
        self.stable_after = max(self.backoff.stable_after, self.min_delay)
        """A link up this long was stable (at least ``min_delay``: with
        ``stable_after=0`` a welcome-then-close server would get zero-delay retries)."""
        self._schedule: BackoffSchedule = self.backoff.schedule()
        self._refreshes = 0
        self._quick_refresh = True
        self._auth_retries = 0
        self._unwelcomed = 0

    @property
    def max_delay(self) -> float:
        """The longest delay a decision can carry."""
        return max(self.backoff.cap, self.max_server_delay, self.min_delay)

    def connected(self, now: float) -> None:
        """The server's welcome arrived: the connection is up (stable after a while)."""
        self._schedule.connected(now)
        self._unwelcomed = 0

    def decide(self, failure: BaseException, *, welcomed: bool, now: float) -> Decision:
        """Decide what follows the end of an attempt (or of its connection) at ``now``."""
        verdict = classify(failure)
        up_since = self._schedule.connected_at
        stable = welcomed and up_since is not None and now - up_since >= self.stable_after
        if stable:
            self._auth_retries = 0
            self._quick_refresh = True
        if welcomed:
            self._refreshes = 0  # the token was accepted: only refusals in a row count
            if verdict.action is not Action.FATAL:
                self._refused.clear()  # a node took the token and the link ended retryably
        if not welcomed and isinstance(failure, NoWelcome) and failure.counts:
            self._unwelcomed += 1
            if self.max_unwelcomed is not None and self._unwelcomed >= self.max_unwelcomed:
                self._schedule.connected_at = None
                advice = failure.advice or (
                    "it does not speak the rooms protocol (for a plain Socket.IO "
                    'server use protocol="generic")'
                )
                return Decision(
                    Step.STOP,
                    error=ProtocolError(
                        f"no welcome from the server on {self._unwelcomed} connections in a "
                        f"row: {advice}"
                    ),
                )
        match verdict.action:
            case Action.FATAL:
                if (
                    isinstance(verdict.error, Unauthorized)
                    and self.refreshable
                    and self._auth_retries == 0
                ):
                    self._auth_retries += 1
                    return self._refresh(failure, welcomed, now, immediate=True)
                return self._refused_by(failure, verdict.error, stable, welcomed, now)
            case Action.REFRESH:
                self._refreshes += 1
                if self._refreshes > self.max_token_refreshes:
                    self._schedule.connected_at = None
                    return Decision(
                        Step.STOP,
                        error=TokenExpired(
                            f"token still expired after {self.max_token_refreshes} fresh tokens"
                        ),
                    )
                quick, self._quick_refresh = self._quick_refresh, False
                return self._refresh(failure, welcomed, now, immediate=quick)
        return self._retry(failure, verdict.drain, stable, welcomed, now, verdict.retry_after)

    def _refused_by(
        self,
        failure: BaseException,
        error: RtClientError,
        stable: bool,
        welcomed: bool,
        now: float,
    ) -> Decision:
        """A fatal answer: stop if every URL has refused (see the rules), else move on."""
        self._refused.add(self.current)
        if len(self._refused) == self.endpoints:
            self._refused.clear()
            self._schedule.connected_at = None
            return Decision(Step.STOP, error=error)
        return self._retry(failure, True, stable, welcomed, now, None)

    def _retry(
        self,
        failure: BaseException,
        leave: bool,
        stable: bool,
        welcomed: bool,
        now: float,
        retry_after: float | None,
    ) -> Decision:
        """Stay, move to the next URL at once, or back off (see the rules).

        ``leave``: the URL is left even after a stable link (a drain, a refusal).
        """
        hint = capped(retry_after, self.max_server_delay)
        if stable:
            self._tried = 0
            if not leave or self.endpoints == 1:
                # It worked: try it again first (or, drained, come back after the hint).
                delay = self._schedule.disconnected(now)
                assert delay is not None  # a stable link resets the series: never a stop
                if leave:
                    self._tried = 1
                return self._at(Step.RETRY, delay if hint is None else max(delay, hint))
            self._schedule.disconnected(now)  # resets the series; the move is immediate
        self._tried += 1
        self.current = (self.current + 1) % self.endpoints
        if self._tried < self.endpoints:
            self._schedule.connected_at = None
            return self._at(Step.RETRY, 0.0)  # an untried URL of this round: at once
        self._tried = 0  # every URL was tried: one backoff step, then a new round
        delay = self._next_delay(welcomed, now)
        if delay is None:
            return Decision(Step.STOP, error=ConnectionFailed(f"gave up reconnecting: {failure}"))
        return self._at(Step.RETRY, delay if hint is None else max(delay, hint))

    def _at(self, step: Step, delay: float) -> Decision:
        return Decision(step, delay, endpoint=self.current)

    def token_failed(self, now: float) -> Decision:
        """The token provider failed before an attempt: retry it under the backoff."""
        delay = self._next_delay(False, now)
        if delay is None:
            return Decision(Step.STOP, error=ConnectionFailed("token provider kept failing"))
        return self._at(Step.RETRY, delay)

    def _refresh(
        self, failure: BaseException, welcomed: bool, now: float, *, immediate: bool
    ) -> Decision:
        delay = self._next_delay(welcomed, now)
        if delay is None:
            return Decision(Step.STOP, error=ConnectionFailed(f"gave up reconnecting: {failure}"))
        return self._at(Step.REFRESH, 0.0 if immediate else delay)

    def _next_delay(self, welcomed: bool, now: float) -> float | None:
        """The backoff's delay (None: give up), never below ``min_delay`` unless stable."""
        up_since = self._schedule.connected_at
        if welcomed and up_since is not None and now - up_since >= self.stable_after:
            return self._schedule.disconnected(now)  # the quick first retry; resets the series
        delay = self._schedule.failure(now)
        return None if delay is None else max(delay, self.min_delay)

"""The Client's root task: connect, run the connection, reconnect under the policy.

Structure (every task the Client starts descends from the root task, and ends on
``close()``)::

    root task  "rtclient <url>"          Runner._main: one TaskGroup
    ├── dispatcher task                  handlers and events() (rtclient._dispatch)
    └── (in the root task itself)        Runner._connections: the reconnect loop
        └── per connection: TaskGroup    rtclient._connection.Link.run
            ├── heartbeat, on_connect hooks, token refresh
            └── writer (only while there is something to write)

The session timer (ack timeouts, TTLs) is a loop callback, not a task
(:class:`SessionTimer`). ``close()`` sets :attr:`Runner.stop` and calls
:meth:`Runner.interrupt`, which cancels whatever the loop awaits (an attempt, a
connection, a backoff sleep); the loop absorbs that one cancellation and ends as
stopped. What to do after a connection ends is :class:`~rtclient.reconnect.ReconnectPolicy`'s
decision; this module carries it out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._connection import Link
from ._flag import Flag
from .errors import ConnectRefused, RtClientError
from .events import ErrorEvent
from .failures import Action, classify
from .reconnect import Step
from .redact import remember_token
from .session import Session

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Runner", "SessionTimer"]

log = logging.getLogger("rtclient")


class Runner:
    """Starts, runs and stops the Client's root task."""

    __slots__ = ("_client", "_interrupted", "_loop_task", "dispatch_task", "link", "stop", "task")

    def __init__(self, client: Client) -> None:
        self._client = client
        self.link = Link(client)
        self.stop = Flag()
        """Set by ``close()``: no new attempt, no further sleep."""
        self.task: asyncio.Task[None] | None = None
        self.dispatch_task: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        """The root task while it runs the reconnect loop (and may be interrupted)."""
        self._interrupted = False

    def start(self) -> None:
        """Start the root task (once)."""
        self.task = asyncio.create_task(self._main(), name=f"rtclient {self._client.endpoint}")

    def interrupt(self) -> None:
        """Cancel what the reconnect loop awaits; it then ends as stopped (once)."""
        task = self._loop_task
        if task is not None and not self._interrupted:
            self._interrupted = True
            task.cancel("rtclient: close()")

    async def _main(self) -> None:
        c = self._client
        async with asyncio.TaskGroup() as tg:
            self.dispatch_task = tg.create_task(c._dispatcher.run(), name="rtclient dispatcher")
            c._timer.arm()
            try:
                c._fatal = await self._supervise()
            finally:
                c._timer.disarm()
                aclose = getattr(c._tokens, "aclose", None)
                if aclose is not None:
                    await aclose()
                c._session.closing()
                c._session.closed(c._fatal)
                c._pump()
                c._dispatcher.end()
        if c._store is not None:
            await c._store.close()  # after the dispatcher: the last cursors are in

    async def _supervise(self) -> RtClientError | None:
        """Run connections until one ends fatally (its error) or ``close()`` (None).

        Runs in the root task itself, not a task of its own (one task less per client);
        :meth:`interrupt` cancels it here, and only the cancellation it asked for is
        absorbed: a cancellation of the root task from outside goes on.
        """
        task = asyncio.current_task()
        assert task is not None
        self._loop_task = task
        try:
            result = await self._connections()
        except asyncio.CancelledError:
            if self._interrupted and task.uncancel() == 0:
                return None  # close() interrupted an attempt, a connection or a sleep
            raise
        finally:
            self._loop_task = None
        return result

    async def _connections(self) -> RtClientError | None:
        """Connect, run the connection, carry out the policy's decision; repeat until stopped."""
        c = self._client
        policy = c._policy
        link = self.link
        force_refresh = False
        while not self.stop.is_set():
            c._counters["attempts"] += 1
            try:
                token = await c._tokens.get(force=force_refresh)
                remember_token(token, c)  # no piece of it in any log from now on
                link.token, link.token_fetched_at = token, c._wall_clock()
            except Exception as exc:
                log.warning("token provider failed: %s", type(exc).__name__)
                c._dispatcher.put(ErrorEvent("TOKEN_PROVIDER", "token provider failed", exc))
                decision = policy.token_failed(c._clock())
                if decision.error is not None:
                    return decision.error
                await self._pause(exc, decision.delay, lost=False)
                continue
            force_refresh = False
            error, welcomed = await link.run(token)
            if self.stop.is_set():
                return None
            was = policy.current
            decision = policy.decide(error, welcomed=welcomed, now=c._clock())
            log.info(
                "connection to %s ended: %s (%s)", c._session.endpoint, error, decision.step.value
            )
            if welcomed:
                c._counters["reconnects"] += 1
            if decision.error is not None:
                return decision.error
            verdict = classify(error)
            if verdict.drain:
                c._counters["drains"] += 1
            if isinstance(error, ConnectRefused):
                c._counters["connect_refusals"] += 1
                log.warning(
                    "%s refused the connection: %s (retrying in %.2f s)",
                    c._session.endpoint,
                    error.message,
                    decision.delay,
                )
            elif verdict.action is Action.FATAL and decision.step is Step.RETRY:
                # One node refused; the others may not (see rtclient.reconnect).
                c._counters["refusals"] += 1
                log.warning(
                    "%s refused the client (%s): trying %s next",
                    c._session.endpoint,
                    verdict.error,
                    c.endpoint,
                )
            if decision.endpoint != was:
                c._counters["failovers"] += 1
            c._session.endpoint = c.endpoint  # the next attempt's, in the RECONNECTING change
            if decision.step is Step.REFRESH:
                c._counters["token_refreshes"] += 1
                force_refresh = True
            await self._pause(error, decision.delay, lost=welcomed)
        return None

    async def _pause(self, error: BaseException, delay: float, *, lost: bool) -> None:
        """Tell the session (state RECONNECTING with ``delay``), then sleep unless stopped."""
        c = self._client
        if lost:
            c._session.connection_lost(error, delay)
        else:
            c._session.attempt_failed(error, delay)
        c._pump()
        try:
            async with asyncio.timeout(delay):
                await self.stop.wait()
        except TimeoutError:
            pass


class SessionTimer:
    """The one loop callback for the session's next deadline (ack timeouts, TTLs).

    A callback, not a task: an idle client holds no coroutine for it.
    """

    __slots__ = ("_clock", "_due", "_handle", "_on_tick", "_running", "_session")

    def __init__(
        self,
        session: Session,
        clock: Callable[[], float],
        on_tick: Callable[[], None],
        running: Callable[[], bool],
    ) -> None:
        self._session = session
        self._clock = clock
        self._on_tick = on_tick
        self._running = running
        self._handle: asyncio.TimerHandle | None = None
        self._due: float | None = None

    def arm(self) -> None:
        """Set the timer to the session's next deadline (or none)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        deadline = self._due = self._session.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._due = None

    def sooner(self, deadline: float) -> None:
        """A new deadline: re-arm if it is earlier than the one the timer is set for."""
        if self._due is None or deadline < self._due:
            self.arm()

    def _fire(self) -> None:
        self._handle = None
        try:
            self._session.tick(self._clock())
            self._on_tick()
        finally:
            if self._running():
                self.arm()

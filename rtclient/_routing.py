"""The Client's outcome routing: :class:`OutcomeRouter`, a base of :class:`~rtclient.Client`.

:meth:`OutcomeRouter._pump` routes the session's outcomes: settled futures, state
waiters, dispatched events, store writes, a woken writer and timer.  The parts it
routes to are the Client's (declared here, set up in ``Client.__init__``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import AckTimeout, ClientClosed, MessageDropped, RtClientError
from .events import ConnectionState, ErrorEvent, Event, StateChanged
from .session import Completed, Failed, Session

if TYPE_CHECKING:
    from ._dispatch import Dispatcher
    from ._flag import Flag
    from ._runner import Runner, SessionTimer
    from ._store_mirror import StoreMirror
    from ._writer import Writer
    from .transports.base import Connection

__all__ = ["OutcomeRouter"]

log = logging.getLogger("rtclient")


class OutcomeRouter:
    """Routes the session's outcomes to the Client's waiters, dispatcher, writer and timer."""

    _session: Session
    _mirror: StoreMirror | None
    _dispatcher: Dispatcher
    _runner: Runner
    _writer: Writer
    _timer: SessionTimer
    _progress: Flag
    _waiters: dict[str, list[asyncio.Future[Any]]]
    _state_waiters: list[tuple[frozenset[ConnectionState], asyncio.Future[None]]]
    _fatal: RtClientError | None
    _fatal_reported: bool

    if TYPE_CHECKING:

        @property
        def state(self) -> ConnectionState: ...

    def _pump(self, *, wake_timer: bool = True, wake_writer: bool = True) -> None:
        """Route the session's outcomes; wake the writer and, unless it is the caller, the timer.

        ``wake_writer=False``: the caller writes itself next (:meth:`Writer.write_now`).
        """
        if self._mirror is not None:
            self._mirror.mirror()
        for item in self._session.outcomes():
            if isinstance(item, Completed | Failed):
                self._settle(item)
            else:
                if isinstance(item, StateChanged):
                    self._state_changed(item)
                elif isinstance(item, Event) and item.name == "token:expiring":
                    self._runner.link.refresh_sooner()
                self._dispatcher.put(item)
        if wake_writer:
            self._writer.kick()
        new = self._session.take_new_deadline()
        if wake_timer and new is not None:
            self._timer.sooner(new)  # a deadline earlier than the one the timer is set for
        self._progress.set()

    def _timer_fired(self) -> None:
        self._pump(wake_timer=False)  # the timer re-arms itself

    def _running(self) -> bool:
        task = self._runner.task
        return task is not None and not task.done()

    def _settle(self, outcome: Completed | Failed) -> None:
        futures = self._waiters.pop(outcome.key, [])
        live = [f for f in futures if not f.done()]
        for future in live:
            if isinstance(outcome, Completed):
                future.set_result(outcome.result)
            else:
                future.set_exception(outcome.error)
        # Nobody waits (enqueue(), a restored message): the failure becomes an error
        # event, unless the session reported it already (a drop: MESSAGE_DROPPED).
        if (
            not live
            and isinstance(outcome, Failed)
            and not isinstance(outcome.error, ClientClosed | MessageDropped)
        ):
            error = outcome.error
            if error is self._fatal:
                if self._fatal_reported:
                    return  # every pending join and message fails with it: say it once
                self._fatal_reported = True
            self._dispatcher.put(ErrorEvent(type(error).__name__, str(error), error))

    def _state_changed(self, change: StateChanged) -> None:
        log.info("state %s -> %s", change.old.name, change.new.name)
        keep = []
        for wanted, future in self._state_waiters:
            if future.done():
                continue
            if change.new in wanted:
                future.set_result(None)
            elif change.new is ConnectionState.CLOSED:
                future.set_exception(self._closed_error())
            else:
                keep.append((wanted, future))
        self._state_waiters = keep

    def _waiter(self, key: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        return future

    async def _await(self, future: asyncio.Future[Any], timeout: float | None) -> Any:
        """Write the caller's request (see :meth:`Writer.write_now`), then wait for its outcome."""
        try:
            if timeout is None:
                # Cancelling the caller cancels this future only: the message stays
                # queued (its outcome is then ignored), so no shield is needed.
                await self._writer.write_now()
                return await future
            try:
                async with asyncio.timeout(timeout):
                    await self._writer.write_now()
                    return await asyncio.shield(future)
            except TimeoutError:
                if future.done() and not future.cancelled():
                    # Answered while the caller was still draining its own write.
                    return future.result()
                raise AckTimeout(f"no answer within {timeout} s (still queued)") from None
        except BaseException:
            # Nobody waits for the outcome any more: it must not be reported as an
            # exception that was never retrieved.
            future.add_done_callback(_consume)
            raise

    def _restore_failed(self, exc: BaseException) -> None:
        """The store could not be loaded (and is closed again): the client is closed."""
        self._session.closed(exc if isinstance(exc, RtClientError) else None)
        self._session.store_changes()  # the store is closed: nothing to mirror
        self._pump()

    @property
    def _conn(self) -> Connection | None:
        """The open connection, if any (for tests and debugging)."""
        return self._runner.link.conn

    def _closed_error(self) -> RtClientError:
        return self._fatal or ClientClosed("the client is closed")

    def _check_not_closed(self, wanted: Iterable[ConnectionState]) -> None:
        if self.state is ConnectionState.CLOSED and ConnectionState.CLOSED not in wanted:
            raise self._closed_error()


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()

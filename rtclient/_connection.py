"""One connection's life: open it, read it until it ends, and what runs beside the reader.

:meth:`Link.run` opens a connection with the token it is given and runs a task group
for as long as the connection lives: the reader in the caller's task (the Client's
root task), the heartbeat, the ``on_connect`` hooks, the in-band token refresh and the
writer task (:mod:`rtclient._writer`). When the reader returns, every one of them is
cancelled and the connection closed before :meth:`Link.run` returns why it ended.
Decisions are the session's and the pure planners' (:mod:`rtclient._refresh`); the
reconnect loop around this is :mod:`rtclient._runner`.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from typing import TYPE_CHECKING

from ._heartbeat import ReadPauses, heartbeat
from ._outgoing import Outgoing
from ._refresh import RefreshPlan, fresher, plan_refresh, retry_delay
from .errors import ClientClosed, ConnectionLost, ProtocolError, RtClientError, TransportError
from .events import ConnectionState, ErrorEvent
from .failures import SERVICE_RESTART, Action, classify
from .reconnect import NoWelcome
from .redact import remember_token
from .tokens import token_times
from .transports.base import Connection

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Link", "in_hook"]

log = logging.getLogger("rtclient")

in_hook: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "rtclient_in_hook", default=None
)
"""In the task that runs the ``on_connect`` hooks (and tasks it starts), the mark of that
run (:attr:`Link.hook_run`): the emits of the current run are the rejoin, written
before the outbox flushes. A task a hook left behind, or another client's hooks, do
not carry the current mark."""


class Link:
    """The Client's current connection (or none) and the tasks that live with it."""

    __slots__ = (
        "_client",
        "_group",
        "_pauses",
        "_refresh_plan",
        "_refresh_timer",
        "conn",
        "helpers",
        "hook_run",
        "token",
        "token_fetched_at",
    )

    def __init__(self, client: Client) -> None:
        self._client = client
        self.conn: Connection | None = None
        self.token: str | None = None
        """The token the current (or last) connection was opened with, or renewed to."""
        self.token_fetched_at = 0.0
        """When (wall clock) :attr:`token` was obtained."""
        self._group: asyncio.TaskGroup | None = None
        self.helpers: list[asyncio.Task[None]] = []
        self.hook_run: object | None = None
        """The mark of the hooks running now (see :data:`in_hook`); None when none run."""
        self._pauses = ReadPauses()
        self._refresh_timer: asyncio.TimerHandle | None = None
        self._refresh_plan: RefreshPlan | None = None

    async def run(self, token: str | None) -> tuple[RtClientError, bool]:
        """One connection attempt and, if it opens, its whole life.

        Returns why it ended and whether the server's welcome arrived.
        """
        c = self._client
        try:
            conn = await c._transport.connect(c.url, token=token, open_timeout=c.connect_timeout)
        except RtClientError as exc:
            return exc, False
        self.conn = conn
        out = Outgoing(
            conn,
            c._session,
            batchable=getattr(conn, "batchable", False),
            batch_max=c.batch_max,
            batch_wait=c.batch_wait,
            report=c._dispatcher.put,
            counters=c._counters,
        )
        c._session.connection_opened()
        welcomed = False
        try:
            async with asyncio.TaskGroup() as tg:
                self._group = tg
                self.helpers = []
                c._writer.attach(out, tg)
                if c.ping_interval is not None:
                    beat = heartbeat(
                        conn,
                        interval=c.ping_interval,
                        timeout=c.ping_timeout,
                        pauses=self._pauses,
                        session=c._session,
                        pump=c._pump,
                        counters=c._counters,
                    )
                    self.helpers.append(tg.create_task(beat, name="rtclient heartbeat"))
                try:
                    error, welcomed = await self._read(conn)
                finally:
                    self._cancel_refresh()
                    for helper in self.helpers:
                        helper.cancel()
                    c._writer.stop()
        finally:
            self.conn = None
            c._writer.detach()
            self._group = None
            try:
                async with asyncio.timeout(c.connect_timeout):
                    await conn.close()  # idempotent; releases what the transport holds
            except (RtClientError, TimeoutError):
                conn.abort()
        return error, welcomed

    async def _read(self, conn: Connection) -> tuple[RtClientError, bool]:
        c = self._client
        welcomed = False
        heard = 0  # what the server sent before its welcome (a stall sends nothing)
        try:
            async with asyncio.timeout(c.connect_timeout):
                while not welcomed:
                    await self._receive(conn)
                    heard += 1
                    welcomed = c._session.welcomed
            c._policy.connected(c._clock())
            self._after_welcome()
            dispatcher = c._dispatcher
            while True:
                await self._receive(conn)
                if dispatcher.backlog >= dispatcher.max_pending:
                    c._counters["read_pauses"] += 1
                    self._pauses.paused = True
                    self._pauses.begun += 1
                    try:
                        await dispatcher.wait_for_room()
                    finally:
                        self._pauses.paused = False
        except TimeoutError:
            conn.abort()
            advice = getattr(c._transport, "no_greeting_advice", None)
            if advice is None:
                return NoWelcome("no welcome from the server in time"), welcomed
            text = advice(heard)  # generic mode on a raw WebSocket: the adapter's greeting
            return NoWelcome(text, counts=heard > 0, advice=text), welcomed
        except (ConnectionLost, TransportError) as exc:
            verdict = classify(exc)
            if c._session.drain_notice and verdict.action is Action.RETRY and not verdict.drain:
                # The server said it drains; however the link then ended (a reset, a
                # bare disconnect), that was it. A close that is a verdict of its own
                # (forbidden, a protocol violation, 4002) keeps its meaning.
                drained = ConnectionLost(SERVICE_RESTART, "server draining")
                drained.__cause__ = exc
                return drained, welcomed
            return exc, welcomed

    async def _receive(self, conn: Connection) -> None:
        c = self._client
        try:
            envelope = await conn.recv()
        except ProtocolError as exc:
            c._session.malformed(str(exc))
        else:
            try:
                c._session.receive(envelope, c._clock())
            except Exception as exc:  # a bug of ours must not take the client down
                log.exception("error handling a frame")
                c._session.malformed(f"frame could not be handled: {exc!r}")
        c._pump()

    def _after_welcome(self) -> None:
        """Tell the app if its Socket.IO session was not recovered; start the hooks."""
        c = self._client
        welcome = c._session.welcome
        gap = welcome.session_gap(c._namespace)
        if gap is not None:
            c._dispatcher.put(gap)
        group = self._group
        if group is None:
            return
        if c._hooks:
            # A helper: cancelled with its connection (a hook waiting for a call's answer
            # would otherwise hold the connection's task group, and the client, forever).
            self.helpers.append(group.create_task(self._run_hooks(), name="rtclient on_connect"))
        if welcome.refreshable:
            self._plan_refresh()

    async def _run_hooks(self) -> None:
        c = self._client
        mark = self.hook_run = object()
        in_hook.set(mark)  # this task's own context: the application's tasks never see it
        try:
            for hook in list(c._hooks):
                try:
                    result = hook(c)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    log.exception("on_connect hook %r failed", hook)
                    c._dispatcher.put(ErrorEvent("HOOK", f"on_connect hook failed: {exc!r}", exc))
        finally:
            self.hook_run = None
        c._session.open_gate(c._clock())
        c._pump()

    # -- in-band token refresh (the plan: rtclient._refresh) ----------------------------

    def _plan_refresh(self) -> None:
        """Arm the refresh of the current token, if it expires (a timer: no task waits)."""
        self._cancel_refresh()
        self._refresh_plan = plan_refresh(
            self.token, self.token_fetched_at, self._client.token_refresh_ahead
        )
        if self._refresh_plan is not None:
            self._arm_refresh(self._refresh_plan)

    def _arm_refresh(self, plan: RefreshPlan) -> None:
        delay = plan.delay(self._client._wall_clock())
        self._refresh_timer = asyncio.get_running_loop().call_later(delay, self._start_refresh)

    def _cancel_refresh(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None

    def refresh_sooner(self) -> None:
        """The server warned that the token expires soon (``token:expiring``).

        The refresh moves forward, but never before half the token's life: a
        short-lived token must not refresh in a loop.
        """
        if self._refresh_timer is None or self._refresh_plan is None:
            return  # none planned, or one under way
        plan = self._refresh_plan.sooner(self._client._wall_clock())
        if plan is not None:
            self._refresh_timer.cancel()
            self._refresh_plan = plan
            self._arm_refresh(plan)

    def _start_refresh(self) -> None:
        self._refresh_timer = None
        group = self._group
        if group is None:
            return  # the connection ended: the next welcome plans again
        self.helpers = [task for task in self.helpers if not task.done()]
        self.helpers.append(group.create_task(self._refresh_token(), name="rtclient refresh"))

    async def _refresh_token(self) -> None:
        """Renew the token in band now (the server supports it), then plan the next.

        A refresh that fails is reported and tried again; if the token does expire,
        the server closes with 4002 and the reconnect fetches a fresh one.
        """
        c = self._client
        await c.wait_for(ConnectionState.CONNECTED)
        while True:
            exp = token_times(self.token)[1]
            if exp is None:
                return
            try:
                token = await c._tokens.get(force=True)
                remember_token(token, c)
                if not fresher(self.token, token):
                    # Nothing fresher to offer: let the server's 4002 and a reconnect
                    # fetch one, rather than asking again and again.
                    log.info("token provider has no fresher token: no in-band refresh")
                    return
                await c._request("token:refresh", {"token": token}, None, resend=False)
            except ClientClosed:
                return
            except Exception as exc:
                log.warning("in-band token refresh failed: %s", type(exc).__name__)
                c._dispatcher.put(ErrorEvent("TOKEN_REFRESH", "in-band refresh failed", exc))
                await asyncio.sleep(retry_delay(exp, c._wall_clock()))
                continue
            self.token, self.token_fetched_at = token, c._wall_clock()
            c._counters["in_band_refreshes"] += 1
            self._plan_refresh()
            return

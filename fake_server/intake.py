"""How the hub carries out requests: inline, or in order on each connection's lane.

:class:`Intake` is the request half of :class:`~fake_server.hub.Hub` (a base class of
it): frames and decoded requests come in, each request's handler
(:mod:`fake_server.requests`) runs, its reply goes out.  With an immediate store (in
memory) a request runs inline as its frame arrives; with a store that waits for Redis it
runs on the connection's :class:`~fake_server.lanes.Lane`, after the connection's
earlier requests, so replies keep the order of the requests (``docs/cluster.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, cast

from . import requests
from .connection import Connection
from .envelope import FrameError, Request, error_ack, event, parse_envelope, parse_frame
from .errors import ErrorCode, RequestError
from .lanes import TaskSet
from .stats import Counters
from .store import Store, StoreBusy, StoreUnavailable, run_inline

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["MAX_BATCH", "Answer", "Intake"]

log = logging.getLogger("fake_server.hub")

MAX_BATCH = 100
"""Most requests in one ``batch`` envelope."""

Answer = Callable[[dict[str, Any], "str | None"], None]
"""Where a request's reply goes: ``answer(envelope, tag)`` (default: the peer's ``send``)."""


class Intake:
    """Frames and requests in, replies out; see the module docstring."""

    counters: Counters
    storage: Store
    tasks: TaskSet

    def run(self, conn: Connection, work: Coroutine[Any, Any, None]) -> None:
        """Carry out ``work`` for ``conn`` after its earlier requests (now, when inline)."""
        if conn.lane is None:
            run_inline(work)
        else:
            conn.lane.submit(work)

    def backlog(self, conn: Connection) -> Awaitable[None] | None:
        """Something for the connection's reader to await before it reads more, or None."""
        lane = conn.lane
        return lane.wait_room() if lane is not None and lane.full() else None

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Carry out ``work`` that belongs to no connection (now, when inline)."""
        if self.storage.immediate:
            run_inline(work)
        else:
            self.tasks.spawn(self._logged(work))

    async def _logged(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except StoreUnavailable as exc:
            log.info("shared store unavailable: %s", exc)

    # -- requests ----------------------------------------------------------------------

    def handle_frame(self, conn: Connection, data: str | bytes, codec: str = "json") -> None:
        """Parse and carry out one frame from ``conn``; bad input gets an error reply."""
        if conn.lane is not None:
            conn.lane.submit(self._frame(conn, data, codec))
            return
        request = self._parse(conn, data, codec)
        if request is None:
            return
        if request.type != "batch":
            self._send_reply(conn, request, self._process_inline(conn, request), None)
            return
        for item in self._batch(conn, request):
            self._send_reply(conn, item, self._process_inline(conn, item), None)

    async def _frame(self, conn: Connection, data: str | bytes, codec: str) -> None:
        if self._after_close(conn):
            return
        request = self._parse(conn, data, codec)
        if request is None:
            return
        items = self._batch(conn, request) if request.type == "batch" else (request,)
        for item in items:
            self._send_reply(conn, item, await self.process(conn, item), None)

    def _after_close(self, conn: Connection) -> bool:
        """A request that waited on the lane behind its connection's close (a drain queues
        the close there): not carried out, as one read after the close (docs/protocol.md,
        "Draining"); the client sends it again on its next connection."""
        if conn.peer.close_requested is None:
            return False
        self.counters.bump("frames_after_close")
        return True

    def _parse(self, conn: Connection, data: str | bytes, codec: str) -> Request | None:
        """The frame's request; None when it is not one (the error is answered)."""
        try:
            return parse_frame(data, codec)
        except FrameError as exc:
            self.counters.bump("bad_requests")
            log.info("bad frame from client=%s: %s", conn.client_id, exc.message)
            self._frame_error(conn, exc)
            return None

    def _batch(self, conn: Connection, batch: Request) -> Iterator[Request]:
        """The requests of ``{"type": "batch", "payload": {"items": [envelope, ...]}}``.

        Each item is a request of its own, acknowledged on its own; a bad item gets its
        own error, in its place among the replies (the caller carries out each request
        before it takes the next), and does not stop the others. Batches do not nest.
        """
        items = batch.payload.get("items")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            error = FrameError(f"batch items must be a list of 1 to {MAX_BATCH} requests")
            self.counters.bump("bad_requests")
            conn.peer.send(event("error", error.payload()))
            return
        self.counters.bump("batches")
        for item in items:
            try:
                request = parse_envelope(item)
                if request.type == "batch":
                    raise FrameError("batches do not nest", request.id)
            except FrameError as exc:
                self.counters.bump("bad_requests")
                self._frame_error(conn, exc)
                continue
            yield request

    @staticmethod
    def _frame_error(conn: Connection, exc: FrameError) -> None:
        if exc.request_id is not None:
            conn.peer.send(error_ack(exc.request_id, exc))
        else:
            conn.peer.send(event("error", exc.payload()))

    def handle_request(
        self, conn: Connection, request: Request, answer: Answer | None = None
    ) -> None:
        """Carry out one decoded request and send its ack, error or nothing.

        The reply goes to ``answer(envelope, tag)`` (default: the peer), after the
        replies to the connection's earlier requests.
        """
        if conn.lane is None:
            self._send_reply(conn, request, self._process_inline(conn, request), answer)
        else:
            conn.lane.submit(self._answer(conn, request, answer))

    async def _answer(self, conn: Connection, request: Request, answer: Answer | None) -> None:
        if self._after_close(conn):
            return
        self._send_reply(conn, request, await self.process(conn, request), answer)

    @staticmethod
    def _send_reply(
        conn: Connection,
        request: Request,
        reply: dict[str, Any] | None,
        answer: Answer | None,
    ) -> None:
        if reply is None:
            return
        # Successful acks are tagged with the request type (``Peer.in_flight``).
        tag = request.type if reply.get("type") == "ack" and reply["payload"]["success"] else None
        if answer is None:
            conn.peer.send(reply, tag=tag)
        else:
            answer(reply, tag)

    async def process(self, conn: Connection, request: Request) -> dict[str, Any] | None:
        """Carry out one request; return the envelope to reply with, or None.

        The reply is its ack or error ack (a request with an id) or an ``error`` event
        (a refused request without one).
        """
        handler = requests.HANDLERS.get(request.type)
        try:
            if handler is None:
                raise requests.unknown_type(request)
            reply = await handler(cast("Hub", self), conn, request)
        except Exception as exc:
            return self._failed(conn, request, exc)
        return reply if request.id is not None else None

    def _process_inline(self, conn: Connection, request: Request) -> dict[str, Any] | None:
        """:meth:`process` on an immediate store, one coroutine fewer (the hot path)."""
        handler = requests.HANDLERS.get(request.type)
        try:
            if handler is None:
                raise requests.unknown_type(request)
            reply = run_inline(handler(cast("Hub", self), conn, request))
        except Exception as exc:
            return self._failed(conn, request, exc)
        return reply if request.id is not None else None

    def _failed(self, conn: Connection, request: Request, exc: Exception) -> dict[str, Any]:
        """The reply to a request whose handler raised ``exc``."""
        if isinstance(exc, RequestError):
            return self._refusal(conn, request, exc)
        if isinstance(exc, StoreBusy):
            self.counters.bump("store_busy")
            refusal = RequestError(
                ErrorCode.INTERNAL,
                "shared store busy; send again later",
                retryAfter=exc.retry_after,
                reason="STORE_BUSY",
            )
            return self._refusal(conn, request, refusal)
        if isinstance(exc, StoreUnavailable):
            self.counters.bump("store_unavailable")
            refusal = RequestError(
                ErrorCode.INTERNAL,
                "shared store unavailable; send again later",
                retryAfter=exc.retry_after,
                reason="STORE_UNAVAILABLE",
            )
            return self._refusal(conn, request, refusal)
        self.counters.bump("errors")
        log.error("request %s from client=%s failed", request.type, conn.client_id, exc_info=exc)
        return self._refusal(conn, request, RequestError(ErrorCode.INTERNAL, "internal error"))

    def _refusal(self, conn: Connection, request: Request, exc: RequestError) -> dict[str, Any]:
        if exc.code in (ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_TYPE):
            self.counters.bump("bad_requests")
            log.info(
                "refused %s from client=%s: %s %s",
                request.type,
                conn.client_id,
                exc.code.value,
                exc.message,
            )
        if request.id is not None:
            return error_ack(request.id, exc)
        return event("error", {**exc.payload(), "requestType": request.type})

"""python-socketio's and engine.io's clients, adapted for rtclient's Socket.IO transport.

What :mod:`rtclient.transports.socketio` needs that the libraries do not offer, by
overriding their internals (python-socketio 5, python-engineio 4): the ``pid`` of the
server's CONNECT packet, undecodable packets reported instead of only logged, a reader
paced by the connection's inbox, the HTTP responses of a failed handshake released, a
clean disconnect whose DISCONNECT and CLOSE packets reach the server before the
WebSocket closes, and a ``connect()`` that ends when the link is lost before the
server answers the namespace CONNECT.

The private methods and attributes relied on, each exercised by tests that fail if an
upgrade renames it: ``socketio.AsyncClient._engineio_client_class`` and
``engineio.AsyncClient._trigger_event`` with its ``run_async`` keyword
(tests/integration/test_socketio_backpressure.py), ``._handle_connect`` (the ``pid``:
tests/interop/test_reference_server.py), ``._handle_eio_message`` and
``._binary_packet`` (tests/hostile/test_frames.py), ``engineio.AsyncClient.read_loop_task``
(an AttributeError on every server DISCONNECT), ``.state``, ``.queue`` and ``._send_packet``
(the goodbye of a clean close: tests/hostile/test_goodbye.py,
tests/integration/test_generic_mode.py, tests/interop/test_reference_server.py);
``socketio.AsyncClient._handle_eio_disconnect``, ``.connection_namespaces``,
``.namespaces``, ``.failed_namespaces`` and ``._connect_event``, engine.io's
``._reset``, ``.write_loop_task`` and ``.ws`` (a link lost before the CONNECT answer:
tests/hostile/test_connect_drops.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import engineio
import socketio

__all__ = ["AsyncClient", "Handshake", "PacedEngineIO"]


class Handshake:
    """The HTTP responses of one connection attempt, released when it fails or ends.

    engine.io drops the WebSocket response of a handshake that fails past the upgrade
    (no OPEN packet, an OPEN without its fields) without closing it, and so it does
    when its reader gives up on a silent server ("Server has stopped communicating"):
    aiohttp's connection stays acquired and the GC later warns ("Unclosed
    connection"). The responses are recorded (an aiohttp trace hook) until the attempt
    ends, and closed if it failed, or else when the connection is closed.

    The last exception of one of the attempt's requests is kept too (:attr:`failure`):
    engine.io's long-polling requests report aiohttp's exception to Socket.IO as a
    string only, so the chain of the error it raises does not hold it.
    """

    def __init__(self) -> None:
        self._responses: list[aiohttp.ClientResponse] | None = []
        self._kept: list[aiohttp.ClientResponse] = []
        self.failure: BaseException | None = None
        """The last exception an HTTP request of the attempt raised (None: none)."""
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_end.append(self._ended)
        self.trace.on_request_exception.append(self._failed)

    async def _ended(
        self, session: aiohttp.ClientSession, context: object, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if self._responses is not None:  # a polling connection makes a request per poll
            self._responses.append(params.response)

    async def _failed(
        self,
        session: aiohttp.ClientSession,
        context: object,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        if self._responses is not None:
            self.failure = params.exception

    def done(self) -> None:
        """The attempt succeeded: stop recording (its responses are kept for ``release``)."""
        self._kept, self._responses = self._responses or [], None
        self.failure = None  # nor keep an exception (and its traceback) for weeks

    def release(self) -> None:
        """The attempt failed, or its connection is closed: close every response it
        opened (idempotent; a response already closed stays so)."""
        for response in (self._responses or []) + self._kept:
            response.close()
        self._responses = None
        self._kept = []


class AsyncClient(socketio.AsyncClient):  # type: ignore[misc]
    """python-socketio's client, also keeping the ``pid`` of the server's CONNECT packet,
    and ending ``connect()`` when the Engine.IO link is lost before the namespace is.

    python-socketio 5 reads only ``sid`` from that packet; the ``pid`` is what Socket.IO
    v4 connection state recovery needs to resume a session.
    """

    pid: str | None = None
    undecodable: Callable[[Exception], None] | None = None
    link_lost: str | None = None
    """Why the Engine.IO link ended while :meth:`connect` waited for the server's answer
    to the namespace CONNECT (engine.io's reason); None: it did not."""
    _connecting = False

    def _engineio_client_class(self) -> type[PacedEngineIO]:
        return PacedEngineIO

    async def connect(self, *args: Any, **kwargs: Any) -> None:
        self.link_lost = None
        self._connecting = True
        try:
            await super().connect(*args, **kwargs)
        finally:
            self._connecting = False

    def awaiting_namespace(self, namespace: str) -> bool:
        """Whether :meth:`connect` is waiting for the server's answer to ``namespace``'s
        CONNECT (what arrives now precedes it: a recovery's replay)."""
        return self._connecting and not (namespace in self.namespaces or self.refused(namespace))

    def refused(self, namespace: str) -> bool:
        """Whether the server answered ``namespace``'s CONNECT with a CONNECT_ERROR (or
        the link was lost before an answer) in the attempt under way: what arrives now
        is no replay, and nothing will read it (connect() is closing the link)."""
        return self._connecting and namespace in self.failed_namespaces

    async def _handle_eio_disconnect(self, reason: Any) -> None:
        ours = reason == self.reason.CLIENT_DISCONNECT and self.link_lost is None
        if self._connecting and not ours:
            # (connect() itself disconnects once its wait is over, after a refusal
            # too: that is not a lost link. A link we end before the answer, a replay
            # too long to hold, says why in ``link_lost`` first: connect() is woken.)
            # python-socketio's connect() waits for the namespaces' CONNECT answer until
            # its wait_timeout even once the link is gone (its handler does nothing for
            # a client not yet connected): a node that dies between the Engine.IO
            # handshake and that answer cost the whole timeout. A namespace without an
            # answer is failed now, and connect() woken: it raises ConnectionError
            # (mapped with ``link_lost``). One whose CONNECT was read before the drop
            # stays connected, and gets the disconnect the library owes it once
            # connect() has returned: the connection opens and is lost at once.
            self.link_lost = str(reason)
            for namespace in self.connection_namespaces:
                if namespace in self.namespaces:
                    await self._trigger_event("disconnect", namespace, reason)
                    await self._trigger_event("__disconnect_final", namespace)
                elif namespace not in self.failed_namespaces:
                    self.failed_namespaces.append(namespace)
            self._connect_event.set()
        await super()._handle_eio_disconnect(reason)

    async def _handle_connect(self, namespace: str | None, data: object) -> None:
        pid = data.get("pid") if isinstance(data, dict) else None
        self.pid = pid if isinstance(pid, str) else None
        await super()._handle_connect(namespace, data)

    async def _handle_eio_message(self, data: Any) -> None:
        # python-socketio decodes and dispatches a packet here and lets a packet it
        # cannot read (bad JSON, ``42[]``, an unknown type) raise into engine.io, which
        # only logs it: rtclient would never hear of it. (json raises RecursionError
        # for a packet nested too deeply.) A half-read binary packet is forgotten too,
        # or every later message would be taken for one of its attachments.
        try:
            await super()._handle_eio_message(data)
        except (ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
            if self.undecodable is None:
                raise
            self._binary_packet = None
            self.undecodable(exc)


class PacedEngineIO(engineio.AsyncClient):  # type: ignore[misc]
    """engine.io's client, handling each message before it reads the next one.

    engine.io starts a task per incoming message and reads on, so nothing slows its
    reader down: a slow application let thousands of events pile up. Here a message is
    handled in the reader (python-socketio's handlers only queue it for ``recv``), then
    the reader waits for ``paced(size)`` — room in the connection's inbox — before it
    reads the socket again, and TCP pushes back on the server. ``size``: the message's
    length (characters or bytes).
    """

    paced: Callable[[int], Awaitable[None]] | None = None
    goodbye = True
    """Whether :meth:`disconnect` writes what is queued (Socket.IO's DISCONNECT) and
    engine.io's CLOSE before it closes the WebSocket; False for a link given up as
    dead (nothing would get through: the wait would only delay the reconnect)."""
    flush_timeout: float = 1.0
    """How long that goodbye waits for the packets to be written."""
    _close_queued = False

    async def disconnect(self, abort: bool = False, reason: Any = None) -> None:
        # A DISCONNECT packet makes python-socketio call this from the message handler,
        # which now runs in the reader: it must not wait for the reader to end.
        own = self.read_loop_task is not None and asyncio.current_task() is self.read_loop_task
        going = self.state != "connected"  # lost, or the server's CLOSE under way
        if self.goodbye and not (abort or own) and self.state == "connected":
            # engine.io queues the CLOSE packet for its writer task and closes the
            # WebSocket at once: the server saw the socket close before Socket.IO's
            # DISCONNECT (queued just before) and engine.io's CLOSE, took it for a
            # transport close, and kept the session for a recovery. Write them first.
            await self._send_packet(engineio.packet.Packet(engineio.packet.CLOSE))
            await self._flushed()
        await super().disconnect(abort=abort or own, reason=reason)
        if going and not (abort or own):
            await self._tasks_ended()

    async def _flushed(self) -> None:
        """Wait until the writer has written what is queued: at most ``flush_timeout``,
        and no longer than the writer runs (one that ended on a failed write, a link
        lost under the goodbye, never takes the rest: the wait would last it out)."""
        writer = self.write_loop_task
        if writer is None or writer.done():
            return
        join = asyncio.ensure_future(self.queue.join())
        try:
            await asyncio.wait(
                {join, writer}, timeout=self.flush_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            join.cancel()
            await asyncio.wait({join})

    async def _tasks_ended(self) -> None:
        """Wait for the reader and the writer of a link already going to end.

        engine.io does not wait for them then, and the reader may be closing the
        WebSocket: waiting for the server's answer to its close frame, up to its
        request timeout (5 s) if the server went silent. The link is lost: its socket
        is shut down, which ends that wait at once.
        """
        tasks = [t for t in (self.read_loop_task, self.write_loop_task) if t is not None]
        if all(t.done() for t in tasks):
            return
        ws = getattr(self, "ws", None)
        sock = ws.get_extra_info("socket") if ws is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        await asyncio.wait(tasks)

    async def _reset(self) -> None:
        await super()._reset()
        writer = self.write_loop_task
        if writer is not None and not writer.done():
            # engine.io's reset empties the writer's queue, the None that ends the
            # writer included, when a disconnect runs before the writer took it (a close
            # racing the server's CLOSE): the writer would wait out its 30 s timeout.
            self.queue.put_nowait(None)

    async def _send_packet(self, pkt: engineio.packet.Packet) -> None:
        if pkt.packet_type == engineio.packet.CLOSE:
            if self._close_queued:  # written above; the library's own comes second
                return
            self._close_queued = True
        await super()._send_packet(pkt)

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event != "message":
            return await super()._trigger_event(event, *args, **kwargs)
        kwargs["run_async"] = False
        result = await super()._trigger_event(event, *args, **kwargs)
        if self.paced is not None:
            data = args[0] if args else None
            await self.paced(len(data) if isinstance(data, str | bytes) else 0)
        return result

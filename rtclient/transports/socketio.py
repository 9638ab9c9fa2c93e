"""Socket.IO transport on python-socketio's ``AsyncClient``, its reconnection switched off.

One ``connect`` is one attempt: rtclient owns the loop, the backoff, the outbox, the
rejoin and the sync. Envelopes map onto Socket.IO events (docs/protocol.md, "Socket.IO
binding"):

- a request ``{type, id, payload}`` is ``emit(type, payload, callback=…)``; the
  callback's first argument becomes ``{"type": "ack", "id": id, "payload": …}``; the
  message id of ``chat:send`` / ``dm:send`` travels in the data as ``messageId``;
- a request without ``id`` is a plain ``emit``; every event from the server becomes
  ``{"type": event, "payload": data}`` (data that is not an object is wrapped as
  ``{"args": [...]}``); a ``raw`` envelope (a generic emit) sends its payload as is;
- Socket.IO v4 connection state recovery: when the server gives the session a ``pid``
  (``connectionStateRecovery`` on), the transport keeps it and the offset of the last
  event received, sends both in the next CONNECT's auth payload, and reports in the
  welcome whether the server recovered the session (``recovered``);
- the token goes in the handshake ``auth`` payload ``{"token": …}``, fresh for every
  attempt. A ``connect_error`` about the credentials is classified like the raw close
  codes (``INVALID_TOKEN`` → 4001, ``TOKEN_EXPIRED`` → 4002, ``USER_DISABLED`` → 4003,
  and the usual words and ``data.code`` values of other servers); any other refusal
  (``"server busy"``) is :class:`~rtclient.errors.ConnectRefused`, retried: see
  :mod:`rtclient.transports.sio_refusals`.

python-socketio / engine.io / aiohttp exceptions are mapped here and go no further.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from typing import Any, Literal

import aiohttp
import socketio

from ..errors import (
    ConnectionLost,
    HandshakeRejected,
    ProtocolError,
    ReplayTooLong,
    RtClientError,
    TransportError,
)
from ..hints import parse_delay
from ..redact import RedactingLogger, redact, remember_token
from ..session import OWN_EVENT
from ..welcome import RepeatedOffset, SocketIOResume
from .aiohttp_ws import redirect_error
from .boundary import Boundary
from .inbox import Inbox
from .sio_refusals import refusal_error
from .socketio_client import AsyncClient, Handshake

__all__ = ["SocketIOConnection", "SocketIOTransport"]

_MESSAGE_ID_TYPES = frozenset({"chat:send", "dm:send"})
_STATUS = re.compile(r"status code (\d{3})")
# What python-socketio / engine.io log at WARNING on every ordinary close, or for a
# retransmitted request's second ack: routine for rtclient, so DEBUG.
_ROUTINE = ("Server sent", "Unknown callback received")


class SocketIOTransport:
    """Opens Socket.IO connections.

    :param namespace: the namespace to connect to.
    :param socketio_path: the server's Socket.IO path.
    :param transports: engine.io transports, WebSocket only by default (no long polling).
    :param welcome: ``"server"`` when the server sends the rooms contract's ``connected``
        event; ``"synthesize"`` for any other Socket.IO server (the client then treats
        the Socket.IO connect as the welcome).
    :param app_ping: measure RTT with a ``ping`` event and its ack (servers that speak
        the rooms contract); otherwise liveness is left to engine.io's own heartbeat.
    :param headers: extra HTTP headers for the handshake.
    :param serializer: ``"msgpack"`` speaks MessagePack packets, compatible with the
        JavaScript ``socket.io-msgpack-parser`` (the server must use it too).
    :param max_queue: events received but not yet taken by ``recv``, at most: past it,
        engine.io's reader stops reading the socket until ``recv`` catches up (one
        packet more can arrive; nothing read is dropped). While it is stopped it also
        does not answer the server's engine.io pings, as any unread frame.
    :param max_replay: events held, at most, that a recovering server replays before
        it answers the namespace CONNECT (socket.io v4 sends a recovered session's
        missed packets first). Nothing can take them before the connection opens, so
        they are held, not paced; past this many (or ``max_replay_bytes`` of packets)
        the attempt fails with :class:`~rtclient.errors.ReplayTooLong`, the resume
        position stays before them, and the session is given up (the next attempt asks
        for a new one; the application gets a ``session`` gap).
    :param max_replay_bytes: the size of those packets, at most (engine.io messages).
    """

    def __init__(
        self,
        *,
        namespace: str = "/",
        socketio_path: str = "socket.io",
        transports: tuple[str, ...] = ("websocket",),
        welcome: Literal["server", "synthesize"] = "server",
        app_ping: bool = True,
        headers: dict[str, str] | None = None,
        serializer: Literal["default", "msgpack"] = "default",
        max_queue: int = 64,
        max_replay: int = 10_000,
        max_replay_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        if max_replay < 0 or max_replay_bytes < 0:
            raise ValueError("max_replay and max_replay_bytes cannot be negative")
        self.namespace = namespace
        self.max_queue = max_queue
        self.max_replay = max_replay
        self.max_replay_bytes = max_replay_bytes
        self.socketio_path = socketio_path
        self.transports = list(transports)
        self.welcome = welcome
        self.app_ping = app_ping
        self.headers = dict(headers or {})
        if serializer not in ("default", "msgpack"):
            raise ValueError("serializer is 'default' (JSON) or 'msgpack'")
        self.serializer = serializer
        self.resume = SocketIOResume()
        """Connection state recovery's pid and offset; a Client hands its session's holder
        here (``Session.resume``), so that they are kept by the session."""
        self.recovered = False
        """Whether the server recovered the previous session on the last connect."""

    @property
    def pid(self) -> str | None:
        """The session id the server gave for connection state recovery, if any."""
        return self.resume.pid

    @property
    def offset(self) -> str | None:
        """The offset of the last event received in that session."""
        return self.resume.offset

    async def connect(
        self, url: str, *, token: str | None, open_timeout: float
    ) -> SocketIOConnection:
        """Open one connection; see :class:`rtclient.transports.base.Transport`."""
        handshake = Handshake()
        http = aiohttp.ClientSession(trace_configs=[handshake.trace])
        sio = AsyncClient(
            reconnection=False,
            handle_sigint=False,
            serializer=self.serializer,
            http_session=http,
            logger=_library_logger("socketio.client"),
            engineio_logger=_library_logger("engineio.client"),
        )
        conn = SocketIOConnection(
            sio,
            http,
            self.namespace,
            app_ping=self.app_ping,
            owner=self,
            limit=self.max_queue,
            handshake=handshake,
        )
        remember_token(token, self)  # engine.io logs the CONNECT packet that carries it
        auth: dict[str, Any] = {"token": token} if token else {}
        resume = self.resume
        sent_pid = resume.pid
        given_up = resume.given_up
        resume.attempting()
        if sent_pid is not None:
            auth.update(pid=sent_pid, offset=resume.offset)
        try:
            with conn.boundary.connecting(url):
                async with asyncio.timeout(open_timeout):
                    await sio.connect(
                        url,
                        headers=self.headers,
                        auth=auth or None,
                        transports=self.transports,
                        namespaces=[self.namespace],
                        socketio_path=self.socketio_path,
                        wait_timeout=open_timeout,
                    )
        except BaseException as exc:  # refused, failed, or cancelled (the client is closing)
            resume.failed()
            if isinstance(exc, ReplayTooLong):
                resume.give_up()
            handshake.release()
            await asyncio.shield(conn.close())
            raise
        handshake.done()
        recovered = sent_pid is not None and sio.pid == sent_pid
        resume.connected(sio.pid, recovered=recovered)
        self.recovered = recovered
        if self.welcome == "synthesize":
            welcome = {"features": [], "sid": sio.sid, "recovered": recovered}
            if sent_pid is not None or given_up is not None:
                welcome["previousPid"] = sent_pid or given_up
            conn.push_welcome({"type": "connected", "payload": welcome})
        return conn


class SocketIOConnection:
    """An open Socket.IO connection; see :class:`rtclient.transports.base.Connection`."""

    def __init__(
        self,
        sio: AsyncClient,
        http: aiohttp.ClientSession,
        namespace: str,
        *,
        app_ping: bool,
        owner: SocketIOTransport,
        limit: int | None = None,
        handshake: Handshake | None = None,
    ) -> None:
        self._owner = owner
        self._handshake = handshake
        self._sio = sio
        self._http = http
        self._ns = namespace
        self._app_ping = app_ping
        self._inbox = Inbox(limit)
        self._max_replay = owner.max_replay
        self._max_replay_bytes = owner.max_replay_bytes
        self._replay_bytes = 0
        self._replay_overflow: ReplayTooLong | None = None
        sio.eio.paced = self._paced
        sio.undecodable = self._on_undecodable
        self.boundary = Boundary("python-socketio", self.connect_failure)
        """The exception boundary (its mapping knows this connection's refusal)."""
        self._refusal: tuple[str, object] | None = None
        """The server's connect_error: its message and data."""
        self._pending_close: tuple[int, str] | None = None
        self._closing: asyncio.Event | None = None  # set once close() is done
        self._close_stale = False  # traffic came after that error (see _on_disconnect)
        sio.on("*", self._on_event, namespace=namespace)
        sio.on("disconnect", self._on_disconnect, namespace=namespace)
        sio.on("connect_error", self._on_connect_error, namespace=namespace)
        sio.on("connect", self._on_connect, namespace=namespace)
        self._connected_at: int | None = None
        """How many items the inbox held when the server's CONNECT answer came."""

    # -- Connection -------------------------------------------------------------------

    async def send(self, envelope: dict[str, Any]) -> None:
        """Emit the envelope as an event (with an ack callback when it has an id)."""
        if self._inbox.closed is not None:
            raise ConnectionLost(*self._inbox.closed)
        type_ = envelope["type"]
        request_id = envelope.get("id")
        data: Any
        if envelope.get("raw"):
            data = envelope.get("payload")
        else:
            data = dict(envelope.get("payload") or {})
            if isinstance(request_id, str) and type_ in _MESSAGE_ID_TYPES:
                data["messageId"] = request_id
        callback = (
            self._ack_callback(request_id, raw=bool(envelope.get("raw")))
            if isinstance(request_id, str)
            else None
        )
        try:
            await self._sio.emit(type_, data, namespace=self._ns, callback=callback)
        except socketio.exceptions.BadNamespaceError as exc:
            raise ConnectionLost(None, "not connected") from exc
        except (TypeError, ValueError):
            raise  # the data cannot be serialised: the caller's mistake, not the link's
        except Exception as exc:  # engine.io write failures of any kind
            raise ConnectionLost(None, f"emit failed: {type(exc).__name__}") from exc

    async def recv(self) -> object:
        """Wait for the next event (as an envelope); ProtocolError for a broken packet."""
        item = await self._inbox.get()
        if isinstance(item, ProtocolError):
            raise item
        return item

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Disconnect (idempotent) and release the HTTP session and its responses.

        On a link still open, Socket.IO's DISCONNECT and engine.io's CLOSE are written
        before the WebSocket closes: the server sees the client leave ("client namespace
        disconnect") and keeps no session for connection state recovery.
        """
        if self._closing is not None:
            # Another caller is closing (the Client's close() and the end of the link's
            # run both close it): wait for it, or a second engine.io disconnect would
            # close the WebSocket under the first one's goodbye.
            await self._closing.wait()
            if not self._http.closed:
                await self._http.close()
            return
        self._closing = asyncio.Event()
        if not self.push_closed(code, reason or "closed by the client"):
            self._sio.eio.goodbye = False  # lost or aborted: no goodbye to wait for
        try:
            async with asyncio.timeout(2.0):
                await self._sio.disconnect()
        except TimeoutError:
            self.abort()
        except Exception:  # a half-dead engine.io client: nothing more to do
            pass
        finally:
            if self._handshake is not None:
                # engine.io leaves its WebSocket response open when its reader gave up
                # on a silent server; the session's close does not release it.
                self._handshake.release()
            self._closing.set()
            if not self._http.closed:
                await self._http.close()

    def abort(self) -> None:
        """Shut the socket down at once (a dead link): recv raises, close() cleans up."""
        ws = getattr(self._sio.eio, "ws", None)
        sock = ws.get_extra_info("socket") if ws is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._sio.eio.goodbye = False
        self.push_closed(None, "aborted")

    async def ping(self) -> float | None:
        """RTT of a ``ping`` event's ack; None when the server has no app-level ping."""
        if not self._app_ping:
            return None
        if self._inbox.closed is not None:
            raise ConnectionLost(*self._inbox.closed)
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[float] = loop.create_future()
        started = time.perf_counter()

        def pong(*_: object) -> None:
            if not answered.done():
                answered.set_result(time.perf_counter() - started)

        try:
            await self._sio.emit("ping", {"ts": time.time()}, namespace=self._ns, callback=pong)
        except Exception as exc:
            raise ConnectionLost(None, "ping failed") from exc
        return await answered

    # -- inbox ----------------------------------------------------------------------

    def push(self, envelope: dict[str, Any]) -> None:
        """Queue an envelope for ``recv``."""
        self._inbox.put(envelope)

    def push_welcome(self, envelope: dict[str, Any]) -> None:
        """Queue the synthesized welcome where the server's CONNECT answer came: after
        what a recovery replayed before it, before the events read after it (in the
        same read as the answer, before ``connect`` returned). Nothing reads the inbox
        until ``connect`` returns, so that place has not moved. A welcome queued after
        those events made the application see the new session's first events before
        the ``session`` gap that says the old one was lost."""
        at = self._connected_at
        if at is None:
            self._inbox.put(envelope)
        else:
            self._inbox.insert(at, envelope)

    def push_closed(self, code: int | None, reason: str) -> bool:
        """Mark the connection closed; ``recv`` raises ConnectionLost from now on.

        False if it already was (the first close wins).
        """
        return self._inbox.close(code, reason)

    async def _paced(self, size: int) -> None:
        """engine.io's reader handled a message of ``size`` bytes: may it read on?

        Once the namespace is connected: when the inbox has room. Before the server's
        answer to CONNECT, nothing reads the inbox (``connect`` has not returned) and
        that answer comes after what a recovery replays: the reader reads on, holding
        at most ``max_replay`` events (``max_replay_bytes``), else fails the attempt.
        """
        if self._sio.refused(self._ns):
            return  # dropped (see _on_event): connect() is closing the link, read on
        if not self._sio.awaiting_namespace(self._ns):
            await self._inbox.wait_for_room()
            return
        self._replay_bytes += size
        if self._replay_overflow is not None:
            return
        if len(self._inbox) > self._max_replay:
            self._replay_overflow = ReplayTooLong(self._max_replay)
        elif self._replay_bytes > self._max_replay_bytes:
            self._replay_overflow = ReplayTooLong(self._max_replay_bytes, "bytes")
        if self._replay_overflow is not None:
            # The link ends now, in the reader, frames already buffered unread: connect()
            # is woken (a link lost before the CONNECT answer) and raises this error.
            self.abort()
            self._sio.link_lost = str(self._replay_overflow)
            await self._sio.eio.disconnect(abort=True)

    def connect_failure(self, exc: Exception) -> RtClientError | None:
        """Map a failure of python-socketio to rtclient's errors (None: not known here)."""
        if self._refusal is not None:  # the server's answer, whatever came around it
            return refusal_error(*self._refusal)
        if self._replay_overflow is not None:
            return self._replay_overflow
        if self._sio.link_lost is not None:
            # A node that died (or a proxy that went away) between the Engine.IO
            # handshake and its answer to CONNECT: a dropped connect, retried at once
            # under the backoff, as one dropped during the handshake.
            return TransportError(
                "Socket.IO connect failed: the connection was lost before the server "
                f"answered the namespace CONNECT ({self._sio.link_lost})"
            )
        if isinstance(exc, TimeoutError):
            return TransportError("Socket.IO connect timed out")
        redirected = redirect_error(exc)
        failure = self._handshake.failure if self._handshake is not None else None
        if redirected is None and failure is not None:
            redirected = redirect_error(failure)  # a long-polling request's (no chain)
        if redirected is not None:
            return redirected
        status, retry_after = _handshake_status(exc)
        if status is not None:
            return HandshakeRejected(status, retry_after=retry_after)
        if not isinstance(exc, socketio.exceptions.ConnectionError | aiohttp.ClientError):
            return None
        # "no OPEN packet" and the like are what a connection dropped mid-handshake
        # looks like too, so they are retried; a server that does not speak Socket.IO
        # at that path answers the upgrade with an HTTP error (404: fatal) instead.
        message = str(exc.args[0]) if exc.args else type(exc).__name__
        return TransportError(f"Socket.IO connect failed: {message}")

    # -- python-socketio handlers -------------------------------------------------------

    def _ack_callback(self, request_id: str, *, raw: bool) -> Any:
        def on_ack(*args: object) -> None:
            self._close_stale = True  # as for any event (see _on_disconnect)
            payload: object
            if raw:  # a generic emit: the session answers with ``args`` as they are
                payload = args[0] if len(args) == 1 and isinstance(args[0], dict) else {}
            elif len(args) == 1:
                # An argument that is not an object is an unreadable ack, as the same
                # payload on the raw wire: the session counts it MALFORMED and resends
                # (the server may have committed: it deduplicates), never a refusal.
                payload = args[0]
            else:  # no argument is an ack without a payload; several, unreadable too
                payload = list(args) if args else {}
            self._inbox.put(
                {"type": "ack", "id": request_id, "payload": payload, "args": list(args)}
            )

        return on_ack

    async def _on_event(self, event: str, *args: object) -> None:
        if self._sio.refused(self._ns):
            # After the server's CONNECT_ERROR, while connect() says goodbye: not a
            # replay (no offset is noted), and nothing would ever read it.
            return
        resume = self._owner.resume
        recovery_on = self._sio.pid is not None or resume.pid is not None
        if recovery_on and args and isinstance(args[-1], str):
            # With connection state recovery on, the server appends each event's offset.
            # A recovering server replays missed events before its CONNECT packet, so
            # the pid we asked to resume counts as "on" too.
            offset, args = args[-1], args[:-1]
            if not resume.received(offset, session_pid=self._sio.pid):
                # Delivered already in this session (live and again in a replay, or
                # replayed twice): handed on only to be counted.
                self._inbox.put(RepeatedOffset(event, offset))
                return
        payload: object = args[0] if len(args) == 1 else {"args": list(args)}
        if not isinstance(payload, dict):
            payload = {"args": list(args)}
        close_code = payload.get("closeCode") if event == "error" else None
        if isinstance(close_code, int):
            # The server says why it is about to disconnect us: the close code and
            # reason a raw WebSocket would carry (4002 TOKEN_EXPIRED, 1012, 1013 ...).
            self._pending_close = (close_code, str(payload.get("reason", "")))
            self._close_stale = False
        else:
            self._close_stale = True
        if self._owner.welcome == "synthesize":  # generic mode: the server's own event
            self._inbox.put({"type": event, "payload": payload, "own": OWN_EVENT})
        else:
            self._inbox.put({"type": event, "payload": payload})

    def _on_undecodable(self, exc: Exception) -> None:
        if self._sio.refused(self._ns):
            return  # as an event after a refusal: nothing would read it
        # Queued in order with the events around it; recv raises it (counted, reported).
        error = ProtocolError(
            f"undecodable Socket.IO packet: {type(exc).__name__}: {redact(str(exc))}"
        )
        error.__cause__ = exc
        self._inbox.put(error)

    async def _on_disconnect(self, reason: object = None) -> None:
        text = str(reason) if reason is not None else ""
        server = text == socketio.AsyncClient.reason.SERVER_DISCONNECT
        # The binding sends that error right before its disconnect. The server's own
        # disconnect (DISCONNECT or engine.io CLOSE) is the one it announced, even if
        # another handler's event or ack slipped in between. A loss of the link is that
        # close only if nothing came after the error: else the server kept the
        # connection up, and a later reset (1006) must not be taken for that close.
        if self._pending_close is not None and (server or not self._close_stale):
            code: int | None
            code, text = self._pending_close
        elif server:
            code = 1001  # the server let us go: come back (as socket.io-client advises)
        else:
            code = None  # transport closed or errored, ping timeout: abnormal
        self.push_closed(code, text)

    def _on_connect(self) -> None:
        self._connected_at = len(self._inbox)

    async def _on_connect_error(self, data: object = None) -> None:
        # The server's refusal (a CONNECT_ERROR packet) carries {"message": ...}; a
        # plain string is python-socketio reporting an engine.io failure (network).
        if isinstance(data, dict):
            message = data.get("message")
            self._refusal = (str(message) if message is not None else "", data.get("data"))


def _library_logger(name: str) -> RedactingLogger:
    """python-socketio's or engine.io's logger: each packet at DEBUG, as websockets logs
    frames (they log them at INFO, with their data), routine warnings at DEBUG too."""
    return RedactingLogger(logging.getLogger(name), quiet=_ROUTINE, info_is_debug=True)


def _handshake_status(exc: BaseException) -> tuple[int | None, float | None]:
    """Find the HTTP status of a refused handshake in the exception chain."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, aiohttp.WSServerHandshakeError):
            retry = seen.headers.get("Retry-After") if seen.headers else None
            return seen.status, parse_delay(retry, now=time.time())
        match = _STATUS.search(str(seen))
        if match:
            return int(match.group(1)), None
        seen = seen.__cause__ or seen.__context__
    return None, None

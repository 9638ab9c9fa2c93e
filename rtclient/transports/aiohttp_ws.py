"""Raw WebSocket transport on aiohttp's client (``ClientSession.ws_connect``).

The same wire as :mod:`.websocket` (subprotocol-negotiated codec, token in the
``Authorization: Bearer`` header, permessage-deflate with the decompressed size bounded
by ``max_size``), on another library: aiohttp frames and masks messages in C and writes
a frame without a task switch, which makes it the cheaper of the two per message (see
docs/benchmarks.md). One ``connect`` is one attempt on a ``ClientSession`` of its own,
closed with the connection. aiohttp's exceptions are mapped to :mod:`rtclient.errors`
here.

Two things aiohttp does differently, and what this module does about them:

- once permessage-deflate is negotiated, aiohttp compresses every message with one
  long-lived compressor (a zlib state of ~100 KiB per connection, allocated by the
  first small frame). Here, as on the websockets transport, messages under
  ``compression_threshold`` bytes go out uncompressed and larger ones are compressed
  on their own (aiohttp's per-message ``compress``: a fresh context per message, which
  RFC 7692 allows a sender; the server's messages are inflated as usual). That needs
  the writer's ``compress`` attribute set to 0 after the handshake: aiohttp has no
  public switch for it. Without that attribute, or with a threshold of 0, aiohttp
  compresses every message itself;
- pings and pongs are handled by :meth:`AiohttpConnection.recv` (autoping off), which
  is how the RTT is measured: a pong is seen only while someone reads, as with a
  reader paused by backpressure on any transport.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import re
import time
from collections import OrderedDict
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from aiohttp.http_exceptions import BadStatusLine
from websockets.exceptions import InvalidURI
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from ..codec import Codec, negotiated, offered_subprotocols
from ..errors import (
    ConnectionLost,
    HandshakeRejected,
    ProtocolError,
    RtClientError,
    TransportError,
)
from ..hints import parse_delay
from ..redact import redact
from .boundary import Boundary, bearer_headers, find_in_chain

__all__ = ["AiohttpConnection", "AiohttpTransport"]


class AiohttpTransport:
    """Opens WebSocket connections with aiohttp.

    :param codec: the codec to use (``"json"``, ``"msgpack"`` or a Codec), offered as the
        subprotocol ``rtclient.v1.<name>``; or ``codecs``: several names, in order of
        preference, for the server to choose from. A server that chooses none gets JSON.
    :param compression: offer permessage-deflate; messages under
        ``compression_threshold`` bytes are sent uncompressed (0: compress every
        message). ``compression_window_bits`` (9 to 15) bounds the server's window,
        which is what the client must hold to decompress (aiohttp compresses with the
        window the server allows it).
    :param max_size: largest incoming message in bytes, after decompression (a larger
        one closes the connection with 1009); None for no limit.
    :param close_timeout: how long :meth:`AiohttpConnection.close` waits for the
        server's close frame.
    :param options: passed on to :meth:`aiohttp.ClientSession.ws_connect`. Without
        ``proxy=``, the proxy comes from the environment as on the websockets transport
        (``ws_proxy`` / ``wss_proxy``, ``https_proxy``, ``http_proxy``, ``no_proxy``);
        aiohttp speaks HTTP(S) proxies only, so a SOCKS proxy there is a ProtocolError.
    """

    def __init__(
        self,
        *,
        codec: Codec | str | None = None,
        codecs: tuple[str, ...] | None = None,
        compression: bool = True,
        compression_threshold: int = 256,
        compression_window_bits: int = 15,
        max_size: int | None = 1024 * 1024,
        close_timeout: float = 5.0,
        **options: Any,
    ) -> None:
        if not 9 <= compression_window_bits <= 15:
            raise ValueError("compression_window_bits must be between 9 and 15")
        self._codecs = offered_subprotocols(codec, codecs)
        self._threshold = max(0, compression_threshold)
        self._close_timeout = close_timeout
        self._options: dict[str, Any] = {
            "protocols": list(self._codecs),
            "compress": compression_window_bits if compression else 0,
            "max_msg_size": max_size or 0,  # 0: no limit, in aiohttp
            "autoping": False,  # recv answers pings and reads pongs (RTT)
            "autoclose": True,
            "heartbeat": None,  # the Client runs its own heartbeat
            "timeout": aiohttp.ClientWSTimeout(ws_receive=None, ws_close=close_timeout),
            **options,
        }

    async def connect(
        self, url: str, *, token: str | None, open_timeout: float
    ) -> AiohttpConnection:
        """Open one connection; see :class:`rtclient.transports.base.Transport`."""
        headers = bearer_headers(token, self)
        options = self._options
        if "proxy" not in options:
            options = {**options, "proxy": _environment_proxy(url)}
        session = aiohttp.ClientSession()
        try:
            with _BOUNDARY.connecting(url):
                async with asyncio.timeout(open_timeout):
                    ws = await session.ws_connect(url, headers=headers, **options)
                _check_subprotocol(ws, self._codecs)
        except BaseException:
            await session.close()
            raise
        codec = negotiated(self._codecs, ws.protocol)
        return AiohttpConnection(
            session, ws, codec, threshold=self._threshold, close_timeout=self._close_timeout
        )


class AiohttpConnection:
    """An open aiohttp WebSocket; see :class:`rtclient.transports.base.Connection`."""

    batchable = True
    """It carries the raw protocol's ``batch`` frames (when the server offers them)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        codec: Codec,
        *,
        threshold: int = 0,
        close_timeout: float = 5.0,
    ) -> None:
        self._session = session
        self._ws = ws
        self.codec = codec
        self.compressed = ws.compress != 0
        """Whether permessage-deflate was negotiated."""
        self._pings: OrderedDict[bytes, tuple[float, asyncio.Future[float]]] = OrderedDict()
        self._close_timeout = close_timeout
        writer = ws._writer
        self._transport = writer.transport
        """The socket's transport, which aiohttp lets go of on close (abort needs it)."""
        self._send_lock = asyncio.Lock()
        """Held from a frame's send until it is written, even past a cancelled caller."""
        self._close_frame: tuple[int, str] | None = None
        """The server's close code and reason, once its close frame arrived."""
        self._threshold = 0
        """Compress messages of at least this many bytes ourselves (0: aiohttp decides)."""
        if self.compressed and threshold > 0 and isinstance(getattr(writer, "compress", None), int):
            writer.compress = 0  # see the module docstring
            self._threshold = threshold

    async def send(self, envelope: dict[str, Any]) -> None:
        """Encode and send one envelope."""
        frame = self.codec.encode(envelope)
        if isinstance(frame, str):
            data, opcode = frame.encode(), WSMsgType.TEXT
        else:
            data, opcode = frame, WSMsgType.BINARY
        # None: as the writer is set (uncompressed below the threshold); else the
        # negotiated window, for this message alone.
        compress = self._ws.compress if self._threshold and len(data) >= self._threshold else None
        lock = self._send_lock
        await lock.acquire()  # does not yield when free: one frame at a time, in order
        if compress is None:
            # Written before the first await (it may then wait for the buffer to drain).
            try:
                await self._ws.send_frame(data, opcode, None)
            except Exception as exc:
                raise self._lost(exc) from exc
            finally:
                lock.release()
            return
        # aiohttp compresses a large frame in its executor and writes it afterwards
        # even if this caller is cancelled meanwhile: the lock is held until it is out,
        # so that no later frame overtakes it.
        write = asyncio.ensure_future(self._ws.send_frame(data, opcode, compress))
        write.add_done_callback(self._written)
        try:
            await asyncio.shield(write)
        except Exception as exc:
            raise self._lost(exc) from exc

    def _written(self, write: asyncio.Future[None]) -> None:
        self._send_lock.release()
        if not write.cancelled():
            write.exception()  # retrieved: a cancelled caller no longer waits for it

    def _lost(self, exc: Exception | None = None) -> RtClientError:
        """Why a send failed: the server's close frame, if one came (None: a dead link)."""
        # aiohttp raises ClientConnectionResetError (an OSError) on a closing
        # transport, RuntimeError on a closed socket response; anything else goes
        # through the boundary.
        if exc is None or isinstance(exc, aiohttp.ClientError | OSError | RuntimeError):
            return ConnectionLost(*(self._close_frame or (None, "")))
        return _BOUNDARY.error(exc)

    async def recv(self) -> object:
        """Wait for the next message and decode it (ProtocolError if it is malformed)."""
        ws = self._ws
        while True:
            try:
                msg = await ws.receive()
            except Exception as exc:
                raise _BOUNDARY.error(exc) from exc
            kind = msg.type
            if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                return self.codec.decode(msg.data)
            if kind is WSMsgType.PING:
                try:
                    await ws.pong(msg.data)
                except Exception as exc:
                    self._fail_pings()
                    raise self._lost(exc) from exc
            elif kind is WSMsgType.PONG:
                self._pong(msg.data)
            elif kind is WSMsgType.CLOSE:
                # aiohttp has answered it (autoclose); the server's code and reason
                # (aiohttp says 0 for a close frame without a code: RFC 6455 says 1005).
                self._fail_pings()
                self._close_frame = (msg.data or 1005, msg.extra or "")
                raise ConnectionLost(*self._close_frame)
            else:  # CLOSING, CLOSED, ERROR: ended without a close frame from the server
                self._fail_pings()
                reason = str(msg.data) if kind is WSMsgType.ERROR else ""
                raise ConnectionLost(None, reason)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a closing handshake, then release the session and the socket."""
        try:
            if self._send_lock.locked():  # a frame still being written goes first
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._close_timeout), self._send_lock:
                        pass
            await self._ws.close(code=code, message=reason.encode())
        except Exception as exc:
            raise _BOUNDARY.error(exc) from exc
        finally:
            self._fail_pings()
            transport = self._transport
            # Over TLS the transport forgets its protocol once closed: ask only before.
            if not transport.is_closing() and transport.get_write_buffer_size():
                # The peer reads nothing: a graceful close would keep the socket open
                # for as long as the peer holds it.
                transport.abort()
            await self._session.close()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self._transport.abort()
        self._ws._response.close()  # release aiohttp's side too (idempotent)

    async def ping(self) -> float:
        """Send a ping frame; return the round-trip time in seconds."""
        loop = asyncio.get_running_loop()
        payload = os.urandom(4)
        waiter: asyncio.Future[float] = loop.create_future()
        self._pings[payload] = (loop.time(), waiter)
        try:
            try:
                await self._ws.ping(payload)
            except Exception as exc:
                raise self._lost(exc) from exc
            return await waiter
        finally:
            self._pings.pop(payload, None)

    def _pong(self, payload: bytes) -> None:
        """A pong answers its ping and every earlier one (RFC 6455 § 5.5.3)."""
        if payload not in self._pings:
            return  # unsolicited, or for a ping whose caller has given up
        now = asyncio.get_running_loop().time()
        while self._pings:
            key, (sent, waiter) = self._pings.popitem(last=False)
            if not waiter.done():
                waiter.set_result(now - sent)
            if key == payload:
                return

    def _fail_pings(self) -> None:
        while self._pings:
            _, (_, waiter) = self._pings.popitem(last=False)
            if not waiter.done():
                waiter.set_exception(ConnectionLost(None, ""))
                waiter.exception()  # retrieved: nobody may be waiting any more


def _environment_proxy(url: str) -> str | None:
    """The proxy the websockets transport would take for ``url`` from the environment."""
    try:
        proxy = get_proxy(parse_uri(url))
    except (InvalidURI, ValueError):  # an invalid URL: ws_connect says so, mapped below
        return None
    if proxy is not None and not proxy.startswith(("http://", "https://")):
        raise ProtocolError(
            f"transport='aiohttp' connects through HTTP proxies only, and the environment "
            f"names {proxy.split('://', 1)[0]}://…: use transport='websocket'"
        )
    return proxy


def _check_subprotocol(ws: aiohttp.ClientWebSocketResponse, offered: dict[str, Codec]) -> None:
    """Fail unless the server selected one of the offered subprotocols, or none.

    aiohttp ignores a subprotocol it did not offer (and goes on as if none was
    selected); RFC 6455 § 4.1 says the client must fail the connection.
    """
    selected = ws._response.headers.get("Sec-WebSocket-Protocol")
    if selected is None or selected.strip() in offered:
        return
    ws._response.close()
    raise ProtocolError(
        f"the server selected the subprotocol {selected!r}, which was not offered"
        f" (offered: {', '.join(offered)})"
    )


def redirect_error(exc: BaseException) -> ProtocolError | None:
    """A ProtocolError if aiohttp gave up following the server's redirects, else None.

    A redirect loop, or a redirect to a ``ws://`` URL (aiohttp follows only http and
    https ones), ends the same way on every attempt: fatal, as on the websockets
    transport (which stops after 10 redirects). Looked for in ``exc``'s whole chain:
    engine.io wraps aiohttp's exception in its own.
    """
    loop = find_in_chain(exc, aiohttp.TooManyRedirects)
    if loop is not None:
        return ProtocolError(
            f"too many redirects ({len(loop.history)}): the server redirects in a loop"
        )
    elsewhere = find_in_chain(exc, aiohttp.RedirectClientError)
    if elsewhere is not None:
        return ProtocolError(
            f"the server redirects to {redact(str(elsewhere))}, which aiohttp does not follow"
            " (it follows http:// and https:// redirects only); connect to that URL directly"
        )
    return None


def _aiohttp_error(exc: Exception) -> RtClientError | None:
    """The rtclient exception for an aiohttp or network one (None: not known here)."""
    redirected = redirect_error(exc)
    if redirected is not None:
        return redirected
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        if exc.status != 101:
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            return HandshakeRejected(
                exc.status, retry_after=parse_delay(retry_after, now=time.time())
            )
        return ProtocolError(f"WebSocket handshake failed: {exc.message}")
    if isinstance(exc, aiohttp.InvalidURL):
        return ProtocolError(f"invalid WebSocket URL: {redact(str(exc))}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        # The connection ended before a response (a TCP proxy in front of a restarting
        # server), or could not be made: a network failure.
        return TransportError(f"connection failed: {exc!r}")
    if isinstance(exc, aiohttp.ClientResponseError):
        if _not_text(_bad_status_line(exc)):
            # WebSocket frames (or other binary) where the status line belongs: the
            # response was lost on the way and the server carried on (a proxy that
            # swallowed it), not a foreign protocol. The websockets transport waits
            # for a line that never ends there and retries; so does this one.
            return TransportError(f"connection failed: the handshake response was lost ({exc!r})")
        return ProtocolError(f"not a WebSocket server: {exc.message}")
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
        return TransportError(f"connection failed: {exc!r}")
    if isinstance(exc, ValueError):  # yarl's own URL errors
        return ProtocolError(f"invalid WebSocket URL: {redact(str(exc))}")
    return None


_QUOTED_BYTES = re.compile(r"b'(?:[^'\\]|\\.)*'" + r'|b"(?:[^"\\]|\\.)*"')


def _bad_status_line(exc: BaseException) -> bytes | None:
    """The bytes an aiohttp ``BadStatusLine`` in ``exc``'s causes complains about, if any.

    aiohttp's C parser leaves ``line`` empty and quotes the bytes in its message.
    """
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, BadStatusLine):
        cause = cause.__cause__
    if cause is None:
        return None
    if cause.line:
        return cause.line.encode("latin-1", "replace")
    quoted = _QUOTED_BYTES.search(str(cause.message))
    if quoted is None:
        return None
    with contextlib.suppress(ValueError, SyntaxError):
        value = ast.literal_eval(quoted.group())
        if isinstance(value, bytes):
            return value
    return None


def _not_text(line: bytes | None) -> bool:
    """True if ``line`` starts with a byte no status line (nor any text) starts with."""
    return line is not None and line != b"" and not 0x20 <= line[0] < 0x7F


_BOUNDARY = Boundary("aiohttp", _aiohttp_error)

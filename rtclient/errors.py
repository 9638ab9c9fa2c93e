"""Exceptions raised by rtclient.

Every exception rtclient raises derives from :class:`RtClientError`; exceptions of
the libraries underneath (websockets, python-socketio, aiohttp) never leak past the
transports. The tree::

    RtClientError
    ├── ClientClosed             the client was closed; pending calls fail with it
    ├── ConnectionFailed         gave up reconnecting (max_attempts / max_elapsed)
    ├── InvalidState             a transition the state tables forbid (a bug in the caller)
    ├── AuthError                the server refused the credentials (fatal unless noted)
    │   ├── Unauthorized         4001: invalid or missing token
    │   ├── TokenExpired         4002: the provider keeps handing out expired tokens
    │   ├── TokenProviderError   the token provider failed (retried with backoff)
    │   └── Forbidden            4003 / HTTP 403 / FORBIDDEN reply
    ├── ProtocolError            the peer broke the protocol (mismatch, malformed frame)
    ├── TLSError                 the TLS handshake failed: certificate, version, not TLS (fatal)
    ├── RequestRejected          the server answered a request with an error code
    │   └── NotJoined            sending to a room the client has not joined
    ├── AckTimeout               no ack within the caller's timeout (the message stays queued)
    ├── OutboxFull               the outbox is at its limit and the policy is ``raise``
    ├── MessageDropped           dropped from a full outbox (policy ``drop_oldest``)
    ├── MessageExpired           the message's TTL passed before it was acknowledged
    ├── TransportError           a connection attempt or a connection failed
    │   ├── HandshakeRejected    the server refused the upgrade with an HTTP status
    │   ├── ConnectRefused       a Socket.IO connect_error that is not about credentials
    │   ├── ReplayTooLong        a Socket.IO recovery replayed more than max_replay
    │   └── ConnectionLost       an open connection closed (code, reason)
    └── StoreError               the durable store failed (rtclient.store)
        ├── StoreCorrupt         not an rtclient store, or damaged
        ├── StoreVersionError    written by an unknown schema version
        └── StoreLocked          another client holds the store

A token is never part of an exception's text.
"""

from __future__ import annotations

from .redact import peer_text

__all__ = [
    "AckTimeout",
    "AuthError",
    "ClientClosed",
    "ConnectRefused",
    "ConnectionFailed",
    "ConnectionLost",
    "Forbidden",
    "HandshakeRejected",
    "InvalidState",
    "MessageDropped",
    "MessageExpired",
    "NotJoined",
    "OutboxFull",
    "ProtocolError",
    "ReplayTooLong",
    "RequestRejected",
    "RtClientError",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "StoreVersionError",
    "TLSError",
    "TokenExpired",
    "TokenProviderError",
    "TransportError",
    "Unauthorized",
]


class RtClientError(Exception):
    """Base class of every exception rtclient raises."""


class ClientClosed(RtClientError):
    """The client is closed, or was closed while the call was pending."""


class ConnectionFailed(RtClientError):
    """The reconnect policy gave up (``max_attempts`` or ``max_elapsed`` reached)."""


class InvalidState(RtClientError):
    """A transition that a state table does not allow (a bug in the caller, not the peer)."""


class AuthError(RtClientError):
    """The server refused the credentials."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Unauthorized(AuthError):
    """Invalid or missing credentials (close 4001, HTTP 401). Fatal: no retry."""


class TokenExpired(AuthError):
    """The token expired and fresh tokens did not help (close 4002 repeatedly)."""


class TokenProviderError(AuthError):
    """The token provider failed to produce a token. Retried with backoff."""


class Forbidden(AuthError):
    """Valid credentials, access refused (close 4003, HTTP 403, ``FORBIDDEN``)."""


class ProtocolError(RtClientError):
    """The peer does not speak the expected protocol, or sent something malformed."""


class TLSError(RtClientError):
    """The TLS handshake failed; fatal, because retrying does not change a certificate.

    ``kind`` says what failed: ``"certificate"`` (verification: unknown issuer,
    expired, wrong host), ``"version"`` (no TLS version both sides accept),
    ``"not_tls"`` (the server does not speak TLS: a ``wss://`` or ``https://`` URL for
    a plain server) or ``"handshake"`` (the two sides' settings do not match: no cipher,
    signature algorithm or server name in common; any other refusal, such as the
    server's ``internal_error`` alert, is a retried TransportError). ``reason`` is
    OpenSSL's reason (``"WRONG_VERSION_NUMBER"``, the verification message, …).
    Not a :class:`TransportError`: those are retried.
    """

    def __init__(self, message: str, *, kind: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason


class RequestRejected(RtClientError):
    """The server answered a request with ``success: false``.

    ``code`` is the server's error code (``BAD_REQUEST``, ``NOT_IN_ROOM``, …).
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class NotJoined(RequestRejected):
    """The room has not been joined (locally, or the server says ``NOT_IN_ROOM``)."""

    def __init__(self, room: str) -> None:
        super().__init__("NOT_IN_ROOM", f"join {room!r} first")
        self.room = room


class AckTimeout(RtClientError):
    """No ack arrived within the caller's ``timeout``.

    The message is still in the outbox and will still be delivered exactly once;
    use ``ttl=`` to abandon a message instead.
    """


class OutboxFull(RtClientError):
    """The outbox is full (by count or bytes) and the overflow policy is ``raise``."""


class MessageDropped(RtClientError):
    """The message was dropped to make room in a full outbox (``drop_oldest``)."""


class MessageExpired(RtClientError):
    """The message's TTL passed before the server acknowledged it.

    ``maybe_delivered`` is true when it had already been transmitted at least once:
    the server may have committed it even though no ack came back.
    """

    def __init__(self, message_id: str, *, maybe_delivered: bool) -> None:
        super().__init__(
            f"message {message_id} expired"
            + (" (it may have been delivered)" if maybe_delivered else " (never sent)")
        )
        self.message_id = message_id
        self.maybe_delivered = maybe_delivered


class TransportError(RtClientError):
    """A connection attempt failed or an open connection broke."""


class HandshakeRejected(TransportError):
    """The server answered the upgrade request with an HTTP error status."""

    def __init__(self, status: int, *, retry_after: float | None = None) -> None:
        super().__init__(f"handshake rejected with HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class ConnectRefused(TransportError):
    """The server refused the connection for a reason that is not the credentials.

    A Socket.IO ``connect_error`` rtclient does not recognise as an authentication
    refusal (``"server busy"``, a node refusing during a drain): retried under the
    backoff, and with several URLs the next one is tried. ``message`` is the server's
    text (redacted); ``retry_after`` its ``data.retryAfter`` hint in seconds, if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        message = peer_text(message)
        super().__init__(f"connection refused by the server: {message}")
        self.message = message
        self.retry_after = retry_after


class ReplayTooLong(TransportError):
    """A Socket.IO recovery replayed more events before its CONNECT answer than the
    transport holds (``SocketIOTransport(max_replay=..., max_replay_bytes=...)``);
    ``limit`` is the one exceeded, in ``unit`` (``"events"`` or ``"bytes"``).

    Those events cannot be handed on before the connection opens, and are not held
    past ``limit``: the attempt fails, the resume position stays before them, and the
    session is given up: the next attempt asks for a new one and the application gets a
    ``session`` gap (retried under the backoff, as any dropped connect).
    """

    def __init__(self, limit: int, unit: str = "events") -> None:
        super().__init__(
            f"Socket.IO recovery replayed more than {limit} {unit} before the server "
            "answered the CONNECT: session given up"
        )
        self.limit = limit
        self.unit = unit


class ConnectionLost(TransportError):
    """An open connection closed. ``code`` is None when no close frame arrived."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        # The reason is the server's text (a close frame, a Socket.IO refusal): one
        # that echoes the token must not carry it into errors and logs.
        reason = peer_text(reason)
        text = f"connection closed ({code if code is not None else 'no close frame'})"
        super().__init__(f"{text}: {reason}" if reason else text)
        self.code = code
        self.reason = reason


class StoreError(RtClientError):
    """The store cannot be used: not open, closed, failed to write, or unusable file."""


class StoreCorrupt(StoreError):
    """The file is not an SQLite database, not an rtclient store, or fails its check."""


class StoreVersionError(StoreError):
    """The file was written by a schema version this rtclient cannot read."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        super().__init__(
            f"{path}: store schema version {found}, this rtclient reads up to {supported}"
            " (written by a newer rtclient?)"
        )
        self.path = path
        self.found = found
        self.supported = supported


class StoreLocked(StoreError):
    """Another store holds the file: one store per client identity."""

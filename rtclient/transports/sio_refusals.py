"""What a Socket.IO ``connect_error`` means: an authentication refusal, or not.

A server refuses a namespace connect with a CONNECT_ERROR packet
``{"message": <text>, "data": <anything>}`` (socket.io: ``next(err)`` in a middleware,
with ``err.data``; python-socketio: ``ConnectionRefusedError(message, data)``).
Only a refusal of the credentials is fatal; anything else (``"server busy"``, a node
refusing during a drain, fake_server's ``INTERNAL``) is the server's passing state and
is retried under the backoff, like an HTTP 503 at the handshake.

====================================================================  ==============
connect_error                                                         becomes
====================================================================  ==============
message ``INVALID_TOKEN`` / ``AUTHENTICATION_REQUIRED`` /             close 4001:
``AUTHENTICATION_FAILED`` (docs/protocol.md), ``unauthorized``,       Unauthorized
``not authorized``, ``invalid token``, ``authentication error``,
``invalid credentials``, ``credentials required``
message ``TOKEN_EXPIRED``, ``jwt expired``                             close 4002: fresh token
message ``USER_DISABLED`` / ``FORBIDDEN``                              close 4003: Forbidden
``data.code`` 4001 / 401 / ``unauthorized`` / ``invalid_token`` /      as the message
``credentials_required`` (or ``data.type`` ``UnauthorizedError``);     column above
4002 / ``token_expired``; 4003 / 403 / ``forbidden`` / ``user_disabled``
message ``Invalid namespace`` (socket.io), ``Unable to connect``       ProtocolError (fatal)
(python-socketio): the server has no such namespace
anything else                                                         ConnectRefused (retried)
====================================================================  ==============

Messages and codes compare case-insensitively, with ``_``, ``-`` and runs of spaces
alike (``INVALID_TOKEN`` is ``invalid token``). The message is the peer's text: it goes
into errors and logs only through :func:`rtclient.redact.peer_text` (a server may echo
the token it refuses), cut to 200 characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import ConnectionLost, ConnectRefused, ProtocolError, RtClientError
from ..hints import parse_delay
from ..redact import peer_text

__all__ = ["refusal_error"]

_MAX_TEXT = 200
_SEPARATORS = re.compile(r"[\s_\-]+")
_AUTH: dict[str, int] = {
    "invalid token": 4001,
    "authentication required": 4001,
    "authentication failed": 4001,
    "authentication error": 4001,
    "unauthorized": 4001,
    "unauthorised": 4001,
    "not authorized": 4001,
    "not authorised": 4001,
    "invalid credentials": 4001,
    "credentials required": 4001,
    "unauthorizederror": 4001,
    "token expired": 4002,
    "jwt expired": 4002,
    "user disabled": 4003,
    "forbidden": 4003,
}
_CODES: dict[int, int] = {4001: 4001, 401: 4001, 4002: 4002, 4003: 4003, 403: 4003}
_NOT_SERVED = frozenset({"invalid namespace", "unable to connect"})


def _norm(text: str) -> str:
    return _SEPARATORS.sub(" ", text.strip().lower())


def _data_code(data: object) -> int | None:
    """The close code that ``data.code`` (or ``data.type``) names, if it names one."""
    if not isinstance(data, Mapping):
        return None
    for key in ("code", "type"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            if value in _CODES:
                return _CODES[value]
        elif isinstance(value, str):
            code = _AUTH.get(_norm(value))
            if code is not None:
                return code
    return None


def refusal_error(message: str, data: object = None) -> RtClientError:
    """The error a ``connect_error`` with ``message`` (and ``data``) stands for.

    A :class:`~rtclient.errors.ConnectionLost` with 4001/4002/4003 for a refusal of the
    credentials (classified as those close codes are), a :class:`ProtocolError` for a
    namespace the server does not serve, else :class:`ConnectRefused` (retryable; a
    ``data.retryAfter`` in seconds is its hint).
    """
    text = peer_text(message[:_MAX_TEXT])
    key = _norm(message)
    code = _AUTH.get(key) or _data_code(data)
    if code is not None:
        return ConnectionLost(code, text)
    if key in _NOT_SERVED:
        return ProtocolError(f"Socket.IO connect refused: {text} (no such namespace?)")
    hint = parse_delay(data.get("retryAfter")) if isinstance(data, Mapping) else None
    return ConnectRefused(text, retry_after=hint)

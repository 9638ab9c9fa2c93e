"""Error codes, close codes and the exception a request handler raises to refuse.

Exceptions::

    RequestError          a request is refused; becomes an error ack or ``error`` event
    auth.AuthFailure      a token is refused (defined in ``fake_server.auth``)
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["CloseCode", "CloseReason", "ErrorCode", "RequestError"]


class ErrorCode(enum.StrEnum):
    """The ``code`` of an error ack or ``error`` event (``docs/protocol.md``)."""

    BAD_REQUEST = "BAD_REQUEST"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    FORBIDDEN = "FORBIDDEN"
    NOT_IN_ROOM = "NOT_IN_ROOM"
    RATE_LIMIT = "RATE_LIMIT"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    INVALID_TOKEN = "INVALID_TOKEN"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    USER_MISMATCH = "USER_MISMATCH"
    INTERNAL = "INTERNAL"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server uses."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4001
    TOKEN_EXPIRED = 4002
    FORBIDDEN = 4003


class CloseReason(enum.StrEnum):
    """The reason text that goes with a 4001/4002/4003 close."""

    INVALID_TOKEN = "INVALID_TOKEN"
    AUTHENTICATION_REQUIRED = "AUTHENTICATION_REQUIRED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    USER_DISABLED = "USER_DISABLED"
    FORBIDDEN = "FORBIDDEN"


class RequestError(Exception):
    """A request is refused with ``code``; ``extra`` fields join the error payload.

    Raised by validation and request handlers, turned into an error ack (when the
    request had an ``id``) or an ``error`` event by the hub.  The message is sent to
    the peer, so it must never contain a token or other secret.
    """

    def __init__(self, code: ErrorCode, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    def payload(self) -> dict[str, Any]:
        """The ``error`` object of the wire format."""
        return {"code": self.code.value, "message": self.message, **self.extra}

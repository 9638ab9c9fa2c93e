"""rtclient.transports.sio_refusals: what a Socket.IO connect_error means (no sockets)."""

from __future__ import annotations

import pytest

from rtclient.errors import ConnectionLost, ConnectRefused, ProtocolError
from rtclient.failures import Action, classify
from rtclient.redact import remember_token
from rtclient.transports.sio_refusals import refusal_error


@pytest.mark.parametrize(
    ("message", "data", "action", "code"),
    [
        ("INVALID_TOKEN", None, Action.FATAL, 4001),
        ("invalid-token", None, Action.FATAL, 4001),
        ("  Not   Authorized ", None, Action.FATAL, 4001),
        ("Unauthorized", None, Action.FATAL, 4001),
        ("TOKEN_EXPIRED", None, Action.REFRESH, 4002),
        ("jwt expired", {"code": "invalid_token"}, Action.REFRESH, 4002),
        ("FORBIDDEN", None, Action.FATAL, 4003),
        ("nope", {"code": 4001}, Action.FATAL, 4001),
        ("nope", {"code": "credentials_required"}, Action.FATAL, 4001),
        ("nope", {"type": "UnauthorizedError"}, Action.FATAL, 4001),
        ("nope", {"code": "TOKEN_EXPIRED"}, Action.REFRESH, 4002),
        ("nope", {"code": 403}, Action.FATAL, 4003),
        ("nope", {"code": "user_disabled"}, Action.FATAL, 4003),
    ],
)
def test_refusals_of_the_credentials_are_close_codes(
    message: str, data: object, action: Action, code: int
) -> None:
    error = refusal_error(message, data)
    assert isinstance(error, ConnectionLost) and error.code == code
    assert classify(error).action is action


@pytest.mark.parametrize(
    ("message", "data"),
    [
        ("server busy", None),
        ("INTERNAL", None),  # fake_server's handler failed: docs/protocol.md says retry
        ("", None),
        ("Connection rejected by server", None),
        ("nope", {"code": 500}),
        ("nope", {"code": True}),  # not a number
        ("nope", {"code": ["unauthorized"]}),
        ("nope", ["unauthorized"]),
        ("nope", "unauthorized"),  # data that is not an object names nothing
    ],
)
def test_anything_else_is_retried(message: str, data: object) -> None:
    error = refusal_error(message, data)
    assert isinstance(error, ConnectRefused)
    verdict = classify(error)
    assert verdict.action is Action.RETRY and verdict.retry_after is None


@pytest.mark.parametrize("message", ["Invalid namespace", "Unable to connect"])
def test_a_namespace_the_server_does_not_serve_is_a_protocol_error(message: str) -> None:
    error = refusal_error(message)
    assert isinstance(error, ProtocolError)
    assert classify(error).action is Action.FATAL


@pytest.mark.parametrize(
    ("hint", "expected"), [(2, 2.0), ("0.5", 0.5), (-1, None), ("soon", None), (1e999, None)]
)
def test_retry_after_in_data_is_the_hint(hint: object, expected: float | None) -> None:
    error = refusal_error("server busy", {"retryAfter": hint})
    assert classify(error).retry_after == expected


def test_the_peer_text_is_cut_and_redacted() -> None:
    token = "refusal-test-token-abcdefghijklmnop"
    remember_token(token, test_the_peer_text_is_cut_and_redacted)
    error = refusal_error(f"busy for {token} " + "x" * 1000)
    assert isinstance(error, ConnectRefused)
    assert token not in str(error) and token not in error.message
    assert len(error.message) <= 220

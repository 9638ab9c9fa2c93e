"""Unit tests for rtclient.failures.classify: the table in its docstring."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtclient.errors import (
    AuthError,
    ConnectionLost,
    Forbidden,
    HandshakeRejected,
    ProtocolError,
    RtClientError,
    TokenExpired,
    TransportError,
    Unauthorized,
)
from rtclient.failures import Action, Verdict, classify

RETRY_CLOSE_CODES = [None, 1000, 1001, 1005, 1006, 1009, 1011, 1012, 1013, 1014]
PROTOCOL_CLOSE_CODES = [1002, 1003, 1007, 1008, 1010]


# -- close codes ------------------------------------------------------------------------


@pytest.mark.parametrize("code", RETRY_CLOSE_CODES)
def test_retryable_close_codes(code: int | None) -> None:
    exc = ConnectionLost(code, "bye")
    verdict = classify(exc)
    assert isinstance(verdict, Verdict)
    assert verdict.action is Action.RETRY
    assert verdict.error is exc
    assert verdict.retry_after is None


@pytest.mark.parametrize(
    ("reason", "retry_after"),
    [("retryAfter=2.5", 2.5), ("try again later; retryAfter=3", 3.0), ("", None)],
)
def test_close_1013_carries_retry_after(reason: str, retry_after: float | None) -> None:
    exc = ConnectionLost(1013, reason)
    verdict = classify(exc)
    assert verdict.action is Action.RETRY
    assert verdict.error is exc
    assert verdict.retry_after == retry_after


@pytest.mark.parametrize("code", PROTOCOL_CLOSE_CODES)
def test_protocol_violation_close_codes_are_fatal(code: int) -> None:
    verdict = classify(ConnectionLost(code, "bad frame"))
    assert verdict.action is Action.FATAL
    assert type(verdict.error) is ProtocolError
    assert str(code) in str(verdict.error)


@pytest.mark.parametrize(
    ("code", "error_type", "action"),
    [
        (4001, Unauthorized, Action.FATAL),
        (3000, Unauthorized, Action.FATAL),
        (4002, TokenExpired, Action.REFRESH),
        (4003, Forbidden, Action.FATAL),
        (3003, Forbidden, Action.FATAL),
    ],
)
def test_auth_close_codes(code: int, error_type: type[AuthError], action: Action) -> None:
    verdict = classify(ConnectionLost(code, "server says no"))
    assert verdict.action is action
    assert type(verdict.error) is error_type
    assert isinstance(verdict.error, AuthError)
    assert verdict.error.code == code
    assert "server says no" in str(verdict.error)
    assert verdict.retry_after is None


@pytest.mark.parametrize("code", [4001, 4002, 4003, 3000, 3003])
def test_auth_close_without_reason_still_has_a_message(code: int) -> None:
    verdict = classify(ConnectionLost(code))
    assert isinstance(verdict.error, AuthError)
    assert str(verdict.error)


@pytest.mark.parametrize("code", [4000, 4004, 4005, 4400, 4999])
def test_other_application_close_codes_are_fatal_protocol_errors(code: int) -> None:
    verdict = classify(ConnectionLost(code, "whatever"))
    assert verdict.action is Action.FATAL
    assert type(verdict.error) is ProtocolError
    assert str(code) in str(verdict.error)


@given(st.integers(min_value=4000, max_value=4999).filter(lambda c: c not in (4001, 4002, 4003)))
def test_any_other_4xxx_close_is_fatal_protocol_error(code: int) -> None:
    verdict = classify(ConnectionLost(code))
    assert (verdict.action, type(verdict.error)) == (Action.FATAL, ProtocolError)


@given(st.integers(min_value=1000, max_value=2999).filter(lambda c: c not in PROTOCOL_CLOSE_CODES))
def test_any_non_protocol_rfc_close_is_retried(code: int) -> None:
    assert classify(ConnectionLost(code)).action is Action.RETRY


# -- handshake statuses ----------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
@pytest.mark.parametrize("retry_after", [None, 7.0])
def test_retryable_handshake_statuses(status: int, retry_after: float | None) -> None:
    exc = HandshakeRejected(status, retry_after=retry_after)
    verdict = classify(exc)
    assert verdict.action is Action.RETRY
    assert verdict.error is exc
    assert verdict.retry_after == retry_after


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(401, Unauthorized), (403, Forbidden), (404, ProtocolError), (400, ProtocolError)],
)
def test_fatal_handshake_statuses(status: int, error_type: type[RtClientError]) -> None:
    verdict = classify(HandshakeRejected(status, retry_after=5.0))
    assert verdict.action is Action.FATAL
    assert type(verdict.error) is error_type
    assert str(status) in str(verdict.error)


@pytest.mark.parametrize(("status", "error_type"), [(401, Unauthorized), (403, Forbidden)])
def test_auth_handshake_errors_carry_the_status(status: int, error_type: type[AuthError]) -> None:
    error = classify(HandshakeRejected(status)).error
    assert isinstance(error, error_type)
    assert error.code == status


# -- other exceptions ------------------------------------------------------------------


def test_plain_transport_error_is_retried() -> None:
    exc = TransportError("connection refused")
    verdict = classify(exc)
    assert (verdict.action, verdict.error, verdict.retry_after) == (Action.RETRY, exc, None)


@pytest.mark.parametrize("exc", [ValueError("boom"), RuntimeError("x"), KeyError("k")])
def test_non_rtclient_exception_is_fatal_protocol_error(exc: BaseException) -> None:
    verdict = classify(exc)
    assert verdict.action is Action.FATAL
    assert type(verdict.error) is ProtocolError
    assert type(exc).__name__ in str(verdict.error)


@pytest.mark.parametrize("exc", [ProtocolError("garbage"), Unauthorized("no", code=4001)])
def test_other_rtclient_errors_are_fatal_and_passed_through(exc: RtClientError) -> None:
    verdict = classify(exc)
    assert (verdict.action, verdict.error) == (Action.FATAL, exc)


def test_every_verdict_error_is_an_rtclient_error() -> None:
    samples: list[BaseException] = [
        *(ConnectionLost(c) for c in [None, 1000, 1002, 3000, 3003, 4001, 4002, 4003, 4005]),
        *(HandshakeRejected(s) for s in [400, 401, 403, 404, 408, 429, 500]),
        TransportError("x"),
        OSError("y"),
    ]
    for exc in samples:
        assert isinstance(classify(exc).error, RtClientError)

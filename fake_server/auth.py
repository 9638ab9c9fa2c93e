"""JWT issue and verification (HS256 pinned, ``exp`` required, small leeway).

Tokens are secrets: they never appear in log records, reprs or exception text.
PyJWT's exceptions are mapped here to :class:`AuthFailure` and go no further.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from .errors import CloseCode, ErrorCode

__all__ = ["ALGORITHM", "MAX_TOKEN_LENGTH", "AuthFailure", "Principal", "TokenAuthority"]

ALGORITHM = "HS256"
MAX_TOKEN_LENGTH = 8192
"""Longer tokens are refused unread: nothing legitimate is that big."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for."""

    user_id: str
    roles: frozenset[str]
    expires_at: float
    issued_at: float | None


class AuthFailure(Exception):
    """A token was refused.

    ``code`` is ``INVALID_TOKEN`` or ``TOKEN_EXPIRED``; ``close_code`` the matching
    WebSocket close code (4001 or 4002).  The text says why, never what the token was.
    """

    def __init__(self, code: ErrorCode, why: str) -> None:
        super().__init__(f"{code.value}: {why}")
        self.code = code
        self.why = why

    @property
    def close_code(self) -> CloseCode:
        if self.code is ErrorCode.TOKEN_EXPIRED:
            return CloseCode.TOKEN_EXPIRED
        return CloseCode.UNAUTHORIZED


class TokenAuthority:
    """Issues and verifies the server's tokens with one HS256 secret.

    ``revoke_issued_before(t)`` makes every token whose ``iat`` is older than ``t``
    (or that has no ``iat``) count as expired, like a key rotation.
    """

    __slots__ = ("_leeway", "_not_before", "_secret")

    def __init__(self, secret: str, *, leeway: float) -> None:
        self._secret = secret
        self._leeway = leeway
        self._not_before: float | None = None

    def __repr__(self) -> str:
        return f"TokenAuthority(leeway={self._leeway!r})"

    @property
    def leeway(self) -> float:
        return self._leeway

    def issue(
        self, user_id: str, *, now: float, ttl: float = 3600.0, roles: Iterable[str] = ()
    ) -> str:
        """Return a signed token for ``user_id`` valid for ``ttl`` seconds from ``now``."""
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        claims: dict[str, Any] = {
            "sub": user_id,
            # NumericDate may be fractional (RFC 7519 section 2).  A fractional iat keeps
            # tokens minted right after revoke_issued_before() valid, and a fractional
            # exp lets tests use sub-second lifetimes.
            "iat": round(now, 6),
            "exp": round(now + ttl, 3),
            "roles": list(roles),
        }
        with _short_keys_allowed():
            return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def revoke_issued_before(self, moment: float) -> None:
        """Refuse (as expired) every token issued before ``moment``."""
        self._not_before = moment

    def verify(self, token: object, *, now: float) -> Principal:
        """Return the token's principal or raise :class:`AuthFailure`."""
        if not isinstance(token, str) or not token:
            raise AuthFailure(ErrorCode.INVALID_TOKEN, "no token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthFailure(ErrorCode.INVALID_TOKEN, "token too long")
        try:
            with _short_keys_allowed():
                claims = jwt.decode(
                    token,
                    self._secret,
                    algorithms=[ALGORITHM],
                    leeway=self._leeway,
                    options={"require": ["exp", "sub"], "verify_exp": False},
                )
        except jwt.InvalidTokenError as exc:
            # The exception text of PyJWT never includes the token; the type name is
            # enough to say why (bad signature, wrong algorithm, missing claim ...).
            raise AuthFailure(ErrorCode.INVALID_TOKEN, type(exc).__name__) from None
        return self._principal(claims, now)

    def _principal(self, claims: dict[str, Any], now: float) -> Principal:
        sub, exp, iat = claims.get("sub"), claims.get("exp"), claims.get("iat")
        roles = claims.get("roles", [])
        if not isinstance(sub, str) or not 1 <= len(sub) <= 64:
            raise AuthFailure(ErrorCode.INVALID_TOKEN, "bad sub claim")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise AuthFailure(ErrorCode.INVALID_TOKEN, "bad exp claim")
        if iat is not None and (not isinstance(iat, int | float) or isinstance(iat, bool)):
            raise AuthFailure(ErrorCode.INVALID_TOKEN, "bad iat claim")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthFailure(ErrorCode.INVALID_TOKEN, "bad roles claim")
        # exp is checked here rather than by PyJWT so that "now" is the caller's clock.
        if float(exp) + self._leeway <= now:
            raise AuthFailure(ErrorCode.TOKEN_EXPIRED, "token expired")
        if self._not_before is not None and (iat is None or float(iat) < self._not_before):
            raise AuthFailure(ErrorCode.TOKEN_EXPIRED, "token revoked by expire_tokens")
        return Principal(
            user_id=sub,
            roles=frozenset(roles),
            expires_at=float(exp),
            issued_at=None if iat is None else float(iat),
        )


@contextmanager
def _short_keys_allowed() -> Iterator[None]:
    # Test and demo secrets are short ("s"); PyJWT's key-length advice is noise here
    # and would fail suites that run with warnings as errors.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        yield

"""Where a transport's foreign exceptions become rtclient's, and what the transports share.

Each transport has one :class:`Boundary`, built on a function that knows its library's
exceptions. Everything raised below it leaves as an :mod:`rtclient.errors` exception
``from`` the original:

- an rtclient exception passes as it is;
- during a connection attempt, a TLS failure anywhere in the exception's chain
  becomes :class:`~rtclient.errors.TLSError` (fatal: a certificate or a TLS version
  does not fix itself) — see :func:`tls_error`; a refusal that is not about
  certificates, versions or settings (``internal_error``, an alert without a known
  reason) becomes a TransportError that says TLS (retried);
- a missing optional dependency (``ImportError``: a SOCKS proxy in the environment
  without python-socks) becomes :class:`~rtclient.errors.ProtocolError` (fatal);
- the transport's mapping function decides the rest; what it does not know becomes a
  :class:`~rtclient.errors.TransportError` (retried) that names the exception.

Exception texts are redacted (:func:`rtclient.redact.redact`) on the way through.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from ..errors import ProtocolError, RtClientError, TLSError, TransportError
from ..redact import redact, remember_token

__all__ = ["Boundary", "bearer_headers", "find_in_chain", "tls_error"]

_E = TypeVar("_E", bound=BaseException)
Mapper = Callable[[Exception], RtClientError | None]

# OpenSSL's reasons when the peer answered a ClientHello with something that is not TLS.
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"}
)
_VERSION = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNKNOWN_PROTOCOL",
        "VERSION_TOO_LOW",
        "VERSION_TOO_HIGH",
    }
)
# Alerts that say the two sides' TLS settings do not match (no cipher, signature
# algorithm or server name in common): configuration, as lasting as a certificate.
# Any other refusal (internal_error, a bad record MAC, an alert with no reason) may be
# the server's passing trouble, and is retried like a reset.
_CONFIGURATION = frozenset(
    {
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "NO_SHARED_CIPHER",
        "NO_CIPHERS_AVAILABLE",
        "NO_SUITABLE_SIGNATURE_ALGORITHM",
        "TLSV1_ALERT_INSUFFICIENT_SECURITY",
        "TLSV1_ALERT_UNRECOGNIZED_NAME",
        "TLSV1_UNRECOGNIZED_NAME",
    }
)


class Boundary:
    """The exception boundary of one transport.

    ``with boundary:`` around a call on the library maps what escapes it;
    ``with boundary.connecting():`` does the same for a connection attempt, where a
    TLS failure is recognised too. On a per-message path, ``raise
    boundary.error(exc) from exc`` in an ``except`` clause is the same mapping
    without a context manager.
    """

    def __init__(self, library: str, mapper: Mapper) -> None:
        self.library = library
        self._mapper = mapper
        self._connecting = (_Connecting(self, secure=False), _Connecting(self, secure=True))

    def error(
        self, exc: Exception, *, connecting: bool = False, secure: bool = False
    ) -> RtClientError:
        """The rtclient exception for ``exc`` (raise it ``from exc``)."""
        if isinstance(exc, RtClientError):
            return exc
        if connecting:
            tls = tls_error(exc)
            if tls is not None and tls.kind == "handshake" and tls.reason not in _CONFIGURATION:
                return TransportError(f"{tls} (retried: it may be the server's passing trouble)")
            if tls is not None:
                return tls
        if isinstance(exc, ImportError):
            return ProtocolError(
                f"{self.library} needs a package that is not installed: {exc}"
                " (a SOCKS proxy in the environment needs python-socks)"
            )
        mapped = self._mapper(exc)
        if mapped is None:
            mapped = TransportError(
                f"{self.library} failed: {type(exc).__name__}: {redact(str(exc))}"
            )
        if secure and type(mapped) is TransportError and _in_chain(exc, ConnectionResetError):
            # A plain server that resets a ClientHello instead of answering it
            # (websockets' server does) looks like any reset: retried, but said.
            return TransportError(
                f"{mapped}; reset while connecting over TLS: if the server does not speak"
                " TLS, use a ws:// or http:// URL"
            )
        return mapped

    def connecting(self, url: str = "") -> _Connecting:
        """A context manager for a connection attempt to ``url`` (TLS failures recognised)."""
        return self._connecting[url.startswith(("wss:", "https:"))]

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, RtClientError):
            raise self.error(exc) from exc


class _Connecting:
    def __init__(self, boundary: Boundary, *, secure: bool) -> None:
        self._boundary = boundary
        self._secure = secure

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, RtClientError):
            raise self._boundary.error(exc, connecting=True, secure=self._secure) from exc


def tls_error(exc: BaseException) -> TLSError | None:
    """A TLSError if a TLS handshake failure is in ``exc``'s chain, else None.

    Certificate failures, no TLS version both sides accept, and a peer that does not
    speak TLS at all (``wss://`` / ``https://`` to a plain server) are recognised. An
    ssl error that only says the connection ended (EOF) is a network failure: None.
    """
    innermost: Exception | None = None
    seen: BaseException | None = exc
    for _ in range(16):  # chains are short; a cycle must not hang us
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            innermost = seen  # aiohttp wraps OpenSSL's exception in one of its own
        seen = seen.__cause__ or seen.__context__
    if innermost is None or isinstance(innermost, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return None
    if isinstance(innermost, ssl.SSLCertVerificationError):
        detail = getattr(innermost, "verify_message", None) or str(innermost)
        return TLSError(
            f"TLS certificate verification failed: {detail}", kind="certificate", reason=detail
        )
    if isinstance(innermost, ssl.CertificateError):
        return TLSError(f"TLS certificate verification failed: {innermost}", kind="certificate")
    reason = getattr(innermost, "reason", None) or ""
    if reason in _NOT_TLS:
        return TLSError(
            f"TLS handshake failed: the server does not speak TLS ({reason}); a plain"
            " server takes a ws:// or http:// URL",
            kind="not_tls",
            reason=reason,
        )
    if reason in _VERSION:
        return TLSError(
            f"TLS handshake failed: no TLS version that both sides accept ({reason})",
            kind="version",
            reason=reason,
        )
    return TLSError(
        f"TLS handshake failed: {reason or innermost}", kind="handshake", reason=reason or None
    )


def _in_chain(exc: BaseException, kind: type[BaseException]) -> bool:
    return find_in_chain(exc, kind) is not None


def find_in_chain(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of ``kind`` in ``exc``'s chain (``exc`` included), else None."""
    seen: BaseException | None = exc
    for _ in range(16):  # chains are short; a cycle must not hang us
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def bearer_headers(token: str | None, owner: object) -> dict[str, str] | None:
    """The ``Authorization: Bearer`` header for ``token`` (None without a token).

    The token is registered with the redactor first (for as long as ``owner``, the
    transport, lives): a library that logs the headers (websockets at DEBUG) never
    shows a piece of it.
    """
    if not token:
        return None
    remember_token(token, owner)
    return {"Authorization": f"Bearer {token}"}

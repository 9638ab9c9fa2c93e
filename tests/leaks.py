"""Helpers for tests about leaked sockets: a connection caught mid-accept, and a check
that the garbage collector found nothing left open."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import warnings
from collections.abc import Iterator

ACCEPT_STEPS = range(4)
"""Loop iterations between a connect and a server's close to try: asyncio accepts in one
iteration and builds the transport in the next, so one of these lands in between."""


def no_resource_warnings() -> contextlib.AbstractContextManager[None]:
    """Fail if a socket or transport made inside was left for the garbage collector."""
    return _no_resource_warnings()


@contextlib.contextmanager
def _no_resource_warnings() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks


async def connect_mid_accept(host: str, port: int, steps: int) -> socket.socket:
    """A TCP connection to ``host:port``, ``steps`` loop iterations old (non-blocking).

    The connect itself is synchronous (loopback: the kernel completes it at once), so
    the only iterations between it and the caller's next statement are ``steps``.
    """
    sock = socket.create_connection((host, port))
    sock.setblocking(False)
    for _ in range(steps):
        await asyncio.sleep(0)
    return sock


async def http_get(sock: socket.socket, path: str = "/health", timeout: float = 5.0) -> bytes:
    """Send a GET on ``sock`` and read until the server closes it; closes ``sock``."""
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()
    data = b""
    try:
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionError):
                await loop.sock_sendall(sock, request)
                while chunk := await loop.sock_recv(sock, 65536):
                    data += chunk
    finally:
        sock.close()
    return data

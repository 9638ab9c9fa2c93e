"""Stop a listening asyncio server without leaking the connection it was accepting.

asyncio accepts a connection in the listening socket's read callback and builds its
transport in a task that runs one loop iteration later
(``BaseSelectorEventLoop._accept_connection2``). If ``Server.close()`` runs in between,
building the transport fails (``Server._attach`` asserts that the server still has its
sockets), asyncio drops the error silently unless in debug mode, and the accepted socket
is never closed: the client waits on a connection nobody serves, and the fd stays open
until the garbage collector finds it (``ResourceWarning: unclosed transport``). Every
selector event loop from CPython 3.11 to 3.14 (CPython issue gh-109564, open; gh-155934,
merged on main, closes the dropped socket but still drops the connection). A server
restarted while clients reconnect in a loop meets that window sooner or later.

:func:`stop_accepting` closes the window: it takes the listening sockets out of the
selector first, then lets the connections already accepted get their transports and
reach their protocol. Close the server after it, and handle those connections like any
other (close them, or serve them).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

__all__ = ["stop_accepting", "stop_site"]


async def stop_accepting(server: asyncio.AbstractServer) -> None:
    """Accept no more connections on ``server``; return once those accepted are served.

    After it returns, every connection asyncio accepted has its transport, and on a
    plain TCP or Unix-socket server its protocol's ``connection_made`` has run (a
    streams server's ``client_connected_cb`` has been called). On a TLS server the
    protocol hears of a connection only once its handshake is done, later: such a
    connection is not leaked (its transport exists) but can reach the protocol after
    this returns. The server still owns its sockets: call ``server.close()`` next.
    """
    if not server.is_serving():
        return
    loop = asyncio.get_running_loop()
    for sock in getattr(server, "sockets", ()):
        # A loop without readers (Windows' proactor) accepts another way.
        with contextlib.suppress(NotImplementedError, ValueError, OSError):
            loop.remove_reader(sock.fileno())
    # One iteration for the accept tasks already scheduled to build their transports,
    # one for the transports' connection_made.
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def stop_site(site: web.BaseSite) -> None:
    """``site.stop()``, after :func:`stop_accepting` on its asyncio server.

    aiohttp has no public accessor for a site's server: this reads ``BaseSite._server``
    and fails loudly (``TypeError``) if a release renames it or keeps something else
    there, rather than quietly stop without the fix.
    """
    try:
        server: Any = site._server
    except AttributeError:
        server = _MISSING
    if isinstance(server, asyncio.AbstractServer):
        await stop_accepting(server)
    elif server is not None:
        raise TypeError(
            f"{type(site).__name__}._server is {server!r}, not an asyncio server: "
            "fake_server.listening does not know this aiohttp release"
        )
    await site.stop()


_MISSING = object()

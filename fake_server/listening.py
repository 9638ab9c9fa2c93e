"""Stop a listening asyncio server without leaking the connection it was accepting.

asyncio accepts a connection in the listening socket's read callback and builds its
transport in a task that runs one loop iteration later
(``BaseSelectorEventLoop._accept_connection2``). If ``Server.close()`` runs in between,
building the transport fails (``Server._attach`` asserts that the server still has its
sockets), asyncio drops the error silently unless in debug mode, and the accepted socket
is never closed: the client waits on a connection nobody serves, and the fd stays open
until the garbage collector finds it (``ResourceWarning: unclosed transport``). CPython
3.11 to 3.13, every selector event loop (CPython issue gh-109564, open). A server
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

    After it returns, every connection asyncio accepted has its transport and its
    protocol's ``connection_made`` has run (a streams server's ``client_connected_cb``
    has been called). The server still owns its sockets: call ``server.close()`` next.
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
    """``site.stop()``, after :func:`stop_accepting` on its asyncio server."""
    server: Any = getattr(site, "_server", None)  # aiohttp has no public accessor
    if isinstance(server, asyncio.AbstractServer):
        await stop_accepting(server)
    await site.stop()

"""A connection accepted just as the server stops listening is served or closed, never leaked.

asyncio builds an accepted connection's transport one loop iteration after accepting it;
a listening server closed in between used to drop it unclosed (a ResourceWarning later,
and a client left waiting on a socket nobody reads). See ``fake_server.listening``.
"""

from __future__ import annotations

import pytest

from fake_server import FakeServer

from ..leaks import ACCEPT_STEPS, connect_mid_accept, http_get, no_resource_warnings
from .conftest import SECRET


@pytest.mark.parametrize("steps", ACCEPT_STEPS)
async def test_a_connection_accepted_during_restart_is_served(steps: int) -> None:
    async with FakeServer(secret=SECRET) as server:
        with no_resource_warnings():
            sock = await connect_mid_accept(server.host, server.port, steps)
            await server.restart()
            answer = await http_get(sock)
        # Not yet accepted when the listening socket closed: reset by the kernel, as a
        # real server's would be. Accepted: served by the restarted server.
        assert answer == b"" or answer.startswith(b"HTTP/1.1 200"), answer[:80]


@pytest.mark.parametrize("steps", ACCEPT_STEPS)
async def test_a_connection_accepted_during_stop_is_closed(steps: int) -> None:
    with no_resource_warnings():
        server = FakeServer(secret=SECRET)
        await server.start()
        sock = await connect_mid_accept(server.host, server.port, steps)
        await server.stop()
        await http_get(sock)  # an answer or a close, not a hang

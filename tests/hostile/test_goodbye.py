"""How an rtclient Socket.IO connection leaves a server when the application closes it."""

from __future__ import annotations

from rtclient.testing import HostileServer, wait_until

from .conftest import MakeClient


async def test_close_says_goodbye_before_the_websocket_closes(
    srv: HostileServer, make_client: MakeClient
) -> None:
    """Socket.IO's DISCONNECT, then engine.io's CLOSE, then the close frame: the server
    sees the client leave, not a transport close (which keeps a recovery session)."""
    client, _ = await make_client("socketio")
    await client.close()
    (conn,) = srv.connections
    await wait_until(lambda: "close" in conn.farewell, timeout=5)
    assert conn.farewell == ["41", "1", "close"]

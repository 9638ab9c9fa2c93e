"""No piece of a token in any log, exception text or repr, on every transport.

The scan is for fragments, not whole tokens: every 8-character window of every token
the session used (and of its bytes as websockets prints binary frames: hex pairs).
websockets shortens long frames in its DEBUG log to their start and end, which cut
the ``"token":"`` prefix that a pattern would look for and left the signature's end.
"""

from __future__ import annotations

import asyncio
import logging
import traceback

import pytest

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState, RequestRejected, Unauthorized
from rtclient.testing import HostileConnection, HostileServer, Request, wait_until

WINDOW = 8

# The servers' own loggers: fake_server is the peer here, not the code under test.
_SERVER_LOGGERS = ("fake_server", "aiohttp.access", "aiohttp.server", "aiohttp.web")


def fragments(token: str) -> set[str]:
    """Every 8-character window of the token, as text and as websockets' hex dump."""
    raw = token.encode()
    found = {token[i : i + WINDOW] for i in range(len(token) - WINDOW + 1)}
    found |= {
        " ".join(f"{b:02x}" for b in raw[i : i + WINDOW]) for i in range(len(raw) - WINDOW + 1)
    }
    return found


def record_texts(records: list[logging.LogRecord]) -> list[str]:
    texts = []
    for record in records:
        if record.name.startswith(_SERVER_LOGGERS):
            continue
        texts.append(f"{record.name}: {record.getMessage()}")
        if record.exc_info and record.exc_info[1] is not None:
            texts.append("".join(traceback.format_exception(record.exc_info[1])))
    return texts


def leaks(texts: list[str], tokens: list[str]) -> list[tuple[str, str]]:
    found = []
    for token in tokens:
        for piece in fragments(token):
            found += [(piece, text) for text in texts if piece in text]
    return found


@pytest.mark.timeout(60)
async def test_no_token_fragment_in_debug_logs_errors_or_reprs_on_any_transport(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    issued: list[str] = []
    texts: list[str] = []

    def provider() -> str:
        # Short-lived: the client renews it in band (token:refresh) at half its life,
        # every 0.25 s (the server's leeway keeps a token good 2 s past its exp).
        issued.append(server.issue_token("alice", ttl=0.5))
        return issued[-1]

    setups = [
        ("websocket", "json"),
        ("websocket", "msgpack"),
        ("aiohttp", "json"),
        ("aiohttp", "msgpack"),
        ("socketio", "json"),
    ]
    for transport, codec in setups:
        url = server.sio_url if transport == "socketio" else server.ws_url
        client = Client(
            url,
            token=provider,
            transport=transport,  # type: ignore[arg-type]
            codec=codec,
            backoff=Backoff(base=0.01, cap=0.1),
            ping_interval=0.05,
            ping_timeout=1.0,
        )
        async with client:
            await client.join("lobby")
            await client.send("lobby", f"hello over {transport}/{codec}")
            await wait_until(lambda c=client: c.stats()["in_band_refreshes"] >= 2, timeout=15)  # type: ignore[misc]
            await server.expire_tokens()  # 4002: a fresh token in a new handshake
            await wait_until(lambda c=client: c.stats()["token_refreshes"] >= 1)  # type: ignore[misc]
            await client.wait_for(ConnectionState.CONNECTED)
            texts += [repr(client), repr(client._transport), repr(client._conn)]
        # A refused token: its error and the client's repr.
        bad = issued[-1][:-12] + "x" * 12  # a valid-looking JWT with a broken signature
        issued.append(bad)
        refused = Client(url, token=bad, transport=transport, backoff=Backoff(base=0.01))  # type: ignore[arg-type]
        with pytest.raises(Exception) as info:
            await refused.connect()
        texts += [str(info.value), repr(info.value), repr(refused)]
        texts.append("".join(traceback.format_exception(info.value)))

    texts += record_texts(caplog.records)
    assert len(issued) >= 5 * 4
    # The scan can find something: the log does carry the frames and headers.
    assert any("token:refresh" in t for t in texts)
    assert any("Authorization" in t for t in texts)
    found = leaks(texts, issued)
    assert not found, found[:5]


@pytest.mark.timeout(30)
async def test_socketio_logs_packets_at_debug_as_the_raw_transports_do(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    # python-socketio and engine.io log every packet, with its data, at INFO. A bot
    # logging at INFO (logging.basicConfig(level=logging.INFO)) must not get each
    # message's content in its log, nor pay for the token scan of each packet.
    caplog.set_level(logging.INFO)
    token = server.issue_token("alice")
    async with Client(server.sio_url, token=token, transport="socketio") as client:
        await client.join("lobby")
        await client.send("lobby", "private words")
    chatter = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith(("socketio", "engineio")) and r.levelno == logging.INFO
    ]
    assert not chatter, chatter[:5]


@pytest.mark.parametrize("transport", ["websocket", "aiohttp", "socketio"])
async def test_a_server_that_echoes_the_token_in_its_refusal_does_not_put_it_in_the_error(
    transport: str,
) -> None:
    # A close reason or a Socket.IO refusal is the server's text: one that says
    # "invalid token <the token>" must not carry it into Unauthorized and its log lines.
    token = "Zq3vN8uR1xWm5KpT0aLbYc7dHe2fGi9j"  # no pattern would recognise it
    async with HostileServer() as srv:

        async def refuse(conn: HostileConnection) -> None:
            await conn.open()
            await conn.close(4001, f"INVALID_TOKEN {token[-20:]}")

        srv.script(refuse)
        client = Client(srv.url_for(transport), token=token, transport=transport)  # type: ignore[arg-type]
        with pytest.raises(Unauthorized) as info:
            async with asyncio.timeout(5):
                await client.connect()
    texts = [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
    assert "INVALID_TOKEN" in texts[0]  # the server's words stay, its piece of the token not
    assert not leaks(texts, [token]), texts[0]


@pytest.mark.parametrize("transport", ["websocket", "socketio"])
async def test_a_server_that_echoes_the_token_in_a_rejection_or_error_event_is_redacted(
    transport: str,
) -> None:
    token = "Zq3vN8uR1xWm5KpT0aLbYc7dHe2fGi9j"
    piece = token[-20:]
    async with HostileServer() as srv:

        async def refuse(conn: HostileConnection, req: Request) -> None:
            await conn.emit("error", {"code": "AUTH_NOTE", "message": f"your token {piece}"})
            await conn.reject(req, "ROOM_FULL", f"not with token {piece}")

        srv.on("room:join", refuse)
        errors: list[str] = []
        async with Client(srv.url_for(transport), token=token, transport=transport) as client:  # type: ignore[arg-type]
            client.on("error", lambda e: errors.append(f"{e.code}: {e.message}"))
            with pytest.raises(RequestRejected) as info:
                await client.join("lobby")
            await wait_until(lambda: any("AUTH_NOTE" in e for e in errors))
    texts = [str(info.value), info.value.message, *errors]
    assert "ROOM_FULL" in texts[0]
    assert not leaks(texts, [token]), texts

"""permessage-deflate with a threshold: one extension per connection, its compressor lazy."""

from __future__ import annotations

import random

import pytest
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode

from rtclient.transports.deflate import deflate_factory


def _negotiate(threshold: int = 256) -> tuple[object, PerMessageDeflate]:
    """The client's negotiated extension and the server's, as websockets would make them."""
    client_factory = deflate_factory(threshold=threshold)
    server_factory = ServerPerMessageDeflateFactory()
    response, server_ext = server_factory.process_request_params(
        client_factory.get_request_params(), []
    )
    return client_factory.process_response_params(response, []), server_ext


def test_a_connection_gets_no_compressor_until_a_message_needs_one() -> None:
    client_ext, server_ext = _negotiate()
    inner = client_ext.inner  # type: ignore[attr-defined]
    assert isinstance(inner, PerMessageDeflate)
    assert not hasattr(inner, "encoder")  # issue 19: ~150 KB per connection otherwise
    small = client_ext.encode(Frame(Opcode.TEXT, b'{"type":"chat:send"}'))  # type: ignore[attr-defined]
    assert not small.rsv1 and not hasattr(inner, "encoder")
    assert server_ext.decode(small).data == b'{"type":"chat:send"}'


def test_large_messages_are_compressed_with_context_takeover() -> None:
    client_ext, server_ext = _negotiate()
    text = b"On my way to the deploy review; numbers in 10 min. " * 20
    for _ in range(3):  # the same stream: each later message refers to the earlier ones
        frame = client_ext.encode(Frame(Opcode.TEXT, text))  # type: ignore[attr-defined]
        assert frame.rsv1 and len(frame.data) < len(text) // 4
        assert server_ext.decode(frame).data == text
        small = client_ext.encode(Frame(Opcode.TEXT, b"short"))  # type: ignore[attr-defined]
        assert not small.rsv1 and server_ext.decode(small).data == b"short"


def test_fragmented_large_message_and_incoming_frames() -> None:
    client_ext, server_ext = _negotiate()
    first = client_ext.encode(Frame(Opcode.TEXT, b"a" * 300, fin=False))  # type: ignore[attr-defined]
    rest = client_ext.encode(Frame(Opcode.CONT, b"b" * 300))  # type: ignore[attr-defined]
    assert first.rsv1 and not rest.rsv1
    assert server_ext.decode(first).data + server_ext.decode(rest).data == b"a" * 300 + b"b" * 300
    incoming = server_ext.encode(Frame(Opcode.TEXT, b"c" * 1000))
    assert client_ext.decode(incoming).data == b"c" * 1000  # type: ignore[attr-defined]


@pytest.mark.parametrize("client_no_context_takeover", [False, True])
@pytest.mark.parametrize(("server_bits", "client_bits"), [(None, None), (9, 10), (12, 11)])
def test_the_late_compressor_makes_websockets_own_stream(
    client_no_context_takeover: bool, server_bits: int | None, client_bits: int | None
) -> None:
    """RFC 7692 as negotiated: the compressor made on the first large message has the
    negotiated window and takeover, so every compressed frame is byte for byte the one
    websockets' own extension (compressor made with the connection) would send."""
    factory = deflate_factory(window_bits=15)
    server = ServerPerMessageDeflateFactory(
        client_no_context_takeover=client_no_context_takeover,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )
    response, server_ext = server.process_request_params(factory.get_request_params(), [])
    client_ext = factory.process_response_params(response, [])
    reference = factory.offer.process_response_params(response, [])  # type: ignore[attr-defined]
    block = random.Random(19).randbytes(1500)
    # Repeats 1,500 bytes back: within a 15-bit window, beyond a 10-bit one.
    for text in (b"tiny", block + block, b"ok " * 200, block + block):
        frame = client_ext.encode(Frame(Opcode.TEXT, text))  # type: ignore[attr-defined]
        if len(text) >= 256:
            assert bytes(frame.data) == bytes(reference.encode(Frame(Opcode.TEXT, text)).data)
        assert server_ext.decode(frame).data == text
        incoming = server_ext.encode(Frame(Opcode.TEXT, text))
        assert client_ext.decode(incoming).data == text  # type: ignore[attr-defined]

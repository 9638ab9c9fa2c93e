"""permessage-deflate with a threshold: one extension per connection, its compressor lazy."""

from __future__ import annotations

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

"""permessage-deflate for the WebSocket transport, with a size threshold.

websockets compresses every message once the extension is negotiated. RFC 7692 lets
a sender leave any message uncompressed (RSV1 clear), so small frames — where deflate
costs more CPU than it saves bytes — go out as they are. Incoming frames are
decompressed by websockets, bounded by ``max_size`` (a zip bomb closes with 1009).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from websockets.extensions.base import ClientExtensionFactory, Extension
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.frames import CTRL_OPCODES, Frame, Opcode
from websockets.typing import ExtensionName, ExtensionParameter

__all__ = ["deflate_factory"]


class _ThresholdDeflate(Extension):
    """Leaves messages under ``threshold`` bytes uncompressed; otherwise ``inner`` does it.

    A wrapper, not a copy: the PerMessageDeflate that websockets negotiated is the only
    one. Its compressor (~150 KB of zlib state at 15 bits) is made on the first message
    that is compressed, not with the connection: most of a bot's messages are under the
    threshold, and a compressor per connection, made and freed on every reconnect among
    the connection's other allocations, left holes that kept the process's C heap
    growing (issue 19). Until then nothing has gone through it, so starting it late
    produces the same stream.
    """

    name = ExtensionName("permessage-deflate")

    def __init__(self, inner: PerMessageDeflate, threshold: int) -> None:
        self.inner = inner
        self.threshold = threshold
        self._skipping = False
        if not inner.local_no_context_takeover:
            del inner.encoder  # made by PerMessageDeflate.__init__ a moment ago, unused

    def __repr__(self) -> str:
        return f"_ThresholdDeflate({self.inner!r}, threshold={self.threshold})"

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        return self.inner.decode(frame, max_size=max_size)

    def encode(self, frame: Frame) -> Frame:
        if frame.opcode in CTRL_OPCODES:
            return frame
        if frame.opcode is not Opcode.CONT:  # a new message starts
            self._skipping = frame.fin and len(frame.data) < self.threshold
            # (With no_context_takeover websockets makes one per message itself.)
            inner = self.inner
            if not (self._skipping or inner.local_no_context_takeover or hasattr(inner, "encoder")):
                inner.encoder = zlib.compressobj(
                    wbits=-inner.local_max_window_bits, **inner.compress_settings
                )
        return frame if self._skipping else self.inner.encode(frame)


class _Factory(ClientExtensionFactory):
    """websockets' permessage-deflate offer, its negotiated extension wrapped."""

    name = ExtensionName("permessage-deflate")

    def __init__(self, offer: ClientPerMessageDeflateFactory, threshold: int) -> None:
        self.offer = offer
        self.threshold = threshold

    def get_request_params(self) -> Sequence[ExtensionParameter]:
        return self.offer.get_request_params()

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> Extension:
        negotiated = self.offer.process_response_params(params, accepted_extensions)
        return _ThresholdDeflate(negotiated, self.threshold)


def deflate_factory(*, threshold: int = 256, window_bits: int = 15) -> ClientExtensionFactory:
    """A permessage-deflate offer: both directions' windows at most ``window_bits``."""
    if not 9 <= window_bits <= 15:
        raise ValueError("window_bits must be between 9 and 15")
    # 15 is the default: asking for it explicitly would oblige the server to echo it,
    # which some (aiohttp) do not.
    offer = ClientPerMessageDeflateFactory(
        server_max_window_bits=None if window_bits == 15 else window_bits,
        client_max_window_bits=True if window_bits == 15 else window_bits,
        compress_settings={"memLevel": 5},
    )
    return _Factory(offer, max(0, threshold))

"""permessage-deflate for the WebSocket transport, with a size threshold.

websockets compresses every message once the extension is negotiated. RFC 7692 lets
a sender leave any message uncompressed (RSV1 clear), so small frames — where deflate
costs more CPU than it saves bytes — go out as they are. Incoming frames are
decompressed by websockets, bounded by ``max_size`` (a zip bomb closes with 1009).
"""

from __future__ import annotations

from collections.abc import Sequence

from websockets.extensions.base import ClientExtensionFactory, Extension
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.frames import CTRL_OPCODES, Frame, Opcode
from websockets.typing import ExtensionParameter

__all__ = ["deflate_factory"]


class _ThresholdDeflate(PerMessageDeflate):
    """PerMessageDeflate that leaves messages under ``threshold`` bytes uncompressed."""

    threshold = 0
    _skipping = False

    def encode(self, frame: Frame) -> Frame:
        if frame.opcode in CTRL_OPCODES:
            return frame
        if frame.opcode is not Opcode.CONT:  # a new message starts
            self._skipping = frame.fin and len(frame.data) < self.threshold
        return frame if self._skipping else super().encode(frame)


class _Factory(ClientPerMessageDeflateFactory):
    threshold = 0

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> PerMessageDeflate:
        negotiated = super().process_response_params(params, accepted_extensions)
        extension = _ThresholdDeflate(
            negotiated.remote_no_context_takeover,
            negotiated.local_no_context_takeover,
            negotiated.remote_max_window_bits,
            negotiated.local_max_window_bits,
            dict(negotiated.compress_settings),
        )
        extension.threshold = self.threshold
        return extension


def deflate_factory(*, threshold: int = 256, window_bits: int = 15) -> ClientExtensionFactory:
    """A permessage-deflate offer: both directions' windows at most ``window_bits``."""
    if not 9 <= window_bits <= 15:
        raise ValueError("window_bits must be between 9 and 15")
    # 15 is the default: asking for it explicitly would oblige the server to echo it,
    # which some (aiohttp) do not.
    factory = _Factory(
        server_max_window_bits=None if window_bits == 15 else window_bits,
        client_max_window_bits=True if window_bits == 15 else window_bits,
        compress_settings={"memLevel": 5},
    )
    factory.threshold = max(0, threshold)
    return factory

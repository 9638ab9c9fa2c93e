"""Adapters: generic mode's reading of a plain WebSocket server's own envelope.

:mod:`rtclient.adapters.base` documents the interface (sans-I/O: frames in, items out)
and what each level of adapter buys; two adapters ship:

- :class:`JsonEnvelope`: the seed guide's ``{"type", "payload"}`` JSON frames, the
  default (no acks; acks for servers that echo an id, when configured);
- :class:`NatsJetStream`: NATS over WebSocket with JetStream — acks (PubAck, with
  the stream sequence) and resume positions (a consumer from a stream sequence).
"""

from .base import Acked, Adapter, Closing, Frame, Incoming, Ready, Received, Refused, Reply, Reset
from .envelope import JsonEnvelope
from .nats import NatsJetStream

__all__ = [
    "Acked",
    "Adapter",
    "Closing",
    "Frame",
    "Incoming",
    "JsonEnvelope",
    "NatsJetStream",
    "Ready",
    "Received",
    "Refused",
    "Reply",
    "Reset",
]

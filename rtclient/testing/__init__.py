"""Test helpers for code built on rtclient (or on anything that speaks TCP).

:class:`FaultProxy` is a loopback TCP proxy that injects network faults — latency,
bandwidth limits, blackholes, resets, slow closes, truncation, fragmentation — modelled on
Shopify's Toxiproxy, in-process and without a control API. See :mod:`.proxy` for usage
and :mod:`.toxics` for what each toxic does.
"""

from ._link import ProxyStats
from .proxy import FaultProxy, ToxicHandle
from .toxics import (
    Bandwidth,
    Blackhole,
    Direction,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    Stream,
    Toxic,
)

__all__ = [
    "Bandwidth",
    "Blackhole",
    "Direction",
    "FaultProxy",
    "Latency",
    "LimitData",
    "ProxyStats",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Stream",
    "Toxic",
    "ToxicHandle",
]

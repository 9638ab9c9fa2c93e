"""Test helpers for code built on rtclient (or on anything that speaks TCP).

:class:`FaultProxy` is a loopback TCP proxy that injects network faults — latency,
bandwidth limits, blackholes, resets, slow closes, truncation, fragmentation — modelled on
Shopify's Toxiproxy, in-process and without a control API. See :mod:`.proxy` for usage
and :mod:`.toxics` for what each toxic does.

:class:`HostileServer` is a server a test scripts to misbehave: any HTTP answer,
frame or close code at a chosen moment, over raw WebSocket and Socket.IO, on top of a
well-behaved default that speaks the rooms contract (see :mod:`.hostile`).

:func:`wait_until` and :class:`Inbox` help tests wait without fixed sleeps;
:mod:`.plugin` is the pytest plugin (fixtures ``fake_server``, ``fault_proxy``,
``make_rt_client``, ``rt_client``, ``rt_cluster``, ``rt_balancer``); :mod:`.chaos` records
a run, breaks the network on purpose and checks that nothing was lost, doubled or
reordered.

:class:`Cluster` starts a real redis-server and N ``rtclient serve`` node processes for a
test, and kills, restarts, drains and partitions them (:mod:`.cluster`);
:class:`Balancer` puts haproxy in front of them (:mod:`.balancer`).
"""

from ._link import ProxyStats
from .balancer import Balancer
from .cluster import Cluster, NodeFailed, NodeProcess
from .hostile import HandshakeRequest, HostileServer, Request
from .hostile_conn import HostileConnection
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
from .waiting import Inbox, wait_until

__all__ = [
    "Balancer",
    "Bandwidth",
    "Blackhole",
    "Cluster",
    "Direction",
    "FaultProxy",
    "HandshakeRequest",
    "HostileConnection",
    "HostileServer",
    "Inbox",
    "Latency",
    "LimitData",
    "NodeFailed",
    "NodeProcess",
    "ProxyStats",
    "Request",
    "ResetPeer",
    "Slicer",
    "SlowClose",
    "Stream",
    "Toxic",
    "ToxicHandle",
    "wait_until",
]

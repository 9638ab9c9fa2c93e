"""Chaos testing for rtclient: record a run, break the network on purpose, check the promises.

- :mod:`.history`: records of every send, ack, delivery, gap and state change;
- :mod:`.checker`: :func:`check` turns a history into a :class:`Report` of anomalies
  (lost, duplicated, reordered, unannounced gaps, …);
- :mod:`.faults`: every FaultProxy toxic and FakeServer fault as a coroutine;
- :mod:`.lab`: a FakeServer, a FaultProxy and bots on both transports, recorded;
- :mod:`.soak`: :func:`run_soak`, seeded random faults against a lab, then the check;
- :mod:`.cluster_lab`: the same over a :class:`~rtclient.testing.cluster.Cluster` of node
  processes (:func:`run_cluster_soak`: nodes killed, drained, cut off from Redis).

The lab needs ``fake_server`` (it ships with rtclient).
"""

from .checker import KINDS, Anomaly, Report, check
from .cluster_lab import CLUSTER_FAULTS, ClusterFault, ClusterLab, run_cluster_soak
from .faults import EPOCH_FAULTS, FAULTS, Fault, calm
from .fleet import Bot, Figures, Fleet, LabConfig, percentile, recovery_times
from .history import (
    Acked,
    Announced,
    Delivered,
    History,
    Joined,
    QualityMoved,
    SendFailed,
    Sent,
    StateMoved,
)
from .lab import Lab
from .soak import SoakResult, run_soak

__all__ = [
    "CLUSTER_FAULTS",
    "EPOCH_FAULTS",
    "FAULTS",
    "KINDS",
    "Acked",
    "Announced",
    "Anomaly",
    "Bot",
    "ClusterFault",
    "ClusterLab",
    "Delivered",
    "Fault",
    "Figures",
    "Fleet",
    "History",
    "Joined",
    "Lab",
    "LabConfig",
    "QualityMoved",
    "Report",
    "SendFailed",
    "Sent",
    "SoakResult",
    "StateMoved",
    "calm",
    "check",
    "percentile",
    "recovery_times",
    "run_cluster_soak",
    "run_soak",
]

"""Chaos testing for rtclient: record a run, break the network on purpose, check the promises.

- :mod:`.history`: records of every send, ack, delivery, gap and state change;
- :mod:`.checker`: :func:`check` turns a history into a :class:`Report` of anomalies
  (lost, duplicated, reordered, unannounced gaps, …);
- :mod:`.faults`: every FaultProxy toxic and FakeServer fault as a coroutine;
- :mod:`.lab`: a FakeServer, a FaultProxy and bots on both transports, recorded;
- :mod:`.soak`: :func:`run_soak`, seeded random faults against a lab, then the check.

The lab needs ``fake_server`` (it ships with rtclient).
"""

from .checker import KINDS, Anomaly, Report, check
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
    "EPOCH_FAULTS",
    "FAULTS",
    "KINDS",
    "Acked",
    "Announced",
    "Anomaly",
    "Bot",
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
    "run_soak",
]

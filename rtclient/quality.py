"""Connection quality from RTT samples: RFC 6298 smoothing, windowed percentiles, levels.

Pure: samples and outcomes come in as numbers. Two kinds of input:

- heartbeat round trips (:meth:`QualityTracker.pong`) and missed pongs
  (:meth:`QualityTracker.missed`) — these decide the level;
- ack round trips of messages sent once (:meth:`QualityTracker.ack_rtt`; Karn's rule: a
  retransmitted message gives no sample) — these feed only SRTT / RTTVAR, and so the
  retransmission timeout, because an ack's round trip also counts the server's queue.

The level follows the seed guide — ``good`` under 100 ms, ``degraded`` under 300 ms,
``poor`` from 300 ms or when pongs go missing — judged on the (high) median of the last
``window`` heartbeat RTTs (one slow sample does not move it, and the median is always
a real sample, so a sudden change of latency moves the level in one step), with
hysteresis: a level
is entered when the median crosses its threshold, and left for a better one only once
the median is ``hysteresis`` (20 %) below that threshold.
"""

from __future__ import annotations

import enum
import statistics
from collections import deque
from dataclasses import dataclass

__all__ = ["QualityLevel", "QualitySnapshot", "QualityTracker"]

ALPHA = 1 / 8
BETA = 1 / 4


class QualityLevel(enum.Enum):
    """How good the link is."""

    UNKNOWN = "unknown"
    GOOD = "good"
    DEGRADED = "degraded"
    POOR = "poor"


@dataclass(frozen=True, slots=True)
class QualitySnapshot:
    """The link's quality now. Times are in seconds; None before the first sample."""

    level: QualityLevel
    srtt: float | None
    rttvar: float | None
    rto: float | None
    p50: float | None
    p95: float | None
    samples: int
    missed_ratio: float


class QualityTracker:
    """Keeps the RTT statistics; :meth:`pong`, :meth:`missed` return a new level or None."""

    def __init__(
        self,
        *,
        good_below: float = 0.100,
        poor_from: float = 0.300,
        hysteresis: float = 0.2,
        window: int = 8,
        rto_floor: float = 0.2,
        rto_cap: float = 60.0,
    ) -> None:
        if not 0 < good_below < poor_from or not 0 <= hysteresis < 1 or window < 1:
            raise ValueError("need 0 < good_below < poor_from, 0 <= hysteresis < 1, window >= 1")
        self.good_below = good_below
        self.poor_from = poor_from
        self.hysteresis = hysteresis
        self.rto_floor = rto_floor
        self.rto_cap = rto_cap
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.samples = 0
        # Made on the first heartbeat (an idle client without heartbeats keeps none).
        self._window = window
        self._rtts: deque[float] | tuple[()] = ()
        self._beats: deque[bool] | tuple[()] = ()
        self.level = QualityLevel.UNKNOWN

    def _rtts_deque(self) -> deque[float]:
        if not isinstance(self._rtts, deque):
            self._rtts = deque(maxlen=self._window)
        return self._rtts

    def _beats_deque(self) -> deque[bool]:
        if not isinstance(self._beats, deque):
            self._beats = deque(maxlen=self._window)
        return self._beats

    def pong(self, rtt: float) -> QualityLevel | None:
        """A heartbeat answered after ``rtt`` seconds. Returns the new level if it changed."""
        self._smooth(rtt)
        self._rtts_deque().append(rtt)
        self._beats_deque().append(True)
        return self._reassess()

    def missed(self) -> QualityLevel | None:
        """A heartbeat went unanswered. Returns the new level if it changed."""
        self._beats_deque().append(False)
        return self._reassess()

    def ack_rtt(self, rtt: float) -> None:
        """An ack came ``rtt`` seconds after the message's only transmission."""
        self._smooth(rtt)

    @property
    def rto(self) -> float | None:
        """The retransmission timeout SRTT + 4·RTTVAR, within [rto_floor, rto_cap]."""
        if self.srtt is None or self.rttvar is None:
            return None
        return min(self.rto_cap, max(self.rto_floor, self.srtt + 4 * self.rttvar))

    @property
    def missed_ratio(self) -> float:
        """The share of missed pongs among the last heartbeats."""
        return self._beats.count(False) / len(self._beats) if self._beats else 0.0

    def snapshot(self) -> QualitySnapshot:
        """The current figures."""
        rtts = sorted(self._rtts)
        return QualitySnapshot(
            level=self.level,
            srtt=self.srtt,
            rttvar=self.rttvar,
            rto=self.rto,
            p50=statistics.median(rtts) if rtts else None,
            p95=rtts[min(len(rtts) - 1, round(0.95 * (len(rtts) - 1)))] if rtts else None,
            samples=self.samples,
            missed_ratio=self.missed_ratio,
        )

    def _smooth(self, rtt: float) -> None:
        rtt = max(0.0, rtt)
        self.samples += 1
        if self.srtt is None or self.rttvar is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt

    def _reassess(self) -> QualityLevel | None:
        new = self._judge()
        if new is self.level:
            return None
        self.level = new
        return new

    def _judge(self) -> QualityLevel:
        if self._beats and (not self._beats[-1] or self.missed_ratio >= 0.25):
            return QualityLevel.POOR
        if not self._rtts:
            return self.level
        median = statistics.median_high(self._rtts)
        keep = 1 - self.hysteresis
        level = self.level
        if median >= self.poor_from:
            return QualityLevel.POOR
        if level is QualityLevel.POOR and median >= self.poor_from * keep:
            return QualityLevel.POOR
        if median >= self.good_below:
            return QualityLevel.DEGRADED
        if level in (QualityLevel.DEGRADED, QualityLevel.POOR) and median >= self.good_below * keep:
            return QualityLevel.DEGRADED
        return QualityLevel.GOOD

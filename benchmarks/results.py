"""What a run of the suite produces: summary rows with their targets, and typed details.

A :class:`Row` is one line of the summary table; its :class:`Target`, if it has one,
decides whether the row is met. :class:`Details` holds the measurements behind the rows,
one typed field per case that has a details section in docs/benchmarks.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .harness import percentile
from .spec import WorkerResult, WorkerSpec

__all__ = [
    "CodecResults",
    "CodecRow",
    "Details",
    "Profile",
    "ProfileDetails",
    "RecoveryDetails",
    "Results",
    "Row",
    "ScaleDetails",
    "ScaleRun",
    "Sizes",
    "StoreDetails",
    "Target",
    "Throughput",
    "at_least",
    "at_most",
]


@dataclass(frozen=True)
class Sizes:
    """How much each case does: ``--quick`` or a full run."""

    repeats: int
    send_w1: int
    send_w64: int
    send_nowait: int
    receive: int
    sio_send: int
    sio_receive: int
    idle_clients: int
    drop_runs: int
    restart_runs: int
    herd: int
    store_messages: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(1, 1000, 5000, 2000, 10000, 400, 3000, 1000, 3, 1, 0, 2000)
        return cls(5, 2000, 10000, 5000, 15000, 1000, 6000, 1000, 6, 3, 50, 5000)


@dataclass(frozen=True)
class Target:
    """A bound on a row's measured value: ``value >= limit`` or ``value <= limit``.

    Not met when the value is not finite (a run that measured nothing misses).
    """

    limit: float
    upper: bool
    """True: the value must stay at or below ``limit``; False: reach it."""
    label: str
    """How the table shows it (``≥ 0.9x``, ``≤ 50 ms``)."""

    def met(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value <= self.limit if self.upper else value >= self.limit


def at_least(limit: float, label: str = "") -> Target:
    """A ratio (or figure) that must reach ``limit``; shown as ``≥ {limit}x`` by default."""
    return Target(limit, upper=False, label=label or f"≥ {limit:g}x")


def at_most(limit: float, label: str = "") -> Target:
    """A ratio (or figure) that must not exceed ``limit``; shown as ``≤ {limit}x``."""
    return Target(limit, upper=True, label=label or f"≤ {limit:g}x")


@dataclass(frozen=True)
class Row:
    """One line of the summary table.

    ``measured`` is the value the target judges; when None, the ratio is.
    """

    case: str
    rtclient: str
    baseline: str
    ratio: float | None
    target: Target | None = None
    measured: float | None = None
    note: str = ""

    @property
    def value(self) -> float | None:
        return self.ratio if self.measured is None else self.measured

    @property
    def met(self) -> bool | None:
        """None without a target."""
        return None if self.target is None else self.target.met(self.value)

    def line(self) -> str:
        """The row as the suite prints it while running."""
        ratio = "" if self.ratio is None else f"  ratio {self.ratio:.2f}"
        target = "" if self.target is None else f"  target {self.target.label}"
        verdict = "" if self.met is None else ("  MET" if self.met else "  MISSED")
        return f"  {self.case}: rtclient {self.rtclient} | {self.baseline}{ratio}{target}{verdict}"

    def miss(self) -> str:
        """Why the row is missed (for a row whose ``met`` is False)."""
        assert self.target is not None
        measured = self.rtclient if self.ratio is None else f"ratio {self.ratio:.2f}"
        return f"MISSED: {self.case}: {measured}, target {self.target.label}"


# -- details ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """The runs of one throughput measurement (one worker spec, ``repeats`` times)."""

    spec: WorkerSpec
    rate: float
    """The best run, messages/s."""
    median: float
    cpu_us: float
    """The least client CPU time per message, µs."""
    busy: float
    """The median of CPU time over wall time."""
    rates: list[float]
    extensions: str
    server_seconds: list[float | None]


@dataclass
class RecoveryDetails:
    """Seconds from the fault, per client, for each run."""

    drop: dict[str, list[float]] = field(default_factory=dict)
    restart: dict[str, list[float]] = field(default_factory=dict)
    restart_server_start: list[float] = field(default_factory=list)
    herd: list[float] = field(default_factory=list)
    """Sorted times to fully recovered of the herd's clients (empty: not run)."""


@dataclass
class ScaleRun:
    """One run of ``benchmarks.scale``: the clients, the restarts, what came of them."""

    clients: int
    nodes: str
    processes: int = 0
    connect_seconds: float = 0.0
    node_restarts: list[float] = field(default_factory=list)
    """Seconds each node took from the restart order to healthy again."""
    restart_seconds: float = 0.0
    failed_drains: list[str] = field(default_factory=list)
    """Nodes still running 20 s after SIGTERM (SIGKILLed), and why."""
    outages: int = 0
    clients_disrupted: int = 0
    times: list[float] = field(default_factory=list)
    """Seconds from leaving CONNECTED to fully recovered, per outage, sorted."""
    connected: list[float] = field(default_factory=list)
    """Seconds from leaving CONNECTED to CONNECTED again, per outage, sorted."""
    never: int = 0
    with_gap: int = 0
    latency: list[float] = field(default_factory=list)
    """p50 and p99 seconds from a message's ack to each delivery of it."""
    sent: int = 0
    acked: int = 0
    delivered: int = 0
    anomalies: dict[str, int] = field(default_factory=dict)
    announced_gaps: int = 0
    gap_reasons: dict[str, int] = field(default_factory=dict)
    missed_under_gaps: int = 0
    """(message, member) pairs never delivered where a gap was announced instead."""
    join_retries: int = 0
    """Joins at the start refused with INTERNAL ("send again later") and retried."""
    not_connected_at_end: int = 0
    behind_at_end: int = 0
    """Clients that had not delivered every room's head when the run ended."""
    lost_to_late: int = 0
    """Lost deliveries owed to those clients (the run ended before they caught up)."""
    settle_seconds: float = 0.0
    """From the senders' stop until every client was CONNECTED with an empty outbox."""
    catch_up_seconds: float = 0.0
    """From then until every client had every room's head, its records written."""
    load_before: float = 0.0
    load_after: float = 0.0
    seconds: float = 0.0

    @property
    def p50(self) -> float:
        return percentile(self.times, 0.5)

    @property
    def p99(self) -> float:
        return percentile(self.times, 0.99)

    @property
    def max(self) -> float:
        return max(self.times, default=math.nan)


@dataclass
class ScaleDetails:
    runs: list[ScaleRun] = field(default_factory=list)


@dataclass(frozen=True)
class CodecRow:
    """One envelope: its size in both encodings, seconds per encode + decode by codec."""

    envelope: str
    json_bytes: int
    msgpack_bytes: int
    times: dict[str, float]


@dataclass(frozen=True)
class CodecResults:
    rows: list[CodecRow]
    orjson: bool
    """orjson is installed (the codec targets are measured against it)."""


@dataclass(frozen=True)
class StoreDetails:
    rates: dict[str, dict[str, float]]
    """Messages/s by workload, then by store."""
    file_system: str


@dataclass(frozen=True)
class Profile:
    """py-spy's samples of one worker, summed up (shares in percent)."""

    samples: int
    own: list[tuple[str, float]]
    """Functions by self time."""
    rtclient_inclusive: list[tuple[str, float]]
    packages: list[tuple[str, float]]
    result: WorkerResult | None = None
    """What the worker measured under py-spy."""


@dataclass
class ProfileDetails:
    runs: dict[str, Profile] = field(default_factory=dict)
    memory: dict[str, WorkerResult] = field(default_factory=dict)
    """tracemalloc runs of the idle kinds."""


@dataclass
class Details:
    """The measurements behind the rows; a case fills its own field."""

    throughput: dict[str, Throughput] = field(default_factory=dict)
    recovery: RecoveryDetails | None = None
    memory: dict[str, WorkerResult] = field(default_factory=dict)
    codecs: CodecResults | None = None
    store: StoreDetails | None = None
    profile: ProfileDetails | None = None
    scale: ScaleDetails | None = None


@dataclass
class Results:
    quick: bool
    command: str
    machine: dict[str, str]
    sizes: Sizes
    rows: list[Row] = field(default_factory=list)
    details: Details = field(default_factory=Details)
    skipped: dict[str, str] = field(default_factory=dict)
    unjudged: dict[str, int] = field(default_factory=dict)
    """Of the skipped measurements, those that had targets: how many each."""
    seconds: float = 0.0

    def missed(self) -> list[Row]:
        """The rows whose target was not met."""
        return [row for row in self.rows if row.met is False]

"""The chaos soak: bots chat through seeded random faults; then the checker judges.

``await run_soak(seed=7, seconds=30)`` starts a :class:`~.lab.Lab`, lets every bot send
``rate`` messages a second while faults drawn from :data:`~.faults.FAULTS` follow one
another (each kind once per round, in a seeded order), then lifts every fault, lets the
clients settle and checks the history. The same seed gives the same faults, parameters
and sends (the timing of the network, of course, differs from run to run).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .checker import Report, check
from .faults import EPOCH_FAULTS, FAULTS, calm
from .history import History
from .lab import Figures, Lab, LabConfig, percentile

__all__ = ["SoakResult", "run_soak"]


@dataclass
class SoakResult:
    """What a soak did and what the checker found."""

    seed: int
    wall: float
    settled: bool
    report: Report
    figures: Figures
    leftover: int
    history: History
    fault_log: list[tuple[float, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, doubled, reordered or skipped; settled; no task left behind."""
        return self.report.ok and self.settled and not self.leftover

    def summary(self) -> str:
        """A few lines for the test log: the seed first, so that a failure replays."""
        f = self.figures
        p50, p95 = percentile(f.recovery, 0.5), percentile(f.recovery, 0.95)
        faults = ", ".join(f"{k}={v}" for k, v in sorted(f.faults.items()))
        return "\n".join(
            [
                f"RT_SOAK_SEED={self.seed}: {self.wall:.1f} s wall, settled={self.settled}, "
                f"tasks left behind={self.leftover}",
                f"messages sent={f.sent} acked={f.acked} delivered={f.delivered}; "
                f"reconnects={f.reconnects} quality transitions={f.quality_transitions}",
                f"recovery p50={_ms(p50)} p95={_ms(p95)}",
                f"faults ({sum(f.faults.values())}): {faults}",
                self.report.describe(),
            ]
        )


async def run_soak(
    *,
    seed: int,
    seconds: float,
    config: LabConfig | None = None,
    rate: float = 25.0,
    settle_timeout: float = 20.0,
    kinds: tuple[str, ...] | None = None,
    pause: tuple[float, float] = (0.05, 0.3),
    log: Callable[[str], None] | None = None,
) -> SoakResult:
    """Run a soak of ``seconds`` of faults under ``seed`` and check it.

    ``rate`` is messages per second per bot; ``kinds`` names the faults (default: all of
    :data:`FAULTS`; :data:`EPOCH_FAULTS` only when named);
    ``pause`` is the range of quiet seconds between two faults.
    """
    started = time.monotonic()
    config = config or LabConfig(seed=seed)
    rng = random.Random(seed)
    names = list(kinds if kinds is not None else FAULTS)
    fault_log: list[tuple[float, str]] = []
    async with Lab(config) as lab:
        stop = asyncio.Event()
        senders = lab.start_senders(stop, rate)
        bag: list[str] = []
        try:
            while time.monotonic() - started < seconds:
                if not bag:
                    bag = rng.sample(names, len(names))
                name = bag.pop()
                at = time.monotonic() - started
                what = await {**FAULTS, **EPOCH_FAULTS}[name](lab, rng)
                lab.faults[name] += 1
                fault_log.append((at, what))
                if log is not None:
                    log(f"{at:6.2f}s  {what}")
                await asyncio.sleep(rng.uniform(*pause))  # the schedule's pace
        finally:
            stop.set()
            await senders
            await calm(lab)
        settled = await lab.settle(settle_timeout)
    report = check(lab.history)
    return SoakResult(
        seed=seed,
        wall=time.monotonic() - started,
        settled=settled,
        report=report,
        figures=lab.figures(report),
        leftover=len(lab.leftover),
        history=lab.history,
        fault_log=fault_log,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"

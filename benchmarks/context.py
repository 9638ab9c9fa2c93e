"""What a case is given: the run's sizes and results, and a way to report as it goes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .results import Results, Row, Sizes

__all__ = ["Context"]


def _print(text: str) -> None:
    print(text, flush=True)


@dataclass
class Context:
    """Passed to every case. A case adds rows and fills its own field of the details."""

    results: Results
    out: Callable[[str], None] = field(default=_print, repr=False)

    @property
    def quick(self) -> bool:
        return self.results.quick

    @property
    def sizes(self) -> Sizes:
        return self.results.sizes

    def say(self, text: str) -> None:
        self.out(text)

    def row(self, row: Row) -> None:
        """Add a row to the summary table and print it."""
        self.results.rows.append(row)
        self.out(row.line())

    def skip(self, what: str, why: str, *, targets: int = 0) -> None:
        """Something could not be measured: reported under the table.

        ``targets`` is how many targets it would have judged: ``--check`` counts those
        as not met (a target nobody measured did not pass).
        """
        self.results.skipped[what] = why
        if targets:
            self.results.unjudged[what] = targets

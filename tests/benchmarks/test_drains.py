"""benchmarks.drains runs and reports what the client did: two attempts, no duplicate."""

from __future__ import annotations

from benchmarks import drains


async def test_one_run_per_transport_reports_two_attempts_and_no_duplicates() -> None:
    lines = await drains.main(1)
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == list(drains.TRANSPORTS)
    assert all(row[3] == "2" and row[4] == "0" for row in rows), lines

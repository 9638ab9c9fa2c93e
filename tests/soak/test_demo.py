"""``rtclient demo`` with short timings: exit status 0, progress lines and the report table."""

from __future__ import annotations

import re

import pytest

from rtclient.demo import main

COLUMNS = [
    "bot",
    "transport",
    "sent",
    "acked",
    "delivered",
    "lost",
    "duplicated",
    "reconnects",
    "recovery p50",
    "recovery p95",
    "quality transitions",
]


def report_rows(out: str) -> dict[str, dict[str, str]]:
    """The report table as {bot: {column: cell}}; cells are separated by 2+ spaces."""
    lines = out[out.index("\nreport\n") :].splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("bot "))
    assert re.split(r"\s{2,}", lines[header].strip()) == COLUMNS
    rows = {}
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        if line.startswith("-"):
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == "total":
            cells.insert(1, "")
        rows[cells[0]] = dict(zip(COLUMNS, cells, strict=True))
    return rows


@pytest.mark.soak
@pytest.mark.timeout(40)
def test_demo_storm_loses_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--seconds", "8", "--seed", "3"])
    out = capsys.readouterr().out
    assert status == 0, out
    for step in ("network drop", "half-open link", "latency spike", "server restart", "token"):
        assert f"STORM: {step}" in out
    assert "reconnecting in " in out and "back after " in out
    assert "quality good -> " in out
    rows = report_rows(out)
    assert list(rows) == ["bot0", "bot1", "bot2", "total"]
    assert [rows[b]["transport"] for b in ("bot0", "bot1", "bot2")] == [
        "websocket",
        "socketio",
        "websocket",
    ]
    for row in rows.values():
        assert row["lost"] == "0" and row["duplicated"] == "0", out
        assert row["sent"] == row["acked"] and int(row["sent"]) > 0
        assert int(row["reconnects"]) >= 3  # drop, half-open, restart, token expiry
        assert row["recovery p50"].endswith(" s") and row["recovery p95"].endswith(" s")
    total = rows["total"]
    assert int(total["sent"]) == sum(int(rows[b]["sent"]) for b in ("bot0", "bot1", "bot2"))
    assert int(total["quality transitions"]) >= 1
    assert "OK: nothing lost or duplicated" in out


def test_demo_refuses_too_small_a_run(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--bots", "1"])
    assert caught.value.code == 2
    assert "--bots >= 2" in capsys.readouterr().err

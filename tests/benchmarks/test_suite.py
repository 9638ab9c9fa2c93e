"""The benchmark suite's own logic: the case table, targets, ``--check``, the report.

No server and no worker process: the cases here are local functions in a table of the
test's own, passed to ``main`` as the registry.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import get_args

import pytest

from benchmarks import bare, profiling, suite
from benchmarks.cases import CASES, Local, OnServer, select
from benchmarks.context import Context
from benchmarks.report import BEGIN, END, render, write_report
from benchmarks.results import ProfileDetails, Results, Row, Sizes, at_least, at_most
from benchmarks.spec import Kind, WorkerResult
from benchmarks.worker import KINDS

# -- the table ----------------------------------------------------------------------------


def test_the_table_holds_every_case_in_its_order() -> None:
    assert list(CASES) == [
        "send",
        "receive",
        "socketio",
        "recovery",
        "memory",
        "codecs",
        "store",
        "scale",
        "profile",
    ]
    for name, case in CASES.items():
        assert inspect.iscoroutinefunction(case.run), name
    assert isinstance(CASES["codecs"], Local)
    assert isinstance(CASES["send"], OnServer)


def test_quick_runs_of_everything_leave_out_what_is_not_quick() -> None:
    everything = list(CASES)
    assert select(CASES, set(), quick=False) == everything
    assert select(CASES, set(), quick=True) == [n for n in everything if n != "profile"]
    # --only runs what it names, quick or not, in the table's order.
    assert select(CASES, {"profile", "send"}, quick=True) == ["send", "profile"]


def test_every_worker_kind_has_its_code() -> None:
    assert set(KINDS) == set(get_args(Kind))


# -- targets ------------------------------------------------------------------------------


def test_at_least_and_at_most_include_their_limit() -> None:
    assert at_least(0.9).met(0.9)
    assert at_least(0.9).met(1.5)
    assert not at_least(0.9).met(0.89)
    assert at_most(1.25).met(1.25)
    assert not at_most(1.25).met(1.26)
    assert at_least(0.9).label == "≥ 0.9x"
    assert at_most(0.050, "≤ 50 ms").label == "≤ 50 ms"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), None])
def test_a_value_that_is_not_a_number_misses(value: float | None) -> None:
    assert not at_least(0.9).met(value)
    assert not at_most(2.0).met(value)


def test_a_row_is_judged_on_its_measured_value_else_its_ratio() -> None:
    by_ratio = Row("r", "1 msg/s", "b", 0.5, at_least(0.9))
    assert by_ratio.met is False
    assert by_ratio.line().endswith("ratio 0.50  target ≥ 0.9x  MISSED")
    assert by_ratio.miss() == "MISSED: r: ratio 0.50, target ≥ 0.9x"
    by_value = Row("p50", "40 ms", "b", None, at_most(0.050, "≤ 50 ms"), measured=0.040)
    assert by_value.met is True
    assert by_value.line().endswith("target ≤ 50 ms  MET")
    assert Row("no target", "x", "y", 3.0).met is None


# -- --check ------------------------------------------------------------------------------


def _table(ratio: float) -> dict[str, Local]:
    async def fake(ctx: Context) -> None:
        ctx.row(Row("fake ratio", "1 msg/s", "base 1 msg/s", ratio, at_least(0.9)))
        ctx.row(Row("no target", "x", "y", 0.1))

    return {"fake": Local(fake)}


def test_check_exits_1_and_names_the_missed_target(capsys: pytest.CaptureFixture[str]) -> None:
    code = suite.main(["--quick", "--check", "--no-write"], cases=_table(0.5))
    out = capsys.readouterr().out
    assert code == 1
    assert "MISSED: fake ratio: ratio 0.50, target ≥ 0.9x" in out
    assert "--check: 1 of 1 targets missed" in out


def test_check_exits_0_when_every_target_is_met(capsys: pytest.CaptureFixture[str]) -> None:
    assert suite.main(["--quick", "--check", "--no-write"], cases=_table(0.95)) == 0
    out = capsys.readouterr().out
    assert "MISSED" not in out
    assert "--check: 0 of 1 targets missed" in out


def test_a_skipped_measurement_without_targets_is_named_but_not_a_miss(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def skipping(ctx: Context) -> None:
        ctx.skip("profile", "py-spy is not installed")

    assert suite.main(["--quick", "--check", "--no-write"], cases={"s": Local(skipping)}) == 0
    out = capsys.readouterr().out
    assert "SKIPPED: profile: py-spy is not installed" in out
    assert "--check: 0 of 0 targets missed" in out


def test_check_does_not_pass_targets_that_were_skipped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def skipping(ctx: Context) -> None:
        ctx.row(Row("measured", "1 msg/s", "base 1 msg/s", 1.0, at_least(0.9)))
        ctx.skip("codec target", "orjson is not installed", targets=2)

    code = suite.main(["--quick", "--check", "--no-write"], cases={"s": Local(skipping)})
    out = capsys.readouterr().out
    assert code == 1
    assert "SKIPPED: codec target: orjson is not installed (2 targets not met)" in out
    assert "--check: 0 of 3 targets missed, 2 not measured (skipped): not a pass" in out


def test_without_check_a_miss_is_printed_but_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert suite.main(["--quick", "--no-write"], cases=_table(0.5)) == 0
    assert "MISSED: fake ratio" in capsys.readouterr().out


def test_local_cases_run_in_table_order() -> None:
    ran: list[str] = []

    def case(name: str) -> Local:
        async def run(ctx: Context) -> None:
            ran.append(name)

        return Local(run)

    table = {"b": case("b"), "a": case("a"), "c": Local(case("c").run, quick=False)}
    args = suite.parse(["--quick", "--only", "c,a"], table)
    asyncio.run(suite.run(args, table, out=lambda text: None))
    assert ran == ["a", "c"]
    ran.clear()
    asyncio.run(suite.run(suite.parse(["--quick"], table), table, out=lambda text: None))
    assert ran == ["b", "a"]


# -- arguments and the report -------------------------------------------------------------


def test_only_full_runs_of_every_case_write_the_report() -> None:
    assert suite.parse([]).write is True
    assert suite.parse(["--quick"]).write is False
    assert suite.parse(["--only", "send"]).write is False
    assert suite.parse(["--quick", "--write"]).write is True
    assert suite.parse(["--no-write"]).write is False


def test_an_unknown_case_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        suite.parse(["--only", "send,nope"])
    assert exc.value.code == 2
    assert "unknown case(s) nope" in capsys.readouterr().err


def _results() -> Results:
    results = Results(False, "python -m benchmarks", _machine(), Sizes.of(False))
    results.rows.append(Row("fake ratio", "1 msg/s", "base", 0.5, at_least(0.9), note="n"))
    results.rows.append(Row("plain", "x", "y", None))
    return results


def _machine() -> dict[str, str]:
    keys = ("cpu", "cores", "memory", "os", "python", "libraries", "date", "load")
    return {key: "?" for key in keys}


def test_the_report_shows_targets_and_verdicts() -> None:
    text = render(_results())
    assert "| fake ratio [1] | 1 msg/s | base | 0.50x | ≥ 0.9x | **no** |" in text
    assert "| plain | x | y |  | - | - |" in text
    assert text.startswith(BEGIN) and text.rstrip().endswith(END)


def test_writing_the_report_keeps_the_text_around_the_markers(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(f"# Head\n\n{BEGIN}\nold figures\n{END}\n\n## Tail\n")
    write_report(_results(), path)
    text = path.read_text()
    assert text.startswith("# Head\n\n" + BEGIN)
    assert text.endswith(END + "\n\n## Tail\n")
    assert "old figures" not in text and "fake ratio" in text


# -- the bare clients' window loop ---------------------------------------------------------


class _Peer:
    """Acks each chat:send after echoing it, like the server; counts what is in flight."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str] = asyncio.Queue()
        self.outstanding: set[str] = set()
        self.most = 0
        self.sent = 0

    async def send(self, text: str) -> None:
        frame = json.loads(text)
        assert frame["type"] == "chat:send" and frame["payload"]["roomId"] == "bench"
        self.sent += 1
        self.outstanding.add(frame["id"])
        self.most = max(self.most, len(self.outstanding))
        self.inbox.put_nowait(json.dumps({"type": "chat:message", "payload": {}}))
        self.inbox.put_nowait(json.dumps({"type": "ack", "id": frame["id"], "payload": {}}))

    async def recv(self) -> str:
        text = await self.inbox.get()
        frame = json.loads(text)
        if frame["type"] == "ack":
            self.outstanding.discard(frame["id"])
        return text


def _ids() -> Iterator[str]:
    return (f"m-{i}" for i in range(10**6))


@pytest.mark.parametrize(("window", "count"), [(1, 5), (64, 300), (64, 10)])
async def test_the_window_loop_keeps_window_outstanding_until_all_are_acked(
    window: int, count: int
) -> None:
    peer = _Peer()
    async with asyncio.timeout(5):
        await bare._send_window(peer.send, peer.recv, _ids(), window, count)
    assert peer.sent == count
    assert not peer.outstanding
    assert peer.most == min(window, count)


def test_the_profile_section_renders_py_spy_stacks_and_allocation_sites() -> None:
    raw = "\n".join(
        [
            "run (benchmarks/worker.py:10);send (/work/main/rtclient/client.py:5);"
            "dumps (/usr/lib/python3.11/json/__init__.py:1) 30",
            "run (benchmarks/worker.py:10);send (/work/main/rtclient/client.py:5) 10",
            "run (benchmarks/worker.py:10);_find_and_load (<frozen>:1) 99",
        ]
    )
    summary = profiling.summarize(raw)
    assert summary.samples == 40
    assert dict(summary.packages) == {"json": 75.0, "rtclient": 25.0}
    idle: WorkerResult = {"count": 2, "seconds": 1.0, "cpu": 0.5, "traced_bytes": 4096}
    results = _results()
    results.details.profile = ProfileDetails(
        runs={"send": replace(summary, result={"count": 100, "seconds": 0.5, "cpu": 0.4})},
        memory={
            "idle_rt": {**idle, "sites": [("rtclient/x.py:1", 1000), ("both.py:2", 1000)]},
            "idle_ws": {**idle, "sites": [("both.py:2", 1000)]},
        },
    )
    text = render(results)
    assert "**send** (py-spy, 40 samples; under py-spy the worker ran at 200 msg/s)." in text
    assert "Self time by package: json 75 %, rtclient 25 %." in text
    assert "| rtclient/x.py:1 | 500 |" in text
    assert "both.py:2" not in text

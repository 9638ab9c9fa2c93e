"""Ordered request lanes: one connection's work runs in order, bounded, owned."""

from __future__ import annotations

import asyncio

from fake_server.lanes import LANE_ROOM, Lane, TaskSet
from rtclient.testing import wait_until


async def test_work_runs_in_submission_order_one_at_a_time() -> None:
    tasks = TaskSet()
    lane = Lane(tasks, "c-1")
    done: list[int] = []
    running = peak = 0
    gates = [asyncio.Event() for _ in range(5)]

    async def work(n: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gates[n].wait()
        done.append(n)
        running -= 1

    for n in range(5):
        lane.submit(work(n))
    await wait_until(lambda: running >= 1)
    for gate in reversed(gates):  # released last-first: the order still holds
        gate.set()
    await wait_until(lambda: len(done) == 5)
    assert done == [0, 1, 2, 3, 4] and peak == 1
    await wait_until(lambda: len(tasks) == 0)  # no task while the lane is idle
    await tasks.close()


async def test_a_full_lane_makes_its_reader_wait_until_it_drains() -> None:
    tasks = TaskSet()
    lane = Lane(tasks, "c-1")
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()

    for _ in range(LANE_ROOM + 1):
        lane.submit(work())
    assert lane.full()
    reader = asyncio.create_task(lane.wait_room())
    await asyncio.sleep(0)
    assert not reader.done()
    gate.set()
    await asyncio.wait_for(reader, 2.0)
    await tasks.close()


async def test_closing_drops_pending_work_and_the_task_set_ends_every_task() -> None:
    tasks = TaskSet()
    lane = Lane(tasks, "c-1")
    started = asyncio.Event()
    ran: list[str] = []

    async def stuck() -> None:
        started.set()
        await asyncio.Event().wait()

    async def later() -> None:
        ran.append("later")

    lane.submit(stuck())
    lane.submit(later())
    await started.wait()
    lane.close()
    lane.submit(later())  # closed: dropped (and closed, never "never awaited")
    await tasks.close()
    assert ran == [] and len(tasks) == 0

"""The dispatcher between the session and the application (rtclient/dispatch.py)."""

from __future__ import annotations

import asyncio
import logging

from rtclient._dispatch import Delivered, Dispatcher
from rtclient.events import Event
from rtclient.testing import wait_until


def event(name: str, n: int) -> Event:
    return Event(name=name, data={"n": n}, room="a", event_id=n)


async def run_until_drained(dispatcher: Dispatcher) -> None:
    dispatcher.end()
    task = asyncio.create_task(dispatcher.run())
    await asyncio.wait_for(task, 5.0)


async def test_items_nobody_listens_to_pass_without_the_queue_and_in_order() -> None:
    after: list[Delivered] = []
    dispatcher = Dispatcher(logging.getLogger("test"), after.append)
    dispatcher.put(event("chat:message", 1))
    assert dispatcher.backlog == 0 and dispatcher.unheard == 1
    assert [e.event_id for e in after if isinstance(e, Event)] == [1]

    heard: list[int] = []
    dispatcher.on("typing", lambda e: heard.append(e.event_id))
    dispatcher.put(event("typing", 2))  # heard: queued
    dispatcher.put(event("chat:message", 3))  # unheard, but behind a queued item: queued
    assert dispatcher.backlog == 2 and dispatcher.unheard == 1
    await run_until_drained(dispatcher)
    assert heard == [2]
    assert [e.event_id for e in after if isinstance(e, Event)] == [1, 2, 3]


async def test_an_unheard_item_waits_while_a_handler_is_busy() -> None:
    after: list[Delivered] = []
    dispatcher = Dispatcher(logging.getLogger("test"), after.append)
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(item: Delivered) -> None:
        entered.set()
        await release.wait()

    dispatcher.on("typing", slow)
    task = asyncio.create_task(dispatcher.run())
    dispatcher.put(event("typing", 1))
    await asyncio.wait_for(entered.wait(), 5.0)  # the dispatcher waits in the handler
    assert dispatcher.backlog == 0
    dispatcher.put(event("chat:message", 2))  # must not overtake item 1's `after`
    assert dispatcher.unheard == 0 and dispatcher.backlog == 1
    release.set()
    dispatcher.end()
    await asyncio.wait_for(task, 5.0)
    assert [e.event_id for e in after if isinstance(e, Event)] == [1, 2]


async def test_off_of_the_last_handler_makes_a_name_unheard_again() -> None:
    dispatcher = Dispatcher(logging.getLogger("test"))

    def handler(item: Delivered) -> None:
        pass

    dispatcher.on("chat:message", handler)
    dispatcher.put(event("chat:message", 1))
    assert dispatcher.backlog == 1
    dispatcher.off("chat:message", handler)
    dispatcher.put(event("chat:message", 2))  # still behind item 1
    await run_until_drained(dispatcher)
    dispatcher2 = Dispatcher(logging.getLogger("test"))
    dispatcher2.on("chat:message", handler)
    dispatcher2.off("chat:message", handler)
    dispatcher2.put(event("chat:message", 3))
    assert dispatcher2.backlog == 0 and dispatcher2.unheard == 1


async def test_a_wildcard_or_an_iterator_hears_everything() -> None:
    dispatcher = Dispatcher(logging.getLogger("test"))
    dispatcher.on("*", lambda e: None)
    dispatcher.put(event("chat:message", 1))
    assert dispatcher.backlog == 1

    dispatcher2 = Dispatcher(logging.getLogger("test"))
    stream = dispatcher2.stream()
    first = asyncio.ensure_future(anext(stream))
    await wait_until(lambda: dispatcher2.streams == 1)  # the iterator subscribed
    task = asyncio.create_task(dispatcher2.run())
    dispatcher2.put(event("chat:message", 1))
    got = await asyncio.wait_for(first, 5.0)
    assert isinstance(got, Event) and got.event_id == 1
    dispatcher2.end()
    await asyncio.wait_for(task, 5.0)
    await stream.aclose()


async def test_a_long_backlog_is_delivered_in_order_and_compacted() -> None:
    seen: list[int] = []
    dispatcher = Dispatcher(logging.getLogger("test"), max_pending=100_000)
    dispatcher.on("chat:message", lambda e: seen.append(e.event_id))
    task = asyncio.create_task(dispatcher.run())
    for n in range(5000):
        dispatcher.put(event("chat:message", n))
        if n % 700 == 0:
            await asyncio.sleep(0)  # let the dispatcher take some: head moves, list grows
    dispatcher.end()
    await asyncio.wait_for(task, 5.0)
    assert seen == list(range(5000))
    assert dispatcher.backlog == 0

"""What a sync page from the server may be believed to say: pure checks, no state.

docs/protocol.md promises a page's ``events`` in event-id order, each once, all in
the page's ``epoch`` and none past the room's head (the reply's ``lastEventId``). A
server that breaks this must not make the client lose or double events: the page
is put back in order, doubles and events that contradict the reply are set aside,
and every such repair is named so the session can count and report it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Page", "check_page"]


@dataclass(slots=True)
class Page:
    """A sync page as the session will use it."""

    events: list[dict[str, Any]]
    """Well-formed events, in event-id order, each id once."""
    problems: list[str] = field(default_factory=list)
    """How the page broke the protocol (empty: it did not)."""
    malformed: int = 0
    """Items that are not an event with an integer ``eventId``."""


def event_id_of(item: object) -> int | None:
    """The integer ``eventId`` of an event payload, None if it has none (bools are not ids)."""
    if not isinstance(item, dict):
        return None
    value = item.get("eventId")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_page(items: list[Any], *, epoch: str | None, head: int | None) -> Page:
    """Sort and vet the ``events`` of a sync reply whose epoch and head are given.

    Items that are not events are counted in ``malformed``; events of another epoch
    than the page's, or past its head, are dropped (the server itself says they do
    not exist); out-of-order and repeated ids are put in order and kept once. The
    session still has to look for holes: this function cannot know the cursor.
    """
    page = Page([])
    by_id: dict[int, dict[str, Any]] = {}
    last = None
    unordered = repeated = foreign = beyond = 0
    for item in items:
        event_id = event_id_of(item)
        if event_id is None:
            page.malformed += 1
            continue
        assert isinstance(item, dict)
        item_epoch = item.get("epoch")
        if epoch is not None and item_epoch is not None and item_epoch != epoch:
            foreign += 1
            continue
        if head is not None and event_id > head:
            beyond += 1
            continue
        if event_id in by_id:
            repeated += 1
            continue
        if last is not None and event_id < last:
            unordered += 1
        last = event_id
        by_id[event_id] = item
    page.events = [by_id[i] for i in sorted(by_id)]
    if unordered:
        page.problems.append("events out of order")
    if repeated:
        page.problems.append(f"{repeated} event ids repeated")
    if foreign:
        page.problems.append(f"{foreign} events of another epoch than the page's")
    if beyond:
        page.problems.append(f"{beyond} events past the head it reports ({head})")
    return page

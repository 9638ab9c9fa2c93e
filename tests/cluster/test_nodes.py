"""Nodes on one Redis share each room's log, dedupe, presence and fan-out."""

from __future__ import annotations

import pytest

from ..server.conftest import Connect
from .conftest import MakeNode

pytestmark = pytest.mark.cluster


async def test_a_message_sent_to_one_node_reaches_a_member_on_another(
    make_node: MakeNode, connect: Connect
) -> None:
    one, two = await make_node(), await make_node()
    assert one.epoch == two.epoch and one.node_id != two.node_id
    alice = await connect(one, "alice")
    bob = await connect(two, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    acks = [await alice.say("lobby", f"m{i}") for i in range(5)]
    assert [a["eventId"] for a in acks] == [1, 2, 3, 4, 5]
    got = [await bob.expect("chat:message") for _ in range(5)]
    assert [(e["eventId"], e["text"]) for e in got] == [(i + 1, f"m{i}") for i in range(5)]
    page = await bob.ok("sync:messages", {"roomId": "lobby", "lastEventId": 2})
    assert [e["eventId"] for e in page["events"]] == [3, 4, 5]
    assert page["epoch"] == one.epoch and not page["truncated"] and not page["more"]

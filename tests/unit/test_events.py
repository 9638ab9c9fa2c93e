"""Events (rtclient/events.py): what the receive path builds is the public frozen Event."""

from __future__ import annotations

import dataclasses

import pytest

from rtclient.events import Event, make_event


def test_make_event_is_the_same_frozen_event_as_the_constructor() -> None:
    values = ("chat:message", {"text": "hi"}, "lobby", 7, "e1", "bob", "m-1", True)
    made = make_event(*values)
    built = Event(*values)
    assert made == built and repr(made) == repr(built) and type(made) is Event
    for field, value in zip(dataclasses.fields(Event), values, strict=True):
        assert getattr(made, field.name) is value  # each value in its own field
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.room = "elsewhere"  # type: ignore[misc]

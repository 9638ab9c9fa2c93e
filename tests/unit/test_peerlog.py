"""A flood of complaints about the peer costs a bounded number of warnings."""

from __future__ import annotations

import logging

import pytest

from rtclient.peerlog import FIRST, PeerLog
from rtclient.session import Session


def test_a_flood_is_logged_first_then_at_powers_of_two(caplog: pytest.LogCaptureFixture) -> None:
    log = PeerLog(logging.getLogger("rtclient.test"))
    with caplog.at_level(logging.WARNING, logger="rtclient.test"):
        for _ in range(100_000):
            log.warn("MALFORMED", "bad frame")
        log.warn("OTHER", "another kind")
    warnings = [r.getMessage() for r in caplog.records]
    powers = [2**k for k in range(4, 17)]  # 16 .. 65,536: past FIRST, within 100,000
    assert len(warnings) == FIRST + len(powers) + 1
    assert warnings[FIRST] == "bad frame (16 of this kind so far)"
    assert warnings[-1] == "another kind"  # each kind has its own count


def test_the_session_throttles_malformed_frames(caplog: pytest.LogCaptureFixture) -> None:
    session = Session()
    with caplog.at_level(logging.WARNING, logger="rtclient"):
        for _ in range(5_000):
            session.malformed("garbage")
    assert session.stats()["malformed"] == 5_000  # every one counted
    assert len(caplog.records) < 30


def test_a_lone_surrogate_from_the_peer_is_escaped_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A strict UTF-8 handler (a log file, a test runner's worker pipe) can write it."""
    session = Session()
    with caplog.at_level(logging.WARNING, logger="rtclient"):
        session.malformed("\ud800: payload is not an object")
    [message] = [r.getMessage() for r in caplog.records]
    assert message == "malformed input from the server: \\ud800: payload is not an object"
    message.encode("utf-8")
    assert session.stats()["malformed"] == 1

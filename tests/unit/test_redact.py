"""Redaction masks every piece of a registered token, in text and in hex dumps."""

from __future__ import annotations

import gc
import logging
import secrets
import tracemalloc

import pytest

from rtclient.redact import MASK, RedactingLogger, _Registry, redact, remember_token

TOKEN = "Zq3vN8uR1xWm5KpT0aLbYc7dHe2fGi9j"  # no pattern would recognise it


class Owner:
    """Stands for a Client: the registry keeps its tokens while it lives."""


def test_a_registered_tokens_middle_fragment_is_masked() -> None:
    owner = Owner()
    assert redact(f"...{TOKEN[5:18]}'") == f"...{TOKEN[5:18]}'"  # unknown: kept
    remember_token(TOKEN, owner)
    assert redact(f"...{TOKEN[5:18]}' [80 bytes]") == f"...{MASK}' [80 bytes]"
    assert redact(f"x {TOKEN[-8:]}") == f"x {MASK}"
    assert redact(f"x {TOKEN[-7:]}") == f"x {TOKEN[-7:]}"  # shorter than 8: allowed
    hexdump = " ".join(f"{b:02x}" for b in TOKEN[10:20].encode())
    line = f"> BINARY 83 a4 ... {hexdump} [90 bytes]"
    assert redact(line) == f"> BINARY 83 a4 ... {MASK} [90 bytes]"
    assert redact("> BINARY 83 a4 74 79 70 65 ad 74 [9 bytes]").endswith("74 [9 bytes]")


def test_an_owner_keeps_its_last_two_tokens_until_it_is_collected() -> None:
    owner = Owner()
    tokens = [f"{TOKEN[:-1]}{n}" for n in "ABC"]
    for token in tokens:
        remember_token(token, owner)
    assert MASK not in redact(tokens[0][-8:])  # the oldest of three is forgotten
    assert redact(tokens[2][-8:]) == MASK
    del owner
    gc.collect()
    assert redact(tokens[2][-8:]) == tokens[2][-8:]


def test_short_tokens_are_masked_whole() -> None:
    owner = Owner()
    remember_token("s3cr3t", owner)
    assert redact("key=s3cr3t;") == f"key={MASK};"


def test_tokens_cost_their_windows_only_once_something_is_logged() -> None:
    # 1,000 clients with two 300-character JWTs would hold ~50 MB of windows; a
    # process that never logs the libraries' records must not pay for them.
    registry = _Registry()
    owners = [Owner() for _ in range(100)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for owner in owners:
            for _ in range(2):
                registry.add(secrets.token_urlsafe(225), owner)  # 300 characters
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    tokens = 200 * 300
    assert grown < 4 * tokens, f"{grown} bytes for {tokens} bytes of tokens"
    assert len(registry.windows) > 100 * tokens // 300  # built when asked


def test_a_traceback_logged_through_the_adapter_is_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # engine.io logs a failing packet handler with logger.exception: the exception's
    # text (a peer's data) is part of the log line the handler writes.
    owner = Owner()
    remember_token(TOKEN, owner)
    adapter = RedactingLogger(logging.getLogger("rtclient.test.redact"))
    caplog.set_level(logging.DEBUG, logger="rtclient.test.redact")
    try:
        raise ValueError(f"cannot decode {TOKEN[3:20]}")
    except ValueError:
        adapter.exception("message handler error")
    assert "message handler error" in caplog.text and "ValueError" in caplog.text
    assert TOKEN[3:11] not in caplog.text, caplog.text

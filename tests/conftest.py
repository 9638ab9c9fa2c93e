"""Settings for every test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_real_state_file(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rtclient serve`` (and ``--user``) never read or write the real state file in the
    home directory: each test has its own (``RTCLIENT_STATE_FILE``), children included."""
    path = tmp_path_factory.mktemp("state") / "serve.json"
    monkeypatch.setenv("RTCLIENT_STATE_FILE", str(path))

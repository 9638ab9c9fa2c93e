"""The soak's marker: ``pytest -m soak`` selects the chaos runs, ``-m "not soak"`` skips them."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long chaos runs (seeded faults, then a checker)")

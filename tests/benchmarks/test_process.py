"""``benchmarks.process``: the heap figures the soak tests bound."""

from __future__ import annotations

import pytest

from benchmarks import process


def test_a_context_pair_is_measured_on_this_machine() -> None:
    """The soak tests' bound: one used 15-bit compressor (memLevel 5) and decompressor."""
    assert 100 * 1024 < process.context_size() < 400 * 1024


def test_without_mallinfo2_the_heap_figures_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not glibc (musl, macOS) or glibc < 2.33: a RuntimeError that says so, not a bound of
    0 bytes and a KeyError at the end of a soak run."""
    monkeypatch.setattr(process, "_LIBC", None)
    with pytest.raises(RuntimeError, match="mallinfo2"):
        process.context_size()
    assert process.heap() == {}  # the benchmarks still print what they can

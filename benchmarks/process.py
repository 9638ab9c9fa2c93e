"""What a process holds now: RSS, glibc heap, asyncio tasks, Python objects, open fds.

``heap_used`` is what the C heap has handed out (glibc ``mallinfo2``: ``uordblks`` plus
mmapped chunks), ``heap_free`` what it holds free. A leak grows ``heap_used``; heap
fragmentation grows ``heap_free`` and RSS while ``heap_used`` stays flat, and
``malloc_trim(0)`` gives the free part back (``sample(trim=True)``).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import zlib
from pathlib import Path
from typing import Any

__all__ = ["context_size", "heap", "sample"]


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def sample(*, trim: bool = False) -> dict[str, int]:
    """This process now: RSS, heap in use / free (glibc), tasks, Python objects, fds."""
    gc.collect()
    if trim and _LIBC is not None:
        _LIBC.malloc_trim(0)
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    figures = {
        "rss": pages * os.sysconf("SC_PAGE_SIZE"),
        "tasks": len(asyncio.all_tasks()) if _loop_running() else 0,
        "objects": len(gc.get_objects()),
        "fds": len(os.listdir("/proc/self/fd")),
    }
    figures.update(heap())
    return figures


def heap() -> dict[str, int]:
    """glibc's heap: bytes allocated (``heap_used``, mmapped chunks included) and bytes
    free inside it (``heap_free``); empty where there is no ``mallinfo2``."""
    if _LIBC is None or not hasattr(_LIBC, "mallinfo2"):
        return {}
    _LIBC.mallinfo2.restype = _Mallinfo2
    info = _LIBC.mallinfo2()
    return {"heap_used": info.uordblks + info.hblkhd, "heap_free": info.fordblks}


def context_size() -> int:
    """Bytes of C heap one client permessage-deflate context pair holds once used (the
    rtclient settings: 15-bit windows, ``memLevel=5``), measured over 64 of them.

    Raises RuntimeError where glibc's ``mallinfo2`` is missing (not glibc, or glibc
    older than 2.33): the soak tests' bounds are made of it, and must not skip."""
    if not heap():
        raise RuntimeError(
            "the heap figures need glibc's mallinfo2 (glibc >= 2.33, through ctypes): "
            "not available in this process"
        )
    before = heap()["heap_used"]
    kept = []
    payload = bytes(range(256)) * 8
    for _ in range(64):
        encoder = zlib.compressobj(wbits=-15, memLevel=5)
        decoder = zlib.decompressobj(wbits=-15)
        decoder.decompress(encoder.compress(payload) + encoder.flush(zlib.Z_SYNC_FLUSH))
        kept.append((encoder, decoder))
    return (heap()["heap_used"] - before) // 64

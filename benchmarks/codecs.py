"""Codec case: JSON against MessagePack on seed-like chat envelopes, in this process.

For each envelope (docs/protocol.md shapes, ids as rtclient makes them): the frame's
size in bytes, and the time of one encode + one decode, for

- ``json``: the standard library, compact, as a bare client would call it;
- ``msgpack``: ``packb`` / ``unpackb`` (``use_bin_type``, ``raw=False``);
- ``orjson``: ``dumps`` / ``loads`` (if installed), on the envelope and on the payload
  alone — the issue's reference point ("bare orjson on the payload");
- ``ormsgpack``: ``packb`` / ``unpackb`` (if installed);
- rtclient's own codecs (``rtclient.codec.JsonCodec`` and, when it exists,
  ``MsgpackCodec``) on the envelope, as constructed by default: what rtclient pays per
  frame (with orjson / ormsgpack when installed, as ``pip install rtclient[fast]``).

Each figure is the best of several timing rounds (the least disturbed one).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import msgpack

from rtclient import codec as rt_codec
from rtclient.ids import new_message_id

from .context import Context
from .harness import median
from .results import CodecResults, CodecRow, Row, at_most
from .server import TEXT

orjson: ModuleType | None
try:
    import orjson
except ImportError:  # pragma: no cover - optional
    orjson = None

ormsgpack: ModuleType | None
try:
    import ormsgpack
except ImportError:  # pragma: no cover - optional
    ormsgpack = None

Pair = tuple[Callable[[Any], Any], Callable[[Any], Any]]


def envelopes() -> dict[str, dict[str, Any]]:
    """Seed-like envelopes: a request, a broadcast, an ack, a sync page of 50 events."""
    epoch = "9c1d5e0f2a7b4c3d"
    now = 1764059000.512

    def message(i: int) -> dict[str, Any]:
        return {
            "roomId": "general",
            "eventId": 4200 + i,
            "epoch": epoch,
            "messageId": new_message_id(),
            "from": "alice",
            "text": f"{TEXT} #{i}",
            "timestamp": now + i,
        }

    send_id = new_message_id()
    return {
        "chat:send (request)": {
            "type": "chat:send",
            "id": send_id,
            "payload": {"roomId": "general", "text": TEXT},
        },
        "chat:message (event)": {"type": "chat:message", "payload": message(0)},
        "ack": {
            "type": "ack",
            "id": send_id,
            "payload": {
                "success": True,
                "roomId": "general",
                "eventId": 4200,
                "messageId": send_id,
                "epoch": epoch,
                "timestamp": now,
                "duplicate": False,
            },
        },
        "sync page, 50 events (ack)": {
            "type": "ack",
            "id": new_message_id(),
            "payload": {
                "success": True,
                "roomId": "general",
                "epoch": epoch,
                "events": [message(i) for i in range(50)],
                "more": False,
                "truncated": False,
                "lastEventId": 4249,
            },
        },
    }


def _json_dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _pairs() -> dict[str, Pair]:
    pairs: dict[str, Pair] = {
        "json": (_json_dumps, json.loads),
        "msgpack": (
            lambda obj: msgpack.packb(obj, use_bin_type=True),
            lambda data: msgpack.unpackb(data, raw=False),
        ),
    }
    if orjson is not None:
        pairs["orjson"] = (orjson.dumps, orjson.loads)
    if ormsgpack is not None:
        pairs["ormsgpack"] = (ormsgpack.packb, ormsgpack.unpackb)
    for name in ("JsonCodec", "MsgpackCodec"):
        cls = getattr(rt_codec, name, None)
        if cls is not None:
            codec = cls()
            pairs[f"rtclient {name}"] = (codec.encode, codec.decode)
    return pairs


def _time(pair: Pair, obj: Any, *, rounds: int, seconds: float) -> float:
    """Best seconds for one encode + decode."""
    encode, decode = pair
    frame = encode(obj)
    loops = 1
    while True:  # calibrate to about seconds / rounds per round
        start = time.perf_counter()
        for _ in range(loops):
            decode(encode(obj))
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / rounds / 4 or loops >= 1 << 20:
            break
        loops *= 4
    best = elapsed / loops
    for _ in range(rounds - 1):
        start = time.perf_counter()
        for _ in range(loops):
            decode(encode(obj))
        best = min(best, (time.perf_counter() - start) / loops)
    assert decode(frame) is not None
    return best


def _size(frame: str | bytes) -> int:
    return len(frame.encode()) if isinstance(frame, str) else len(frame)


def run(quick: bool) -> CodecResults:
    """Sizes and timings per envelope; see the module docstring."""
    rounds, seconds = (3, 0.06) if quick else (5, 0.15)
    pairs = _pairs()
    for pair in pairs.values():  # warm up: the first timings are otherwise off
        _time(pair, envelopes()["ack"], rounds=1, seconds=seconds / 4)
    rows: list[CodecRow] = []
    for name, envelope in envelopes().items():
        json_size = _size(_json_dumps(envelope))
        msgpack_size = len(msgpack.packb(envelope, use_bin_type=True))
        times = {
            codec: _time(pair, envelope, rounds=rounds, seconds=seconds)
            for codec, pair in pairs.items()
        }
        if orjson is not None:
            times["orjson (payload only)"] = _time(
                pairs["orjson"], envelope["payload"], rounds=rounds, seconds=seconds
            )
        rows.append(CodecRow(name, json_size, msgpack_size, times))
    return CodecResults(rows, orjson is not None)


async def case(ctx: Context) -> None:
    """The ``codecs`` case: msgpack's bytes; rtclient's codecs against bare orjson (≤ 2x)."""
    ctx.say("codecs: JSON vs msgpack on seed-like envelopes")
    got = ctx.results.details.codecs = run(ctx.quick)
    rows = got.rows
    saving = [1 - r.msgpack_bytes / r.json_bytes for r in rows]
    ctx.row(
        Row(
            "codec: msgpack bytes vs JSON",
            f"{min(saving) * 100:.0f}-{max(saving) * 100:.0f} % smaller",
            "JSON (compact, UTF-8)",
            median([r.msgpack_bytes / r.json_bytes for r in rows]),
            note="the seed guide expects 30-50 % smaller",
        )
    )
    judged = [n for n in ("rtclient JsonCodec", "rtclient MsgpackCodec") if n in rows[0].times]
    if not got.orjson:
        ctx.skip("codec target", "orjson is not installed", targets=len(judged))
        return
    base = "orjson (payload only)"
    for name in judged:
        ratios = [r.times[name] / r.times[base] for r in rows]
        small = [r for r in rows if "sync page" not in r.envelope]
        mean_us = median([r.times[name] * 1e6 for r in small])
        base_us = median([r.times[base] * 1e6 for r in small])
        ctx.row(
            Row(
                f"codec: envelope encode + decode, {name.split()[-1]}",
                f"{mean_us:.2f} µs",
                f"orjson on the payload {base_us:.2f} µs",
                median(ratios),
                at_most(2.0),
                note=f"median over the 4 envelopes; worst {max(ratios):.1f}x",
            )
        )

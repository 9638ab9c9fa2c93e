"""Markdown for docs/benchmarks.md: the generated block between the results markers."""

from __future__ import annotations

from pathlib import Path

from .harness import median, percentile
from .results import (
    CodecResults,
    ProfileDetails,
    RecoveryDetails,
    Results,
    ScaleDetails,
    ScaleRun,
    StoreDetails,
    Throughput,
)
from .spec import WorkerResult

BEGIN = "<!-- results:begin: written by `python -m benchmarks`; edit outside the markers -->"
END = "<!-- results:end -->"

LABELS = {
    "send rt w1": "rtclient `await send()`, window 1",
    "send ws w1": "websockets request/ack loop, window 1",
    "send rt w64": "rtclient 64 tasks x `await send()`, `max_in_flight=64`",
    "send ws w64": "websockets, 64 outstanding, acks matched by id",
    "send rt nowait w64": "rtclient `send_nowait()` x n, `max_in_flight=64`",
    "recv rt": "rtclient handler (`client.on`)",
    "recv ws": "websockets `async for` + `json.loads`",
    "send rt w64 plain": "rtclient 64 tasks x `await send()`, compression off",
    "send ws w64 plain": "websockets, 64 outstanding, compression off",
    "recv rt plain": "rtclient handler, compression off",
    "recv ws plain": "websockets receive loop, compression off",
    "send aio w64 plain": "bare aiohttp client, 64 outstanding, no compression",
    "recv aio plain": "bare aiohttp client receive loop, no compression",
    "send rt w1 plain": "rtclient `await send()`, window 1, compression off",
    "send rta w1": "rtclient `transport='aiohttp'`, `await send()`, window 1",
    "send rta w64": "rtclient `transport='aiohttp'`, 64 tasks x `await send()`",
    "send rta w64 plain": "rtclient `transport='aiohttp'`, 64 tasks, compression off",
    "recv rta": "rtclient `transport='aiohttp'` handler",
    "recv rta plain": "rtclient `transport='aiohttp'` handler, compression off",
    "sio rt send": "rtclient `transport='socketio'`, `await send()`",
    "sio call": "python-socketio `await call('chat:send')`",
    "sio rt recv": "rtclient `transport='socketio'` handler",
    "sio recv": "python-socketio `on('chat:message')` handler",
}


def _ms(values: list[float]) -> str:
    return ", ".join("∞" if v == float("inf") else f"{v * 1000:.0f}" for v in values)


def _met(met: bool | None) -> str:
    return "-" if met is None else ("**yes**" if met else "**no**")


def _summary(results: Results) -> list[str]:
    lines = [
        "| case | rtclient | baseline | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for row in results.rows:
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
        case = row.case
        if row.note:
            notes.append(row.note)
            case += f" [{len(notes)}]"
        lines.append(
            f"| {case} | {row.rtclient} | {row.baseline} | {ratio} | "
            f"{row.target.label if row.target else '-'} "
            f"| {_met(row.met)} |"
        )
    lines.append("")
    lines += [f"[{i}] {note}  " for i, note in enumerate(notes, 1)]
    if results.skipped:
        lines += [
            "",
            *(
                f"Skipped: {name}: {why}"
                + (
                    f" ({results.unjudged[name]} targets not measured)."
                    if name in results.unjudged
                    else "."
                )
                for name, why in results.skipped.items()
            ),
        ]
    return lines


def _throughput(details: dict[str, Throughput]) -> list[str]:
    lines = [
        "### Throughput runs",
        "",
        "*best* is the fastest run (the figure in the table above: on a shared 2-core "
        "machine, other load only ever slows a run down); *client CPU* the worker "
        "process's least CPU time per message over the measured span, *busy* its CPU "
        "time over wall time (near 100 %: the client is the bottleneck, not the server). "
        "*server s* is how long the server took to push the flood.",
        "",
        "| measurement | best msg/s | median | every run | client CPU µs/msg | busy | "
        "WebSocket extensions | server s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, d in details.items():
        server = [s for s in d.server_seconds if s is not None]
        lines.append(
            f"| {LABELS.get(label, label)} (n={d.spec.get('n', '?')}) | {d.rate:,.0f} | "
            f"{d.median:,.0f} | "
            f"{', '.join(f'{r:,.0f}' for r in d.rates)} | {d.cpu_us:.1f} | "
            f"{d.busy * 100:.0f} % | {d.extensions or '-'} | "
            f"{', '.join(f'{s:.2f}' for s in server) or '-'} |"
        )
    return [*lines, ""]


def _recovery(details: RecoveryDetails) -> list[str]:
    lines = ["### Recovery runs", ""]
    for runs, title in (
        (details.drop, "Dropped connection, server up (each client alone)"),
        (details.restart, "Server process killed and restarted (all clients at once)"),
    ):
        if not runs:
            continue
        lines += [
            f"{title}; milliseconds from the fault:",
            "",
            "| client | until | p50 | p90 | min | max | every run |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, times in runs.items():
            until = "fully recovered" if name == "rtclient" else "connected"
            lines.append(
                f"| {name} | {until} | {median(times) * 1000:.0f} | "
                f"{percentile(times, 0.9) * 1000:.0f} | {min(times) * 1000:.0f} | "
                f"{max(times) * 1000:.0f} | {_ms(times)} |"
            )
        lines.append("")
    if details.restart_server_start:
        lines += [
            "The new server process was listening after "
            f"{_ms(details.restart_server_start)} ms (spawn to ready, Python start-up "
            "included).",
            "",
        ]
    if details.herd:
        herd = details.herd
        lines += [
            f"{len(herd)} rtclients in one process, one drop: fully recovered after "
            f"{herd[0] * 1000:.0f} ms (first) … {median(herd) * 1000:.0f} ms (p50) … "
            f"{herd[-1] * 1000:.0f} ms (last). The first attempts are spread over "
            "`uniform(0, 50 ms)`; the rest of the spread is the client process and the "
            "server doing 50 handshakes, rejoins, syncs and flushes on two cores.",
            "",
        ]
    return lines


def _memory(details: dict[str, WorkerResult]) -> list[str]:
    lines = [
        "### Idle memory",
        "",
        "| client | clients | RSS delta | per client | asyncio tasks | connect time |",
        "|---|---|---|---|---|---|",
    ]
    kinds = (
        ("idle_rt", "rtclient"),
        ("idle_rt_aio", "rtclient, transport='aiohttp'"),
        ("idle_ws", "websockets"),
    )
    for kind, name in kinds:
        if kind not in details:
            continue
        d = details[kind]
        n = d["count"]
        lines.append(
            f"| {name} | {n} | {d['rss_bytes'] / 2**20:.1f} MiB | "
            f"{d['rss_bytes'] / n / 1024:.1f} KiB | {d['tasks']} | {d['connected_in']:.1f} s |"
        )
    return [*lines, ""]


def _codecs(details: CodecResults) -> list[str]:
    rows = details.rows
    names = list(rows[0].times)
    lines = [
        "### Codecs",
        "",
        "Bytes per frame and µs per encode + decode (best of several rounds).",
        "",
        "| envelope | JSON bytes | msgpack bytes | saving | "
        + " | ".join(f"{n} µs" for n in names)
        + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for r in rows:
        saving = 1 - r.msgpack_bytes / r.json_bytes
        lines.append(
            f"| {r.envelope} | {r.json_bytes} | {r.msgpack_bytes} | "
            f"{saving * 100:.0f} % | " + " | ".join(f"{r.times[n] * 1e6:.2f}" for n in names) + " |"
        )
    return [*lines, ""]


def _store(details: StoreDetails) -> list[str]:
    lines = [
        "### Store",
        "",
        f"Messages per second, one run each, on {details.file_system}.",
        "",
        "| workload | MemoryStore | SqliteStore (normal) | ratio |",
        "|---|---|---|---|",
    ]
    for name, rates in details.rates.items():
        lines.append(
            f"| {name} | {rates['memory']:,.0f} | {rates['sqlite/normal']:,.0f} | "
            f"{rates['sqlite/normal'] / rates['memory']:.2f}x |"
        )
    return [*lines, ""]


def _profile(details: ProfileDetails) -> list[str]:
    lines = ["### Profiles", ""]
    for name, summary in details.runs.items():
        result = summary.result
        speed = "" if result is None else f"{result['count'] / result['seconds']:,.0f}"
        lines += [
            f"**{name}** (py-spy, {summary.samples} samples; under py-spy the worker "
            f"ran at {speed or '?'} msg/s).",
            "",
            "Self time by package: "
            + ", ".join(f"{pkg} {share:.0f} %" for pkg, share in summary.packages if share >= 1)
            + ".",
            "",
            "| top functions, self time | % | rtclient functions, inclusive | % |",
            "|---|---|---|---|",
        ]
        own, incl = summary.own, summary.rtclient_inclusive
        for i in range(max(len(own), len(incl))):
            left = own[i] if i < len(own) else ("", 0.0)
            right = incl[i] if i < len(incl) else ("", 0.0)
            lines.append(
                f"| {left[0]} | {left[1]:.1f} | {right[0]} | {right[1]:.1f} |"
                if left[0] or right[0]
                else "| | | | |"
            )
        lines.append("")
    memory = details.memory
    if memory:
        rt, ws = memory["idle_rt"], memory["idle_ws"]
        n = rt["count"]
        lines += [
            f"**Idle memory** (tracemalloc, {n} clients): Python allocations per client, "
            f"rtclient {rt['traced_bytes'] / n / 1024:.1f} KiB, websockets "
            f"{ws['traced_bytes'] / n / 1024:.1f} KiB (zlib's compression buffers count "
            "here in full; RSS holds only their touched pages). Largest sites that the "
            "bare client does not have:",
            "",
            "| site | bytes per client |",
            "|---|---|",
        ]
        bare = {site for site, _ in ws["sites"]}
        for site, size in rt["sites"]:
            if site not in bare and size / n >= 200:
                lines.append(f"| {site} | {size / n:,.0f} |")
        lines.append("")
    return lines


def scale_table(runs: list[ScaleRun]) -> list[str]:
    """One line per run of ``benchmarks.scale`` (times in ms from leaving CONNECTED)."""
    lines = [
        "| clients (processes) | nodes | outages (clients) | CONNECTED p50 / p99 "
        "| recovered p50 | p99 | max | never | ack → delivery p50 / p99 "
        "| lost / dup / reordered / unannounced | sent = acked | delivered | gaps "
        "| node restarts (s) | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        a = r.anomalies
        broken = "/".join(
            str(a.get(k, 0)) for k in ("lost", "duplicated", "reordered", "unannounced_gaps")
        )
        lag = " / ".join(_ms([t]) for t in r.latency) or "-"
        lines.append(
            f"| {r.clients:,} ({r.processes}) | {r.nodes} | {r.outages:,} "
            f"({r.clients_disrupted:,}) | {_ms([percentile(r.connected, 0.5)])} / "
            f"{_ms([percentile(r.connected, 0.99)])} | {_ms([r.p50])} | {_ms([r.p99])} "
            f"| {_ms([r.max])} "
            f"| {r.never} | {lag} | {broken} | {r.sent:,} {'=' if r.sent == r.acked else '≠'} "
            f"{r.acked:,} | {r.delivered:,} | {r.announced_gaps:,} | "
            f"{', '.join(f'{t:.1f}' for t in r.node_restarts)} | "
            f"{r.load_before:.1f} → {r.load_after:.1f} |"
        )
    return lines


def _scale(details: ScaleDetails) -> list[str]:
    return [
        "### Scale",
        "",
        "Rolling restart under many clients (`benchmarks.scale`); milliseconds from "
        "leaving CONNECTED to fully recovered, per outage.",
        "",
        *scale_table(details.runs),
        "",
    ]


def render(results: Results) -> str:
    m = results.machine
    s = results.sizes
    lines = [
        BEGIN,
        "",
        f"Command: `{results.command}` — {m['date']}, {results.seconds:.0f} s"
        f"{' (quick run)' if results.quick else ''}.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}; {m['python']}.  ",
        f"Libraries: {m['libraries']}.  ",
        f"Load average (1 min) at the start and the end: {m.get('load', '?')} "
        "(the machine is shared: other work slows single runs down).  ",
        f"Runs: {s.repeats} per throughput measurement (best), {s.drop_runs} drops, "
        f"{s.restart_runs} restarts, {s.idle_clients} idle clients.",
        "",
        *_summary(results),
        "",
    ]
    d = results.details
    if d.throughput:
        lines += _throughput(d.throughput)
    if d.recovery is not None:
        lines += _recovery(d.recovery)
    if d.memory:
        lines += _memory(d.memory)
    if d.codecs is not None:
        lines += _codecs(d.codecs)
    if d.store is not None:
        lines += _store(d.store)
    if d.profile is not None:
        lines += _profile(d.profile)
    if d.scale is not None:
        lines += _scale(d.scale)
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_report(results: Results, path: Path) -> None:
    """Replace the generated block of ``path`` (or create the file around it)."""
    block = render(results)
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, _, rest = text.partition(BEGIN)
            _, _, tail = rest.partition(END)
            path.write_text(head + block.rstrip("\n") + tail)
            return
        path.write_text(text.rstrip("\n") + "\n\n" + block)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Benchmarks\n\nRun `python -m benchmarks`.\n\n" + block)

"""A real load balancer for cluster tests: haproxy in front of a :class:`~.cluster.Cluster`.

::

    async with Cluster(3) as cluster, Balancer(cluster) as lb:
        client = Client(lb.url("websocket"), token=cluster.token_provider("alice"))
        busy = await cluster.busiest()       # the node every loopback client is on
        await cluster.kill(busy)
        await lb.wait_state(busy, "DOWN")

haproxy (from Debian's ``haproxy`` package; see :mod:`.programs`) runs in the foreground
with a generated config: HTTP mode (WebSocket upgrades and Socket.IO long-polling pass
through it, tunnelled), sticky by client address (``balance source``, the seed guide's
nginx ``ip_hash`` drawing, on a consistent hash so that only a dead node's clients move),
and a health check on each node's ``/health`` every 100 ms, so a dead or draining node is
taken out. A connect that fails is retried on another node (``option redispatch``).

On loopback every client has the same source address, so all of them are on one node:
a kill or a drain of that node moves every client at once, the hard case.

The stats page (``stats_url``, CSV at ``;csv``) says what haproxy thinks of each node;
:meth:`Balancer.wait_state` polls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp

from .cluster import Cluster, free_port
from .cluster_node import die_with_parent, open_log
from .programs import require_program
from .waiting import wait_until

__all__ = ["Balancer", "haproxy_config"]

START_TIMEOUT = 15.0
CHECK_INTERVAL_MS = 100


def haproxy_config(
    *,
    host: str,
    port: int,
    stats_port: int,
    servers: list[tuple[str, int]],
    check_interval_ms: int = CHECK_INTERVAL_MS,
) -> str:
    """The haproxy configuration: one frontend on ``host:port``, ``servers`` behind it."""
    lines = [
        "global",
        "    maxconn 4000",  # within a default 20,000-descriptor limit
        "",
        "defaults",
        "    mode http",
        "    timeout connect 1s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout tunnel 1h",  # an upgraded WebSocket lives as long as it likes
        "    timeout client-fin 1s",
        "    timeout server-fin 1s",
        "    timeout http-request 10s",
        "    retries 3",
        "    option redispatch 1",  # every retry may go to another node
        # A node that refuses (a drain answers new handshakes 503) is passed over until
        # its check says it is out: a handshake is a GET, safe to send again.
        "    retry-on conn-failure empty-response response-timeout 503",
        "",
        "frontend rtclient",
        f"    bind {host}:{port}",
        "    default_backend nodes",
        "",
        "backend nodes",
        "    balance source",
        "    hash-type consistent",
        "    option httpchk GET /health",
        # 200 and "status": "ok": a draining node answers "draining" and is taken out.
        '    http-check expect rstring "\\"status\\": *\\"ok\\""',
        f"    default-server inter {check_interval_ms}ms fastinter {check_interval_ms}ms"
        " fall 1 rise 2 on-marked-down shutdown-sessions",
    ]
    lines += [f"    server node{i} {h}:{p} check" for i, (h, p) in enumerate(servers)]
    lines += [
        "",
        "listen stats",
        f"    bind {host}:{stats_port}",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 1s",
        "",
    ]
    return "\n".join(lines)


class Balancer:
    """haproxy on a free loopback port in front of every node of ``cluster``.

    Use ``async with`` (or :meth:`start` / :meth:`aclose`); start it after the cluster.
    Raises :class:`~.programs.ProgramMissing` when haproxy is not installed.
    """

    def __init__(self, cluster: Cluster, *, port: int | None = None) -> None:
        self.cluster = cluster
        self.host = cluster.host
        self.port = port or free_port(self.host)
        self.stats_port = free_port(self.host)
        self._program = require_program("haproxy")
        self._dir = Path(tempfile.mkdtemp(prefix="rtclient-haproxy-"))
        self.config_path = self._dir / "haproxy.cfg"
        self.log_path = self._dir / "haproxy.log"
        self._process: asyncio.subprocess.Process | None = None

    def __repr__(self) -> str:
        return f"<Balancer haproxy on {self.host}:{self.port}>"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def url(self, transport: str = "websocket") -> str:
        """The balancer's URL for ``transport`` (``ws://…/ws``, or ``http://…`` for Socket.IO)."""
        base = f"{self.host}:{self.port}"
        return f"http://{base}" if transport == "socketio" else f"ws://{base}/ws"

    @property
    def stats_url(self) -> str:
        return f"http://{self.host}:{self.stats_port}/stats"

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Write the config, start haproxy, return once every running node is UP in it."""
        servers = [(node.host, node.port) for node in self.cluster.nodes]
        self.config_path.write_text(
            haproxy_config(
                host=self.host, port=self.port, stats_port=self.stats_port, servers=servers
            )
        )
        with open_log(self.log_path, f"haproxy on {self.host}:{self.port}") as log:
            self._process = await asyncio.create_subprocess_exec(
                self._program,
                "-db",  # foreground, no daemon
                "-f",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=die_with_parent(),
            )
        try:
            for i in self.cluster.running():
                await self.wait_state(i, "UP", timeout=START_TIMEOUT)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop haproxy and remove its folder; idempotent."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- what haproxy thinks -----------------------------------------------------------------

    async def states(self) -> dict[int, str]:
        """Each node's status in haproxy (``UP``, ``DOWN``, ``UP 1/2`` …), by node index."""
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.stats_url + ";csv") as response,
        ):
            text = await response.text()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        found: dict[int, str] = {}
        for row in rows:
            name = row.get("svname") or ""
            if row.get("pxname") == "nodes" and name.startswith("node"):
                found[int(name[4:])] = row.get("status") or ""
        return found

    async def wait_state(self, i: int, state: str, *, timeout: float = 10.0) -> None:
        """Wait until haproxy reports node ``i`` as ``state`` (``"UP"`` or ``"DOWN"``)."""
        seen: str | None = None

        async def reached() -> bool:
            nonlocal seen
            if self._process is None or self._process.returncode is not None:
                raise RuntimeError(f"haproxy is not running; its log ends:\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, ValueError):
                seen = (await self.states()).get(i)
            return seen == state

        try:
            await wait_until(reached, timeout, interval=0.02)
        except TimeoutError:
            raise TimeoutError(f"haproxy still says node {i} is {seen!r}, not {state!r}") from None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

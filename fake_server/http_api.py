"""HTTP endpoints: ``GET /health``, ``POST /admin/token``, ``POST /admin/faults/<name>``.

Admin endpoints answer 404 when the server has no ``admin_token`` and 401 when the
``Authorization: Bearer`` header does not match it (compared in constant time).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

if TYPE_CHECKING:
    from .server import FakeServer

__all__ = ["AccessLogger", "add_routes"]

log = logging.getLogger("fake_server.http")


class AccessLogger(AbstractAccessLogger):
    """Logs method, path and status; never the query string (it may hold a token)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "%s %s %s %.1fms", request.method, request.path, response.status, time * 1000
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)


class _BadArgs(Exception):
    pass


def add_routes(app: web.Application, server: FakeServer) -> None:
    """Install the HTTP endpoints of ``server`` on ``app``."""
    api = _Api(server)
    app.router.add_get("/health", api.health)
    app.router.add_post("/admin/token", api.token)
    app.router.add_post("/admin/faults/{name}", api.fault)


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _int(args: dict[str, Any], name: str, default: int | None = None, *, minimum: int = 0) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _BadArgs(f"{name} must be an integer >= {minimum}")
    return value


def _number(args: dict[str, Any], name: str, default: float | None = None) -> float:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _BadArgs(f"{name} must be a number >= 0")
    return float(value)


def _optional_number(args: dict[str, Any], name: str) -> float | None:
    return None if args.get(name) is None else _number(args, name)


class _Api:
    def __init__(self, server: FakeServer) -> None:
        self._server = server
        self._faults: dict[str, Callable[[dict[str, Any]], Awaitable[web.Response]]] = {
            "drop_connections": self._drop_connections,
            "close_all": self._close_all,
            "restart": self._restart,
            "pause": self._pause,
            "resume": self._resume,
            "reject_handshakes": self._reject_handshakes,
            "expire_tokens": self._expire_tokens,
            "lose_next_acks": self._lose_next_acks,
            "duplicate_next_events": self._duplicate_next_events,
            "set_latency": self._set_latency,
        }

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(self._server.health())

    def _check_admin(self, request: web.Request) -> web.Response | None:
        expected = self._server.config.admin_token
        if expected is None:
            raise web.HTTPNotFound()
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
            log.info("admin request refused: bad credentials")
            return _json_error(401, "bad admin credentials")
        return None

    async def _args(self, request: web.Request) -> dict[str, Any]:
        body = await request.text()
        if not body.strip():
            return {}
        try:
            args = json.loads(body)
        except ValueError:
            raise _BadArgs("body is not JSON") from None
        if not isinstance(args, dict):
            raise _BadArgs("body must be a JSON object")
        return args

    async def token(self, request: web.Request) -> web.Response:
        if (refused := self._check_admin(request)) is not None:
            return refused
        try:
            args = await self._args(request)
            user_id = args.get("userId")
            if not isinstance(user_id, str) or not 1 <= len(user_id) <= 64:
                raise _BadArgs("userId must be a string of 1 to 64 characters")
            ttl = _number(args, "ttl", 3600.0)
            roles = args.get("roles", [])
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise _BadArgs("roles must be a list of strings")
        except _BadArgs as exc:
            return _json_error(400, str(exc))
        token = self._server.issue_token(user_id, ttl=ttl, roles=roles)
        return web.json_response({"token": token})

    async def fault(self, request: web.Request) -> web.Response:
        if (refused := self._check_admin(request)) is not None:
            return refused
        name = request.match_info["name"]
        handler = self._faults.get(name)
        if handler is None:
            return _json_error(404, f"unknown fault {name!r}")
        try:
            args = await self._args(request)
            response = await handler(args)
        except (_BadArgs, ValueError) as exc:
            return _json_error(400, str(exc))
        log.info("fault %s armed over HTTP", name)
        return response

    # -- faults ------------------------------------------------------------------------

    @staticmethod
    def _ok(name: str, status: int = 200) -> web.Response:
        return web.json_response({"ok": True, "fault": name}, status=status)

    async def _drop_connections(self, args: dict[str, Any]) -> web.Response:
        await self._server.drop_connections()
        return self._ok("drop_connections")

    async def _close_all(self, args: dict[str, Any]) -> web.Response:
        reason = args.get("reason", "")
        if not isinstance(reason, str):
            raise _BadArgs("reason must be a string")
        await self._server.close_all(_int(args, "code", 1001, minimum=1000), reason)
        return self._ok("close_all")

    async def _restart(self, args: dict[str, Any]) -> web.Response:
        downtime = _number(args, "downtime", 0.0)
        keep_log = args.get("keepLog", True)
        if not isinstance(keep_log, bool):
            raise _BadArgs("keepLog must be a boolean")
        # Answer first: the restart closes connections and stops listening.
        self._server.spawn(self._server.restart(downtime=downtime, keep_log=keep_log))
        return self._ok("restart", 202)

    async def _pause(self, args: dict[str, Any]) -> web.Response:
        await self._server.pause()
        return self._ok("pause")

    async def _resume(self, args: dict[str, Any]) -> web.Response:
        await self._server.resume()
        return self._ok("resume")

    async def _reject_handshakes(self, args: dict[str, Any]) -> web.Response:
        await self._server.reject_handshakes(
            _int(args, "n", 1), _int(args, "status", 503), _optional_number(args, "retryAfter")
        )
        return self._ok("reject_handshakes")

    async def _expire_tokens(self, args: dict[str, Any]) -> web.Response:
        await self._server.expire_tokens()
        return self._ok("expire_tokens")

    async def _lose_next_acks(self, args: dict[str, Any]) -> web.Response:
        await self._server.lose_next_acks(_int(args, "n", 1))
        return self._ok("lose_next_acks")

    async def _duplicate_next_events(self, args: dict[str, Any]) -> web.Response:
        await self._server.duplicate_next_events(_int(args, "n", 1))
        return self._ok("duplicate_next_events")

    async def _set_latency(self, args: dict[str, Any]) -> web.Response:
        await self._server.set_latency(_number(args, "ms"))
        return self._ok("set_latency")

"""The connection layer under both listeners: limits on slow, idle and too many clients, and a
bare answer for requests aiohttp refuses before any of our code runs.

aiohttp closes an idle keep-alive connection after `keepalive_timeout`, but it gives a client that
sends its headers a byte at a time the same long allowance, and it accepts connections without
limit until the process runs out of file descriptors (then health checks and the policy watcher
fail too). Here a request's headers must arrive within `header_timeout` of the connection opening
(or of the first byte after an idle keep-alive), and past `max_connections` open connections on a
listener a new one gets a bare 503 and is closed at once; each listener counts its own, so a full
public listener leaves the admin listener (health, readiness, metrics) reachable.

aiohttp's own answer to a request it cannot parse quotes the offending bytes and logs them with a
traceback; those bytes may be a token. Ours answers with the bare status, our Server header, a
request id and one access line, and logs only the error's class."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.observability import log_access, new_request_id
from gateway.settings import ListenerLimits, Settings, listener_limits

log = logging.getLogger("gateway.http")

SERVER_HEADER = "asset-gateway"
NO_STORE = "private, no-store"
# Each listener's limits, set by its app factory; a listener without them gets the defaults.
LIMITS = web.AppKey("listener_limits", ListenerLimits)
# A listener's shortcut: called with each request before routing; a response it returns is the
# answer, None routes the request as usual (the public listener's answer-cache hits).
Shortcut = Callable[[web.Request], "web.StreamResponse | None"]
SHORTCUT: web.AppKey[Shortcut] = web.AppKey("listener_shortcut")
DEFAULT_LIMITS = listener_limits(Settings(), admin=False)


def _handler_args(limits: ListenerLimits) -> dict[str, Any]:
    """The limits aiohttp's request handler enforces itself."""
    return {
        "keepalive_timeout": limits.keepalive_timeout,
        "max_line_size": limits.max_header_size,
        "max_field_size": limits.max_header_size,
    }


def _over_capacity_answer(request_id: str) -> bytes:
    return (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"Server: {SERVER_HEADER}\r\n"
        f"Cache-Control: {NO_STORE}\r\n"
        "Retry-After: 1\r\n"
        f"X-Request-Id: {request_id}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 20\r\n"
        "Connection: close\r\n"
        "\r\n"
        "Service Unavailable\n"
    ).encode()


class _GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with a header-read deadline and a per-listener connection cap."""

    def __init__(self, manager: _GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if guard.open_connections >= guard.limits.max_connections:
            self._refused = True
            rid = new_request_id()
            transport.write(_over_capacity_answer(rid))  # type: ignore[attr-defined]
            transport.close()
            guard.refused += 1
            log_access({"request_id": rid, "listener": guard.name, "status": 503, "outcome": "over_capacity"})
            return
        guard.open_connections += 1
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._guard.open_connections -= 1
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:  # a whole request head arrived
            self._disarm_header_timer()
        elif data and self._header_timer is None and not self._request_in_progress and not self._messages:
            # Part of a request after an idle keep-alive (a whole one, the usual case, costs no timer).
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self._loop.call_later(self._guard.limits.header_timeout, self._header_late)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if not self._request_in_progress and not self._messages:
            self._guard.timed_out += 1
            log.info("closed a connection whose request headers did not arrive in time")
            self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("error handling request from %s", request.remote, exc_info=exc)
        else:
            log.info("refused a malformed request from %s: %s", request.remote, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; closing the connection")
        rid = new_request_id()
        response = web.Response(status=status, text=f"{HTTPStatus(status).phrase}\n")
        response.headers["Server"] = SERVER_HEADER
        response.headers["Cache-Control"] = NO_STORE
        response.headers["X-Request-Id"] = rid
        response.force_close()
        outcome = "malformed_request" if status < 500 else "error"
        log_access({"request_id": rid, "listener": self._guard.name, "status": status, "outcome": outcome})
        return response


class _GuardedServer(web.Server):
    """aiohttp's Server with our handler class, this listener's limits and its counters."""

    limits: ListenerLimits
    name: str
    open_connections: int
    refused: int
    timed_out: int

    def __call__(self) -> RequestHandler:
        return _GuardedRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner for one of our listeners; `name` labels its log lines ("public", "admin")."""

    def __init__(self, app: web.Application, *, name: str = "public", **kwargs: Any) -> None:
        self.limits = app.get(LIMITS, DEFAULT_LIMITS)
        kwargs = {**_handler_args(self.limits), **kwargs}
        super().__init__(app, access_log=None, handle_signals=False, **kwargs)
        self.name = name

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # same state, our handler class; tested in test_public
        assert isinstance(server, _GuardedServer)
        server.limits = self.limits
        server.name = self.name
        server.open_connections = server.refused = server.timed_out = 0
        shortcut = self.app.get(SHORTCUT)
        if shortcut is not None:
            routed = server.request_handler

            async def handle(request: BaseRequest) -> web.StreamResponse:
                # The application's request factory makes every request a web.Request.
                answer = shortcut(cast(web.Request, request))
                return answer if answer is not None else await routed(request)

            server.request_handler = handle
        return server

    @property
    def open_connections(self) -> int:
        server = self.server
        return server.open_connections if isinstance(server, _GuardedServer) else 0

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
request id and one access line, and logs only the error's class.

A listener may also have a wire answerer (the public one's answer-cache hits): each request aiohttp's
parser completes on an idle keep-alive connection is offered to it first, and the bytes it returns
are written as the answer, without aiohttp's request and response objects. Anything it declines,
and everything behind that in a pipeline, goes to aiohttp's queue as parsed, so answers keep the
order of the requests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.observability import log_access, new_request_id
from gateway.settings import ListenerLimits, Settings, listener_limits

log = logging.getLogger("gateway.http")

SERVER_HEADER = "asset-gateway"
NO_STORE = "private, no-store"
# Each listener's limits, set by its app factory; a listener without them gets the defaults.
LIMITS = web.AppKey("listener_limits", ListenerLimits)
# A listener's wire answerer (the public listener's answer-cache hits, gateway.http.shortcut):
# called with the parsed head of a keep-alive HTTP/1.1 request without a body, the connection's
# peer address and whether it is TLS, when no other request of the connection is queued or being
# answered; the bytes it returns are written as the whole response, None hands the request to
# aiohttp as usual.
WireAnswerer = Callable[[RawRequestMessage, "str | None", bool], "bytes | None"]
WIRE_ANSWERER: web.AppKey[WireAnswerer] = web.AppKey("listener_wire_answerer")
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


class _AnsweringParser:
    """A connection's request parser that lets the connection answer each request as soon as it is
    parsed; what it does not answer (and everything after that, to keep pipelined answers in order)
    goes on to aiohttp's queue as parsed. Anything else is the wrapped parser's."""

    __slots__ = ("_connection", "_parser")

    def __init__(self, parser: Any, connection: _GuardedRequestHandler) -> None:
        self._parser = parser
        self._connection = connection

    def feed_data(self, data: bytes) -> tuple[Sequence[Any], bool, bytes]:
        parser, connection = self._parser, self._connection
        messages, upgraded, tail = parser.feed_data(data)
        while messages and connection.idle():
            answered = 0
            for message, payload in messages:
                if not connection.answer_at_once(message, payload):
                    break
                parser.message_consumed()
                answered += 1
            if answered < len(messages):
                return messages[answered:], upgraded, tail
            # All answered: the parser may hold more that it stopped at its queue limit.
            messages, upgraded, tail = parser.feed_data(b"")
        return messages, upgraded, tail

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


class _GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with a header-read deadline, a per-listener connection cap and,
    where the listener has one, its wire answerer in front of aiohttp's request handling."""

    def __init__(self, manager: _GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._answerer = manager.wire_answerer
        self._peer: str | None = None
        self._secure = False
        if self._answerer is not None:
            self._parser = _AnsweringParser(self._parser, self)  # type: ignore[assignment]

    def idle(self) -> bool:
        """Waiting for a request, none queued, the connection open and its writes flowing."""
        waiter = self._waiter
        return (
            waiter is not None
            and not waiter.done()
            and not self._messages
            and not self._paused
            and not self._force_close
            and not self._close
            and self.transport is not None
        )

    def answer_at_once(self, message: Any, payload: Any) -> bool:
        """Write the wire answerer's answer to `message` if it has one; True when written."""
        if (
            payload is not EMPTY_PAYLOAD
            or type(message) is not RawRequestMessage
            or message.should_close
            or message.upgrade
            or message.version != HttpVersion11
        ):
            return False
        assert self._answerer is not None and self.transport is not None
        answer = self._answerer(message, self._peer, self._secure)
        if answer is None:
            return False
        self.transport.write(answer)
        self._request_count += 1
        self._guard.answered_on_wire += 1
        # As aiohttp does after each answer: the idle keep-alive deadline counts from now.
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        if self._keepalive_handle is None and self._keepalive_timeout > 0:
            self._keepalive_handle = self._loop.call_at(
                self._next_keepalive_close_time, self._process_keepalive
            )
        return True

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
        peer = transport.get_extra_info("peername")
        # As aiohttp's request.remote and request.secure read them.
        self._peer = str(peer[0]) if isinstance(peer, (list, tuple)) else None if peer is None else str(peer)
        self._secure = transport.get_extra_info("sslcontext") is not None
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
    wire_answerer: WireAnswerer | None
    answered_on_wire: int
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
        server.open_connections = server.refused = server.timed_out = server.answered_on_wire = 0
        server.wire_answerer = self.app.get(WIRE_ANSWERER)
        return server

    @property
    def open_connections(self) -> int:
        server = self.server
        return server.open_connections if isinstance(server, _GuardedServer) else 0

    @property
    def answered_on_wire(self) -> int:
        """Requests the wire answerer answered (gateway.http.shortcut)."""
        server = self.server
        return server.answered_on_wire if isinstance(server, _GuardedServer) else 0

"""An AppRunner whose connection handler never echoes or logs the bytes of a malformed request.

aiohttp answers a request it cannot parse (a header over the size limit, say) with a body that
quotes the offending bytes and logs them with a traceback; those bytes may be a token. Ours answers
with the bare status and logs only the error's class."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger("gateway.http")


class _QuietRequestHandler(RequestHandler):
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
        response = web.Response(status=status, text=f"{HTTPStatus(status).phrase}\n")
        response.headers["Cache-Control"] = "private, no-store"
        response.force_close()
        return response


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, access_log=None, handle_signals=False, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _QuietServer  # same state, our handler class; tested in test_public
        return server

"""Warm answers written before aiohttp builds a request: the public listener's connection layer
(gateway.http.runner) offers every idle keep-alive GET or HEAD here as soon as its head is parsed,
and an answer-cache hit is written to the connection as the stored answer's bytes, without
aiohttp's request and response objects, routing or response signal (most of a warm request's cost).

Sound because an answer is only found under a key its own handler stored: "media" keys are stored
by `handle_media`, for (method, path) pairs the router sent it, and "auth" keys by `handle_auth`,
which the router sends every GET or HEAD of exactly `/auth`. A path routed anywhere else (legacy
URLs, sign-in) is never found here, and anything not found is routed as usual."""

from __future__ import annotations

import logging

from aiohttp.http_parser import RawRequestMessage

from gateway.http.auth_request import AUTH_PATH, original_request
from gateway.http.context import Gateway
from gateway.http.public import cached_answer

log = logging.getLogger(__name__)


def answer_on_wire(
    gateway: Gateway, message: RawRequestMessage, peer: str | None, secure: bool
) -> bytes | None:
    """The bytes of the cached answer to this request, or None to route it as usual."""
    answers = gateway.answers
    if answers is None:
        return None
    url = message.url
    if url.absolute:
        return None  # an absolute-form target: aiohttp's request decides its host and path
    raw_path = url.raw_path
    method = message.method
    if raw_path == AUTH_PATH:
        if method != "GET":
            return None  # HEAD is routed (the stored answer is keyed by nginx's method); others get 405
        endpoint, (method, raw_path, raw_query) = "auth", original_request(message.headers)
    else:
        endpoint, raw_query = "media", url.raw_query_string
    try:
        _, hit = cached_answer(gateway, message.headers, peer, secure, endpoint, method, raw_path, raw_query)
        if hit is None:
            return None
        return answers.wire_response(hit.entry, hit.now, hit.request_id, gateway.responder)
    except Exception:
        # The routed handler tries again and, failing that too, evaluates in full.
        log.exception("answer cache failed for %s; routing it", raw_path[:200])
        return None

"""Step five: a Decision → the HTTP answer (status, Location, cookies, caching headers).
The only place that knows how each outcome looks on the wire; bodies never carry detail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import quote, urlencode

from aiohttp import web

from gateway.cdn.tags import key_header_value
from gateway.models import AccessRequest, Action, AssetRecord, Decision, HostKind, Identity
from gateway.outcomes import OUTCOMES, target
from gateway.parsing import Origin, RawTokens
from gateway.presign import REUSE_FRACTION, Presigner, content_disposition, signing_window
from gateway.settings import Settings
from gateway.urls import asset_path

NO_STORE = "private, no-store"
# accel delivery: the internal nginx location that proxies to the presigned URL in X-Asset-Location.
ACCEL_LOCATION = "/_asset_s3"
ASSET_LOCATION = "X-Asset-Location"
# Characters a URL may keep in a Link header; anything else (spaces, <, >, non-ASCII) is escaped.
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
REPLACEMENT_CACHE = "public, max-age=1800"
PLACEHOLDER_CACHE = "public, max-age=60"  # DESIGN 2.8: the file may be cleared any minute
RETRY_AFTER_SECONDS = "5"
_REASONS = {403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 410: "Gone",
            503: "Service Unavailable"}  # fmt: skip


def error_response(status: int, *, retry_after: bool = False) -> web.Response:
    """An error with nothing in it but the status: no input echoed, never publicly cacheable."""
    response = web.Response(status=status, text=_REASONS.get(status, "Error") + "\n")
    response.headers["Cache-Control"] = NO_STORE
    if status == 405:
        response.headers["Allow"] = "GET, HEAD"
    if retry_after:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def public_cache_control(seconds_left: int) -> str:
    """Public answers may be reused for half the life their presigned URL has left, so a cached
    redirect never outlives its URL and always points at one with half that life still to go."""
    return f"public, max-age={max(0, seconds_left // 2)}"


Renderer = Callable[
    [Decision, AccessRequest, Origin, Identity, RawTokens, AssetRecord | None, float], web.Response
]


class Responder:
    """Built once from settings and the presigner."""

    def __init__(self, settings: Settings, presigner: Presigner) -> None:
        self._presigner = presigner
        self._default_ttl = settings.s3.presign_ttl
        self._accel = settings.server.delivery == "accel"
        self._login_url = settings.login.url
        # With [oidc] the gateway signs people in itself, on the host they asked (DESIGN 2.7).
        self._sign_in = settings.oidc.enabled
        self.login_configured = self._sign_in or bool(self._login_url)
        self._draft_host = settings.hosts.draft[0] if settings.hosts.draft else None
        self._preview_cookie = settings.tokens.preview_cookie
        self._preview_param = settings.tokens.preview_param
        self.key_header = settings.cdn.key_header
        self._legacy = settings.legacy
        # Each outcome's renderer, as gateway.outcomes names it: a missing one fails at start.
        self._renderers: dict[Action, Renderer] = {
            action: getattr(self, spec.renderer) for action, spec in OUTCOMES.items()
        }

    def respond(
        self,
        decision: Decision,
        request: AccessRequest,
        origin: Origin,
        identity: Identity,
        tokens: RawTokens,
        record: AssetRecord | None,
        now: float,
    ) -> web.StreamResponse:
        response = self._answer(decision, request, origin, identity, tokens, record, now)
        self.tag(response, record, decision)
        return response

    def tag(self, response: web.StreamResponse, record: AssetRecord | None, decision: Decision) -> None:
        """DESIGN 2.9: what a shared cache may keep carries the keys a purge will name; nothing
        private or failed does (it is never stored, and its keys would say what exists)."""
        keys = key_header_value(response.headers.get("Cache-Control", ""), record, decision)
        if keys:
            response.headers[self.key_header] = keys

    def _answer(
        self,
        decision: Decision,
        request: AccessRequest,
        origin: Origin,
        identity: Identity,
        tokens: RawTokens,
        record: AssetRecord | None,
        now: float,
    ) -> web.StreamResponse:
        if decision.action is Action.DENY:
            return error_response(decision.status)
        if request.host_kind is HostKind.OTHER:
            # Deny by default, whatever the policy says: a Host we do not serve never gets a file,
            # and never appears in a Location or a cookie we set.
            return error_response(404)
        render = self._renderers.get(decision.action)
        if render is None:
            return error_response(404)  # an action this responder does not know is never an allow
        return render(decision, request, origin, identity, tokens, record, now)

    # Renderers, one per outcome (gateway.outcomes names them): all take the same arguments.

    def deny(
        self, decision: Decision, request: AccessRequest, origin: Origin, identity: Identity,
        tokens: RawTokens, record: AssetRecord | None, now: float,
    ) -> web.Response:  # fmt: skip
        return error_response(decision.status)

    def serve(
        self, decision: Decision, request: AccessRequest, origin: Origin, identity: Identity,
        tokens: RawTokens, record: AssetRecord | None, now: float,
    ) -> web.Response:  # fmt: skip
        assert record is not None
        cache = self.cache_control(decision, now)
        if decision.not_modified:
            response = web.Response(status=304)
        elif self._accel:
            # nginx fetches X-Asset-Location in its internal location (nginx/accel.conf.template);
            # the URL travels in a header because X-Accel-Redirect takes a URI, not an absolute URL.
            response = web.Response(status=200)
            response.headers.update(self.served_headers(decision, record, now))
            response.headers[ASSET_LOCATION] = self.presigned_url(decision, request, record, now)
            response.headers["X-Accel-Redirect"] = ACCEL_LOCATION
            return response
        else:
            response = _redirect(302, self.presigned_url(decision, request, record, now), cache)
        response.headers["Cache-Control"] = cache
        # Only the 304 names the ETag: a cache holding a redirect must not revalidate it with a 304
        # (which would renew a Location whose signature expires); it fetches a fresh redirect.
        if record.etag and decision.not_modified:
            response.headers["ETag"] = record.etag
        if decision.private:
            response.headers["X-Robots-Tag"] = "noindex"
        return response

    def to_replacement(
        self, decision: Decision, request: AccessRequest, origin: Origin, identity: Identity,
        tokens: RawTokens, record: AssetRecord | None, now: float,
    ) -> web.Response:  # fmt: skip
        assert decision.replacement is not None
        target = asset_path(decision.replacement.id, decision.replacement.filename)
        if decision.private:  # it names a draft or access-limited file: for this requester only
            response = _redirect(301, self._same_origin(origin, target), NO_STORE)
            response.headers["X-Robots-Tag"] = "noindex"
            return response
        return _redirect(301, self._same_origin(origin, target), REPLACEMENT_CACHE)

    def to_current_filename(
        self, decision: Decision, request: AccessRequest, origin: Origin, identity: Identity,
        tokens: RawTokens, record: AssetRecord | None, now: float,
    ) -> web.Response:  # fmt: skip
        assert record is not None
        target = asset_path(record.id, record.filename) + (f"?{request.query}" if request.query else "")
        return _redirect(302, self._same_origin(origin, target), NO_STORE)

    def to_url(
        self, decision: Decision, request: AccessRequest, origin: Origin, identity: Identity,
        tokens: RawTokens, record: AssetRecord | None, now: float,
    ) -> web.Response:  # fmt: skip
        assert record is not None and record.redirect_url is not None
        return _redirect(302, record.redirect_url, NO_STORE)

    def to_placeholder(
        self, decision: Decision, request: AccessRequest, origin: Origin, identity: Identity,
        tokens: RawTokens, record: AssetRecord | None, now: float,
    ) -> web.Response:  # fmt: skip
        placeholder = target(decision, record, request, self._legacy)
        assert placeholder is not None
        cache = NO_STORE if decision.private else PLACEHOLDER_CACHE
        return _redirect(302, self._same_origin(origin, placeholder), cache)

    def cache_control(self, decision: Decision, now: float) -> str:
        """The Cache-Control of a served file's answer at `now` (the answer cache recomputes it
        for each reuse with `cache_control_until`)."""
        if decision.private:
            return NO_STORE
        return self.cache_control_until(self.url_window(decision, now)[1], now)

    @staticmethod
    def cache_control_until(expires_at: int, now: float) -> str:
        """A public served answer's Cache-Control at `now` for a URL expiring at `expires_at`."""
        return public_cache_control(int(expires_at - now))

    def url_window(self, decision: Decision, now: float) -> tuple[int, int]:
        """(signed_at, expires_at) of the URL `presigned_url` hands out at `now`."""
        return signing_window(self._ttl(decision), now)

    def same_url_until(self, decision: Decision, now: float) -> int:
        """The instant from which `presigned_url` hands out another URL than at `now` (one shared
        URL per time window; a URL too short-lived to share changes every second)."""
        ttl = self._ttl(decision)
        window = ttl // REUSE_FRACTION
        signed_at, _ = signing_window(ttl, now)
        return signed_at + window if window > 0 else int(now) + 1

    def _ttl(self, decision: Decision) -> int:
        options = decision.serve
        return options.presign_ttl if options and options.presign_ttl else self._default_ttl

    def presigned_url(
        self, decision: Decision, request: AccessRequest, record: AssetRecord, now: float
    ) -> str:
        """A URL for the request's own method (GET or HEAD) that serves the record's bytes: the one
        shared by every request for the same object and disposition in the current time window."""
        options = decision.serve
        return self._presigner.shared_url(
            method=request.method,
            object_key=record.object_key,
            filename=record.filename,
            content_type=record.content_type,
            disposition=options.disposition if options else "inline",
            expires=self._ttl(decision),
            now=now,
        ).url

    def served_headers(self, decision: Decision, record: AssetRecord, now: float) -> dict[str, str]:
        """The headers a served file carries when nginx delivers the bytes (accel and auth_request):
        caching, validators, type and name, the parent page, and no framing or sniffing."""
        options = decision.serve
        headers = {"Cache-Control": self.cache_control(decision, now)}
        if record.etag and _header_safe(record.etag):
            headers["ETag"] = record.etag
        last_modified = http_date(record.last_modified)
        if last_modified:
            headers["Last-Modified"] = last_modified
        if record.content_type and _header_safe(record.content_type):
            headers["Content-Type"] = record.content_type
        headers["Content-Disposition"] = content_disposition(
            options.disposition if options else "inline", record.filename
        )
        if record.parent_document_url:
            headers["Link"] = f'<{quote(record.parent_document_url, safe=_URL_SAFE)}>; rel="up"'
        headers["X-Frame-Options"] = "DENY"
        headers["X-Content-Type-Options"] = "nosniff"
        if decision.private:
            headers["X-Robots-Tag"] = "noindex"
        return headers

    def _same_origin(self, origin: Origin, path_and_query: str) -> str:
        return f"{origin.scheme}://{_netloc(origin.hostname, origin.port)}{path_and_query}"

    def to_draft_host(
        self, decision: Decision, request: AccessRequest, origin: Origin, identity: Identity,
        tokens: RawTokens, record: AssetRecord | None, now: float,
    ) -> web.Response:  # fmt: skip
        if self._draft_host is None:
            return error_response(404)
        # The query travels whole: a preview link's token must reach the draft host.
        raw_query = request.query
        if tokens.preview_query is not None:
            token = urlencode({self._preview_param: tokens.preview_query})
            raw_query = f"{raw_query}&{token}" if raw_query else token
        # The draft host exactly as configured: never a host or port taken from the request.
        location = f"{origin.scheme}://{self._draft_host}{request.path}" + (
            f"?{raw_query}" if raw_query else ""
        )
        return _redirect(302, location, NO_STORE)

    def to_login(
        self, decision: Decision, request: AccessRequest, origin: Origin, identity: Identity,
        tokens: RawTokens, record: AssetRecord | None, now: float,
    ) -> web.Response:  # fmt: skip
        if self._sign_in:
            back_path = request.path + (f"?{request.query}" if request.query else "")
            start = "/oauth2/start?" + urlencode({"return_to": back_path})
            return _redirect(302, self._same_origin(origin, start), NO_STORE)
        if not self._login_url:
            return error_response(404)
        back = self._same_origin(origin, request.path + (f"?{request.query}" if request.query else ""))
        separator = "&" if "?" in self._login_url else "?"
        return _redirect(302, f"{self._login_url}{separator}{urlencode({'return_to': back})}", NO_STORE)

    def set_preview_cookie(
        self, decision: Decision, request: AccessRequest, origin: Origin, identity: Identity,
        tokens: RawTokens, record: AssetRecord | None, now: float,
    ) -> web.Response:  # fmt: skip
        preview = identity.preview
        if preview is None or tokens.preview_query is None:
            return error_response(404)
        location = self._same_origin(origin, request.path + (f"?{request.query}" if request.query else ""))
        response = _redirect(302, location, NO_STORE)
        response.set_cookie(
            self._preview_cookie,
            tokens.preview_query,
            max_age=max(0, int(preview.expires_at - now)),
            path="/",
            httponly=True,
            samesite="Lax",
            secure=origin.scheme == "https",
        )
        return response


def _netloc(hostname: str, port: int | None) -> str:
    return hostname if port is None else f"{hostname}:{port}"


def _redirect(status: int, location: str, cache_control: str) -> web.Response:
    response = web.Response(status=status)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = cache_control
    return response


def http_date(value: str | None) -> str | None:
    """A record's `last_modified` (ISO 8601, or already an HTTP date) as an HTTP date; None when
    it is missing or unreadable, so a bad value drops the header rather than failing the answer."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable()

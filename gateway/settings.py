"""Configuration: a TOML file, overridden key by key by `GATEWAY_<SECTION>_<KEY>` environment variables,
with `env:NAME` / `file:/path` secret references. Read once at start into frozen values; a bad value
stops the process with a message naming the key and what was expected."""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from gateway.redaction import url_passwords

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""


class Secret:
    """A value that must never be printed or logged by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    delivery: str = "redirect"
    trusted_proxies: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"),)
    # Connection limits, per process and per listener (DESIGN 2.2): seconds to send a request's
    # headers, seconds an idle keep-alive connection is kept, open connections, bytes of one
    # request line or header field.
    header_timeout: float = 10
    keepalive_timeout: float = 75
    max_connections: int = 10000
    max_header_size: int = 8192
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class AdminSettings:
    host: str = "127.0.0.1"
    port: int = 9090
    token: Secret = field(default_factory=lambda: Secret(""))
    # The same limits for the admin listener; None takes the [server] value.
    header_timeout: float | None = None
    keepalive_timeout: float | None = None
    max_connections: int | None = None
    max_header_size: int | None = None


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """The connection limits one listener enforces."""

    header_timeout: float
    keepalive_timeout: float
    max_connections: int
    max_header_size: int


@dataclass(frozen=True, slots=True)
class HostsSettings:
    live: tuple[str, ...] = ("assets.example.org",)
    draft: tuple[str, ...] = ("draft-assets.example.org",)


@dataclass(frozen=True, slots=True)
class StateSettings:
    url: Secret = field(default_factory=lambda: Secret("redis://127.0.0.1:6379/0"))
    cache_ttl: int = 30
    cache_size: int = 100_000


@dataclass(frozen=True, slots=True)
class S3Settings:
    bucket: str = "assets"
    region: str = "eu-west-2"
    endpoint_url: str = ""
    presign_ttl: int = 300


@dataclass(frozen=True, slots=True)
class TokenKey:
    """One verification key. The algorithm is pinned here, never taken from a token's header."""

    use: str  # "user" or "preview"
    alg: str
    kid: str | None = None
    secret: Secret | None = None  # HS* shared secret
    public_key: Secret | None = None  # PEM text (RS*/ES*/PS*/EdDSA)
    jwks: str | None = None  # JWKS JSON text; keys selected by kid
    jwks_url: str | None = None  # fetched and refreshed at run time (gateway.jwks)


@dataclass(frozen=True, slots=True)
class TokensSettings:
    issuer: str = ""
    audience: str = ""
    leeway: int = 30
    session_cookie: str = "gateway_session"
    preview_cookie: str = "auth_bypass_token"
    preview_param: str = "token"
    keys: tuple[TokenKey, ...] = ()


@dataclass(frozen=True, slots=True)
class PoliciesSettings:
    dir: str = "policies"


@dataclass(frozen=True, slots=True)
class LoginSettings:
    url: str = ""


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """Sign-in through an OpenID provider (DESIGN 2.7); empty `issuer` turns it off."""

    issuer: str = ""
    client_id: str = ""
    client_secret: Secret = field(default_factory=lambda: Secret(""))
    scopes: tuple[str, ...] = ("openid", "profile")
    org_claim: str = "org"
    groups_claim: str = "groups"
    session_ttl: int = 28800
    session_secrets: tuple[Secret, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


@dataclass(frozen=True, slots=True)
class CdnSettings:
    """DESIGN 2.9: which CDN to purge after writes, and the header that tags cacheable answers."""

    purge: str = "none"  # none | http | fastly | cloudfront
    url: str = ""  # http: where PURGE goes; fastly: the API base (default https://api.fastly.com)
    service_id: str = ""  # fastly
    api_token: Secret = field(default_factory=lambda: Secret(""))  # fastly
    distribution_id: str = ""  # cloudfront
    key_header: str = "Surrogate-Key"  # or Cache-Tag, xkey


@dataclass(frozen=True, slots=True)
class LegacySettings:
    """Where legacy URLs of files not yet cleared for serving send the browser (DESIGN 2.8)."""

    placeholder: str = "/government/placeholder"
    image_placeholder: str = "/asset-manager/thumbnail-placeholder-image.png"


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    hosts: HostsSettings = field(default_factory=HostsSettings)
    state: StateSettings = field(default_factory=StateSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    tokens: TokensSettings = field(default_factory=TokensSettings)
    policies: PoliciesSettings = field(default_factory=PoliciesSettings)
    login: LoginSettings = field(default_factory=LoginSettings)
    oidc: OidcSettings = field(default_factory=OidcSettings)
    cdn: CdnSettings = field(default_factory=CdnSettings)
    legacy: LegacySettings = field(default_factory=LegacySettings)
    # "section.key" -> "default" | "file <path>" | "env GATEWAY_..."; for `asset-gateway config`
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)


# ---- value parsers: each takes (key, raw, environ) and returns the typed value or raises ConfigError


def _resolve_reference(key: str, raw: str, environ: Mapping[str, str]) -> str:
    """`env:NAME` reads an environment variable, `file:/path` a file; anything else is literal."""
    if raw.startswith("env:"):
        name = raw[4:]
        if name not in environ:
            raise ConfigError(f"{key}: refers to environment variable {name}, which is not set")
        return environ[name]
    if raw.startswith("file:"):
        path = Path(raw[5:])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
    return raw


def _string(key: str, raw: object, environ: Mapping[str, str]) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"{key}: expected a string, got {raw!r}")
    return raw


def _secret(key: str, raw: object, environ: Mapping[str, str]) -> Secret:
    return Secret(_resolve_reference(key, _string(key, raw, environ), environ))


def _integer(low: int, high: int) -> Callable[[str, object, Mapping[str, str]], int]:
    def parse(key: str, raw: object, environ: Mapping[str, str]) -> int:
        value: object = raw
        if isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected an integer, got {raw!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {raw!r}")
        if not low <= value <= high:
            raise ConfigError(f"{key}: expected an integer from {low} to {high}, got {value}")
        return value

    return parse


def _seconds(low: float, high: float) -> Callable[[str, object, Mapping[str, str]], float]:
    def parse(key: str, raw: object, environ: Mapping[str, str]) -> float:
        value: object = raw
        if isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected a number of seconds, got {raw!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise ConfigError(f"{key}: expected a number of seconds, got {raw!r}")
        if not low <= value <= high:
            raise ConfigError(f"{key}: expected a number of seconds from {low:g} to {high:g}, got {value}")
        return float(value)

    return parse


def _choice(*options: str) -> Callable[[str, object, Mapping[str, str]], str]:
    def parse(key: str, raw: object, environ: Mapping[str, str]) -> str:
        if raw not in options:
            raise ConfigError(f"{key}: expected one of {', '.join(options)}, got {raw!r}")
        return str(raw)

    return parse


def _string_list(key: str, raw: object, environ: Mapping[str, str]) -> tuple[str, ...]:
    if isinstance(raw, str):  # from the environment: a JSON list or comma-separated words
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(f"{key}: expected a JSON list of strings, got {raw!r}") from None
        else:
            raw = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        raise ConfigError(f"{key}: expected a list of non-empty strings, got {raw!r}")
    return tuple(raw)


_HOST_ENTRY = re.compile(r"([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?")


def _hostnames(key: str, raw: object, environ: Mapping[str, str]) -> tuple[str, ...]:
    hosts = _string_list(key, raw, environ)
    for host in hosts:
        if _HOST_ENTRY.fullmatch(host.lower()) is None:
            raise ConfigError(
                f"{key}: expected host names like 'assets.example.org' (or 'name:port'), got {host!r}"
            )
    return tuple(h.lower() for h in hosts)


def _networks(key: str, raw: object, environ: Mapping[str, str]) -> tuple[Network, ...]:
    networks = []
    for text in _string_list(key, raw, environ):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(f"{key}: expected CIDR networks like '10.0.0.0/8', got {text!r}") from None
    return tuple(networks)


def _url(schemes: tuple[str, ...]) -> Callable[[str, object, Mapping[str, str]], str]:
    def parse(key: str, raw: object, environ: Mapping[str, str]) -> str:
        text = _string(key, raw, environ)
        if text and (urlsplit(text).scheme not in schemes or not urlsplit(text).netloc):
            raise ConfigError(f"{key}: expected an absolute {'/'.join(schemes)} URL or '', got {text!r}")
        return text

    return parse


# Every `state.url` scheme gateway.state.factory opens; both read this one list.
STATE_URL_SCHEMES: Final = (
    "memory",
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "redis+cluster",
    "rediss+cluster",
)


def _local_path(key: str, raw: object, environ: Mapping[str, str]) -> str:
    """A path on the gateway's own hosts: redirects to it never leave the configured hosts."""
    text = _string(key, raw, environ)
    if not text.startswith("/") or text.startswith("//") or any(c in text for c in "\r\n\t ?#"):
        raise ConfigError(f"{key}: expected a path starting with '/', got {text!r}")
    return text


def _state_url(key: str, raw: object, environ: Mapping[str, str]) -> Secret:
    secret = _secret(key, raw, environ)
    try:
        scheme = urlsplit(secret.reveal()).scheme
    except ValueError:  # e.g. an unclosed [IPv6 bracket; the message would not help, the URL may not be shown
        raise ConfigError(f"{key}: not a valid URL") from None
    if scheme not in STATE_URL_SCHEMES:
        raise ConfigError(f"{key}: expected a URL with scheme {', '.join(STATE_URL_SCHEMES)}, got {scheme!r}")
    return secret


_HS = ("HS256", "HS384", "HS512")
_ASYMMETRIC = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


def _token_keys(key: str, raw: object, environ: Mapping[str, str]) -> tuple[TokenKey, ...]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"{key}: expected a JSON list of key tables") from None
    if not isinstance(raw, list):
        raise ConfigError(f"{key}: expected a list of [[tokens.keys]] tables")
    keys = []
    for index, entry in enumerate(raw):
        where = f"{key}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        unknown = set(entry) - {"use", "alg", "kid", "secret", "public_key", "jwks", "jwks_url"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown key")
        use = _choice("user", "preview")(f"{where}.use", entry.get("use"), environ)
        if "jwks_url" in entry:
            keys.append(_remote_key(where, use, entry, environ))
            continue
        alg = _choice(*_HS, *_ASYMMETRIC)(f"{where}.alg", entry.get("alg"), environ)
        kid = entry.get("kid")
        if kid is not None:
            kid = _string(f"{where}.kid", kid, environ)
        secret = public_key = None
        jwks = None
        if alg in _HS:
            if "secret" not in entry:
                raise ConfigError(f"{where}.secret: required for {alg}")
            secret = _secret(f"{where}.secret", entry["secret"], environ)
            minimum = int(alg[2:]) // 8  # a shorter HMAC key weakens the hash (RFC 7518 3.2)
            if len(secret.reveal().encode()) < minimum:
                raise ConfigError(f"{where}.secret: expected at least {minimum} bytes for {alg}")
            if "public_key" in entry or "jwks" in entry:
                raise ConfigError(f"{where}: an {alg} key takes only a secret")
        else:
            if "secret" in entry:
                raise ConfigError(f"{where}.secret: {alg} is verified with public_key or jwks")
            if ("public_key" in entry) == ("jwks" in entry):
                raise ConfigError(f"{where}: {alg} needs exactly one of public_key, jwks")
            if "public_key" in entry:
                public_key = _secret(f"{where}.public_key", entry["public_key"], environ)
                if "-----BEGIN" not in public_key.reveal():
                    raise ConfigError(f"{where}.public_key: expected a PEM public key")
            else:
                jwks = _resolve_reference(
                    f"{where}.jwks", _string(f"{where}.jwks", entry["jwks"], environ), environ
                )
                try:
                    json.loads(jwks)["keys"]
                except (ValueError, KeyError, TypeError):
                    raise ConfigError(f'{where}.jwks: expected a JWKS document {{"keys": [...]}}') from None
        if use == "preview" and alg not in _HS:
            raise ConfigError(f"{where}.alg: preview keys are HS256/384/512 shared secrets")
        keys.append(TokenKey(use, alg, kid, secret, public_key, jwks))
    return tuple(keys)


def _remote_key(where: str, use: str, entry: dict[str, Any], environ: Mapping[str, str]) -> TokenKey:
    """A user key set fetched from `jwks_url`. `alg` is optional: without it each key is pinned to
    the algorithm its JWK declares (or its type implies), never to what a token's header says."""
    if use != "user":
        raise ConfigError(f"{where}.jwks_url: only user keys can be fetched")
    others = {"secret", "public_key", "jwks", "kid"} & set(entry)
    if others:
        raise ConfigError(f"{where}.{sorted(others)[0]}: not allowed with jwks_url")
    url = _url(("http", "https"))(f"{where}.jwks_url", entry["jwks_url"], environ)
    if not url:
        raise ConfigError(f"{where}.jwks_url: expected an absolute http/https URL")
    alg = ""
    if "alg" in entry:
        alg = _choice(*_ASYMMETRIC)(f"{where}.alg", entry["alg"], environ)
    return TokenKey(use, alg, jwks_url=url)


def _secret_list(key: str, raw: object, environ: Mapping[str, str]) -> tuple[Secret, ...]:
    secrets = tuple(_secret(key, value, environ) for value in _string_list(key, raw, environ))
    for secret in secrets:
        if len(secret.reveal().encode()) < 32:
            raise ConfigError(f"{key}: expected secrets of at least 32 bytes (HS256)")
    return secrets


def _scopes(key: str, raw: object, environ: Mapping[str, str]) -> tuple[str, ...]:
    scopes = _string_list(key, raw, environ)
    if "openid" not in scopes:
        raise ConfigError(f"{key}: expected a list that includes 'openid'")
    if any(not scope.isascii() or not scope.isprintable() or " " in scope for scope in scopes):
        raise ConfigError(f"{key}: expected scope names without spaces")
    return scopes


_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def _header_name(key: str, raw: object, environ: Mapping[str, str]) -> str:
    text = _string(key, raw, environ)
    if not _HEADER_NAME.fullmatch(text):
        raise ConfigError(f"{key}: expected an HTTP header name like 'Surrogate-Key', got {text!r}")
    return text


Parser = Callable[[str, object, Mapping[str, str]], Any]

_LIMITS: dict[str, Parser] = {
    "header_timeout": _seconds(0.1, 3600),
    "keepalive_timeout": _seconds(0, 86400),
    "max_connections": _integer(1, 1_000_000),
    "max_header_size": _integer(1024, 1_048_576),
}

# section -> key -> parser. Defaults come from the dataclasses above.
SCHEMA: dict[str, dict[str, Parser]] = {
    "server": {
        "host": _string,
        "port": _integer(0, 65535),
        "workers": _integer(1, 256),
        "delivery": _choice("redirect", "accel"),
        "trusted_proxies": _networks,
        **_LIMITS,
        "log_level": _choice("debug", "info", "warning", "error", "critical"),
    },
    "admin": {"host": _string, "port": _integer(0, 65535), "token": _secret, **_LIMITS},
    "hosts": {"live": _hostnames, "draft": _hostnames},
    "state": {
        "url": _state_url,
        "cache_ttl": _integer(0, 86400),
        "cache_size": _integer(0, 100_000_000),
    },
    "s3": {
        "bucket": _string,
        "region": _string,
        "endpoint_url": _url(("http", "https")),
        "presign_ttl": _integer(1, 7 * 24 * 3600),
    },
    "tokens": {
        "issuer": _string,
        "audience": _string,
        "leeway": _integer(0, 3600),
        "session_cookie": _string,
        "preview_cookie": _string,
        "preview_param": _string,
        "keys": _token_keys,
    },
    "policies": {"dir": _string},
    "login": {"url": _url(("http", "https"))},
    "oidc": {
        "issuer": _url(("http", "https")),
        "client_id": _string,
        "client_secret": _secret,
        "scopes": _scopes,
        "org_claim": _string,
        "groups_claim": _string,
        "session_ttl": _integer(60, 30 * 24 * 3600),
        "session_secrets": _secret_list,
    },
    "cdn": {
        "purge": _choice("none", "http", "fastly", "cloudfront"),
        "url": _url(("http", "https")),
        "service_id": _string,
        "api_token": _secret,
        "distribution_id": _string,
        "key_header": _header_name,
    },
    "legacy": {"placeholder": _local_path, "image_placeholder": _local_path},
}

_SECTION_TYPES: dict[str, type] = {
    "server": ServerSettings,
    "admin": AdminSettings,
    "hosts": HostsSettings,
    "state": StateSettings,
    "s3": S3Settings,
    "tokens": TokensSettings,
    "policies": PoliciesSettings,
    "login": LoginSettings,
    "oidc": OidcSettings,
    "cdn": CdnSettings,
    "legacy": LegacySettings,
}


def load_settings(path: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the file (`path`, else `GATEWAY_CONFIG`, else none) and the environment."""
    env: Mapping[str, str] = {} if environ is None else environ
    path = path or env.get("GATEWAY_CONFIG") or None
    document: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as handle:
                document = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None

    for section, value in document.items():
        if section not in SCHEMA:
            raise ConfigError(f"{section}: unknown section (expected one of {', '.join(SCHEMA)})")
        if not isinstance(value, dict):
            raise ConfigError(f"{section}: expected a [{section}] table")
        for key in value:
            if key not in SCHEMA[section]:
                raise ConfigError(f"{section}.{key}: unknown key")
    for name in env:
        if name.startswith("GATEWAY_") and name != "GATEWAY_CONFIG" and _env_target(name) is None:
            if is_kubernetes_service_variable(name):
                continue
            raise ConfigError(f"{name}: does not name a configuration key{_did_you_mean(name)}")

    sections: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for section, parsers in SCHEMA.items():
        values: dict[str, Any] = {}
        for key, parse in parsers.items():
            dotted = f"{section}.{key}"
            env_name = f"GATEWAY_{section.upper()}_{key.upper()}"
            if env_name in env:
                values[key] = parse(dotted, env[env_name], env)
                sources[dotted] = f"env {env_name}"
            elif key in document.get(section, {}):
                values[key] = parse(dotted, document[section][key], env)
                sources[dotted] = f"file {path}"
            else:
                sources[dotted] = "default"
        sections[section] = _SECTION_TYPES[section](**values)
    settings = Settings(**sections, sources=sources)
    _check_consistency(settings)
    return settings


# What Kubernetes puts in every pod's environment for a Service named `gateway` (docker links too):
# GATEWAY_SERVICE_HOST, GATEWAY_SERVICE_PORT[_<port name>], GATEWAY_PORT=tcp://..., and
# GATEWAY_PORT_<n>_<TCP|UDP|SCTP>[_PROTO|_PORT|_ADDR].
_KUBERNETES_SERVICE = re.compile(
    r"GATEWAY_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT|PORT_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)"
)


def is_kubernetes_service_variable(name: str) -> bool:
    """True for the service-discovery variables Kubernetes injects, which are not our settings."""
    return _KUBERNETES_SERVICE.fullmatch(name) is not None


def _env_names() -> list[str]:
    return [f"GATEWAY_{section.upper()}_{key.upper()}" for section, keys in SCHEMA.items() for key in keys]


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, _env_names(), n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def listener_limits(settings: Settings, *, admin: bool) -> ListenerLimits:
    """The limits of the public listener (`[server]`), or of the admin listener (`[admin]` over
    `[server]` key by key)."""
    server = settings.server
    if not admin:
        return ListenerLimits(
            server.header_timeout, server.keepalive_timeout, server.max_connections, server.max_header_size
        )
    own = settings.admin
    return ListenerLimits(
        own.header_timeout if own.header_timeout is not None else server.header_timeout,
        own.keepalive_timeout if own.keepalive_timeout is not None else server.keepalive_timeout,
        own.max_connections if own.max_connections is not None else server.max_connections,
        own.max_header_size if own.max_header_size is not None else server.max_header_size,
    )


def _env_target(name: str) -> tuple[str, str] | None:
    for section, parsers in SCHEMA.items():
        prefix = f"GATEWAY_{section.upper()}_"
        if name.startswith(prefix) and name[len(prefix) :].lower() in parsers:
            return section, name[len(prefix) :].lower()
    return None


def _check_consistency(settings: Settings) -> None:
    overlap = set(settings.hosts.live) & set(settings.hosts.draft)
    if overlap:
        raise ConfigError(f"hosts.draft: {sorted(overlap)[0]!r} is also a live host")
    if not settings.hosts.live and not settings.hosts.draft:
        raise ConfigError("hosts.live: expected at least one live or draft host")
    kids = [(k.use, k.kid) for k in settings.tokens.keys if k.kid]
    if len(kids) != len(set(kids)):
        raise ConfigError("tokens.keys: two keys of the same use share a kid")
    oidc = settings.oidc
    if oidc.enabled:
        for name in ("client_id", "session_secrets"):
            if not getattr(oidc, name):
                raise ConfigError(f"oidc.{name}: required when oidc.issuer is set")
        if not oidc.client_secret:
            raise ConfigError("oidc.client_secret: required when oidc.issuer is set")
    _check_cdn(settings.cdn)


def _check_cdn(cdn: CdnSettings) -> None:
    """Each adapter's required keys, named, so a purge setup that could never work stops the start."""
    needed = {"http": ("url",), "fastly": ("service_id", "api_token"), "cloudfront": ("distribution_id",)}
    for key in needed.get(cdn.purge, ()):
        if not getattr(cdn, key):
            raise ConfigError(f"cdn.{key}: required when cdn.purge = {cdn.purge!r}")
    if cdn.purge == "fastly" and not re.fullmatch(r"[A-Za-z0-9]+", cdn.service_id):
        expected = "a Fastly service id (letters and digits)"
        raise ConfigError(f"cdn.service_id: expected {expected}, got {cdn.service_id!r}")


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, in the forms a message could quote it (for masking logs)."""
    values = [settings.admin.token.reveal(), *url_passwords(settings.state.url.reveal())]
    values += [key.secret.reveal() for key in settings.tokens.keys if key.secret is not None]
    values += [settings.oidc.client_secret.reveal(), *(s.reveal() for s in settings.oidc.session_secrets)]
    values.append(settings.cdn.api_token.reveal())
    return [value for value in values if value]


def describe_settings(settings: Settings) -> list[tuple[str, str, str]]:
    """(key, value shown with secrets redacted, source) for every key, for `asset-gateway config`."""
    rows = []
    for section in SCHEMA:
        values = getattr(settings, section)
        for key in SCHEMA[section]:
            dotted = f"{section}.{key}"
            rows.append((dotted, _show(getattr(values, key)), settings.sources.get(dotted, "default")))
    return rows


def _show(value: object) -> str:
    if isinstance(value, Secret):
        return _show_secret(value)
    if isinstance(value, tuple) and value and isinstance(value[0], TokenKey):
        return json.dumps([_show_key(k) for k in value])
    if isinstance(value, tuple) and value and isinstance(value[0], Secret):
        return json.dumps(["**********" for _ in value])
    if isinstance(value, tuple):
        return json.dumps([str(v) for v in value])
    return json.dumps(value)


_QUERY_PASSWORD = re.compile(r"((?:^|&)[^=&]*password=)[^&]*", re.IGNORECASE)


def _show_secret(secret: Secret) -> str:
    text = secret.reveal()
    try:
        parts = urlsplit(text)
    except ValueError:
        return '"**********"'  # not a URL we can take apart: show none of it
    if parts.scheme and "://" in text and "-----BEGIN" not in text:
        # URLs are useful to see; only their password is secret, in the userinfo or (as redis-py
        # reads it, and documents for unix://) a `password=` query parameter. Edited in place, since
        # urlunsplit would turn `unix:///path` into `unix:/path`.
        shown = text
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":**********@")
            shown = shown.replace(parts.netloc, netloc, 1)
        if parts.query:
            query = _QUERY_PASSWORD.sub(r"\1**********", parts.query)
            shown = shown.replace(f"?{parts.query}", f"?{query}", 1)
        return json.dumps(shown)
    return '"**********"' if text else '""'


def _show_key(key: TokenKey) -> dict[str, str]:
    shown = {"use": key.use, "alg": key.alg}
    if key.jwks_url is not None:
        shown["jwks_url"] = key.jwks_url
    if key.kid:
        shown["kid"] = key.kid
    if key.secret is not None:
        shown["secret"] = "**********"  # noqa: S105 - the redaction marker, not a password
    if key.public_key is not None:
        shown["public_key"] = "(PEM public key)"
    if key.jwks is not None:
        shown["jwks"] = f"(JWKS, {len(json.loads(key.jwks)['keys'])} keys)"
    return shown

"""Everything a browser can send to `/oauth2/*` is hostile: random queries, cookies, methods and
bodies, a bounded number of them, against a real gateway and the real IdP. None may crash the
gateway, echo its input, set a session or send the browser anywhere but the IdP or this host."""

from __future__ import annotations

import random
import string
from urllib.parse import quote

from aiohttp import ClientSession

from tests.http.test_fuzz import ODD_BYTES, SEED, send
from tests.oidc.conftest import DRAFT, LIVE, GatewayFactory, SignInWorld

REQUESTS = 400
PATHS = ["/oauth2/start", "/oauth2/callback", "/oauth2/sign_out", "/oauth2/backchannel_logout"]
NASTY = ["", "/", "//evil.example", "/\\evil", "%2f%2f", "\r\n", "\x00", "é", "'\"<script>", "A" * 3000,
         "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZGEifQ.", "state", "oauth2_flow_", "../../etc/passwd"]  # fmt: skip
ALLOWED = {200, 302, 400, 404, 405, 413, 503}


def nasty(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(NASTY)
    alphabet = string.printable + "éß\u2028"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))


def marker(rng: random.Random) -> str:
    return "zq" + "".join(rng.choice(string.ascii_lowercase) for _ in range(12))


async def test_oauth2_endpoints_survive_hostile_input(
    start_sign_in_gateway: GatewayFactory, world: SignInWorld
) -> None:
    gateway = await start_sign_in_gateway()
    rng = random.Random(20261202)
    seen: dict[int, int] = {}
    async with ClientSession() as client:
        for _ in range(REQUESTS):
            path = rng.choice(PATHS)
            echo = marker(rng)
            params = {rng.choice(["return_to", "state", "code", "error", "iss", echo]): nasty(rng) + echo
                      for _ in range(rng.randint(0, 4))}  # fmt: skip
            if rng.random() < 0.3:
                params["state"] = "".join(rng.choice(string.ascii_letters + "-_") for _ in range(43))
            query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
            names = ["gateway_session", "oauth2_flow_" + quote(params.get("state", "x"), safe=""), echo]
            cookies = "; ".join(
                f"{rng.choice(names)}={quote(nasty(rng))}{echo}" for _ in range(rng.randint(0, 3))
            )
            headers = {
                "Host": rng.choice([f"{DRAFT}:{gateway.port}", f"{LIVE}:{gateway.port}", "evil.example"])
            }
            if cookies:
                headers["Cookie"] = cookies
            method = rng.choice(["GET", "POST", "HEAD", "PUT"])
            body = None
            if method == "POST":
                kinds = ["application/x-www-form-urlencoded", "text/plain", "application/json"]
                headers["Content-Type"] = rng.choice(kinds)
                bodies = [f"logout_token={quote(nasty(rng))}{echo}", nasty(rng) + echo,
                          "logout_token=a&logout_token=b", "x" * 20000]  # fmt: skip
                body = rng.choice(bodies)
            async with client.request(
                method, f"http://127.0.0.1:{gateway.port}{path}?{query}", headers=headers, data=body,
                allow_redirects=False,
            ) as answer:  # fmt: skip
                text = await answer.text(errors="replace")
                seen[answer.status] = seen.get(answer.status, 0) + 1
                context = f"{method} {path}?{query[:200]} -> {answer.status}"
                assert answer.status in ALLOWED, context
                assert echo not in text and echo not in str(answer.headers), context
                assert "gateway_session=ey" not in answer.headers.get("Set-Cookie", ""), context
                location = answer.headers.get("Location", "")
                if location:
                    assert location.startswith((world.idp.issuer + "/", f"http://{DRAFT}:{gateway.port}/",
                                                f"http://{LIVE}:{gateway.port}/")), context  # fmt: skip
    print(f"statuses over {REQUESTS} hostile requests: {dict(sorted(seen.items()))}")
    assert seen.get(500, 0) == 0 and len(seen) >= 3, seen


OAUTH2_RAW_REQUESTS = 800


def raw_oauth2_request(rng: random.Random, port: int, state: str) -> bytes:
    """One raw HTTP/1.1 request to an /oauth2 endpoint, with bytes client libraries would refuse."""
    odd = [*ODD_BYTES, "a", "=", "&", "/", "%2f%2f", "\\"]
    method = rng.choice(["GET"] * 4 + ["POST"] * 3 + ["HEAD", "PUT", "OPTIONS", "get"])
    path = rng.choice(PATHS) + rng.choice(["", "", "", "/", "%00", rng.choice(ODD_BYTES)])
    names = ["return_to", "state", "code", "iss", "error"]
    pieces = [
        rng.choice(names) + "=" + "".join(rng.choice(odd) for _ in range(rng.randrange(0, 12)))
        for _ in range(rng.randrange(0, 4))
    ]
    if rng.random() < 0.3:
        pieces.append(f"state={state}")
    target = path + ("?" + "&".join(pieces) if pieces else "")
    headers = [("Host", rng.choice([f"{DRAFT}:{port}", f"{LIVE}:{port}", DRAFT, "evil.test", "", "a b"]))]
    if rng.random() < 0.5:
        name = rng.choice(["gateway_session", f"oauth2_flow_{state}", "oauth2_flow_", "oauth2_flow_x" * 50])
        value = "".join(rng.choice([*odd, "eyJ", "."]) for _ in range(rng.randrange(0, 40)))
        headers.append(
            ("Cookie", rng.choice([f"{name}={value}", f'{name}="{value}', f"a=1; {name}={value}"]))
        )
    if rng.random() < 0.2:
        headers.append(("X-Forwarded-Proto", rng.choice(["https", "gopher", ""])))
    body = b""
    if method == "POST":
        headers.append(("Content-Type", rng.choice(["application/x-www-form-urlencoded", "text/plain", ""])))
        body = rng.choice([b"logout_token=a.b.c", b"logout_token=" + b"A" * 20000, b"\xff\xfe=", b"=&=&",
                           b"logout_token=%ff", b"logout_token=eyJhbGciOiJub25lIn0.e30."])  # fmt: skip
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers),
             f"Content-Length: {len(body)}", "Connection: close"]  # fmt: skip
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


async def test_raw_hostile_requests_to_oauth2_never_get_a_5xx_but_503(
    start_sign_in_gateway: GatewayFactory,
) -> None:
    """The raw-socket generator of tests/http/test_fuzz.py, pointed at /oauth2 with sign-in on."""
    gateway = await start_sign_in_gateway()
    rng = random.Random(SEED + 2)
    state = "".join(rng.choice(string.ascii_letters) for _ in range(43))
    statuses: dict[int, int] = {}
    for n in range(OAUTH2_RAW_REQUESTS):
        raw = raw_oauth2_request(rng, gateway.port, state)
        status = await send(gateway.port, raw)
        assert status < 500 or status == 503, f"request {n} got {status}: {raw[:300]!r}"
        statuses[status] = statuses.get(status, 0) + 1
    print(f"statuses over {OAUTH2_RAW_REQUESTS} raw /oauth2 requests: {dict(sorted(statuses.items()))}")
    assert {302, 400, 404} <= set(statuses), statuses

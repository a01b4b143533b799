"""Everything a browser can send to `/oauth2/*` is hostile: random queries, cookies, methods and
bodies, a bounded number of them, against a real gateway and the real IdP. None may crash the
gateway, echo its input, set a session or send the browser anywhere but the IdP or this host."""

from __future__ import annotations

import random
import string
from urllib.parse import quote

from aiohttp import ClientSession

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

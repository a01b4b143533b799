"""Sign-in, sessions and sign-out against a real OpenID provider (DESIGN 2.7)."""

from __future__ import annotations

import asyncio
import re
import time
from base64 import b64encode
from urllib.parse import quote, urlencode, urljoin, urlsplit, urlunsplit

import jwt
import pytest

from gateway.oidc.flow import SignInError, verify_id_token
from gateway.sessions import session_kid
from gateway.settings import Secret
from tests.idp_server import CLIENT_ID
from tests.oidc.conftest import (
    DRAFT,
    OTHER_CLIENT_ID,
    OTHER_CLIENT_SECRET,
    SESSION_SECRET,
    Browser,
    GatewayFactory,
    SignInWorld,
    is_s3,
    limited_to,
    query_of,
    refusals,
)
from tests.waiting import until

FINANCE_DRAFT = {"draft": True, **limited_to(groups=["finance"])}


async def read_file(browser: Browser, response_to_s3: object) -> bytes:
    location = response_to_s3.headers["Location"]  # type: ignore[attr-defined]
    assert is_s3(location)
    async with browser.session.get(location) as answer:
        assert answer.status == 200
        return await answer.read()


async def test_sign_in_opens_an_access_limited_draft(
    start_sign_in_gateway: GatewayFactory, browser_factory
) -> None:
    gateway = await start_sign_in_gateway()
    path = await gateway.put("f1n4nc", "budget.pdf", **FINANCE_DRAFT)
    browser: Browser = await browser_factory()

    anonymous = await browser.get(gateway.url(path + "?v=1"))
    assert anonymous.status == 302
    start = anonymous.headers["Location"]
    assert start == gateway.url("/oauth2/start?" + urlencode({"return_to": path + "?v=1"}))

    landed = await browser.open_signed_in(gateway.url(path + "?v=1"), "ada")
    assert landed.status == 302 and is_s3(landed.headers["Location"])
    assert landed.headers["Cache-Control"] == "private, no-store"
    assert await read_file(browser, landed) == gateway.objects["f1n4nc"]
    # The session cookie is the gateway's own token: HttpOnly, Lax, for the whole host.
    session = browser.cookie("gateway_session", DRAFT)
    assert session is not None
    header = jwt.get_unverified_header(session)
    assert header["kid"] == session_kid(Secret(SESSION_SECRET))
    claims = jwt.decode(session, options={"verify_signature": False})
    assert claims["sub"] == "ada" and claims["groups"] == ["finance"] and claims["org"] == "hmt"
    assert claims["iss"] == "asset-gateway" and claims["sid"]
    assert 0 < claims["exp"] - time.time() <= 28800


async def test_a_user_not_on_the_list_gets_404(
    start_sign_in_gateway: GatewayFactory, browser_factory
) -> None:
    gateway = await start_sign_in_gateway()
    path = await gateway.put("n0tf0r", "budget.pdf", **FINANCE_DRAFT)
    browser: Browser = await browser_factory()
    landed = await browser.open_signed_in(gateway.url(path), "bob")
    assert landed.status == 404
    assert "gateway_session" in {m.key for m in browser.session.cookie_jar}  # bob is signed in


RETURN_TO_TRICKS = [
    "https://evil.example/",
    "http://evil.example",
    "//evil.example/x",
    "/\\evil.example",
    "\\\\evil.example",
    "/%2f%2fevil.example",
    "/%2F%2Fevil.example",
    "/%5cevil.example",
    "/%252f%252fevil.example",
    "javascript:alert(1)",
    "/media/x\r\nSet-Cookie: a=b",
    "/\tevil",
    "evil.example",
    "",
]


@pytest.mark.parametrize("trick", RETURN_TO_TRICKS)
async def test_return_to_never_leaves_the_host(
    trick: str, start_sign_in_gateway: GatewayFactory, browser_factory
) -> None:
    gateway = await start_sign_in_gateway()
    browser: Browser = await browser_factory()
    back = await sign_in_and_return(browser, gateway.url("/oauth2/start?" + urlencode({"return_to": trick})))
    assert back.status == 302  # type: ignore[attr-defined]
    assert back.headers["Location"] == gateway.url("/")


async def test_return_to_keeps_a_plain_path_and_query(
    start_sign_in_gateway: GatewayFactory, browser_factory
) -> None:
    gateway = await start_sign_in_gateway()
    browser: Browser = await browser_factory()
    target = "/media/abc123/a%20b.pdf?x=1&y=2"
    back = await sign_in_and_return(browser, gateway.url("/oauth2/start?" + urlencode({"return_to": target})))
    assert back.headers["Location"] == gateway.url(target)


async def authorization_request(browser: Browser, gateway_url: str) -> str:
    """Start a sign-in and return the IdP authorization URL it sends the browser to."""
    start = await browser.get(gateway_url)
    assert start.status == 302
    return start.headers["Location"]


async def callback_url(browser: Browser, authorize: str, user: str = "ada") -> str:
    """Sign in at the IdP for `authorize`; return the gateway callback URL it redirects to."""

    def back_or_login(location: str) -> bool:
        return "/interaction/" in location or "/oauth2/callback" in location

    response = await browser.follow(authorize, until=back_or_login)
    location = urljoin(str(response.url), response.headers["Location"])
    if "/interaction/" in location:
        response = await browser.sign_in_at_idp(await browser.get(location), user)
        response = await browser.follow(
            urljoin(str(response.url), response.headers["Location"]),
            until=lambda location: "/oauth2/callback" in location,
        )
        location = response.headers["Location"]
    assert "/oauth2/callback" in location, location
    return location


async def sign_in_and_return(browser: Browser, start_url: str, user: str = "ada") -> object:
    """The gateway's answer to the callback of a sign-in begun at `start_url`."""
    return await browser.get(
        await callback_url(browser, await authorization_request(browser, start_url), user)
    )


async def test_forged_and_replayed_state_get_400_and_no_session(
    start_sign_in_gateway: GatewayFactory, browser_factory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_sign_in_gateway()
    browser: Browser = await browser_factory()
    callback = await callback_url(browser, await authorization_request(browser, gateway.url("/oauth2/start")))

    params = query_of(callback)
    forged = callback.replace(params["state"], "A" * 43)
    refused = await browser.get(forged)
    assert refused.status == 400 and browser.cookie("gateway_session", DRAFT) is None
    assert "A" * 43 not in await refused.text()

    done = await browser.get(callback)
    assert done.status == 302 and browser.cookie("gateway_session", DRAFT) is not None

    other: Browser = await browser_factory()  # the same callback URL in another browser
    assert (await other.get(callback)).status == 400
    assert other.cookie("gateway_session", DRAFT) is None
    browser.session.cookie_jar.clear_domain(DRAFT)
    replayed = await browser.get(callback)  # the flow cookie is gone after its one use
    assert replayed.status == 400 and browser.cookie("gateway_session", DRAFT) is None
    assert refusals(caplog) == ["no_flow_cookie"] * 3


async def test_state_of_one_flow_with_the_cookie_of_another_is_refused(
    start_sign_in_gateway: GatewayFactory, browser_factory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_sign_in_gateway()
    browser: Browser = await browser_factory()
    first = await authorization_request(browser, gateway.url("/oauth2/start"))
    second = await authorization_request(browser, gateway.url("/oauth2/start"))
    callback = await callback_url(browser, second)
    # Both flow cookies are present (two tabs); each is bound to its own state.
    assert len([m for m in browser.session.cookie_jar if m.key.startswith("oauth2_flow_")]) == 2
    swapped = callback.replace(query_of(callback)["state"], query_of(first)["state"])
    assert (await browser.get(swapped)).status == 400
    assert browser.cookie("gateway_session", DRAFT) is None
    assert refusals(caplog) == ["provider_http_400"]  # the code belongs to the other flow's PKCE


def with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = {**query_of(url), name: value}
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


async def test_a_wrong_nonce_gets_no_session(
    start_sign_in_gateway: GatewayFactory, browser_factory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_sign_in_gateway()
    browser: Browser = await browser_factory()
    authorize = await authorization_request(browser, gateway.url("/oauth2/start"))
    tampered = with_param(authorize, "nonce", "a-nonce-this-browser-never-got")
    callback = await callback_url(browser, tampered)
    answer = await browser.get(callback)
    assert answer.status == 400
    assert browser.cookie("gateway_session", DRAFT) is None
    assert refusals(caplog) == ["nonce_mismatch"]


async def test_an_id_token_for_another_client_is_refused(
    start_sign_in_gateway: GatewayFactory,
    browser_factory,
    world: SignInWorld,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = await start_sign_in_gateway()
    browser: Browser = await browser_factory()
    # Through the gateway: the code was issued to another client, so it gets no session.
    authorize = await authorization_request(browser, gateway.url("/oauth2/start"))
    callback = await callback_url(browser, with_param(authorize, "client_id", OTHER_CLIENT_ID))
    assert (await browser.get(callback)).status == 400
    assert browser.cookie("gateway_session", DRAFT) is None
    assert refusals(caplog) == ["provider_http_400"]  # invalid_grant: the code is not ours

    # A real ID token the IdP signed for the other client, given to our verification.
    authorize = await authorization_request(browser, gateway.url("/oauth2/start"))
    nonce = query_of(authorize)["nonce"]
    callback = await callback_url(browser, with_param(authorize, "client_id", OTHER_CLIENT_ID))
    form = {"grant_type": "authorization_code", "code": query_of(callback)["code"],
            "redirect_uri": query_of(authorize)["redirect_uri"], "code_verifier": "unused"}  # fmt: skip
    signin = gateway.gateway.signin
    assert signin is not None
    # PKCE binds the code to our verifier, which the cookie holds: take it from the flow cookie.
    flow_cookie = next(
        m.value for m in browser.session.cookie_jar if m.key == "oauth2_flow_" + query_of(callback)["state"]
    )
    form["code_verifier"] = signin.open_flow(flow_cookie, query_of(callback)["state"]).verifier
    async with browser.session.post(
        f"{world.idp.issuer}/token", data=form, auth=None,
        headers={"Authorization": "Basic " + b64encode(f"{OTHER_CLIENT_ID}:{OTHER_CLIENT_SECRET}".encode())
                 .decode()},
    ) as answer:  # fmt: skip
        assert answer.status == 200, await answer.text()
        other_id_token = (await answer.json())["id_token"]
    assert jwt.decode(other_id_token, options={"verify_signature": False})["aud"] == OTHER_CLIENT_ID
    with pytest.raises(SignInError) as refused:
        verify_id_token(
            other_id_token, keys=signin.keys.get, algorithms=frozenset({"RS256"}), issuer=world.idp.issuer,
            client_id=CLIENT_ID, nonce=nonce, now=time.time(),
        )  # fmt: skip
    assert refused.value.code == "wrong_audience"


async def test_an_idp_key_rotation_is_picked_up_without_a_restart(
    start_sign_in_gateway: GatewayFactory, browser_factory, world: SignInWorld
) -> None:
    gateway = await start_sign_in_gateway()
    path = await gateway.put("r0t4te", "budget.pdf", **FINANCE_DRAFT)
    signin = gateway.gateway.signin
    assert signin is not None
    before = await browser_factory()
    assert (await before.open_signed_in(gateway.url(path), "ada")).status == 302
    old_kids = signin.keys.kids
    fetches = signin.keys.fetches

    new_kid = world.idp.rotate_keys()
    after: Browser = await browser_factory()
    landed = await after.open_signed_in(gateway.url(path), "ada")
    assert landed.status == 302 and is_s3(landed.headers["Location"])
    assert signin.keys.kids == {new_kid} and not old_kids & signin.keys.kids
    assert signin.keys.fetches == fetches + 1  # one fetch, on the unknown kid

    # A flood of made-up kids within 30 s of that fetch costs no fetch at all (negative cache).
    forged = [jwt.encode({"sub": "x", "exp": time.time() + 60}, "k" * 32, headers={"kid": f"made-up-{n}"})
              for n in range(20)]  # fmt: skip
    forged = [".".join([jwt.utils.base64url_encode(b'{"alg":"RS256","kid":"made-up-%d"}' % n).decode(),
                        *token.split(".")[1:]]) for n, token in enumerate(forged)]  # fmt: skip
    stranger: Browser = await browser_factory()
    answers = await asyncio.gather(*(stranger.get(gateway.url(path), headers={"Authorization": f"Bearer {t}"})
                                     for t in forged))  # fmt: skip
    assert {a.status for a in answers} == {302}  # to sign-in: a forged token is no token
    assert all("/oauth2/start" in a.headers["Location"] for a in answers)
    assert signin.keys.fetches == fetches + 1
    # The session made before the rotation is the gateway's own token: still good.
    assert (await before.get(gateway.url(path))).status == 302


async def test_sign_out_revokes_the_session_everywhere_including_cached_answers(
    start_sign_in_gateway: GatewayFactory, browser_factory, world: SignInWorld
) -> None:
    gateway = await start_sign_in_gateway()
    path = await gateway.put("s1gn0t", "budget.pdf", **FINANCE_DRAFT)
    browser: Browser = await browser_factory()
    assert (await browser.open_signed_in(gateway.url(path), "ada")).status == 302
    session = browser.cookie("gateway_session", DRAFT)
    assert session is not None
    cookie = {"Cookie": f"gateway_session={session}"}
    other: Browser = await browser_factory()  # a copy of the cookie, replayed after sign-out
    for _ in range(2):  # the second answer comes from the answer cache
        assert is_s3((await other.get(gateway.url(path), headers=cookie)).headers["Location"])
    assert gateway.gateway.answers is not None and gateway.gateway.answers.hits >= 1

    out = await browser.get(gateway.url("/oauth2/sign_out"))
    assert out.status == 302
    end_session = out.headers["Location"]
    assert end_session.startswith(f"{world.idp.issuer}/session/end?")
    assert query_of(end_session) == {"client_id": CLIENT_ID, "post_logout_redirect_uri": gateway.url("/")}
    assert browser.cookie("gateway_session", DRAFT) is None
    replayed = await other.get(gateway.url(path), headers=cookie)
    assert replayed.status == 302 and "/oauth2/start" in replayed.headers["Location"]
    again = await browser.get(gateway.url(path))  # asked to sign in again
    assert again.status == 302 and "/oauth2/start" in again.headers["Location"]


async def end_idp_session(browser: Browser, issuer: str) -> None:
    """Sign out at the IdP itself, confirming on its page, as a person would."""
    page = await browser.get(f"{issuer}/session/end?client_id={CLIENT_ID}")
    assert page.status == 200
    html = await page.text()
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', html)
    action = re.search(r'action="([^"]+)"', html)
    assert xsrf and action, html[:500]
    async with browser.session.post(
        urljoin(str(page.url), action.group(1)), data={"xsrf": xsrf.group(1), "logout": "yes"},
        allow_redirects=False,
    ) as answer:  # fmt: skip
        assert answer.status in (200, 302, 303), await answer.text()


async def test_backchannel_logout_is_seen_by_a_second_gateway(
    start_sign_in_gateway: GatewayFactory, browser_factory, world: SignInWorld
) -> None:
    first = await start_sign_in_gateway()  # the IdP's back-channel logout calls this one
    second = await start_sign_in_gateway(port=world.port_b)
    path = await first.put("b4ckch", "budget.pdf", **FINANCE_DRAFT)
    browser: Browser = await browser_factory()
    assert (await browser.open_signed_in(first.url(path), "ada")).status == 302
    session = browser.cookie("gateway_session", DRAFT)
    cookie = {"Cookie": f"gateway_session={session}"}
    elsewhere: Browser = await browser_factory()
    for _ in range(2):
        assert is_s3((await elsewhere.get(second.url(path), headers=cookie)).headers["Location"])

    await end_idp_session(browser, world.idp.issuer)
    ended = time.monotonic()

    async def refused_at_second() -> bool:
        answer = await elsewhere.get(second.url(path), headers=cookie)
        return answer.status == 302 and "/oauth2/start" in answer.headers["Location"]

    await until(refused_at_second, within=5, what="the second gateway refuses the logged-out session")
    took = time.monotonic() - ended
    print(f"back-channel logout seen by the second gateway after {took * 1000:.0f} ms")
    assert any("backchannel logout sent" in line for line in world.idp.log)


async def test_session_secrets_rotate(
    start_sign_in_gateway: GatewayFactory, browser_factory, world: SignInWorld
) -> None:
    old, new = SESSION_SECRET, "session-secret-two-0123456789abcdef0123456789"
    gateway = await start_sign_in_gateway(secrets_=(old,))
    path = await gateway.put("r0tsec", "budget.pdf", **FINANCE_DRAFT)
    browser: Browser = await browser_factory()
    assert (await browser.open_signed_in(gateway.url(path), "ada")).status == 302
    old_session = {"Cookie": f"gateway_session={browser.cookie('gateway_session', DRAFT)}"}
    await gateway.runner.cleanup()
    replay: Browser = await browser_factory()  # sends only the cookies each request names

    # The new secret signs, the old one still verifies: nobody is signed out by the rotation.
    rotated = await start_sign_in_gateway(secrets_=(new, old), port=world.port_b)
    assert is_s3((await replay.get(rotated.url(path), headers=old_session)).headers["Location"])
    fresh: Browser = await browser_factory()
    assert (await fresh.open_signed_in(rotated.url(path), "ada")).status == 302
    new_session = fresh.cookie("gateway_session", DRAFT)
    assert new_session is not None
    assert jwt.get_unverified_header(new_session)["kid"] == session_kid(Secret(new))
    await rotated.runner.cleanup()

    # Once the old secret is dropped, its sessions are no token; the new ones keep working.
    dropped = await start_sign_in_gateway(secrets_=(new,), port=world.port_a)
    answer = await replay.get(dropped.url(path), headers=old_session)
    assert answer.status == 302 and "/oauth2/start" in answer.headers["Location"]
    kept = await replay.get(dropped.url(path), headers={"Cookie": f"gateway_session={new_session}"})
    assert is_s3(kept.headers["Location"])


async def test_an_answer_naming_another_issuer_is_refused(
    start_sign_in_gateway: GatewayFactory, browser_factory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_sign_in_gateway()
    browser: Browser = await browser_factory()
    callback = await callback_url(browser, await authorization_request(browser, gateway.url("/oauth2/start")))
    assert query_of(callback)["iss"]  # oidc-provider names itself (RFC 9207)
    answer = await browser.get(with_param(callback, "iss", "https://evil.example"))
    assert answer.status == 400 and browser.cookie("gateway_session", DRAFT) is None
    assert refusals(caplog) == ["wrong_issuer"]


async def test_a_session_too_large_for_a_cookie_is_refused_not_looped(
    start_sign_in_gateway: GatewayFactory, browser_factory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_sign_in_gateway()
    browser: Browser = await browser_factory()
    answer = await sign_in_and_return(browser, gateway.url("/oauth2/start"), user="carol")
    assert answer.status == 400  # type: ignore[attr-defined]
    assert browser.cookie("gateway_session", DRAFT) is None
    assert refusals(caplog) == ["session_too_large"]


async def test_behind_tls_the_cookies_are_secure_and_the_callback_is_https(
    start_sign_in_gateway: GatewayFactory, browser_factory
) -> None:
    gateway = await start_sign_in_gateway()  # 127.0.0.1 is a trusted proxy by default
    browser: Browser = await browser_factory()
    start = await browser.get(gateway.url("/oauth2/start"), headers={"X-Forwarded-Proto": "https"})
    assert start.status == 302
    assert query_of(start.headers["Location"])["redirect_uri"] == (
        f"https://{DRAFT}:{gateway.port}/oauth2/callback"
    )
    flow_cookie = start.headers["Set-Cookie"]
    assert "Secure" in flow_cookie and "HttpOnly" in flow_cookie and "SameSite=Lax" in flow_cookie
    assert "Path=/oauth2/" in flow_cookie and "Max-Age=600" in flow_cookie


async def test_two_tabs_signing_in_at_once_both_land(
    start_sign_in_gateway: GatewayFactory, browser_factory
) -> None:
    gateway = await start_sign_in_gateway()
    browser: Browser = await browser_factory()
    first = await authorization_request(browser, gateway.url("/oauth2/start?return_to=/first"))
    second = await authorization_request(browser, gateway.url("/oauth2/start?return_to=/second"))
    second_back = await browser.get(await callback_url(browser, second))
    first_back = await browser.get(await callback_url(browser, first))
    assert second_back.headers["Location"] == gateway.url("/second")
    assert first_back.headers["Location"] == gateway.url("/first")
    assert not [m for m in browser.session.cookie_jar if m.key.startswith("oauth2_flow_")]

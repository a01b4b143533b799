"""The whole flow in a real browser: headless Chromium (Debian's `chromium`, installed by
`make test`), driven by Playwright, against a real gateway, the real IdP and moto's S3 server.
Every request the browser makes to anything but loopback is refused, so nothing leaves the machine."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.oidc.conftest import GatewayFactory, limited_to

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in LOOPBACK or host.endswith(".localhost") or url.startswith(("data:", "about:"))


@pytest.fixture
async def page() -> AsyncIterator[object]:
    if not shutil.which("chromium") and not shutil.which(CHROMIUM):
        pytest.fail("chromium is not installed; `make test` installs it with apt-get")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context()

        async def only_loopback(route, request) -> None:  # type: ignore[no-untyped-def]
            if _loopback(request.url):
                await route.continue_()
            else:
                await route.abort()  # e.g. the IdP page's web font

        await context.route("**/*", only_loopback)
        try:
            yield await context.new_page()
        finally:
            await context.close()
            await browser.close()


TEXT = {"content_type": "text/plain"}


async def test_a_person_signs_in_reads_the_file_and_signs_out(
    start_sign_in_gateway: GatewayFactory, page, keys
) -> None:
    gateway = await start_sign_in_gateway()
    preview_path = await gateway.put(
        "pr3v1e", "preview.txt", draft=True, auth_bypass_ids=["bypass-1"], **TEXT
    )
    limited_path = await gateway.put(
        "l1m1t3", "salaries.txt", draft=True, **limited_to(groups=["finance"]), **TEXT
    )

    # A preview link opens its draft without signing in.
    link = gateway.url(f"{preview_path}?token={keys.preview_token('bypass-1')}")
    answer = await page.goto(link)
    assert answer is not None and answer.status == 200
    assert await answer.body() == gateway.objects["pr3v1e"]
    assert "X-Amz-Signature" in page.url

    # An access-limited draft asks for a sign-in at the IdP, then shows the file. (The preview
    # cookie goes first: with it, the shipped policy answers 404, as for any valid token not listed.)
    await page.context.clear_cookies()
    await page.goto(gateway.url(limited_path))
    assert page.url.startswith(gateway.gateway.settings.oidc.issuer + "/interaction/")
    await page.fill("input[name=login]", "ada")
    await page.fill("input[name=password]", "correct horse")
    async with page.expect_navigation(url=lambda url: "X-Amz-Signature" in url) as navigation:
        await page.click("button[type=submit]")
    landed = await navigation.value
    assert landed is not None and landed.status == 200
    assert await landed.body() == gateway.objects["l1m1t3"]
    cookies = {c["name"]: c for c in await page.context.cookies(gateway.url("/"))}
    session = cookies["gateway_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax" and session["path"] == "/"

    # Signing out ends the session here and at the IdP; the file asks for a sign-in again.
    await page.goto(gateway.url("/oauth2/sign_out"))
    assert page.url.startswith(gateway.gateway.settings.oidc.issuer + "/session/end")
    await page.click("button[name=logout]")
    await page.wait_for_url(gateway.url("/"))
    assert "gateway_session" not in {c["name"] for c in await page.context.cookies(gateway.url("/"))}
    await page.goto(gateway.url(limited_path))
    assert page.url.startswith(gateway.gateway.settings.oidc.issuer + "/interaction/")
    assert await page.locator("input[name=login]").count() == 1

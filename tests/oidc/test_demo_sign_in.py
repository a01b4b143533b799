"""`make run` shows sign-in: the demo's development IdP admits ada to the finance forecast and not
bob, exactly as the printed guide says, and the demo runs without sign-in when the IdP cannot start."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.demo import (
    DEMO_USERS,
    DRAFT_HOST,
    LIVE_HOST,
    Demo,
    build_demo,
    embedded_s3,
    print_sign_in,
    start_demo_app,
    upload_demo_files,
)
from gateway.dev_idp import start_dev_idp
from tests.idp_server import node_binary
from tests.oidc.conftest import Browser, is_s3
from tests.servers import free_port


@pytest.fixture
async def demo_with_sign_in() -> AsyncIterator[tuple[Demo, int]]:
    node_binary()  # fails clearly when node or the IdP package is missing
    port, idp_port = free_port(), free_port()
    with embedded_s3() as endpoint:
        demo = build_demo(port, endpoint, idp_issuer=f"http://127.0.0.1:{idp_port}")
        idp, why_not = start_dev_idp(idp_port, [demo.idp_client()], DEMO_USERS, {DRAFT_HOST: "127.0.0.1"})
        assert idp is not None, why_not
        upload_demo_files(endpoint, demo.files)
        runner = await start_demo_app(demo, port)
        try:
            yield demo, port
        finally:
            await runner.cleanup()
            idp.stop()


async def test_ada_reads_the_forecast_and_bob_gets_404(
    demo_with_sign_in: tuple[Demo, int], browser_factory: Callable[[], Awaitable[Browser]],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    demo, port = demo_with_sign_in
    print_sign_in(demo, port)
    guide = capsys.readouterr().out
    forecast = f"http://{DRAFT_HOST}:{port}/media/f0reca/forecast.pdf"
    assert forecast in guide and f"http://{LIVE_HOST}:{port}/oauth2/start?return_to=" in guide

    ada = await browser_factory()
    landed = await ada.open_signed_in(forecast, "ada")
    assert landed.status == 302 and is_s3(landed.headers["Location"])
    async with ada.session.get(landed.headers["Location"]) as answer:
        assert b"finance forecast" in await answer.read()
    bob = await browser_factory()
    assert (await bob.open_signed_in(forecast, "bob")).status == 404


def test_without_an_idp_the_guide_says_sign_in_is_off(capsys: pytest.CaptureFixture[str]) -> None:
    demo = build_demo(free_port(), "http://127.0.0.1:1")
    print_sign_in(demo, 8080, "node is not installed")
    assert "Sign-in is off in this demo: node is not installed." in capsys.readouterr().out

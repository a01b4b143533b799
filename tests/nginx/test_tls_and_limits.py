"""The shipped nginx templates with TLS (a certificate made here, `listen ... ssl`: `nginx -t`
passes and HTTPS answers) and their request limits: a burst past the limit on /media/ and /oauth2/
gets 429, other paths are never limited. The upstream is a closed port: limited requests never
reach it, and the others are answered by nginx's own fallback."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import ClientSession, TCPConnector
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.nginx.conftest import MODES, NginxServer, run_nginx
from tests.servers import free_port, require_binary

TEMPLATES = {mode: f"{mode}.conf.template" for mode in MODES}


def self_signed(directory: Path) -> str:
    """A certificate for assets.test and its key, written to `directory`; the template's TLS lines."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "assets.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("assets.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "assets.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "assets.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return f"ssl_certificate {directory / 'assets.pem'}; ssl_certificate_key {directory / 'assets.key'};"


def nginx_t(server: NginxServer) -> subprocess.CompletedProcess[str]:
    settings = f"pid {server.directory / 'test.pid'}; error_log {server.directory / 'test-error.log'};"
    config = server.directory / "nginx.conf"
    return subprocess.run(
        [require_binary("nginx"), "-t", "-p", str(server.directory), "-c", str(config), "-g", settings],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
async def test_listen_443_ssl_with_certificate_lines_passes_nginx_t_and_serves_https(
    mode: str, tmp_path: Path
) -> None:
    tls = self_signed(tmp_path)
    with run_nginx(TEMPLATES[mode], f"127.0.0.1:{free_port()}", tls=tls) as nginx:
        checked = nginx_t(nginx)
        assert checked.returncode == 0, checked.stderr
        assert "test is successful" in checked.stderr
        context = ssl.create_default_context(cafile=str(tmp_path / "assets.pem"))
        async with (
            ClientSession(connector=TCPConnector(ssl=context)) as session,
            session.get(
                f"https://127.0.0.1:{nginx.port}/media/a1/f.pdf",
                headers={"Host": "assets.test"},
                server_hostname="assets.test",
            ) as response,
        ):
            # The certificate verified; the closed upstream makes nginx answer by itself.
            assert response.status in (500, 502, 503)


async def _statuses(nginx: NginxServer, path: str, count: int) -> Counter[int]:
    """`count` requests at once over at most 64 connections (the test nginx takes 256, two a request)."""
    async with ClientSession(connector=TCPConnector(limit=64)) as session:

        async def one() -> int:
            async with session.get(f"{nginx.base_url}{path}", headers={"Host": "assets.test"}) as response:
                await response.read()
                return response.status

        return Counter(await asyncio.gather(*(one() for _ in range(count))))


@pytest.mark.parametrize("mode", MODES)
async def test_bursts_past_the_limits_get_429_on_media_and_oauth2_only(mode: str) -> None:
    with run_nginx(TEMPLATES[mode], f"127.0.0.1:{free_port()}") as nginx:
        media = await _statuses(nginx, "/media/a1/f.pdf", 300)  # burst 100 at 50/s
        signin = await _statuses(nginx, "/oauth2/start", 40)  # burst 10 at 5/s
        other = await _statuses(nginx, "/robots.txt", 300)
        log = nginx.error_log()
    assert media[429] > 0 and sum(media.values()) - media[429] > 0, media
    assert signin[429] > 0 and sum(signin.values()) - signin[429] > 0, signin
    assert other[429] == 0, other
    assert "limiting requests, excess: " in log and 'zone "asset_gateway_media"' in log
    assert 'zone "asset_gateway_signin"' in log

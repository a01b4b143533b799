"""A real OpenID provider for tests and the demo: panva's oidc-provider (tests/idp/, pinned in its
package-lock.json, installed by `make idp`), run by node on a free loopback port."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

IDP_DIR = Path(__file__).resolve().parent / "idp"
CLIENT_ID = "asset-gateway"
CLIENT_SECRET = "test-client-secret-0123456789abcdef"
USERS: dict[str, dict[str, Any]] = {
    "ada": {"name": "Ada", "org": "hmt", "groups": ["finance"]},
    "bob": {"name": "Bob", "org": "dfe", "groups": ["comms"]},
    # More groups than a cookie can carry: the gateway must refuse rather than loop.
    "carol": {"name": "Carol", "org": "hmt", "groups": [f"group-with-a-long-name-{n}" for n in range(200)]},
}


@dataclass
class Idp:
    port: int
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rotate_keys(self) -> str:
        """A new signing key; the old one is no longer published. Returns the new kid."""
        request = urllib.request.Request(f"{self.issuer}/__test/rotate", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.loads(response.read())["kid"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def node_binary() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not installed; the sign-in tests run a real OpenID provider on Node.js")
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("tests/idp/node_modules is missing: run `make idp` (npm ci in tests/idp)")
    return path


def client_metadata(gateway_bases: list[str], **extra: Any) -> dict[str, Any]:
    """The gateway registered as a confidential client, on every host (base URL) it serves."""
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{base}/oauth2/callback" for base in gateway_bases],
        "post_logout_redirect_uris": [f"{base}/" for base in gateway_bases],
        "backchannel_logout_uri": f"{gateway_bases[0]}/oauth2/backchannel_logout",
        "backchannel_logout_session_required": True,
        **extra,
    }


@contextmanager
def run_idp(
    port: int,
    clients: list[dict[str, Any]],
    *,
    users: dict[str, dict[str, Any]] | None = None,
    hosts: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Iterator[Idp]:
    node = node_binary()
    config = {
        "port": port,
        "issuer": f"http://127.0.0.1:{port}",
        "clients": clients,
        "users": USERS if users is None else users,
        "hosts": hosts or {},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="idp-") as handle:
        json.dump(config, handle)
        handle.flush()
        process = subprocess.Popen(
            [node, str(IDP_DIR / "idp.mjs"), handle.name],
            cwd=IDP_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        idp = Idp(port, process)
        ready = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                idp.log.append(line.rstrip())
                if line.startswith("listening "):
                    ready.set()

        reader = threading.Thread(target=read, name="idp-log", daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + timeout
            while not ready.wait(0.05):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the OpenID provider did not start:\n" + "\n".join(idp.log[-30:]))
            yield idp
        finally:
            idp.stop()
            reader.join(timeout=5)
            if process.stdout is not None:
                process.stdout.close()

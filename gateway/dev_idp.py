"""The development OpenID provider the demo signs in through: panva's oidc-provider, run by node
from the project's `tests/idp/` (installed by `make idp`). For development only: its login page
takes any password for a known user. When node or the package is missing, `start_dev_idp` says
why and returns None, and the demo runs without sign-in."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IDP_DIR = Path(__file__).resolve().parent.parent / "tests" / "idp"
START_TIMEOUT = 20.0


@dataclass
class DevIdp:
    issuer: str
    process: subprocess.Popen[str]
    config: Any  # the temporary file holding its configuration, removed on stop

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.config.close()


def start_dev_idp(
    port: int, clients: list[dict[str, Any]], users: dict[str, dict[str, Any]], hosts: dict[str, str]
) -> tuple[DevIdp | None, str]:
    """(the running IdP, "") or (None, why it could not start)."""
    node = shutil.which("node")
    if node is None:
        return None, "node is not installed"
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        return None, f"oidc-provider is not installed in {IDP_DIR} (run `make idp`)"
    issuer = f"http://127.0.0.1:{port}"
    config = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="dev-idp-")  # noqa: SIM115 - lives with the IdP
    json.dump({"port": port, "issuer": issuer, "clients": clients, "users": users, "hosts": hosts}, config)
    config.flush()
    process = subprocess.Popen(  # noqa: S603 - our own script, run by the node on PATH
        [node, str(IDP_DIR / "idp.mjs"), config.name],
        cwd=IDP_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    idp = DevIdp(issuer, process, config)
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("listening "):
                ready.set()
            elif "WARNING" not in line:
                lines.append(line.rstrip())

    threading.Thread(target=read, name="dev-idp-output", daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.wait(0.05):
        if process.poll() is not None or time.monotonic() > deadline:
            idp.stop()
            return None, "the development IdP did not start: " + " | ".join(lines[-5:])
    return idp, ""

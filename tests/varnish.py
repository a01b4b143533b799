"""A real Varnish (Debian's varnishd) on a free loopback port, configured from the shipped
cdn/varnish.vcl.template, that a test can stop and start again on the same port."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import free_port, require_binary, wait_for_port

TEMPLATE = Path(__file__).resolve().parents[1] / "cdn" / "varnish.vcl.template"


def render_vcl(backend_port: int) -> str:
    values = {
        "ASSET_GATEWAY_HOST": "127.0.0.1",
        "ASSET_GATEWAY_PORT": str(backend_port),
        "ASSET_GATEWAY_PURGERS": '"127.0.0.1"',
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    assert "${" not in text.split("vcl 4.1;", 1)[1], "a placeholder of the VCL template has no value"
    return text


@dataclass
class Varnish:
    port: int
    workdir: Path
    vcl: Path
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [require_binary("varnishd"), "-F", "-j", "none", "-a", f"127.0.0.1:{self.port}",
             "-T", f"127.0.0.1:{free_port()}", "-f", str(self.vcl), "-n", str(self.workdir),
             "-s", "malloc,32m", "-p", "default_grace=0", "-p", "default_keep=0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def purges_received(self) -> list[str]:
        """The Surrogate-Key of every PURGE request this Varnish has logged since it started, read
        from its shared-memory log (varnishlog -d: the log so far, then exit)."""
        out = subprocess.run(
            [require_binary("varnishlog"), "-n", str(self.workdir), "-d", "-g", "request",
             "-q", 'ReqMethod eq "PURGE"', "-i", "ReqHeader"],
            check=True, capture_output=True, text=True, timeout=20,
        ).stdout  # fmt: skip
        prefix = "ReqHeader"
        keys = []
        for line in out.splitlines():
            _, _, rest = line.partition(prefix)
            name, _, value = rest.strip().partition(":")
            if name.lower() == "surrogate-key":
                keys.append(value.strip())
        return keys


@contextmanager
def run_varnish(backend_port: int) -> Iterator[Varnish]:
    with tempfile.TemporaryDirectory(prefix="gateway-varnish-") as directory:
        vcl = Path(directory) / "gateway.vcl"
        vcl.write_text(render_vcl(backend_port))
        varnish = Varnish(free_port(), Path(directory) / "work", vcl)
        varnish.start()
        try:
            yield varnish
        finally:
            varnish.stop()

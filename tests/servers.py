"""Real servers for tests: redis-server and moto's S3 server, each on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def require_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None
    )
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it with apt-get")
    return path


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    directory: str
    extra: tuple[str, ...] = ()  # redis-server options, kept across restarts

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def start(self) -> None:
        """(Re)start on the same port, as an ops restart would."""
        self.stop()
        self.process = _spawn_redis(self.port, self.directory, *self.extra)
        wait_for_port(self.port)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save (a crash or an OOM kill)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _spawn_redis(port: int, directory: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", directory, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


@contextmanager
def run_redis(*extra: str) -> Iterator[RedisServer]:
    """`extra`: redis-server options, e.g. ("--appendonly", "yes") for a server that keeps
    acknowledged writes across a kill."""
    with tempfile.TemporaryDirectory(prefix="gateway-redis-") as directory:
        port = free_port()
        server = RedisServer(port, _spawn_redis(port, directory, *extra), directory, extra)
        try:
            wait_for_port(port)
            yield server
        finally:
            server.stop()


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str = "assets"
    region: str = "eu-west-2"

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@contextmanager
def run_s3() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        wait_for_port(port)
        s3 = S3Server(f"http://127.0.0.1:{port}")
        s3.client().create_bucket(
            Bucket=s3.bucket, CreateBucketConfiguration={"LocationConstraint": s3.region}
        )
        yield s3
    finally:
        server.stop()


@dataclass
class RedisCluster:
    """A local Redis Cluster: one primary per node, every slot covered."""

    ports: list[int]
    processes: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def flush(self) -> None:
        import redis

        for port in self.ports:
            client = redis.Redis(port=port)
            client.flushall()
            client.close()


def _cluster_ready(ports: list[int]) -> bool:
    """Every node sees the whole cluster as ok (slots assigned, gossip converged)."""
    import redis

    for port in ports:
        client = redis.Redis(port=port)
        try:
            info = client.cluster("INFO")
            known = int(info.get("cluster_known_nodes", 0))
            if info.get("cluster_state") != "ok" or known != len(ports):
                return False
        finally:
            client.close()
    return True


@contextmanager
def run_redis_cluster(nodes: int = 3, *extra: str, timeout: float = 20.0) -> Iterator[RedisCluster]:
    """`nodes` redis-server processes with --cluster-enabled, joined with `redis-cli --cluster create`;
    `extra` options go to every node.

    Each node's cluster bus port is picked free too: the default (port + 10000) may not exist.
    """
    cli = require_binary("redis-cli")
    with tempfile.TemporaryDirectory(prefix="gateway-cluster-") as directory:
        ports = [free_port() for _ in range(nodes)]
        processes = []
        try:
            for port in ports:
                node_dir = Path(directory) / str(port)
                node_dir.mkdir()
                options = ["--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
                           "--cluster-port", str(free_port()), "--cluster-node-timeout", "2000"]  # fmt: skip
                processes.append(_spawn_redis(port, str(node_dir), *options, *extra))
            for port in ports:
                wait_for_port(port)
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=timeout,
            )  # fmt: skip
            deadline = time.monotonic() + timeout
            while not _cluster_ready(ports):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis cluster on {ports} not ready after {timeout}s")
                time.sleep(0.05)
            yield RedisCluster(ports, processes)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                process.wait(timeout=10)

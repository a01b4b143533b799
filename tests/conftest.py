from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.servers import RedisServer, S3Server, run_redis, run_s3

# Property tests check what is answered, never how fast: Hypothesis's per-example deadline would
# be a timed assertion that a busy CI machine fails now and then.
settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto accepts any credentials; set them so no test ever reaches a real account's chain."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with run_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A clean database for each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with run_s3() as server:
        yield server

"""The fault test (tests/chaos.py) in `make test`: a short round of every fault under load.
`make chaos` runs the same for longer and prints the numbers."""

from __future__ import annotations

import pytest

from tests.chaos import run_chaos
from tests.servers import S3Server

FAULT_KINDS = {
    "redis paused", "redis killed", "redis restarted", "pubsub connections killed",
    "policy flipped", "key corrupted", "gateway restarted",
}  # fmt: skip


@pytest.mark.timeout(120)
async def test_faults_under_load_give_no_wrong_answer_and_lose_no_write(s3_server: S3Server) -> None:
    report = await run_chaos(s3_server, seconds=20)
    print(report.summary())
    assert report.wrong == []
    assert (report.wrong_answers, report.lost_writes) == (0, 0)
    assert set(report.faults) == FAULT_KINDS  # every kind was injected at least once
    assert report.answers_checked >= 500
    assert report.answers_503 > 0  # the faults were felt, and answered honestly
    assert report.writes_acknowledged >= 50

"""Faults under load, checked by an oracle. Two gateways (in-process apps on real loopback sockets)
share one real redis-server and one policy directory; readers request a small set of files as
three identities on both hosts while a writer changes the records through both admin APIs, and
faults are injected in turn: Redis paused (SIGSTOP/SIGCONT), Redis killed (SIGKILL) and restarted,
the pub/sub connections killed (CLIENT KILL TYPE pubsub), the policy flipped, a key corrupted (and
repaired by a PUT), a gateway stopped and started afresh.

The oracle keeps, for every id, each version written with the interval in which it may have been
the stored one: from when its write was sent until the next acknowledged write was acknowledged
(a write that got no answer may or may not have been applied). The policy flips are kept the same
way (until both gateways confirm the new revision). An answer made between sending and receiving
is right when some version and some policy in that window, widened by `state.cache_ttl` (the
documented bound on staleness when an invalidation is lost), give it: a file is served (a 302 to
S3 for that version's object) only if that version admits the requester, anything else only if
that version does not. 503 is always allowed: it serves nothing and guesses nothing. At the end
every id must hold its last acknowledged write (or a later unanswered one): no write lost.

`tests/test_faults.py` runs a short round in `make test`; `make chaos` runs `python -m tests.chaos`
(CHAOS_SECONDS, CHAOS_READERS, CHAOS_IDS, CHAOS_CACHE_TTL) and prints the report."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
from aiohttp import ClientError, ClientSession, ClientTimeout, web

from gateway.app import create_admin_app
from gateway.http.context import Gateway
from gateway.http.runner import GatewayRunner
from gateway.policy.loading import read_sources
from gateway.settings import Secret, TokenKey
from gateway.state.redis import asset_key
from gateway.tokens import mint_token, new_rsa_pem_pair
from tests.http.conftest import AUDIENCE, DRAFT, ISSUER, LIVE, POLICIES, Keys, gateway_settings, start_gateway
from tests.servers import RedisServer, S3Server, free_port, run_redis, run_s3

ADMIN_TOKEN = "chaos-" + secrets.token_hex(8)
# The flip: a rule (first, in its own file) refusing one organisation everywhere. It contradicts
# none of default.yaml's own test cases, so every reload of it is accepted.
SUSPEND = "rules:\n  - name: org_suspended\n    when: {user_org: [org-b]}\n    then: {deny: 404}\n"
CORRUPT_ID = "cor1"
REQUEST_TIMEOUT = ClientTimeout(total=5)
# Persistence as production runs it for state that must not be lost: every write fsynced.
DURABLE_REDIS = ("--appendonly", "yes", "--appendfsync", "always")


@dataclass(frozen=True)
class Requester:
    name: str
    sub: str | None  # None: anonymous
    org: str | None = None


REQUESTERS = (Requester("anonymous", None), Requester("u1", "u1", "org-b"), Requester("u2", "u2", "org-c"))


def served_by_model(record: dict[str, Any] | None, who: Requester, host: str, suspended: bool) -> bool:
    """What the shipped policy (DESIGN 2.6) serves, written independently of its implementation,
    for the records this run writes (uploaded, current filename, no redirect or replacement)."""
    if record is None or record["deleted"]:
        return False
    if suspended and who.org == "org-b":
        return False
    limited = bool(record["access_limited"]["users"])
    admitted = who.sub is not None and (not limited or who.sub in record["access_limited"]["users"])
    if host == LIVE:
        if record["draft"]:
            return False  # sent to the draft host
        return not limited or admitted
    return admitted  # the draft host: any signed-in user for an unlimited file, else the listed


@dataclass
class Version:
    """One value an id may have held: a record, or None for a value that is not a record."""

    record: dict[str, Any] | None
    start: float  # the earliest moment it may have been stored
    end: float = math.inf  # the moment a later write was acknowledged: certainly replaced by then
    acknowledged: bool = False


@dataclass
class History:
    versions: list[Version] = field(default_factory=list)

    def begin(self, record: dict[str, Any] | None, at: float) -> Version:
        version = Version(record, at)
        self.versions.append(version)
        return version

    def acknowledge(self, version: Version, at: float) -> None:
        version.acknowledged = True
        for earlier in self.versions[: self.versions.index(version)]:
            earlier.end = min(earlier.end, at)

    def during(self, start: float, end: float, slack: float) -> list[Version]:
        return [v for v in self.versions if v.start <= end and v.end + slack >= start]


@dataclass
class Report:
    answers_checked: int = 0
    answers_503: int = 0
    # 503s for an id that was readable while Redis was up: not wrong (nothing served, nothing
    # guessed) but not explained by a fault either; reported (a loaded machine can cause them).
    answers_503_unexplained: int = 0
    wrong_answers: int = 0
    unanswered: int = 0  # transport errors: a gateway being restarted, a client timeout
    timeouts: int = 0
    writes_acknowledged: int = 0
    writes_unanswered: int = 0
    lost_writes: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)  # the first few, for the failure message

    @property
    def faults_injected(self) -> int:
        return sum(self.faults.values())

    def summary(self) -> dict[str, Any]:
        return {
            "answers checked": self.answers_checked, "wrong answers": self.wrong_answers,
            "lost writes": self.lost_writes, "faults injected": self.faults_injected,
            "faults": self.faults, "answers 503": self.answers_503,
            "answers 503 outside faults": self.answers_503_unexplained, "unanswered": self.unanswered,
            "client timeouts": self.timeouts, "writes acknowledged": self.writes_acknowledged,
            "writes unanswered": self.writes_unanswered,
        }  # fmt: skip


def make_keys() -> Keys:
    private, public = new_rsa_pem_pair()
    return Keys(
        user=TokenKey(use="user", alg="RS256", kid="idp-1", public_key=Secret(public)),
        preview=TokenKey(use="preview", alg="HS256", secret=Secret(secrets.token_urlsafe(32))),
        user_private_pem=private,
        user_public_pem=public,
    )


@dataclass
class Node:
    """One gateway: public and admin listeners on real sockets."""

    gateway: Gateway
    public_url: str
    admin_url: str
    runners: tuple[GatewayRunner, GatewayRunner]

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


class Chaos:
    def __init__(
        self,
        redis_server: RedisServer,
        s3: S3Server,
        policy_dir: Path,
        *,
        ids: int,
        cache_ttl: float,
        seconds: float,
    ) -> None:
        self.redis = redis_server
        self.s3 = s3
        self.policy_dir = policy_dir
        self.ids = [f"c{i}" for i in range(ids)]
        self.cache_ttl = cache_ttl
        self.seconds = seconds
        self.keys = make_keys()
        self.settings = gateway_settings(
            redis_server.url, s3, self.keys,
            state={"cache_ttl": cache_ttl}, policies={"dir": str(policy_dir)},
            admin={"token": Secret(ADMIN_TOKEN)},
        )  # fmt: skip
        self.histories = {asset_id: History() for asset_id in [*self.ids, CORRUPT_ID]}
        self.policies = History()  # record: {"suspended": bool}
        self.outages: list[list[float]] = []  # [start, end] of each time Redis was paused or down
        self.nodes: list[Node] = []
        self.report = Report()
        self.versions = dict.fromkeys(self.histories, 0)
        self.stopping = asyncio.Event()
        self.rng = random.Random(int(os.environ.get("CHAOS_SEED", "0")) or None)
        ttl = int(seconds) + 600
        self.tokens = {who.name: None if who.sub is None else self.user_token(who, ttl) for who in REQUESTERS}

    def user_token(self, who: Requester, ttl: int) -> str:
        claims = {
            "sub": who.sub,
            "org": who.org,
            "exp": int(time.time()) + ttl,
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        return mint_token(self.keys.user, claims, self.keys.user_private_pem)

    # ---- the gateways

    async def start_node(self) -> Node:
        runner, gateway, _, public_url = await start_gateway(self.settings, self.s3)
        admin = GatewayRunner(create_admin_app(gateway))
        await admin.setup()
        port = free_port()
        await web.TCPSite(admin, "127.0.0.1", port).start()
        await asyncio.wait_for(gateway.invalidations.started(), 10)
        return Node(gateway, public_url, f"http://127.0.0.1:{port}", (runner, admin))

    # ---- writes

    def new_record(self, asset_id: str) -> dict[str, Any]:
        self.versions[asset_id] += 1
        version = self.versions[asset_id]
        roll = self.rng.random()
        return {
            "id": asset_id, "version": version, "object_key": f"objects/{asset_id}-v{version}",
            "filename": "file.pdf", "content_type": "application/pdf", "state": "uploaded",
            "draft": roll < 0.25, "deleted": roll >= 0.9,
            "access_limited": {
                "users": ["u1"] if 0.45 <= roll < 0.75 else [], "organisations": [], "groups": [],
            },
        }  # fmt: skip

    async def write(self, session: ClientSession, record: dict[str, Any]) -> bool:
        """PUT through a random gateway's admin API; True when acknowledged."""
        history = self.histories[record["id"]]
        node = self.rng.choice(self.nodes)
        version = history.begin(record, time.monotonic())
        try:
            async with session.put(
                f"{node.admin_url}/assets/{record['id']}", data=json.dumps(record),
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=REQUEST_TIMEOUT,
            ) as response:  # fmt: skip
                await response.read()
                status = response.status
        except (ClientError, TimeoutError):
            status = 0
        if status in (200, 201):
            history.acknowledge(version, time.monotonic())
            self.report.writes_acknowledged += 1
            return True
        if status not in (0, 503):
            self.wrong(f"write {record['id']} v{record['version']}: status {status}")
        self.report.writes_unanswered += 1
        return False

    async def writer(self, session: ClientSession) -> None:
        while not self.stopping.is_set():
            await self.write(session, self.new_record(self.rng.choice(self.ids)))
            await asyncio.sleep(0.02)  # a publisher's pace, not a benchmark

    # ---- reads and the oracle

    async def reader(self, session: ClientSession) -> None:
        while not self.stopping.is_set():
            asset_id = self.rng.choice([*self.ids, CORRUPT_ID])
            who = self.rng.choice(REQUESTERS)
            host = self.rng.choice((LIVE, DRAFT))
            node = self.rng.choice(self.nodes)
            headers = {"Host": host}
            token = self.tokens[who.name]
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            sent = time.monotonic()
            try:
                async with session.get(
                    f"{node.public_url}/media/{asset_id}/file.pdf", headers=headers,
                    allow_redirects=False, timeout=REQUEST_TIMEOUT,
                ) as response:  # fmt: skip
                    await response.read()
                    status, location = response.status, response.headers.get("Location", "")
            except TimeoutError:
                self.report.timeouts += 1
                self.report.unanswered += 1
                continue
            except ClientError:
                self.report.unanswered += 1
                continue
            self.judge(asset_id, who, host, sent, time.monotonic(), status, location)

    def judge(
        self,
        asset_id: str,
        who: Requester,
        host: str,
        sent: float,
        received: float,
        status: int,
        location: str,
    ) -> None:
        self.report.answers_checked += 1
        versions = self.histories[asset_id].during(sent, received, self.cache_ttl)
        if status == 503:
            self.report.answers_503 += 1
            heal = 2.0  # seconds after a fault ends for every connection to be reopened
            in_outage = any(start <= received and end + heal >= sent for start, end in self.outages)
            if not in_outage and all(v.record is not None for v in versions):
                self.report.answers_503_unexplained += 1
            return
        policies = self.policies.during(sent, received, 0.0)
        suspended = {bool(p.record and p.record["suspended"]) for p in policies}
        s3_host = urlsplit(self.s3.endpoint_url).netloc
        served = status == 302 and urlsplit(location).netloc == s3_host
        if served:
            path = urlsplit(location).path
            ok = any(
                v.record is not None and path.endswith("/" + v.record["object_key"])
                and served_by_model(v.record, who, host, s)
                for v in versions for s in suspended
            )  # fmt: skip
        elif status in (301, 302, 404, 410):
            ok = any(not served_by_model(v.record, who, host, s) for v in versions for s in suspended)
        else:
            ok = False
        if not ok:
            possible = [v.record and v.record["version"] for v in versions]
            self.wrong(
                f"{who.name} on {host} got {status} {location[:80]!r} for {asset_id} between "
                f"{sent:.3f} and {received:.3f}; possible versions: {possible}"
            )

    def wrong(self, message: str) -> None:
        self.report.wrong_answers += 1
        if len(self.report.wrong) < 20:
            self.report.wrong.append(message)

    # ---- faults

    def fault(self, name: str) -> None:
        self.report.faults[name] = self.report.faults.get(name, 0) + 1

    async def pause_redis(self) -> None:
        outage = [time.monotonic(), math.inf]
        self.outages.append(outage)
        os.kill(self.redis.process.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(1.5)  # how long the fault lasts
        finally:
            os.kill(self.redis.process.pid, signal.SIGCONT)
            outage[1] = time.monotonic()
        self.fault("redis paused")

    async def kill_redis(self) -> None:
        outage = [time.monotonic(), math.inf]
        self.outages.append(outage)
        await asyncio.to_thread(self.redis.kill)
        self.fault("redis killed")
        await asyncio.sleep(0.5)  # how long it stays down
        await asyncio.to_thread(self.redis.start)
        outage[1] = time.monotonic()
        self.fault("redis restarted")

    async def kill_pubsub(self) -> None:
        client = redis.asyncio.Redis.from_url(self.redis.url)
        try:
            await client.client_kill_filter(_type="pubsub")
        finally:
            await client.aclose()
        self.fault("pubsub connections killed")

    async def flip_policy(self) -> None:
        suspended = not bool(self.policies.versions[-1].record["suspended"])  # type: ignore[index]
        flip = self.policy_dir / "00-flip.yaml"
        version = self.policies.begin({"suspended": suspended}, time.monotonic())
        temporary = flip.with_suffix(".tmp")
        temporary.write_text(SUSPEND if suspended else "rules:\n  - name: org_suspended\n    "
                             "when: {user_org: [nobody-has-this]}\n    then: {deny: 404}\n")  # fmt: skip
        os.replace(temporary, flip)
        revision = read_sources(self.policy_dir).revision
        deadline = time.monotonic() + 10
        while not all(n.gateway.policy.policy.revision == revision for n in self.nodes):
            if time.monotonic() > deadline:
                self.wrong(f"policy revision {revision} not serving after 10 s")
                break
            await asyncio.sleep(0.01)
        self.policies.acknowledge(version, time.monotonic())
        self.fault("policy flipped")

    async def corrupt_key(self, session: ClientSession) -> None:
        history = self.histories[CORRUPT_ID]
        version = history.begin(None, time.monotonic())
        client = redis.asyncio.Redis.from_url(self.redis.url)
        try:
            await client.set(asset_key(CORRUPT_ID), "garbage")
        finally:
            await client.aclose()
        history.acknowledge(version, time.monotonic())
        self.fault("key corrupted")
        await asyncio.sleep(1.0)
        for _ in range(20):  # the repair: a PUT of the whole record (retried while Redis is down)
            if await self.write(session, self.new_record(CORRUPT_ID)):
                return
            await asyncio.sleep(0.1)

    async def restart_gateway(self) -> None:
        old = self.nodes[-1]
        self.nodes = self.nodes[:-1]
        await old.stop()
        self.fault("gateway restarted")
        self.nodes = [*self.nodes, await self.start_node()]

    async def injector(self, session: ClientSession, deadline: float) -> None:
        faults: list[Callable[[], Any]] = [
            self.pause_redis, self.kill_pubsub, self.flip_policy,
            lambda: self.corrupt_key(session), self.kill_redis, self.restart_gateway,
        ]  # fmt: skip
        settle = 1.0  # seconds of plain load between faults
        n = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(settle)  # load between faults
            if time.monotonic() >= deadline:
                break
            await faults[n % len(faults)]()
            n += 1

    # ---- the run

    async def run(self, readers: int) -> Report:
        self.policies.acknowledge(self.policies.begin({"suspended": False}, 0.0), 0.0)
        self.nodes = [await self.start_node(), await self.start_node()]
        try:
            async with ClientSession() as session:
                for asset_id in self.histories:
                    assert await self.write(session, self.new_record(asset_id)), f"seeding {asset_id}"
                deadline = time.monotonic() + self.seconds
                load = [asyncio.create_task(self.reader(session)) for _ in range(readers)]
                load.append(asyncio.create_task(self.writer(session)))
                try:
                    await self.injector(session, deadline)
                    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                finally:
                    self.stopping.set()
                    await asyncio.gather(*load)
                await self.check_writes(session)
        finally:
            for node in self.nodes:
                await node.stop()
        return self.report

    async def check_writes(self, session: ClientSession) -> None:
        """Every id holds its last acknowledged write, or a later one that got no answer."""
        node = self.nodes[0]
        for asset_id, history in self.histories.items():
            acknowledged = [v for v in history.versions if v.acknowledged and v.record is not None]
            last = acknowledged[-1].record if acknowledged else None
            later = [v.record for v in history.versions[history.versions.index(acknowledged[-1]) + 1 :]]
            stored = None
            for _ in range(100):  # Redis may still be coming back from the last fault
                async with session.get(
                    f"{node.admin_url}/assets/{asset_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                ) as response:
                    if response.status != 503:
                        stored = await response.json() if response.status == 200 else None
                        break
                await asyncio.sleep(0.1)
            if stored is not None:  # the API answers with every field; we wrote some
                stored = {key: stored.get(key) for key in (last or {})}
            if stored != last and stored not in later:
                self.report.lost_writes += 1
                got, wanted = stored and stored["version"], last and last["version"]
                self.wrong(f"{asset_id}: stored version {got}, last acknowledged {wanted}")


@asynccontextmanager
async def chaos_servers(s3: S3Server | None = None) -> AsyncIterator[tuple[RedisServer, S3Server, Path]]:
    """A durable redis-server of its own, the S3 server (given or started), a policy directory."""
    with run_redis(*DURABLE_REDIS) as redis_server, TemporaryDirectory(prefix="chaos-policy-") as directory:
        policy_dir = Path(directory)
        (policy_dir / "default.yaml").write_text((POLICIES / "default.yaml").read_text())
        if s3 is not None:
            yield redis_server, s3, policy_dir
            return
        with run_s3() as started:
            yield redis_server, started, policy_dir


async def run_chaos(
    s3: S3Server | None = None, *, seconds: float, readers: int = 6, ids: int = 8, cache_ttl: float = 3.0
) -> Report:
    async with chaos_servers(s3) as (redis_server, s3_server, policy_dir):
        chaos = Chaos(redis_server, s3_server, policy_dir, ids=ids, cache_ttl=cache_ttl, seconds=seconds)
        return await chaos.run(readers)


def main() -> int:
    """`make chaos`: a longer run; exit 1 on any wrong answer or lost write."""
    logging.disable(logging.WARNING)  # the faults are expected; their warnings would bury the report
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    report = asyncio.run(
        run_chaos(
            seconds=float(os.environ.get("CHAOS_SECONDS", "120")),
            readers=int(os.environ.get("CHAOS_READERS", "6")),
            ids=int(os.environ.get("CHAOS_IDS", "8")),
            cache_ttl=float(os.environ.get("CHAOS_CACHE_TTL", "3")),
        )
    )
    for line in report.wrong:
        print("WRONG", line)
    for key, value in report.summary().items():
        print(f"{key}: {value}")
    return 1 if report.wrong_answers or report.lost_writes else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The CDNs we can purge, one adapter each. Every adapter answers, per purge, whether the CDN
confirmed it: only those are acknowledged; the others stay queued and are retried.

* `http`: a `PURGE` request per key, the key in a header (Varnish with a ban or xkey VCL, nginx
  cache purging); `X-Purge-Kind: soft` lets a VCL soft-purge content updates.
* `fastly`: its purge-by-surrogate-key API, up to 256 keys a call; `Fastly-Soft-Purge: 1` only for
  soft purges.
* `cloudfront`: CreateInvalidation through boto3 with the purges' paths in one batch, keeping the
  paths in progress (ours) under CloudFront's 3,000 per distribution; purges that do not fit wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, Final, Protocol

import aiohttp

from gateway.cdn.plan import Purge, PurgeKind
from gateway.settings import CdnSettings

log = logging.getLogger(__name__)

REQUEST_TIMEOUT: Final = 10.0  # seconds for one call to the CDN
HTTP_CONCURRENCY: Final = 16
FASTLY_API: Final = "https://api.fastly.com"
FASTLY_KEYS_PER_CALL: Final = 256
CLOUDFRONT_PATHS_IN_PROGRESS: Final = 3000


class Purger(Protocol):
    name: str

    async def purge(self, purges: Sequence[Purge]) -> list[bool]:
        """One answer per purge, in order: True when the CDN confirmed it. Never raises for a CDN
        that is down or refuses; it answers False and logs why."""
        ...

    async def close(self) -> None: ...


class HttpPurger:
    name = "http"

    def __init__(self, url: str, key_header: str) -> None:
        self._url = url
        self._key_header = key_header
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(HTTP_CONCURRENCY)

    async def purge(self, purges: Sequence[Purge]) -> list[bool]:
        return list(await asyncio.gather(*(self._one(purge) for purge in purges)))

    async def _one(self, purge: Purge) -> bool:
        session = self._open()
        for key in purge.keys:
            headers = {self._key_header: key, "X-Purge-Kind": purge.kind.value}
            try:
                async with self._limit, session.request("PURGE", self._url, headers=headers) as response:
                    await response.read()
                    if not 200 <= response.status < 300:
                        log.warning("purge of %s refused by %s: HTTP %s", key, self.name, response.status)
                        return False
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("purge of %s not delivered (%s): %s", key, self.name, type(exc).__name__)
                return False
        return True

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class FastlyPurger:
    name = "fastly"

    def __init__(self, service_id: str, api_token: str, api_url: str = FASTLY_API) -> None:
        self._endpoint = f"{api_url.rstrip('/')}/service/{service_id}/purge"
        self._token = api_token
        self._session: aiohttp.ClientSession | None = None

    async def purge(self, purges: Sequence[Purge]) -> list[bool]:
        confirmed = [False] * len(purges)
        for kind in (PurgeKind.HARD, PurgeKind.SOFT):  # never one call mixing the two
            indices = [i for i, p in enumerate(purges) if p.kind is kind]
            while indices:
                batch, keys = [], list[str]()
                while indices and len(keys) + len(purges[indices[0]].keys) <= FASTLY_KEYS_PER_CALL:
                    index = indices.pop(0)
                    batch.append(index)
                    keys.extend(purges[index].keys)
                if not batch:  # one purge with more keys than a call takes: send it alone
                    index = indices.pop(0)
                    batch, keys = [index], list(purges[index].keys)
                ok = await self._call(keys, kind)
                for index in batch:
                    confirmed[index] = ok
        return confirmed

    async def _call(self, keys: Sequence[str], kind: PurgeKind) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
        headers = {"Fastly-Key": self._token, "Surrogate-Key": " ".join(keys), "Accept": "application/json"}
        if kind is PurgeKind.SOFT:
            headers["Fastly-Soft-Purge"] = "1"
        try:
            async with self._session.post(self._endpoint, headers=headers) as response:
                await response.read()
                if response.status == 200:
                    return True
                log.warning("fastly refused a purge of %d keys: HTTP %s", len(keys), response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("fastly purge of %d keys not delivered: %s", len(keys), type(exc).__name__)
        return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class CloudFrontPurger:
    name = "cloudfront"

    def __init__(
        self,
        distribution_id: str,
        client: Any = None,
        *,
        max_in_progress: int = CLOUDFRONT_PATHS_IN_PROGRESS,
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("cloudfront")
        self._client = client
        self._distribution = distribution_id
        self._max = max_in_progress
        self._path_counts: dict[str, int] = {}  # invalidation id -> its path count (never changes)

    async def purge(self, purges: Sequence[Purge]) -> list[bool]:
        return await asyncio.to_thread(self._purge, purges)

    def _purge(self, purges: Sequence[Purge]) -> list[bool]:
        try:
            room = self._max - self._paths_in_progress()
        except Exception as exc:  # botocore raises many types; all mean "cannot tell now"
            log.warning("cloudfront: cannot read invalidations in progress: %s", type(exc).__name__)
            return [False] * len(purges)
        chosen, paths = fit_paths(purges, room)
        if not paths:
            return [i in chosen for i in range(len(purges))]  # nothing to send, or no room yet
        try:
            reply = self._client.create_invalidation(
                DistributionId=self._distribution,
                InvalidationBatch={
                    "Paths": {"Quantity": len(paths), "Items": paths},
                    "CallerReference": f"asset-gateway-{time.time_ns()}-{uuid.uuid4().hex[:8]}",
                },
            )
        except Exception as exc:
            log.warning("cloudfront refused an invalidation of %d paths: %s", len(paths), type(exc).__name__)
            return [False] * len(purges)
        self._path_counts[reply["Invalidation"]["Id"]] = len(paths)
        return [i in chosen for i in range(len(purges))]

    def _paths_in_progress(self) -> int:
        """Paths of every invalidation in progress on the distribution, whoever made it (other
        gateways and people count against the same limit)."""
        total = 0
        pages = self._client.get_paginator("list_invalidations").paginate(DistributionId=self._distribution)
        for page in pages:
            for item in page["InvalidationList"].get("Items", ()):
                if item["Status"] != "InProgress":
                    continue
                count = self._path_counts.get(item["Id"])
                if count is None:
                    reply = self._client.get_invalidation(DistributionId=self._distribution, Id=item["Id"])
                    count = self._path_counts[item["Id"]] = int(
                        reply["Invalidation"]["InvalidationBatch"]["Paths"]["Quantity"]
                    )
                total += count
        return total

    async def close(self) -> None:
        return None


def fit_paths(purges: Sequence[Purge], room: int) -> tuple[set[int], list[str]]:
    """The purges (by index, in queue order) whose paths fit in `room`, and those paths without
    repeats. A purge with no known path is sent as `/media/<id>/*`."""
    chosen: set[int] = set()
    paths: dict[str, None] = {}
    for index, purge in enumerate(purges):
        wanted = [p for p in (purge.paths or (f"/media/{purge.asset_id}/*",)) if p not in paths]
        if len(paths) + len(wanted) > room:
            break  # keep the queue's order: later purges wait for this one
        chosen.add(index)
        paths.update(dict.fromkeys(wanted))
    return chosen, list(paths)


def open_purger(settings: CdnSettings) -> Purger | None:
    """The adapter `[cdn] purge` names (None for "none"); settings were validated at load."""
    if settings.purge == "http":
        return HttpPurger(settings.url, settings.key_header)
    if settings.purge == "fastly":
        return FastlyPurger(settings.service_id, settings.api_token.reveal(), settings.url or FASTLY_API)
    if settings.purge == "cloudfront":
        return CloudFrontPurger(settings.distribution_id)
    return None

"""The policy a running process decides with, and its hot reload. The Policy object is replaced whole,
never edited in place, so a request (which reads `policy` once) sees either the old policy or the new
one. A change is noticed by polling the directory's content hash (no dependency, works on every
filesystem, ConfigMap symlink swaps included) or at once on SIGHUP; an invalid edit, or one that
fails its own inline test cases, is logged with `file:line`, counted, and the last good policy
keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from gateway.policy.cases import require_passing_cases
from gateway.policy.language import Policy, PolicyError, Problem
from gateway.policy.loading import PolicySources, parse_sources, read_sources

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.5  # seconds between looks at the directory (a few small files: cheap)
# A change must hold this long before it is parsed, so an editor's half-written file is not
# reported as an error (and counted as a failed reload) a moment before the write completes.
SETTLE = 0.2


class CurrentPolicy:
    """Holds the serving policy. `reload_failures`, `last_error` and `policy.revision` are read by
    /readyz and the metrics scrape."""

    def __init__(
        self,
        directory: str | Path,
        policy: Policy | None = None,
        *,
        interval: float = WATCH_INTERVAL,
        settle: float = SETTLE,
    ) -> None:
        self.directory = Path(directory)
        self.policy = policy if policy is not None else load_tested_policy(self.directory)
        self.interval = interval
        self.settle = settle
        self.reloads = 0  # successful swaps since start
        self.reload_failures = 0
        self.last_error: list[Problem] | None = None  # the errors of the last attempt, None once good
        self._seen = self.policy.revision  # the content last acted on, good or bad
        self._forced = False
        self._wake: asyncio.Event | None = None
        self._lock = asyncio.Lock()

    def request_reload(self) -> None:
        """Reload at the next chance even if nothing seems changed (SIGHUP). Safe from a signal
        handler installed with loop.add_signal_handler."""
        self._forced = True
        if self._wake is not None:
            self._wake.set()

    async def watch(self) -> None:
        """Run until cancelled: look for changes every `interval` seconds, or at once when asked."""
        self._wake = wake = asyncio.Event()
        if self._forced:  # a SIGHUP that came before the watcher started
            wake.set()
        try:
            while True:
                with contextlib.suppress(TimeoutError):  # the regular look, nothing asked for
                    await asyncio.wait_for(wake.wait(), self.interval)
                wake.clear()
                forced, self._forced = self._forced, False
                try:
                    await self.refresh(force=forced)
                except Exception:
                    # Keep watching: one bad look (a vanished mount, say) must not end hot reload.
                    log.exception("policy watch: could not check %s; will try again", self.directory)
        finally:
            self._wake = None

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload when the directory's content changed (or always, when forced). True if a new
        policy object was swapped in. File reads and parsing run in a thread: the loop keeps serving."""
        async with self._lock:
            sources = await asyncio.to_thread(read_sources, self.directory)
            if not force:
                if sources.revision == self._seen:
                    return False
                await asyncio.sleep(self.settle)
                settled = await asyncio.to_thread(read_sources, self.directory)
                if settled.revision != sources.revision:
                    return False  # still being written: the next look tries again
            return self._apply(sources, await asyncio.to_thread(_parse, sources), forced=force)

    def _apply(self, sources: PolicySources, result: Policy | PolicyError, *, forced: bool) -> bool:
        self._seen = sources.revision
        old = self.policy
        if isinstance(result, PolicyError):
            self.reload_failures += 1
            errors = [p for p in result.problems if not p.warning] or result.problems
            self.last_error = errors
            for problem in errors:
                log.error("policy reload failed: %s (still serving revision %s)", problem, old.revision)
            return False
        self.policy = result  # the swap: one reference assignment on the event loop
        self.reloads += 1
        self.last_error = None
        for warning in result.warnings:
            log.warning("policy: %s", warning)
        if result.revision == old.revision:
            log.info("policy reloaded%s: revision %s unchanged", " (SIGHUP)" if forced else "", old.revision)
        else:
            log.info(
                "policy reloaded%s: revision %s -> %s, %d rules from %s",
                " (SIGHUP)" if forced else "", old.revision, result.revision,
                len(result.rules), self.directory,
            )  # fmt: skip
        return True


def load_tested_policy(directory: str | Path) -> Policy:
    """Read, parse and validate a policy directory and run its inline test cases; PolicyError
    lists every problem and every failing case."""
    result = _parse(read_sources(directory))
    if isinstance(result, PolicyError):
        raise result
    return result


def _parse(sources: PolicySources) -> Policy | PolicyError:
    """What a reload would swap in: a policy that loads and passes its own test cases."""
    try:
        return require_passing_cases(parse_sources(sources))
    except PolicyError as exc:
        return exc


def install_reload_signal(current: CurrentPolicy) -> None:
    """SIGHUP reloads the policy now (the watcher must be running to act on it)."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, current.request_reload)

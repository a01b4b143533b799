"""The policy a running process decides with. Replaced whole, never edited in place, so a request
sees either the old policy or the new one."""

from __future__ import annotations

from pathlib import Path

from gateway.policy.language import Policy
from gateway.policy.loading import load_policy


class CurrentPolicy:
    def __init__(self, directory: str | Path, policy: Policy | None = None) -> None:
        self.directory = Path(directory)
        self.policy = policy if policy is not None else load_policy(self.directory)

"""Loading a policy directory: every `*.yaml` file in it (not subdirectories), in name order, rules
concatenated; the revision is a hash of the contents so every decision can name what produced it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gateway.policy.language import (
    FileParser,
    Policy,
    PolicyError,
    PolicyFile,
    Problem,
    find_unreachable,
)


def policy_files(directory: str | Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob("*.yaml") if p.is_file())


def load_policy(directory: str | Path) -> Policy:
    """Parse and validate every file; raise PolicyError listing every problem, or return the Policy."""
    base = Path(directory)
    if not base.is_dir():
        raise PolicyError([Problem(str(base), 0, "policy directory does not exist")])
    paths = policy_files(base)
    if not paths:
        raise PolicyError([Problem(str(base), 0, "no *.yaml policy files in this directory")])
    digest = hashlib.sha256()
    files: list[PolicyFile] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), 0, f"cannot read: {exc}"))
            continue
        digest.update(path.name.encode() + b"\0" + text.encode() + b"\0")
        parser = FileParser(str(path), text)
        parsed = parser.parse()
        problems.extend(parser.problems)
        if parsed is not None:
            files.append(parsed)
    rules = tuple(rule for f in files for rule in f.rules)
    seen: dict[str, str] = {}
    for rule in rules:
        where = f"{rule.file}:{rule.line}"
        if rule.name in seen:
            problems.append(
                Problem(
                    rule.file,
                    rule.line,
                    f"rule {rule.name!r} is already defined at {seen[rule.name]}",
                )
            )
        seen.setdefault(rule.name, where)
    errors = [p for p in problems if not p.warning]
    warnings = problems + find_unreachable(rules)
    if errors:
        raise PolicyError(warnings)
    return Policy(rules, digest.hexdigest()[:12], tuple(files), tuple(p for p in warnings if p.warning))

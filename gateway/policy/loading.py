"""Loading a policy directory: every `*.yaml` file in it (not subdirectories), in name order, rules
concatenated; the revision is a hash of the contents so every decision can name what produced it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from gateway.policy.language import (
    FileParser,
    Policy,
    PolicyError,
    PolicyFile,
    Problem,
    find_unreachable,
)


@dataclass(frozen=True, slots=True)
class PolicySources:
    """The bytes of a policy directory as read at one moment, and the revision they hash to.
    Reading and parsing are separate so a watcher can hash cheaply and parse exactly what it hashed."""

    directory: Path
    texts: tuple[tuple[Path, str], ...]
    problems: tuple[Problem, ...]  # a missing directory, no files, unreadable files
    revision: str


def policy_files(directory: str | Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob("*.yaml") if p.is_file())


def read_sources(directory: str | Path) -> PolicySources:
    """The files of a policy directory, or one named policy file on its own."""
    base = Path(directory)
    digest = hashlib.sha256()
    if base.is_file():
        paths = [base]
    elif base.is_dir():
        paths = policy_files(base)
    else:
        problem = Problem(str(base), 0, "policy directory does not exist")
        return PolicySources(base, (), (problem,), digest.hexdigest()[:12])
    texts: list[tuple[Path, str]] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), 0, f"cannot read: {exc}"))
            digest.update(path.name.encode() + b"\0\0unreadable\0")
            continue
        digest.update(path.name.encode() + b"\0" + text.encode() + b"\0")
        texts.append((path, text))
    if not texts and not problems:
        others = sorted(p.name for p in base.glob("*.yml") if p.is_file())
        hint = f" ({len(others)} *.yml file(s): rename them to .yaml)" if others else ""
        problems.append(Problem(str(base), 0, f"no *.yaml policy files in this directory{hint}"))
    return PolicySources(base, tuple(texts), tuple(problems), digest.hexdigest()[:12])


def parse_sources(sources: PolicySources) -> Policy:
    """Parse and validate every file; raise PolicyError listing every problem, or return the Policy."""
    if sources.problems and not sources.texts:
        raise PolicyError(list(sources.problems))
    files: list[PolicyFile] = []
    problems: list[Problem] = list(sources.problems)
    for path, text in sources.texts:
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
    return Policy(rules, sources.revision, tuple(files), tuple(p for p in warnings if p.warning))


def load_policy(directory: str | Path) -> Policy:
    """Read, parse and validate a policy directory; raise PolicyError listing every problem."""
    return parse_sources(read_sources(directory))

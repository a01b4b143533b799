"""`make mutate`: mutation testing of the security core with cosmic-ray, module by module.

For each group below, cosmic-ray makes one-line mutants of its source files and runs only the
tests that cover them; a mutant the tests do not notice ("survived") is a change to security code
that nothing would catch. Bounded, because the machine is shared and a full run takes hours: a
seeded random sample of each group's mutants (same seed, same mutants), a wall-clock budget per
group after which the rest count as "not run", and a per-mutant timeout of three times the
group's clean test run (a mutant that hangs the tests counts as "timeout", also a catch).

Runs in a temporary copy of the tree (tracked and new files), so an interrupted run never leaves a
mutated file behind. Prints killed / survived / timeout per group, and writes each survivor's diff
to .mutate/GROUP.txt.

    python scripts/mutate.py [GROUP ...] [--sample 20] [--budget 300] [--seed 16]
    make mutate [MUTATE_ARGS="tokens admin_auth --sample 40"]
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / ".mutate"


@dataclass(frozen=True)
class Group:
    sources: tuple[str, ...]
    tests: tuple[str, ...]


# What is mutated, and the tests that cover it (the ones a change there should fail).
GROUPS = {
    "tokens": Group(("gateway/tokens.py",), ("tests/test_tokens.py", "tests/http/test_hostile_tokens.py")),
    "identify": Group(
        ("gateway/identify.py",),
        ("tests/test_identify.py", "tests/http/test_public.py", "tests/http/test_hostile_tokens.py"),
    ),
    "policy": Group(
        ("gateway/policy/evaluation.py", "gateway/policy/facts.py", "gateway/policy/language.py"),
        ("tests/policy",),
    ),
    "models": Group(
        ("gateway/models.py",),
        ("tests/test_models.py", "tests/policy/test_evaluation.py", "tests/policy/test_default_policy.py"),
    ),
    "admin_auth": Group(("gateway/http/admin.py",), ("tests/http/test_assets_api.py",)),
    "state_writes": Group(
        ("gateway/state/redis.py", "gateway/state/memory.py"),
        (
            "tests/state/test_versioned_writes.py",
            "tests/state/test_stores.py",
            "tests/state/test_redis_reads.py",
            "tests/http/test_state_http.py",
        ),
    ),
    "invalidation": Group(
        ("gateway/state/invalidation.py", "gateway/state/redis_pubsub.py", "gateway/state/cache.py"),
        (
            "tests/state/test_invalidation.py",
            "tests/state/test_invalidation_silence.py",
            "tests/state/test_cache.py",
            "tests/http/test_state_http.py",
        ),
    ),
    "responses": Group(
        ("gateway/responses.py",),
        ("tests/test_responses.py", "tests/http/test_public.py", "tests/http/test_auth_request.py"),
    ),
}


@dataclass
class Tally:
    group: str
    mutants: int = 0
    sampled: int = 0
    killed: int = 0
    survived: int = 0
    timeout: int = 0
    annotations: int = 0  # mutants inside type annotations: never evaluated here, so not tried
    incompetent: int = 0  # the mutant could not even be imported or run: counts as caught
    not_run: int = 0  # sampled, but the budget ran out first
    note: str = ""


def copy_tree(destination: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the type annotations are. With `from __future__ import annotations` (every module
    here) they are strings nobody evaluates, so a mutant inside one is equivalent by construction."""
    spans = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        annotations: list[ast.expr | None] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(node.returns)
        elif isinstance(node, ast.arg | ast.AnnAssign):
            annotations.append(node.annotation)
        for annotation in filter(None, annotations):
            assert annotation.end_lineno is not None and annotation.end_col_offset is not None
            spans.append(
                (
                    (annotation.lineno, annotation.col_offset),
                    (annotation.end_lineno, annotation.end_col_offset),
                )
            )
    return spans


def in_annotation(spans: list[tuple[tuple[int, int], tuple[int, int]]], start: tuple[int, int]) -> bool:
    return any(first <= start < last for first, last in spans)


def test_command(group: Group) -> str:
    return shlex.join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *group.tests])


def write_config(tree: Path, name: str, group: Group, timeout: float) -> Path:
    config = tree / f"mutate-{name}.toml"
    sources = ", ".join(f'"{source}"' for source in group.sources)
    command = test_command(group).replace("\\", "\\\\").replace('"', '\\"')
    config.write_text(
        f"[cosmic-ray]\nmodule-path = [{sources}]\ntimeout = {timeout:.0f}\nexcluded-modules = []\n"
        f'test-command = "{command}"\n\n[cosmic-ray.distributor]\nname = "local"\n'
    )
    return config


def run_group(tree: Path, name: str, group: Group, args: argparse.Namespace) -> Tally:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    tally = Tally(name)
    started = time.monotonic()
    clean = subprocess.run(shlex.split(test_command(group)), cwd=tree, capture_output=True, text=True)
    if clean.returncode != 0:
        tally.note = "tests fail without any mutation: fix them first"
        print(clean.stdout[-3000:], file=sys.stderr)
        return tally
    timeout = max(30.0, 3 * (time.monotonic() - started))
    config = write_config(tree, name, group, timeout)
    session = tree / f"mutate-{name}.sqlite"
    cosmic_ray = str(Path(sys.executable).with_name("cosmic-ray"))
    subprocess.run([cosmic_ray, "init", str(config), str(session)], cwd=tree, check=True, capture_output=True)

    spans = {source: annotation_spans(tree / source) for source in group.sources}
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = list(db.work_items)
        tally.mutants = len(items)
        # Job ids are random; ordered by what each mutant does, the same seed picks the same
        # mutants again (as long as the source is unchanged).
        tryable = sorted(
            (
                [
                    (str(m.module_path), tuple(m.start_pos), m.operator_name, m.occurrence)
                    for m in item.mutations
                ],
                item.job_id,
            )
            for item in items
            if not all(in_annotation(spans[str(m.module_path)], tuple(m.start_pos)) for m in item.mutations)
        )
        jobs = [job for _, job in tryable]
        tally.annotations = tally.mutants - len(jobs)
        chosen = set(random.Random(f"{args.seed}:{name}").sample(jobs, min(args.sample, len(jobs))))
        skipped = [item.job_id for item in items if item.job_id not in chosen]
        if skipped:
            db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    tally.sampled = len(chosen)

    # Its own process group, so the budget can stop it together with the pytest it is running.
    process = subprocess.Popen(
        [cosmic_ray, "exec", str(config), str(session)], cwd=tree, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        process.wait(timeout=max(1.0, args.budget - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        tally.note = f"budget of {args.budget:.0f} s reached"
    finally:
        for source in group.sources:  # a killed run may have left a mutant in place
            shutil.copy2(ROOT / source, tree / source)

    survivors = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.worker_outcome != WorkerOutcome.NORMAL:
                tally.incompetent += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                tally.survived += 1
                survivors.append((item, result))
            elif result.output == "timeout":
                tally.timeout += 1
            elif result.test_outcome == TestOutcome.INCOMPETENT:
                tally.incompetent += 1
            else:
                tally.killed += 1
    tally.not_run = tally.sampled - tally.killed - tally.survived - tally.timeout - tally.incompetent
    REPORTS.mkdir(exist_ok=True)
    with (REPORTS / f"{name}.txt").open("w", encoding="utf-8") as report:
        report.write(f"{name}: {len(survivors)} surviving mutants; tests: {test_command(group)}\n\n")
        for item, result in survivors:
            for mutation in item.mutations:
                report.write(f"{mutation.module_path}:{mutation.start_pos[0]} {mutation.operator_name}\n")
            report.write((result.diff or "") + "\n")
    return tally


def table(tallies: list[Tally]) -> str:
    header = ("group", "mutants", "in annotations", "sampled", "killed", "survived", "timeout", "incompetent",
              "not run")  # fmt: skip
    rows = [header] + [
        (
            t.group,
            t.mutants,
            t.annotations,
            t.sampled,
            t.killed,
            t.survived,
            t.timeout,
            t.incompetent,
            t.not_run,
        )
        for t in tallies
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(cell).rjust(w) if i else str(cell).ljust(w) for i, (cell, w) in
                       enumerate(zip(row, widths, strict=True))) for row in rows]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    notes = [f"{t.group}: {t.note}" for t in tallies if t.note]
    return "\n".join(lines + notes)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "groups", nargs="*", metavar="GROUP", help=f"any of {', '.join(GROUPS)} (default: all)"
    )
    parser.add_argument("--sample", type=int, default=20, help="mutants tried per group (default 20)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds per group (default 300)")
    parser.add_argument("--seed", default="16", help="picks the sample; the same seed tries the same mutants")
    args = parser.parse_args()
    unknown = [name for name in args.groups if name not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    try:
        import cosmic_ray  # noqa: F401
    except ImportError:
        print(
            "mutate: cosmic-ray is not installed; `make mutate` installs the `mutate` extra", file=sys.stderr
        )
        return 2
    tallies = []
    with tempfile.TemporaryDirectory(prefix="gateway-mutate-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        where = subprocess.run(
            [sys.executable, "-c", "import gateway; print(gateway.__file__)"], cwd=tree,
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not Path(where).is_relative_to(tree):
            print(f"mutate: the copy imports gateway from {where}, not from itself", file=sys.stderr)
            return 2
        for name in args.groups or list(GROUPS):
            print(f"mutate: {name} ...", flush=True)
            tallies.append(run_group(tree, name, GROUPS[name], args))
            print(table(tallies[-1:]).splitlines()[2], flush=True)
    print()
    print(table(tallies))
    print(f"survivors' diffs: {REPORTS.relative_to(ROOT)}/GROUP.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

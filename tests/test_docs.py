"""The documents say what a reader will see: the environment variable table in docs/deploying.md
lists exactly the settings schema's keys, the README's configuration-error example is what the
command prints, and the documents point only at files that are in the repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "THREAT_MODEL.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "nginx" / "README.md",
]


def test_the_deploying_table_lists_every_setting_and_nothing_else() -> None:
    text = (ROOT / "docs" / "deploying.md").read_text()
    documented = set(re.findall(r"^\| `(GATEWAY_[A-Z0-9_]+)`", text, re.MULTILINE))
    expected = {
        f"GATEWAY_{section.upper()}_{key.upper()}" for section, keys in SCHEMA.items() for key in keys
    }
    assert sorted(expected - documented) == [], "settings missing from docs/deploying.md"
    assert sorted(documented - expected) == [], "documented variables that are not settings"


def test_the_readme_config_error_example_is_what_is_printed() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "config"],
        env={**environ, "GATEWAY_SERVER_PORT": "eighty"},
        capture_output=True, text=True, cwd=ROOT, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    (printed,) = done.stderr.splitlines()
    assert f"`{printed}`" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_cite_only_what_the_repository_holds(document: Path) -> None:
    text = document.read_text()
    assert not re.search(r"DESIGN(?:\.md| \d)", text), "cites a design document that is not in the repository"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (document.parent / target).exists(), f"{document.name} links to missing {target}"

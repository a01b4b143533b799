"""`asset-gateway policy check`, `policy test` and `explain` through the real entry point
(`python -m gateway` in a subprocess), on the shipped policies and on broken ones."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.records import record_from_dict
from gateway.settings import Secret, TokenKey
from gateway.state.factory import open_store
from gateway.tokens import mint_token
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
INTERNAL = POLICIES / "examples" / "internal"
USER_SECRET = "user-signing-secret-0123456789abcdef"
PREVIEW_SECRET = "preview-signing-secret-0123456789ab"
KEYS = (
    '[{"use": "user", "alg": "HS256", "secret": "env:TEST_USER_SECRET"},'
    ' {"use": "preview", "alg": "HS256", "secret": "env:TEST_PREVIEW_SECRET"}]'
)
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+\.yaml):(?P<line>\d+): (?P<message>.+)$")


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def gateway(*args: str, **env: str) -> Run:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    environ.update(
        GATEWAY_HOSTS_LIVE="assets.test",
        GATEWAY_HOSTS_DRAFT="draft-assets.test",
        GATEWAY_POLICIES_DIR=str(POLICIES),
        GATEWAY_STATE_URL="memory://",
        GATEWAY_TOKENS_KEYS=KEYS,
        TEST_USER_SECRET=USER_SECRET,
        TEST_PREVIEW_SECRET=PREVIEW_SECRET,
    )
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True, text=True, env=environ, cwd=ROOT, timeout=30, check=False,
    )  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr)


def problems(stderr: str) -> list[tuple[str, int, str]]:
    """(file name, line, message) of every `file:line: message` line."""
    found = []
    for line in stderr.splitlines():
        match = PROBLEM_LINE.match(line)
        if match:
            found.append((Path(match["file"]).name, int(match["line"]), match["message"]))
    return found


def user_token(sub: str = "u7", **claims: object) -> str:
    key = TokenKey(use="user", alg="HS256", secret=Secret(USER_SECRET))
    return mint_token(key, {"sub": sub, "exp": int(time.time()) + 600, **claims})


def preview_token(sub: str) -> str:
    key = TokenKey(use="preview", alg="HS256", secret=Secret(PREVIEW_SECRET))
    return mint_token(key, {"sub": sub, "exp": int(time.time()) + 600})


BROKEN = """\
rules:
  - name: typo_in_condition
    when: {hots: live}
    then: serve
  - name: bad_status
    then: {deny: 500}
  - name: Not-Snake
    then: serve
  - name: everything
    then: {deny: 404}
  - name: shadowed
    then: serve
"""


# ---- policy check


def test_check_accepts_the_shipped_policy() -> None:
    run = gateway("policy", "check", "policies")
    assert run.code == 0, run.output
    assert re.fullmatch(r"policies: 1 file\(s\), \d+ rules, revision [0-9a-f]{12}: ok\n", run.stdout)
    assert run.stderr == ""


def test_check_accepts_the_internal_example() -> None:
    run = gateway("policy", "check", str(INTERNAL))
    assert run.code == 0, run.output
    assert "2 file(s)" in run.stdout


def test_check_uses_the_configured_directory_by_default() -> None:
    run = gateway("policy", "check", GATEWAY_POLICIES_DIR=str(INTERNAL))
    assert run.code == 0, run.output
    assert run.stdout.startswith(f"{INTERNAL}: 2 file(s)")


def test_check_reports_every_problem_as_file_line_message(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BROKEN)
    (tmp_path / "b.yaml").write_text("rules:\n  - name: x\n    then: [serve\n")
    run = gateway("policy", "check", str(tmp_path))
    assert run.code == 1
    assert run.stdout == ""
    found = problems(run.stderr)
    assert [(name, line) for name, line, _ in found] == [
        ("a.yaml", 3), ("a.yaml", 6), ("a.yaml", 7), ("b.yaml", 3), ("a.yaml", 11),
    ]  # fmt: skip
    messages = [message for _, _, message in found]
    assert messages[0].startswith("unknown condition 'hots' (expected one of any, all, not, host,")
    assert messages[1] == "deny: expected a status in (403, 404, 410), got 500"
    assert messages[2] == "rule name 'Not-Snake' must be snake_case: [a-z][a-z0-9_]*"
    assert messages[3].startswith("not valid YAML")
    assert messages[4].startswith("warning: rule 'shadowed' can never match: 'everything'")
    lines = run.stderr.splitlines()
    assert len(lines) == len(found) + 1  # every line but the summary is file:line: message
    assert lines[-1] == f"4 error(s) in {tmp_path}"


def test_check_prints_warnings_but_passes(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("rules:\n  - name: a\n    then: serve\n  - name: b\n    then: serve\n")
    run = gateway("policy", "check", str(tmp_path))
    assert run.code == 0
    warning = f"warning: rule 'b' can never match: 'a' ({tmp_path}/p.yaml:2) above matches every request"
    assert problems(run.stderr) == [("p.yaml", 4, warning)]
    assert run.stdout.endswith(": ok\n")


def test_check_rejects_a_test_case_naming_a_rule_that_does_not_exist(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "rules:\n  - name: a\n    then: serve\n"
        "tests:\n  - name: t\n    request: {path: /media/a/b.pdf}\n    expect: {rule: nope}\n"
    )
    run = gateway("policy", "check", str(tmp_path))
    assert run.code == 1
    assert problems(run.stderr) == [
        ("p.yaml", 7, "expect.rule: no rule named 'nope' in this policy (nor default_deny)")
    ]


def test_check_fails_on_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    run = gateway("policy", "check", str(tmp_path / "nope"))
    assert run.code == 1
    assert "policy directory does not exist" in run.stderr


# ---- policy test


def test_the_shipped_cases_pass() -> None:
    run = gateway("policy", "test", "policies")
    assert run.code == 0, run.output
    match = re.search(r"^(\d+) passed, 0 failed$", run.stdout, re.MULTILINE)
    assert match and int(match[1]) >= 30
    assert "FAIL" not in run.stdout


def test_the_internal_example_cases_pass() -> None:
    run = gateway("policy", "test", str(INTERNAL))
    assert run.code == 0, run.output
    assert re.search(r"^\d+ passed, 0 failed$", run.stdout, re.MULTILINE)


def test_a_failing_case_shows_expected_got_and_the_rule_trace(tmp_path: Path) -> None:
    text = (POLICIES / "default.yaml").read_text()
    wrong = text.replace(
        "    record: {id: a1, filename: report.pdf, deleted: true}\n    expect: {status: 410, rule: deleted}",
        "    record: {id: a1, filename: report.pdf, deleted: true}\n    expect: {status: 404, rule: deleted}",
        1,
    )
    assert wrong != text
    (tmp_path / "default.yaml").write_text(wrong)
    line = wrong.splitlines().index("  - name: deleted_is_410") + 1
    run = gateway("policy", "test", str(tmp_path))
    assert run.code == 1
    report = run.stdout[run.stdout.index("FAIL") :]
    lines = report.splitlines()
    assert lines[0] == f"FAIL deleted_is_410 ({tmp_path}/default.yaml:{line})"
    assert lines[1] == "   !! status: expected 404, got 410"
    assert lines[2] == "      rule: expected 'deleted', got 'deleted'"
    assert lines[3].strip() == "rule trace:"
    trace = [entry.split()[0:2] for entry in lines[4:] if entry.startswith("       ")]
    assert trace[-1] == ["MATCH", "deleted"]
    assert all(step == "skip" for step, _ in trace[:-1]) and len(trace) >= 4
    assert "✗ record: wanted missing, is present" in report
    assert re.search(r"^\d+ passed, 1 failed$", run.stdout, re.MULTILINE)


def test_a_case_naming_a_rule_that_does_not_exist_counts_as_failed(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "rules:\n  - name: a\n    then: serve\n"
        "tests:\n  - name: t\n    request: {path: /media/a/b.pdf}\n    expect: {rule: nope}\n"
        "  - name: u\n    request: {path: /media/a/b.pdf}\n    expect: {status: 404}\n"
    )
    run = gateway("policy", "test", str(tmp_path))
    assert run.code == 1
    assert ("p.yaml", 7, "expect.rule: no rule named 'nope' in this policy (nor default_deny)") in problems(
        run.stderr
    )
    assert run.stdout.splitlines()[-1] == "1 passed, 1 failed"


def test_a_broken_policy_fails_the_tests_with_file_line(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BROKEN)
    run = gateway("policy", "test", str(tmp_path))
    assert run.code == 1
    assert ("a.yaml", 6, "deny: expected a status in (403, 404, 410), got 500") in problems(run.stderr)


# ---- explain


def test_explain_against_an_empty_memory_store_masks_tokens() -> None:
    token = user_token()
    preview = preview_token("bypass-1")
    run = gateway(
        "explain", f"https://draft-assets.test/media/abc/report.pdf?a=1&token={preview}", "--token", token
    )
    assert run.code == 0, run.output
    out = run.stdout
    assert "record:      none" in out
    assert "store:       memory://" in out
    assert re.search(r"^  MATCH preview_link_sets_cookie +.*default\.yaml:\d+$", out, re.MULTILINE)
    assert "decision:    preview_cookie → 302 (rule preview_link_sets_cookie)" in out
    assert "identity:    user sub=u7" in out and "preview sub=bypass-1" in out
    assert f"<token: {len(token)} chars, sha256 " in out
    assert f"token=<token: {len(preview)} chars" in out
    for secret in (token, preview, token[-20:], preview[-20:], USER_SECRET, PREVIEW_SECRET):
        assert secret not in run.output


def test_explain_says_why_a_token_was_refused() -> None:
    token = user_token(iss="https://evil.test")
    run = gateway(
        "explain", "https://assets.test/media/abc/report.pdf", "--token", token,
        GATEWAY_TOKENS_ISSUER="https://idp.test",
    )  # fmt: skip
    assert run.code == 0, run.output
    assert "identity:    anonymous (no valid token)" in run.stdout
    assert re.search(
        r"^refused:     <token: \d+ chars, sha256 [0-9a-f]+…>: user token: wrong_issuer; "
        r"preview token: bad_signature$",
        run.stdout,
        re.MULTILINE,
    ), run.stdout
    assert token not in run.output


def test_explain_follows_the_host_option() -> None:
    run = gateway("explain", "http://127.0.0.1:8080/media/abc/report.pdf", "--host", "assets.test")
    assert run.code == 0, run.output
    assert "host:        assets.test (live)" in run.stdout
    assert "decision:    deny → 404 (rule missing_record)" in run.stdout


def test_explain_a_url_that_is_not_an_asset() -> None:
    run = gateway("explain", "https://assets.test/robots.txt")
    assert run.code == 0
    assert "not an asset URL" in run.stdout


def test_explain_against_redis_reads_the_record(redis_url: str) -> None:
    async def store_records() -> None:
        store = open_store(redis_url)
        for record in (
            {"id": "lim1", "version": 1, "object_key": "k1", "filename": "report.pdf",
             "access_limited": {"groups": ["finance"]}},
            {"id": "old1", "version": 1, "object_key": "k2", "filename": "a.pdf", "replacement_id": "lim1"},
        ):  # fmt: skip
            assert (await store.put(record_from_dict(record))).applied
        await store.close()

    asyncio.run(store_records())
    token = user_token("u7", groups=["finance"])
    allowed = gateway(
        "explain", "https://assets.test/media/lim1/report.pdf", "--token", token, GATEWAY_STATE_URL=redis_url
    )
    assert allowed.code == 0, allowed.output
    assert "record:      lim1 v1 'report.pdf' state=uploaded (access limited)" in allowed.stdout
    assert re.search(r"skip  access_limited_not_admitted .*\n +.*✗ user_admitted: wanted false, is true",
                     allowed.stdout)  # fmt: skip
    assert "decision:    serve → 302 (rule serve; private, inline, presign s3.presign_ttl)" in allowed.stdout
    assert token not in allowed.output and USER_SECRET not in allowed.output

    anonymous = gateway("explain", "https://assets.test/media/lim1/report.pdf", GATEWAY_STATE_URL=redis_url)
    assert "decision:    deny → 404 (rule access_limited_not_admitted)" in anonymous.stdout

    replaced = gateway("explain", "https://assets.test/media/old1/a.pdf", GATEWAY_STATE_URL=redis_url)
    assert "replacement: live → lim1 'report.pdf'" in replaced.stdout
    # The replacement is access-limited: never named on the live host (DESIGN 2.6 step 3).
    assert "✗ final_replacement(✗ access_limited: wanted false, is true)" in replaced.stdout
    assert "decision:    serve → 302 (rule serve; public, inline, presign s3.presign_ttl)" in replaced.stdout


def test_explain_a_legacy_url(redis_url: str) -> None:
    async def store_records() -> None:
        store = open_store(redis_url)
        for record in (
            {"id": "wh1", "version": 1, "object_key": "k1", "filename": "budget.pdf",
             "legacy_url_path": "/government/uploads/file/1/spring budget.pdf", "state": "clean"},
            {"id": "wh2", "version": 1, "object_key": "k2", "filename": "b.pdf",
             "legacy_url_path": "/government/uploads/file/2/b.pdf"},
        ):  # fmt: skip
            assert (await store.put(record_from_dict(record))).applied
        await store.close()

    asyncio.run(store_records())
    pending = gateway(
        "explain",
        "https://assets.test/government/uploads/file/1/spring%20budget.pdf",
        GATEWAY_STATE_URL=redis_url,
    )
    assert pending.code == 0, pending.output
    assert "legacy path: /government/uploads/file/1/spring%20budget.pdf (route legacy" in pending.stdout
    assert "record:      wh1 v1 'budget.pdf' state=clean" in pending.stdout
    assert "decision:    redirect_to_placeholder → 302 (rule legacy_not_yet_cleared)" in pending.stdout
    served = gateway(
        "explain", "https://assets.test/government/uploads/file/2/b.pdf", GATEWAY_STATE_URL=redis_url
    )
    assert "record:      wh2 v1 'b.pdf' state=uploaded" in served.stdout
    assert "decision:    serve → 302 (rule serve; public" in served.stdout
    missing = gateway(
        "explain", "https://assets.test/government/uploads/file/3/README", GATEWAY_STATE_URL=redis_url
    )
    assert "not an asset URL" in missing.stdout


def test_explain_with_the_store_down_exits_1_and_masks_its_password() -> None:
    url = f"redis://:hunter2-password@127.0.0.1:{free_port()}/0"
    run = gateway("explain", "https://assets.test/media/a1/x.pdf", GATEWAY_STATE_URL=url)
    assert run.code == 1
    assert "the state store is unreachable" in run.stdout
    assert "redis://:**********@127.0.0.1" in run.stdout
    assert "hunter2" not in run.output


def test_explain_with_a_broken_policy_exits_1_with_file_line(tmp_path: Path) -> None:
    shutil.copy(POLICIES / "default.yaml", tmp_path / "default.yaml")
    (tmp_path / "zz.yaml").write_text(BROKEN)
    run = gateway("explain", "https://assets.test/media/a1/x.pdf", GATEWAY_POLICIES_DIR=str(tmp_path))
    assert run.code == 1
    assert ("zz.yaml", 3) in [(name, line) for name, line, _ in problems(run.stderr)]
    assert "does not load" in run.stderr


@pytest.mark.parametrize("directory", [POLICIES, *sorted(p for p in (POLICIES / "examples").iterdir())])
def test_make_lint_checks_every_policy_directory(directory: Path) -> None:
    """The Makefile loops over policies/ and policies/examples/*/; keep every one of them clean."""
    makefile = (ROOT / "Makefile").read_text()
    assert "policy check policies\n" in makefile and "policies/examples/*/" in makefile
    assert gateway("policy", "check", str(directory)).code == 0

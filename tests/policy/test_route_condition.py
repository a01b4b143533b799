"""`route`: a policy can treat legacy URLs differently from /media URLs of the same record, and
its own test cases can say so."""

from __future__ import annotations

from pathlib import Path

from gateway.policy.cases import parse_cases, run_cases
from gateway.policy.loading import load_policy

POLICY = """\
rules:
  - name: no_legacy_on_draft_host
    when: {route: legacy, host: draft}
    then: {deny: 403}
  - name: legacy_placeholder_for_everything
    when: {route: legacy, record: present}
    then: redirect_to_placeholder
  - name: media_serves
    when: {route: media, record: present}
    then: serve
tests:
  - name: legacy_on_draft_host_is_refused
    request: {host: draft, path: /government/uploads/a/b.pdf}
    expect: {status: 403, rule: no_legacy_on_draft_host}
  - name: legacy_gets_the_placeholder
    request: {host: live, path: /government/uploads/a/b.jpeg}
    record: {id: a1, legacy_url_path: /government/uploads/a/b.jpeg}
    expect: {status: 302, location: /asset-manager/thumbnail-placeholder-image.png}
  - name: media_url_of_the_same_record_is_served
    request: {host: live, path: /media/a1/file.pdf}
    record: {id: a1, legacy_url_path: /government/uploads/a/b.jpeg}
    expect: {status: 302, rule: media_serves, action: serve}
  - name: deliberately_wrong_expectation
    request: {host: live, path: /media/a1/file.pdf}
    record: {id: a1}
    expect: {rule: legacy_placeholder_for_everything}
"""


def test_route_tells_legacy_and_media_urls_apart(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    policy = load_policy(str(tmp_path))
    cases, problems = parse_cases(policy)
    assert problems == []
    results = {r.case.name: r for r in run_cases(policy, cases)}
    assert [name for name, r in results.items() if not r.passed] == ["deliberately_wrong_expectation"]
    assert results["deliberately_wrong_expectation"].got["rule"] == "media_serves"


def test_a_legacy_case_path_without_an_extension_is_reported(tmp_path: Path) -> None:
    text = POLICY.replace("/government/uploads/a/b.pdf}", "/government/uploads/a/README}")
    (tmp_path / "policy.yaml").write_text(text)
    _, problems = parse_cases(load_policy(str(tmp_path)))
    assert [p.message for p in problems] == ["request.path: expected a legacy path with a file extension"]

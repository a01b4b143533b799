"""scripts/ensure-packages.sh installs what is missing without starting (or stopping) any service.

apt-get, id and service are stand-ins on PATH that record how they were called: the script's job is
what it hands them, and the real ones would change this machine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ensure-packages.sh"


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(0o755)


def _run(tmp_path: Path, policy_rc_d: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    _stub(bin_dir, "id", "echo 0")
    # During the install, record what policy-rc.d answers for starting a service.
    _stub(
        bin_dir,
        "apt-get",
        f'echo "apt-get $*" >> {log}\n'
        f'if [ "$1" = install ]; then {policy_rc_d} redis-server start; echo "policy $?" >> {log}; fi',
    )
    _stub(bin_dir, "service", f'echo "service $*" >> {log}')
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "POLICY_RC_D": str(policy_rc_d)}
    result = subprocess.run(
        ["bash", str(SCRIPT), "make test", "no-such-command-for-this-test:some-package"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result, log.read_text(encoding="utf-8") if log.exists() else ""


def test_install_forbids_service_starts_and_stops_nothing(tmp_path: Path) -> None:
    policy_rc_d = tmp_path / "policy-rc.d"
    result, calls = _run(tmp_path, policy_rc_d)
    assert result.returncode == 0, result.stderr
    assert "apt-get install -y -qq --no-install-recommends some-package" in calls
    assert "policy 101" in calls  # no service may start while the package installs
    assert "service" not in calls  # and none is stopped afterwards
    assert not policy_rc_d.exists()  # the temporary policy is gone again


def test_an_existing_policy_rc_d_is_left_alone(tmp_path: Path) -> None:
    policy_rc_d = tmp_path / "policy-rc.d"
    policy_rc_d.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    policy_rc_d.chmod(0o755)
    result, calls = _run(tmp_path, policy_rc_d)
    assert result.returncode == 0, result.stderr
    assert "policy 0" in calls
    assert policy_rc_d.read_text(encoding="utf-8") == "#!/bin/sh\nexit 0\n"
    assert "service" not in calls


def test_nothing_missing_means_no_apt_get(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "apt-get", f"echo called > {tmp_path / 'called'}")
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    result = subprocess.run(
        ["bash", str(SCRIPT), "make test", "sh:dash"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert not (tmp_path / "called").exists()

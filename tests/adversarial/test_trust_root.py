"""Item #13.4: the trust root is the operator's working directory, never what ships with the bundle.

Attack: whoever ships ``release/{bundle, mlspec.yaml, policies, keys}`` signs a chain
with their own keys and a policy that trusts them. Before, every command that needed
a policy looked for mlspec.yaml beside the bundle too, so the shipped rules judged the
shipped chain (exit 0). Now a project is found from the working directory only (as
git finds a repository) and each command names on stderr the policy and keys it used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Project, build_lifecycle

from mlspec_attest.project import init_project
from mlspec_attest.verify import verify_bundle


def mlspec(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLSPEC_KEY_PASSPHRASE"}
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, env=env)


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """An attacker's release: their own project (keys, lax policy, mlspec.yaml) around a chain they signed."""
    release = tmp_path / "release"
    init_project(release, encrypt=False, project="my-model")  # the project build_lifecycle's objectives name
    build_lifecycle(Project(root=release, bundle=release / "bundle"))
    # The shipped rules do accept the shipped chain: the attack works whenever they are used.
    assert verify_bundle(release / "bundle", release / "policies" / "default.yaml").passed
    return release


def _place_project_file(release: Path, where: str) -> Path:
    """Put the shipped mlspec.yaml beside, inside or above the bundle; return the bundle path."""
    if where == "beside the bundle":
        return release / "bundle"
    if where == "inside the bundle":
        (release / "bundle" / "mlspec.yaml").write_text(
            "version: 1\npolicy: ../policies/default.yaml\n", encoding="utf-8")
        return release / "bundle"
    nested = release / "deep" / "er"
    nested.mkdir(parents=True)
    shutil.move(str(release / "bundle"), nested / "bundle")
    return nested / "bundle"


PLACES = ["beside the bundle", "inside the bundle", "two levels above the bundle"]


@pytest.mark.parametrize("where", PLACES)
def test_shipped_project_file_is_never_used_by_the_gate(shipped: Path, tmp_path: Path, where: str) -> None:
    bundle = _place_project_file(shipped, where)
    ci = tmp_path / "ci"
    ci.mkdir()
    result = mlspec(ci, "verify", str(bundle))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no mlspec.yaml found from the working directory" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [
    ["report", "{bundle}", "--html", "{out}"],
    ["monitor", "serve", "{bundle}", "--port", "0"],
])
def test_auditor_and_monitor_commands_refuse_the_shipped_policy(shipped: Path, tmp_path: Path,
                                                                command: list[str]) -> None:
    ci = tmp_path / "ci"
    ci.mkdir()
    args = [a.format(bundle=shipped / "bundle", out=ci / "r.html") for a in command]
    result = mlspec(ci, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no mlspec.yaml found from the working directory" in result.stderr
    assert not (ci / "r.html").exists()


def test_replay_without_a_project_checks_no_signature_and_never_passes(shipped: Path, tmp_path: Path) -> None:
    ci = tmp_path / "ci"
    ci.mkdir()
    result = mlspec(ci, "replay", str(shipped / "bundle"), "--format", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert '"verdict": "incomplete"' in result.stdout
    assert str(shipped / "policies") not in result.stdout + result.stderr


@pytest.mark.parametrize("where", PLACES)
def test_inside_the_operators_project_its_own_policy_judges_the_shipped_chain(
        shipped: Path, project: Project, where: str) -> None:
    init_project_file = project.root / "mlspec.yaml"
    init_project_file.write_text("version: 1\npolicy: policies/default.yaml\n", encoding="utf-8")
    bundle = _place_project_file(shipped, where)
    result = mlspec(project.root, "verify", str(bundle), "--format", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert '"SIGNATURE_INVALID"' in result.stdout  # the attacker's keys are not the operator's
    # The gate says which rules and keys it used.
    assert f"policy: {project.root / 'policies' / 'default.yaml'}" in result.stderr
    assert "key pipeline:" in result.stderr and str(project.root / "keys" / "pipeline.pub") in result.stderr
    assert str(shipped) not in result.stderr


def test_explicit_policy_is_named_with_its_keys(shipped: Path, project: Project, tmp_path: Path) -> None:
    build_lifecycle(project)
    result = mlspec(tmp_path, "verify", str(project.bundle), "--policy", str(project.policy()))
    assert "from --policy" in result.stderr and "key owner:" in result.stderr and "keyid" in result.stderr


@pytest.mark.parametrize("field,expected", [
    ("keys: {pipeline: ../bundle/trusted.pub, owner: ../keys/owner.pub}", "TRUST_FILE_IN_BUNDLE"),
    ("keys: {pipeline: ../keys/pipeline.pub, owner: ../bundle/sub/owner.pub}", "TRUST_FILE_IN_BUNDLE"),
])
def test_keys_the_policy_reads_from_inside_the_bundle_are_refused(project: Project, field: str,
                                                                 expected: str) -> None:
    build_lifecycle(project)
    for rel in ("bundle/trusted.pub", "bundle/sub/owner.pub"):
        src = "pipeline" if "trusted" in rel else "owner"
        project.write(rel, (project.root / "keys" / f"{src}.pub").read_bytes())
    text = project.policy().read_text(encoding="utf-8")
    start = text.index("keys:")
    end = text.index("defaults:")
    policy = project.write("policies/inside.yaml", text[:start] + field + "\n\n" + text[end:])
    report = verify_bundle(project.bundle, policy)
    assert not report.passed
    assert expected in {f.code for f in report.findings}


def test_policy_inside_the_bundle_is_refused(project: Project) -> None:
    build_lifecycle(project)
    text = project.policy().read_text(encoding="utf-8").replace("../keys/", "../../keys/")
    policy = project.write("bundle/policies/lax.yaml", text)
    report = verify_bundle(project.bundle, policy)
    assert "POLICY_IN_BUNDLE" in {f.code for f in report.findings} and not report.passed


def test_log_and_bundle_defaults_come_from_the_working_directory_only(shipped: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """log-audit's resolve_log used to fall back to the mlspec.yaml beside the bundle: a shipper could then
    choose which log the gate checks the seals against. Now --log / --bundle defaults follow the policy's rule."""
    from mlspec_attest.cli._project import resolve_bundle, resolve_log

    assert "log: logs/inference" in (shipped / "mlspec.yaml").read_text()  # the shipped project names a log
    elsewhere = tmp_path / "operator"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert resolve_log(None, str(shipped / "bundle")) is None
    assert resolve_bundle(None) is None
    monkeypatch.chdir(shipped / "bundle")  # inside the shipped tree, the cwd rule applies as to any project
    assert resolve_log(None, None) == str(shipped / "logs" / "inference")
    assert resolve_log("mine", str(shipped / "bundle")) == "mine"

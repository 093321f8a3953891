"""Our VSA against slsa-verifier's `verify-vsa` rules (encoded in slsa_verifier_rules.py).

The command line documented in docs/audit.md is read from the doc and run; the
attacks are the ones a deploy system relies on slsa-verifier to refuse: a failing
VSA, another artifact's digest, another resource, a missing level, an edited payload,
another key. Stability: the subject name and resourceUri do not depend on the host
or on the verdict, so one command line works for every run.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, Project, build_lifecycle
from slsa_verifier_rules import VerifyVSACommand, VerifyVSAFailed, ssh_sha256_fingerprint, verify_vsa

from mlspec_attest.cli.main import main
from mlspec_attest.digests import digest_path
from mlspec_attest.keys import PublicKey, generate
from mlspec_attest.verify import verify_bundle
from mlspec_attest.verify.vsa import build_vsa_statement

VERIFIER_ID = "https://mlspec.dev/mlspec-attest"


def documented_argv() -> list[str]:
    """The slsa-verifier command block of docs/audit.md, as argv (without the program name)."""
    text = (REPO / "docs" / "audit.md").read_text()
    block = re.search(r"<!-- slsa-verifier-command:[^>]*-->\s*```\n(.*?)```", text, re.S)
    assert block, "docs/audit.md lost its slsa-verifier command block"
    argv = shlex.split(block.group(1).replace("\\\n", " "))
    assert argv[0] == "slsa-verifier"
    return argv[1:]


@pytest.fixture
def lifecycle(project: Project) -> Project:
    build_lifecycle(project)
    generate("verifier", project.root / "keys", "ed25519", None)
    generate("verifier-ec", project.root / "keys", "ecdsa-p256", None)
    return project


def write_vsa(project: Project, out: Path, *extra: str, key: str = "verifier", artifact: bool = True) -> int:
    args = ["verify", str(project.bundle), "--policy", str(project.policy()), "--vsa", str(out),
            "--vsa-key", str(project.key(key)), *extra]
    if artifact:
        args += ["--artifact", str(project.root / "pkg")]
    return CliRunner().invoke(main, args).exit_code


def command(project: Project, vsa: Path, *, key: str = "verifier", digest: str | None = None,
            **overrides: object) -> VerifyVSACommand:
    """The documented command with its placeholders filled for this project."""
    pub = project.root / "keys" / f"{key}.pub"
    fill = {"model.vsa.json": str(vsa), "keys/verifier.pub": str(pub),
            "VERIFIER_KEYID": PublicKey.from_file(pub).keyid,
            "sha256:PACKAGE_SHA256": f"sha256:{digest or digest_path(project.root / 'pkg').sha256}"}
    cmd = VerifyVSACommand.from_argv([fill.get(a, a) for a in documented_argv()])
    for name, value in overrides.items():
        setattr(cmd, name, value)
    return cmd


def _payload(vsa: Path) -> dict:
    return json.loads(base64.b64decode(json.loads(vsa.read_bytes())["payload"]))


def test_documented_command_accepts_our_vsa(lifecycle: Project, tmp_path: Path) -> None:
    vsa = tmp_path / "model.vsa.json"
    assert write_vsa(lifecycle, vsa) == 0
    statement = json.loads(verify_vsa(command(lifecycle, vsa)))
    assert statement["predicate"]["resourceUri"] == "mlspec:package/demo-model"
    for level in ("MLSPEC_OBJECTIVES_MET", "MLSPEC_ARTIFACT_BOUND"):
        verify_vsa(command(lifecycle, vsa, verified_levels=["MLSPEC_CHAIN_COMPLETE", level]))


def test_ecdsa_p256_vsa_key_is_accepted_too(lifecycle: Project, tmp_path: Path) -> None:
    vsa = tmp_path / "model.vsa.json"
    assert write_vsa(lifecycle, vsa, key="verifier-ec") == 0
    verify_vsa(command(lifecycle, vsa, key="verifier-ec"))  # our DER signature, sigstore's ECDSA verifier


def test_without_public_key_id_slsa_verifier_skips_our_signature(lifecycle: Project, tmp_path: Path) -> None:
    """Why the doc's --public-key-id is required: the default keyid is the SSH fingerprint."""
    vsa = tmp_path / "model.vsa.json"
    assert write_vsa(lifecycle, vsa) == 0
    with pytest.raises(VerifyVSAFailed, match="no valid signature"):
        verify_vsa(command(lifecycle, vsa, public_key_id=""))
    pub = PublicKey.from_file(lifecycle.root / "keys" / "verifier.pub")
    assert ssh_sha256_fingerprint(pub.key).startswith("SHA256:")
    assert json.loads(vsa.read_bytes())["signatures"][0]["keyid"] == pub.keyid != ssh_sha256_fingerprint(pub.key)


def test_failing_vsa_keeps_subject_and_resource_and_is_refused(lifecycle: Project, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.vsa.json", tmp_path / "bad.vsa.json"
    assert write_vsa(lifecycle, good) == 0
    packaged = digest_path(lifecycle.root / "pkg").sha256
    lifecycle.write("pkg/model.bin", "swapped weights")  # the artifact at deploy time is not the packaged one
    assert write_vsa(lifecycle, bad) == 1
    g, b = _payload(good), _payload(bad)
    assert [s["name"] for s in g["subject"]] == [s["name"] for s in b["subject"]] == ["pkg"]
    assert g["predicate"]["resourceUri"] == b["predicate"]["resourceUri"]
    assert b["predicate"]["verificationResult"] == "FAILED" and b["predicate"]["verifiedLevels"] == ["FAILED"]
    with pytest.raises(VerifyVSAFailed, match="missing subject digest"):  # the deploy pins the packaged digest
        verify_vsa(command(lifecycle, bad, digest=packaged))
    swapped = digest_path(lifecycle.root / "pkg").sha256
    with pytest.raises(VerifyVSAFailed, match="verification result is not Passed"):  # even for its own digest
        verify_vsa(command(lifecycle, bad, digest=swapped))


def test_gate_failure_without_artifact_is_refused(project: Project, tmp_path: Path) -> None:
    build_lifecycle(project, accuracy=0.5)  # a blocking objective fails
    generate("verifier", project.root / "keys", "ed25519", None)
    vsa = tmp_path / "model.vsa.json"
    assert write_vsa(project, vsa, artifact=False) == 1
    assert _payload(vsa)["predicate"]["resourceUri"] == "mlspec:package/demo-model"
    with pytest.raises(VerifyVSAFailed, match="verification result is not Passed"):
        verify_vsa(command(project, vsa))


@pytest.mark.parametrize("attack", ["other resource", "other verifier id", "level not reached", "edited payload",
                                    "other key", "another artifact's digest"])
def test_consumer_side_refusals(lifecycle: Project, tmp_path: Path, attack: str) -> None:
    vsa = tmp_path / "model.vsa.json"
    assert write_vsa(lifecycle, vsa, artifact=False) == 0  # no --artifact: no MLSPEC_ARTIFACT_BOUND
    cmd = command(lifecycle, vsa)
    verify_vsa(cmd)
    if attack == "other resource":
        cmd.resource_uri = "mlspec:package/other-model"
    elif attack == "other verifier id":
        cmd.verifier_id = "https://example.com/verifier"
    elif attack == "level not reached":
        cmd.verified_levels = ["MLSPEC_CHAIN_COMPLETE", "MLSPEC_ARTIFACT_BOUND"]
    elif attack == "edited payload":
        doc = json.loads(vsa.read_bytes())
        statement = _payload(vsa)
        statement["predicate"]["verificationResult"] = "PASSED"
        statement["predicate"]["verifiedLevels"].append("MLSPEC_ARTIFACT_BOUND")
        doc["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        vsa.write_text(json.dumps(doc))
        cmd.verified_levels = ["MLSPEC_ARTIFACT_BOUND"]
    elif attack == "other key":
        cmd = command(lifecycle, vsa, key="verifier-ec")
    else:
        cmd = command(lifecycle, vsa, digest="0" * 64)
    with pytest.raises(VerifyVSAFailed):
        verify_vsa(cmd)


def test_resource_uri_does_not_depend_on_the_host(lifecycle: Project, tmp_path: Path) -> None:
    """The same bundle verified from another directory (another host) gives the same resourceUri."""
    moved = tmp_path / "elsewhere" / "proj"
    shutil.copytree(lifecycle.root, moved)
    a, b = (verify_bundle(r / "bundle", r / "policies" / "default.yaml", [r / "pkg"]) for r in (lifecycle.root, moved))
    sa, sb = build_vsa_statement(a), build_vsa_statement(b)
    assert sa["predicate"]["resourceUri"] == sb["predicate"]["resourceUri"] == "mlspec:package/demo-model"
    assert sa["subject"] == sb["subject"]


def test_resource_uri_option(lifecycle: Project, tmp_path: Path) -> None:
    vsa = tmp_path / "model.vsa.json"
    oci = "oci://registry.example/credit/model@sha256:" + "a" * 64
    assert write_vsa(lifecycle, vsa, "--resource-uri", oci) == 0
    verify_vsa(command(lifecycle, vsa, resource_uri=oci))
    with pytest.raises(VerifyVSAFailed, match="resource URI mismatch"):
        verify_vsa(command(lifecycle, vsa))
    for bad in ("", "no scheme here", "oci://x y"):
        out = tmp_path / "bad.vsa.json"
        res = CliRunner().invoke(main, ["verify", str(lifecycle.bundle), "--policy", str(lifecycle.policy()),
                                        "--vsa", str(out), "--vsa-key", str(lifecycle.key("verifier")),
                                        "--resource-uri", bad])
        assert res.exit_code == 2 and "--resource-uri" in res.output and not out.exists()
    alone = CliRunner().invoke(main, ["verify", str(lifecycle.bundle), "--policy", str(lifecycle.policy()),
                                      "--resource-uri", oci])
    assert alone.exit_code == 2 and "--vsa" in alone.output

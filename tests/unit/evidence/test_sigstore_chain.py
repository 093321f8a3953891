"""External Sigstore evidence inside a chain, gated by the policy's identity rules (offline)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from conftest import Project, build_lifecycle

from mlspec_attest.verify import verify_bundle

GITHUB_SAN = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/"
              "extremely-dangerous-oidc-beacon.yml@refs/heads/main")
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


def _chain_with_evidence(project: Project, vectors: Path) -> None:
    sig = vectors / "sigstore" / "dsse-staging-rekor-v2"
    shutil.copyfile(sig / "a.txt", project.root / "a.txt")
    shutil.copyfile(vectors / "sigstore" / "trusted_root.staging.json", project.root / "policies" / "trusted_root.json")
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate", "split"))
    project.write("out/model.bin", "model-bytes")
    project.attestor().attest("train", materials=["train-data=work/train.csv", "code=a.txt"],
                              products=["model=out/model.bin"], metadata={"framework": "sklearn"},
                              evidence=[sig / "bundle.sigstore.json"])
    project.attestor().attest("test", materials=["model=out/model.bin", "holdback-data=work/holdback.csv"],
                              metadata={"metrics": {"accuracy": 0.9}})


def _policy(project: Project, san: str) -> Path:
    policy = yaml.safe_load(project.policy().read_text())
    policy["trust_config"] = "trusted_root.json"
    policy["metrics_binding"] = {"required": False}  # inline test metrics; binding has its own tests
    for stage in ("evaluate", "test", "package"):
        policy["stages"][stage]["required"] = False
    policy["stages"]["train"]["evidence"] = [{
        "name": "training-code-provenance",
        "predicate_type": "https://slsa.dev/provenance/v1",
        "subject_role": "code",
        "identities": [{"san": san, "issuer": GITHUB_ISSUER}],
    }]
    path = project.root / "policies" / "evidence.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def test_train_evidence_gated_by_identity(project: Project, vectors: Path) -> None:
    _chain_with_evidence(project, vectors)
    stored = list((project.bundle / "evidence").iterdir())
    assert len(stored) == 1
    report = verify_bundle(project.bundle, _policy(project, GITHUB_SAN))
    assert report.passed, [f.message for f in report.findings]


def test_train_evidence_with_another_identity_fails(project: Project, vectors: Path) -> None:
    _chain_with_evidence(project, vectors)
    report = verify_bundle(project.bundle, _policy(project, "https://github.com/evil/repo/.github/workflows/x.yml@refs/heads/main"))
    f = next(f for f in report.findings if f.code == "EVIDENCE_UNSATISFIED")
    assert f.stage == "train" and "training-code-provenance" in f.message


def test_tampered_evidence_file_is_refused(project: Project, vectors: Path) -> None:
    _chain_with_evidence(project, vectors)
    stored = next((project.bundle / "evidence").iterdir())
    stored.write_bytes(stored.read_bytes().replace(b'"mediaType"', b'"mediaType" ', 1))
    report = verify_bundle(project.bundle, _policy(project, GITHUB_SAN))
    assert {"EVIDENCE_TAMPERED", "EVIDENCE_UNSATISFIED"} <= {f.code for f in report.findings}


def test_evidence_must_cover_the_named_material(project: Project, vectors: Path) -> None:
    _chain_with_evidence(project, vectors)
    policy = _policy(project, GITHUB_SAN)
    data = yaml.safe_load(policy.read_text())
    data["stages"]["train"]["evidence"][0]["subject_role"] = "train-data"  # a.txt is not the training data
    policy.write_text(yaml.safe_dump(data))
    report = verify_bundle(project.bundle, policy)
    assert any(f.code == "EVIDENCE_UNSATISFIED" for f in report.findings)


def test_keyless_attestation_file_is_verified_offline_against_policy(project: Project, vectors: Path) -> None:
    """A .sigstore.json attestation goes through Sigstore verification with the stage's identities.

    No keyless mlspec statement can be minted offline, so this uses the real staging bundle:
    its signature and identity verify, and then its payload (SLSA provenance, not an mlspec
    stage statement) is refused as a finding rather than trusted or crashed on.
    """
    policy = _policy(project, GITHUB_SAN)
    data = yaml.safe_load(policy.read_text())
    shutil.copyfile(vectors / "sigstore" / "trusted_root.staging.json", project.root / "policies" / "trusted_root.json")
    data["stages"]["objectives"] = {"required": False, "identities": [{"san": GITHUB_SAN, "issuer": GITHUB_ISSUER}]}
    policy.write_text(yaml.safe_dump(data))
    (project.bundle / "attestations").mkdir(parents=True)
    shutil.copyfile(vectors / "sigstore/dsse-staging-rekor-v2/bundle.sigstore.json",
                    project.bundle / "attestations" / "0000-objectives.sigstore.json")
    report = verify_bundle(project.bundle, policy)
    f = next(f for f in report.findings if f.file == "0000-objectives.sigstore.json")
    assert f.code == "STATEMENT_INVALID" and "canonical" in f.message

    data["stages"]["objectives"]["identities"] = [{"san": "someone@example.com", "issuer": GITHUB_ISSUER}]
    policy.write_text(yaml.safe_dump(data))
    report = verify_bundle(project.bundle, policy)
    f = next(f for f in report.findings if f.file == "0000-objectives.sigstore.json")
    assert f.code == "SIGNATURE_INVALID" and "Sigstore verification failed" in f.message
    assert "someone@example.com" not in report.stages.__repr__()

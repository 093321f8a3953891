"""Attacks on the trust policy and on the objectives' integrity (issue #13, items 13, 15, 16, 17).

Each test builds the attack with real keys and real bundles and shows the refusal
by its finding code (or the one-line exit-2 refusal at load or attest time).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from conftest import OBJECTIVES_YAML, Project, build_lifecycle

from mlspec_attest.errors import EvidenceVerificationError, InputError
from mlspec_attest.model.canonical import canonicalize, sha256_hex
from mlspec_attest.objectives import criteria
from mlspec_attest.policy import Policy
from mlspec_attest.verify import Verifier, verify_bundle

GHA = "https://token.actions.githubusercontent.com"
CI = "https://github.com/org/repo/.github/workflows/train.yml@refs/heads/main"


def codes(report: Any, severity: str = "error") -> set[str]:
    return {f.code for f in report.findings if f.severity == severity}


def policy_with(project: Project, edit: dict[str, Any], name: str = "p.yaml") -> Path:
    data = yaml.safe_load(project.policy().read_text())
    data.update(edit)
    return project.write(f"policies/{name}", yaml.safe_dump(data))


def objectives(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(OBJECTIVES_YAML)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def sign_without_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The owner's key holder signs with another tool: mlspec's pre-signing checks do not run."""
    monkeypatch.setattr(criteria.Objectives, "from_dict",
                        classmethod(lambda cls, data, source="": SimpleNamespace(compile_all=lambda: None)))


# -- 13. an old genesis --------------------------------------------------------------------
def test_the_same_chain_on_todays_objectives_passes(project: Project) -> None:
    build_lifecycle(project)
    assert verify_bundle(project.bundle, project.policy()).passed


def test_a_new_chain_on_an_older_laxer_revision_is_refused(project: Project, tmp_path: Path) -> None:
    """Revision 1 (accuracy >= 0.5) was retired by revision 2 (>= 0.8): a new chain started on 1 is refused."""
    lax = OBJECTIVES_YAML.replace("metrics.accuracy >= 0.8", "metrics.accuracy >= 0.5")
    current = OBJECTIVES_YAML.replace("revision: 1", "revision: 2")
    policy = policy_with(project, {"objectives": {"project": "my-model", "min_revision": 2}})
    build_lifecycle(project, accuracy=0.6, objectives_yaml=lax)  # the owner really signed revision 1 once
    report = verify_bundle(project.bundle, policy)
    assert "OBJECTIVES_OUTDATED" in codes(report)
    assert "OBJECTIVE_FAILED" not in codes(report)  # the lax criterion itself passes: only the pin refuses
    today = Project(root=project.root, bundle=tmp_path / "today")
    build_lifecycle(today, accuracy=0.6, objectives_yaml=current)
    assert codes(verify_bundle(today.bundle, policy)) == {"OBJECTIVE_FAILED"}  # same chain, today's objectives
    build_lifecycle(Project(root=project.root, bundle=tmp_path / "ok"), accuracy=0.9, objectives_yaml=current)
    assert verify_bundle(tmp_path / "ok", policy).passed


def test_objectives_of_another_project_are_refused(project: Project) -> None:
    project.write("objectives.yaml", OBJECTIVES_YAML.replace("project: my-model", "project: other-model"))
    project.attestor("owner").attest("objectives", metadata_files=[project.root / "objectives.yaml"])
    assert "OBJECTIVES_PROJECT_MISMATCH" in codes(verify_bundle(project.bundle, project.policy()))


def test_digest_pin_refuses_any_other_objectives(project: Project) -> None:
    build_lifecycle(project)
    pinned = sha256_hex(canonicalize(objectives()))
    good = policy_with(project, {"objectives": {"project": "my-model", "sha256": [pinned]}}, "good.yaml")
    assert verify_bundle(project.bundle, good).passed
    wrong = policy_with(project, {"objectives": {"project": "my-model", "sha256": "0" * 64}}, "wrong.yaml")
    assert "OBJECTIVES_DIGEST_MISMATCH" in codes(verify_bundle(project.bundle, wrong))


def test_a_signed_genesis_without_project_or_revision_is_refused(project: Project,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Objectives signed before pins existed (or by another tool) carry no project: refused, not waved through."""
    sign_without_checks(monkeypatch)
    project.attestor("owner").attest("objectives", metadata=objectives(project=None, revision=None))
    monkeypatch.undo()
    assert "OBJECTIVES_INVALID" in codes(verify_bundle(project.bundle, project.policy()))


def test_objectives_check_prints_the_pin(project: Project) -> None:
    path = project.write("objectives.yaml", OBJECTIVES_YAML)
    out = _mlspec(["objectives", "check", str(path)], project.root)
    assert out.returncode == 0
    assert f"project my-model, revision 1, sha256 {sha256_hex(canonicalize(objectives()))}" in out.stdout


# -- 15. keyless identities leak across stages; keyless skips threshold and revocation ------
@pytest.fixture
def keyless(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """Keyless stage attestations whose Sigstore verification is simulated (identity rules still applied).

    The certificate and Rekor checks are sigstore-python's (tests/unit/evidence); what is under
    test here is which identity rules, threshold and revocations the policy applies afterwards.
    """
    from mlspec_attest.evidence import sigstore

    def verify(data: bytes, *, trust_config: Any, identities: list[Any]) -> tuple[bytes, Any]:
        doc = json.loads(data)
        who = doc["identity"]
        if not any(r.san == who["san"] and r.issuer == who["issuer"] for r in identities):
            raise EvidenceVerificationError(f"{who['san']} matches no allowed identity")
        signed_at = datetime.fromisoformat(who["signed_at"]) if "signed_at" in who else None
        return (base64.b64decode(doc["dsseEnvelope"]["payload"]),
                sigstore.SignerIdentity(method="keyless", san=who["san"], issuer=who["issuer"], signed_at=signed_at))

    monkeypatch.setattr(sigstore, "verify_keyless_statement", verify)
    project.write("trust.json", "{}")
    return project


def keyless_attestor(project: Project, san: str, issuer: str = GHA, signed_at: str | None = None) -> Any:
    from mlspec_attest.attest.attestor import Attestor

    def seal(payload: bytes) -> bytes:
        who = {"san": san, "issuer": issuer, **({"signed_at": signed_at} if signed_at else {})}
        return json.dumps({"dsseEnvelope": {"payload": base64.b64encode(payload).decode(), "signatures": []},
                           "identity": who}).encode()

    return Attestor(project.bundle, keyless=seal, base_dir=project.root)


KEYLESS_POLICY = f"""\
version: 1
keys: {{owner: ../keys/owner.pub, pipeline: ../keys/pipeline.pub}}
trust_config: ../trust.json
objectives: {{project: my-model}}
defaults: {{identities: [{{san: "{CI}", issuer: "{GHA}"}}]}}
stages:
  objectives: {{signers: [owner]}}
  ingest: {{}}
"""


def test_defaults_identity_cannot_sign_the_objectives(keyless: Project) -> None:
    policy = keyless.write("policies/k.yaml", KEYLESS_POLICY)
    keyless_attestor(keyless, CI).attest("objectives", metadata=objectives())
    report = verify_bundle(keyless.bundle, policy)
    assert "SIGSTORE_UNTRUSTED" in codes(report), [f.code for f in report.findings]


def test_defaults_identity_cannot_sign_a_stage_that_names_its_keys(keyless: Project) -> None:
    policy = keyless.write("policies/k.yaml", KEYLESS_POLICY.replace("  ingest: {}", "  ingest: {signers: [pipeline]}"))
    keyless.write("objectives.yaml", OBJECTIVES_YAML)
    keyless.attestor("owner").attest("objectives", metadata_files=[keyless.root / "objectives.yaml"])
    keyless_attestor(keyless, CI).attest("ingest", metadata={"sources": [{"name": "raw", "connector": "csv"}]})
    assert "SIGSTORE_UNTRUSTED" in codes(verify_bundle(keyless.bundle, policy))


def test_keyless_control_the_allowed_identity_passes(keyless: Project) -> None:
    policy = keyless.write("policies/k.yaml", KEYLESS_POLICY + "artifact_flow: false\n")
    keyless.write("objectives.yaml", OBJECTIVES_YAML)
    keyless.attestor("owner").attest("objectives", metadata_files=[keyless.root / "objectives.yaml"])
    keyless_attestor(keyless, CI).attest("ingest", metadata={"sources": [{"name": "raw", "connector": "csv"}]})
    report = verify_bundle(keyless.bundle, policy)
    assert codes(report) <= {"OBJECTIVE_FAILED"}, [f.message for f in report.findings]  # no test stage ran
    assert next(s for s in report.stages if s.stage == "ingest").ok  # the keyless path itself works


@pytest.mark.parametrize("revocation", [
    {"san": CI}, {"san": CI, "issuer": GHA}, {"san": CI, "after": "2000-01-01T00:00:00Z"}])
def test_revoked_keyless_identity_does_not_count(keyless: Project, revocation: dict[str, str]) -> None:
    data = yaml.safe_load(KEYLESS_POLICY)
    data["revoked"] = [revocation]
    policy = keyless.write("policies/k.yaml", yaml.safe_dump(data))
    keyless.write("objectives.yaml", OBJECTIVES_YAML)
    keyless.attestor("owner").attest("objectives", metadata_files=[keyless.root / "objectives.yaml"])
    keyless_attestor(keyless, CI).attest("ingest", metadata={"sources": [{"name": "raw", "connector": "csv"}]})
    report = verify_bundle(keyless.bundle, policy)
    assert "KEY_REVOKED" in codes(report)
    assert not next(s for s in report.stages if s.stage == "ingest").ok


def test_keyless_revocation_uses_the_verified_signing_time_not_the_claimed_one(keyless: Project) -> None:
    """The statement claims finishedOn = now; the log's verified time decides, in both directions."""
    keyless.write("objectives.yaml", OBJECTIVES_YAML)
    keyless.attestor("owner").attest("objectives", metadata_files=[keyless.root / "objectives.yaml"])
    keyless_attestor(keyless, CI, signed_at="2031-01-01T00:00:00+00:00").attest(
        "ingest", metadata={"sources": [{"name": "raw", "connector": "csv"}]})
    data = yaml.safe_load(KEYLESS_POLICY)
    # Revoked from 2030: the claimed time (now) is before it, the verified signing time (2031) after it.
    later = keyless.write("policies/later.yaml", yaml.safe_dump({**data, "revoked": [
        {"san": CI, "after": "2030-01-01T00:00:00Z"}]}))
    assert "KEY_REVOKED" in codes(verify_bundle(keyless.bundle, later))
    # Signed (verified) in 2000, revoked from 2001: the claimed time (now) is after the revocation,
    # the verified one before it, so the signature still counts.
    old = Project(root=keyless.root, bundle=keyless.root / "old")
    old.attestor("owner").attest("objectives", metadata_files=[keyless.root / "objectives.yaml"])
    keyless_attestor(old, CI, signed_at="2000-01-01T00:00:00+00:00").attest(
        "ingest", metadata={"sources": [{"name": "raw", "connector": "csv"}]})
    after = keyless.write("policies/after.yaml", yaml.safe_dump({**data, "revoked": [
        {"san": CI, "after": "2001-01-01T00:00:00Z"}]}))
    assert "KEY_REVOKED" not in codes(verify_bundle(old.bundle, after))
    assert "KEY_REVOKED" in codes(verify_bundle(keyless.bundle, after))


def test_revocation_of_another_issuer_does_not_hit(keyless: Project) -> None:
    data = yaml.safe_load(KEYLESS_POLICY)
    data["revoked"] = [{"san": CI, "issuer": "https://accounts.google.com"}]
    policy = keyless.write("policies/k.yaml", yaml.safe_dump(data))
    keyless.write("objectives.yaml", OBJECTIVES_YAML)
    keyless.attestor("owner").attest("objectives", metadata_files=[keyless.root / "objectives.yaml"])
    keyless_attestor(keyless, CI).attest("ingest", metadata={"sources": [{"name": "raw", "connector": "csv"}]})
    assert "KEY_REVOKED" not in codes(verify_bundle(keyless.bundle, policy))


def test_keyless_signature_does_not_meet_a_threshold_of_two(keyless: Project) -> None:
    text = KEYLESS_POLICY.replace("  ingest: {}", f"  ingest: {{signers: [pipeline, owner], threshold: 2, "
                                  f"identities: [{{san: \"{CI}\", issuer: \"{GHA}\"}}]}}")
    text = text.replace("objectives: {project: my-model}", "objectives: {project: my-model, separate_signer: false}")
    policy = keyless.write("policies/k.yaml", text)
    keyless.write("objectives.yaml", OBJECTIVES_YAML)
    keyless.attestor("owner").attest("objectives", metadata_files=[keyless.root / "objectives.yaml"])
    keyless_attestor(keyless, CI).attest("ingest", metadata={"sources": [{"name": "raw", "connector": "csv"}]})
    assert "THRESHOLD_NOT_MET" in codes(verify_bundle(keyless.bundle, policy))


# -- 16. separation of duties ---------------------------------------------------------------
@pytest.mark.parametrize("edit", [
    {"stages": {"objectives": {"signers": ["pipeline"]}, "train": {"signers": ["pipeline"]}}},
    {"stages": {"objectives": {"signers": ["owner"]}, "train": {"signers": ["pipeline", "owner"]}}},
    # two names for one key file are one signer
    {"keys": {"owner": "../keys/owner.pub", "pipeline": "../keys/pipeline.pub", "ci": "../keys/owner.pub"},
     "stages": {"objectives": {"signers": ["owner"]}, "train": {"signers": ["ci"]}}},
])
def test_objectives_key_that_signs_another_stage_is_refused_at_load(project: Project, edit: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="the objectives' signer also signs train"):
        Policy.from_file(policy_with(project, edit))


def test_shared_identity_for_objectives_is_refused(project: Project) -> None:
    project.write("trust.json", "{}")
    ident = [{"san": CI, "issuer": GHA}]
    with pytest.raises(InputError, match="also signs train"):
        Policy.from_file(policy_with(project, {"trust_config": "../trust.json", "stages": {
            "objectives": {"identities": ident}, "train": {"identities": ident}}}))


def test_a_policy_that_allows_a_shared_signer_warns_on_every_verify(project: Project) -> None:
    build_lifecycle(project)
    data = yaml.safe_load(project.policy().read_text())
    data["objectives"]["separate_signer"] = False
    data["stages"]["objectives"]["signers"] = ["owner", "pipeline"]
    policy = project.write("policies/shared.yaml", yaml.safe_dump(data))
    report = verify_bundle(project.bundle, policy)
    assert report.passed and "POLICY_OBJECTIVES_SIGNER_SHARED" in codes(report, "warning")


def test_a_policy_with_optional_objectives_warns_on_every_verify(project: Project) -> None:
    build_lifecycle(project)
    data = yaml.safe_load(project.policy().read_text())
    data["stages"]["objectives"]["required"] = False
    report = verify_bundle(project.bundle, project.write("policies/opt.yaml", yaml.safe_dump(data)))
    assert "POLICY_OBJECTIVES_OPTIONAL" in codes(report, "warning")


def test_minimal_policy_refuses_pipeline_signed_or_skipped_objectives(project: Project) -> None:
    stages = ("objectives", "train", "evaluate", "test", "package")
    build_lifecycle(project, stages=stages[1:])  # no objectives at all
    report = verify_bundle(project.bundle, project.policy("minimal.yaml"))
    assert {"STAGE_MISSING", "CHAIN_NO_OBJECTIVES"} <= codes(report)
    forged = Project(root=project.root, bundle=project.root / "forged")
    forged.attestor("pipeline").attest("objectives", metadata=objectives())
    assert "SIGNER_NOT_ALLOWED" in codes(verify_bundle(forged.bundle, project.policy("minimal.yaml")))
    assert Policy.from_file(project.policy("minimal.yaml")).weaknesses == ()


@pytest.mark.parametrize("expression", [
    "true", "1 < 2", "metrics.accuracy >= 0.8 || true", "!has(metrics.accuracy) || metrics.accuracy >= 0.8",
    "size(metrics) >= 0", "metrics.accuracy >= 0.8 || metrics.accuracy < 0.8", "abs(metrics.accuracy) >= 0",
    "metrics.accuracy == metrics.accuracy", "metrics.a >= metrics.b || metrics.b >= metrics.a"])
def test_vacuous_criteria_are_refused_by_check_and_by_the_gate(project: Project, monkeypatch: pytest.MonkeyPatch,
                                                               expression: str) -> None:
    data = objectives()
    data["criteria"][0]["expression"] = expression
    path = project.write("vacuous.yaml", yaml.safe_dump(data))
    out = _mlspec(["objectives", "check", str(path)], project.root)
    assert out.returncode == 2 and "checks nothing" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(InputError, match="checks nothing"):
        project.attestor("owner").attest("objectives", metadata=data)
    assert not (project.bundle / "attestations").exists() or not any((project.bundle / "attestations").iterdir())
    sign_without_checks(monkeypatch)  # the owner signs it anyway, with another tool
    project.attestor("owner").attest("objectives", metadata=data)
    monkeypatch.undo()
    assert "OBJECTIVE_VACUOUS" in codes(verify_bundle(project.bundle, project.policy()))


def test_real_criteria_are_not_vacuous() -> None:
    for text in ("metrics.accuracy >= 0.8", 'slices.group.max_gap("recall") <= 0.1',
                 "has(metrics.accuracy) && metrics.accuracy >= 0.8", "signals.error_rate == 0.0",
                 "metrics.precision >= metrics.recall", "metrics.accuracy >= -1.0",
                 'min(slices.group, "recall") >= 0.75', 'metadata.framework.name == "sklearn"',
                 "signals.error_rate == 0.0 && signals.latency_p99_ms <= 250.0",
                 "metrics.a > 0.5 ? metrics.b > 0.9 : metrics.c > 0.95"):
        assert criteria.vacuity(criteria.Criterion("c", "test", text).compile()) == ""


# -- 17. invalid objectives get signed --------------------------------------------------------
@pytest.mark.parametrize("change,needle", [
    ({"criteria": [{"name": "r2", "stage": "evaluate", "expression": "metrics.r2 >=", "description": "d"}]},
     "criterion 'r2'"),
    ({"outputs": None}, "outputs: missing"),
    ({"project": None}, "project: missing"),
    ({"revision": "2"}, "revision: expected an integer"),
    ({"criteria": [{"name": "x", "stage": "objectives", "expression": "metrics.a > 1", "description": "d"}]},
     "cannot be bound to the objectives stage"),
])
def test_attest_refuses_objectives_that_check_rejects(project: Project, change: dict[str, Any], needle: str) -> None:
    path = project.write("bad.yaml", yaml.safe_dump(objectives(**change)))
    check = _mlspec(["objectives", "check", str(path)], project.root)
    assert check.returncode == 2 and needle in check.stderr
    attest = _mlspec(["attest", "stage", "objectives", "--bundle", str(project.bundle), "--key",
                      str(project.key("owner")), "--metadata", str(path)], project.root)
    assert attest.returncode == 2 and needle in attest.stderr and "Traceback" not in attest.stderr
    assert len(attest.stderr.strip().splitlines()) == 1
    assert not (project.bundle / "attestations").exists() or not any((project.bundle / "attestations").iterdir())


def test_verifier_applies_pin_with_typed_policy(project: Project) -> None:
    """The Verifier object reads only typed policy objects (the raw mapping is for display)."""
    build_lifecycle(project)
    policy = Policy.from_file(project.policy())
    object.__setattr__(policy, "raw", {})  # nothing at verify time may read the raw policy data
    assert Verifier(policy).verify(project.bundle).passed


def _mlspec(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_a_valueless_head_rule_is_refused_not_dropped(project: Project) -> None:
    """`head:` with no value (YAML null) silently turned the chain-head rule off; truncation then passed."""
    text = project.policy().read_text()
    assert "\nhead:" in text
    lines = [("head:" if line.startswith("head:") else line) for line in text.splitlines()]
    path = project.write("policies/nullhead.yaml", "\n".join(lines) + "\n")
    with pytest.raises(InputError, match="head"):
        Policy.from_file(path)

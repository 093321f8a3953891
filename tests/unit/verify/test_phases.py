"""Phases (model/stages.py): ``--phase deploy`` judges a chain before serve without waving anything through.

Who could walk around it: the pipeline's runner or whoever holds the bundle. The phase
relaxes only the requirement that later stages exist (and their criteria, while absent);
every present attestation is still judged in full, a truncated chain is still a rollback,
the policy may forbid the phase, and the VSA says the phase in its levels and policy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import OBJECTIVES_YAML, Project, build_lifecycle

from mlspec_attest.cli.main import main
from mlspec_attest.errors import InputError
from mlspec_attest.keys import generate
from mlspec_attest.model.stages import DEPLOY_PHASE, FULL_PHASE, resolve_phase
from mlspec_attest.policy import Policy
from mlspec_attest.verify import verify_bundle
from mlspec_attest.verify.verifier import Verifier
from mlspec_attest.verify.vsa import build_vsa_statement

UP_TO_PACKAGE = ("objectives", "ingest", "analyze", "transform", "validate", "split", "train", "evaluate", "test",
                 "package")
WITH_MONITOR = OBJECTIVES_YAML + """\
  - name: monitor-latency
    stage: monitor
    expression: signals.latency_p99_ms <= 50.0
    severity: block
    description: p99 latency after roll-out
  - name: serve-rollout
    stage: serve
    expression: metadata.rollout.status == "succeeded"
    severity: block
    description: the roll-out succeeded
"""


def errors(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in report.findings if f.severity == "error"}


@pytest.fixture
def before_serve(project: Project) -> Project:
    build_lifecycle(project, stages=UP_TO_PACKAGE, objectives_yaml=WITH_MONITOR)
    return project


def strict_serve_policy(project: Project) -> Path:
    """The default policy with serve and monitor required (what a served model must have)."""
    text = project.policy().read_text()
    text = text.replace("serve:      {required: false}", "serve:      {required: true}")
    text = text.replace("monitor:    {required: false, repeat: true}", "monitor:    {required: true, repeat: true}")
    return project.write("policies/strict.yaml", text)


def test_phases_are_defined_once() -> None:
    assert resolve_phase("deploy") is DEPLOY_PHASE and resolve_phase(" FULL ") is FULL_PHASE
    assert DEPLOY_PHASE.requires("package") and not DEPLOY_PHASE.requires("serving")
    assert all(FULL_PHASE.requires(s) for s in ("serve", "monitor", "log"))
    with pytest.raises(InputError, match="unknown phase 'staging'"):
        resolve_phase("staging")


def test_before_serve_full_blocks_and_deploy_passes(before_serve: Project) -> None:
    policy = strict_serve_policy(before_serve)
    full = verify_bundle(before_serve.bundle, policy)
    assert {"STAGE_MISSING", "OBJECTIVE_FAILED"} <= errors(full)
    assert any("stage 'monitor' has no attestation" in o.message for o in full.objectives)
    deploy = verify_bundle(before_serve.bundle, policy, phase="deploy")
    assert deploy.passed, [f.message for f in deploy.findings if f.severity == "error"]
    assert deploy.phase == "deploy" and deploy.to_dict()["phase"] == "deploy"
    deferred = {f.stage for f in deploy.findings if f.code == "OBJECTIVE_DEFERRED"}
    assert deferred == {"monitor", "serve"} and all(f.severity == "info" for f in deploy.findings
                                                    if f.code == "OBJECTIVE_DEFERRED")
    assert [o.name for o in deploy.objectives] == ["test-accuracy"]  # the deferred ones are not "passed"


def test_deploy_still_judges_criteria_up_to_package(project: Project) -> None:
    build_lifecycle(project, stages=UP_TO_PACKAGE, objectives_yaml=WITH_MONITOR, accuracy=0.5)
    report = verify_bundle(project.bundle, project.policy(), phase="deploy")
    assert "OBJECTIVE_FAILED" in errors(report)


def test_deploy_still_requires_package(project: Project) -> None:
    build_lifecycle(project, stages=UP_TO_PACKAGE[:-1])
    report = verify_bundle(project.bundle, project.policy(), phase="deploy")
    assert any(f.code == "STAGE_MISSING" and f.stage == "package" for f in report.findings)


def _append_serve(project: Project, *signers: str, status: str = "succeeded") -> None:
    project.attestor(*signers).attest("serve", materials=["package=pkg"],
                                      metadata={"rollout": {"strategy": "canary", "status": status}})


def test_deploy_refuses_a_forged_serve_attestation(before_serve: Project) -> None:
    """A serve signed by a key the policy does not trust is refused whatever the phase."""
    _append_serve(before_serve, "intruder")
    report = verify_bundle(before_serve.bundle, before_serve.policy(), phase="deploy")
    assert "SIGNATURE_INVALID" in errors(report)
    assert not report.stages[-1].ok
    # and its criterion is judged, not deferred: the stage is present
    assert not any(f.code == "OBJECTIVE_DEFERRED" and f.stage == "serve" for f in report.findings)


def test_deploy_judges_a_present_serve_stage_criteria(before_serve: Project) -> None:
    _append_serve(before_serve, "pipeline", status="failed")
    report = verify_bundle(before_serve.bundle, before_serve.policy(), phase="deploy")
    assert "OBJECTIVE_FAILED" in errors(report)
    assert any(o.name == "serve-rollout" and not o.passed for o in report.objectives)


def test_deploy_refuses_serve_out_of_order(project: Project) -> None:
    """A serve slipped in before package is still a STAGE_ORDER violation in the deploy phase."""
    build_lifecycle(project, stages=UP_TO_PACKAGE[:-1])
    project.write("pkg/model.bin", "model-bytes")
    _append_serve(project, "pipeline")
    project.attestor("pipeline").attest("package", materials=["model=out/model.bin"], products=["package=pkg"],
                                        metadata={"name": "demo-model", "contents": ["model.bin"]})
    report = verify_bundle(project.bundle, project.policy(), phase="deploy")
    assert "STAGE_ORDER" in errors(report)


def test_deploy_refuses_a_chain_truncated_before_serve(project: Project) -> None:
    """Deleting serve and monitor (say a monitor reading that withdrew the model) is still a rollback."""
    build_lifecycle(project)
    for f in sorted((project.bundle / "attestations").glob("*.json"))[10:]:
        f.unlink()
    report = verify_bundle(project.bundle, project.policy(), phase="deploy")
    assert not report.passed
    assert "CHAIN_ROLLBACK" in errors(report)


def test_policy_can_forbid_the_deploy_phase(before_serve: Project) -> None:
    path = before_serve.write("policies/full-only.yaml", before_serve.policy().read_text() + "phases: [full]\n")
    policy = Policy.from_file(path)
    assert policy.phases == ("full",)
    report = Verifier(policy, phase="deploy").verify(before_serve.bundle)
    assert "PHASE_NOT_ALLOWED" in errors(report)


def test_policy_phases_must_be_known(before_serve: Project) -> None:
    path = before_serve.write("policies/bad.yaml", before_serve.policy().read_text() + "phases: [staging]\n")
    with pytest.raises(InputError, match=r"bad.yaml: phases: unknown phase 'staging'"):
        Policy.from_file(path)


def test_deploy_vsa_cannot_pass_for_a_full_one(before_serve: Project) -> None:
    deploy = verify_bundle(before_serve.bundle, before_serve.policy(), [before_serve.root / "pkg"], phase="deploy")
    assert deploy.passed
    predicate = build_vsa_statement(deploy)["predicate"]
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audit"))
    from test_audit import parse_vsa_predicate

    parse_vsa_predicate(predicate)  # strict in-toto VSA v1 binding: the phase lives in fields it knows
    assert predicate["verifiedLevels"] == ["MLSPEC_DEPLOY_CHAIN_COMPLETE", "MLSPEC_DEPLOY_OBJECTIVES_MET",
                                           "MLSPEC_DEPLOY_ARTIFACT_BOUND"]
    full = verify_bundle(before_serve.bundle, before_serve.policy(), [before_serve.root / "pkg"])
    full_predicate = build_vsa_statement(full)["predicate"]
    assert not set(full_predicate["verifiedLevels"]) & set(predicate["verifiedLevels"])


def test_slsa_verifier_refuses_a_deploy_vsa_for_the_full_level(before_serve: Project, tmp_path: Path) -> None:
    """The documented consumer command (--verified-level MLSPEC_CHAIN_COMPLETE) refuses a deploy-phase VSA."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "audit"))
    from slsa_verifier_rules import VerifyVSAFailed, verify_vsa
    from test_vsa_slsa_verifier import command

    generate("verifier", before_serve.root / "keys", "ed25519", None)
    vsa = tmp_path / "model.vsa.json"
    args = ["verify", str(before_serve.bundle), "--policy", str(before_serve.policy()), "--vsa", str(vsa),
            "--vsa-key", str(before_serve.key("verifier")), "--artifact", str(before_serve.root / "pkg")]
    assert CliRunner().invoke(main, [*args, "--phase", "deploy"]).exit_code == 0
    with pytest.raises(VerifyVSAFailed, match="MLSPEC_CHAIN_COMPLETE"):
        verify_vsa(command(before_serve, vsa))
    verify_vsa(command(before_serve, vsa, verified_levels=["MLSPEC_DEPLOY_CHAIN_COMPLETE"]))


def test_cli_phase_json_and_text(before_serve: Project) -> None:
    base = ["verify", str(before_serve.bundle), "--policy", str(strict_serve_policy(before_serve))]
    full = CliRunner().invoke(main, [*base, "--format", "json"])
    assert full.exit_code == 1 and json.loads(full.stdout)["phase"] == "full"
    deploy = CliRunner().invoke(main, [*base, "--format", "json", "--phase", "deploy"])
    assert deploy.exit_code == 0, deploy.output
    assert json.loads(deploy.stdout)["phase"] == "deploy"
    text = CliRunner().invoke(main, [*base, "--phase", "deploy"])
    assert text.exit_code == 0 and "phase deploy" in text.stdout and "OBJECTIVE_DEFERRED" in text.stdout
    bad = CliRunner().invoke(main, [*base, "--phase", "staging"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_shipped_bundle_cannot_choose_the_phase(before_serve: Project) -> None:
    """Nothing in the bundle selects a phase: copying a bundle with an 'mlspec.yaml' beside it changes nothing."""
    shutil.copytree(before_serve.bundle, before_serve.root / "release" / "bundle")
    (before_serve.root / "release" / "mlspec.yaml").write_text("phase: deploy\n")
    report = verify_bundle(before_serve.root / "release" / "bundle", strict_serve_policy(before_serve))
    assert report.phase == "full" and "STAGE_MISSING" in errors(report)


def test_deploy_refuses_a_monitor_reading_without_the_serve_it_watches(before_serve: Project) -> None:
    """A later stage that is present brings its own links: a monitor naming no real serve is refused."""
    from conftest import digest_path

    before_serve.attestor("pipeline").attest("monitor", materials=["pkg"], metadata={
        "signals": {"latency_p99_ms": 12.0}, "serve_attestation": "0" * 64,
        "rollback_target": {"name": "pkg", "digest": {"sha256": digest_path(before_serve.root / "pkg").sha256}}})
    report = verify_bundle(before_serve.bundle, before_serve.policy(), phase="deploy")
    assert "MONITOR_SERVE_UNKNOWN" in errors(report), errors(report)
    assert not any(f.code == "OBJECTIVE_DEFERRED" and f.stage == "monitor" for f in report.findings)

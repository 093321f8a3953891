"""Releases and rollback: a package names the release it succeeds; the gate finds it in the
release history and verifies it. Each attack on the predecessor line is refused with its code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import OBJECTIVES_YAML, REPO, Project, build_lifecycle

from mlspec_attest.digests import digest_path
from mlspec_attest.keys import PublicKey, generate, load_signer
from mlspec_attest.model.envelope import Envelope
from mlspec_attest.policy import Policy
from mlspec_attest.releases import describe_release
from mlspec_attest.verify import Verifier, verify_bundle

THROUGH_TEST = ("objectives", "ingest", "analyze", "transform", "validate", "split", "train", "evaluate", "test")


def codes(report: Any) -> set[str]:
    return {f.code for f in report.findings if f.severity == "error"}


def make_release(project: Project, bundle: Path, *, pkg_text: str, succeeds: Path | None = None,
                 succeeds_value: Any = None, rollback_to: str | None = None, root: Path | None = None,
                 accuracy: float = 0.9, objectives_yaml: str | None = None) -> str:
    """One run into ``bundle``: objectives..test, a package of ``pkg_text`` (succeeding a release),
    and with ``rollback_to`` a serve and a monitor naming that package digest. Returns the package digest."""
    p = Project(root=root or project.root, bundle=bundle)
    build_lifecycle(p, stages=THROUGH_TEST, accuracy=accuracy,
                    **({"objectives_yaml": objectives_yaml} if objectives_yaml else {}))
    p.write("pkg/manifest.json", pkg_text)
    metadata: dict[str, Any] = {"name": "demo-model", "contents": ["model.bin"]}
    if succeeds is not None:
        metadata["succeeds"] = describe_release(succeeds).to_dict()
    if succeeds_value is not None:
        metadata["succeeds"] = succeeds_value
    p.attestor("pipeline").attest("package", materials=["model=out/model.bin"], products=["package=pkg"],
                                  metadata=metadata)
    digest = digest_path(p.root / "pkg").sha256
    if rollback_to is not None:
        serve = p.attestor("pipeline").attest("serve", materials=["package=pkg"], metadata={
            "rollout": {"strategy": "canary", "status": "succeeded"}})
        p.attestor("pipeline").attest("monitor", materials=["pkg"], metadata={
            "signals": {"latency_p99_ms": 12.0}, "serve_attestation": serve.payload_sha256,
            "rollback_target": {"name": "pkg", "digest": {"sha256": rollback_to}}})
    return digest


@pytest.fixture
def history(project: Project) -> Path:
    """releases/v1: the first release (its package is what v2 succeeds)."""
    make_release(project, project.root / "releases" / "v1", pkg_text='{"v": 1}')
    return project.root / "releases"


def _verify(project: Project, bundle: Path, releases: Path | None, policy: Path | None = None) -> Any:
    return verify_bundle(bundle, policy or project.policy(), releases=releases)


def test_successor_of_a_verified_release_passes(project: Project, history: Path) -> None:
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1")
    report = _verify(project, v2, history)
    assert report.passed, [f.message for f in report.findings]
    ctx = Verifier(Policy.from_file(project.policy()), releases=history).verify_context(v2)
    assert ctx.predecessor is not None and ctx.predecessor.bundle == history / "v1"


def test_declared_predecessor_without_a_history_fails_closed(project: Project, history: Path) -> None:
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1")
    assert "PREDECESSOR_UNKNOWN" in codes(_verify(project, v2, None))
    empty = project.root / "empty-history"
    empty.mkdir()
    assert "PREDECESSOR_UNKNOWN" in codes(_verify(project, v2, empty))


def test_a_forged_predecessor_chain_is_unverified(project: Project, history: Path) -> None:
    """Someone with write access to the history re-signs one of v1's attestations with their own key
    (payload unchanged, so every digest and the pin still match): the signature is what fails."""
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1")
    target = next((history / "v1" / "attestations").glob("0004-*.dsse.json"))
    env = Envelope.from_dict(json.loads(target.read_text()))
    forged = Envelope(payload_type=env.payload_type, payload=env.payload)
    forged.sign(load_signer(project.key("intruder")))
    target.write_bytes(forged.to_json())
    report = _verify(project, v2, history)
    assert "PREDECESSOR_UNVERIFIED" in codes(report)
    assert "SIGNATURE_INVALID" in next(f.message for f in report.findings if f.code == "PREDECESSOR_UNVERIFIED")


def test_same_package_digest_on_another_chain_is_a_mismatch(project: Project, history: Path) -> None:
    """A history holding a release with the right package digest but a different chain (another run
    that packaged the same bytes) cannot stand in for the release the successor pinned."""
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1")
    shutil.rmtree(history / "v1")
    impostor = make_release(project, history / "v1-again", pkg_text='{"v": 1}')
    assert impostor == describe_release(history / "v1-again").package_sha256
    report = _verify(project, v2, history)
    assert "PREDECESSOR_MISMATCH" in codes(report), [f.code for f in report.findings]


def test_a_pin_at_another_attestation_is_a_mismatch(project: Project, history: Path) -> None:
    """The declared head names an attestation the predecessor's chain does not hold."""
    v1 = describe_release(history / "v1").to_dict()
    v1["chain"]["payloadSha256"] = "ab" * 32
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds_value=v1)
    assert "PREDECESSOR_MISMATCH" in codes(_verify(project, v2, history))
    v1["chain"]["payloadSha256"] = describe_release(history / "v1").payload_sha256
    v1["chain"]["sequence"] = 3  # before v1's package: the pin does not cover the release
    pinned_early = next((history / "v1" / "attestations").glob("0003-*.dsse.json"))
    v1["chain"]["payloadSha256"] = __import__("hashlib").sha256(
        Envelope.from_dict(json.loads(pinned_early.read_text())).payload).hexdigest()
    v3 = project.root / "candidate" / "v3"
    make_release(project, v3, pkg_text='{"v": 3}', succeeds_value=v1)
    assert "PREDECESSOR_MISMATCH" in codes(_verify(project, v3, history))


def test_a_predecessor_cycle_is_refused(project: Project, history: Path) -> None:
    """A package that names its own chain as its predecessor (v2 placed in the history, pinned at
    its own test attestation), and a line that leads back to a release already on it."""
    v2 = history / "v2"
    p = Project(root=project.root, bundle=v2)
    build_lifecycle(p, stages=THROUGH_TEST)
    own_head = p.bundle
    from mlspec_attest.bundle import Bundle

    head = Bundle(own_head).head()
    assert head is not None
    p.attestor("pipeline").attest("package", materials=["model=out/model.bin"], products=["package=pkg"], metadata={
        "name": "demo-model", "contents": ["model.bin"], "succeeds": {
            "package": {"name": "pkg", "digest": {"sha256": digest_path(project.root / "pkg").sha256}},
            "chain": {"genesis": head.genesis, "sequence": head.sequence, "payloadSha256": head.payload_sha256}}})
    assert "PREDECESSOR_CYCLE" in codes(_verify(project, v2, history))
    # the guard on the line itself: v3 succeeds v1, verified as if v1 were already a successor on the line
    # (a release is named by its package attestation's payload digest)
    v3 = project.root / "candidate" / "v3"
    make_release(project, v3, pkg_text='{"v": 3}', succeeds=history / "v1")
    v1_chain = Verifier(Policy.from_file(project.policy())).verify_context(history / "v1").chain
    line = frozenset({next(e.payload_sha256 for e in v1_chain if e.stage == "package")})
    ctx = Verifier(Policy.from_file(project.policy()), releases=history, release_line=line).verify_context(v3)
    assert "PREDECESSOR_CYCLE" in codes(ctx.report)


def test_a_predecessor_signed_by_a_revoked_key_is_unverified(project: Project, tmp_path: Path) -> None:
    """v1 was signed by the old pipeline key, revoked since: today's policy judges the line, so the
    old release is no longer a valid predecessor (nor a rollback target)."""
    old_root = tmp_path / "old"
    (old_root / "keys").mkdir(parents=True)
    shutil.copy(project.key("owner"), old_root / "keys" / "owner.key")
    generate("pipeline", old_root / "keys", "ed25519", None)
    history = project.root / "releases"
    make_release(project, history / "v1", pkg_text='{"v": 1}', root=old_root)
    doc = yaml.safe_load(project.policy().read_text())
    shutil.copy(old_root / "keys" / "pipeline.pub", project.root / "keys" / "legacy.pub")
    doc["keys"]["legacy"] = "../keys/legacy.pub"
    doc["defaults"]["signers"] = ["pipeline", "legacy"]
    doc["head"]["signers"] = ["pipeline", "legacy"]
    legacy = PublicKey.from_file(project.root / "keys" / "legacy.pub").keyid
    policy = project.policy("rotated.yaml")
    policy.write_text(yaml.safe_dump(doc))
    assert _verify(project, history / "v1", None, policy).passed  # before the revocation: a good release
    doc["revoked"] = [{"keyid": legacy, "reason": "rotated after a leak"}]
    policy.write_text(yaml.safe_dump(doc))
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1")
    report = _verify(project, v2, history, policy)
    assert "PREDECESSOR_UNVERIFIED" in codes(report)
    assert "KEY_REVOKED" in next(f.message for f in report.findings if f.code == "PREDECESSOR_UNVERIFIED")


def test_rollback_to_an_earlier_verified_release(project: Project, history: Path) -> None:
    """The issue's case: a monitor names the v1 package as its rollback target."""
    v1_package = describe_release(history / "v1").package_sha256
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1", rollback_to=v1_package)
    report = _verify(project, v2, history)
    assert report.passed, [f.message for f in report.findings]
    assert "ROLLBACK_TARGET_UNKNOWN" in codes(_verify(project, v2, None))  # line not verified: unknown


def test_rollback_to_a_package_never_released_is_refused(project: Project, history: Path) -> None:
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1", rollback_to="cd" * 32)
    assert "ROLLBACK_TARGET_UNKNOWN" in codes(_verify(project, v2, history))


def test_rollback_to_a_release_in_the_history_but_not_on_the_line(project: Project, history: Path) -> None:
    """Another release sits in the history, but the chain does not succeed it: not a rollback target."""
    other = make_release(project, history / "unrelated", pkg_text='{"v": "other"}')
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1", rollback_to=other)
    assert "ROLLBACK_TARGET_UNKNOWN" in codes(_verify(project, v2, history))


def test_rollback_two_releases_back(project: Project, history: Path) -> None:
    """v3 succeeds v2 succeeds v1: v1 is on v3's verified line."""
    v1_package = describe_release(history / "v1").package_sha256
    make_release(project, history / "v2", pkg_text='{"v": 2}', succeeds=history / "v1")
    v3 = project.root / "candidate" / "v3"
    make_release(project, v3, pkg_text='{"v": 3}', succeeds=history / "v2", rollback_to=v1_package)
    report = _verify(project, v3, history)
    assert report.passed, [f.message for f in report.findings]


@pytest.mark.parametrize("value", ["v1", {"package": {}}, {"package": {"name": "x", "digest": {"sha256": "zz"}},
                                                          "chain": {"genesis": "0" * 64, "sequence": 1,
                                                                    "payloadSha256": "0" * 64}}])
def test_a_malformed_succeeds_is_a_finding(project: Project, history: Path, value: Any) -> None:
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds_value=value)
    assert "PREDECESSOR_INVALID" in codes(_verify(project, v2, history))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_cli_succeeds_and_releases(project: Project, history: Path) -> None:
    """attest stage package --succeeds BUNDLE signs the predecessor; verify --releases DIR checks it."""
    v2 = project.root / "candidate" / "v2"
    p = Project(root=project.root, bundle=v2)
    build_lifecycle(p, stages=THROUGH_TEST)
    p.write("pkg/manifest.json", '{"v": 2}')
    out = _cli("attest", "stage", "package", "--bundle", str(v2), "--key", str(project.key("pipeline")),
               "--material", "model=out/model.bin", "--product", "package=pkg", "--set", "name=demo-model",
               "--succeeds", str(history / "v1"), cwd=project.root)
    assert out.returncode == 0, out.stderr
    signed = _cli("attest", "head", "--bundle", str(v2), "--key", str(project.key("pipeline")), cwd=project.root)
    assert signed.returncode == 0, signed.stderr
    ok = _cli("verify", str(v2), "--policy", str(project.policy()), "--releases", str(history), cwd=project.root)
    assert ok.returncode == 0, ok.stdout
    refused = _cli("verify", str(v2), "--policy", str(project.policy()), cwd=project.root)
    assert refused.returncode == 1 and "PREDECESSOR_UNKNOWN" in refused.stdout
    wrong = _cli("attest", "stage", "test", "--bundle", str(v2), "--key", str(project.key("pipeline")),
                 "--succeeds", str(history / "v1"), cwd=project.root)
    assert wrong.returncode == 2 and "package stage" in wrong.stderr
    missing = _cli("verify", str(v2), "--policy", str(project.policy()), "--releases", str(project.root / "nope"),
                   cwd=project.root)
    assert missing.returncode == 2 and "release history directory not found" in missing.stderr


# -- champion/challenger: criteria that read the previous release ------------------------------
CHAMPION = OBJECTIVES_YAML + """\
  - name: no-worse-than-champion
    stage: test
    expression: metrics.accuracy >= previous.test.metrics.accuracy - 0.01
    severity: block
    description: the challenger may lose at most a point of hold-back accuracy to the release it succeeds
"""
FIRST_PASS = CHAMPION + "    first_release: pass\n"


def _objective(report: Any, name: str) -> Any:
    return next(o for o in report.objectives if o.name == name)


def test_challenger_is_judged_against_the_verified_champion(project: Project, history: Path) -> None:
    """previous.test.metrics.accuracy is v1's signed, verified test metric (0.9)."""
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1", accuracy=0.895, objectives_yaml=CHAMPION)
    report = _verify(project, v2, history)
    assert report.passed, [f.message for f in report.findings]
    assert _objective(report, "no-worse-than-champion").values["previous.test.metrics.accuracy"] == 0.9
    v3 = project.root / "candidate" / "v3"
    make_release(project, v3, pkg_text='{"v": 3}', succeeds=history / "v1", accuracy=0.85, objectives_yaml=CHAMPION)
    worse = _verify(project, v3, history)
    assert "OBJECTIVE_FAILED" in codes(worse) and not _objective(worse, "no-worse-than-champion").passed


def test_leaving_the_predecessor_out_does_not_skip_the_comparison(project: Project, history: Path) -> None:
    """A runner whose challenger is worse drops --succeeds to pass as a first release: the history
    holds a release of the project, so that is PREDECESSOR_UNDECLARED, and the criterion fails."""
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', accuracy=0.85, objectives_yaml=FIRST_PASS)
    report = _verify(project, v2, history)
    assert {"PREDECESSOR_UNDECLARED", "OBJECTIVE_FAILED"} <= codes(report)
    no_history = _verify(project, v2, None)  # nor without a history: a first release is not established
    assert "OBJECTIVE_FAILED" in codes(no_history)
    assert "--releases" in _objective(no_history, "no-worse-than-champion").message


def test_a_first_release_passes_only_when_the_objectives_say_so(project: Project) -> None:
    empty = project.root / "releases"
    empty.mkdir()
    v1 = project.root / "candidate" / "v1"
    make_release(project, v1, pkg_text='{"v": 1}', objectives_yaml=FIRST_PASS)
    assert _verify(project, v1, empty).passed
    strict = project.root / "candidate" / "strict"
    make_release(project, strict, pkg_text='{"v": 1}', objectives_yaml=CHAMPION)
    assert "OBJECTIVE_FAILED" in codes(_verify(project, strict, empty))


def test_a_predecessor_metric_signed_without_its_report_is_unbound(project: Project) -> None:
    """v1's test runner signed metrics.accuracy 0.1 with no report behind it (v1's own criteria never
    read test, so v1 passes its gate): a challenger compared with that number is refused."""
    history = project.root / "releases"
    p = Project(root=project.root, bundle=history / "v1")
    evaluate_only = OBJECTIVES_YAML.replace("stage: test", "stage: evaluate")
    build_lifecycle(p, stages=THROUGH_TEST[:-1], objectives_yaml=evaluate_only)
    p.attestor("pipeline").attest("test", materials=["model=out/model.bin", "holdback-data=work/holdback.csv"],
                                  metadata={"metrics": {"accuracy": 0.1}})
    p.write("pkg/manifest.json", '{"v": 1}')
    p.attestor("pipeline").attest("package", materials=["model=out/model.bin"], products=["package=pkg"],
                                  metadata={"name": "demo-model", "contents": ["model.bin"]})
    assert _verify(project, history / "v1", None).passed
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1", accuracy=0.5, objectives_yaml=CHAMPION)
    report = _verify(project, v2, history)
    assert "METADATA_UNBOUND" in codes(report)
    assert "previous" in next(f.message for f in report.findings if f.code == "METADATA_UNBOUND")


def test_a_cross_stage_read_must_be_bound_too(project: Project) -> None:
    """A test criterion reads evaluate.metrics.accuracy; evaluate's runner signs it with no report."""
    cross = OBJECTIVES_YAML + """\
  - name: test-close-to-evaluate
    stage: test
    expression: metrics.accuracy >= evaluate.metrics.accuracy - 0.05
    severity: block
    description: hold-back accuracy within 5 points of validation
"""
    build_lifecycle(project, objectives_yaml=cross)
    assert verify_bundle(project.bundle, project.policy()).passed  # evaluate is bound in build_lifecycle
    other = Project(root=project.root, bundle=project.root / "forged")
    build_lifecycle(other, stages=THROUGH_TEST[:7], objectives_yaml=cross)
    other.attestor("pipeline").attest("evaluate", materials=["model=out/model.bin", "eval-data=work/val.csv"],
                                      metadata={"metrics": {"accuracy": 0.5}})
    other.attestor("pipeline").attest("test", materials=["model=out/model.bin", "holdback-data=work/holdback.csv"],
                                      products=["test-report=work/test.json"],
                                      metadata_files=[project.root / "work/test.json"])
    report = verify_bundle(other.bundle, project.policy())
    unbound = [f for f in report.findings if f.code == "METADATA_UNBOUND"]
    assert unbound and unbound[0].stage == "evaluate"


def test_project_file_names_the_release_history(project: Project, history: Path) -> None:
    """mlspec.yaml releases: is the operator's default for verify and replay (found from the working
    directory, never from beside the bundle)."""
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1")
    (project.root / "mlspec.yaml").write_text("version: 1\npolicy: policies/default.yaml\nreleases: releases\n")
    ok = _cli("verify", "candidate/v2", cwd=project.root)
    assert ok.returncode == 0, ok.stdout
    replayed = _cli("replay", "candidate/v2", cwd=project.root)
    assert replayed.returncode == 0, replayed.stdout
    (v2 / "mlspec.yaml").write_text("version: 1\npolicy: ../../policies/default.yaml\nreleases: ../../nowhere\n")
    elsewhere = _cli("verify", str(v2), "--policy", str(project.policy()), cwd=project.root.parent)
    assert elsewhere.returncode == 1 and "PREDECESSOR_UNKNOWN" in elsewhere.stdout


def test_a_rerun_branched_from_a_release_succeeds_it(project: Project) -> None:
    """The workflow end to end: v1 ships as a first release; packaging is fixed on a branch of v1
    (same genesis: the same objectives, signed once); the re-packaged run succeeds v1. Leaving
    succeeds out on the branch does not make it a first release (the branch shares v1's genesis,
    but is not v1)."""
    from mlspec_attest.branch import branch_bundle

    history = project.root / "releases"
    history.mkdir()
    make_release(project, history / "v1", pkg_text='{"v": 1}', objectives_yaml=FIRST_PASS)
    assert _verify(project, history / "v1", history).passed  # alone in the history: a first release
    policy = Policy.from_file(project.policy())
    p = Project(root=project.root, bundle=project.root / "v2")
    for name, succeeds in (("v2", history / "v1"), ("v2-undeclared", None)):
        p = Project(root=project.root, bundle=project.root / name)
        branch_bundle(history / "v1", 8, p.bundle, policy, head_signers=(load_signer(project.key("pipeline")),))
        p.write("pkg/manifest.json", '{"v": 2, "fixed": true}')
        metadata: dict[str, Any] = {"name": "demo-model", "contents": ["model.bin"]}
        if succeeds is not None:
            metadata["succeeds"] = describe_release(succeeds).to_dict()
        p.attestor("pipeline").attest("package", materials=["model=out/model.bin"], products=["package=pkg"],
                                      metadata=metadata)
    report = _verify(project, project.root / "v2", history)
    assert report.passed, [f.message for f in report.findings]
    assert _objective(report, "no-worse-than-champion").values["previous.test.metrics.accuracy"] == 0.9
    undeclared = _verify(project, project.root / "v2-undeclared", history)
    assert {"PREDECESSOR_UNDECLARED", "OBJECTIVE_FAILED"} <= codes(undeclared)


def test_a_mistyped_history_is_exit_2_even_without_a_predecessor(project: Project, history: Path) -> None:
    """A typo in --releases must not silently turn the release checks off."""
    from mlspec_attest.errors import InputError

    with pytest.raises(InputError, match="release history directory not found"):
        _verify(project, history / "v1", project.root / "relases")


def test_a_successor_can_be_branched_after_its_package(project: Project, history: Path) -> None:
    """Re-running serve/monitor of v2: branching after its package does not need the history (the
    new chain's gate judges the predecessor again, with --releases)."""
    from mlspec_attest.branch import branch_bundle

    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1")
    branch_bundle(v2, 9, project.root / "v2-rerun", Policy.from_file(project.policy()),
                  head_signers=(load_signer(project.key("pipeline")),))
    assert _verify(project, project.root / "v2-rerun", history).passed
    assert "PREDECESSOR_UNKNOWN" in codes(_verify(project, project.root / "v2-rerun", None))


def test_a_past_release_whose_head_expired_is_still_a_predecessor(project: Project, history: Path) -> None:
    """Three days later v1's head (valid 24h) has expired; it is no longer re-signed, being past.
    The successor's signed pin, not v1's head, is what refuses an older or forked copy of v1."""
    from datetime import datetime, timedelta, timezone

    from conftest import resign_head

    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1")
    later = datetime.now(timezone.utc) + timedelta(days=3)
    resign_head(v2, [load_signer(project.key("pipeline"))], timedelta(hours=24), now=later)
    assert "HEAD_EXPIRED" in codes(verify_bundle(history / "v1", project.policy(), now=later))
    report = verify_bundle(v2, project.policy(), now=later, releases=history)
    assert report.passed, [f.message for f in report.findings]


# -- the adversarial review of releases / rollback (H1-H3, B1, B2) ---------------------------------------

def _ship_champion(project: Project, history: Path) -> None:
    """The history holds v1 (0.9) and v2 (0.95), the champion, which succeeds v1."""
    make_release(project, history / "v2", pkg_text='{"v": 2}', succeeds=history / "v1", accuracy=0.95,
                 objectives_yaml=CHAMPION)


def test_a_challenger_cannot_skip_the_champion(project: Project, history: Path) -> None:
    """H1: a challenger (0.91) declares v1 (0.9), skipping the champion v2 (0.95) that succeeds it, so its
    'no worse than the predecessor' criterion would pass: the gate refuses a superseded predecessor."""
    _ship_champion(project, history)
    v3 = project.root / "candidate" / "v3"
    make_release(project, v3, pkg_text='{"v": 3}', succeeds=history / "v1", accuracy=0.91, objectives_yaml=CHAMPION)
    report = _verify(project, v3, history)
    assert "PREDECESSOR_SUPERSEDED" in codes(report)
    finding = next(f for f in report.findings if f.code == "PREDECESSOR_SUPERSEDED")
    assert "v2" in finding.message and "--succeeds v2" in (finding.hint or "")
    honest = project.root / "candidate" / "v3-honest"  # declaring the champion: judged against 0.95, fails
    make_release(project, honest, pkg_text='{"v": 3}', succeeds=history / "v2", accuracy=0.91,
                 objectives_yaml=CHAMPION)
    judged = _verify(project, honest, history)
    assert "OBJECTIVE_FAILED" in codes(judged) and "PREDECESSOR_SUPERSEDED" not in codes(judged)
    better = project.root / "candidate" / "v4"
    make_release(project, better, pkg_text='{"v": 4}', succeeds=history / "v2", accuracy=0.96,
                 objectives_yaml=CHAMPION)
    assert _verify(project, better, history).passed


def test_a_fork_of_the_declared_predecessor_is_refused(project: Project, history: Path) -> None:
    """H1, forks: two verified releases succeed v1; a challenger naming v1 is refused, the gate picks no champion."""
    _ship_champion(project, history)
    make_release(project, history / "v2b", pkg_text='{"v": "2b"}', succeeds=history / "v1", accuracy=0.92,
                 objectives_yaml=CHAMPION)
    v3 = project.root / "candidate" / "v3"
    make_release(project, v3, pkg_text='{"v": 3}', succeeds=history / "v1", accuracy=0.99, objectives_yaml=CHAMPION)
    report = _verify(project, v3, history)
    finding = next(f for f in report.findings if f.code == "PREDECESSOR_SUPERSEDED")
    assert "fork" in finding.message and "v2;" in finding.message and "v2b" in finding.message
    assert "v2b" in (finding.hint or "")  # no champion suggested: the fork is named whole


def test_an_unverified_successor_in_the_history_does_not_supersede(project: Project, history: Path) -> None:
    """H1: a bundle that claims to succeed v1 but does not verify (one signature byte flipped) is ignored."""
    _ship_champion(project, history)
    shutil.move(str(history / "v2"), str(project.root / "forged-v2"))
    shutil.copytree(project.root / "forged-v2", history / "v2-forged")
    target = next((history / "v2-forged" / "attestations").glob("0005-*.dsse.json"))
    env = json.loads(target.read_text())
    sig = env["signatures"][0]["sig"]
    env["signatures"][0]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    target.write_text(json.dumps(env))
    v3 = project.root / "candidate" / "v3"
    make_release(project, v3, pkg_text='{"v": 3}', succeeds=history / "v1", accuracy=0.91, objectives_yaml=CHAMPION)
    report = _verify(project, v3, history)
    assert report.passed, [f.message for f in report.findings]


def test_a_hostile_history_costs_linear_verifications(project: Project, history: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """H2: n forged copies of v1 and of v2 (a split signature flipped) in the history once cost n + n**2
    verifications (each v2 copy verified every v1 copy); memoised, it is one per bundle."""
    _ship_champion(project, history)
    v3 = project.root / "candidate" / "v3"
    make_release(project, v3, pkg_text='{"v": 3}', succeeds=history / "v2", accuracy=0.96, objectives_yaml=CHAMPION)
    hostile = project.root / "hostile"
    n = 6
    for src in ("v1", "v2"):
        for i in range(n):
            copy = hostile / f"{src}-{i:02d}"
            shutil.copytree(history / src, copy)
            target = next((copy / "attestations").glob("0005-*.dsse.json"))
            env = json.loads(target.read_text())
            sig = env["signatures"][0]["sig"]
            env["signatures"][0]["sig"] = ("A" if sig[0] != "A" else "B") + sig[1:]
            target.write_text(json.dumps(env))
    count = [0]
    original = Verifier._verify

    def counted(self: Verifier, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Verifier, "_verify", counted)
    report = _verify(project, v3, hostile)
    assert "PREDECESSOR_UNVERIFIED" in codes(report)
    assert count[0] <= 2 * n + 1, count[0]  # the candidate itself, n copies of v2, n copies of v1
    message = next(f.message for f in report.findings if f.code == "PREDECESSOR_UNVERIFIED")
    assert "more" in message and len(message) < 2000  # bounded, whatever the history holds


def test_too_many_predecessor_candidates_fail_closed(project: Project, history: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """H2: more pinned candidates than the cap are not verified at all: a finding, not a pass nor a hang."""
    import mlspec_attest.verify.releases as verify_releases

    monkeypatch.setattr(verify_releases, "MAX_CANDIDATES", 2)
    for i in range(3):
        shutil.copytree(history / "v1", history / f"v1-copy{i}")
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1")
    assert "PREDECESSOR_CANDIDATES_EXCEEDED" in codes(_verify(project, v2, history))


def test_rollback_to_a_side_product_of_a_package_stage_is_refused(project: Project) -> None:
    """H3: a package stage attests the package (role package) and another product; a monitor naming the
    side product as its rollback target names something never released."""
    p = Project(root=project.root, bundle=project.root / "bundle")
    build_lifecycle(p, stages=THROUGH_TEST)
    p.write("pkg/manifest.json", '{"v": 1}')
    p.write("extra/model.pkl", "some other model, never the package")
    p.attestor("pipeline").attest("package", materials=["model=out/model.bin"],
                                  products=["package=pkg", "notes=extra"], metadata={"name": "demo-model"})
    serve = p.attestor("pipeline").attest("serve", materials=["package=pkg"], metadata={
        "rollout": {"strategy": "canary", "status": "succeeded"}})

    def monitor(target: str) -> None:
        p.attestor("pipeline").attest("monitor", materials=["pkg"], metadata={
            "signals": {"latency_p99_ms": 12.0}, "serve_attestation": serve.payload_sha256,
            "rollback_target": {"name": "x", "digest": {"sha256": target}}})

    monitor(digest_path(p.root / "extra").sha256)
    assert "ROLLBACK_TARGET_UNKNOWN" in codes(verify_bundle(p.bundle, project.policy()))
    honest = Project(root=project.root, bundle=project.root / "honest")
    build_lifecycle(honest, stages=THROUGH_TEST)
    honest.attestor("pipeline").attest("package", materials=["model=out/model.bin"],
                                       products=["package=pkg", "notes=extra"], metadata={"name": "demo-model"})
    p = honest
    serve = p.attestor("pipeline").attest("serve", materials=["package=pkg"], metadata={
        "rollout": {"strategy": "canary", "status": "succeeded"}})
    monitor(digest_path(p.root / "pkg").sha256)
    report = verify_bundle(honest.bundle, project.policy())
    assert "ROLLBACK_TARGET_UNKNOWN" not in codes(report), [f.message for f in report.findings]


def test_a_first_release_stays_a_predecessor_once_its_successor_shipped(project: Project) -> None:
    """B1: v1 passed as a first release (first_release: pass); once v2 (succeeding v1) is in the
    history, v1 verified as v2's predecessor must not see v2 as an 'earlier' release."""
    history = project.root / "releases"
    history.mkdir()
    make_release(project, history / "v1", pkg_text='{"v": 1}', objectives_yaml=FIRST_PASS)
    assert _verify(project, history / "v1", history).passed
    make_release(project, history / "v2", pkg_text='{"v": 2}', succeeds=history / "v1", objectives_yaml=FIRST_PASS)
    report = _verify(project, history / "v2", history)
    assert report.passed, [f.message for f in report.findings]
    v3 = project.root / "candidate" / "v3"
    make_release(project, v3, pkg_text='{"v": 3}', succeeds=history / "v2", objectives_yaml=FIRST_PASS)
    report = _verify(project, v3, history)
    assert report.passed, [f.message for f in report.findings]
    dropped = project.root / "candidate" / "dropped"  # still: leaving succeeds out is refused
    make_release(project, dropped, pkg_text='{"v": 4}', objectives_yaml=FIRST_PASS)
    assert "PREDECESSOR_UNDECLARED" in codes(_verify(project, dropped, history))


def test_a_predecessor_under_older_objectives_is_still_a_predecessor(project: Project, history: Path) -> None:
    """B2: the policy raises objectives.min_revision to 2 (as docs/workflows.md advises); v1, released under
    revision 1, stays a valid predecessor; a predecessor of another project does not."""
    doc = yaml.safe_load(project.policy().read_text())
    doc["objectives"]["min_revision"] = 2
    policy = project.policy("raised.yaml")
    policy.write_text(yaml.safe_dump(doc))
    revision_2 = CHAMPION.replace("revision: 1", "revision: 2")
    v2 = project.root / "candidate" / "v2"
    make_release(project, v2, pkg_text='{"v": 2}', succeeds=history / "v1", objectives_yaml=revision_2)
    report = _verify(project, v2, history, policy)
    assert report.passed, [f.message for f in report.findings]
    old = project.root / "candidate" / "old"  # the successor itself must meet today's pin
    make_release(project, old, pkg_text='{"v": 2}', succeeds=history / "v1", objectives_yaml=CHAMPION)
    assert "OBJECTIVES_OUTDATED" in codes(_verify(project, old, history, policy))
    other = project.root / "other-history"
    make_release(project, other / "v1", pkg_text='{"v": 1}',
                 objectives_yaml=OBJECTIVES_YAML.replace("project: my-model", "project: another-model"))
    v2b = project.root / "candidate" / "v2b"
    make_release(project, v2b, pkg_text='{"v": 2}', succeeds=other / "v1", objectives_yaml=revision_2)
    report = _verify(project, v2b, other, policy)
    assert "PREDECESSOR_UNVERIFIED" in codes(report)
    assert "OBJECTIVES_PROJECT_MISMATCH" in next(f.message for f in report.findings
                                                 if f.code == "PREDECESSOR_UNVERIFIED")


def test_a_champion_not_yet_served_still_supersedes(project: Project, history: Path) -> None:
    """H1 variation: under a policy whose full phase requires serve, the champion v2 in the history has
    passed the deploy gate but not served yet; it is a release all the same, so v1 is superseded."""
    doc = yaml.safe_load(project.policy().read_text())
    doc["stages"]["serve"] = {**doc["stages"].get("serve", {}), "required": True}
    policy = project.policy("serve-required.yaml")
    policy.write_text(yaml.safe_dump(doc))
    _ship_champion(project, history)
    v3 = project.root / "candidate" / "v3"
    make_release(project, v3, pkg_text='{"v": 3}', succeeds=history / "v1", accuracy=0.91, objectives_yaml=CHAMPION)
    report = verify_bundle(v3, policy, releases=history, phase="deploy")
    assert "PREDECESSOR_SUPERSEDED" in codes(report), [f.message for f in report.findings]
    honest = project.root / "candidate" / "v4"
    make_release(project, honest, pkg_text='{"v": 4}', succeeds=history / "v2", accuracy=0.96,
                 objectives_yaml=CHAMPION)
    assert verify_bundle(honest, policy, releases=history, phase="deploy").passed

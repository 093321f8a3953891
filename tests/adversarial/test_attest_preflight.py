"""``mlspec attest`` fails early: it refuses what the gate would refuse, before anything is written.

Who tries what: the pipeline's runner (it holds the pipeline key and writes the
bundle) appends a stage out of order, repeats one, signs with a revoked or foreign key,
or runs on a host whose clock is far behind. Each is refused with AppendRefused (exit 1)
naming the gate's finding code; the bundle and its signed head are byte for byte as
before. ``force`` appends anyway and says so; the gate, reading its own policy, still
refuses the chain.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import Project, build_lifecycle, resign_head

import mlspec_attest.attest.attestor as attestor_module
from mlspec_attest.attest.attestor import Attestor
from mlspec_attest.attest.head import HeadSigning
from mlspec_attest.cli.main import main
from mlspec_attest.errors import AppendRefused
from mlspec_attest.keys import PublicKey, load_signer
from mlspec_attest.verify import verify_bundle
from mlspec_attest.verify.preflight import AppendGate

UP_TO = ("objectives", "ingest", "analyze", "transform", "validate", "split", "train", "evaluate", "test", "package")


def snapshot(bundle: Path) -> dict[str, bytes]:
    """Every file of the bundle (head.dsse.json included), to show a refusal wrote nothing.

    The empty advisory lock file of an existing bundle is not content: taking the lock creates it."""
    return {str(p.relative_to(bundle)): p.read_bytes() for p in sorted(bundle.rglob("*"))
            if p.is_file() and p.name != ".mlspec.lock"}


def gated(project: Project, *signers: str, policy: Path | None = None, force: bool = False) -> Attestor:
    att = project.attestor(*signers)
    att.policy = AppendGate.from_file(policy or project.policy())
    att.force = force
    return att


def with_policy(project: Project, name: str, **changes: object) -> Path:
    data = yaml.safe_load(project.policy().read_text())
    data.update(changes)
    return project.write(f"policies/{name}", yaml.safe_dump(data))


def keyid(project: Project, name: str) -> str:
    return PublicKey.from_file(project.root / "keys" / f"{name}.pub").keyid


def refused(att: Attestor, stage: str, **kwargs: object) -> AppendRefused:
    before = snapshot(att.bundle.root)
    with pytest.raises(AppendRefused) as info:
        att.attest(stage, **kwargs)  # type: ignore[arg-type]
    assert snapshot(att.bundle.root) == before, "a refused append wrote or changed a file"
    return info.value


def codes(err: AppendRefused) -> set[str]:
    return {f.code for f in err.findings}  # type: ignore[attr-defined]


def train(att: Attestor) -> AppendRefused:
    return refused(att, "train", materials=["train-data=work/train.csv"], products=["model=out/model.bin"],
                   metadata={"framework": {"name": "sklearn"}, "hyperparameters": {"C": 2.0}})


@pytest.fixture
def packaged(project: Project) -> Project:
    build_lifecycle(project, stages=UP_TO)
    return project


# -- stage order and repeats ----------------------------------------------------------------------------
def test_a_second_train_after_package_is_refused(packaged: Project) -> None:
    err = train(gated(packaged))
    assert {"STAGE_ORDER", "STAGE_REPEATED"} <= codes(err)
    assert "refused to append sequence 10 (train)" in str(err) and "--force" in str(err)
    assert "\n" not in str(err)


@pytest.mark.parametrize("stage,code", [("evaluate", "STAGE_ORDER"), ("package", "STAGE_REPEATED"),
                                        ("ingest", "STAGE_ORDER")])
def test_every_out_of_order_or_repeated_stage_is_refused(packaged: Project, stage: str, code: str) -> None:
    kwargs: dict[str, object] = {"metadata": {"name": "demo-model", "contents": ["model.bin"]}} \
        if stage == "package" else {}
    if stage == "evaluate":
        kwargs = {"materials": ["model=out/model.bin", "eval-data=work/val.csv"],
                  "metadata": {"metrics": {"accuracy": 0.9}}}
    if stage == "ingest":
        kwargs = {"metadata": {"sources": [{"name": "raw", "connector": "csv", "uri": "raw/data.csv"}]}}
    assert code in codes(refused(gated(packaged), stage, **kwargs))


def test_a_chain_that_does_not_start_with_the_objectives_is_refused(project: Project) -> None:
    project.write("raw/data.csv", "x\n1\n")
    err = refused(gated(project), "ingest", products=["raw-data=raw/data.csv"],
                  metadata={"sources": [{"name": "raw", "connector": "csv", "uri": "raw/data.csv"}]})
    assert "CHAIN_NO_OBJECTIVES" in codes(err)
    assert not project.bundle.exists()  # a refused first append does not even create the bundle


def test_a_stage_the_policy_does_not_list_is_refused(packaged: Project) -> None:
    err = refused(gated(packaged, policy=packaged.policy("minimal.yaml")), "serve", materials=["package=pkg"],
                  metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})
    assert "STAGE_NOT_ALLOWED" in codes(err)


# -- signers and revocation -----------------------------------------------------------------------------
def serve(att: Attestor) -> AppendRefused:
    return refused(att, "serve", materials=["package=pkg"],
                   metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})


def test_signing_with_a_revoked_key_is_refused_and_the_head_is_untouched(packaged: Project) -> None:
    head = (packaged.bundle / "head.dsse.json").read_bytes()
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    policy = with_policy(packaged, "revoked.yaml", revoked=[{"keyid": keyid(packaged, "pipeline"), "after": past,
                                                             "reason": "leaked"}])
    err = serve(gated(packaged, policy=policy))
    assert codes(err) == {"KEY_REVOKED"} and "leaked" in str(err)
    assert (packaged.bundle / "head.dsse.json").read_bytes() == head


def test_an_unconditionally_revoked_key_is_refused(packaged: Project) -> None:
    policy = with_policy(packaged, "revoked.yaml", revoked=[{"keyid": keyid(packaged, "pipeline")}])
    assert "KEY_REVOKED" in codes(serve(gated(packaged, policy=policy)))


def test_a_key_revoked_from_a_later_time_may_sign_only_where_trusted_time_can_prove_it(packaged: Project) -> None:
    """Signed now, before ``after``: counted at the gate only if a head by an unrevoked key (or a TSA) proves it."""
    future = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    revoked = [{"keyid": keyid(packaged, "pipeline"), "after": future}]
    alone = with_policy(packaged, "alone.yaml", revoked=revoked)  # the only head signer is the revoked key
    assert "KEY_REVOKED" in codes(serve(gated(packaged, policy=alone)))
    policy = with_policy(packaged, "later.yaml", revoked=revoked,
                         head={"signers": ["pipeline", "owner"], "required": True, "max_validity": "7d"})
    att = gated(packaged, policy=policy)
    att.head = HeadSigning((load_signer(packaged.key("owner")),))
    att.attest("serve", materials=["package=pkg"], metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})
    assert "KEY_REVOKED" not in {f.code for f in verify_bundle(packaged.bundle, policy).findings}


def test_a_head_by_a_key_revoked_as_of_now_is_not_believed(packaged: Project) -> None:
    """Attack (holds a leaked, now revoked head key): delete the tail and sign a head naming the shortened
    tip with that key; a writer whose head key is another head signer must not sign over it."""
    from mlspec_attest.attest.head import HeadAhead

    policy = with_policy(packaged, "leaked.yaml", revoked=[{"keyid": keyid(packaged, "pipeline"),
                                                              "after": "2020-01-01T00:00:00Z"}],
                         head={"signers": ["pipeline", "owner"], "required": True, "max_validity": "7d"})
    sorted((packaged.bundle / "attestations").glob("*.dsse.json"))[-1].unlink()
    resign_head(packaged.bundle, [load_signer(packaged.key("pipeline"))], timedelta(hours=1))  # the leaked key
    before = snapshot(packaged.bundle)
    att = gated(packaged, "owner", policy=policy, force=True)  # --force overrides the gate's rules, never this
    att.head = HeadSigning((load_signer(packaged.key("owner")),))
    with pytest.raises(HeadAhead, match="signed by no key this writer trusts"):
        att.attest("serve", materials=["package=pkg"], metadata={"rollout": {"status": "succeeded"}})
    assert snapshot(packaged.bundle) == before


@pytest.mark.parametrize("signer,code", [("intruder", "SIGNATURE_INVALID"), ("owner", "SIGNER_NOT_ALLOWED")])
def test_a_signer_the_policy_does_not_allow_for_the_stage_is_refused(packaged: Project, signer: str,
                                                                     code: str) -> None:
    assert code in codes(serve(gated(packaged, signer)))


def test_a_threshold_met_by_co_signing_later_is_not_refused(packaged: Project) -> None:
    """threshold 2: one signature now, 'mlspec attest cosign' adds the second; attest must not stand in the way."""
    data = yaml.safe_load(packaged.policy().read_text())
    data["keys"]["second"] = "../keys/intruder.pub"
    data["stages"]["serve"] = {"required": False, "signers": ["pipeline", "second"], "threshold": 2}
    policy = packaged.write("policies/two.yaml", yaml.safe_dump(data))
    att = gated(packaged, policy=policy).attest("serve", materials=["package=pkg"],
                                                metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})
    assert att.forced == ()


# -- clocks ---------------------------------------------------------------------------------------------
def _clock(monkeypatch: pytest.MonkeyPatch, offset: timedelta) -> None:
    def behind() -> str:
        return (datetime.now(timezone.utc) + offset).strftime("%Y-%m-%dT%H:%M:%SZ")

    monkeypatch.setattr(attestor_module, "utc_now", behind)


def test_a_clock_thirty_minutes_behind_is_refused(packaged: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _clock(monkeypatch, timedelta(minutes=-30))
    err = serve(gated(packaged))
    assert codes(err) == {"CHAIN_TIME_REGRESSION"} and "clock" in str(err)


def test_a_clock_behind_within_the_policy_skew_is_accepted_by_attest_and_gate(
        packaged: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _clock(monkeypatch, timedelta(minutes=-2))  # default clock_skew: 5m
    gated(packaged).attest("serve", materials=["package=pkg"],
                           metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})
    report = verify_bundle(packaged.bundle, packaged.policy())
    assert "CHAIN_TIME_REGRESSION" not in {f.code for f in report.findings}, report.findings


def test_the_skew_is_the_policys_clock_skew(packaged: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _clock(monkeypatch, timedelta(minutes=-2))
    tight = with_policy(packaged, "tight.yaml", clock_skew="30s")
    assert "CHAIN_TIME_REGRESSION" in codes(serve(gated(packaged, policy=tight)))
    # and the gate applies the same bound: forced through, it fails verification
    gated(packaged, policy=tight, force=True).attest(
        "serve", materials=["package=pkg"], metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})
    assert "CHAIN_TIME_REGRESSION" in {f.code for f in verify_bundle(packaged.bundle, tight).findings}


def test_a_start_time_in_the_future_is_refused(packaged: Project) -> None:
    later = (datetime.now(timezone.utc) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    err = refused(gated(packaged), "serve", materials=["package=pkg"], started_on=later,
                  metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})
    assert "TIME_IN_FUTURE" in codes(err)


def test_an_expired_policy_refuses_every_append(packaged: Project) -> None:
    expired = with_policy(packaged, "expired.yaml", expires="2020-01-01T00:00:00Z")
    assert "POLICY_EXPIRED" in codes(serve(gated(packaged, policy=expired)))


# -- objectives -----------------------------------------------------------------------------------------
def test_objectives_the_policy_does_not_pin_are_refused(project: Project) -> None:
    project.write("objectives.yaml", (Path(__file__).resolve().parents[1] / "conftest.py").read_text()
                  .split('OBJECTIVES_YAML = """\\\n')[1].split('"""')[0].replace("my-model", "other-model"))
    err = refused(gated(project, "owner"), "objectives", metadata_files=[project.root / "objectives.yaml"])
    assert codes(err) == {"OBJECTIVES_PROJECT_MISMATCH"}
    assert not project.bundle.exists()


# -- force, and the gate's own policy -------------------------------------------------------------------
def test_force_appends_says_why_and_the_gate_still_refuses(packaged: Project) -> None:
    att = gated(packaged, force=True).attest("train", materials=["train-data=work/train.csv"],
                                             products=["model=out/model.bin"],
                                             metadata={"framework": {"name": "sklearn"}, "hyperparameters": {"C": 2}})
    assert {f.code for f in att.forced} >= {"STAGE_ORDER"}
    assert att.path.is_file()
    assert "STAGE_ORDER" in {f.code for f in verify_bundle(packaged.bundle, packaged.policy()).findings}


def test_a_laxer_policy_at_attest_time_does_not_matter_to_the_gate(packaged: Project) -> None:
    """The runner attests under a policy without the revocation; the gate reads its own and refuses."""
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    strict = with_policy(packaged, "strict.yaml", revoked=[{"keyid": keyid(packaged, "pipeline"), "after": past}])
    gated(packaged, policy=packaged.policy()).attest(
        "serve", materials=["package=pkg"], metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})
    report = verify_bundle(packaged.bundle, strict)
    assert "KEY_REVOKED" in {f.code for f in report.findings if f.severity == "error"}


def test_the_full_lifecycle_attests_under_the_gate_without_a_false_refusal(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = AppendGate.from_file(project.policy())
    plain = Project.attestor

    def attestor(self: Project, *names: str, bundle: Path | None = None, head: bool = True) -> Attestor:
        att = plain(self, *names, bundle=bundle, head=head)
        att.policy = gate
        return att

    monkeypatch.setattr(Project, "attestor", attestor)
    build_lifecycle(project)  # all 13 stages, monitor and log included: none is refused
    assert verify_bundle(project.bundle, project.policy()).passed


# -- the command line -----------------------------------------------------------------------------------
def _cli_project(project: Project, policy: str | None = "policies/default.yaml") -> None:
    text = "version: 1\nbundle: bundle\nkey: keys/pipeline.key\n"
    text += f"policy: {policy}\n" if policy else ""
    project.write("mlspec.yaml", text)


def _serve_argv() -> list[str]:
    return ["attest", "stage", "serve", "--material", "package=pkg", "--set", "rollout.strategy=canary",
            "--set", "rollout.status=succeeded"]


def test_cli_refusal_is_exit_1_one_line_and_writes_nothing(packaged: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _cli_project(packaged)
    monkeypatch.chdir(packaged.root)
    before = snapshot(packaged.bundle)
    result = CliRunner().invoke(main, ["attest", "stage", "train", "--material", "train-data=work/train.csv",
                                       "--product", "model=out/model.bin", "--set", "framework.name=sklearn"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "[STAGE_ORDER]" in lines[0]
    assert "Traceback" not in result.output and snapshot(packaged.bundle) == before


def test_cli_force_appends_and_warns_loudly(packaged: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _cli_project(packaged)
    monkeypatch.chdir(packaged.root)
    result = CliRunner().invoke(main, ["attest", "stage", "train", "--material", "train-data=work/train.csv",
                                       "--product", "model=out/model.bin", "--set", "framework.name=sklearn",
                                       "--force"])
    assert result.exit_code == 0, result.output
    assert "WARNING: --force" in result.stderr and "[STAGE_ORDER]" in result.stderr
    assert (packaged.bundle / "attestations" / "0010-train.dsse.json").is_file()


@pytest.mark.parametrize("broken", ["missing", "invalid"])
def test_cli_a_policy_named_in_mlspec_yaml_that_cannot_load_refuses(packaged: Project,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     broken: str) -> None:
    if broken == "invalid":
        packaged.write("policies/broken.yaml", "version: 1\nstages: {serve: {signers: [nobody]}}\n")
    _cli_project(packaged, "policies/gone.yaml" if broken == "missing" else "policies/broken.yaml")
    monkeypatch.chdir(packaged.root)
    before = snapshot(packaged.bundle)
    result = CliRunner().invoke(main, _serve_argv())
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert snapshot(packaged.bundle) == before


def test_cli_without_a_policy_appends_and_warns_once(packaged: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _cli_project(packaged, None)
    monkeypatch.chdir(packaged.root)
    result = CliRunner().invoke(main, _serve_argv())
    assert result.exit_code == 0, result.output
    assert result.stderr.count("not checked against the gate's rules") == 1


def test_cli_explicit_policy_is_used(packaged: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _cli_project(packaged, None)
    monkeypatch.chdir(packaged.root)
    policy = with_policy(packaged, "revoked.yaml", revoked=[{"keyid": keyid(packaged, "pipeline")}])
    result = CliRunner().invoke(main, [*_serve_argv(), "--policy", str(policy)])
    assert result.exit_code == 1 and "[KEY_REVOKED]" in result.stderr


def test_head_signing_uses_the_same_lock_and_is_not_signed_on_refusal(packaged: Project) -> None:
    """The head is re-signed only after a successful append; a refusal leaves the old head valid."""
    att = gated(packaged)
    att.head = HeadSigning((load_signer(packaged.key("pipeline")),))
    train(att)
    assert verify_bundle(packaged.bundle, packaged.policy()).passed


# -- long chains: the rules that decide read a handful of files ---------------------------------------------
def test_a_long_chain_is_judged_from_the_deciding_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import make_chain

    import mlspec_attest.verify.preflight as preflight

    make_chain.build(400, tmp_path / "c")  # the lifecycle, then monitor and log alternating
    reads: list[str] = []
    real = preflight.read_attestation_file

    def counting(path: Path) -> bytes:
        reads.append(path.name)
        return real(path)

    monkeypatch.setattr(preflight, "read_attestation_file", counting)
    root = tmp_path / "c"
    (root / "model.bin").write_text("m")
    att = Attestor(root / "bundle", load_signer(root / "keys" / "pipeline.key"), base_dir=root,
                   policy=AppendGate.from_file(root / "policy.yaml"))
    err = refused(att, "train", materials=["train-data=model.bin"], products=["model=model.bin"],
                  metadata={"framework": {"name": "sklearn"}, "hyperparameters": {"C": 2}})
    assert {"STAGE_ORDER", "STAGE_REPEATED"} <= codes(err)
    assert len(reads) <= 15 and "0000-objectives.dsse.json" in reads and any(name.startswith("0399-") for name in reads)
    # a repeatable stage after its predecessors is still accepted
    att.attest("log", metadata={"tree_size": 0, "root_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"})


# -- co-signing ------------------------------------------------------------------------------------------
def _two_signer_policy(project: Project, *, revoke_second: bool) -> Path:
    data = yaml.safe_load(project.policy().read_text())
    data["keys"]["second"] = "../keys/intruder.pub"
    data["stages"]["serve"] = {"required": False, "signers": ["pipeline", "second"], "threshold": 2}
    if revoke_second:
        data["revoked"] = [{"keyid": keyid(project, "intruder"), "reason": "left the team"}]
    return project.write("policies/two.yaml", yaml.safe_dump(data))


def test_cosigning_with_a_revoked_key_is_refused_and_writes_nothing(packaged: Project) -> None:
    from mlspec_attest.attest.cosign import cosign

    policy = _two_signer_policy(packaged, revoke_second=True)
    att = gated(packaged, policy=policy).attest(  # the pipeline key is fine: one signature now, the rest co-signed
        "serve", materials=["package=pkg"], metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})
    assert att.forced == ()
    before = snapshot(packaged.bundle)
    with pytest.raises(AppendRefused, match=r"\[KEY_REVOKED\].*left the team"):
        cosign(att.path, load_signer(packaged.key("intruder")), policy=AppendGate.from_file(policy))
    assert snapshot(packaged.bundle) == before
    overridden: list = []
    cosign(att.path, load_signer(packaged.key("intruder")), policy=AppendGate.from_file(policy), force=True,
           overridden=overridden)
    assert [f.code for f in overridden] == ["KEY_REVOKED"]
    assert "KEY_REVOKED" in {f.code for f in verify_bundle(packaged.bundle, policy).findings}


def test_cosigning_with_an_allowed_key_meets_the_threshold(packaged: Project) -> None:
    from mlspec_attest.attest.cosign import cosign

    policy = _two_signer_policy(packaged, revoke_second=False)
    att = gated(packaged, policy=policy).attest(
        "serve", materials=["package=pkg"], metadata={"rollout": {"strategy": "canary", "status": "succeeded"}})
    cosign(att.path, load_signer(packaged.key("intruder")), policy=AppendGate.from_file(policy))
    assert "THRESHOLD_NOT_MET" not in {f.code for f in verify_bundle(packaged.bundle, policy).findings}

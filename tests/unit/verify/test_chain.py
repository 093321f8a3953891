"""The chain and the gate: a full lifecycle passes; every named attack is refused
with exit 1 and a finding that names the sequence or stage."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from conftest import Project, build_lifecycle, serve_payload

from mlspec_attest.attest.cosign import cosign
from mlspec_attest.digests import digest_path
from mlspec_attest.errors import InputError
from mlspec_attest.keys import load_signer
from mlspec_attest.leakage import write_fingerprints
from mlspec_attest.model.envelope import Envelope
from mlspec_attest.verify import verify_bundle


def codes(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in report.findings if f.severity == "error"}


def finding(report, code: str):  # type: ignore[no-untyped-def]
    return next(f for f in report.findings if f.code == code)


def att(project: Project, seq: int) -> Path:
    return next((project.bundle / "attestations").glob(f"{seq:04d}-*.dsse.json"))


@pytest.fixture
def lifecycle(project: Project) -> Project:
    build_lifecycle(project)
    return project


def test_full_lifecycle_passes_default_policy(lifecycle: Project) -> None:
    report = verify_bundle(lifecycle.bundle, lifecycle.policy())
    assert report.passed, [f.message for f in report.findings]
    assert [s.stage for s in report.stages][:3] == ["objectives", "ingest", "analyze"]
    assert len(report.stages) == 13
    assert report.objectives[0].passed and report.objectives[0].values == {"metrics.accuracy": 0.9}


def test_edited_payload_byte_is_refused(lifecycle: Project) -> None:
    path = att(lifecycle, 6)
    env = json.loads(path.read_text())
    payload = bytearray(Envelope.from_dict(env).payload)
    i = payload.index(b'"C":1') + 4
    payload[i] = ord("2")  # hyperparameter C: 1 -> 2, still canonical JSON
    env["payload"] = __import__("base64").b64encode(bytes(payload)).decode()
    path.write_text(json.dumps(env))
    report = verify_bundle(lifecycle.bundle, lifecycle.policy())
    assert not report.passed
    f = finding(report, "SIGNATURE_INVALID")
    assert f.sequence == 6 and "sequence 6" in f.message
    # The next link no longer matches either.
    assert finding(report, "CHAIN_LINK_BROKEN").sequence == 7


def test_removed_attestation_is_refused(lifecycle: Project) -> None:
    att(lifecycle, 4).unlink()
    report = verify_bundle(lifecycle.bundle, lifecycle.policy())
    f = finding(report, "CHAIN_GAP")
    assert f.sequence == 4 and "sequence 4 missing" in f.message


def test_swapped_attestations_are_refused(lifecycle: Project) -> None:
    a, b = att(lifecycle, 2), att(lifecycle, 3)
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    report = verify_bundle(lifecycle.bundle, lifecycle.policy())
    assert not report.passed
    assert {f.sequence for f in report.findings if f.code == "FILE_NAME_MISMATCH"} == {2, 3}


def test_attestation_spliced_from_another_chain_is_refused(project: Project, tmp_path: Path) -> None:
    build_lifecycle(project)
    other = Project(root=project.root, bundle=project.root / "other-bundle")
    project.write("out/model.bin", "another model")
    build_lifecycle(other)
    shutil.copyfile(att(other, 7), att(project, 7))
    report = verify_bundle(project.bundle, project.policy())
    assert finding(report, "CHAIN_GENESIS_MISMATCH").sequence == 7
    assert finding(report, "CHAIN_LINK_BROKEN").sequence in (7, 8)


def test_untrusted_key_signature_is_refused(lifecycle: Project) -> None:
    intruder = load_signer(lifecycle.key("intruder"))
    lifecycle.attestor("intruder").attest("monitor", metadata={
        "signals": {"latency_p99_ms": 1.0},
        "rollback_target": {"name": "pkg", "digest": {"sha256": "0" * 64}}})
    report = verify_bundle(lifecycle.bundle, lifecycle.policy())
    f = finding(report, "SIGNATURE_INVALID")
    assert f.sequence == 13 and intruder.keyid not in f.message


def test_required_stage_missing(project: Project) -> None:
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate", "split",
                                     "train", "test", "package"))
    report = verify_bundle(project.bundle, project.policy())
    f = finding(report, "STAGE_MISSING")
    assert f.stage == "evaluate"


def test_test_and_evaluate_on_same_data(project: Project) -> None:
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate", "split",
                                     "train", "evaluate"))
    project.attestor().attest("test", materials=["model=out/model.bin", "holdback-data=work/val.csv"],
                              metadata={"metrics": {"accuracy": 0.9}})
    report = verify_bundle(project.bundle, project.policy())
    assert finding(report, "TEST_DATA_REUSED").stage == "test"
    assert finding(report, "TEST_DATA_NOT_HOLDBACK").stage == "test"


def test_packaged_model_differs_from_trained(project: Project) -> None:
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate", "split",
                                     "train", "evaluate", "test"))
    project.write("out/other.bin", "a different model")
    project.attestor().attest("package", materials=["model=out/other.bin"], products=["pkg"],
                              metadata={"name": "m"})
    report = verify_bundle(project.bundle, project.policy())
    f = finding(report, "MODEL_MISMATCH")
    assert f.stage == "package" and "out/other.bin" in f.message


def test_stage_signed_by_key_not_allowed_for_it(project: Project) -> None:
    # The owner key is trusted, but only for objectives.
    build_lifecycle(project, stages=("objectives",))
    project.write("raw/data.csv", "x\n1\n")
    project.attestor("owner").attest("ingest", materials=["external=raw/data.csv"], products=["raw/data.csv"],
                                     metadata={"sources": [{"name": "raw"}]})
    report = verify_bundle(project.bundle, project.policy())
    f = finding(report, "SIGNER_NOT_ALLOWED")
    assert f.stage == "ingest" and "owner" in f.message


def _threshold_policy(project: Project, threshold: int = 2) -> Path:
    policy = yaml.safe_load(project.policy().read_text())
    policy["keys"]["second"] = "../keys/intruder.pub"
    policy["stages"]["train"] = {"required": True, "signers": ["pipeline", "second"], "threshold": threshold}
    path = project.root / "policies" / "threshold.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def test_threshold_of_two_not_met_by_one_key_signing_twice(lifecycle: Project) -> None:
    policy = _threshold_policy(lifecycle)
    train = att(lifecycle, 6)
    env = json.loads(train.read_text())
    env["signatures"].append(dict(env["signatures"][0]))  # the same signature again
    pipeline = load_signer(lifecycle.key("pipeline"))
    envelope = Envelope.from_dict(env)
    envelope.sign(pipeline)  # and a fresh second signature by the same key
    train.write_bytes(envelope.to_json())
    # Ed25519 is deterministic: the "fresh" signature is the same bytes, and an envelope listing one
    # signature twice is refused outright (no DSSE tool writes it).
    report = verify_bundle(lifecycle.bundle, policy)
    assert "same signature appears twice" in finding(report, "ENVELOPE_INVALID").message
    # Listed once, one key is one signer, whatever else the envelope holds.
    envelope = Envelope.from_dict(env)
    train.write_bytes(envelope.to_json())
    f = finding(verify_bundle(lifecycle.bundle, policy), "THRESHOLD_NOT_MET")
    assert f.stage == "train" and "1 distinct" in f.message
    # A real second key meets it.
    train.write_bytes(json.dumps(env).encode())
    cosign(train, load_signer(lifecycle.key("intruder")))
    assert verify_bundle(lifecycle.bundle, policy).passed


def test_cosign_refuses_the_same_key_twice(lifecycle: Project) -> None:
    with pytest.raises(InputError, match="already signed"):
        cosign(att(lifecycle, 6), load_signer(lifecycle.key("pipeline")))


def test_expired_policy(lifecycle: Project) -> None:
    policy = yaml.safe_load(lifecycle.policy().read_text())
    policy["expires"] = "2020-01-01T00:00:00Z"
    path = lifecycle.root / "policies" / "expired.yaml"
    path.write_text(yaml.safe_dump(policy))
    report = verify_bundle(lifecycle.bundle, path)
    assert "POLICY_EXPIRED" in codes(report)


def test_stage_out_of_order(project: Project) -> None:
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate", "split",
                                     "train", "evaluate", "test", "package"))
    project.attestor().attest("train", materials=["train-data=work/train.csv"], products=["model=out/model.bin"],
                              metadata={"framework": "sklearn"})
    report = verify_bundle(project.bundle, project.policy())
    f = finding(report, "STAGE_ORDER")
    assert f.stage == "train" and f.sequence == 10


def test_monitor_and_log_may_interleave(lifecycle: Project) -> None:
    att = lifecycle.attestor()
    pkg = digest_path(lifecycle.root / "pkg").sha256
    serve = serve_payload(lifecycle.bundle)
    att.attest("monitor", materials=["pkg"], metadata={"signals": {"x": 1.0}, "serve_attestation": serve,
                                                       "rollback_target": {"name": "pkg", "digest": {"sha256": pkg}}})
    att.attest("log", metadata={"tree_size": 1, "root_hash": "1" * 64, "pipeline": serve})
    assert verify_bundle(lifecycle.bundle, lifecycle.policy()).passed


def test_rollback_target_must_be_an_attested_package(lifecycle: Project) -> None:
    lifecycle.attestor().attest("monitor", materials=["pkg"], metadata={"signals": {"x": 1.0}, "rollback_target": {
        "name": "old-model", "digest": {"sha256": "0" * 64}}})
    report = verify_bundle(lifecycle.bundle, lifecycle.policy())
    f = finding(report, "ROLLBACK_TARGET_UNKNOWN")
    assert f.sequence == 13 and "old-model" in f.message


def test_artifact_that_is_not_the_packaged_one(lifecycle: Project) -> None:
    good = verify_bundle(lifecycle.bundle, lifecycle.policy(), [lifecycle.root / "pkg"])
    assert good.passed and good.artifacts[0]["matched"]["sequence"] == 9
    lifecycle.write("pkg/model.bin", "swapped weights")
    report = verify_bundle(lifecycle.bundle, lifecycle.policy(), [lifecycle.root / "pkg"])
    f = finding(report, "ARTIFACT_MISMATCH")
    assert f.stage == "package"


def test_renamed_file_inside_packaged_directory_is_refused(lifecycle: Project) -> None:
    # The OpenSSF digest form ignores names; the manifest digest does not.
    (lifecycle.root / "pkg/manifest.json").rename(lifecycle.root / "pkg/manifest2.json")
    report = verify_bundle(lifecycle.bundle, lifecycle.policy(), [lifecycle.root / "pkg"])
    assert "ARTIFACT_MISMATCH" in codes(report)


def _split_with_fingerprints(project: Project, holdback_rows: str) -> None:
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate"))
    project.write("work/train.csv", "x,y,group\n1,0,a\n2,1,b\n")
    project.write("work/holdback.csv", "x,y,group\n" + holdback_rows)
    write_fingerprints(project.root / "work/train.csv", project.root / "work/train.fp")
    write_fingerprints(project.root / "work/holdback.csv", project.root / "work/holdback.fp")
    project.attestor().attest("split", materials=["work/clean.csv"], products=[
        "train-data=work/train.csv", "holdback-data=work/holdback.csv",
        "fingerprints-train=work/train.fp", "fingerprints-holdback=work/holdback.fp"],
        metadata={"sets": {"train": {"size": 2}, "holdback": {"size": 2}}})


def test_train_holdback_overlap_is_refused(project: Project) -> None:
    _split_with_fingerprints(project, "2,1,b\n3,0,a\n")
    report = verify_bundle(project.bundle, project.policy())
    f = finding(report, "LEAKAGE")
    assert f.stage == "split" and "1 row(s)" in f.message


def test_disjoint_sets_raise_no_leakage(project: Project) -> None:
    _split_with_fingerprints(project, "3,0,a\n4,1,b\n")
    report = verify_bundle(project.bundle, project.policy())
    assert "LEAKAGE" not in codes(report)
    assert "LEAKAGE_EVIDENCE_INVALID" not in codes(report)


def test_tampered_fingerprint_blob_is_refused(project: Project) -> None:
    _split_with_fingerprints(project, "3,0,a\n4,1,b\n")
    blob = next((project.bundle / "blobs").iterdir())
    blob.write_bytes(b"\x00" * 8)
    report = verify_bundle(project.bundle, project.policy())
    assert "LEAKAGE_EVIDENCE_INVALID" in codes(report)


def test_second_objectives_attestation_is_refused(lifecycle: Project) -> None:
    with pytest.raises(InputError, match="only be the first"):
        lifecycle.attestor("owner").attest("objectives", metadata_files=[lifecycle.root / "objectives.yaml"])


def test_failed_objective_names_criterion_and_value(project: Project) -> None:
    build_lifecycle(project, accuracy=0.7)
    report = verify_bundle(project.bundle, project.policy())
    f = finding(report, "OBJECTIVE_FAILED")
    assert "test-accuracy" in f.message and "0.7" in f.message
    assert report.objectives[0].values == {"metrics.accuracy": 0.7}


def test_freshness_bound_refuses_stale_chain(lifecycle: Project) -> None:
    policy = yaml.safe_load(lifecycle.policy().read_text())
    policy["freshness"] = "1h"
    path = lifecycle.root / "policies" / "fresh.yaml"
    path.write_text(yaml.safe_dump(policy))
    assert verify_bundle(lifecycle.bundle, path).passed
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    assert "CHAIN_STALE" in codes(verify_bundle(lifecycle.bundle, path, now=later))

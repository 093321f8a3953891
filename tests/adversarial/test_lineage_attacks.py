"""Forgeries by a stage's runner (holds the pipeline key, not the owner key), issue #13 items 6-12.

Each class is tried in several forms; each must be refused by the gate with its finding
code. Where the attestor itself refuses, the runner is assumed to sign by hand instead
(``forge``): the gate cannot rely on the writer's good behaviour.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, build_lifecycle, serve_payload

from mlspec_attest.bundle import Bundle, attestation_file_name
from mlspec_attest.digests import digest_path
from mlspec_attest.errors import InputError
from mlspec_attest.keys import load_signer
from mlspec_attest.model.canonical import sha256_hex
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
from mlspec_attest.model.stages import resolve
from mlspec_attest.model.statement import ROLE_ANNOTATION, ChainLink, build_statement, resource_descriptor
from mlspec_attest.verify import verify_bundle

BEFORE_PACKAGE = ("objectives", "ingest", "analyze", "transform", "validate", "split", "train", "evaluate", "test")


def codes(report: Any) -> set[str]:
    return {f.code for f in report.findings if f.severity == "error"}


def message(report: Any, code: str) -> str:
    return next(f.message for f in report.findings if f.code == code)


def rd(name: str, content: bytes | str, role: str | None = None, **annotations: Any) -> dict[str, Any]:
    data = content.encode() if isinstance(content, str) else content
    ann = {**({ROLE_ANNOTATION: role} if role else {}), **annotations}
    return resource_descriptor(name, sha256_hex(data), annotations=ann)


def forge(project: Project, stage: str, *, subjects: list[dict[str, Any]], materials: list[dict[str, Any]] = (),
          metadata: dict[str, Any], predicate: dict[str, Any] | None = None,
          blobs: tuple[bytes, ...] = ()) -> str:
    """Sign and append a statement by hand with the pipeline key (no attestor checks); its payload sha256."""
    bundle = Bundle(project.bundle)
    head = bundle.head()
    assert head is not None
    link = ChainLink(genesis=head.genesis, sequence=head.sequence + 1, previous=head.payload_sha256)
    run = {"startedOn": "2026-01-01T00:00:00Z", "finishedOn": "2026-01-01T00:00:01Z"}
    statement, payload = build_statement(resolve(stage), chain=link, subjects=subjects, materials=list(materials),
                                         metadata=metadata, run=run, redactions=[], extra=predicate)
    envelope = Envelope(payload_type=IN_TOTO_PAYLOAD_TYPE, payload=payload)
    envelope.sign(load_signer(project.key("pipeline")))
    for blob in blobs:
        bundle.store_file(f"blobs/{sha256_hex(blob)}", blob)
    bundle.write_new(attestation_file_name(link.sequence, stage), envelope.to_json())
    return sha256_hex(payload)


def until_package(project: Project) -> None:
    build_lifecycle(project, stages=BEFORE_PACKAGE)


# -- 6. the package holds another model ---------------------------------------------------------------
def test_package_directory_with_another_model_is_refused(project: Project) -> None:
    """Material names the trained model; the shipped directory holds other weights."""
    until_package(project)
    project.write("evil/model.bin", "other weights")
    project.attestor().attest("package", materials=["model=out/model.bin"], products=["package=evil"],
                              metadata={"name": "m"})
    report = verify_bundle(project.bundle, project.policy(), [project.root / "evil"])
    assert "PACKAGE_MODEL_ABSENT" in codes(report)
    assert "does not contain the trained model" in message(report, "PACKAGE_MODEL_ABSENT")


@pytest.mark.parametrize("variant", ["single-file", "second-subject", "untagged-subjects"])
def test_package_variants_shipping_another_model_are_refused(project: Project, variant: str) -> None:
    until_package(project)
    project.write("evil/model.bin", "other weights")
    project.write("evil.tar", "a tarball the gate cannot see into")
    products = {"single-file": ["package=evil.tar"],
                "second-subject": ["package=pkg", "package=evil"],
                "untagged-subjects": ["pkg", "evil"]}[variant]
    project.attestor().attest("package", materials=["model=out/model.bin"], products=products,
                              metadata={"name": "m"})
    report = verify_bundle(project.bundle, project.policy())
    assert "PACKAGE_MODEL_ABSENT" in codes(report)


def test_side_product_of_package_is_not_deployable(project: Project) -> None:
    """Only role-package subjects can match --artifact: a side product ships nothing."""
    until_package(project)
    project.write("evil/model.bin", "other weights")
    project.attestor().attest("package", materials=["model=out/model.bin"], products=["package=pkg", "notes=evil"],
                              metadata={"name": "m"})
    report = verify_bundle(project.bundle, project.policy(), [project.root / "evil"])
    assert "ARTIFACT_MISMATCH" in codes(report)
    assert "PACKAGE_MODEL_ABSENT" not in codes(report)  # pkg holds the model; evil is just not shipped


@pytest.mark.parametrize("damage", ["deleted", "replaced"])
def test_package_manifest_blob_must_be_the_signed_one(project: Project, damage: str) -> None:
    until_package(project)
    project.attestor().attest("package", materials=["model=out/model.bin"], products=["package=pkg"],
                              metadata={"name": "m"})
    manifest_sha = digest_path(project.root / "pkg").manifest_sha256
    blob = project.bundle / "blobs" / str(manifest_sha)
    assert blob.is_file()
    if damage == "deleted":
        blob.unlink()
    else:
        blob.write_bytes(json.dumps({"files": [{"path": "model.bin", "sha256": sha256_hex(b"model-bytes")}]}).encode())
    report = verify_bundle(project.bundle, project.policy())
    assert "PACKAGE_MANIFEST_INVALID" in codes(report)


def test_forged_manifest_listing_the_model_cannot_ship_another_file(project: Project) -> None:
    """The runner signs a manifest that lists the trained model, over a directory with other bytes."""
    until_package(project)
    project.write("evil/model.bin", "other weights")
    from mlspec_attest.manifest import encode

    lie = encode([("model.bin", sha256_hex(b"model-bytes"))])
    evil = digest_path(project.root / "evil")
    forge(project, "package", subjects=[resource_descriptor("evil", evil.sha256, annotations={
        ROLE_ANNOTATION: "package", "mlspec.dev/manifest-sha256": sha256_hex(lie)})],
        materials=[rd("out/model.bin", "model-bytes", "model")], metadata={"name": "m"}, blobs=(lie,))
    report = verify_bundle(project.bundle, project.policy(), [project.root / "evil"])
    assert "PACKAGE_MODEL_ABSENT" not in codes(report)  # the manifest does claim the model...
    assert "ARTIFACT_MISMATCH" in codes(report)  # ...but the shipped bytes are not it, file by file
    assert "differ: model.bin" in message(report, "ARTIFACT_MISMATCH")


@pytest.mark.parametrize("change, expect", [
    ("swap", "differ: model.bin"), ("add", "extra: backdoor.py"), ("remove", "missing: manifest.json")])
def test_artifact_is_compared_file_by_file(project: Project, change: str, expect: str) -> None:
    build_lifecycle(project)
    shipped = project.root / "ship"
    shutil.copytree(project.root / "pkg", shipped)
    if change == "swap":
        (shipped / "model.bin").write_text("swapped weights")
    elif change == "add":
        (shipped / "backdoor.py").write_text("import os")
    else:
        (shipped / "manifest.json").unlink()
    report = verify_bundle(project.bundle, project.policy(), [shipped])
    assert "ARTIFACT_MISMATCH" in codes(report)
    assert expect in message(report, "ARTIFACT_MISMATCH")


def test_duplicate_subject_names_are_refused(project: Project) -> None:
    until_package(project)
    with pytest.raises(InputError, match="given twice"):
        project.attestor().attest("package", materials=["model=out/model.bin"], products=["package=pkg", "pkg"], metadata={"name": "m"})
    pkg = digest_path(project.root / "pkg")
    forge(project, "package", subjects=[
        resource_descriptor("pkg", pkg.sha256, annotations={ROLE_ANNOTATION: "package"}),
        rd("pkg", "other weights", "package")],
        materials=[rd("out/model.bin", "model-bytes", "model")], metadata={"name": "m"})
    report = verify_bundle(project.bundle, project.policy())
    assert "SUBJECT_DUPLICATE" in codes(report)


# -- 7. serving a model nobody packaged ----------------------------------------------------------------
def _until_serve(project: Project) -> None:
    build_lifecycle(project, stages=(*BEFORE_PACKAGE, "package"))


@pytest.mark.parametrize("material, code", [
    ("external=other.bin", "SERVE_PACKAGE_MISSING"),
    ("pkg", "SERVE_PACKAGE_MISSING"),
    ("package=other.bin", "SERVE_PACKAGE_UNKNOWN"),
    ("package=out/model.bin", "SERVE_PACKAGE_UNKNOWN"),
])
def test_serve_must_roll_out_the_package(project: Project, material: str, code: str) -> None:
    _until_serve(project)
    project.write("other.bin", "a model nobody packaged")
    project.attestor().attest("serve", materials=[material], metadata={"rollout": {"status": "succeeded"}})
    report = verify_bundle(project.bundle, project.policy())
    assert code in codes(report)


def test_serve_of_the_package_passes(project: Project) -> None:
    build_lifecycle(project)
    report = verify_bundle(project.bundle, project.policy(), [project.root / "pkg"])
    assert report.passed, [f.message for f in report.findings]


@pytest.mark.parametrize("stage, key, value, code", [
    ("monitor", "serve_attestation", None, "MONITOR_SERVE_MISSING"),
    ("monitor", "serve_attestation", "f" * 64, "MONITOR_SERVE_UNKNOWN"),
    ("monitor", "serve_attestation", "PACKAGE", "MONITOR_SERVE_UNKNOWN"),
    ("log", "pipeline", None, "LOG_SERVE_MISSING"),
    ("log", "pipeline", "f" * 64, "LOG_SERVE_UNKNOWN"),
    ("log", "pipeline", "PACKAGE", "LOG_SERVE_UNKNOWN"),
])
def test_monitor_and_log_must_name_the_serve(project: Project, stage: str, key: str, value: str | None,
                                             code: str) -> None:
    build_lifecycle(project)
    if value == "PACKAGE":  # the payload digest of a real attestation, but not of a serve
        from mlspec_attest.bundle import extract_payload

        path = next((project.bundle / "attestations").glob("*-package.dsse.json"))
        value = sha256_hex(extract_payload("dsse", path.read_bytes()))
    rollback = {"name": "pkg", "digest": {"sha256": digest_path(project.root / "pkg").sha256}}
    metadata: dict[str, Any] = ({"signals": {"x": 1.0}, "rollback_target": rollback} if stage == "monitor"
                                else {"tree_size": 1, "root_hash": "1" * 64})
    if value is not None:
        metadata[key] = value
    project.attestor().attest(stage, metadata=metadata)
    report = verify_bundle(project.bundle, project.policy())
    assert code in codes(report)


# -- 8. leakage the gate cannot see --------------------------------------------------------------------
def _split(project: Project, holdback: str, *, fingerprints: tuple[str, ...] = ("train", "holdback"),
           validation: str = "x,y,group\n9,9,z\n") -> None:
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate"))
    project.write("work/train.csv", "x,y,group\n1,0,a\n2,1,b\n3,0,a\n")
    project.write("work/holdback.csv", holdback)
    project.write("work/val.csv", validation)
    files = {"train": "work/train.csv", "holdback": "work/holdback.csv", "validation": "work/val.csv"}
    project.attestor().attest(
        "split", materials=["work/clean.csv"],
        products=["train-data=work/train.csv", "eval-data=work/val.csv", "holdback-data=work/holdback.csv"],
        fingerprints=[(name, files[name]) for name in fingerprints],
        metadata={"sets": {"train": {"size": 3}, "holdback": {"size": 3}}})


SHUFFLED_COPY = "x,y,group\n3,0,a\n1,0,a\n2,1,b\n"


def test_shuffled_copy_without_fingerprints_is_refused(project: Project) -> None:
    _split(project, SHUFFLED_COPY, fingerprints=())
    report = verify_bundle(project.bundle, project.policy())
    assert "LEAKAGE_EVIDENCE_MISSING" in codes(report)


@pytest.mark.parametrize("fingerprints, holdback, validation, code", [
    (("train", "holdback"), SHUFFLED_COPY, "x,y,group\n9,9,z\n", "LEAKAGE"),
    (("train",), "x,y,group\n7,0,a\n", "x,y,group\n9,9,z\n", "LEAKAGE_EVIDENCE_MISSING"),
    (("holdback",), "x,y,group\n7,0,a\n", "x,y,group\n9,9,z\n", "LEAKAGE_EVIDENCE_MISSING"),
    (("train", "holdback"), "x,y,group\n", "x,y,group\n9,9,z\n", "LEAKAGE_EVIDENCE_INVALID"),
    (("train", "holdback", "validation"), "x,y,group\n7,0,a\n", "x,y,group\n7,0,a\n", "LEAKAGE"),
])
def test_leakage_variants_are_refused(project: Project, fingerprints: tuple[str, ...], holdback: str,
                                      validation: str, code: str) -> None:
    _split(project, holdback, fingerprints=fingerprints, validation=validation)
    report = verify_bundle(project.bundle, project.policy())
    assert code in codes(report)


def test_policy_may_waive_the_leakage_proof_explicitly(project: Project) -> None:
    _split(project, "x,y,group\n7,0,a\n", fingerprints=())
    text = project.policy().read_text()
    assert "leakage:\n  required: true" in text  # the shipped default states the requirement
    waived = text.replace("leakage:\n  required: true", "leakage:\n  required: false")
    path = project.write("policies/waived.yaml", waived)
    assert "LEAKAGE_EVIDENCE_MISSING" not in codes(verify_bundle(project.bundle, path))
    assert "LEAKAGE_EVIDENCE_MISSING" in codes(verify_bundle(project.bundle, project.policy()))


def test_cli_split_attests_the_leakage_proof(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from mlspec_attest.cli.main import main

    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate"))
    project.write("work/train.csv", "x,y,group\n1,0,a\n2,1,b\n3,0,a\n")
    project.write("work/holdback.csv", SHUFFLED_COPY)
    monkeypatch.chdir(project.root)
    result = CliRunner().invoke(main, [
        "attest", "stage", "split", "--bundle", "bundle", "--key", "keys/pipeline.key",
        "--material", "work/clean.csv", "--product", "train-data=work/train.csv",
        "--product", "holdback-data=work/holdback.csv", "--fingerprints", "train=work/train.csv",
        "--fingerprints", "holdback=work/holdback.csv", "--set", "sets.train.size=3"])
    assert result.exit_code == 0, result.output
    report = verify_bundle(project.bundle, project.policy())
    assert "LEAKAGE" in codes(report) and "3 row(s)" in message(report, "LEAKAGE")
    bad = CliRunner().invoke(main, ["attest", "stage", "train", "--bundle", "bundle", "--key",
                                    "keys/pipeline.key", "--fingerprints", "train=work/train.csv"])
    assert bad.exit_code == 2 and "belongs to the split stage" in bad.output


# -- 9. deprecated data --------------------------------------------------------------------------------
DEPRECATED = [
    {"sources": [{"name": "raw"}], "isDeprecated": True},
    {"sources": [{"name": "raw", "deprecated": True}]},
    {"datasets": [{"name": "loans", "version": 3, "isDeprecated": True}]},
    {"dataset": {"name": "loans", "status": "Deprecated"}},
    # the gate review's spellings: exact key names only were matched before
    {"sources": ["raw"], "is_deprecated": True},
    {"sources": ["raw"], "deprecated": 1},
    {"sources": ["raw"], "dataset_status": "Deprecated"},
    {"sources": ["raw"], "state": "deprecated"},
    {"sources": ["raw"], "lifecycle": {"state": "DEPRECATED"}},
]


def test_current_data_is_not_taken_for_deprecated() -> None:
    from mlspec_attest.model.metadata import deprecated_markers

    assert deprecated_markers({"deprecated": False, "isDeprecated": False, "status": "active",
                               "lifecycle": {"state": "production"}, "is_deprecated": False}) == []


@pytest.mark.parametrize("metadata", DEPRECATED)
def test_deprecated_data_is_refused_by_the_attestor(project: Project, metadata: dict[str, Any]) -> None:
    build_lifecycle(project, stages=("objectives",))
    with pytest.raises(InputError, match="deprecated"):
        project.attestor().attest("ingest", materials=["external=objectives.yaml"], metadata=metadata)


@pytest.mark.parametrize("metadata", [*DEPRECATED, {"sources": ["raw"], "isDeprecated": "yes"}])
def test_deprecated_data_signed_by_hand_is_refused_by_the_gate(project: Project, metadata: dict[str, Any]) -> None:
    build_lifecycle(project, stages=("objectives",))
    forge(project, "ingest", subjects=[rd("raw/data.csv", "x", "raw-data")], metadata=metadata)
    report = verify_bundle(project.bundle, project.policy())
    assert "DATA_DEPRECATED" in codes(report)


# -- 10. signed metrics that contradict the attested report --------------------------------------------
def _until_test(project: Project) -> None:
    build_lifecycle(project, stages=BEFORE_PACKAGE[:-1])
    project.write("reports/test.json", json.dumps({"metrics": {"accuracy": 0.9, "r2": 0.47}}))


def test_set_contradicting_a_bound_report_is_refused_at_attest(project: Project,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from mlspec_attest.cli.main import main

    _until_test(project)
    monkeypatch.chdir(project.root)
    before = sorted(p.name for p in (project.bundle / "attestations").iterdir())
    result = CliRunner().invoke(main, [
        "attest", "stage", "test", "--bundle", "bundle", "--key", "keys/pipeline.key",
        "--material", "model=out/model.bin", "--material", "holdback-data=work/holdback.csv",
        "--product", "reports/test.json", "--metadata", "reports/test.json", "--set", "metrics.r2=0.65"])
    assert result.exit_code == 2 and "/metrics/r2" in result.output
    assert sorted(p.name for p in (project.bundle / "attestations").iterdir()) == before


@pytest.mark.parametrize("metadata_file", ["copy", "symlink"])
def test_a_copy_of_the_report_is_bound_too(project: Project, metadata_file: str) -> None:
    """The binding is by content: reading the metadata from a copy or a link of the product changes nothing."""
    _until_test(project)
    other = project.root / "elsewhere" / "metrics.json"
    other.parent.mkdir()
    if metadata_file == "copy":
        shutil.copyfile(project.root / "reports/test.json", other)
    else:
        other.symlink_to(project.root / "reports/test.json")
    with pytest.raises(InputError, match="/metrics/r2"):
        project.attestor().attest("test", materials=["model=out/model.bin", "holdback-data=work/holdback.csv"],
                                  products=["reports/test.json"], metadata_files=[other], sets=["metrics.r2=0.65"])


def test_honest_bound_report_passes_and_is_kept(project: Project) -> None:
    _until_test(project)
    att = project.attestor().attest("test", materials=["model=out/model.bin", "holdback-data=work/holdback.csv"],
                                    products=["reports/test.json"], metadata_files=[project.root / "reports/test.json"])
    sources = att.statement["predicate"]["metadataSources"]
    assert sources[0]["name"] == "reports/test.json"
    assert (project.bundle / "blobs" / sources[0]["digest"]["sha256"]).is_file()
    report = verify_bundle(project.bundle, project.policy())
    assert not codes(report) & {"METADATA_CONTRADICTS_PRODUCT", "METADATA_SOURCE_INVALID"}


@pytest.mark.parametrize("signed_r2, blob, code", [
    (0.65, True, "METADATA_CONTRADICTS_PRODUCT"),
    (True, True, "METADATA_CONTRADICTS_PRODUCT"),  # true == 1 in Python; not in JSON
    (0.47, False, "METADATA_SOURCE_INVALID"),  # the proof was left out of the bundle
])
def test_forged_bound_metrics_are_refused_by_gate_and_replay(project: Project, signed_r2: Any, blob: bool,
                                                             code: str) -> None:
    from mlspec_attest.audit.replay import replay

    _until_test(project)
    report_bytes = (project.root / "reports/test.json").read_bytes()
    product = rd("reports/test.json", report_bytes)
    forge(project, "test", subjects=[product],
          materials=[rd("out/model.bin", "model-bytes", "model"), rd("work/holdback.csv", "x,y,group\n3,0,a\n",
                                                                     "holdback-data")],
          metadata={"metrics": {"accuracy": 0.9, "r2": signed_r2}, "dataset": "work/holdback.csv", "holdback": True},
          predicate={"metadataSources": [{"name": product["name"], "digest": product["digest"]}]},
          blobs=(report_bytes,) if blob else ())
    report = verify_bundle(project.bundle, project.policy())
    assert code in codes(report)
    result = replay(project.bundle, project.root)
    assert result.verdict == "fail"
    assert any("metadata" in p for e in result.entries for p in e.problems)


# -- 11. types -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("accuracy", [True, "0.95", [0.95], {"value": 0.95}])
def test_non_number_metric_does_not_satisfy_a_criterion(project: Project, accuracy: Any) -> None:
    build_lifecycle(project, stages=BEFORE_PACKAGE[:-1])
    forge(project, "test", subjects=[rd("mlspec:test-metadata", "m")],
          materials=[rd("out/model.bin", "model-bytes", "model"),
                     rd("work/holdback.csv", "x,y,group\n3,0,a\n", "holdback-data")],
          metadata={"metrics": {"accuracy": accuracy}, "dataset": "work/holdback.csv", "holdback": True})
    report = verify_bundle(project.bundle, project.policy())
    assert {"OBJECTIVE_FAILED", "METADATA_INVALID"} <= codes(report)


@pytest.mark.parametrize("metadata", [
    {"tree_size": "many", "root_hash": "1" * 64},
    {"tree_size": True, "root_hash": "1" * 64},
    {"tree_size": 3, "root_hash": "not hex"},
    {"root_hash": "1" * 64},
])
def test_log_with_wrong_types_is_refused(project: Project, metadata: dict[str, Any]) -> None:
    build_lifecycle(project)
    metadata = {**metadata, "pipeline": serve_payload(project.bundle)}
    forge(project, "log", subjects=[rd("mlspec:log-metadata", "m")], metadata=metadata)
    report = verify_bundle(project.bundle, project.policy())
    assert "METADATA_INVALID" in codes(report)
    assert "sequence 13 (log)" in message(report, "METADATA_INVALID")


# -- 12. vacuous criteria ------------------------------------------------------------------------------
VACUOUS = """\
project: my-model
revision: 1
outputs: {task: binary-classification, labels: [0, 1]}
errors:
  - {name: false-negative, handling: manual review}
criteria:
  - {name: gap, stage: test, expression: 'max_gap(slices.group, "recall") <= 0.1', description: parity}
  - {name: worst, stage: test, expression: 'min(slices.group, "recall") >= 0.5', description: worst group}
  - {name: every, stage: test, expression: 'slices.region.all(r, slices.region[r].recall >= 0.5)',
     description: every region}
"""


@pytest.mark.parametrize("slices, failing", [
    ({"group": {"a": {"recall": 0.9}}, "region": {"n": {"recall": 0.9}}}, {"gap", "worst"}),
    ({"group": {"a": {"recall": 0.9}, "b": {"recall": 0.85}}, "region": {}}, {"every"}),
    ({"group": {}, "region": {}}, {"gap", "worst", "every"}),
    ({"region": {"n": {"recall": 0.9}}}, {"gap", "worst"}),
])
def test_vacuous_criteria_fail(slices: dict[str, Any], failing: set[str], tmp_path: Path) -> None:
    from mlspec_attest.objectives.criteria import Objectives, evaluate

    path = tmp_path / "objectives.yaml"
    path.write_text(VACUOUS)
    results = evaluate(Objectives.from_file(path), {"test": {"metrics": {"accuracy": 0.9}, "slices": slices}})
    assert {r.name for r in results if not r.passed} == failing


def test_vacuous_fairness_criterion_fails_the_gate(project: Project) -> None:
    project.write("objectives.yaml", VACUOUS)
    project.attestor("owner").attest("objectives", metadata_files=[project.root / "objectives.yaml"])
    forge(project, "test", subjects=[rd("mlspec:test-metadata", "m")],
          metadata={"metrics": {"accuracy": 0.9}, "slices": {"group": {"all": {"recall": 0.9}},
                                                             "region": {}}, "dataset": "h", "holdback": True})
    report = verify_bundle(project.bundle, project.policy())
    failed = {o.name for o in report.objectives if not o.passed}
    assert failed == {"gap", "worst", "every"}
    assert "OBJECTIVE_FAILED" in codes(report)


def test_objectives_check_warns_about_vacuity(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mlspec_attest.cli.main import main

    path = tmp_path / "objectives.yaml"
    path.write_text(VACUOUS)
    result = CliRunner().invoke(main, ["objectives", "check", str(path)])
    assert result.exit_code == 0
    assert "3 criteria compiled" in result.output
    assert "criterion gap: max_gap() fails at the gate unless at least two slices" in result.output
    assert "criterion every: all() fails at the gate when its list or map is empty" in result.output


def test_package_declaring_no_trained_model_must_still_hold_one(project: Project) -> None:
    """With artifact_flow off (no MODEL_NOT_DECLARED), the package must still contain a trained model."""
    until_package(project)
    project.write("evil/model.bin", "other weights")
    project.attestor().attest("package", materials=["code=objectives.yaml"], products=["package=evil"],
                              metadata={"name": "m"})
    text = project.policy().read_text().replace("artifact_flow:\n  enabled: true", "artifact_flow:\n  enabled: false")
    path = project.write("policies/noflow.yaml", text)
    report = verify_bundle(project.bundle, path)
    assert "MODEL_NOT_DECLARED" not in codes(report)
    assert "PACKAGE_MODEL_ABSENT" in codes(report)


# -- gate review H1-H3: a runner with the pipeline key re-signs the demo chain ---------------------------
# The reviewer's reproductions (/tmp/adv-gate/repro): copy the demo, edit the statements, re-sign every one
# with the pipeline key (objectives with the owner key, untouched), re-seal the inference log and re-sign the
# head. ``forge_demo`` does exactly that; the untouched forgery passes, so each refusal below is the rule's.

@pytest.fixture
def demo_dir(demo_built: Path) -> Path:
    return demo_built  # conftest: built once per session; forge_demo copies it


def forge_demo(src: Path, dst: Path, monkeypatch: pytest.MonkeyPatch,
               edit: Any = None, records: Any = None) -> Any:
    """Re-sign the demo chain after ``edit(payloads)`` (and ``records(list)`` on the log); the gate's report."""
    import base64

    from click.testing import CliRunner

    from mlspec_attest.cli.main import main
    from mlspec_attest.model.canonical import canonicalize
    from mlspec_attest.model.envelope import pae

    shutil.copytree(src, dst, symlinks=True)
    att = dst / "bundle" / "attestations"
    files = sorted(att.iterdir())[:12]  # the log stage is re-sealed below
    payloads = [json.loads(base64.b64decode(json.loads(f.read_text())["payload"])) for f in files]
    if edit is not None:
        edit(payloads)
    for f in att.iterdir():
        f.unlink()
    bundle = Bundle(dst / "bundle")
    genesis = previous = serve = None
    for i, p in enumerate(payloads):
        stage = p["predicateType"].split("/")[-2]
        md = p["predicate"]["metadata"]
        if i:
            p["predicate"]["chain"].update(genesis=genesis, previous=previous)
        if stage == "monitor" and md.get("serve_attestation") != serve:
            md["serve_attestation"] = serve  # and its bound report says so too (a consistent forgery)
            blob = json.dumps(md).encode()
            bundle.store_file(f"blobs/{sha256_hex(blob)}", blob)
            for s in [*p["subject"], *p["predicate"].get("metadataSources", [])]:
                if s["name"] == "reports/monitor.json":
                    s["digest"] = {"sha256": sha256_hex(blob)}
        raw = canonicalize(p)
        previous = sha256_hex(raw)
        genesis = genesis or previous
        serve = previous if stage == "serve" else serve
        signer = load_signer(dst / "keys" / ("owner.key" if i == 0 else "pipeline.key"))
        env = {"payloadType": IN_TOTO_PAYLOAD_TYPE, "payload": base64.b64encode(raw).decode(),
               "signatures": [{"keyid": signer.keyid,
                               "sig": base64.b64encode(signer.sign(pae(IN_TOTO_PAYLOAD_TYPE, raw))).decode()}]}
        (att / f"{i:04d}-{stage}.dsse.json").write_text(json.dumps(env, indent=2) + "\n")
    # the forger re-signs the head over the rewritten chain too (writing it past the writers' refusal)
    from datetime import timedelta

    from conftest import resign_head

    resign_head(dst / "bundle", [load_signer(dst / "keys" / "pipeline.key")], timedelta(hours=24))
    log = dst / "logs" / "inference"
    recs = [dict(json.loads(line), pipeline=serve) for line in (log / "records.jsonl").read_text().splitlines()]
    if records is not None:
        records(recs)
    shutil.rmtree(log)
    (dst / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    monkeypatch.chdir(dst)
    for args in (["log", "append", "--pipeline", str(serve), "r.jsonl"],
                 ["log", "seal", "--bundle", "bundle", "--key", "keys/pipeline.key"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    (dst / "r.jsonl").unlink()
    return verify_bundle(dst / "bundle", dst / "policies" / "default.yaml", log_dir=log)


def _by_stage(payloads: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    return next(p for p in payloads if p["predicateType"].split("/")[-2] == stage)


def _role(items: list[dict[str, Any]], role: str) -> dict[str, Any]:
    return next(s for s in items if (s.get("annotations") or {}).get(ROLE_ANNOTATION) == role)


def test_untouched_forgery_of_the_demo_passes(demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The forge helper itself is sound: a re-signed, re-sealed honest chain passes (so refusals are the rules')."""
    report = forge_demo(demo_dir, tmp_path / "d", monkeypatch)
    assert report.passed, [f.message for f in report.findings if f.severity == "error"]


def _drop_sources(p: dict[str, Any]) -> None:
    p["predicate"].pop("metadataSources", None)


@pytest.mark.parametrize("variant, code", [
    ("no-sources", "METADATA_UNBOUND"),  # the reviewer's case: metadataSources left out
    ("no-sources", "REPORT_UNBOUND"),  # ... and reports/test.json sits there unbound
    ("keep-sources", "METADATA_CONTRADICTS_PRODUCT"),  # binding kept: the file says otherwise
    ("no-report", "METADATA_UNBOUND"),  # the report left out of the subjects too
    ("other-report", "REPORT_UNBOUND"),  # a second, bound report with 0.99 beside the honest one
    ("evaluate", "METADATA_UNBOUND"),  # the same on evaluate (read by the fairness criterion)
])
def test_h1_signed_metrics_contradicting_the_report_are_refused(demo_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, variant: str,
                                                                 code: str) -> None:
    fake = json.dumps({"metrics": {"accuracy": 0.99, "auc": 0.99}}).encode()

    def edit(ps: list[dict[str, Any]]) -> None:
        p = _by_stage(ps, "evaluate" if variant == "evaluate" else "test")
        p["predicate"]["metadata"]["metrics"].update(accuracy=0.99, auc=0.99)
        if variant != "keep-sources":
            _drop_sources(p)
        if variant == "no-report":
            p["subject"] = [rd("mlspec:test-metadata", "m")]
        if variant == "other-report":
            extra = rd("reports/metrics.json", fake, "test-report")
            p["subject"].append(extra)
            p["predicate"]["metadataSources"] = [{"name": extra["name"], "digest": extra["digest"]}]
            Bundle(tmp_path / "d" / "bundle").store_file(f"blobs/{sha256_hex(fake)}", fake)

    report = forge_demo(demo_dir, tmp_path / "d", monkeypatch, edit)
    assert not report.passed
    assert code in codes(report), sorted(codes(report))


def test_h1_bound_file_must_hold_what_the_criterion_reads(project: Project) -> None:
    """A bound report without the metric, the metric signed inline: the criterion reads an unbound value."""
    build_lifecycle(project, stages=BEFORE_PACKAGE[:-1])
    side = json.dumps({"threshold": 0.5}).encode()
    product = rd("reports/test.json", side)
    forge(project, "test", subjects=[product],
          materials=[rd("out/model.bin", "model-bytes", "model"), rd("work/holdback.csv", "x,y,group\n3,0,a\n",
                                                                     "holdback-data")],
          metadata={"metrics": {"accuracy": 0.99}, "threshold": 0.5, "dataset": "work/holdback.csv",
                    "holdback": True},
          predicate={"metadataSources": [{"name": product["name"], "digest": product["digest"]}]}, blobs=(side,))
    report = verify_bundle(project.bundle, project.policy())
    assert "METADATA_UNBOUND" in codes(report)
    assert "metrics.accuracy" in message(report, "METADATA_UNBOUND")


def _inline_test(project: Project) -> None:
    build_lifecycle(project, stages=BEFORE_PACKAGE[:-1])
    project.attestor().attest("test", materials=["model=out/model.bin", "holdback-data=work/holdback.csv"],
                              metadata={"metrics": {"accuracy": 0.99}})


def test_h1_inline_metrics_are_unbound_by_default(project: Project) -> None:
    _inline_test(project)
    report = verify_bundle(project.bundle, project.policy())
    assert "METADATA_UNBOUND" in codes(report)


def test_h1_a_criterion_naming_the_stage_by_alias_still_requires_binding(project: Project) -> None:
    """``stage: testing`` reads the test stage: the binding rule must resolve the name as the criteria do."""
    from conftest import OBJECTIVES_YAML

    build_lifecycle(project, stages=BEFORE_PACKAGE[:-1],
                    objectives_yaml=OBJECTIVES_YAML.replace("stage: test\n", "stage: testing\n"))
    project.attestor().attest("test", materials=["model=out/model.bin", "holdback-data=work/holdback.csv"],
                              metadata={"metrics": {"accuracy": 0.99}})
    report = verify_bundle(project.bundle, project.policy())
    assert "METADATA_UNBOUND" in codes(report)


def test_h1_policy_may_waive_the_binding_and_then_every_verify_warns(project: Project) -> None:
    _inline_test(project)
    policy = project.policy()
    text = policy.read_text()
    assert "metrics_binding:\n  required: true" in text  # the shipped default states the requirement
    policy.write_text(text.replace("metrics_binding:\n  required: true", "metrics_binding:\n  required: false"))
    report = verify_bundle(project.bundle, policy)
    assert "METADATA_UNBOUND" not in codes(report)
    warnings = {f.code for f in report.findings if f.severity == "warning"}
    assert "POLICY_METRICS_BINDING_WAIVED" in warnings


def test_h1_metrics_binding_is_typed(project: Project) -> None:
    from mlspec_attest.policy import Policy

    policy = project.policy()
    policy.write_text(policy.read_text().replace("metrics_binding:\n  required: true",
                                                 "metrics_binding:\n  required: 'no'"))
    with pytest.raises(InputError, match="metrics_binding.required"):
        Policy.from_file(policy)


@pytest.mark.parametrize("variant, expect", [
    ("reviewer", {"SPLIT_SETS_NOT_DISTINCT", "TRAIN_DATA_NOT_DECLARED", "LEAKAGE_EVIDENCE_UNBOUND"}),
    ("as-code", {"SPLIT_SETS_NOT_DISTINCT", "TRAIN_DATA_NOT_DECLARED"}),  # train data under an external role
    ("train-on-holdback", {"TRAIN_DATA_NOT_SPLIT", "TEST_DATA_REUSED"}),
    ("eval-is-train", {"SPLIT_SETS_NOT_DISTINCT"}),
    ("fingerprints-unnamed", {"LEAKAGE_EVIDENCE_UNBOUND"}),
    ("fingerprints-of-train-as-holdback", {"LEAKAGE_EVIDENCE_UNBOUND"}),
    ("fingerprints-of-train-as-validation", {"LEAKAGE_EVIDENCE_UNBOUND"}),
])
def test_h2_test_on_the_training_data_is_refused(demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 variant: str, expect: set[str]) -> None:
    def edit(ps: list[dict[str, Any]]) -> None:
        split, train, test = _by_stage(ps, "split"), _by_stage(ps, "train"), _by_stage(ps, "test")
        tr, hb = _role(split["subject"], "train-data"), _role(split["subject"], "holdback-data")
        if variant in ("reviewer", "as-code"):
            hb["digest"] = dict(tr["digest"])
            _role(test["predicate"]["materials"], "holdback-data")["digest"] = dict(tr["digest"])
            train["predicate"]["materials"] = ([] if variant == "reviewer" else
                                               [dict(tr, annotations={ROLE_ANNOTATION: "code"})])
        elif variant == "train-on-holdback":
            _role(train["predicate"]["materials"], "train-data")["digest"] = dict(hb["digest"])
        elif variant == "eval-is-train":
            _role(split["subject"], "eval-data")["digest"] = dict(tr["digest"])
        elif variant == "fingerprints-unnamed":
            _role(split["subject"], "fingerprints-holdback")["annotations"].pop("mlspec.dev/fingerprints-of-sha256")
        else:
            fp = _role(split["subject"], "fingerprints-" + variant.rsplit("-", 1)[-1])
            fp["annotations"]["mlspec.dev/fingerprints-of-sha256"] = tr["digest"]["sha256"]

    report = forge_demo(demo_dir, tmp_path / "d", monkeypatch, edit)
    assert not report.passed
    assert expect <= codes(report), sorted(codes(report))


EVIL = "evil-model@sha256:deadbeefdeadbeef"


@pytest.mark.parametrize("variant, expect", [
    ("reviewer", {"SERVE_MODEL_MISMATCH", "LOG_MODEL_MISMATCH"}),
    ("log-only", {"LOG_MODEL_MISMATCH"}),  # serve honest, the log records another model's answers
    ("one-record", {"LOG_MODEL_MISMATCH"}),  # a single record among many
    ("serve-only", {"SERVE_MODEL_MISMATCH"}),
    ("package-renamed", {"PACKAGE_MODEL_ID_MISMATCH"}),  # package, serve and log all say evil
])
def test_h3_serving_or_logging_another_model_is_refused(demo_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, variant: str,
                                                        expect: set[str]) -> None:
    def edit(ps: list[dict[str, Any]]) -> None:
        if variant in ("reviewer", "serve-only", "package-renamed"):
            serve = _by_stage(ps, "serve")
            serve["predicate"]["metadata"]["rollout"]["model"] = EVIL
            _drop_sources(serve)
        if variant == "package-renamed":
            _by_stage(ps, "package")["predicate"]["metadata"]["model_identifier"] = EVIL

    def records(recs: list[dict[str, Any]]) -> None:
        if variant == "serve-only":
            return
        for r in recs[-1:] if variant == "one-record" else recs:
            r["modelId"] = EVIL

    report = forge_demo(demo_dir, tmp_path / "d", monkeypatch, edit, records)
    assert not report.passed
    assert expect <= codes(report), sorted(codes(report))
    if variant == "one-record":
        assert sum(f.code == "LOG_MODEL_MISMATCH" for f in report.findings) == 1

"""Auditor tools: replay from files, the self-contained HTML report, the signed
verification summary (VSA), and the standalone re-check in docs/."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, Project, build_lifecycle, hostile_report

from mlspec_attest.audit.replay import replay
from mlspec_attest.cli.main import main
from mlspec_attest.keys import load_signer
from mlspec_attest.model.envelope import Envelope
from mlspec_attest.render.html import render_html
from mlspec_attest.verify import verify_bundle
from mlspec_attest.verify.vsa import VSA_PREDICATE_TYPE, build_vsa_statement, write_vsa

STANDALONE = REPO / "docs" / "verify_standalone.py"
ARTIFACT_NAMES = {"raw/data.csv", "work/stats.json", "work/clean.csv", "work/train.csv", "work/val.csv",
                  "work/holdback.csv", "out/model.bin", "pkg", "work/evaluation.json", "work/test.json"}


@pytest.fixture
def chain(project: Project) -> Project:
    build_lifecycle(project)
    return project


def invoke(*args: str) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def statuses(result) -> dict[str, str]:
    return {a.name: a.status for a in result.artifacts}


# -- replay ----------------------------------------------------------------------------------------------
def test_replay_all_artifacts_present_everything_matches(chain: Project) -> None:
    result = replay(chain.bundle, chain.root, chain.policy())
    assert statuses(result) == {name: "match" for name in ARTIFACT_NAMES}
    assert result.chain_ok and result.verdict == "pass" and result.exit_code == 0
    assert [e.stage for e in result.timeline()][:3] == ["objectives", "ingest", "analyze"]
    assert all(e.canonical and e.signature_status == "verified" for e in result.timeline())
    assert result.timeline()[0].signers == ["owner"]
    assert result.verify_report is not None and result.verify_report.passed

    out = invoke("replay", chain.bundle, "--artifacts", chain.root, "--policy", chain.policy())
    assert out.exit_code == 0, out.output
    assert "Verdict: PASS" in out.output and "10 match, 0 differ, 0 absent" in out.output
    assert "Timeline" in out.output and "Lineage" in out.output


def test_replay_names_an_edited_artifact_and_exits_1(chain: Project) -> None:
    (chain.root / "work" / "holdback.csv").write_text("3,1,a\n")  # one label flipped after the fact
    result = replay(chain.bundle, chain.root, chain.policy())
    s = statuses(result)
    assert s.pop("work/holdback.csv") == "differs"
    assert set(s.values()) == {"match"}
    assert result.chain_ok and result.verdict == "fail" and result.exit_code == 1

    out = invoke("replay", chain.bundle, "--artifacts", chain.root, "--policy", chain.policy())
    assert out.exit_code == 1
    assert re.search(r"✗ differs\s+work/holdback\.csv", out.output), out.output
    data = json.loads(invoke("replay", chain.bundle, "--artifacts", chain.root, "--policy", chain.policy(),
                             "--format", "json").stdout)
    edited = next(a for a in data["artifacts"] if a["name"] == "work/holdback.csv")
    assert edited["status"] == "differs" and edited["found_sha256"] != edited["sha256"]


def test_replay_edited_directory_artifact_differs(chain: Project) -> None:
    (chain.root / "pkg" / "extra.txt").write_text("slipped in after packaging")
    assert statuses(replay(chain.bundle, chain.root, chain.policy()))["pkg"] == "differs"


def test_replay_absent_artifacts_are_absent_not_failed(chain: Project, tmp_path: Path) -> None:
    empty = tmp_path / "nothing-left"
    empty.mkdir()
    result = replay(chain.bundle, empty, chain.policy())
    assert set(statuses(result).values()) == {"absent"}
    assert result.verdict == "pass" and result.exit_code == 0  # the chain's own verdict stands

    out = invoke("replay", chain.bundle, "--artifacts", empty, "--policy", chain.policy())
    assert out.exit_code == 0
    assert "0 differ, 10 absent" in out.output and "Verdict: PASS" in out.output


def test_replay_finds_renamed_artifacts_by_digest(chain: Project, tmp_path: Path) -> None:
    flat = tmp_path / "archive"
    flat.mkdir()
    shutil.copyfile(chain.root / "work" / "train.csv", flat / "renamed-train-set.csv")
    shutil.copyfile(chain.root / "raw" / "data.csv", flat / "raw.csv")
    result = replay(chain.bundle, flat, chain.policy())
    by_name = {a.name: a for a in result.artifacts}
    assert by_name["work/train.csv"].status == "match"
    assert by_name["work/train.csv"].found_by == "digest" and by_name["work/train.csv"].found == "renamed-train-set.csv"
    assert by_name["raw/data.csv"].status == "match"
    assert by_name["pkg"].status == "absent"  # directories are matched by name only
    assert result.exit_code == 0


def test_replay_without_policy_reports_signatures_unchecked(chain: Project) -> None:
    result = replay(chain.bundle, chain.root)
    assert result.chain_ok and result.verdict == "incomplete" and result.exit_code == 1
    assert {e.signature_status for e in result.timeline()} == {"unchecked: no policy"}
    assert result.verify_report is None


def test_replay_rechecks_canonical_bytes_even_when_signed(chain: Project) -> None:
    """A validly signed but non-canonical payload is caught by re-canonicalising, not by trusting the writer."""
    path = chain.bundle / "attestations" / "0004-validate.dsse.json"
    env = Envelope.from_dict(json.loads(path.read_bytes()))
    pretty = json.dumps(json.loads(env.payload), indent=1).encode()
    forged = Envelope(payload_type=env.payload_type, payload=pretty)
    forged.sign(load_signer(chain.key("pipeline")))
    path.write_bytes(forged.to_json())
    result = replay(chain.bundle, chain.root, chain.policy())
    assert 4 not in {e.sequence for e in result.timeline()}  # the gate's reader refuses it, so replay does
    unreadable = next(e for e in result.entries if e.file == "0004-validate.dsse.json")
    assert any(f.code == "STATEMENT_INVALID" and "canonical" in f.message for f in unreadable.findings)
    assert any(f.code == "CHAIN_GAP" and f.sequence == 4 for f in result.findings)
    assert result.exit_code == 1


def test_replay_detects_removed_attestation_and_foreign_signature(chain: Project) -> None:
    (chain.bundle / "attestations" / "0005-split.dsse.json").unlink()
    path = chain.bundle / "attestations" / "0007-evaluate.dsse.json"
    env = Envelope.from_dict(json.loads(path.read_bytes()))
    env.signatures = []
    env.sign(load_signer(chain.key("intruder")))
    path.write_bytes(env.to_json())
    result = replay(chain.bundle, chain.root, chain.policy())
    codes = {f.code for f in result.findings}
    assert "CHAIN_GAP" in codes
    entry = next(e for e in result.timeline() if e.sequence == 7)
    assert entry.signature_status == "SIGNATURE_INVALID"
    assert [f.code for f in entry.findings] == ["SIGNATURE_INVALID"]
    assert result.exit_code == 1
    out = invoke("replay", chain.bundle, "--artifacts", chain.root, "--policy", chain.policy())
    assert out.exit_code == 1 and "CHAIN_GAP" in out.output


def test_replay_lineage_from_source_data_to_served_model(chain: Project) -> None:
    lineage = replay(chain.bundle, chain.root, chain.policy()).to_dict()["lineage"]
    nodes = {n["id"]: n for n in lineage["nodes"]}
    names = {n["name"]: n["id"] for n in nodes.values() if n["kind"] == "artifact"}
    stage_ids = {n["stage"]: n["id"] for n in nodes.values() if n["kind"] == "stage"}
    edges = {(e["from"], e["to"], e["as"]) for e in lineage["edges"]}
    assert (names["out/model.bin"], stage_ids["package"], "material") in edges
    assert (stage_ids["package"], names["pkg"], "subject") in edges
    assert (stage_ids["train"], names["out/model.bin"], "subject") in edges
    assert lineage["served"] == [names["pkg"]]
    # Follow the traced path back: pkg <- package <- model <- train <- train.csv <- split <- ... <- ingest
    hops, node = [], lineage["path"][0]
    while node.get("produced_by"):
        hops.append(node["produced_by"]["stage"])
        node = node["produced_by"]["from"][0] if node["produced_by"]["from"] else {}
    assert hops == ["package", "train", "split", "transform", "ingest"]


def test_replay_json_schema_and_bad_input(chain: Project, tmp_path: Path) -> None:
    out = invoke("replay", chain.bundle, "--artifacts", chain.root, "--policy", chain.policy(), "--format", "json")
    data = json.loads(out.stdout)
    assert data["schema"] == "https://mlspec.dev/replay-output/v1"
    assert data["verdict"] == "pass" and data["signatures_checked"] is True
    assert {"timeline", "artifacts", "artifact_counts", "lineage", "findings", "verify"} <= set(data)
    first = data["timeline"][0]
    assert {"sequence", "stage", "signers", "time", "subjects", "materials", "payload_sha256"} <= set(first)
    assert data["verify"]["verdict"] == "pass"

    missing = CliRunner().invoke(main, ["replay", str(tmp_path / "nope"), "--policy", str(chain.policy())])
    assert missing.exit_code == 2 and "error:" in missing.output and "Traceback" not in missing.output
    no_dir = CliRunner().invoke(main, ["replay", str(chain.bundle), "--artifacts", str(tmp_path / "gone"),
                                       "--policy", str(chain.policy())])
    assert no_dir.exit_code == 2 and "artifacts directory not found" in no_dir.output


# -- the HTML report ---------------------------------------------------------------------------------------
def test_html_escapes_hostile_attestation_content() -> None:
    page = render_html(hostile_report())
    lowered = page.lower()
    assert "<script" not in lowered and "<img" not in lowered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '"><img' not in page  # no attribute breakout either
    assert 'data-verdict="fail"' in page


def assert_self_contained(page: str) -> None:
    lowered = page.lower()
    assert "<script" not in lowered and "<link" not in lowered and "@import" not in lowered
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", lowered)
    assert "url(" not in lowered.replace("url(#arrow-", "")  # only in-document SVG marker references
    assert "default-src 'none'" in page


def test_report_command_writes_self_contained_html(chain: Project, tmp_path: Path) -> None:
    out_file = tmp_path / "audit" / "report.html"
    out = invoke("report", chain.bundle, "--html", out_file, "--policy", chain.policy(), "--artifacts", chain.root)
    assert out.exit_code == 0, out.output
    page = out_file.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert 'data-verdict="pass"' in page and "<svg" in page and 'id="lineage"' in page
    for section in ("objectives", "stages", "lineage-section", "findings", "reproduce"):
        assert f'id="{section}"' in page
    assert "test-accuracy" in page and "metrics.accuracy" in page
    assert "@media print" in page
    from mlspec_attest.digests import digest_path
    full = digest_path(chain.root / "pkg").sha256  # full digest: in the artifact table and a tooltip
    assert page.count(full) >= 2
    assert "mlspec verify" in page and "verify_standalone.py" in page


def test_report_command_fails_like_the_gate(project: Project, tmp_path: Path) -> None:
    build_lifecycle(project, accuracy=0.5)
    out_file = tmp_path / "r.html"
    out = invoke("report", project.bundle, "--html", out_file, "--policy", project.policy())
    assert out.exit_code == 1
    page = out_file.read_text()
    assert 'data-verdict="fail"' in page and "OBJECTIVE_FAILED" in page


# -- the standalone re-check --------------------------------------------------------------------------------
def run_standalone(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", str(STANDALONE), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_standalone_script_imports_only_cryptography_rfc8785_and_stdlib() -> None:
    tree = ast.parse(STANDALONE.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    third_party = {r for r in roots if r not in sys.stdlib_module_names}
    assert third_party == {"cryptography", "rfc8785"}


def test_standalone_script_verifies_the_bundle(chain: Project) -> None:
    keys = chain.root / "keys"
    ok = run_standalone(chain.bundle, "--key", keys / "pipeline.pub", "--stage-key", f"objectives={keys / 'owner.pub'}")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS: 13 attestations" in ok.stdout

    wrong_owner = run_standalone(chain.bundle, "--key", keys / "pipeline.pub",
                                 "--stage-key", f"objectives={keys / 'intruder.pub'}")
    assert wrong_owner.returncode == 1 and "stage objectives" in wrong_owner.stdout

    # Edit one payload byte: its signature fails and the next link no longer matches.
    path = chain.bundle / "attestations" / "0006-train.dsse.json"
    doc = json.loads(path.read_bytes())
    payload = base64.b64decode(doc["payload"]).replace(b'"C":1', b'"C":2')
    doc["payload"] = base64.b64encode(payload).decode()
    path.write_text(json.dumps(doc))
    bad = run_standalone(chain.bundle, "--key", keys / "pipeline.pub", "--key", keys / "owner.pub")
    assert bad.returncode == 1
    assert "0006-train.dsse.json: no valid signature" in bad.stdout
    assert "sequence 7: previous is not sha256" in bad.stdout
    assert run_standalone(chain.bundle).returncode == 2


# -- the verification summary (SLSA VSA v1) ----------------------------------------------------------------------
def parse_vsa_predicate(predicate: dict) -> object:
    """Parse with in_toto_attestation's VSA v1 protobuf binding, strictly (unknown fields refused).

    in-toto-attestation 0.9.3's vsa.proto predates two SLSA VSA v1 spec fields:
    ``verifiedLevels`` is a string there (the spec says array; in-toto/attestation#425,
    fixed by #429) and ``verifier.version`` is absent. When the installed binding
    still has those gaps, exactly those two fields are adapted; everything else
    parses as written.
    """
    from google.protobuf import json_format
    from in_toto_attestation.predicates.vsa.v1 import vsa_pb2

    data = json.loads(json.dumps(predicate))
    desc = vsa_pb2.VerificationSummary.DESCRIPTOR
    levels_field = desc.fields_by_name["verified_levels"]
    repeated = getattr(levels_field, "is_repeated", None)
    if repeated is None:
        repeated = levels_field.label == levels_field.LABEL_REPEATED
    if not repeated:
        assert isinstance(data["verifiedLevels"], list)
        data["verifiedLevels"] = ",".join(data["verifiedLevels"])
    if "version" not in desc.nested_types_by_name["Verifier"].fields_by_name:
        assert isinstance(data["verifier"].pop("version"), dict)
    return json_format.ParseDict(data, vsa_pb2.VerificationSummary(), ignore_unknown_fields=False)


def sslib_verify(envelope_bytes: bytes, pub_path: Path) -> None:
    """Check the DSSE signature with securesystemslib, an independent implementation."""
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.dsse import Envelope as SslibEnvelope
    from securesystemslib.signer import SSlibKey

    from mlspec_attest.keys import PublicKey

    ours = PublicKey.from_file(pub_path)
    crypto_key = serialization.load_pem_public_key(pub_path.read_bytes())
    key = SSlibKey.from_crypto(crypto_key, keyid=ours.keyid)  # sslib matches signatures by keyid
    accepted = SslibEnvelope.from_dict(json.loads(envelope_bytes)).verify([key], 1)
    assert ours.keyid in accepted


def test_vsa_build_sign_parse_and_verify(chain: Project, tmp_path: Path) -> None:
    report = verify_bundle(chain.bundle, chain.policy(), [chain.root / "pkg"])
    assert report.passed
    out = write_vsa(report, tmp_path / "vsa.dsse.json", load_signer(chain.key("owner")))
    raw = out.read_bytes()
    sslib_verify(raw, chain.root / "keys" / "owner.pub")

    env = Envelope.from_dict(json.loads(raw))
    from mlspec_attest.model.canonical import canonicalize
    statement = json.loads(env.payload)
    assert canonicalize(statement) == env.payload
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == VSA_PREDICATE_TYPE
    from mlspec_attest.digests import digest_path
    assert statement["subject"] == [{"name": "pkg", "digest": {"sha256": digest_path(chain.root / "pkg").sha256}}]

    pred = statement["predicate"]
    assert pred["verifier"] == {"id": "https://mlspec.dev/mlspec-attest", "version": {"mlspec-attest": "0.1.0"}}
    assert pred["verificationResult"] == "PASSED"
    assert pred["verifiedLevels"] == ["MLSPEC_CHAIN_COMPLETE", "MLSPEC_OBJECTIVES_MET", "MLSPEC_ARTIFACT_BOUND"]
    assert not any(level.startswith("SLSA_") for level in pred["verifiedLevels"])
    assert pred["policy"]["digest"]["sha256"] == hashlib.sha256(chain.policy().read_bytes()).hexdigest()
    assert pred["timeVerified"] == report.verified_at and pred["resourceUri"] == "mlspec:package/demo-model"  # not a host path
    files = sorted((chain.bundle / "attestations").glob("*.dsse.json"))
    assert pred["inputAttestations"] == [
        {"uri": f"attestations/{f.name}", "digest": {"sha256": hashlib.sha256(f.read_bytes()).hexdigest()}}
        for f in files] + [{"uri": "head.dsse.json",  # the signed chain head, kept current on every append
                            "digest": {"sha256": hashlib.sha256((chain.bundle / "head.dsse.json").read_bytes()).hexdigest()}}]

    parsed = parse_vsa_predicate(pred)
    assert parsed.verifier.id == "https://mlspec.dev/mlspec-attest"
    assert parsed.verification_result == "PASSED"
    assert len(parsed.input_attestations) == 14  # 13 attestations and the chain head
    assert parsed.policy.digest["sha256"] == pred["policy"]["digest"]["sha256"]
    assert parsed.time_verified.ToJsonString() == report.verified_at

    # The whole statement also parses with the generic in-toto Statement v1 binding.
    from mlspec_attest.model.statement import validate_with_in_toto
    validate_with_in_toto(statement)


def test_vsa_without_artifact_names_the_packaged_subjects(chain: Project) -> None:
    report = verify_bundle(chain.bundle, chain.policy())
    statement = build_vsa_statement(report, resource_uri="oci://registry.example/demo-model@sha256:abc")
    assert [s["name"] for s in statement["subject"]] == ["pkg"]
    assert "mlspec.dev/manifest-sha256" in statement["subject"][0]["annotations"]
    assert statement["predicate"]["resourceUri"] == "oci://registry.example/demo-model@sha256:abc"
    assert statement["predicate"]["verifiedLevels"] == ["MLSPEC_CHAIN_COMPLETE", "MLSPEC_OBJECTIVES_MET"]


def test_verify_cli_writes_vsa(chain: Project, tmp_path: Path) -> None:
    vsa = tmp_path / "out" / "model.vsa.json"
    out = invoke("verify", chain.bundle, "--policy", chain.policy(), "--artifact", chain.root / "pkg",
                 "--vsa", vsa, "--vsa-key", chain.key("owner"))
    assert out.exit_code == 0, out.output
    sslib_verify(vsa.read_bytes(), chain.root / "keys" / "owner.pub")
    pred = json.loads(Envelope.from_dict(json.loads(vsa.read_bytes())).payload)["predicate"]
    assert pred["verificationResult"] == "PASSED"
    parse_vsa_predicate(pred)


def test_verify_cli_writes_failed_vsa_when_gate_fails(project: Project, tmp_path: Path) -> None:
    build_lifecycle(project, accuracy=0.5)
    vsa = tmp_path / "failed.vsa.json"
    out = invoke("verify", project.bundle, "--policy", project.policy(), "--vsa", vsa,
                 "--vsa-key", project.key("owner"))
    assert out.exit_code == 1
    pred = json.loads(Envelope.from_dict(json.loads(vsa.read_bytes())).payload)["predicate"]
    assert pred["verificationResult"] == "FAILED" and pred["verifiedLevels"] == ["FAILED"]
    parse_vsa_predicate(pred)
    half = CliRunner().invoke(main, ["verify", str(project.bundle), "--policy", str(project.policy()),
                                     "--vsa", str(vsa)])
    assert half.exit_code == 2 and "--vsa and --vsa-key go together" in half.output

"""The log verification phase by phase (mlspec_attest/log/verification.py), the signed-head
model and the proof document's validation, each on a small log of its own."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from mlspec_attest.errors import InputError
from mlspec_attest.log import verification as v
from mlspec_attest.log.format import LOG_FORMAT, SignedHead, is_sealed_log_metadata
from mlspec_attest.log.proofs import _ProofDoc, prove, verify_proof
from mlspec_attest.log.writer import InferenceLog
from mlspec_attest.model.canonical import canonicalize
from mlspec_attest.model.report import Finding
from mlspec_attest.policy import Policy
from mlspec_attest.project import Project

PIPE = hashlib.sha256(b"serve").hexdigest()


def rec(i: int) -> dict[str, Any]:
    return {"host": "h", "time": "2024-05-01T00:00:00Z", "request": "POST /p", "status": 200, "applicationId": "a",
            "requestId": f"r{i}", "modelId": "m", "inputFeatures": {"x": str(i)}, "prediction": {"y": i}}


class Signer:
    """Stands in for the attestor: remembers every tree head it 'signed'."""

    def __init__(self) -> None:
        self.heads: list[SignedHead] = []

    def __call__(self, metadata: dict[str, Any], products: list[Path]) -> str:
        digest = hashlib.sha256(canonicalize(metadata)).hexdigest()
        self.heads.append(SignedHead(attestation=digest, metadata=json.loads(json.dumps(metadata))))
        return digest


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, Signer]:
    signer = Signer()
    with InferenceLog(tmp_path / "lg", PIPE, batch_size=4, seal_fn=signer, flush_every=2) as lg:
        for i in range(10):
            lg.append(rec(i))
    return tmp_path / "lg", signer


def scan(directory: Path, heads: list[SignedHead] | None) -> v._Scan:
    s = v._Scan(directory, v.LogReport(str(directory)), heads, max_findings=100)
    v._read_inputs(s)
    return s


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def seals_rewrite(directory: Path, edit: Any) -> None:
    path = directory / "seals.jsonl"
    seals = [json.loads(line) for line in path.read_text().splitlines()]
    edit(seals)
    path.write_bytes(b"".join(canonicalize(s) + b"\n" for s in seals))


# -- phase 1/2 --------------------------------------------------------------------------------------------------


def test_phase_inputs_reports_unreadable_files(log: tuple[Path, Signer]) -> None:
    directory, _ = log
    (directory / "log.json").write_text("{")
    (directory / "seals.jsonl").write_text('{"seal": 1}\n')
    s = scan(directory, None)
    assert {"LOG_HEADER_INVALID", "LOG_SEALS_INVALID"} <= codes(s.report.findings)
    assert s.header is None and s.seals == []


def test_phase_seal_chain_on_its_own(log: tuple[Path, Signer]) -> None:
    directory, _ = log
    s = scan(directory, None)
    v._check_seal_chain(s)
    assert s.report.findings == []
    seals_rewrite(directory, lambda seals: seals.__setitem__(1, dict(seals[1], previous_tree_size=3)))
    s = scan(directory, None)
    v._check_seal_chain(s)
    assert "LOG_SEAL_CHAIN_BROKEN" in codes(s.report.findings)
    seals_rewrite(directory, lambda seals: seals.__setitem__(2, dict(seals[2], checkpoint_sha256="0" * 64)))
    s = scan(directory, None)
    v._check_seal_chain(s)
    assert "LOG_CHECKPOINT_MISMATCH" in codes(s.report.findings)


# -- phase 3 ----------------------------------------------------------------------------------------------------


def test_phase_signed_heads(log: tuple[Path, Signer]) -> None:
    directory, signer = log
    s = scan(directory, signer.heads)
    v._check_signed(s)
    assert s.report.findings == [] and s.report.attestations_checked == 3
    s = scan(directory, signer.heads[:2])  # a seal names an attestation that is not among the signed heads
    v._check_signed(s)
    assert codes(s.report.findings) == {"LOG_ATTESTATION_MISSING"}
    foreign = SignedHead("f" * 64, dict(signer.heads[0].metadata, pipeline="1" * 64))
    s = scan(directory, [*signer.heads, foreign])
    v._check_signed(s)
    assert {"LOG_PIPELINE_MISMATCH", "LOG_SIGNED_HEAD_UNSEALED"} <= codes(s.report.findings)
    broken = SignedHead("e" * 64, {"log_format": LOG_FORMAT, "tree_size": True, "root_hash": "x"})
    s = scan(directory, [broken])
    v._check_signed(s)
    assert "LOG_SIGNED_HEAD_INVALID" in codes(s.report.findings)


def test_phase_signed_heads_without_bundle_says_unchecked(log: tuple[Path, Signer]) -> None:
    directory, _ = log
    s = scan(directory, None)
    v._check_signed(s)
    assert [(f.code, f.severity) for f in s.report.findings] == [("LOG_ATTESTATIONS_UNCHECKED", "info")]


# -- phase 4/5 ----------------------------------------------------------------------------------------------------


def test_phase_scan_compares_every_signed_size_even_without_seals(log: tuple[Path, Signer]) -> None:
    directory, signer = log
    (directory / "seals.jsonl").unlink()
    lines = (directory / "records.jsonl").read_bytes().splitlines(keepends=True)
    lines[5] = lines[5].replace(b'"status":200', b'"status":500')
    (directory / "records.jsonl").write_bytes(b"".join(lines))
    s = scan(directory, signer.heads)
    v._check_leaf_cache(s)
    v._scan_records(s)
    v._conclude(s)
    mismatches = [f for f in s.report.findings if f.code == "LOG_SIGNED_ROOT_MISMATCH"]
    assert [f.message.split(" do not")[0] for f in mismatches] == ["records 0..7", "records 0..9"]  # not 0..3
    modified = [f for f in s.report.findings if f.code == "LOG_RECORD_MODIFIED"]
    assert len(modified) == 1 and modified[0].line == 6 and modified[0].severity == "error"
    assert s.roots_checked == {4: True, 8: False, 10: False}


def test_phase_locate_drops_cache_differences_where_the_root_holds(log: tuple[Path, Signer]) -> None:
    directory, signer = log
    (directory / "leaves.bin").write_bytes(b"\x01" * 32 * 10)
    result = v.verify(directory, heads=signer.heads)
    assert result.ok and codes(result.findings) == {"LOG_LEAVES_STALE"}


def test_phase_conclude_truncation_and_unsealed_counts(log: tuple[Path, Signer]) -> None:
    directory, signer = log
    lines = (directory / "records.jsonl").read_bytes().splitlines(keepends=True)
    (directory / "records.jsonl").write_bytes(b"".join(lines[:9]))
    result = v.verify(directory, heads=signer.heads)
    assert "LOG_RECORDS_TRUNCATED" in codes(result.findings) and not result.ok
    # signed heads decide what counts as sealed: an unsigned seal after them does not
    (directory / "records.jsonl").write_bytes(b"".join(lines))
    with InferenceLog(directory, batch_size=100) as lg:
        lg.append(rec(10))
    result = v.verify(directory, heads=signer.heads)
    assert result.ok and (result.sealed, result.unsealed) == (10, 1)
    assert v.verify(directory).sealed == 11  # without a bundle, every seal counts (and it says so)


def test_phase_check_lines_names_a_non_canonical_line(log: tuple[Path, Signer]) -> None:
    directory, signer = log
    lines = (directory / "records.jsonl").read_bytes().splitlines(keepends=True)
    lines[2] = json.dumps(json.loads(lines[2]), indent=1).replace("\n", "").encode() + b"\n"
    (directory / "records.jsonl").write_bytes(b"".join(lines))
    result = v.verify(directory, heads=signer.heads, deep=True)
    invalid = [f for f in result.findings if f.code == "LOG_RECORD_INVALID"]
    assert invalid and invalid[0].line == 3 and "canonical" in invalid[0].message


def test_report_json_uses_the_gate_finding_shape(log: tuple[Path, Signer]) -> None:
    directory, signer = log
    data = v.verify(directory, heads=signer.heads).to_dict()
    assert data["verdict"] == "pass" and data["signed_heads"] == 3
    assert v.verify(directory).to_dict()["signed_heads"] is None
    assert all(isinstance(f, Finding) for f in v.verify(directory).findings)


# -- signed heads and proofs ------------------------------------------------------------------------------------------


def test_signed_head_fields_are_typed() -> None:
    head = SignedHead("a" * 64, {"tree_size": True, "root_hash": "A" * 64, "seal": "1"})
    assert head.tree_size is None and head.root_hash is None and head.seal is None
    assert is_sealed_log_metadata({"log_format": LOG_FORMAT}) and not is_sealed_log_metadata({"tree_size": 3})


@pytest.mark.parametrize("field,value", [("leaf_index", -1), ("leaf_index", 1.0), ("tree_size", "10"),
                                         ("root_hash", "AB" * 32), ("inclusion_proof", "ab"), ("record", "x"),
                                         ("pipeline", 5), ("format", "other")])
def test_proof_document_is_validated_at_construction(log: tuple[Path, Signer], field: str, value: Any) -> None:
    directory, signer = log
    doc = dict(prove(directory, "r3"), **{field: value})
    with pytest.raises((ValueError, InputError)):
        _ProofDoc.from_dict(doc)
    assert [f.code for f in verify_proof(doc, signer.heads)] == ["LOG_PROOF_MALFORMED"]


def test_proof_matches_a_signed_head_by_size_and_root_not_by_name(log: tuple[Path, Signer]) -> None:
    directory, signer = log
    doc = prove(directory, "r3")
    assert verify_proof(doc, signer.heads) == []
    assert verify_proof(dict(doc, attestation="0" * 64), signer.heads) == []  # the name is only a hint
    assert codes(verify_proof(doc, signer.heads[:2])) == {"LOG_PROOF_NOT_SIGNED"}
    other_origin = [SignedHead(h.attestation, dict(h.metadata, origin="elsewhere")) for h in signer.heads]
    assert codes(verify_proof(doc, other_origin)) == {"LOG_PROOF_NOT_SIGNED"}


# -- configuration: policy log rule and the project file -------------------------------------------------------------


def test_policy_log_rule(tmp_path: Path) -> None:
    from mlspec_attest.keys import generate

    _, pub, _ = generate("k", tmp_path, "ed25519", None)
    base = {"version": 1, "keys": {"k": str(pub)}, "stages": {"train": {"signers": ["k"]}}}
    assert Policy.from_dict(base, source=tmp_path / "p.yaml").log_required is True  # on by default
    assert Policy.from_dict(dict(base, log={"required": False}), source=tmp_path / "p.yaml").log_required is False
    for bad in ({"required": "no"}, {"requred": True}, ["required"]):
        with pytest.raises(InputError, match="log"):
            Policy.from_dict(dict(base, log=bad), source=tmp_path / "p.yaml")


def test_project_file_log_entry(tmp_path: Path) -> None:
    (tmp_path / "mlspec.yaml").write_text("version: 1\nlog: logs/inference\n")
    assert Project.load(tmp_path / "mlspec.yaml").log == tmp_path / "logs" / "inference"
    (tmp_path / "mlspec.yaml").write_text("version: 1\nlog: [1]\n")
    with pytest.raises(InputError, match="log must be a path"):
        Project.load(tmp_path / "mlspec.yaml")

"""The gate on v2 fingerprint blobs (issue #19 item 1): crafted sets, swaps, and old v1 chains.

The split runner holds the pipeline key and writes the blobs: here its writer is replaced
(monkeypatched ``fingerprints_of_csv``) so the signed statement is well bound
(``fingerprints-of-sha256`` names the right files) and only the blob's content lies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Project, build_lifecycle

from mlspec_attest import leakage as L
from mlspec_attest.verify import verify_bundle

TRAIN = "x,y,group\n1,0,a\n2,1,b\n3,0,a\n"


def codes(report: Any) -> set[str]:
    return {f.code for f in report.findings if f.severity == "error"}


def messages(report: Any, code: str) -> str:
    return " | ".join(f.message for f in report.findings if f.code == code)


def _split(project: Project, holdback: str, monkeypatch: pytest.MonkeyPatch,
           writer: Callable[[Path], bytes] | None = None, target: str = "holdback") -> None:
    """Attest split of work/train.csv and work/holdback.csv; ``writer`` replaces the fingerprinting."""
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate"))
    project.write("work/train.csv", TRAIN)
    project.write("work/holdback.csv", holdback)
    if writer is not None:
        real = L.fingerprints_of_csv
        monkeypatch.setattr(L, "fingerprints_of_csv",
                            lambda path, header=True: writer(Path(path)) if target in str(path) else real(path))
    project.attestor().attest(
        "split", materials=["work/clean.csv"],
        products=["train-data=work/train.csv", "holdback-data=work/holdback.csv"],
        fingerprints=[("train", "work/train.csv"), ("holdback", "work/holdback.csv")],
        metadata={"sets": {"train": {"size": 3}, "holdback": {"size": 1}}})


def _values(csv_text: str) -> np.ndarray:
    rows = [r.encode() for r in csv_text.splitlines()[1:] if r.strip()]
    return np.unique(np.array([L.row_fingerprint(r) for r in rows], dtype=np.uint64))


def _raw_blob(deltas: list[int]) -> bytes:
    arr = np.array(deltas, dtype="<u8").view(np.uint8).reshape(-1, 8)
    planes = b"".join(L._PLANE.pack(L.RAW, len(deltas)) + arr[:, k].tobytes() for k in range(8))
    return L._HEADER.pack(L.MAGIC, 2, 1, 0, L.BLOCK_VALUES, len(deltas)) + planes


def test_honest_v2_split_passes_and_a_shared_row_is_found(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    _split(project, "x,y,group\n7,0,a\n", monkeypatch)
    assert not codes(verify_bundle(project.bundle, project.policy())) & {
        "LEAKAGE", "LEAKAGE_EVIDENCE_INVALID", "LEAKAGE_EVIDENCE_MISSING", "LEAKAGE_EVIDENCE_UNBOUND"}
    blob = next(p for p in (project.bundle / "blobs").iterdir() if p.read_bytes()[:8] == L.MAGIC)
    assert blob.read_bytes()[8] == 2  # the writer's default is v2


def test_shared_row_in_crlf_form_is_found(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: the hold-back set copies a training row with CRLF endings (a different file)."""
    _split(project, "x,y,group\r\n2,1,b\r\n", monkeypatch)
    report = verify_bundle(project.bundle, project.policy())
    assert "LEAKAGE" in codes(report) and "1 row(s) of train also appear in holdback" in messages(report, "LEAKAGE")


@pytest.mark.parametrize("deltas, why", [
    ([5, 0, 1], "not sorted and unique"),  # a repeated value smuggled as delta 0
    ([2**64 - 2, 5], "not sorted and unique"),  # wraps past 2^64
])
def test_crafted_holdback_blob_is_refused(project: Project, monkeypatch: pytest.MonkeyPatch,
                                          deltas: list[int], why: str) -> None:
    _split(project, "x,y,group\n7,0,a\n", monkeypatch, writer=lambda _p: _raw_blob(deltas))
    report = verify_bundle(project.bundle, project.policy())
    assert "LEAKAGE_EVIDENCE_INVALID" in codes(report) and why in messages(report, "LEAKAGE_EVIDENCE_INVALID")
    assert "LEAKAGE_EVIDENCE_MISSING" in codes(report)  # and the hold-back proof counts as absent


def test_overlap_split_over_blocks_is_still_found(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: the shared rows sit at block boundaries of a blob encoded one value a block."""
    holdback = "x,y,group\n1,0,a\n3,0,a\n9,9,z\n"
    _split(project, holdback, monkeypatch, writer=lambda _p: bytes(L.encode(_values(holdback), block_values=1)))
    report = verify_bundle(project.bundle, project.policy())
    assert "2 row(s) of train also appear in holdback" in messages(report, "LEAKAGE")


def test_swapped_blob_of_a_disjoint_set_is_refused(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: the bundle holder replaces the hold-back blob with a valid v2 blob of other rows."""
    _split(project, "x,y,group\n1,0,a\n", monkeypatch)
    holdback_digest = next(s["digest"]["sha256"] for s in _split_subjects(project)
                           if s["annotations"].get("role") == "fingerprints-holdback")
    (project.bundle / "blobs" / holdback_digest).write_bytes(bytes(L.encode(_values("h\n77,7,q\n"))))
    report = verify_bundle(project.bundle, project.policy())
    assert "differs from the digest split signed" in messages(report, "LEAKAGE_EVIDENCE_INVALID")
    assert "LEAKAGE_EVIDENCE_MISSING" in codes(report)


def test_old_v1_chain_still_verifies_and_still_finds_leakage(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Auditors replay chains written before v2: 8-byte sha256-prefix blobs."""
    def v1(path: Path) -> bytes:
        rows = [r.rstrip(b"\r") for r in path.read_bytes().split(b"\n")[1:] if r.strip()]
        return L.encode_v1(sorted({L.row_fingerprint_v1(r) for r in rows}))

    monkeypatch.setattr(L, "fingerprints_of_csv", lambda path, header=True: v1(Path(path)))
    _split(project, "x,y,group\n7,0,a\n", monkeypatch)
    assert not codes(verify_bundle(project.bundle, project.policy())) & {"LEAKAGE", "LEAKAGE_EVIDENCE_INVALID"}
    blobs = [p.read_bytes() for p in (project.bundle / "blobs").iterdir()]
    assert not any(b[:8] == L.MAGIC for b in blobs)


def test_old_v1_chain_with_a_shared_row(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def v1(path: Path) -> bytes:
        rows = [r for r in path.read_bytes().split(b"\n")[1:] if r.strip()]
        return L.encode_v1(sorted({L.row_fingerprint_v1(r) for r in rows}))

    monkeypatch.setattr(L, "fingerprints_of_csv", lambda path, header=True: v1(Path(path)))
    _split(project, "x,y,group\n3,0,a\n", monkeypatch)
    assert "LEAKAGE" in codes(verify_bundle(project.bundle, project.policy()))


def _split_subjects(project: Project) -> list[dict[str, Any]]:
    import json

    from mlspec_attest.bundle import extract_payload

    path = next((project.bundle / "attestations").glob("*-split.dsse.json"))
    return json.loads(extract_payload("dsse", path.read_bytes()))["subject"]


def test_the_streamed_largest_set_gets_every_check(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate streams the largest set (train here) block by block: a bad value deep in it still counts."""
    big = np.arange(10, 5000, 3, dtype=np.uint64)
    stream = L.FingerprintStream(bytes(L.encode(big, block_values=64)), "t")
    assert stream.count == big.size and np.array_equal(np.concatenate(list(stream.blocks())), big)
    crafted = _raw_blob([5] + [3] * 2000 + [0])  # a repeat at the very end of the largest set
    _split(project, "x,y,group\n7,0,a\n", monkeypatch, writer=lambda _p: crafted, target="train")
    report = verify_bundle(project.bundle, project.policy())
    assert "not sorted and unique" in messages(report, "LEAKAGE_EVIDENCE_INVALID")
    assert "fingerprints-train" in messages(report, "LEAKAGE_EVIDENCE_MISSING")


def test_the_streamed_largest_set_must_be_the_signed_blob(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    train = np.arange(1, 3000, dtype=np.uint64) * np.uint64(2**40)
    _split(project, "x,y,group\n7,0,a\n", monkeypatch, writer=lambda _p: bytes(L.encode(train)), target="train")
    digest = next(s["digest"]["sha256"] for s in _split_subjects(project)
                  if s["annotations"].get("role") == "fingerprints-train")
    (project.bundle / "blobs" / digest).write_bytes(bytes(L.encode(train + np.uint64(1))))
    report = verify_bundle(project.bundle, project.policy())
    assert "differs from the digest split signed" in messages(report, "LEAKAGE_EVIDENCE_INVALID")
    assert "LEAKAGE" not in codes(report)  # nothing is concluded from bytes that are not the signed ones


def test_overlap_with_the_streamed_largest_set_is_counted_for_each_other_set(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """train (largest, streamed) shares one row with hold-back and another with validation."""
    build_lifecycle(project, stages=("objectives", "ingest", "analyze", "transform", "validate"))
    project.write("work/train.csv", "x,y,group\n" + "".join(f"{i},0,a\n" for i in range(50)))
    project.write("work/holdback.csv", "x,y,group\n3,0,a\n900,1,b\n")
    project.write("work/val.csv", "x,y,group\n7,0,a\n901,1,b\n")
    project.attestor().attest(
        "split", materials=["work/clean.csv"],
        products=["train-data=work/train.csv", "eval-data=work/val.csv", "holdback-data=work/holdback.csv"],
        fingerprints=[("train", "work/train.csv"), ("holdback", "work/holdback.csv"), ("validation", "work/val.csv")],
        metadata={"sets": {"train": {"size": 50}, "holdback": {"size": 2}}})
    report = verify_bundle(project.bundle, project.policy())
    text = messages(report, "LEAKAGE")
    assert "1 row(s) of train also appear in holdback (of 50 rows)" in text
    assert "1 row(s) of validation also appear in train" in text

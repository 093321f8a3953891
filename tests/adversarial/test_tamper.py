"""Tamper resistance, shown systematically on a real signed 4-stage bundle with a signed head.

The normal suite covers every byte of one attestation (one seeded replacement value
per position), a seeded sample of (position, value) pairs over every file, and
every structural attack; benchmarks/mutation_suite.py runs every byte x 29 values
of every file. Zero accepted forgeries, zero crashes: every refusal is a finding.
"""

from __future__ import annotations

import random
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tamper_harness import Harness, Tally, byte_values, format_tally, sample_positions

TMP = "/dev/shm" if Path("/dev/shm").is_dir() else None


@pytest.fixture(scope="module")
def harness() -> Harness:
    return Harness(Path(tempfile.mkdtemp(dir=TMP)) / "p")


def _assert_all_refused(tally: Tally, *, allow_input_errors: bool = False) -> None:
    report = format_tally(tally)
    print(report)
    assert tally.total("accepted") == 0, report
    assert tally.total("crash") == 0, report
    if not allow_input_errors:
        assert tally.total("input_error") == 0, report
    assert tally.tried() > 0


def test_every_byte_of_one_attestation(harness: Harness) -> None:
    rng = random.Random(1)
    target = harness.att(1)

    def positions(path: Path, data: bytes) -> Iterator[tuple[int, int]]:
        if path == target:
            for pos in range(len(data)):
                yield pos, rng.choice(byte_values(data[pos]))

    tally = harness.run(harness.byte_mutations(positions), Tally())
    assert tally.tried() == len(harness.original[target])
    _assert_all_refused(tally)


def test_random_bytes_of_every_file(harness: Harness) -> None:
    tally = harness.run(harness.byte_mutations(sample_positions(random.Random(2), 0.004)), Tally())
    _assert_all_refused(tally)


def test_structural_attacks(harness: Harness) -> None:
    tally = harness.run(harness.structural_mutations(), Tally())
    # One structural case is unusable input by design: a directory where an attestation should be (exit 2).
    _assert_all_refused(tally, allow_input_errors=True)
    assert tally.total("input_error") == 1
    for cls in ("base64-reencoding", "remove", "reorder", "duplicate", "splice", "insert", "signature-moved",
                "signature-copied", "signature-stripped", "payload-type", "keyid-swapped", "ecdsa-for-ed25519",
                "head"):
        assert tally.counts[cls]["refused"] > 0, cls


def test_laxer_policy_planted_in_the_bundle(harness: Harness) -> None:
    tally = harness.policy_swaps(Tally())
    _assert_all_refused(tally)


@pytest.mark.parametrize("label, code", [
    ("head: truncate newest (head kept)", "CHAIN_ROLLBACK"),
    ("head: rollback to older chain + its head", "HEAD_EXPIRED"),
    ("head: removed", "HEAD_MISSING"),
    ("keyid-swapped: 0001-ingest.dsse.json:empty", "SIGNATURE_TAMPERED"),
    ("signature-copied: 0->1", "SIGNATURE_TAMPERED"),
    ("base64-reencoding: 0001-ingest.dsse.json:payload-padding-bits", "ENVELOPE_INVALID"),
    ("payload-type: 0001-ingest.dsse.json:json+resigned", "PAYLOAD_TYPE"),
    ("ecdsa-for-ed25519: 0001-ingest.dsse.json:auditor-ecdsa:hint=", "SIGNER_NOT_ALLOWED"),
])
def test_named_attacks_give_the_right_finding(harness: Harness, label: str, code: str) -> None:
    for cls, name, apply in harness.structural_mutations():
        if f"{cls}: {name}".startswith(label):
            try:
                apply()
                outcome, detail = harness.check()
            finally:
                harness.restore()
            assert outcome == "refused" and code in detail.split(","), (label, outcome, detail)
            return
    raise AssertionError(f"no mutation {label}")


# -- property: a random chain, then one random single-byte change, is refused -----------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_any_single_byte_change_is_refused(harness: Harness, data: st.DataObject) -> None:
    files = harness.files()
    path = data.draw(st.sampled_from(files))
    original = harness.original[path]
    pos = data.draw(st.integers(0, len(original) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != original[pos]))
    try:
        path.write_bytes(original[:pos] + bytes([value]) + original[pos + 1:])
        outcome, detail = harness.check()
    finally:
        harness.restore()
    assert outcome == "refused", (path.name, pos, value, outcome, detail)


CHAIN_POLICY = """\
version: 1
keys: {owner: ../keys/owner.pub, pipeline: ../keys/pipeline.pub}
objectives: {project: crash}
stages:
  objectives: {signers: [owner]}
  log: {signers: [pipeline], required: false, repeat: true}
head: {signers: [pipeline]}
metrics_binding: {required: false}  # an unsealed log head read by a criterion; binding has its own tests
"""
CHAIN_OBJECTIVES = {"project": "crash", "revision": 1, "outputs": {"task": "classification", "labels": [0, 1]}, "criteria": [
    {"name": "logged", "stage": "log", "expression": "metadata.tree_size >= 0", "severity": "block",
     "description": "a log exists"}]}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(appends=st.integers(1, 3), data=st.data())
def test_property_random_chain_then_one_mutation_is_refused(project, appends: int,  # type: ignore[no-untyped-def]
                                                            data: st.DataObject) -> None:
    """Random chain length, random single mutation (byte, removal, swap, duplicate): always refused."""
    import shutil
    from datetime import timedelta

    from conftest import resign_head

    from mlspec_attest.keys import load_signer
    from mlspec_attest.model.head import HEAD_FILE
    from mlspec_attest.policy import Policy
    from mlspec_attest.verify import Verifier

    bundle = project.root / f"chain-{uuid.uuid4().hex}"
    project.attestor("owner", bundle=bundle).attest("objectives", metadata=CHAIN_OBJECTIVES)
    for i in range(appends):
        project.attestor("pipeline", bundle=bundle).attest("log", metadata={"tree_size": i, "root_hash": "a" * 64})
    resign_head(bundle, [load_signer(project.key("pipeline"))], timedelta(hours=1))
    project.write("policies/chain.yaml", CHAIN_POLICY)
    verifier = Verifier(Policy.from_file(project.policy("chain.yaml")))
    report = verifier.verify(bundle)
    assert report.passed, [f.message for f in report.findings]
    files = sorted((bundle / "attestations").iterdir()) + [bundle / HEAD_FILE]
    kind = data.draw(st.sampled_from(["byte", "remove", "swap", "duplicate"]))
    if kind == "byte" or (kind == "swap" and len(files) < 3):
        path = data.draw(st.sampled_from(files))
        raw = path.read_bytes()
        pos = data.draw(st.integers(0, len(raw) - 1))
        path.write_bytes(raw[:pos] + bytes([raw[pos] ^ data.draw(st.integers(1, 255))]) + raw[pos + 1:])
    elif kind == "remove":
        data.draw(st.sampled_from(files)).unlink()
    elif kind == "swap":
        a, b = data.draw(st.permutations(files[:-1]))[:2]
        da, db = a.read_bytes(), b.read_bytes()
        a.write_bytes(db)
        b.write_bytes(da)
    else:
        src = data.draw(st.sampled_from(files[:-1]))
        shutil.copyfile(src, bundle / "attestations" / f"{len(files) - 1:04d}-log.dsse.json")
    assert not verifier.verify(bundle).passed, kind

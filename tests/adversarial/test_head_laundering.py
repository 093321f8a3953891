"""A truncated chain must never be laundered into one that passes by the next honest write.

Attack (found by the S3 review, local bundles alike): whoever can delete files in the
bundle removes the newest attestation (a monitor reading that withdrew the model), and
optionally the signed head too. The gate refuses that (CHAIN_ROLLBACK / HEAD_MISSING) --
until the next honest append or the scheduled ``mlspec attest head`` signs a fresh head
over the shorter chain. Every writer now refuses to extend or re-sign a chain that its
own signed head says is longer or different (attest/head.py ``tip_not_behind_head``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Project, build_lifecycle, resign_head

from mlspec_attest.attest.head import HeadAhead, sign_head
from mlspec_attest.cli.main import main
from mlspec_attest.keys import load_signer
from mlspec_attest.model.head import HEAD_FILE
from mlspec_attest.verify import verify_bundle

STAGES = ("objectives", "ingest", "analyze", "transform", "validate", "split", "train")


@pytest.fixture
def chain(project: Project) -> Project:
    build_lifecycle(project, stages=STAGES)  # every append re-signs the head (as an init'ed project does)
    return project


def _files(bundle: Path) -> dict[str, bytes]:
    return {str(p.relative_to(bundle)): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}


def _truncate(project: Project) -> None:
    newest = sorted((project.bundle / "attestations").glob("*.dsse.json"))[-1]
    newest.unlink()


def _codes(project: Project) -> set[str]:
    report = verify_bundle(project.bundle, project.policy())
    return {f.code for f in report.findings if f.severity == "error"}


def test_attest_head_refuses_to_sign_over_a_truncated_chain(chain: Project) -> None:
    _truncate(chain)
    before = _files(chain.bundle)
    with pytest.raises(HeadAhead, match="attestations were removed"):
        sign_head(chain.bundle, [load_signer(chain.key("pipeline"))], valid_for=timedelta(hours=1))
    assert _files(chain.bundle) == before  # the old head stays: the gate still sees the truncation
    assert "CHAIN_ROLLBACK" in _codes(chain)


def test_the_next_honest_append_refuses_a_truncated_chain(chain: Project) -> None:
    _truncate(chain)
    before = _files(chain.bundle)
    with pytest.raises(HeadAhead, match="sequence 6 but the newest attestation is 5"):
        chain.attestor("pipeline").attest("train", materials=["train-data=work/train.csv"],
                                          products=["model=out/model.bin"],
                                          metadata={"framework": {"name": "sklearn"}})
    assert _files(chain.bundle) == before


def test_an_append_without_head_signing_refuses_a_truncated_chain_too(chain: Project) -> None:
    _truncate(chain)
    before = _files(chain.bundle)
    with pytest.raises(HeadAhead):
        chain.attestor("pipeline", head=False).attest(
            "train", materials=["train-data=work/train.csv"], products=["model=out/model.bin"],
            metadata={"framework": {"name": "sklearn"}})
    assert _files(chain.bundle) == before


@pytest.mark.parametrize("damage", ["delete", "garble"])
def test_removing_or_garbling_the_head_as_well_does_not_launder(chain: Project, damage: str) -> None:
    _truncate(chain)
    head = chain.bundle / HEAD_FILE
    if damage == "delete":
        head.unlink()
    else:
        head.write_bytes(b'{"payloadType": "x"')
    before = _files(chain.bundle)
    with pytest.raises(HeadAhead):
        sign_head(chain.bundle, [load_signer(chain.key("pipeline"))], valid_for=timedelta(hours=1))
    with pytest.raises(HeadAhead):  # the append that would re-sign it
        chain.attestor("pipeline").attest("train", materials=["train-data=work/train.csv"],
                                          products=["model=out/model.bin"],
                                          metadata={"framework": {"name": "sklearn"}})
    assert _files(chain.bundle) == before


def test_cli_attest_head_is_exit_1_one_line_and_initial_is_a_deliberate_first_head(
        chain: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(chain.root)
    (chain.bundle / HEAD_FILE).unlink()
    args = ["attest", "head", "--bundle", str(chain.bundle), "--key", str(chain.key("pipeline"))]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1, refused.output
    assert "no signed head" in refused.output and "--initial" in refused.output
    assert "Traceback" not in refused.output
    assert not (chain.bundle / HEAD_FILE).exists()
    first = CliRunner().invoke(main, [*args, "--initial"])  # an operator who checked the chain signs its first head
    assert first.exit_code == 0, first.output
    assert (chain.bundle / HEAD_FILE).exists()


def test_a_head_in_step_or_behind_is_no_obstacle(chain: Project) -> None:
    """The honest cases: re-signing a current head, and appending after a head that lags (a crash between writes)."""

    sign_head(chain.bundle, [load_signer(chain.key("pipeline"))], valid_for=timedelta(hours=1))
    chain.attestor("pipeline", head=False).attest("evaluate", materials=["model=out/model.bin", "eval-data=work/val.csv"],
                                                  products=["evaluation-report=work/evaluation.json"],
                                                  metadata_files=[chain.root / "work/evaluation.json"])
    # the head now lags one behind: the next re-signing append carries on
    chain.attestor("pipeline").attest("test", materials=["model=out/model.bin", "holdback-data=work/holdback.csv"],
                                      products=["test-report=work/test.json"],
                                      metadata_files=[chain.root / "work/test.json"])
    assert "HEAD_BEHIND" not in _codes(chain)


# -- found by the second review: a head the writer did not verify -----------------------------------


def _planted_head(project: Project, *, sign_with: str | None = None, sequence_offset: int = 0) -> None:
    """A head naming the (shortened) tip, unsigned or signed by a key nobody trusts, written as a file."""
    from datetime import datetime, timezone

    from mlspec_attest.bundle import Bundle
    from mlspec_attest.keys import generate
    from mlspec_attest.model.canonical import canonicalize
    from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
    from mlspec_attest.model.head import ChainHead, head_statement

    tip = Bundle(project.bundle).head()
    assert tip is not None
    now = datetime.now(timezone.utc).replace(microsecond=0)
    head = ChainHead(genesis=tip.genesis, sequence=tip.sequence + sequence_offset, payload_sha256=tip.payload_sha256,
                     issued=now, expires=now + timedelta(hours=1))
    envelope = Envelope(payload_type=IN_TOTO_PAYLOAD_TYPE, payload=canonicalize(head_statement(head)))
    if sign_with is not None:
        generate(sign_with, project.root / "stranger-keys", "ed25519", None)
        envelope.sign(load_signer(project.root / "stranger-keys" / f"{sign_with}.key"))
    (project.bundle / HEAD_FILE).write_bytes(envelope.to_json())


@pytest.mark.parametrize("signer", [None, "stranger"])
def test_a_planted_head_naming_the_shortened_tip_does_not_launder(chain: Project, signer: str | None) -> None:
    """Attack (bundle holder, no key): delete the tail, plant a head (unsigned, or signed by their own key)
    naming the new tip, and wait for the next honest append to re-sign a valid head over the truncation."""
    _truncate(chain)
    _planted_head(chain, sign_with=signer)
    before = _files(chain.bundle)
    with pytest.raises(HeadAhead, match="signed by no key this writer trusts"):
        chain.attestor("pipeline").attest("train", materials=["train-data=work/train.csv"],
                                          products=["model=out/model.bin"],
                                          metadata={"framework": {"name": "sklearn"}})
    with pytest.raises(HeadAhead, match="signed by no key this writer trusts"):
        sign_head(chain.bundle, [load_signer(chain.key("pipeline"))], valid_for=timedelta(hours=1))
    assert _files(chain.bundle) == before
    assert {"HEAD_SIGNATURE_INVALID"} <= _codes(chain)  # and the gate still refuses what is there


def test_a_head_signed_by_a_policy_head_signer_is_believed(chain: Project) -> None:
    """The honest case next to it: a writer whose own head key differs (here: owner) still believes a head
    the policy's head signers (pipeline) signed, and without the policy it refuses to sign over it."""
    from mlspec_attest.attest.attestor import Attestor
    from mlspec_attest.attest.head import HeadSigning
    from mlspec_attest.verify.preflight import AppendGate

    def writer(policy: AppendGate | None) -> Attestor:
        return Attestor(chain.bundle, [load_signer(chain.key("pipeline"))], base_dir=chain.root, policy=policy,
                        head=HeadSigning((load_signer(chain.key("owner")),)), capture_run=False)

    with pytest.raises(HeadAhead, match="signed by no key this writer trusts"):
        writer(None).attest("evaluate", materials=["model=out/model.bin", "eval-data=work/val.csv"],
                            products=["evaluation-report=work/evaluation.json"],
                            metadata_files=[chain.root / "work/evaluation.json"])
    done = writer(AppendGate.from_file(chain.policy())).attest(
        "evaluate", materials=["model=out/model.bin", "eval-data=work/val.csv"],
        products=["evaluation-report=work/evaluation.json"], metadata_files=[chain.root / "work/evaluation.json"])
    assert done.sequence == 7


def test_every_attestation_removed_under_a_head_is_refused(chain: Project) -> None:
    """Attack: delete every attestation and keep the head; the next writer would start a new genesis."""
    for path in (chain.bundle / "attestations").glob("*.dsse.json"):
        path.unlink()
    before = _files(chain.bundle)
    with pytest.raises(HeadAhead, match="every attestation was removed"):
        chain.attestor("pipeline").attest("train", materials=["train-data=work/train.csv"],
                                          products=["model=out/model.bin"],
                                          metadata={"framework": {"name": "sklearn"}})
    assert _files(chain.bundle) == before


def test_deleting_the_new_attestation_before_its_head_is_signed_is_refused(chain: Project) -> None:
    """Attack (timing): remove the attestation just written before the writer signs its head; the head
    must never be signed over the shorter chain (the writer now signs only the tip it wrote, or later)."""
    from mlspec_attest.attest import head as head_mod
    from mlspec_attest.bundle import Head

    honest_sign = head_mod.sign_head_locked

    def delete_first(bundle, signing, *, now=None, at_least: Head | None = None):  # type: ignore[no-untyped-def]
        sorted((chain.bundle / "attestations").glob("*.dsse.json"))[-1].unlink()
        return honest_sign(bundle, signing, now=now, at_least=at_least)

    from mlspec_attest.attest import attestor as attestor_mod

    head_before = (chain.bundle / HEAD_FILE).read_bytes()
    original = attestor_mod.sign_head_locked
    attestor_mod.sign_head_locked = delete_first  # type: ignore[assignment]
    try:
        with pytest.raises(HeadAhead, match="changed while its head was being signed"):
            chain.attestor("pipeline").attest("evaluate", materials=["model=out/model.bin", "eval-data=work/val.csv"],
                                              products=["evaluation-report=work/evaluation.json"],
                                              metadata_files=[chain.root / "work/evaluation.json"])
    finally:
        attestor_mod.sign_head_locked = original  # type: ignore[assignment]
    assert (chain.bundle / HEAD_FILE).read_bytes() == head_before


def test_rotating_the_head_key_with_attest_head(chain: Project) -> None:
    """A team moves head signing from pipeline to owner: the old head is believed through the policy's head
    signers (the CLI passes mlspec.yaml's policy), and refused without them, where --initial is the way."""
    from mlspec_attest.keys import PublicKey

    owner = [load_signer(chain.key("owner"))]
    with pytest.raises(HeadAhead, match="signed by no key this writer trusts"):
        sign_head(chain.bundle, owner, valid_for=timedelta(hours=1))
    pipeline_pub = PublicKey.from_file(chain.root / "keys" / "pipeline.pub")
    _, head = sign_head(chain.bundle, owner, valid_for=timedelta(hours=1), also_trust=[pipeline_pub])
    assert head.sequence == len(STAGES) - 1


# -- found by the third review ---------------------------------------------------------------------


def test_initial_never_signs_over_a_head_naming_a_later_attestation(chain: Project) -> None:
    """Attack: the head key is rotated (writers no longer believe the old key's head, so the operator must
    use --initial) and the tail is deleted around it; --initial must still see the old head's evidence."""
    _truncate(chain)
    before = _files(chain.bundle)
    with pytest.raises(HeadAhead, match="attestations were removed"):
        sign_head(chain.bundle, [load_signer(chain.key("owner"))], valid_for=timedelta(hours=1), initial=True)
    assert _files(chain.bundle) == before


def test_an_expired_head_put_back_after_deleting_the_tail_is_not_believed(chain: Project) -> None:
    """Attack (saved an old head; no key): delete the newer attestations and put back the head that named
    the shortened tip back then. Expired, it no longer vouches for anything (the gate: HEAD_EXPIRED)."""
    from datetime import datetime, timezone

    _truncate(chain)
    long_ago = datetime.now(timezone.utc) - timedelta(days=3)
    resign_head(chain.bundle, [load_signer(chain.key("pipeline"))], timedelta(hours=24), now=long_ago)
    before = _files(chain.bundle)
    with pytest.raises(HeadAhead, match="expired"):
        chain.attestor("pipeline").attest("train", materials=["train-data=work/train.csv"],
                                          products=["model=out/model.bin"],
                                          metadata={"framework": {"name": "sklearn"}})
    with pytest.raises(HeadAhead, match="expired"):
        sign_head(chain.bundle, [load_signer(chain.key("pipeline"))], valid_for=timedelta(hours=1))
    assert _files(chain.bundle) == before
    assert "HEAD_EXPIRED" in _codes(chain)

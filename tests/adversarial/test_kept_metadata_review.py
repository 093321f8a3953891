"""The adversarial review of kept metadata (verify/_kept.py), each attack kept with its refusal.

Found and fixed: the lazy re-read decoded payloads with the standard base64 alphabet only,
so an envelope the first read accepted in base64url (``ENVELOPE_NOT_CANONICAL``, no key
needed to re-encode one) made the gate exit 2 (A1, A1b); ``check_served_model`` read
``rollout`` of every log, so every log with any extra field was read twice and held whole
(A2a); the monitor service read the signals of every good monitor (A2b); the latest
entries were restored before the revocation check decided which were authentic (A4).
Kept as they were: a file swapped under the verifier is refused, never read (A3).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from chain_harness import patched_chain


@pytest.fixture(autouse=True)
def idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlspec_attest._internal import workers as workers_mod

    monkeypatch.setattr(workers_mod, "oversubscribed", lambda: False)


def _verify(c: Path, *, whole: bool = False, policy: Path | None = None) -> Any:
    """The gate's context, with kept metadata or (``whole``) with every entry kept whole."""
    from mlspec_attest.policy import Policy
    from mlspec_attest.verify import _parallel
    from mlspec_attest.verify.verifier import Verifier

    mp = pytest.MonkeyPatch()
    if whole:
        mp.setattr(_parallel, "shed_stages", lambda policy: frozenset())
    try:
        return Verifier(Policy.from_file(policy or c / "policy.yaml")).verify_context(c / "bundle")
    finally:
        mp.undo()


def _findings(ctx: Any) -> list[tuple[str, Any, str]]:
    return [(f.code, f.sequence, f.message) for f in ctx.report.findings]


def _file(c: Path, seq: int) -> Path:
    return next(p for p in (c / "bundle" / "attestations").iterdir() if p.name.startswith(f"{seq:04d}-"))


def _to_base64url(path: Path) -> None:
    """The envelope's payload in the base64url alphabet: the same bytes, the same signatures."""
    doc = json.loads(path.read_bytes())
    doc["payload"] = base64.urlsafe_b64encode(base64.b64decode(doc["payload"])).decode()
    assert "-" in doc["payload"] or "_" in doc["payload"]
    path.write_text(json.dumps(doc))


def _log_with_fields(seq: int, md: dict[str, Any]) -> dict[str, Any]:
    return {**md, "records": seq, "note": "??????"}  # outside the kept fields; "???" puts "/" in base64


@pytest.mark.parametrize(("n", "workers"), [(40, "1"), (260, "2")])
def test_a1_a_base64url_envelope_is_read_again_as_first_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             n: int, workers: str) -> None:
    """A1: whoever holds the bundle re-encodes a non-latest log in base64url (no key needed)."""
    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", workers)
    c = patched_chain(tmp_path, n, log_patch=_log_with_fields)
    _to_base64url(_file(c, 14))
    kept, whole = _verify(c), _verify(c, whole=True)
    assert whole.report.passed and ("ENVELOPE_NOT_CANONICAL", 14) in [(f.code, f.sequence) for f in whole.report.findings]
    assert _findings(kept) == _findings(whole) and kept.report.passed
    e14 = next(e for e in kept.chain if e.sequence == 14)
    assert e14.statement.metadata["note"] == "??????"  # read again, from the base64url file


def test_a1b_the_latest_monitor_in_base64url_is_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", "1")
    c = patched_chain(tmp_path, 40, monitor_patch=lambda seq, md: {**md, "note": "??????"})
    latest = max(int(p.name[:4]) for p in (c / "bundle" / "attestations").glob("*-monitor.dsse.json"))
    _to_base64url(_file(c, latest))
    kept, whole = _verify(c), _verify(c, whole=True)
    assert _findings(kept) == _findings(whole) and kept.report.passed
    assert type(next(e for e in kept.chain if e.sequence == latest).statement.metadata) is dict


def test_a2a_no_log_is_read_twice_by_the_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A2a: real log seals carry fields outside the kept ones; no check may re-read every log."""
    from mlspec_attest.verify import _kept

    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", "1")
    calls: list[str] = []
    real = _kept.reread_metadata
    monkeypatch.setattr(_kept, "reread_metadata", lambda p, k, d: (calls.append(p.name), real(p, k, d))[1])
    c = patched_chain(tmp_path, 120, pad=512,
               log_patch=lambda seq, md: {**md, "records": seq, "record_fields": ["input", "output"]})
    ctx = _verify(c)
    assert ctx.report.passed
    assert len(calls) <= 2, calls  # the latest monitor and the latest log, restored whole
    assert not [e for e in ctx.chain if isinstance(e.statement.metadata, _kept.KeptMetadata)
                and e.statement.metadata._whole is not None]


def test_a2b_the_monitor_service_reads_only_the_newest_monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A2b: a non-latest monitor in base64url must not take /varz down; the state reads the newest alone."""
    from mlspec_attest import monitor
    from mlspec_attest.verify import _kept

    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", "1")
    c = patched_chain(tmp_path, 60, monitor_patch=lambda seq, md: {**md, "note": "??????"})
    _to_base64url(_file(c, 21))
    ctx = _verify(c)
    state = monitor.ChainState.from_report(ctx.report)
    assert not [e for e in ctx.chain if isinstance(e.statement.metadata, _kept.KeptMetadata)
                and e.statement.metadata._whole is not None]
    newest = [e for e in ctx.chain if e.stage == "monitor"][-1]
    assert state.signals == newest.statement.metadata["signals"]
    assert monitor.MonitorService(c / "bundle", c / "policy.yaml").state().report.passed


def _swap_symlink(victim: Path, c: Path) -> None:
    outside = c / "outside.json"
    outside.write_bytes(victim.read_bytes())  # the very same signed bytes, outside the bundle
    victim.unlink()
    victim.symlink_to(outside)


def _swap_fifo(victim: Path, c: Path) -> None:
    victim.unlink()
    os.mkfifo(victim)


def _swap_other_log(victim: Path, c: Path) -> None:
    victim.write_bytes(_file(c, 16).read_bytes())  # validly signed by the same key, another payload


def _swap_big(victim: Path, c: Path) -> None:
    victim.write_bytes(b" " * (70 << 20))  # over the attestation size limit


def _relayout(victim: Path, c: Path) -> None:
    victim.write_text(json.dumps(json.loads(victim.read_bytes()), indent=4))  # same payload, other layout


@pytest.mark.parametrize(("swap", "refused"), [(_swap_symlink, True), (_swap_fifo, True), (_swap_other_log, True),
                                              (_swap_big, True), (_relayout, False)])
def test_a3_a_file_swapped_after_it_was_verified_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            swap: Any, refused: bool) -> None:
    """A3: whoever holds the bundle replaces a verified, kept log while the gate runs (a later check
    re-reads it): exit 2, never the new content, no hang, nothing read from outside the bundle."""
    from mlspec_attest.errors import InputError
    from mlspec_attest.verify import _kept
    from mlspec_attest.verify import chain as chain_mod

    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", "1")
    c = patched_chain(tmp_path, 40, log_patch=lambda seq, md: {**md, "records": seq})
    real = chain_mod.build_chain

    def build_then_swap(*a: Any, **k: Any) -> Any:
        out = real(*a, **k)
        swap(_file(c, 14), c)
        return out

    monkeypatch.setattr(chain_mod, "build_chain", build_then_swap)
    ctx = _verify(c)  # no check reads a non-kept field of log 14 now (A2a): read it as one would
    e14 = next(e for e in ctx.chain if e.sequence == 14)
    assert isinstance(e14.statement.metadata, _kept.KeptMetadata)
    if refused:
        with pytest.raises(InputError, match="changed while it was being verified"):
            e14.statement.metadata["records"]
    else:
        assert e14.statement.metadata["records"] == 14


def test_a4_the_latest_authentic_entry_is_restored_after_revocations(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A4: a thief with a monitor key revoked ``after:`` signs the newest monitor; the newest
    authentic monitor (what criteria, ``previous`` and the monitor service read) is read whole."""
    from mlspec_attest.keys import generate, load_signer
    from mlspec_attest.model.envelope import Envelope

    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", "1")
    c = patched_chain(tmp_path, 40, pad=64)
    generate("thief", c / "keys", "ed25519", None)
    thief = load_signer(c / "keys" / "thief.key")
    latest = max(int(p.name[:4]) for p in (c / "bundle" / "attestations").glob("*-monitor.dsse.json"))
    path = _file(c, latest)
    env = Envelope.from_dict(json.loads(path.read_bytes()))
    env.signatures = []
    env.sign(thief)
    path.write_bytes(env.to_json())
    policy = (c / "policy.yaml").read_text()
    assert "  pipeline: keys/pipeline.pub" in policy and "  monitor:    {required: false, repeat: true}" in policy
    policy = policy.replace("  pipeline: keys/pipeline.pub", "  pipeline: keys/pipeline.pub\n  thief: keys/thief.pub")
    policy = policy.replace("  monitor:    {required: false, repeat: true}",
                            "  monitor:    {required: false, repeat: true, signers: [pipeline, thief]}")
    policy += f'\nrevoked:\n  - {{keyid: "{thief.keyid}", after: "2020-01-01T00:00:00Z", reason: stolen}}\n'
    (c / "policy-revoked.yaml").write_text(policy)
    kept = _verify(c, policy=c / "policy-revoked.yaml")
    whole = _verify(c, whole=True, policy=c / "policy-revoked.yaml")
    assert ("KEY_REVOKED", latest) in [(f.code, f.sequence) for f in kept.report.findings]
    newest_authentic = [e for e in kept.chain if e.stage == "monitor" and e.authentic][-1]
    assert newest_authentic.sequence < latest and type(newest_authentic.statement.metadata) is dict
    assert _findings(kept) == _findings(whole)

"""Recurring stages keep only the metadata fields every-entry checks read (issue #19 item 3).

The 100,000-chain's memory must not grow with its payload sizes, so a monitor or log
entry keeps only ``KEPT_FIELDS`` (verify/_kept.py). What must hold, each shown here:

* every verdict is the one the gate gives with whole metadata (serial and parallel,
  findings in non-latest entries included);
* the latest entry of each stage is read whole (criteria, binding, ``previous``);
* any other read of a kept entry re-reads the file and proves it is the signed payload;
  a file swapped under the verifier is refused, never read as the new content;
* a policy CEL check over every monitor's metadata sees all of it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from chain_harness import make_chain, patched_chain

from mlspec_attest.errors import InputError


@pytest.fixture
def idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlspec_attest._internal import workers as workers_mod

    monkeypatch.setattr(workers_mod, "oversubscribed", lambda: False)


def _context(c: Path, policy_path: Path | None = None) -> Any:
    from mlspec_attest.policy import Policy
    from mlspec_attest.verify.verifier import Verifier

    return Verifier(Policy.from_file(policy_path or c / "policy.yaml")).verify_context(c / "bundle")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_padded_monitors_keep_only_the_fields_checks_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          idle_cores: None, workers: str) -> None:
    from mlspec_attest.verify._kept import KeptMetadata

    c = patched_chain(tmp_path, 260, pad=4096)
    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", workers)
    ctx = _context(c)
    assert ctx.report.passed, [f.message for f in ctx.report.findings]
    monitors = [e for e in ctx.chain if e.stage == "monitor"]
    *earlier, latest = monitors
    assert len(earlier) > 100
    for e in earlier[1:]:  # the lifecycle's first monitor carries no padding
        assert isinstance(e.statement.metadata, KeptMetadata)
        assert set(e.statement.metadata._kept) == {"rollback_target", "serve_attestation"}  # no 4 KiB notes held
        assert e.statement.metadata._whole is None  # and nothing read them back
    assert type(latest.statement.metadata) is dict and len(latest.statement.metadata["notes"]) == 4096
    assert type(next(e for e in reversed(ctx.chain) if e.stage == "log").statement.metadata) is dict


def _findings(report: Any) -> list[tuple[str, int | None, str]]:
    return [(f.code, f.sequence, f.message) for f in report.findings]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_verdicts_equal_the_whole_metadata_verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   idle_cores: None, workers: str) -> None:
    """Attack: a pipeline key holder hides a rollback to an unknown package, a monitor of another
    model in a log and schema-refused signals deep in a long chain, where only kept fields are held.
    The findings are exactly the ones the gate gives when every entry keeps its whole metadata."""
    from mlspec_attest.verify import _parallel

    def monitor(seq: int, md: dict[str, Any]) -> dict[str, Any]:
        if seq == 41:
            md["rollback_target"] = {"name": "evil", "digest": {"sha256": "e" * 64}}
        if seq == 203:
            md["signals"] = "all fine, trust me"
        md["notes"] = "x" * 512
        return md

    def log(seq: int, md: dict[str, Any]) -> dict[str, Any]:
        return {**md, "model": "evil-model@sha256:" + "e" * 64, "notes": "y" * 512} if seq == 78 else md

    c = patched_chain(tmp_path, 260, monitor_patch=monitor, log_patch=log)
    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", workers)
    kept = _context(c)
    monkeypatch.setattr(_parallel, "shed_stages", lambda policy: frozenset())
    whole = _context(c)
    assert _findings(kept.report) == _findings(whole.report)
    codes = {(code, seq) for code, seq, _ in _findings(kept.report)}
    assert {("ROLLBACK_TARGET_UNKNOWN", 41), ("LOG_MODEL_MISMATCH", 78), ("METADATA_INVALID", 203)} <= codes
    assert any(type(e.statement.metadata).__name__ == "KeptMetadata" for e in kept.chain)
    assert not any(type(e.statement.metadata).__name__ == "KeptMetadata" for e in whole.chain)


def test_another_field_is_read_from_the_proven_file(tmp_path: Path, idle_cores: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A read of a field that was not kept loads the entry's own signed metadata, whole."""
    from mlspec_attest.verify._kept import KeptMetadata

    c = patched_chain(tmp_path, 40, pad=64)
    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", "1")
    ctx = _context(c)
    e = next(e for e in ctx.chain if e.sequence == 21)
    md = e.statement.metadata
    assert isinstance(md, KeptMetadata)
    assert md["signals"] == make_chain._monitor_metadata(21 - 12)["signals"]
    assert md.get("notes") == "x" * 64 and "notes" in md and len(md) == 4
    assert dict(md) == md.whole() and md == md.whole()
    assert md.get("no-such-field") is None


def test_a_file_swapped_under_the_verifier_is_refused_not_read(tmp_path: Path, idle_cores: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: whoever holds the bundle swaps a monitor's file for another validly signed monitor
    after it was verified, hoping a later read of its metadata sees the new content."""
    from mlspec_attest.verify._kept import KeptMetadata

    c = patched_chain(tmp_path, 40, pad=64)
    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", "1")
    ctx = _context(c)
    victim = next(e for e in ctx.chain if e.sequence == 21)
    donor = next(e for e in ctx.chain if e.sequence == 23)
    assert isinstance(victim.statement.metadata, KeptMetadata)
    victim.file.path.write_bytes(donor.file.path.read_bytes())  # signed by the same key, another payload
    with pytest.raises(InputError, match="changed while it was being verified"):
        victim.statement.metadata["signals"]
    victim.file.path.unlink()
    with pytest.raises(InputError, match="changed while it was being verified"):
        KeptMetadata({}, frozenset(), victim.file.path, "dsse", victim.payload_sha256).whole()


def test_a_policy_check_over_every_monitor_sees_its_whole_metadata(tmp_path: Path, idle_cores: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Walk-around tried: a policy CEL check reads a field that is not kept, on every monitor. A
    monitor that breaks it deep in the chain must fail the check (its stage keeps everything)."""
    from mlspec_attest.verify._kept import shed_stages

    def monitor(seq: int, md: dict[str, Any]) -> dict[str, Any]:
        md["signals"]["latency_p99_ms"] = 900 if seq == 57 else 12
        return md

    c = patched_chain(tmp_path, 250, monitor_patch=monitor)
    policy = c / "policy-checks.yaml"
    text = (c / "policy.yaml").read_text()
    assert "  monitor:    {required: false, repeat: true}\n" in text
    policy.write_text(text.replace("  monitor:    {required: false, repeat: true}\n",
                                   "  monitor:\n    required: false\n    repeat: true\n    checks:\n"
                                   "      - {name: fast, expression: 'metadata.signals.latency_p99_ms < 100'}\n"))
    from mlspec_attest.policy import Policy

    assert shed_stages(Policy.from_file(policy)) == frozenset({"log"})
    for workers in ("1", "2"):
        monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", workers)
        report = _context(c, policy).report
        assert [(f.code, f.sequence) for f in report.findings if f.code == "CHECK_FAILED"] == [("CHECK_FAILED", 57)]


def test_the_monitor_service_state_reads_kept_entries_whole(tmp_path: Path, idle_cores: None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The serve-side chain state takes its signals from the newest good monitor, kept or not."""
    from mlspec_attest.monitor import ChainState

    c = patched_chain(tmp_path, 40, pad=64)
    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", "1")
    ctx = _context(c)
    latest = [line for line in ctx.report.stages if line.stage == "monitor"][-1]
    latest.ok = False  # say the newest monitor failed a check: the one before it is the state
    state = ChainState.from_report(ctx.report)
    earlier = [line for line in ctx.report.stages if line.stage == "monitor" and line.ok][-1]
    assert state.signals == make_chain._monitor_metadata(earlier.sequence - 12)["signals"]


def test_the_pickle_fallback_hands_on_kept_metadata_not_a_partial_dict(tmp_path: Path, idle_cores: None,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: should a worker's entries travel by pickle, the kept fields still arrive as
    KeptMetadata (a plain dict of two fields would answer "absent" for every other one)."""
    import marshal

    from mlspec_attest.verify._kept import KeptMetadata

    real_dumps = marshal.dumps

    def refuse(value: Any, *args: Any) -> bytes:
        if isinstance(value, list):
            (tmp_path / f"refused-{os.getpid()}").touch()  # in the worker
            raise ValueError("unmarshallable object")
        return real_dumps(value, *args)

    c = patched_chain(tmp_path, 260, pad=128)
    monkeypatch.setattr(marshal, "dumps", refuse)
    monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", "2")
    ctx = _context(c)
    assert ctx.report.passed
    early = next(e for e in ctx.chain if e.sequence == 21)  # in the worker's first slice
    assert isinstance(early.statement.metadata, KeptMetadata)
    assert early.statement.metadata["notes"] == "x" * 128
    assert early.statement.raw["predicate"]["metadata"] is early.statement.metadata
    assert list(tmp_path.glob("refused-*")) and not (tmp_path / f"refused-{os.getpid()}").exists()


def test_a_sigstore_bundle_is_read_again_by_its_payload_digest_alone(tmp_path: Path) -> None:
    """The lenient decoder for Sigstore bundles (protobuf's JSON takes unpadded base64url) is sound
    only because the payload digest decides: a re-read of another payload is refused."""
    import base64
    import json

    from mlspec_attest.model.canonical import canonicalize, sha256_hex
    from mlspec_attest.verify._kept import reread_metadata

    c = patched_chain(tmp_path, 14)
    monitor = next((c / "bundle" / "attestations").glob("*-monitor.dsse.json"))
    payload = base64.b64decode(json.loads(monitor.read_bytes())["payload"])
    other = json.loads(payload)
    other["predicate"]["metadata"]["signals"] = {"latency_p99_ms": 1}
    forged = canonicalize(other)

    def bundle_with(body: bytes) -> Path:
        path = c / "bundle" / "attestations" / "0011-monitor.sigstore.json"
        text = base64.urlsafe_b64encode(body).decode().rstrip("=")  # unpadded base64url
        path.write_text(json.dumps({"dsseEnvelope": {"payload": text, "payloadType": "application/vnd.in-toto+json",
                                                     "signatures": []}}))
        return path

    path = bundle_with(payload)
    assert reread_metadata(path, "sigstore", sha256_hex(payload)) == json.loads(payload)["predicate"]["metadata"]
    path = bundle_with(forged)
    with pytest.raises(InputError, match="changed while it was being verified"):
        reread_metadata(path, "sigstore", sha256_hex(payload))

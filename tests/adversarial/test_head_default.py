"""Item #13.5: tail truncation is refused under the defaults, not only when someone turns the head on.

Attack: whoever holds the bundle deletes its newest attestations (the demo's log batch,
or a monitor reading that withdrew the model). Every remaining file is genuinely signed,
so the shortened chain used to pass. Now ``mlspec init`` projects and the demo re-sign
the chain head on every append and the shipped default policy requires it.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import resign_head

from mlspec_attest.cli.main import main
from mlspec_attest.keys import load_signer
from mlspec_attest.model.envelope import Envelope
from mlspec_attest.model.head import HEAD_FILE, parse_head_payload
from mlspec_attest.verify import verify_bundle


@pytest.fixture
def demo_project(demo_built: Path) -> Path:
    return demo_built  # conftest: built once per session, copied below


@pytest.fixture
def demo(demo_project: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "demo"
    shutil.copytree(demo_project, copy)
    return copy


def codes(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in report.findings if f.severity == "error"}


def _gate(demo: Path):  # type: ignore[no-untyped-def]
    # the demo seals an inference log: the gate needs it (LOG_MISSING otherwise)
    return verify_bundle(demo / "bundle", demo / "policies" / "default.yaml", log_dir=demo / "logs" / "inference")


def test_demo_head_names_its_newest_attestation(demo: Path) -> None:
    envelope = Envelope.from_dict(json.loads((demo / "bundle" / HEAD_FILE).read_bytes()))
    newest = sorted((demo / "bundle" / "attestations").glob("*.dsse.json"))[-1]
    assert parse_head_payload(envelope.payload).sequence == int(newest.name[:4])
    assert _gate(demo).passed


def test_deleting_the_newest_attestation_of_the_demo_is_refused(demo: Path) -> None:
    newest = sorted((demo / "bundle" / "attestations").glob("*.dsse.json"))[-1]
    assert newest.name.endswith("-log.dsse.json")
    newest.unlink()
    # with the log at hand, the log checks also see its seal gone (log-audit): refused either way
    found = codes(_gate(demo))
    assert "CHAIN_ROLLBACK" in found and found <= {"CHAIN_ROLLBACK", "LOG_ATTESTATION_MISSING", "LOG_UNSEALED_RECORDS",
                                                  "LOG_VERIFICATION_FAILED"}


def test_deleting_the_tail_and_the_head_is_refused(demo: Path) -> None:
    for f in sorted((demo / "bundle" / "attestations").glob("*.dsse.json"))[-2:]:
        f.unlink()
    (demo / "bundle" / HEAD_FILE).unlink()
    assert "HEAD_MISSING" in codes(_gate(demo))


def test_deleting_the_tail_and_re_signing_the_head_with_another_key_is_refused(demo: Path) -> None:
    sorted((demo / "bundle" / "attestations").glob("*.dsse.json"))[-1].unlink()
    resign_head(demo / "bundle", [load_signer(demo / "keys" / "owner.key")], timedelta(hours=1))
    found = codes(_gate(demo))
    assert "HEAD_SIGNATURE_INVALID" in found
    assert found <= {"HEAD_SIGNATURE_INVALID", "LOG_ATTESTATION_MISSING", "LOG_UNSEALED_RECORDS",
                                                  "LOG_VERIFICATION_FAILED"}


def test_init_project_re_signs_the_head_on_every_cli_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSPEC_KEY_PASSPHRASE", raising=False)
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "p"), "--no-passphrase"]).exit_code == 0
    monkeypatch.chdir(tmp_path / "p")
    result = runner.invoke(main, ["attest", "stage", "objectives", "--key", "keys/owner.key",
                                  "--metadata", "objectives.yaml"])
    assert result.exit_code == 0, result.output
    assert "re-signed the chain head" in result.output
    head = parse_head_payload(Envelope.from_dict(json.loads(Path("bundle", HEAD_FILE).read_bytes())).payload)
    assert head.sequence == 0 and head.expires - head.issued == timedelta(hours=24)
    result = runner.invoke(main, ["attest", "stage", "ingest", "--set", "sources=[{name: raw, connector: csv}]"])
    assert result.exit_code == 0, result.output
    head = parse_head_payload(Envelope.from_dict(json.loads(Path("bundle", HEAD_FILE).read_bytes())).payload)
    assert head.sequence == 1
    # A quiet chain is kept fresh by 'mlspec attest head' with no flags inside the project.
    result = runner.invoke(main, ["attest", "head"])
    assert result.exit_code == 0 and "sequence 1" in result.output, result.output


LOG_RECORD = ('{"host":"h","request":"POST /","applicationId":"a","requestId":"r1","modelId":"m",'
              '"time":"2026-01-01T00:00:00Z","status":200,"bytes":10,"requestTimestamp":"2026-01-01T00:00:00Z",'
              '"latency":0.1,"inputFeatures":{"a":1},"prediction":1}\n')


def test_log_seal_inside_a_project_re_signs_the_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-running chain grows by log seals: each must keep the head current, or the next gate says HEAD_BEHIND."""
    monkeypatch.delenv("MLSPEC_KEY_PASSPHRASE", raising=False)
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "p"), "--no-passphrase"]).exit_code == 0
    monkeypatch.chdir(tmp_path / "p")
    assert runner.invoke(main, ["attest", "stage", "objectives", "--key", "keys/owner.key",
                                "--metadata", "objectives.yaml"]).exit_code == 0
    Path("records.jsonl").write_text(LOG_RECORD, encoding="utf-8")
    result = runner.invoke(main, ["log", "append", "records.jsonl", "--log", "logs", "--pipeline", "a" * 64,
                                  "--seal", "--bundle", "bundle", "--key", "keys/pipeline.key"])
    assert result.exit_code == 0, result.output
    head = parse_head_payload(Envelope.from_dict(json.loads(Path("bundle", HEAD_FILE).read_bytes())).payload)
    assert head.sequence == 1

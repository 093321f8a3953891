"""``mlspec run branch``: a re-run starts from a verified prefix of a chain; every forged,
truncated or forked source is refused with nothing written, and a branched prefix is
judged by the gate on its own merits."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from conftest import REPO, Project, build_lifecycle

from mlspec_attest.attest.head import HeadAhead, sign_head
from mlspec_attest.branch import BRANCH_FILE, BranchRefused, branch_bundle, read_branch_note
from mlspec_attest.errors import InputError
from mlspec_attest.keys import load_signer
from mlspec_attest.model.envelope import Envelope
from mlspec_attest.policy import Policy
from mlspec_attest.verify import verify_bundle

THROUGH_PACKAGE = ("objectives", "ingest", "analyze", "transform", "validate", "split", "train", "evaluate",
                   "test", "package")
PACKAGE_KWARGS = dict(materials=["model=out/model.bin"], products=["package=pkg"],
                      metadata={"name": "demo-model", "contents": ["model.bin"]})


def codes(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in report.findings if f.severity == "error"}


def att(bundle: Path, seq: int) -> Path:
    return next((bundle / "attestations").glob(f"{seq:04d}-*.dsse.json"))


@pytest.fixture
def packaged(project: Project) -> Project:
    build_lifecycle(project, stages=THROUGH_PACKAGE)
    return project


def _policy(project: Project) -> Policy:
    return Policy.from_file(project.policy())


def test_rerun_package_after_a_fix_passes_on_the_branch(packaged: Project) -> None:
    """The issue's case: package again. On the old chain that is STAGE_ORDER/STAGE_REPEATED;
    on a branch from sequence 8 it is sequence 9 of a chain that passes the gate."""
    assert verify_bundle(packaged.bundle, packaged.policy()).passed
    packaged.write("pkg/manifest.json", '{"fixed": true}')
    new = packaged.root / "bundle-rerun"
    result = branch_bundle(packaged.bundle, 8, new, _policy(packaged))
    assert sorted(p.name for p in (new / "attestations").iterdir()) == \
        sorted(att(packaged.bundle, s).name for s in range(9))
    for s in range(9):  # byte for byte: same signatures, same links, same genesis
        assert att(new, s).read_bytes() == att(packaged.bundle, s).read_bytes()
    assert result.note.genesis == json.loads(Path(new / BRANCH_FILE).read_text())["genesis"]
    assert not (new / "head.dsse.json").exists()  # no key given: no head
    with pytest.raises(HeadAhead, match="no signed head"):  # appends refuse a chain without one
        packaged.attestor("pipeline", bundle=new).attest("package", **PACKAGE_KWARGS)
    sign_head(new, [load_signer(packaged.key("pipeline"))], timedelta(hours=1), initial=True)  # its first head
    appended = packaged.attestor("pipeline", bundle=new).attest("package", **PACKAGE_KWARGS)
    assert appended.sequence == 9
    report = verify_bundle(new, packaged.policy())
    assert report.passed, [f.message for f in report.findings]
    # the same re-run appended to the old chain is refused, as before
    packaged.attestor("pipeline").attest("package", **PACKAGE_KWARGS)
    assert {"STAGE_REPEATED"} <= codes(verify_bundle(packaged.bundle, packaged.policy()))


def test_branched_prefix_is_not_a_full_run(packaged: Project) -> None:
    """Presenting a branched prefix as the whole run: the gate judges it like any chain."""
    new = packaged.root / "short"
    branch_bundle(packaged.bundle, 5, new, _policy(packaged),
                  head_signers=(load_signer(packaged.key("pipeline")),))
    assert (new / "head.dsse.json").is_file()
    report = verify_bundle(new, packaged.policy())
    assert not report.passed
    assert "STAGE_MISSING" in codes(report)
    assert "HEAD_MISSING" not in codes(report) and "HEAD_MISMATCH" not in codes(report)


@pytest.mark.parametrize("attack", ["tampered-payload", "foreign-signature", "forked", "gap"])
def test_branch_refuses_a_prefix_that_does_not_verify(packaged: Project, attack: str) -> None:
    """Someone holding the bundle edits, re-signs, forks or removes an attestation at or before
    --from: the branch is refused (exit 1) and the target does not exist."""
    target = att(packaged.bundle, 3)
    doc = json.loads(target.read_text())
    if attack == "tampered-payload":
        doc["payload"] = doc["payload"][:-8] + ("A" if doc["payload"][-9] != "A" else "B") + doc["payload"][-7:]
        target.write_text(json.dumps(doc))
    elif attack == "foreign-signature":
        env = Envelope.from_dict(doc)
        forged = Envelope(payload_type=env.payload_type, payload=env.payload)
        forged.sign(load_signer(packaged.key("intruder")))
        target.write_bytes(forged.to_json())
    elif attack == "forked":
        (target.parent / "0003-transform-copy.dsse.json").write_bytes(att(packaged.bundle, 4).read_bytes())
    else:
        target.unlink()
    new = packaged.root / "branched"
    with pytest.raises(BranchRefused) as info:
        branch_bundle(packaged.bundle, 6, new, _policy(packaged))
    assert info.value.exit_code == 1
    assert not new.exists()
    assert not [p for p in packaged.root.iterdir() if p.name.startswith(".tmp-")]


def test_branch_refuses_a_source_whose_head_is_forged_or_truncated(packaged: Project) -> None:
    """The newest attestations removed (a head names a later sequence), or a head by a foreign key:
    the source is not the chain it claims, whatever prefix is asked for."""
    att(packaged.bundle, 9).unlink()  # truncation: the signed head names sequence 9
    with pytest.raises(BranchRefused, match="CHAIN_ROLLBACK"):
        branch_bundle(packaged.bundle, 4, packaged.root / "b1", _policy(packaged))
    from conftest import resign_head

    resign_head(packaged.bundle, [load_signer(packaged.key("intruder"))], __import__("datetime").timedelta(hours=1))
    with pytest.raises(BranchRefused, match="HEAD_SIGNATURE_INVALID"):
        branch_bundle(packaged.bundle, 4, packaged.root / "b2", _policy(packaged))
    assert not (packaged.root / "b1").exists() and not (packaged.root / "b2").exists()


def test_branch_refuses_a_revoked_signer(packaged: Project) -> None:
    """The pipeline key was revoked: its attestations are not authentic, so no prefix is branchable."""
    from mlspec_attest.keys import PublicKey

    keyid = PublicKey.from_file(packaged.root / "keys" / "pipeline.pub").keyid
    doc = yaml.safe_load(packaged.policy().read_text())
    doc["revoked"] = [{"keyid": keyid, "reason": "leaked"}]
    packaged.policy("revoked.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(BranchRefused, match="KEY_REVOKED"):
        branch_bundle(packaged.bundle, 3, packaged.root / "b", Policy.from_file(packaged.policy("revoked.yaml")))
    assert not (packaged.root / "b").exists()


def test_later_problems_do_not_block_an_earlier_branch(packaged: Project) -> None:
    """The reason to branch: a bad package at 9. A refusal there does not taint 0..8."""
    target = att(packaged.bundle, 9)
    target.unlink()  # and re-sign the head over what is left, as an operator would
    from datetime import timedelta

    from conftest import resign_head

    resign_head(packaged.bundle, [load_signer(packaged.key("pipeline"))], timedelta(hours=1))
    packaged.attestor("pipeline").attest("package", **PACKAGE_KWARGS)
    packaged.attestor("pipeline").attest("package", **PACKAGE_KWARGS)  # sequence 10: STAGE_REPEATED
    assert "STAGE_REPEATED" in codes(verify_bundle(packaged.bundle, packaged.policy()))
    branch_bundle(packaged.bundle, 8, packaged.root / "ok", _policy(packaged))
    assert len(list((packaged.root / "ok" / "attestations").iterdir())) == 9


def test_branch_copies_the_blobs_the_prefix_names_and_no_others(packaged: Project) -> None:
    new = packaged.root / "b"
    branch_bundle(packaged.bundle, 8, new, _policy(packaged))
    payloads = b"".join(Envelope.from_dict(json.loads(att(new, s).read_text())).payload for s in range(9))
    copied = {p.name for p in (new / "blobs").iterdir()}
    assert copied and all(name.encode() in payloads for name in copied)
    package_only = {p.name for p in (packaged.bundle / "blobs").iterdir()} - copied
    assert all(name.encode() not in payloads for name in package_only)


@pytest.mark.parametrize("case", ["not-empty", "file", "inside-source", "no-such-sequence", "negative"])
def test_branch_bad_input_is_exit_2_and_touches_nothing(packaged: Project, case: str) -> None:
    target, sequence = packaged.root / "t", 8
    if case == "not-empty":
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    elif case == "file":
        target.write_text("a file")
    elif case == "inside-source":
        target = packaged.bundle / "nested"
    elif case == "no-such-sequence":
        sequence = 42
    else:
        sequence = -1
    before = sorted(str(p) for p in packaged.root.rglob("*"))
    with pytest.raises(InputError):
        branch_bundle(packaged.bundle, sequence, target, _policy(packaged))
    assert sorted(str(p) for p in packaged.root.rglob("*")) == before


def test_branch_into_an_empty_directory(packaged: Project) -> None:
    target = packaged.root / "empty"
    target.mkdir()
    branch_bundle(packaged.bundle, 2, target, _policy(packaged))
    assert len(list((target / "attestations").iterdir())) == 3
    note = read_branch_note(target)
    assert note is not None and note.from_sequence == 2 and note.source_sequence == 9


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlspec_attest.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_cli_run_branch_exit_codes(packaged: Project) -> None:
    policy = str(packaged.policy())
    ok = _cli("run", "branch", "bundle", "--from", "8", "rerun", "--policy", policy, "--key",
              str(packaged.key("pipeline")), cwd=packaged.root)
    assert ok.returncode == 0, ok.stderr
    assert "branched bundle at sequence 8" in ok.stdout and (packaged.root / "rerun" / "head.dsse.json").is_file()
    again = _cli("run", "branch", "bundle", "--from", "8", "rerun", "--policy", policy, cwd=packaged.root)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    att(packaged.bundle, 2).write_text("{}")
    refused = _cli("run", "branch", "bundle", "--from", "8", "other", "--policy", policy, cwd=packaged.root)
    assert refused.returncode == 1 and "refusing to branch" in refused.stderr
    assert not (packaged.root / "other").exists()


def test_replay_and_report_show_where_a_branch_came_from(packaged: Project) -> None:
    """Auditors see the branch point; a note edited to claim another origin is shown as not matching."""
    from mlspec_attest.audit.replay import render_replay_text, replay
    from mlspec_attest.render.html import render_html

    new = packaged.root / "b"
    branch_bundle(packaged.bundle, 8, new, _policy(packaged))
    result = replay(new, policy=packaged.policy())
    assert result.branch is not None and result.branch["matches"] and result.branch["fromSequence"] == 8
    assert "branched at sequence 8 from" in render_replay_text(result)
    assert result.to_dict()["branch"]["source"] == str(packaged.bundle.resolve())
    assert 'id="branch"' in render_html(result.verify_report, result)
    note = json.loads((new / BRANCH_FILE).read_text())
    note["fromSequence"] = 3  # lie about the branch point
    (new / BRANCH_FILE).write_text(json.dumps(note))
    lied = replay(new, policy=packaged.policy())
    assert lied.branch is not None and not lied.branch["matches"]
    assert "does not match" in render_replay_text(lied)
    assert replay(packaged.bundle, policy=packaged.policy()).branch is None

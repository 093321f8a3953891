"""Forgeries of the inference log that need no key (issue #13, "Forgeries that need no key").

The attacker holds the bundle and the log directory (every file in both is writable to
them) but no signing key. Each test builds a real signed 13-stage chain whose log
attestations seal a real inference log, forges one thing, and shows the refusal with
its finding code: in ``mlspec log verify`` and, for the log-vs-gate class, in
``mlspec verify``, ``mlspec replay`` and ``mlspec report`` too.

Who could walk around what is in docs/security.md (rows "inference log").
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Project, build_lifecycle

from mlspec_attest.audit.replay import replay
from mlspec_attest.bundle import Bundle, extract_payload
from mlspec_attest.cli.main import main
from mlspec_attest.log.format import SignedHead, checkpoint_body
from mlspec_attest.log.merkle import FrontierAndBatch, MerkleAccumulator, consistency_proof, leaf_hash, root_of
from mlspec_attest.log.proofs import prove, verify_proof
from mlspec_attest.log.records import encode_record
from mlspec_attest.log.verification import verify as verify_log
from mlspec_attest.log.writer import InferenceLog
from mlspec_attest.model.canonical import canonicalize
from mlspec_attest.policy import Policy
from mlspec_attest.verify import verify_bundle
from mlspec_attest.verify.inference_log import read_signed_heads

STAGES = ("objectives", "ingest", "analyze", "transform", "validate", "split", "train", "evaluate", "test",
          "package", "serve", "monitor")


def record(i: int, **over: Any) -> dict[str, Any]:
    r = {"host": "10.0.0.1", "time": f"2024-05-01T13:55:{i % 60:02d}Z", "request": "POST /predict HTTP/1.1",
         "status": 200, "applicationId": "credit", "requestId": f"req-{i:04d}", "modelId": "credit/1",
         "inputFeatures": {"income": str(1000 + i)}, "prediction": {"approved": i % 2 == 0}}
    r.update(over)
    return r


def serve_digest(bundle: Path) -> str:
    serve = next(f for f in Bundle(bundle).files() if "-serve." in f.path.name)
    return hashlib.sha256(extract_payload(serve.kind, serve.data)).hexdigest()


@pytest.fixture
def sealed(project: Project) -> Project:
    """A signed chain whose three log attestations seal 25 records (seals at 10, 20, 25)."""
    build_lifecycle(project, stages=STAGES)
    attestor = project.attestor("pipeline")

    def seal_fn(metadata: dict[str, Any], products: list[Path]) -> str:
        return attestor.attest("log", metadata=metadata, products=[str(p) for p in products]).payload_sha256

    with InferenceLog(project.root / "logs", serve_digest(project.bundle), batch_size=10, seal_fn=seal_fn,
                      flush_every=5) as lg:
        for i in range(25):
            lg.append(record(i))
    return project


def logs(p: Project) -> Path:
    return p.root / "logs"


def heads(p: Project) -> list[SignedHead]:
    found, reading = read_signed_heads(p.bundle, Policy.from_file(p.policy()))
    assert reading.passed, reading.findings
    return found


def log_codes(p: Project) -> set[str]:
    return {f.code for f in verify_log(logs(p), heads=heads(p)).findings if f.severity == "error"}


def gate_codes(p: Project, log_dir: Path | None = None) -> set[str]:
    report = verify_bundle(p.bundle, p.policy(), log_dir=log_dir if log_dir is not None else logs(p))
    return {f.code for f in report.findings if f.severity == "error"}


def cli(*args: object) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def lines(p: Project) -> list[bytes]:
    return (logs(p) / "records.jsonl").read_bytes().splitlines(keepends=True)


def rebuild(p: Project, records: list[bytes], *, attestation: Any = "keep", drop_seals: bool = False) -> None:
    """The strongest keyless rewrite: records, leaves.bin, every seal and checkpoint recomputed to agree."""
    d = logs(p)
    (d / "records.jsonl").write_bytes(b"".join(records))
    leaves = [leaf_hash(r[:-1]) for r in records]
    (d / "leaves.bin").write_bytes(b"".join(leaves))
    if drop_seals:
        (d / "seals.jsonl").unlink()
        return
    header = json.loads((d / "log.json").read_text())
    seals = [json.loads(line) for line in (d / "seals.jsonl").read_text().splitlines()]
    seals = [s for s in seals if s["tree_size"] <= len(records)]  # a truncation drops the seals past it too

    prev_size, prev_root = 0, None
    for s in seals:
        size = s["tree_size"]
        root = root_of(leaves[:size]).hex()
        acc = MerkleAccumulator()
        acc.extend(leaves[:prev_size])
        proof = consistency_proof(prev_size, size, FrontierAndBatch(acc, leaves[prev_size:size])) if prev_size else []
        s.update(root_hash=root, previous_tree_size=prev_size, previous_root_hash=prev_root,
                 consistency_proof=[h.hex() for h in proof],
                 checkpoint_sha256=hashlib.sha256(checkpoint_body(header["origin"], size, bytes.fromhex(root)))
                 .hexdigest())
        if attestation != "keep":
            s["attestation"] = attestation
        prev_size, prev_root = size, root
    (d / "seals.jsonl").write_bytes(b"".join(canonicalize(s) + b"\n" for s in seals))


def test_honest_log_passes_everywhere(sealed: Project) -> None:
    """The baseline the forgeries are measured against: every command accepts the honest log."""
    assert log_codes(sealed) == set() and len(heads(sealed)) == 3
    assert gate_codes(sealed) == set()
    out = cli("log", "verify", "--log", logs(sealed), "--bundle", sealed.bundle, "--policy", sealed.policy(),
              "--strict")
    assert out.exit_code == 0, out.output
    assert "checked against 3 signed log attestation(s)" in out.output


# -- 1. made-up inclusion proofs ----------------------------------------------------------------------------


def own_tree_proof(p: Project, rec: dict[str, Any], **over: Any) -> dict[str, Any]:
    """A record the attacker invented, in a one-record tree of their own, naming the real attestation."""
    real = prove(logs(p), "req-0003")
    line = encode_record(rec, real["pipeline"])
    leaf = leaf_hash(line)
    doc = dict(real, record=json.loads(line), leaf_index=0, leaf_hash=leaf.hex(), tree_size=1, root_hash=leaf.hex(),
               inclusion_proof=[], checkpoint=checkpoint_body(real["origin"], 1, leaf).decode())
    doc.update(over)
    return doc


def forged_proofs(p: Project) -> dict[str, dict[str, Any]]:
    real = prove(logs(p), "req-0003")
    signed = heads(p)
    invented = record(999, status=500)
    bigger = own_tree_proof(p, invented)
    # a two-leaf tree of the attacker's: the invented record next to a real leaf
    line = encode_record(invented, real["pipeline"])
    sibling = bytes.fromhex(real["leaf_hash"])
    root2 = hashlib.sha256(b"\x01" + leaf_hash(line) + sibling).digest()
    two = dict(bigger, tree_size=2, root_hash=root2.hex(), inclusion_proof=[sibling.hex()],
               checkpoint=checkpoint_body(real["origin"], 2, root2).decode())
    edited = json.loads(json.dumps(real))
    edited["record"]["prediction"] = {"approved": True, "forged": True}
    wrong_size = dict(real, tree_size=signed[0].tree_size)  # a signed size, but not this root
    other_root = dict(real, root_hash=signed[0].root_hash)  # a signed root, but at another size
    return {
        "own one-record tree": bigger,
        "own two-record tree": two,
        "own tree, attestation field names the newest signed head": dict(bigger, attestation=signed[-1].attestation),
        "real proof, record edited": edited,
        "signed size, other root": wrong_size,
        "signed root, other size": other_root,
        "index past the tree": dict(real, leaf_index=real["tree_size"]),
        "negative index": dict(real, leaf_index=-1),
        "bool as index": dict(real, leaf_index=True),
        "string size": dict(real, tree_size=str(real["tree_size"])),
        "path element not hex": dict(real, inclusion_proof=["zz" * 32]),
        "record not an object": dict(real, record=[1, 2]),
        "other pipeline": dict(own_tree_proof(p, invented), pipeline="0" * 64),
        "not a proof": {"format": "something-else"},
    }


def test_made_up_proofs_are_refused_with_and_without_a_log_directory(sealed: Project, tmp_path: Path) -> None:
    """Threat: a proof's own root proves nothing. Whatever the shape, and whether or not a log
    directory is given, a proof is accepted only against a tree head the bundle signed."""
    signed = heads(sealed)
    for name, doc in forged_proofs(sealed).items():
        found = {f.code for f in verify_proof(doc, signed)}
        assert found and found <= {"LOG_PROOF_INVALID", "LOG_PROOF_NOT_SIGNED", "LOG_PROOF_MALFORMED"}, (name, found)
        path = tmp_path / "proof.json"
        path.write_text(json.dumps(doc))
        for with_log in (False, True):
            log_args = ["--log", logs(sealed)] if with_log else ["--log", tmp_path / "absent"]
            out = cli("log", "verify", *log_args, "--proof", path, "--bundle", sealed.bundle,
                      "--policy", sealed.policy())
            assert out.exit_code == 1, (name, with_log, out.output)
            assert "proof" in out.output and "FAILED" in out.output
    real = prove(logs(sealed), "req-0003")
    assert verify_proof(real, signed) == []
    path = tmp_path / "real.json"
    path.write_text(json.dumps(real))
    out = cli("log", "verify", "--log", tmp_path / "absent", "--proof", path, "--bundle", sealed.bundle,
              "--policy", sealed.policy())
    assert out.exit_code == 0, out.output


def test_proof_without_bundle_is_never_accepted(sealed: Project, tmp_path: Path) -> None:
    """No signed heads at hand (no --bundle, no project file): a proof cannot be accepted, even a real one."""
    path = tmp_path / "real.json"
    path.write_text(json.dumps(prove(logs(sealed), "req-0003")))
    out = cli("log", "verify", "--log", tmp_path / "absent", "--proof", path)
    assert out.exit_code == 1 and "LOG_PROOF_UNANCHORED" in out.output


def test_proof_against_an_unauthentic_log_attestation_is_refused(sealed: Project, tmp_path: Path) -> None:
    """An attacker adds a log attestation for their own tree, signed by a key the policy does not
    trust for the log stage: its tree head is no anchor (LOG_ATTESTATION_UNTRUSTED)."""
    doc = own_tree_proof(sealed, record(777))
    meta = {"log_format": "mlspec-inference-log/v1", "hash_algorithm": "RFC9162_SHA256", "origin": doc["origin"],
            "pipeline": doc["pipeline"], "seal": 4, "tree_size": 1, "root_hash": doc["root_hash"],
            "previous_tree_size": 0, "previous_root_hash": None, "consistency_proof": [],
            "records_file": "records.jsonl", "records_start": 0, "records_end": 1,
            "checkpoint_sha256": "0" * 64}
    sealed.attestor("intruder").attest("log", metadata=meta)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    out = cli("log", "verify", "--log", logs(sealed), "--proof", path, "--bundle", sealed.bundle,
              "--policy", sealed.policy())
    assert out.exit_code == 1
    assert "LOG_ATTESTATION_UNTRUSTED" in out.output and "LOG_PROOF_NOT_SIGNED" in out.output


# -- 2. a rewritten inference log ---------------------------------------------------------------------------


@pytest.mark.parametrize("attestation", ["keep", None], ids=["seals-keep-attestation-refs", "seals-unsigned"])
def test_sealed_records_rewritten_with_leaves_and_seals_rebuilt(sealed: Project, attestation: Any) -> None:
    """Threat: edit sealed records, then recompute leaves.bin, every seal, checkpoint and consistency
    proof so the log agrees with itself; optionally strip the attestation references."""
    ls = lines(sealed)
    ls[4] = encode_record(record(4, status=503), serve_digest(sealed.bundle)) + b"\n"
    rebuild(sealed, ls, attestation=attestation)
    assert verify_log(logs(sealed)).ok  # self-consistent: why the signed heads are the anchor
    found = log_codes(sealed)
    assert "LOG_SIGNED_ROOT_MISMATCH" in found
    if attestation is None:
        assert "LOG_SIGNED_HEAD_UNSEALED" in found
    else:
        assert "LOG_ATTESTATION_MISMATCH" in found
    out = cli("log", "verify", "--log", logs(sealed), "--bundle", sealed.bundle, "--policy", sealed.policy(),
              "--strict")
    assert out.exit_code == 1 and "LOG_SIGNED_ROOT_MISMATCH" in out.output


def test_seals_file_deleted(sealed: Project) -> None:
    """Threat: delete seals.jsonl (and rebuild leaves.bin): nothing left to contradict the records."""
    ls = lines(sealed)
    ls[12] = ls[12].replace(b'"status":200', b'"status":404')
    rebuild(sealed, ls, drop_seals=True)
    found = log_codes(sealed)
    assert {"LOG_SIGNED_HEAD_UNSEALED", "LOG_SIGNED_ROOT_MISMATCH"} <= found
    # Even an untouched log with its seals deleted is refused: every signed head must be matched.
    out = cli("log", "verify", "--log", logs(sealed), "--bundle", sealed.bundle, "--policy", sealed.policy())
    assert out.exit_code == 1 and "LOG_SIGNED_HEAD_UNSEALED" in out.output


def test_seals_deleted_but_records_untouched_still_fail(sealed: Project) -> None:
    (logs(sealed) / "seals.jsonl").unlink()
    assert log_codes(sealed) == {"LOG_SIGNED_HEAD_UNSEALED"}


@pytest.mark.parametrize("edit", ["truncate-sealed", "drop-first", "reorder", "replace-batch", "append-then-reseal"])
def test_sealed_prefix_changes_are_refused(sealed: Project, edit: str) -> None:
    """Threat: the sealed prefix differs from what was signed, in any way, with leaves and seals rebuilt."""
    ls = lines(sealed)
    pipe = serve_digest(sealed.bundle)
    if edit == "truncate-sealed":
        ls = ls[:18]
    elif edit == "drop-first":
        ls = ls[1:] + [encode_record(record(100), pipe) + b"\n"]
    elif edit == "reorder":
        ls[0], ls[9] = ls[9], ls[0]
    elif edit == "replace-batch":
        ls[10:20] = [encode_record(record(200 + i), pipe) + b"\n" for i in range(10)]
    else:  # the tail batch is re-sealed over records of the attacker's choosing
        ls = ls[:20] + [encode_record(record(300 + i), pipe) + b"\n" for i in range(5)]
    rebuild(sealed, ls)
    found = log_codes(sealed)
    assert found & {"LOG_SIGNED_ROOT_MISMATCH", "LOG_RECORDS_TRUNCATED"}, found


def test_unsigned_seal_beyond_the_signed_heads_is_not_counted_as_sealed(sealed: Project) -> None:
    """Records the attacker appends and seals without a key are 'unsealed' against the bundle."""
    with InferenceLog(logs(sealed), batch_size=100) as lg:
        for i in range(25, 30):
            lg.append(record(i))
    result = verify_log(logs(sealed), heads=heads(sealed))
    assert result.ok and result.sealed == 25 and result.unsealed == 5
    assert {f.code for f in result.findings} >= {"LOG_SEAL_UNSIGNED", "LOG_UNSEALED"}
    out = cli("log", "verify", "--log", logs(sealed), "--bundle", sealed.bundle, "--policy", sealed.policy(),
              "--strict")
    assert out.exit_code == 1


def test_log_from_another_pipeline_is_refused(sealed: Project, tmp_path: Path) -> None:
    """Threat: swap in a different (honest) log directory, e.g. another deployment's."""
    other = tmp_path / "other"
    with InferenceLog(other, "1" * 64, batch_size=10) as lg:
        for i in range(25):
            lg.append(record(i))
    result = verify_log(other, heads=heads(sealed))
    assert {"LOG_PIPELINE_MISMATCH", "LOG_SIGNED_ROOT_MISMATCH"} <= {f.code for f in result.findings}


# -- 3. the log inside the gate, the replay and the report -------------------------------------------------------


def edit_one_sealed_record(p: Project) -> None:
    ls = lines(p)
    ls[7] = ls[7].replace(b'"approved":false', b'"approved":true')
    (logs(p) / "records.jsonl").write_bytes(b"".join(ls))


def test_gate_refuses_an_edited_sealed_record(sealed: Project) -> None:
    edit_one_sealed_record(sealed)
    found = gate_codes(sealed)
    assert {"LOG_SIGNED_ROOT_MISMATCH", "LOG_RECORD_MODIFIED", "LOG_VERIFICATION_FAILED"} <= found
    out = cli("verify", sealed.bundle, "--policy", sealed.policy(), "--log", logs(sealed), "--format", "json")
    assert out.exit_code == 1
    data = json.loads(out.stdout)  # stderr names the policy and keys (trust-time)
    modified = next(f for f in data["findings"] if f["code"] == "LOG_RECORD_MODIFIED")
    assert modified["stage"] == "log" and modified["line"] == 8 and modified["request_id"] == "req-0007"


def test_gate_without_the_log_is_refused_by_default(sealed: Project, tmp_path: Path) -> None:
    """Threat: simply not handing the gate the log. Sealed log attestations need the log (fail closed)."""
    report = verify_bundle(sealed.bundle, sealed.policy())
    assert "LOG_MISSING" in {f.code for f in report.findings} and not report.passed
    assert "LOG_MISSING" in gate_codes(sealed, tmp_path / "no-such-log")
    shipped = sealed.policy().read_text()
    assert "\nlog:\n  required: true" in shipped  # the shipped policy states the default
    relaxed = sealed.root / "policies" / "relaxed.yaml"
    relaxed.write_text(shipped.replace("\nlog:\n  required: true", "\nlog:\n  required: false"))
    report = verify_bundle(sealed.bundle, relaxed)
    assert report.passed and "LOG_NOT_CHECKED" in {f.code for f in report.findings}
    bad = sealed.root / "policies" / "bad.yaml"
    bad.write_text(shipped.replace("\nlog:\n  required: true", "\nlog:\n  required: maybe"))
    out = cli("verify", sealed.bundle, "--policy", bad, "--log", logs(sealed))
    assert out.exit_code == 2 and "log.required" in out.output and "Traceback" not in out.output


def test_project_file_names_the_log(sealed: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """mlspec.yaml's log: is how `mlspec verify bundle` (no flags) finds the log."""
    (sealed.root / "mlspec.yaml").write_text("version: 1\npolicy: policies/default.yaml\nbundle: bundle\n"
                                             "log: logs\n")
    monkeypatch.chdir(sealed.root)
    assert cli("verify", "bundle").exit_code == 0
    edit_one_sealed_record(sealed)
    out = cli("verify", "bundle")
    assert out.exit_code == 1 and "LOG_SIGNED_ROOT_MISMATCH" in out.output


def test_replay_and_report_refuse_an_edited_sealed_record(sealed: Project, tmp_path: Path) -> None:
    edit_one_sealed_record(sealed)
    result = replay(sealed.bundle, sealed.root, sealed.policy(), log_dir=logs(sealed))
    assert result.verdict == "fail" and result.exit_code == 1
    assert "LOG_SIGNED_ROOT_MISMATCH" in {f.code for f in result.verify_report.findings}
    out = cli("replay", sealed.bundle, "--artifacts", sealed.root, "--policy", sealed.policy(), "--log", logs(sealed))
    assert out.exit_code == 1 and "LOG_SIGNED_ROOT_MISMATCH" in out.output
    html = tmp_path / "report.html"
    out = cli("report", sealed.bundle, "--html", html, "--policy", sealed.policy(), "--log", logs(sealed))
    assert out.exit_code == 1
    page = html.read_text()
    assert 'data-verdict="fail"' in page and "LOG_SIGNED_ROOT_MISMATCH" in page
    # and without the log at hand, replay and report refuse too (LOG_MISSING), they do not pass
    assert cli("replay", sealed.bundle, "--policy", sealed.policy()).exit_code == 1


def test_log_attestation_for_another_deployment_is_refused(sealed: Project, tmp_path: Path) -> None:
    """Threat (a runner, with the key): seal a log of a different serve attestation into this chain."""
    other = sealed.root / "other-log"
    attestor = sealed.attestor("pipeline")

    def seal_fn(metadata: dict[str, Any], products: list[Path]) -> str:
        return attestor.attest("log", metadata=metadata, products=[str(p) for p in products]).payload_sha256

    with InferenceLog(other, "2" * 64, batch_size=10, seal_fn=seal_fn) as lg:
        lg.append(record(1))
    assert "LOG_PIPELINE_NOT_SERVED" in gate_codes(sealed)


def test_replay_signature_status_agrees_with_the_gate_on_revocation(sealed: Project) -> None:
    """replay.py used to re-check signatures without revocation: the report said 'verified'
    where the gate said KEY_REVOKED. Now both use the gate's reader."""
    from mlspec_attest.keys import PublicKey

    keyid = PublicKey.from_file(sealed.root / "keys" / "pipeline.pub").keyid
    revoked = sealed.root / "policies" / "revoked.yaml"
    revoked.write_text(sealed.policy().read_text()
                       + f"revoked:\n  - {{keyid: {keyid}, after: '2000-01-01T00:00:00Z', reason: leaked}}\n")
    result = replay(sealed.bundle, sealed.root, revoked, log_dir=logs(sealed))
    statuses = {e.stage: e.signature_status for e in result.timeline()}
    assert "KEY_REVOKED" in statuses["train"].split(", ") and statuses["objectives"] == "verified"
    gate = {f.code for f in result.verify_report.findings}
    assert "KEY_REVOKED" in gate and result.verdict == "fail"


def test_leaf_cache_forgery_cannot_make_a_real_record_unprovable_silently(sealed: Project) -> None:
    """leaves.bin is unsigned: garbage there never passes as verified records."""
    (logs(sealed) / "leaves.bin").write_bytes(base64.b64decode(base64.b64encode(b"\x00" * 32 * 25)))
    result = verify_log(logs(sealed), heads=heads(sealed))
    assert result.ok, [(f.code, f.message) for f in result.findings if f.severity == "error"]  # only a cache
    assert "LOG_LEAVES_STALE" in {f.code for f in result.findings}
    shutil.rmtree(logs(sealed) / "checkpoints")
    assert verify_log(logs(sealed), heads=heads(sealed)).ok  # checkpoints are derived, not trusted


def test_dropping_the_log_attestations_from_the_bundle_is_refused_when_the_log_is_given(sealed: Project) -> None:
    """Threat: delete the chain's trailing log attestations (no gap: they are the tail), so no signed
    head is left to check. The log's seals still name them: LOG_ATTESTATION_MISSING."""
    for f in sorted((sealed.bundle / "attestations").glob("*-log.dsse.json")):
        f.unlink()
    assert "LOG_ATTESTATION_MISSING" in gate_codes(sealed)
    out = cli("log", "verify", "--log", logs(sealed), "--bundle", sealed.bundle, "--policy", sealed.policy())
    assert out.exit_code == 1 and "LOG_ATTESTATION_MISSING" in out.output


def test_bad_log_options_are_one_line_exit_2(sealed: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--log naming a file, --bundle with no policy to check it under: unusable input, not a pass."""
    a_file = tmp_path / "file"
    a_file.write_text("x")
    out = CliRunner().invoke(main, ["verify", str(sealed.bundle), "--policy", str(sealed.policy()), "--log", str(a_file)])
    assert out.exit_code == 2 and "Traceback" not in out.output
    monkeypatch.chdir(tmp_path)  # no mlspec.yaml anywhere up from here
    out = CliRunner().invoke(main, ["log", "verify", "--log", str(logs(sealed)), "--bundle", str(sealed.bundle)])
    assert out.exit_code == 2 and "no --policy given" in out.output and "Traceback" not in out.output

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
from mlspec_attest.errors import InputError
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


# -- 4. the review of the log (findings R2-R7 and display spoofing; docs/security.md "inference log") --------------

OTHER_PIPELINE = "f" * 64


def junk_lines(p: Project) -> dict[str, bytes]:
    """Lines a log holder without a key can append to the unsealed tail, each not what the writer writes."""
    pipe = serve_digest(p.bundle)
    good = json.loads(encode_record(record(900), pipe))
    no_pipeline = {k: v for k, v in good.items() if k != "pipeline"}
    return {
        "not JSON": b"this is not json at all",
        "duplicate keys": b'{"requestId":"a","requestId":"b"}',
        "another pipeline": canonicalize(dict(good, requestId="req-other", pipeline=OTHER_PIPELINE)),
        "not canonical": json.dumps(good, indent=1).replace("\n", "").encode(),
        "no pipeline field": canonicalize(no_pipeline),
        "missing nullable field": canonicalize({k: v for k, v in good.items() if k != "ident"}),
        "schema: bad status": canonicalize(dict(good, status="200")),
        "an array": b"[1,2,3]",
        "nested 100k deep": b'{"requestId":"deep","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    }


@pytest.mark.parametrize("kind", ["not JSON", "duplicate keys", "another pipeline", "not canonical", "no pipeline field",
                                  "missing nullable field", "schema: bad status", "an array", "nested 100k deep"])
def test_junk_in_the_unsealed_tail_is_never_signed(sealed: Project, kind: str) -> None:
    """R5 (log holder, no key): junk appended after the last seal was signed by the operator's routine
    `log seal`. Now the writer validates every unsealed line it did not write before anything signs it."""
    d = logs(sealed)
    line = junk_lines(sealed)[kind]
    with open(d / "records.jsonl", "ab") as fh:
        fh.write(line + b"\n")
    attestations = sorted((sealed.bundle / "attestations").iterdir())
    seals_before = (d / "seals.jsonl").read_bytes()
    out = CliRunner().invoke(main, ["log", "seal", "--log", str(d), "--bundle", str(sealed.bundle),
                                    "--key", str(sealed.key("pipeline"))])
    assert out.exit_code == 2, out.output
    lines_out = out.stderr.strip().splitlines()
    assert len(lines_out) == 1 and "records.jsonl:26" in lines_out[0] and "unsealed line" in lines_out[0], out.stderr
    assert sorted((sealed.bundle / "attestations").iterdir()) == attestations  # nothing signed
    assert (d / "seals.jsonl").read_bytes() == seals_before
    with pytest.raises(InputError, match="records.jsonl:26"):
        InferenceLog(d)  # the library refuses just the same (append, seal, close)


def test_invalid_sealed_lines_fail_verify_log_verify_and_replay(sealed: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """R5, the gate's half: had junk been signed anyway (an older writer, a key holder), the per-line
    checks run on every sealed line by default, not only with --deep."""
    import mlspec_attest.log.writer as writer

    d = logs(sealed)
    junk = junk_lines(sealed)
    with open(d / "records.jsonl", "ab") as fh:
        for kind in ("not JSON", "duplicate keys", "another pipeline"):
            fh.write(junk[kind] + b"\n")
    monkeypatch.setattr(writer, "line_problem", lambda body, pipeline: None)  # the writer of old: no checks
    attestor = sealed.attestor("pipeline")

    def seal_fn(metadata: dict[str, Any], products: list[Path]) -> str:
        return attestor.attest("log", metadata=metadata, products=[str(p) for p in products]).payload_sha256

    with InferenceLog(d, seal_fn=seal_fn, seal_on_close=False) as lg:
        assert lg.seal() is not None
    monkeypatch.undo()
    assert len(heads(sealed)) == 4  # the junk is covered by a genuine signature
    result = verify_log(d, heads=heads(sealed))
    invalid = [f for f in result.findings if f.code == "LOG_RECORD_INVALID"]
    assert [f.line for f in invalid] == [26, 27, 28] and all(f.severity == "error" for f in invalid)
    assert "pipeline" in invalid[2].message and "duplicate key" in invalid[1].message
    assert {"LOG_RECORD_INVALID", "LOG_VERIFICATION_FAILED"} <= gate_codes(sealed)
    out = cli("log", "verify", "--log", d, "--bundle", sealed.bundle, "--policy", sealed.policy(), "--strict")
    assert out.exit_code == 1 and "LOG_RECORD_INVALID" in out.output
    result = replay(sealed.bundle, sealed.root, sealed.policy(), log_dir=d)
    assert result.verdict == "fail" and "LOG_RECORD_INVALID" in {f.code for f in result.verify_report.findings}


def test_writer_signs_what_records_hold_not_the_leaf_cache(sealed: Project) -> None:
    """The unsealed tail's leaves come from the records: a forged leaves.bin tail cannot make the
    operator sign a root over records that are not in records.jsonl."""
    d = logs(sealed)
    with InferenceLog(d, seal_on_close=False) as lg:
        for i in range(25, 30):
            lg.append(record(i))
    leaves = bytearray((d / "leaves.bin").read_bytes())
    leaves[26 * 32 : 27 * 32] = leaf_hash(b"a record of the attacker's choosing")
    (d / "leaves.bin").write_bytes(bytes(leaves))
    attestor = sealed.attestor("pipeline")

    def seal_fn(metadata: dict[str, Any], products: list[Path]) -> str:
        return attestor.attest("log", metadata=metadata, products=[str(p) for p in products]).payload_sha256

    with InferenceLog(d, seal_fn=seal_fn, seal_on_close=False) as lg:
        lg.seal()
    result = verify_log(d, heads=heads(sealed))
    assert result.ok and result.sealed == 30, [(f.code, f.message) for f in result.findings]


def fake_sealed_log(p: Project, directory: Path) -> dict[str, Any]:
    """A runner with the pipeline key seals a made-up log of a pipeline the chain never served."""
    attestor = p.attestor("pipeline")

    def seal_fn(metadata: dict[str, Any], products: list[Path]) -> str:
        return attestor.attest("log", metadata=metadata, products=[str(x) for x in products]).payload_sha256

    with InferenceLog(directory, OTHER_PIPELINE, batch_size=10, seal_fn=seal_fn) as lg:
        lg.append(record(1, requestId="never-served"))
    return prove(directory, "never-served")


def test_proof_for_a_pipeline_the_chain_never_served_is_refused(sealed: Project, tmp_path: Path) -> None:
    """R6 (key holder): `log verify --bundle --proof` accepted a record of a deployment the chain never
    made. Signed heads are tied to the chain's authentic serve attestations there too."""
    fake = sealed.root / "fake"
    doc = fake_sealed_log(sealed, fake)
    signed, reading = read_signed_heads(sealed.bundle, Policy.from_file(sealed.policy()))
    assert {f.code for f in reading.findings} == {"LOG_PIPELINE_NOT_SERVED"}
    assert [h.served for h in signed] == [True, True, True, False]
    assert {f.code for f in verify_proof(doc, signed)} == {"LOG_PIPELINE_NOT_SERVED"}
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(doc))
    for log_dir in (tmp_path / "absent", fake):
        out = cli("log", "verify", "--log", log_dir, "--bundle", sealed.bundle, "--policy", sealed.policy(),
                  "--proof", path)
        assert out.exit_code == 1, out.output
        assert "LOG_PIPELINE_NOT_SERVED" in out.output and OTHER_PIPELINE in out.output
        assert f"proof {path}: FAILED" in out.output
    # the honest proof says which record of which pipeline it proved
    real = tmp_path / "real.json"
    real.write_text(json.dumps(prove(logs(sealed), "req-0003")))
    out = cli("log", "verify", "--log", tmp_path / "absent", "--bundle", sealed.bundle, "--policy", sealed.policy(),
              "--proof", real)
    assert f"proof {real}: ok (record req-0003, pipeline {serve_digest(sealed.bundle)})" in out.output
    assert out.exit_code == 1 and "LOG_PIPELINE_NOT_SERVED" in out.output  # the bundle holds the unserved head
    out = cli("log", "verify", "--log", logs(sealed), "--bundle", sealed.bundle, "--policy", sealed.policy())
    assert f"of pipeline {serve_digest(sealed.bundle)}" in out.output


def test_honest_proof_names_its_pipeline(sealed: Project, tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text(json.dumps(prove(logs(sealed), "req-0003")))
    out = cli("log", "verify", "--log", tmp_path / "absent", "--bundle", sealed.bundle, "--policy", sealed.policy(),
              "--proof", real)
    assert out.exit_code == 0, out.output
    assert f"proof {real}: ok (record req-0003, pipeline {serve_digest(sealed.bundle)})" in out.output


@pytest.mark.parametrize("variant", ["seals-deleted", "seals-unsigned", "header-rewritten"])
def test_log_attestations_and_seals_removed_records_rewritten(sealed: Project, variant: str) -> None:
    """R7 (bundle and log holder): delete the trailing log attestations and seals.jsonl (or strip the
    seals' attestation references, or also rewrite the header's pipeline), rewrite every record: no
    signed head is left to contradict the records. With the log required that is refused."""
    for f in sorted((sealed.bundle / "attestations").glob("*-log.dsse.json")):
        f.unlink()
    ls = [line.replace(b'"approved":false', b'"approved":true') for line in lines(sealed)]
    rebuild(sealed, ls, attestation=None, drop_seals=variant == "seals-deleted")
    if variant == "header-rewritten":
        header = json.loads((logs(sealed) / "log.json").read_text())
        (logs(sealed) / "log.json").write_bytes(canonicalize(dict(header, pipeline=OTHER_PIPELINE)) + b"\n")
    report = verify_bundle(sealed.bundle, sealed.policy(), log_dir=logs(sealed))
    found = [f for f in report.findings if f.code == "LOG_UNSEALED_RECORDS"]
    assert not report.passed and found and found[0].severity == "error", report.findings
    assert "25 record(s)" in found[0].message
    relaxed = sealed.root / "policies" / "relaxed.yaml"
    relaxed.write_text(sealed.policy().read_text().replace("\nlog:\n  required: true", "\nlog:\n  required: false"))
    report = verify_bundle(sealed.bundle, relaxed, log_dir=logs(sealed))
    assert [f.severity for f in report.findings if f.code == "LOG_UNSEALED_RECORDS"] == ["warning"]


@pytest.mark.parametrize("field, value", [
    ("attestation", 5), ("attestation", [1]), ("attestation", {"a": 1}), ("attestation", "A" * 64),
    ("time", 5), ("time", "yesterday"), ("consistency_proof", 5), ("consistency_proof", "ab"),
    ("tree_size", "25"), ("tree_size", True), ("root_hash", None), ("previous_root_hash", 7), ("extra", 1),
    ("whole line", [1, 2]), ("whole line", "seal"),
])
def test_seal_fields_of_the_wrong_type_are_a_finding_not_a_traceback(sealed: Project, field: str, value: Any) -> None:
    """R2a (log holder): seals.jsonl "attestation": 5 crashed the gate with a TypeError."""
    path = logs(sealed) / "seals.jsonl"
    seals = [json.loads(line) for line in path.read_text().splitlines()]
    seals[1] = value if field == "whole line" else dict(seals[1], **{field: value})
    path.write_text("".join(json.dumps(s) + "\n" for s in seals))
    result = verify_log(logs(sealed), heads=heads(sealed))
    assert "LOG_SEALS_INVALID" in {f.code for f in result.findings} and not result.ok
    assert "seals.jsonl:2" in next(f.message for f in result.findings if f.code == "LOG_SEALS_INVALID")
    assert "LOG_SEALS_INVALID" in gate_codes(sealed)
    for args in (("log", "prove", "req-0003"), ("log", "seal", "--unsigned")):
        out = CliRunner().invoke(main, [*args, "--log", str(logs(sealed))])
        assert out.exit_code == 2 and out.stderr.count("\n") == 1 and "seals.jsonl:2" in out.stderr, out.output


def test_deeply_nested_sealed_record_is_a_finding_everywhere(sealed: Project) -> None:
    """R2b: a sealed record replaced by JSON nested 100k deep was a RecursionError in verify,
    log verify, replay and log prove. Every log line goes through the depth-bounded parser."""
    ls = lines(sealed)
    ls[4] = junk_lines(sealed)["nested 100k deep"].replace(b'"deep"', b'"req-0004"') + b"\n"
    (logs(sealed) / "records.jsonl").write_bytes(b"".join(ls))
    invalid = next(f for f in verify_log(logs(sealed), heads=heads(sealed)).findings if f.code == "LOG_RECORD_INVALID")
    assert invalid.line == 5 and "nested too deeply" in invalid.message
    assert "LOG_RECORD_INVALID" in gate_codes(sealed)
    log_args = ("--log", str(logs(sealed)))
    for args in (("verify", str(sealed.bundle), "--policy", str(sealed.policy()), *log_args),
                 ("log", "verify", *log_args, "--bundle", str(sealed.bundle), "--policy", str(sealed.policy())),
                 ("replay", str(sealed.bundle), "--policy", str(sealed.policy()), *log_args)):
        out = cli(*args)
        assert out.exit_code == 1 and "LOG_RECORD_INVALID" in out.output, (args, out.output)
    out = CliRunner().invoke(main, ["log", "prove", "req-0004", *log_args])
    assert out.exit_code == 2 and "no record with requestId" in out.stderr
    out = CliRunner().invoke(main, ["log", "prove", "--index", "4", *log_args])
    assert out.exit_code == 2 and "does not prove" in out.stderr and out.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["records.jsonl", "leaves.bin", "seals.jsonl"])
def test_log_file_replaced_by_a_directory(sealed: Project, name: str) -> None:
    """R2c: records.jsonl, leaves.bin or seals.jsonl as a directory was an IsADirectoryError traceback."""
    path = logs(sealed) / name
    path.unlink()
    path.mkdir()
    log_args = ("--log", str(logs(sealed)))
    for args in (("verify", str(sealed.bundle), "--policy", str(sealed.policy()), *log_args),
                 ("log", "verify", *log_args, "--bundle", str(sealed.bundle), "--policy", str(sealed.policy())),
                 ("replay", str(sealed.bundle), "--policy", str(sealed.policy()), *log_args),
                 ("log", "prove", "req-0003", *log_args), ("log", "seal", "--unsigned", *log_args),
                 ("log", "render", *log_args)):
        out = CliRunner().invoke(main, list(args))  # an uncaught exception would show as exit 1 + exc_info
        assert out.exception is None or isinstance(out.exception, SystemExit), (args, out.exc_info)
        # render reads only the header and the records: a broken cache or seals file is not its business
        assert out.exit_code in ((0, 1, 2) if args[1] == "render" and name != "records.jsonl" else (1, 2)), \
            (args, out.output)
        if out.exit_code == 0:
            continue
        if out.exit_code == 2:
            assert out.stderr.count("\n") == 1 and name in out.stderr, (args, out.stderr)
        else:
            assert name in out.output or "LOG_" in out.output, (args, out.output)
    assert path.is_dir() and not any(path.iterdir())  # nothing written into it


def test_control_characters_in_a_record_never_reach_the_terminal(sealed: Project) -> None:
    """Low (log holder): a requestId holding \\r and ANSI escapes reached `log verify`'s text output,
    where it could overwrite the line with a fake VERIFIED. Every shown value is escaped."""
    ls = lines(sealed)
    spoof = "req-0007\r\x1b[2K\x1b[32mVERIFIED: all good\x1b[0m\u202e"
    ls[7] = canonicalize(dict(json.loads(ls[7]), requestId=spoof)) + b"\n"
    (logs(sealed) / "records.jsonl").write_bytes(b"".join(ls))
    for args in (("log", "verify", "--log", logs(sealed), "--bundle", sealed.bundle, "--policy", sealed.policy()),
                 ("verify", sealed.bundle, "--policy", sealed.policy(), "--log", logs(sealed))):
        out = cli(*args)
        assert out.exit_code == 1
        assert "\x1b" not in out.output and "\r" not in out.output and "\u202e" not in out.output, out.output
    assert "request_id=req-0007\\x0d\\x1b[2K" in cli("log", "verify", "--log", logs(sealed), "--bundle", sealed.bundle,
                                                     "--policy", sealed.policy()).output

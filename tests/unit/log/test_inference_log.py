"""Inference log: canonical records, seals, proofs, and tamper detection + location."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mlspec_attest.errors import InputError
from mlspec_attest.log.format import SignedHead
from mlspec_attest.log.inference import (
    InferenceLog,
    InferenceRecord,
    encode_record,
    prove,
    verify,
    verify_proof,
)
from mlspec_attest.log.merkle import leaf_hash, root_of
from mlspec_attest.model.canonical import canonicalize

PIPE = hashlib.sha256(b"serve attestation payload").hexdigest()
CLF = re.compile(r'^(\S+) (\S+) (\S+) \[(\d{2})/(\w{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\] "([^"\\]*(?:\\.[^"\\]*)*)" (\d{3}) (\d+|-)$')


def rec(i: int, **over: Any) -> dict[str, Any]:
    r = {
        "host": f"10.0.0.{i % 250}", "ident": None, "user": "svc", "time": f"2024-05-01T13:55:{i % 60:02d}.120+02:00",
        "request": "POST /v1/models/churn:predict HTTP/1.1", "status": 200, "bytes": 300 + i,
        "applicationId": "checkout", "requestId": f"req-{i:04d}", "requestTimestamp": "2024-05-01T11:55:36.100Z",
        "latency": 12.5 + i / 8, "modelId": "churn/3", "inputFeatures": {"age": str(20 + i), "plan": "pro"},
        "prediction": {"label": "churn", "score": 0.25 + (i % 50) / 100}, "explanation": {"age": 0.125}, "feedback": None,
    }
    r.update(over)
    return r


class FakeAttestor:
    """seal_fn test double: 'signs' by remembering the metadata under its digest."""

    def __init__(self) -> None:
        self.signed: dict[str, dict[str, Any]] = {}

    def __call__(self, metadata: dict[str, Any], products: list[Path]) -> str:
        assert all(p.exists() for p in products)
        digest = hashlib.sha256(canonicalize(metadata)).hexdigest()
        self.signed[digest] = json.loads(json.dumps(metadata))
        return digest

    def heads(self) -> list[SignedHead]:
        """What the gate would hand the log verification: every signed tree head."""
        return [SignedHead(attestation=d, metadata=m) for d, m in self.signed.items()]


def make_log(path: Path, n: int = 25, batch: int = 10, seal_tail: bool = True) -> FakeAttestor:
    att = FakeAttestor()
    with InferenceLog(path, PIPE, batch_size=batch, seal_fn=att, flush_every=4, seal_on_close=seal_tail) as lg:
        for i in range(n):
            assert lg.append(rec(i)) == i
    return att


def lines(path: Path) -> list[bytes]:
    return (path / "records.jsonl").read_bytes().splitlines(keepends=True)


def write_lines(path: Path, ls: list[bytes]) -> None:
    (path / "records.jsonl").write_bytes(b"".join(ls))


def codes(report) -> set[str]:
    return {f.code for f in report.findings if f.severity == "error"}


def test_log_files_roots_and_seals(tmp_path: Path) -> None:
    att = make_log(tmp_path)
    ls = lines(tmp_path)
    assert len(ls) == 25 and all(l.endswith(b"\n") for l in ls)
    leaves = [leaf_hash(l[:-1]) for l in ls]
    assert (tmp_path / "leaves.bin").read_bytes() == b"".join(leaves)
    seals = [json.loads(l) for l in (tmp_path / "seals.jsonl").read_text().splitlines()]
    assert [s["tree_size"] for s in seals] == [10, 20, 25]
    for s in seals:
        assert s["root_hash"] == root_of(leaves[: s["tree_size"]]).hex()
        assert att.signed[s["attestation"]]["root_hash"] == s["root_hash"]
    # each line is the RFC 8785 form of itself
    for l in ls:
        assert rfc8785.dumps(json.loads(l)) == l[:-1]
    report = verify(tmp_path, heads=att.heads())
    assert report.ok and report.sealed == 25 and report.unsealed == 0 and report.seals_verified == 3
    assert report.attestations_checked == 3


def test_prove_and_verify_proof(tmp_path: Path) -> None:
    att = make_log(tmp_path)
    proof = prove(tmp_path, "req-0013")
    assert proof["leaf_index"] == 13 and proof["tree_size"] == 25
    assert verify_proof(proof, att.heads()) == []
    assert [f.code for f in verify_proof(proof)] == ["LOG_PROOF_UNANCHORED"]  # no signed head: never accepted
    bad = json.loads(json.dumps(proof))
    bad["record"]["status"] = 500
    assert "LOG_PROOF_INVALID" in {f.code for f in verify_proof(bad, att.heads())}
    bad = json.loads(json.dumps(proof))
    bad["inclusion_proof"][0] = "00" * 32
    assert "LOG_PROOF_INVALID" in {f.code for f in verify_proof(bad, att.heads())}
    with pytest.raises(InputError):
        prove(tmp_path, "no-such-id")


def test_flipped_byte_in_sealed_record_is_located(tmp_path: Path) -> None:
    make_log(tmp_path)
    ls = lines(tmp_path)
    ls[12] = ls[12].replace(b'"status":200', b'"status":201')  # still valid, canonical JSON
    write_lines(tmp_path, ls)
    report = verify(tmp_path)
    assert not report.ok
    mod = [f for f in report.findings if f.code == "LOG_RECORD_MODIFIED"]
    assert len(mod) == 1 and mod[0].line == 13 and mod[0].request_id == "req-0012" and mod[0].seal == 2
    assert "LOG_ROOT_MISMATCH" in codes(report)


def test_byte_flip_anywhere_is_detected(tmp_path: Path) -> None:
    make_log(tmp_path, n=12, batch=6)
    original = (tmp_path / "records.jsonl").read_bytes()
    for pos in range(0, len(original), 97):
        data = bytearray(original)
        data[pos] ^= 0x01
        (tmp_path / "records.jsonl").write_bytes(bytes(data))
        report = verify(tmp_path)
        assert not report.ok, pos
        line = original[:pos].count(b"\n") + 1
        assert any(f.line == line for f in report.findings if f.severity == "error"), (pos, report.findings)


def test_dropped_record_is_located(tmp_path: Path) -> None:
    make_log(tmp_path)
    ls = lines(tmp_path)
    del ls[6]
    write_lines(tmp_path, ls)
    report = verify(tmp_path)
    assert not report.ok
    drop = [f for f in report.findings if f.code == "LOG_RECORD_DROPPED"]
    assert len(drop) == 1 and drop[0].index == 6 and "between lines 6 and 7" in drop[0].message
    assert "LOG_RECORDS_TRUNCATED" in codes(report)


def test_swapped_pair_is_located(tmp_path: Path) -> None:
    make_log(tmp_path)
    ls = lines(tmp_path)
    ls[3], ls[4] = ls[4], ls[3]
    write_lines(tmp_path, ls)
    report = verify(tmp_path)
    sw = [f for f in report.findings if f.code == "LOG_RECORDS_SWAPPED"]
    assert not report.ok and len(sw) == 1 and sw[0].line == 4 and "lines 4 and 5" in sw[0].message


def test_inserted_record_is_located(tmp_path: Path) -> None:
    make_log(tmp_path)
    ls = lines(tmp_path)
    ls.insert(15, encode_record(rec(99), PIPE) + b"\n")
    write_lines(tmp_path, ls)
    report = verify(tmp_path)
    ins = [f for f in report.findings if f.code == "LOG_RECORD_INSERTED"]
    assert not report.ok and len(ins) == 1 and ins[0].line == 16 and ins[0].request_id == "req-0099"


def test_rewritten_sealed_batch_fails_consistency(tmp_path: Path) -> None:
    """An attacker rewrites batch 1, recomputes leaves.bin and seal 1: the
    consistency proof stored with seal 2 (and the signed attestation) catch it."""
    att = make_log(tmp_path)
    ls = lines(tmp_path)
    ls[:10] = [encode_record(rec(i, status=503), PIPE) + b"\n" for i in range(10)]
    write_lines(tmp_path, ls)
    leaves = [leaf_hash(l[:-1]) for l in ls]
    (tmp_path / "leaves.bin").write_bytes(b"".join(leaves))
    seals = [json.loads(l) for l in (tmp_path / "seals.jsonl").read_text().splitlines()]
    seals[0]["root_hash"] = root_of(leaves[:10]).hex()
    seals[1]["previous_root_hash"] = seals[0]["root_hash"]
    from mlspec_attest.log.inference import checkpoint_body

    header = json.loads((tmp_path / "log.json").read_text())
    seals[0]["checkpoint_sha256"] = hashlib.sha256(
        checkpoint_body(header["origin"], 10, bytes.fromhex(seals[0]["root_hash"]))).hexdigest()
    (tmp_path / "seals.jsonl").write_bytes(b"".join(canonicalize(s) + b"\n" for s in seals))
    report = verify(tmp_path)
    cons = [f for f in report.findings if f.code == "LOG_CONSISTENCY_FAILED"]
    assert not report.ok and len(cons) == 1 and cons[0].seal == 2 and "records 0..9" in cons[0].message
    assert any(f.code == "LOG_ROOT_MISMATCH" and f.seal == 2 for f in report.findings)
    report = verify(tmp_path, heads=att.heads())
    assert any(f.code == "LOG_ATTESTATION_MISMATCH" and f.seal == 1 for f in report.findings)


def test_unsealed_tail_is_reported_not_verified(tmp_path: Path) -> None:
    make_log(tmp_path, n=25, batch=10, seal_tail=False)
    report = verify(tmp_path)
    assert report.ok and report.sealed == 20 and report.unsealed == 5
    uns = [f for f in report.findings if f.code == "LOG_UNSEALED"]
    assert uns and "lines 21..25" in uns[0].message
    with pytest.raises(InputError, match="not sealed"):
        prove(tmp_path, "req-0022")


def test_partial_last_line_and_resume(tmp_path: Path) -> None:
    make_log(tmp_path, n=25, batch=10, seal_tail=False)
    with open(tmp_path / "records.jsonl", "ab") as fh:
        fh.write(b'{"applicationId":"chec')
    report = verify(tmp_path)
    part = [f for f in report.findings if f.code == "LOG_PARTIAL_RECORD"]
    assert report.ok and part and part[0].line == 26 and part[0].severity == "warning"
    with pytest.raises(InputError, match="incomplete"):
        InferenceLog(tmp_path)
    # repair (drop the torn tail), lose the leaves cache, resume and seal: all verifies
    data = (tmp_path / "records.jsonl").read_bytes()
    (tmp_path / "records.jsonl").write_bytes(data[: data.rindex(b"\n") + 1])
    (tmp_path / "leaves.bin").write_bytes((tmp_path / "leaves.bin").read_bytes()[:-64])
    with InferenceLog(tmp_path, batch_size=10) as lg:
        assert lg.size == 25 and lg.sealed_size == 20
        lg.append(rec(25))
    report = verify(tmp_path)
    assert report.ok and report.sealed == 26 and report.seals_verified == 3


def test_other_pipeline_refused(tmp_path: Path) -> None:
    make_log(tmp_path, n=3)
    with pytest.raises(InputError, match="new log directory"):
        InferenceLog(tmp_path, "0" * 64)
    with InferenceLog(tmp_path) as lg, pytest.raises(InputError, match="pipeline"):
        lg.append(rec(1, pipeline="1" * 64))


@pytest.mark.parametrize("over,match", [
    ({"status": "200"}, "status"), ({"latency": float("nan")}, "finite"), ({"colour": "red"}, "unknown"),
    ({"time": "2024-05-01 13:55:36"}, "RFC 3339"), ({"time": "2024-02-30T10:00:00Z"}, "valid"),
    ({"inputFeaturesDigest": "ab" * 32}, "not both"), ({"feedback": 1.5}, "0 to 1"),
    ({"bytes": 2**60}, "bytes"), ({"explanation": {"a": "x"}}, "number"), ({"inputFeatures": {1: "a"}}, "string keys"),
])
def test_bad_records_are_input_errors(over: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        encode_record(rec(1, **over), PIPE)


def test_ncsa_rendering_matches_clf() -> None:
    r = InferenceRecord.from_dict(rec(7, pipeline=PIPE, request='GET /a "b" HTTP/1.1', user=None, bytes=None))
    line = r.to_ncsa()
    assert line == '10.0.0.7 - - [01/May/2024:13:55:07 +0200] "GET /a \\"b\\" HTTP/1.1" 200 -'
    assert CLF.match(line)
    r2 = InferenceRecord.from_dict(rec(8, pipeline=PIPE, user="a b", time="2024-12-31T23:59:59Z"))
    m = CLF.match(r2.to_ncsa())
    assert m and m.group(3) == "a\\x20b" and m.group(10) == "+0000" and m.group(5) == "Dec"
    assert InferenceRecord.from_dict(r.to_dict()) == r


# --- fast encoder == RFC 8785 ---------------------------------------------------------

_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, -0.0, 1e-7, 1e21, 5e-324, 1e16, 123.0, 1e-4])
_ints = st.integers(-(2**53) + 1, 2**53 - 1)
_text = st.text(st.characters(codec="utf-8"), max_size=12)
_scalar = st.none() | st.booleans() | _ints | _floats | _text
_json = st.recursive(_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(features=st.dictionaries(_text, _scalar, max_size=6), prediction=_json,
       explanation=st.none() | st.dictionaries(_text, _ints | _floats, max_size=4),
       latency=st.none() | _ints.map(abs) | _floats.map(abs), feedback=st.none() | st.floats(0, 1),
       strings=st.lists(_text.filter(bool), min_size=3, max_size=3))
def test_fast_encoding_is_rfc8785(features, prediction, explanation, latency, feedback, strings) -> None:
    r = rec(1, inputFeatures=features, prediction=prediction, explanation=explanation, latency=latency,
            feedback=feedback, host=strings[0], request=strings[1], user=strings[2])
    expected = rfc8785.dumps({**r, "pipeline": PIPE})
    assert encode_record(r, PIPE) == expected


# --- CLI ------------------------------------------------------------------------------


def test_cli_append_seal_prove_verify_render(tmp_path: Path) -> None:
    from mlspec_attest.cli.log import log

    runner = CliRunner()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(rec(i)) + "\n" for i in range(12)))
    d = str(tmp_path / "lg")
    res = runner.invoke(log, ["append", str(src), "--log", d, "--pipeline", PIPE])
    assert res.exit_code == 0, res.output
    res = runner.invoke(log, ["seal", "--log", d, "--unsigned"])
    assert res.exit_code == 0 and "seal 1: 12 records" in res.output
    res = runner.invoke(log, ["append", "-", "--log", d], input=json.dumps(rec(12)) + "\n")
    assert res.exit_code == 0
    res = runner.invoke(log, ["prove", "req-0003", "--log", d, "-o", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(log, ["verify", "--log", d])
    assert res.exit_code == 0 and "PASS" in res.output and "LOG_UNSEALED" in res.output
    assert "NOT checked against a bundle" in res.output
    res = runner.invoke(log, ["verify", "--log", d, "--proof", str(tmp_path / "p.json")])
    assert res.exit_code == 1 and "LOG_PROOF_UNANCHORED" in res.output  # no bundle: no signed root to accept
    assert runner.invoke(log, ["verify", "--log", d, "--strict"]).exit_code == 1
    res = runner.invoke(log, ["render", "--log", d, "--ncsa"])
    assert res.exit_code == 0 and all(CLF.match(l) for l in res.output.splitlines()) and len(res.output.splitlines()) == 13
    ls = lines(Path(d))
    ls[2] = ls[2].replace(b"req-0002", b"req-0O02")
    write_lines(Path(d), ls)
    res = runner.invoke(log, ["verify", "--log", d, "--format", "json"])
    assert res.exit_code == 1 and json.loads(res.output)["verdict"] == "fail"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"host": 1}\n')
    res = runner.invoke(log, ["append", str(bad), "--log", d])
    assert res.exit_code == 2 and "error:" in res.output


# --- the fast encoder (orjson when installed) == RFC 8785 ------------------------------

import mlspec_attest.log.records as _il  # noqa: E402
import mlspec_attest.log.writer as _writer  # noqa: E402

_ENCODERS = [pytest.param(_il._stdlib_encode, id="stdlib-json")]
try:
    import orjson as _orjson  # noqa: F401

    _ENCODERS.append(pytest.param(_il._select_encoder()[0], id="selected"))
except ImportError:  # orjson is optional: the stdlib encoder is then the fast one
    pass

# Exactly the shapes normalize_record() marks fast: integers within +/-(2^53-1),
# non-integral floats with 1e-4 <= |x| < 1e16, any string without lone surrogates
# (control characters, escapes, U+007F, U+2028, astral characters), ASCII keys.
_fast_floats = (st.floats(min_value=1e-4, max_value=1e16, exclude_max=True) | st.floats(min_value=-1e16, max_value=-1e-4, exclude_min=True)
                | st.decimals(min_value=-10**6, max_value=10**6, places=4).map(float)).filter(lambda x: x != 0 and not x.is_integer() and 1e-4 <= abs(x) < 1e16)
_any_text = st.text(st.characters(codec="utf-8") | st.sampled_from("\x00\x1f\x7f\x80\"\\/\b\f\n\r\t\u2028\u2029\ufeff\U0001f600é"), max_size=16)
_fast_scalar = st.none() | st.booleans() | _ints | _fast_floats | _any_text
_fast_json = st.recursive(_fast_scalar, lambda c: st.lists(c, max_size=4)
                          | st.dictionaries(st.text(st.characters(max_codepoint=0x7F), max_size=8), c, max_size=4), max_leaves=12)


@pytest.mark.parametrize("encode", _ENCODERS)
@settings(max_examples=400, deadline=None)
@given(value=st.dictionaries(st.text(st.characters(max_codepoint=0x7F), max_size=8), _fast_json, max_size=6))
def test_fast_encoder_bytes_equal_rfc8785(encode, value) -> None:
    assert encode(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("encode", _ENCODERS)
@settings(max_examples=2000, deadline=None)
@given(x=_fast_floats)
def test_fast_encoder_floats_equal_es6(encode, x: float) -> None:
    assert encode({"x": x}) == rfc8785.dumps({"x": x})


@pytest.mark.parametrize("x", [1e-5, -1e-5, 1.7736495352622546e-06, 1e-7, 5e-324, 1e21, 1e16, -0.0, 12.0, 2.0**53, 1e300])
def test_floats_outside_the_fast_range_still_rfc8785(x: float) -> None:
    """orjson prints 1.77e-6 as '1.7736495352622546e-6', ES6 as '0.0000017736495352622546':
    such values must take the reference encoder (or become integers)."""
    r = rec(1, latency=abs(x), explanation={"w": x}, prediction={"score": x, "v": [x]}, inputFeatures={"f": x})
    assert encode_record(r, PIPE) == rfc8785.dumps({**r, "pipeline": PIPE})


def test_encoder_selection_falls_back(monkeypatch) -> None:
    monkeypatch.setenv("MLSPEC_LOG_ENCODER", "json")
    enc, name, _ = _il._select_encoder()
    assert name == "json" and enc is _il._stdlib_encode
    assert _il._stdlib_encode(_il._PROBE) == rfc8785.dumps(_il._PROBE)


def test_lone_surrogate_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="RFC 8785"):
        encode_record(rec(1, host="a\ud800b"), PIPE)
    with pytest.raises(InputError, match="RFC 8785"):
        encode_record(rec(1, inputFeatures={"k": "\udfff"}), PIPE)
    with InferenceLog(tmp_path, PIPE) as lg:
        with pytest.raises(InputError):
            lg.append(rec(1, prediction={"label": "\ud83d"}))
        assert lg.append(rec(2)) == 0  # the refused record left no trace


def test_both_encoders_write_identical_logs(tmp_path: Path, monkeypatch) -> None:
    """Same records.jsonl, leaves.bin and roots whichever fast encoder is in use;
    tamper detection works on the result as before."""
    records = [rec(i, inputFeatures={"age": 20 + i, "x": 0.5 + i / 7, "s": f"é\u2028\x01{i}"}) for i in range(40)]
    out = {}
    for enc in [p.values[0] for p in _ENCODERS] + [_il._stdlib_encode]:
        monkeypatch.setattr(_writer, "_fast_encode", enc)
        d = tmp_path / str(len(out))
        with InferenceLog(d, PIPE, batch_size=16, flush_every=4) as lg:
            for r in records:
                lg.append(r)
        out[d] = ((d / "records.jsonl").read_bytes(), (d / "leaves.bin").read_bytes(),
                  [s.root_hash for s in lg.seals])
    assert len({repr(v) for v in out.values()}) == 1
    d = next(iter(out))
    assert all(line[:-1] == rfc8785.dumps(json.loads(line)) for line in lines(d))
    assert verify(d).ok
    ls = lines(d)
    ls[5] = ls[5].replace(b'"age":25', b'"age":26')
    write_lines(d, ls)
    report = verify(d)
    assert not report.ok and "LOG_RECORD_MODIFIED" in codes(report)


def test_str_subclass_keys_and_values_are_encoded_like_rfc8785(tmp_path: Path) -> None:
    """orjson refuses str-subclass dict keys (numpy.str_ is one): the reference
    encoder then writes the record, with the same bytes as RFC 8785."""

    class S(str):
        pass

    r = rec(3, inputFeatures={S("age"): S("33"), "plan": "pro"}, explanation={S("age"): 0.25}, host=S("10.0.0.3"))
    expected = rfc8785.dumps({**{k: v for k, v in r.items()}, "pipeline": PIPE})
    assert encode_record(r, PIPE) == expected
    with InferenceLog(tmp_path, PIPE) as lg:
        lg.append(r)
    assert lines(tmp_path)[0] == expected + b"\n"

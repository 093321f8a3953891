"""The verifier's fast paths decide exactly what the reference paths decide.

* ``canonical.parse_canonical_fast``: accepted => ``parse_json`` accepts the same bytes,
  gives the same value, and ``rfc8785`` re-serialises it to the same bytes;
* ``statement.in_toto_accepts``: True => the in-toto-attestation protobuf bindings accept;
  ``validate_statement`` refuses exactly what ``validate_with_in_toto`` refuses, same text;
* ``Envelope.from_file_fast`` / ``_file_bytes``: same as parse_json + from_dict + to_json;
* ``parallel.read_bundle_files`` == ``Bundle.files()``; the parallel verifier == the serial one;
* the CEL parser cache: same parser, refused unless private and ours.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import math
import os
import pickle
import sys
from pathlib import Path

import pytest
import rfc8785
from conftest import REPO
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import MAX_JSON_DEPTH, canonicalize, float_is_fast, parse_canonical_fast, parse_json
from mlspec_attest.model.envelope import Envelope, Signature
from mlspec_attest.model.statement import (
    IN_TOTO_FAST_MAX_DEPTH,
    STATEMENT_TYPE,
    StageStatement,
    in_toto_accepts,
    validate_statement,
    validate_with_in_toto,
)

sys.path.insert(0, str(REPO / "benchmarks"))
import make_chain

# --------------------------------------------------------------------------- canonical


def _strict(data: bytes):
    """(value, canonical?) by the reference path, or the refusal text."""
    try:
        value = parse_json(data, source="payload")
    except InputError as exc:
        return "refused", str(exc)
    try:
        return "ok", value, canonicalize(value) == data
    except InputError as exc:
        return "refused", str(exc)


def _check_fast(data: bytes) -> None:
    fast = parse_canonical_fast(data)
    if fast is None:
        return
    ref = _strict(data)
    assert ref[0] == "ok" and ref[2], (data, ref)
    assert ref[1] == fast and json.dumps(ref[1]) == json.dumps(fast)  # same value, same types (int vs float)


_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1.0, 1e16, 1e-4, 1e-5, 0.5, 2.0**53, 123.456, 1e21, 5e-324, 1e-7, 0.1])
_ints = st.integers(min_value=-(2**60), max_value=2**60) | st.sampled_from([2**53 - 1, 2**53, -(2**53), 2**53 + 1, 0])
_text = st.text(st.characters(codec="utf-8") | st.sampled_from("\x00\x1f\x7f\"\\/\u2028\ufeff\ue000\uffff\U0001f600"),
                max_size=8)
_scalar = st.none() | st.booleans() | _ints | _floats | _text
_json = st.recursive(_scalar, lambda c: st.lists(c, max_size=4) | st.dictionaries(_text, c, max_size=4), max_leaves=16)


def _serialisations(value) -> list[bytes]:
    out = []
    for fn in (lambda v: rfc8785.dumps(v),
               lambda v: json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
               lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode(),
               lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")).encode(),
               lambda v: json.dumps(v).encode()):
        try:
            out.append(fn(value))
        except (ValueError, TypeError, OverflowError, rfc8785.CanonicalizationError):
            pass
    return out


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_json)
def test_fast_parse_never_accepts_what_the_reference_refuses(value) -> None:
    for data in _serialisations(value):
        _check_fast(data)


@settings(max_examples=800, deadline=None)
@given(value=st.dictionaries(_text, _json, min_size=1, max_size=5), dup=st.integers(0, 4))
def test_duplicate_keys_never_survive_the_canonical_comparison(value, dup) -> None:
    """json.loads keeps the last duplicate; the document then cannot equal its re-serialisation."""
    try:
        canon = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, ValueError, TypeError):
        assume(False)
    key = sorted(value)[dup % len(value)]
    member = rfc8785.dumps({key: value[key]})[1:-1]
    for doc in (b"{" + member + b"," + canon[1:], canon[:-1] + b"," + member + b"}"):
        assert parse_canonical_fast(doc) is None
        _check_fast(doc)
        with pytest.raises(InputError, match="duplicate key"):
            parse_json(doc)


@pytest.mark.parametrize("doc", [
    b'{"a":1,"a":1}', b'{"a":NaN}', b'{"a":Infinity}', b'{"a":-Infinity}', b'{"a":1.0}', b'{"a":1e16}',
    b'{"a":0.00001}', b'{"a":-0.0}', b'{"a":-0}', b'{"a":9007199254740992}', b'{"a":9007199254740993}',
    b'{"a":"\\ud800"}', b'{"\\ud800":1}', b'{"a":1e400}', b'{"a":1} ', b' {"a":1}', b'{"b":1,"a":2}',
    b'{"a":"\\u0041"}', b'{"a":"\\u001F"}', b'\xef\xbb\xbf{"a":1}', b'{"a":"\xff"}',
    '{"\U0001f600":1,"\ue000":2}'.encode(), '{"\ue000":2,"\U0001f600":1}'.encode(),
    b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH,
    b'{"a":[1,2,{"b":0.5}],"c":"\\n\\u001f\xe2\x80\xa8"}', b'{"a":123456789012345.67}',
])
def test_fast_parse_edge_cases(doc: bytes) -> None:
    _check_fast(doc)


def test_fast_parse_covers_the_common_case() -> None:
    value = {"a": [1, -2, 0.5, 123.25, True, None, "x\n\u00e9\u2028"], "b": {"c": {}}, "\u00e9": []}
    assert parse_canonical_fast(rfc8785.dumps(value)) == value
    assert parse_canonical_fast(b'{"a":1.0}') is None and parse_canonical_fast(b'{"a":NaN}') is None


@settings(max_examples=2000, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False))
def test_float_rule(x: float) -> None:
    """Wherever float_is_fast says so, repr (what json.dumps and orjson write) is ES6's form."""
    if float_is_fast(x):
        assert repr(x).encode() == rfc8785.dumps(x)
        assert parse_canonical_fast(rfc8785.dumps({"x": x})) == {"x": x}


def test_payload_refusals_keep_their_messages() -> None:
    good = _statement()
    canon = rfc8785.dumps(good)
    dup = canon[:-1] + b',"_type":"' + STATEMENT_TYPE.encode() + b'"}'
    with pytest.raises(InputError, match="duplicate key '_type'"):
        StageStatement.from_payload(dup)
    with pytest.raises(InputError, match="NaN is not valid JSON"):
        StageStatement.from_payload(canon.replace(b'"sequence":0', b'"sequence":NaN'))
    with pytest.raises(ValueError, match="not in RFC 8785 canonical form"):
        StageStatement.from_payload(json.dumps(good, indent=1).encode())
    assert StageStatement.from_payload(canon).raw == good


# --------------------------------------------------------------------------- in-toto statement


def _statement(**predicate_extra):
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "model", "digest": {"sha256": "a" * 64}, "annotations": {"mlspec.role": "model"}}],
        "predicateType": "https://mlspec.org/attestation/train/v1",
        "predicate": {"chain": {"genesis": None, "previous": None, "sequence": 0}, "materials": [],
                      "metadata": {"x": 1}, "run": {}, "redactions": [], **predicate_extra},
    }


def _nest(depth: int, kind: str):
    v = 1
    for _ in range(depth):
        v = {"k": v} if kind == "dict" else [v]
    return v


def _mutations():
    base = _statement()
    yield base
    for key in list(base):
        m = copy.deepcopy(base)
        del m[key]
        yield m
        for bad in (None, "", 0, 1.5, True, [], {}, [1], {"a": 1}, "x"):
            m = copy.deepcopy(base)
            m[key] = bad
            yield m
    for alias in ("type", "predicate_type"):
        m = copy.deepcopy(base)
        m[alias] = m.pop("_type" if alias == "type" else "predicateType")
        yield m
        m = copy.deepcopy(base)
        m[alias] = "x"
        yield m
    for field, values in {"name": (None, 1, "", "n"), "uri": (None, 1, "", "u"), "digest": (None, {}, {"sha256": 1},
                          {"sha256": None}, {"": ""}, [], "x"), "annotations": (None, {}, [], 1, {"a": [1, {"b": None}]}),
                          "downloadLocation": ("x", 1, None), "mediaType": ("x", 1), "content": ("AAAA", "!", 1, None),
                          "download_location": ("x",), "media_type": ("x",), "extra": (1,)}.items():
        for value in values:
            m = copy.deepcopy(base)
            m["subject"][0][field] = value
            yield m
    for subj in ([], [None], ["x"], [{}], [{"name": "a"}], [{"uri": "u", "digest": {"sha256": "x"}}],
                 [{"digest": {"sha256": "x"}}, {"name": "b"}], {"name": "a"}):
        m = copy.deepcopy(base)
        m["subject"] = subj
        yield m
    for depth in (IN_TOTO_FAST_MAX_DEPTH - 3, IN_TOTO_FAST_MAX_DEPTH - 2, IN_TOTO_FAST_MAX_DEPTH, 46, 47, 48, 49, 60):
        for kind in ("dict", "list"):
            yield _statement(deep=_nest(depth, kind))
            m = copy.deepcopy(base)
            m["subject"][0]["annotations"] = {"deep": _nest(depth, kind)}
            yield m
    yield _statement(n=float("nan"), big=2**60, neg=-(2**53), f=1e300)
    yield [base]


def _agree(statement) -> None:
    try:
        validate_with_in_toto(statement)
        reference = None
    except (ValueError, TypeError) as exc:
        reference = f"{type(exc).__name__}: {exc}"
    if in_toto_accepts(statement):
        assert reference is None, (statement, reference)
    try:
        validate_statement(statement)
        ours = None
    except (ValueError, TypeError) as exc:
        ours = f"{type(exc).__name__}: {exc}"
    assert ours == reference


def test_in_toto_direct_check_agrees_on_mutations() -> None:
    accepted = 0
    for statement in _mutations():
        _agree(statement)
        accepted += in_toto_accepts(statement)
    assert accepted > 10  # the direct check does carry the common shapes


def test_in_toto_direct_check_on_a_real_chain(tmp_path: Path) -> None:
    make_chain.build(20, tmp_path / "c")
    for f in sorted((tmp_path / "c" / "bundle" / "attestations").iterdir()):
        payload = base64.b64decode(json.loads(f.read_bytes())["payload"])
        data = parse_json(payload)
        assert in_toto_accepts(data) and in_toto_accepts(data, depth_bound=payload.count(b"{") + payload.count(b"["))
        validate_with_in_toto(data)
        assert StageStatement.from_trusted_value(copy.deepcopy(data)) == StageStatement.from_payload(payload)


_rd = st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=4) | st.none() | st.integers(),
    "uri": st.text(max_size=4),
    "digest": st.dictionaries(st.text(max_size=6), st.text(max_size=4) | st.integers() | st.none(), max_size=2),
    "annotations": st.dictionaries(st.text(max_size=3), _json, max_size=2) | st.lists(st.integers(), max_size=1),
    "downloadLocation": st.text(max_size=3) | st.integers(),
    "mediaType": st.text(max_size=3),
    "content": st.sampled_from(["", "AAAA", "A", "!!"]),
})
_stmt = st.fixed_dictionaries({}, optional={
    "_type": st.sampled_from([STATEMENT_TYPE, "https://in-toto.io/Statement/v0.1", ""]) | st.none(),
    "subject": st.lists(_rd, max_size=3) | st.none(),
    "predicateType": st.sampled_from(["https://mlspec.org/attestation/train/v1", "", "x"]) | st.integers(),
    "predicate": st.dictionaries(st.text(max_size=3), _json, max_size=3) | st.none() | st.lists(st.integers(), max_size=1),
    "predicate_type": st.just("x"),
})


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(statement=_stmt)
def test_in_toto_direct_check_agrees_on_generated_statements(statement) -> None:
    if any(isinstance(v, str) and not _utf8(v) for v in _strings(statement)):
        return  # lone surrogates never reach here: parse_json refuses them first
    _agree(statement)


def _utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


# --------------------------------------------------------------------------- envelope

_keyid = st.text(st.characters(codec="utf-8") | st.sampled_from("\"\\\x00\x7f\u00e9\U0001f600"), max_size=12)


@settings(max_examples=600, deadline=None)
@given(payload_type=st.text(st.characters(max_codepoint=0x7F), min_size=1, max_size=12),
       payload=st.binary(max_size=64),
       sigs=st.lists(st.tuples(_keyid, st.binary(max_size=70)), max_size=4))
def test_envelope_file_bytes_equal_to_json(payload_type, payload, sigs) -> None:
    env = Envelope(payload_type=payload_type, payload=payload, signatures=[Signature(k, s) for k, s in sigs])
    assert env._file_bytes() == env.to_json()
    data = env.to_json()
    fast = Envelope.from_file_fast(data)
    try:
        strict = Envelope.from_dict(parse_json(data))
        stable = strict.to_json() == data
    except (InputError, ValueError):
        strict, stable = None, False
    if fast is not None:
        assert strict == fast and stable
    elif strict is not None and stable:
        pytest.fail(f"fast path refused an envelope the strict path accepts as byte-stable: {data!r}")


@pytest.mark.parametrize("edit", [
    lambda d: d.replace(b'  "payload"', b'"payload"'),
    lambda d: d.rstrip(b"\n"),
    lambda d: d.replace(b'"signatures": [', b'"signatures": [\n    {"keyid": "x", "sig": ""},'),
    lambda d: d[:-2] + b',\n  "payload": "AAAA"\n}\n',
    lambda d: d.replace(b'"keyid": "k1"', b'"keyid": "\\ud800"'),
    lambda d: d.replace(b'"keyid": "k1"', b'"keyid": "\\u00e9"'),
    lambda d: d.replace(b"+", b"-").replace(b"/", b"_"),
    lambda d: json.dumps(json.loads(d)).encode(),
    lambda d: d,
])
def test_envelope_fast_path_agrees_with_strict_path(edit) -> None:
    env = Envelope(payload_type="application/vnd.in-toto+json", payload=bytes(range(256)) * 3,
                   signatures=[Signature("k1", b"\xfb\xff" * 32), Signature("k2", b"\x01" * 64)])
    data = edit(env.to_json())
    fast = Envelope.from_file_fast(data)
    try:
        strict = Envelope.from_dict(parse_json(data))
    except (InputError, ValueError):
        assert fast is None
        return
    if fast is not None:
        assert fast == strict and strict.to_json() == data
    else:
        assert strict.to_json() != data


# --------------------------------------------------------------------------- reading and the parallel verifier


def test_read_bundle_files_equals_bundle_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlspec_attest import bundle as bundle_mod
    from mlspec_attest.bundle import Bundle

    make_chain.build(15, tmp_path / "c")
    b = Bundle(tmp_path / "c" / "bundle")
    att = b.attestations_dir
    (att / ".tmp-x").write_text("x")
    (att / ".hidden").write_text("x")
    (att / "notes.txt").write_text("hello")
    (att / "0099-train.sigstore.json").write_text("{}")
    (att / "0003-x.sigstore.y.json").write_text("{}")
    (att / "empty.dsse.json").write_bytes(b"")
    os.symlink(att / "0001-ingest.dsse.json", att / "0100-link.dsse.json")
    _same_files(b)
    monkeypatch.setattr(bundle_mod, "MAX_INPUT_BYTES", 1000)  # some files are now over the limit
    _same_files(b)
    monkeypatch.undo()
    for odd in ("fifo", "dir", "dangling"):
        path = att / f"0200-{odd}.dsse.json"
        if odd == "fifo":
            os.mkfifo(path)
        elif odd == "dir":
            path.mkdir()
        else:
            os.symlink(att / "missing", path)
        _same_files(b)
        path.rmdir() if odd == "dir" else path.unlink()


def _same_files(b) -> None:
    """Same list, or the same refusal (whichever Bundle.files() does with an unreadable file)."""
    from mlspec_attest.verify._parallel import read_bundle_files

    try:
        ref = b.files()
    except InputError as exc:
        with pytest.raises(InputError) as ours:
            read_bundle_files(b)
        assert str(ours.value) == str(exc)
        return
    assert read_bundle_files(b) == ref


def _report_dict(report) -> dict:
    d = report.to_dict() if hasattr(report, "to_dict") else report.__dict__
    return json.loads(json.dumps(d, default=str))


def test_parallel_verifier_equals_serial_on_a_tampered_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlspec_attest._internal import workers as workers_mod
    from mlspec_attest.verify import verify_bundle

    make_chain.build(650, tmp_path / "c")
    att = tmp_path / "c" / "bundle" / "attestations"
    files = sorted(att.iterdir())
    doc = json.loads(files[40].read_bytes())  # edited payload (still canonical)
    payload = base64.b64decode(doc["payload"]).replace(b'"host":"bench"', b'"host":"bench2"')
    doc["payload"] = base64.b64encode(payload).decode()
    files[40].write_text(json.dumps(doc, indent=2) + "\n")
    a, b = json.loads(files[100].read_bytes()), json.loads(files[101].read_bytes())  # swapped signatures
    a["signatures"], b["signatures"] = b["signatures"], a["signatures"]
    files[100].write_text(json.dumps(a, indent=2) + "\n")
    files[101].write_text(json.dumps(b, indent=2) + "\n")
    files[200].unlink()  # removed
    files[300].write_bytes(b"{not json")  # corrupt
    files[400].write_bytes(files[400].read_bytes().replace(b'  "payload"', b' "payload"'))  # whitespace
    doc = json.loads(files[500].read_bytes())  # non-canonical payload
    doc["payload"] = base64.b64encode(json.dumps(json.loads(base64.b64decode(doc["payload"])), indent=1).encode()).decode()
    files[500].write_text(json.dumps(doc, indent=2) + "\n")
    files[640].write_bytes(files[640].read_bytes() + b" ")  # in the parent's own share
    now = make_chain.BASE_TIME
    policy = tmp_path / "c" / "policy.yaml"
    monkeypatch.setattr(workers_mod, "oversubscribed", lambda: False)
    reports = {}
    for workers in ("1", "2", "3"):
        monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", workers)
        reports[workers] = _report_dict(verify_bundle(tmp_path / "c" / "bundle", policy, now=now))
    codes = {f["code"] for f in reports["1"]["findings"]}
    assert {"SIGNATURE_INVALID", "ENVELOPE_INVALID", "ENVELOPE_NOT_CANONICAL", "STATEMENT_INVALID",
            "CHAIN_GAP"} <= codes, codes
    assert reports["1"] == reports["2"] == reports["3"]


def test_parallel_unreadable_files_same_as_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory or FIFO in attestations/: the same refusal or findings, serial or parallel."""
    from mlspec_attest._internal import workers as workers_mod
    from mlspec_attest.verify import verify_bundle

    make_chain.build(400, tmp_path / "c")
    att = tmp_path / "c" / "bundle" / "attestations"
    (att / "0150-x.dsse.json").mkdir()
    os.mkfifo(att / "0390-y.dsse.json")
    monkeypatch.setattr(workers_mod, "oversubscribed", lambda: False)
    outcomes = []
    for workers in ("1", "2"):
        monkeypatch.setenv("MLSPEC_VERIFY_WORKERS", workers)
        try:
            outcomes.append(_report_dict(verify_bundle(tmp_path / "c" / "bundle", tmp_path / "c" / "policy.yaml",
                                                       now=make_chain.BASE_TIME)))
        except InputError as exc:
            outcomes.append(f"InputError: {exc}")
    assert outcomes[0] == outcomes[1]


# --------------------------------------------------------------------------- CEL parser cache


@pytest.fixture
def fresh_parser(monkeypatch: pytest.MonkeyPatch):
    from celpy.celparser import CELParser

    from mlspec_attest.objectives import cel as cel_functions

    monkeypatch.setattr(CELParser, "CEL_PARSER", None)
    monkeypatch.setattr(cel_functions, "_ENV", None)
    monkeypatch.setattr(cel_functions, "_TREES", None)
    monkeypatch.delenv("MLSPEC_CEL_CACHE", raising=False)
    return CELParser


EXPRESSIONS = ["metrics.accuracy >= 0.85 && has(metrics.f1)", "max_gap(slices.group, 'recall') < 0.1",
               "[1, 2.0, 'x', b'y', true, null].size() == 6 ? {'a': -1u}['a'] : x.y[0]", "a.all(v, v in [1, 2])"]


def test_cel_cache_gives_the_same_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_parser) -> None:
    from mlspec_attest.objectives import cel as cel_functions

    monkeypatch.setenv("MLSPEC_CACHE_DIR", str(tmp_path / "cache"))
    cel_functions._parser()
    built = fresh_parser.CEL_PARSER
    cache = tmp_path / "cache" / cel_functions._CACHE_FILE
    assert cache.is_file() and (cache.stat().st_mode & 0o777) == 0o600
    assert ((tmp_path / "cache").stat().st_mode & 0o777) == 0o700
    fresh_parser.CEL_PARSER = None
    monkeypatch.setattr(cel_functions, "_ENV", None)
    cel_functions._parser()
    loaded = fresh_parser.CEL_PARSER
    assert loaded is not built
    for option in cel_functions._LOAD_OPTIONS:  # what we pass at load == what celpy passed at build
        assert loaded.options.options.get(option) == built.options.options.get(option), option
    assert loaded.options.options == built.options.options
    for text in EXPRESSIONS:
        assert loaded.parse(text) == built.parse(text)
    with pytest.raises(Exception) as a:
        built.parse("a +")
    with pytest.raises(Exception) as b:
        loaded.parse("a +")
    assert type(a.value) is type(b.value) and str(a.value) == str(b.value)


def test_cel_cache_refused_unless_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_parser) -> None:
    from mlspec_attest.objectives import cel as cel_functions

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    monkeypatch.setenv("MLSPEC_CACHE_DIR", str(shared))
    cel_functions._parser()
    assert fresh_parser.CEL_PARSER is not None and not (shared / cel_functions._CACHE_FILE).exists()
    # a symlinked cache directory is not followed
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    assert cel_functions._private_dir_fd(tmp_path / "link") is None
    assert cel_functions._private_dir_fd(real) is not None or pytest.fail("private dir refused")


def test_cel_cache_never_loads_a_foreign_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_parser) -> None:
    from mlspec_attest.objectives import cel as cel_functions

    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("MLSPEC_CACHE_DIR", str(cache_dir))
    cel_functions._parser()
    path = cache_dir / cel_functions._CACHE_FILE
    key = path.read_bytes().split(b"\n", 1)[0]

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path.write_bytes(key + b"\n" + pickle.dumps(Boom()))
    fd = os.open(cache_dir, os.O_RDONLY)
    try:
        assert cel_functions._read_cache(fd, key, fresh_parser.CEL_PARSER.options.tree_class) is None
        assert not (tmp_path / "pwned").exists()
        path.write_bytes(b"other-key\n" + pickle.dumps({}))  # stale key
        assert cel_functions._read_cache(fd, key, object) is None
        good = io.BytesIO()
        good.write(key + b"\n")
        fresh_parser.CEL_PARSER.save(good, cel_functions._LOAD_OPTIONS)
        path.write_bytes(good.getvalue())
        path.chmod(0o644)  # readable by others is fine to read? no: mode must be 0600 or stricter
        assert cel_functions._read_cache(fd, key, fresh_parser.CEL_PARSER.options.tree_class) is None
        path.chmod(0o600)
        assert cel_functions._read_cache(fd, key, fresh_parser.CEL_PARSER.options.tree_class) is not None
    finally:
        os.close(fd)


def test_math_is_used() -> None:  # keep imports honest for linters
    assert math.isfinite(1.0)

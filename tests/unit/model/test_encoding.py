"""Encoding traps: PAE byte lengths, lenient base64, keyid hints, and properties of the canonical form."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlspec_attest.errors import InputError
from mlspec_attest.keys import generate, load_signer
from mlspec_attest.model.canonical import MAX_SAFE_INTEGER, canonicalize, parse_json
from mlspec_attest.model.envelope import Envelope, b64decode_strict, pae

IN_TOTO = "application/vnd.in-toto+json"


# -- PAE ---------------------------------------------------------------------------------------
def test_pae_bytes_of_a_non_ascii_payload_are_pinned() -> None:
    payload = '{"model":"naïve-贝叶斯","emoji":"🙂"}'.encode()
    assert len(payload) == 43 and len(payload.decode()) == 33  # bytes, not characters
    assert pae(IN_TOTO, payload) == (
        b"DSSEv1 28 application/vnd.in-toto+json 43 "
        b'{"model":"na\xc3\xafve-\xe8\xb4\x9d\xe5\x8f\xb6\xe6\x96\xaf","emoji":"\xf0\x9f\x99\x82"}')


@pytest.mark.parametrize("ptype", ["application/vnd.in-tötö+json", "typé", "\u0430pplication/json", ""])
def test_only_ascii_payload_types(ptype: str) -> None:
    with pytest.raises(ValueError):
        Envelope.from_dict({"payloadType": ptype, "payload": "e30=", "signatures": []})
    if ptype:
        with pytest.raises(InputError):
            pae(ptype, b"{}")


# -- base64 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    "e30", "e30==", "e31=", "e3 0=", "e30=\n", "\te30=", "e3\r\n0=", "e30=e30=", "=e30", "e30*", "ZXl=",
    "aGk==", "aGl=", "YQ=", "YR==", "e30=\x00", "ｅ30=",
])
def test_lenient_base64_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        b64decode_strict(bad, "payload")


def test_canonical_base64_accepted() -> None:
    assert b64decode_strict("e30=", "p") == b"{}"
    assert b64decode_strict("", "p") == b""
    assert b64decode_strict("-_8=", "p") == b64decode_strict("+/8=", "p")  # DSSE allows either alphabet


@given(st.binary(max_size=64))
def test_base64_round_trip_and_every_padding_bit_variant_refused(raw: bytes) -> None:
    import base64

    text = base64.b64encode(raw).decode()
    assert b64decode_strict(text, "p") == raw
    pad = len(text) - len(text.rstrip("="))
    if pad:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        core = text.rstrip("=")
        unused = 2 if pad == 1 else 4  # low bits of the last symbol that carry no data
        base = alphabet.index(core[-1])
        for extra in range(1, 1 << unused):
            variant = core[:-1] + alphabet[base | extra] + "=" * pad
            if variant != text:
                assert base64.b64decode(variant) == raw  # a lenient decoder accepts it...
                with pytest.raises(ValueError):  # ...we do not
                    b64decode_strict(variant, "p")


# -- keyid hints -------------------------------------------------------------------------------
@pytest.fixture
def signers(tmp_path: Path):  # type: ignore[no-untyped-def]
    generate("a", tmp_path, "ed25519", None)
    generate("b", tmp_path, "ecdsa-p256", None)
    generate("x", tmp_path, "ed25519", None)
    return load_signer(tmp_path / "a.key"), load_signer(tmp_path / "b.key"), load_signer(tmp_path / "x.key")


def test_keyid_hint_never_grants_trust(signers) -> None:  # type: ignore[no-untyped-def]
    a, b, x = signers
    env = Envelope(IN_TOTO, b"{}")
    env.sign(x)  # an untrusted key...
    env.signatures[0].keyid = a.keyid  # ...claiming to be a trusted one
    found, problems = env.check_signatures([a.public, b.public])
    assert found == set() and problems and "does not verify" in problems[0]


def test_lying_or_blank_hint_is_reported_but_cannot_hide_a_signature(signers) -> None:  # type: ignore[no-untyped-def]
    a, b, _ = signers
    env = Envelope(IN_TOTO, b"{}")
    env.sign(a)
    for hint in (b.keyid, "", "not-a-keyid"):
        env.signatures[0].keyid = hint
        found, problems = env.check_signatures([a.public, b.public])
        assert found == {a.keyid}  # verified by trying every trusted key
        assert problems and "was made by" in problems[0]  # but the gate refuses the lie
    env.signatures[0].keyid = a.keyid
    assert env.check_signatures([a.public, b.public]) == ({a.keyid}, [])


def test_ecdsa_signature_for_an_ed25519_key(signers) -> None:  # type: ignore[no-untyped-def]
    a, b, _ = signers
    env = Envelope(IN_TOTO, b"{}")
    env.sign(b)
    env.signatures[0].keyid = a.keyid
    found, _ = env.check_signatures([a.public])
    assert found == set()
    assert not a.public.verify(env.signatures[0].sig, pae(IN_TOTO, b"{}"))


def test_too_many_signatures_refused() -> None:
    sig = {"keyid": "", "sig": "AAAA"}
    with pytest.raises(ValueError, match="at most"):
        Envelope.from_dict({"payloadType": IN_TOTO, "payload": "e30=", "signatures": [sig] * 17})
    with pytest.raises(ValueError, match="unknown fields"):
        Envelope.from_dict({"payloadType": IN_TOTO, "payload": "e30=", "signatures": [{**sig, "cert": "x"}]})


# -- canonical form: properties ------------------------------------------------------------------
json_scalars = (st.none() | st.booleans() | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=5), max_leaves=30)


def _same(a: object, b: object) -> bool:
    """Equality that treats -0.0 == 0 and int/float of equal value alike (JSON has one number type)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))  # type: ignore[arg-type]
    return a == b


@settings(max_examples=300)
@given(json_values)
def test_parse_of_canonical_is_identity(value: object) -> None:
    data = canonicalize(value)
    assert _same(parse_json(data), value)
    # A plain parser agrees, reading digit strings beyond ±(2^53-1) as doubles (what JCS wrote).
    big_as_double = (lambda t: int(t) if abs(int(t)) <= MAX_SAFE_INTEGER else float(t))
    assert _same(json.loads(data, parse_int=big_as_double), value)


@settings(max_examples=300)
@given(json_values)
def test_canonicalize_is_idempotent(value: object) -> None:
    once = canonicalize(value)
    assert canonicalize(parse_json(once)) == once


@settings(max_examples=100)
@given(st.dictionaries(st.text(max_size=6), json_scalars, max_size=8), st.randoms())
def test_canonical_form_ignores_key_order_and_whitespace(value: dict, rnd) -> None:  # type: ignore[no-untyped-def]
    items = list(value.items())
    rnd.shuffle(items)
    shuffled = json.dumps(dict(items), indent=rnd.choice([None, 1, 4]), ensure_ascii=rnd.choice([True, False]))
    assert canonicalize(parse_json(shuffled)) == canonicalize(value)

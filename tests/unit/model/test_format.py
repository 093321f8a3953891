"""Wire format: RFC 8785 vectors, the DSSE spec vector, envelope strictness, keys,
and interoperability proven by other tools (securesystemslib, in-toto-attestation)."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from mlspec_attest.errors import InputError
from mlspec_attest.keys import PublicKey, Signer, generate, keyid_of, load_signer
from mlspec_attest.model.canonical import canonicalize, parse_json
from mlspec_attest.model.envelope import Envelope, b64decode_strict, pae

JCS_NAMES = ["arrays", "french", "structures", "unicode", "values", "weird"]


@pytest.mark.parametrize("name", JCS_NAMES)
def test_rfc8785_cyberphone_vectors(vectors: Path, name: str) -> None:
    source = (vectors / "jcs/cyberphone/input" / f"{name}.json").read_bytes()
    expected = (vectors / "jcs/cyberphone/output" / f"{name}.json").read_bytes()
    assert canonicalize(json.loads(source)) == expected
    hex_expected = bytes.fromhex("".join((vectors / "jcs/cyberphone/outhex" / f"{name}.txt").read_text().split()))
    assert canonicalize(json.loads(source)) == hex_expected


def test_rfc8785_es6_number_vectors(vectors: Path) -> None:
    lines = (vectors / "jcs/es6-numbers/es6testfile-first1000.txt").read_text().splitlines()
    assert len(lines) == 1000
    for line in lines:
        bits, expected = line.split(",")
        value = struct.unpack(">d", int(bits, 16).to_bytes(8, "big"))[0]
        assert canonicalize(value).decode() == expected, line


def test_canonical_refuses_what_jcs_cannot_carry() -> None:
    with pytest.raises(InputError):
        canonicalize(float("nan"))
    with pytest.raises(InputError):
        canonicalize({"big": 2**60})


@pytest.mark.parametrize("text", ['{"a": 1, "a": 2}', '{"a": NaN}', '{"a": Infinity}', '[1,'])
def test_strict_json_refuses(text: str) -> None:
    with pytest.raises(InputError):
        parse_json(text.encode())


def test_strict_json_refuses_invalid_utf8() -> None:
    with pytest.raises(InputError, match="UTF-8"):
        parse_json(b'{"a": "\xff"}')


# -- DSSE ----------------------------------------------------------------------------
def test_dsse_spec_vector(vectors: Path) -> None:
    d = vectors / "dsse/spec-hello-world"
    spec = json.loads((d / "vector.json").read_text())
    key = PublicKey.from_file(d / "p256-public.derived.pem")
    assert key.keyid == "f793580060562d6ff075d814ea698c282fcc779b0cde64d79ffc6301df00d14b"
    assert pae(spec["payloadType"], b"hello world").hex() == spec["pae_hex"]
    for name in ("envelope.json", "envelope-with-keyid.json"):
        env = Envelope.from_dict(json.loads((d / name).read_text()))
        assert env.verified_keyids([key]) == {key.keyid}, name
        # Any change to payload, payloadType or sig fails.
        tampered = [
            Envelope(env.payload_type, b"hello worle", env.signatures),
            Envelope(env.payload_type + "x", env.payload, env.signatures),
            Envelope(env.payload_type, env.payload,
                     [type(env.signatures[0])(keyid="", sig=bytes([env.signatures[0].sig[0] ^ 1]) + env.signatures[0].sig[1:])]),
        ]
        for t in tampered:
            assert t.verified_keyids([key]) == set()


def test_dsse_spec_vector_rfc6979_reproduces_signature(vectors: Path) -> None:
    d = vectors / "dsse/spec-hello-world"
    spec = json.loads((d / "vector.json").read_text())
    private = serialization.load_pem_private_key((d / "p256-private.derived.pem").read_bytes(), None)
    der = private.sign(bytes.fromhex(spec["pae_hex"]), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    assert base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big")).decode() == spec["signature_b64"]


def test_keyids_of_securesystemslib_keys(vectors: Path) -> None:
    d = vectors / "keys/securesystemslib"
    assert PublicKey.from_file(d / "ed25519_public.pem").keyid == \
        "0f930f5ce4a828751465e98a728243a6b0758c5c754e0fb84e3c325ed6b54e06"
    assert PublicKey.from_file(d / "ecdsa_public.pem").keyid == \
        "3d923b1544d12fe1dac8540d28a2ba8de4c7af4e91f2f90bd31871ddc6e0afdf"


def _sslib_verify(envelope_json: bytes, pem: bytes, keyid: str) -> None:
    from securesystemslib.dsse import Envelope as SslibEnvelope
    from securesystemslib.signer import SSlibKey

    # sslib only tries keys whose keyid equals the signature's: give it ours (sha256 of DER SPKI).
    key = SSlibKey.from_crypto(serialization.load_pem_public_key(pem), keyid=keyid)
    env = SslibEnvelope.from_dict(json.loads(envelope_json))
    verified = env.verify([key], 1)
    assert keyid in verified


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa-p256"])
def test_securesystemslib_verifies_our_envelope(tmp_path: Path, key_type: str) -> None:
    _, pub_path, public = generate("k", tmp_path, key_type, None)
    signer = load_signer(tmp_path / "k.key")
    env = Envelope("application/vnd.in-toto+json", canonicalize({"_type": "x", "n": 1.5}))
    env.sign(signer)
    _sslib_verify(env.to_json(), pub_path.read_bytes(), public.keyid)


def test_securesystemslib_signature_verifies_with_us(vectors: Path) -> None:
    from securesystemslib.dsse import Envelope as SslibEnvelope
    from securesystemslib.signer import CryptoSigner

    d = vectors / "keys/securesystemslib"
    private = serialization.load_pem_private_key((d / "ecdsa_private.pem").read_bytes(), None)
    sslib_signer = CryptoSigner(private)
    env = SslibEnvelope(payload=b'{"hello": "world"}', payload_type="application/vnd.in-toto+json", signatures={})
    env.sign(sslib_signer)
    ours = Envelope.from_dict(env.to_dict())
    key = PublicKey.from_file(d / "ecdsa_public.pem")
    assert ours.verified_keyids([key]) == {key.keyid}


def test_multiple_signatures_and_keyid_only_a_hint(tmp_path: Path) -> None:
    generate("a", tmp_path, "ed25519", None)
    generate("b", tmp_path, "ecdsa-p256", None)
    a, b = load_signer(tmp_path / "a.key"), load_signer(tmp_path / "b.key")
    env = Envelope("application/vnd.in-toto+json", b"{}")
    env.sign(a)
    env.sign(b)
    assert env.verified_keyids([a.public, b.public]) == {a.keyid, b.keyid}
    # Swapping keyid hints neither grants nor removes trust.
    env.signatures[0].keyid, env.signatures[1].keyid = env.signatures[1].keyid, env.signatures[0].keyid
    assert env.verified_keyids([a.public, b.public]) == {a.keyid, b.keyid}
    # The same key signing twice counts once.
    env2 = Envelope("application/vnd.in-toto+json", b"{}")
    env2.sign(a)
    env2.sign(a)
    assert env2.verified_keyids([a.public, b.public]) == {a.keyid}


@pytest.mark.parametrize("bad", ["aGVsbG8gd29ybGQ", "aGVsbG8g d29ybGQ=", "aGVsbG8gd29ybGR=", "aGVsbG8*d29ybGQ="])
def test_lenient_base64_refused(bad: str) -> None:
    # Missing padding, stray padding bits, whitespace and foreign characters are all refused.
    assert b64decode_strict("aGVsbG8gd29ybGQ=", "x") == b"hello world"
    with pytest.raises(ValueError):
        b64decode_strict(bad, "x")


def test_pae_counts_bytes_and_refuses_non_ascii_types() -> None:
    payload = "héllo".encode()
    assert pae("t", payload) == b"DSSEv1 1 t 6 h\xc3\xa9llo"
    with pytest.raises(InputError):
        pae("typé", payload)


# -- keys --------------------------------------------------------------------------
def test_key_generation_modes_and_encryption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    priv, pub, public = generate("k", tmp_path, "ed25519", b"s3cret")
    assert priv.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED" in priv.read_bytes()
    assert public.keyid == keyid_of(load_signer(priv, b"s3cret").public.key)
    with pytest.raises(InputError, match="wrong passphrase"):
        load_signer(priv, b"nope")
    monkeypatch.delenv("MLSPEC_KEY_PASSPHRASE", raising=False)
    with pytest.raises(InputError, match="MLSPEC_KEY_PASSPHRASE"):
        load_signer(priv)
    monkeypatch.setenv("MLSPEC_KEY_PASSPHRASE", "s3cret")
    assert isinstance(load_signer(priv), Signer)


def test_group_readable_private_key_refused(tmp_path: Path) -> None:
    priv, _, _ = generate("k", tmp_path, "ed25519", None)
    priv.chmod(0o640)
    with pytest.raises(InputError, match="chmod 600"):
        load_signer(priv)


def test_key_generation_never_overwrites(tmp_path: Path) -> None:
    generate("k", tmp_path, "ed25519", None)
    before = (tmp_path / "k.key").read_bytes()
    with pytest.raises(InputError, match="already exists"):
        generate("k", tmp_path, "ed25519", None)
    assert (tmp_path / "k.key").read_bytes() == before


# -- statements ----------------------------------------------------------------------
def test_in_toto_attestation_parses_our_statement(project) -> None:  # type: ignore[no-untyped-def]
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    project.write("m.bin", "x")
    att = project.attestor("pipeline").attest("train", products=["model=m.bin"], metadata={"framework": "sklearn"})
    env = Envelope.from_dict(json.loads(att.path.read_bytes()))
    pb = json_format.Parse(env.payload, statement_pb2.Statement())
    stmt = Statement.copy_from_pb(pb)
    stmt.validate()
    assert pb.predicate_type == "https://mlspec.org/attestation/train/v1"
    assert pb.subject[0].digest["sha256"] == att.statement["subject"][0]["digest"]["sha256"]
    assert canonicalize(json.loads(env.payload)) == env.payload

"""Envelopes written by other DSSE tools pass the gate; nothing that could change what is read does.

Accepted (with the ENVELOPE_NOT_CANONICAL *warning*): any strict-JSON layout of the same
three fields (whitespace, key order, string escapes) and either base64 alphabet the DSSE
spec allows (standard or URL-safe, padded, canonical). Refused: anything that could make
two readers see different statements (a second payload through a duplicate key, unknown
fields, lenient base64 that decodes differently by reader) or that changes signed bytes.
Attacker: anyone holding the bundle, rewriting an attestation file.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from conftest import Project, build_lifecycle
from cryptography.hazmat.primitives import serialization

from mlspec_attest.keys import load_signer
from mlspec_attest.model.canonical import canonicalize
from mlspec_attest.model.report import WARNING
from mlspec_attest.verify import verify_bundle

sslib_dsse = pytest.importorskip("securesystemslib.dsse", reason="securesystemslib (test extra) is not installed")
sslib_signer = pytest.importorskip("securesystemslib.signer")

SEQ = 6  # the train attestation


@pytest.fixture
def lifecycle(project: Project) -> Project:
    build_lifecycle(project)
    return project


def _att(project: Project, seq: int = SEQ) -> Path:
    return next((project.bundle / "attestations").glob(f"{seq:04d}-*.dsse.json"))


def _errors(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in report.findings if f.severity == "error"}


def _warnings(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in report.findings if f.severity == WARNING}


def _sslib_signer(project: Project, name: str):  # type: ignore[no-untyped-def]
    """securesystemslib's own signer over the same private key, naming mlspec's keyid as its hint."""
    ours = load_signer(project.key(name))
    private = serialization.load_pem_private_key(
        ours.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()), None)
    public = sslib_signer.SSlibKey.from_crypto(private.public_key(), keyid=ours.keyid)
    return sslib_signer.CryptoSigner(private, public), public


def _passes_with_layout_warning(project: Project) -> None:
    report = verify_bundle(project.bundle, project.policy())
    assert report.passed, [f.message for f in report.findings]
    assert "ENVELOPE_NOT_CANONICAL" in _warnings(report)


def test_securesystemslib_reserialisation_passes(lifecycle: Project) -> None:
    path = _att(lifecycle)
    original = json.loads(path.read_bytes())
    env = sslib_dsse.Envelope.from_dict(json.loads(path.read_bytes()))
    path.write_text(json.dumps(env.to_dict()))  # its key order, compact separators, no newline
    assert path.read_bytes() != json.dumps(original, indent=2).encode()
    _passes_with_layout_warning(lifecycle)
    report = verify_bundle(lifecycle.bundle, lifecycle.policy())
    line = next(s for s in report.stages if s.sequence == SEQ)  # the gate read the very bytes sslib decodes
    assert line.payload_sha256 == hashlib.sha256(env.payload).hexdigest()


def test_mlspec_envelope_verifies_in_securesystemslib(lifecycle: Project) -> None:
    _, public = _sslib_signer(lifecycle, "pipeline")
    env = sslib_dsse.Envelope.from_dict(json.loads(_att(lifecycle).read_bytes()))
    assert public.keyid in env.verify([public], 1)


def test_cosigned_by_securesystemslib_passes(lifecycle: Project) -> None:
    """A co-signer's own tool signs the envelope and writes it its own way (a threshold of two)."""
    policy = lifecycle.policy()
    doc = policy.read_text()
    path = _att(lifecycle)
    env = sslib_dsse.Envelope.from_dict(json.loads(path.read_bytes()))
    signer, _ = _sslib_signer(lifecycle, "owner")
    env.sign(signer)
    path.write_text(json.dumps(env.to_dict(), indent=4, sort_keys=True) + "\n")
    _passes_with_layout_warning(lifecycle)
    line = next(s for s in verify_bundle(lifecycle.bundle, policy).stages if s.sequence == SEQ)
    assert line.signers == sorted(line.signers) and "pipeline" in line.signers
    assert policy.read_text() == doc


@pytest.mark.parametrize("layout", ["pretty-sorted", "tabs-crlf", "escaped-strings", "urlsafe-base64"])
def test_other_layouts_pass_with_a_warning(lifecycle: Project, layout: str) -> None:
    path = _att(lifecycle)
    doc = json.loads(path.read_bytes())
    if layout == "pretty-sorted":
        text = json.dumps(doc, indent=1, sort_keys=True)
    elif layout == "tabs-crlf":
        text = json.dumps(doc, indent="\t").replace("\n", "\r\n")
    elif layout == "escaped-strings":  # \u and \/ escapes decode to the same strings
        text = json.dumps(doc).replace('"payloadType": "application/', '"payloadType": "\\u0061pplication\\/')
        first = doc["payload"][0]
        text = text.replace(f'"payload": "{first}', f'"payload": "\\u{ord(first):04x}', 1)
        assert json.loads(text) == doc and "\\u0061" in text
    else:
        raw = base64.b64decode(doc["payload"])
        doc["payload"] = base64.urlsafe_b64encode(raw).decode()
        sig = base64.b64decode(doc["signatures"][0]["sig"])
        doc["signatures"][0]["sig"] = base64.urlsafe_b64encode(sig).decode()
        text = json.dumps(doc)
    path.write_text(text)
    _passes_with_layout_warning(lifecycle)


def _raw_edit(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path.write_text(edit(path.read_text()))


def _other_statement_b64(path: Path) -> str:
    doc = json.loads(path.read_bytes())
    statement = json.loads(base64.b64decode(doc["payload"]))
    statement["predicate"]["metadata"]["hyperparameters"] = {"C": 99.0}
    return base64.b64encode(canonicalize(statement)).decode()


@pytest.mark.parametrize("attack, code", [
    # a second payload: one JSON reader keeps the first, another the last
    ("duplicate payload key, forged first", "ENVELOPE_INVALID"),
    ("duplicate payload key, forged last", "ENVELOPE_INVALID"),
    ("duplicate payloadType key", "ENVELOPE_INVALID"),
    ("duplicate sig key", "ENVELOPE_INVALID"),
    ("extra top-level field", "ENVELOPE_INVALID"),
    ("extra signature field", "ENVELOPE_INVALID"),
    ("payload in a nested object", "ENVELOPE_INVALID"),
    ("unpadded base64", "ENVELOPE_INVALID"),
    ("whitespace inside base64", "ENVELOPE_INVALID"),
    ("mixed base64 alphabets", "ENVELOPE_INVALID"),
    ("trailing data after the object", "ENVELOPE_INVALID"),
    ("same signature twice", "ENVELOPE_INVALID"),  # no DSSE tool writes it; not a layout difference
    ("relaid-out and payload changed", "SIGNATURE_INVALID"),
])
def test_variants_that_could_change_what_is_read_are_refused(lifecycle: Project, attack: str, code: str) -> None:
    path = _att(lifecycle)
    doc = json.loads(path.read_bytes())
    forged = _other_statement_b64(path)
    pl, ptype = doc["payload"], doc["payloadType"]
    sigs = json.dumps(doc["signatures"])
    if attack == "duplicate payload key, forged first":
        text = f'{{"payloadType": "{ptype}", "payload": "{forged}", "payload": "{pl}", "signatures": {sigs}}}'
    elif attack == "duplicate payload key, forged last":
        text = f'{{"payloadType": "{ptype}", "payload": "{pl}", "payload": "{forged}", "signatures": {sigs}}}'
    elif attack == "duplicate payloadType key":
        text = f'{{"payloadType": "text/plain", "payloadType": "{ptype}", "payload": "{pl}", "signatures": {sigs}}}'
    elif attack == "duplicate sig key":
        s = doc["signatures"][0]
        text = (f'{{"payloadType": "{ptype}", "payload": "{pl}", "signatures": [{{"keyid": "{s["keyid"]}", '
                f'"sig": "{s["sig"]}", "sig": "{s["sig"]}"}}]}}')
    elif attack == "extra top-level field":
        doc["payload_v2"] = forged
        text = json.dumps(doc)
    elif attack == "extra signature field":
        doc["signatures"][0]["payload"] = forged
        text = json.dumps(doc)
    elif attack == "payload in a nested object":
        text = json.dumps({"envelope": doc})
    elif attack == "unpadded base64":
        assert pl.endswith("=") or doc["signatures"][0]["sig"].endswith("=")
        doc["payload"] = pl.rstrip("=")
        doc["signatures"][0]["sig"] = doc["signatures"][0]["sig"].rstrip("=")
        text = json.dumps(doc)
    elif attack == "whitespace inside base64":
        doc["payload"] = pl[:40] + "\n" + pl[40:]
        text = json.dumps(doc)
    elif attack == "mixed base64 alphabets":  # a lenient decoder reads it, a strict one does not
        # Standard base64 of these bytes has '+' and '/' in it; write the first half standard, the rest URL-safe.
        raw = bytes(range(256)) * 2 + base64.b64decode(doc["signatures"][0]["sig"])
        std, url = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
        mixed = std[:len(std) // 2] + url[len(std) // 2:]
        assert set(mixed) & set("+/") and set(mixed) & set("-_")
        doc["signatures"][0]["sig"] = mixed
        text = json.dumps(doc)
    elif attack == "trailing data after the object":
        text = json.dumps(doc) + json.dumps(doc)
    elif attack == "same signature twice":
        doc["signatures"] = doc["signatures"] * 2
        text = json.dumps(doc, indent=2)
    else:
        doc["payload"] = forged
        text = json.dumps(doc, indent=3, sort_keys=True)
    path.write_text(text)
    report = verify_bundle(lifecycle.bundle, lifecycle.policy())
    assert not report.passed
    assert code in _errors(report), _errors(report)

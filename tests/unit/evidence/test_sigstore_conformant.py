"""The two places mlspec's Sigstore verifier follows the specification where sigstore-python does not.

1. A TSA's trust-root ``validFor`` is a closed interval: a timestamp exactly at its end is
   trusted, one second past it (or before its start, or with no start) is not.
   Attacker: someone holding the bundle who hopes a timestamp just outside the window
   the trust root grants (a retired TSA key) still counts as a verified signing time.
2. A Rekor v1 ``intoto`` 0.0.2 entry's integrated time counts (its SET is verified by
   sigstore), and its body must describe this very envelope. Attacker: someone holding
   a bundle who swaps the DSSE envelope, its signature, the certificate or the payload
   while keeping a genuine log entry for something else.

The TSA tests use the staging bundle in ../shared/vectors/sigstore; the intoto body tests
build their bundles from our own key and certificate. The full intoto path (chain, SCT,
SET, proof) is shown by the conformance runner's ``intoto-with-custom-trust-root`` case.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sigstore.errors import VerificationError
from sigstore.models import Bundle

from mlspec_attest.errors import EvidenceVerificationError
from mlspec_attest.evidence.conformant import (
    ConformantVerifier,
    validate_intoto_v002_entry_body,
    within_closed_range,
)
from mlspec_attest.evidence.sigstore import IdentityRule, load_trust_config, verify_evidence
from mlspec_attest.model.envelope import pae

DSSE_SAN = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
GHA_ISSUER = "https://token.actions.githubusercontent.com"
T = dt.datetime(2026, 5, 13, 19, 23, 33, tzinfo=dt.timezone.utc)
SECOND = dt.timedelta(seconds=1)


# --------------------------------------------------------------------------- the closed interval itself


@pytest.mark.parametrize("start, end, inside", [
    (T, T, True),                         # both ends inclusive
    (T - SECOND, T, True),                # exactly at the end
    (T, None, True),                      # open-ended, from its start
    (T - SECOND, T - SECOND, False),      # a second past the end
    (T + SECOND, None, False),            # before the start
    (None, T + SECOND, False),            # no start: not trusted (fail closed)
])
def test_closed_range(start: dt.datetime | None, end: dt.datetime | None, inside: bool) -> None:
    assert within_closed_range(T, start, end) is inside


# --------------------------------------------------------------------------- TSA validity window, real bundle


@pytest.fixture(scope="module")
def sg(vectors: Path) -> Path:
    return vectors / "sigstore"


def _rfc3339(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _gen_time(sg: Path) -> dt.datetime:
    bundle = Bundle.from_json((sg / "dsse-staging-rekor-v2/bundle.sigstore.json").read_bytes())
    tvd = bundle.verification_material.timestamp_verification_data
    assert tvd is not None
    return tvd.rfc3161_timestamps[0].tst_info.gen_time  # type: ignore[no-any-return]


def _root_with_tsa_window(sg: Path, tmp_path: Path, start: dt.datetime | None, end: dt.datetime | None) -> Path:
    root = json.loads((sg / "trusted_root.staging.json").read_bytes())
    for tsa in root["timestampAuthorities"]:
        valid: dict[str, Any] = {}
        if start is not None:
            valid["start"] = _rfc3339(start)
        if end is not None:
            valid["end"] = _rfc3339(end)
        tsa["validFor"] = valid
    out = tmp_path / "trusted_root.json"
    out.write_text(json.dumps(root))
    return out


def _verify(sg: Path, root: Path) -> Any:
    return verify_evidence(
        sg / "dsse-staging-rekor-v2/bundle.sigstore.json", trust_config=root,
        artifact=sg / "dsse-staging-rekor-v2/a.txt", identities=[IdentityRule(san=DSSE_SAN, issuer=GHA_ISSUER)],
    )


def test_timestamp_exactly_at_tsa_validity_end_is_trusted(sg: Path, tmp_path: Path) -> None:
    t = _gen_time(sg)
    result = _verify(sg, _root_with_tsa_window(sg, tmp_path, t - dt.timedelta(days=1), t))
    assert result.timestamps == [t]


def test_timestamp_exactly_at_tsa_validity_start_is_trusted(sg: Path, tmp_path: Path) -> None:
    t = _gen_time(sg)
    assert _verify(sg, _root_with_tsa_window(sg, tmp_path, t, None)).timestamps == [t]


@pytest.mark.parametrize("window", ["ended a second before", "starts a second after"])
def test_timestamp_just_outside_tsa_validity_is_refused(sg: Path, tmp_path: Path, window: str) -> None:
    t = _gen_time(sg)
    start, end = ((t - dt.timedelta(days=1), t - SECOND) if window.startswith("ended")
                  else (t + SECOND, t + dt.timedelta(days=1)))
    with pytest.raises(EvidenceVerificationError, match="not enough sources of verified time"):
        _verify(sg, _root_with_tsa_window(sg, tmp_path, start, end))


def test_sigstore_python_itself_refuses_the_inclusive_end(sg: Path, tmp_path: Path) -> None:
    """Why the workaround exists; when this fails, sigstore-python was fixed and it can go."""
    from sigstore.verify import Verifier

    t = _gen_time(sg)
    root = load_trust_config(_root_with_tsa_window(sg, tmp_path, t - dt.timedelta(days=1), t))
    bundle = Bundle.from_json((sg / "dsse-staging-rekor-v2/bundle.sigstore.json").read_bytes())
    assert Verifier(trusted_root=root)._establish_time(bundle) == []
    assert [v.time for v in ConformantVerifier(trusted_root=root)._establish_time(bundle)] == [t]


# --------------------------------------------------------------------------- intoto 0.0.2 entries, our own key


def _key_and_cert(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(T - dt.timedelta(minutes=5)).not_valid_after(T + dt.timedelta(minutes=5))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


KEY, CERT = _key_and_cert("signer")
_OTHER_KEY, OTHER_CERT = _key_and_cert("someone else")
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PAYLOAD = json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": [
    {"name": "a.txt", "digest": {"sha256": "00" * 32}}], "predicateType": "x", "predicate": {}}).encode()


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _sign(payload_type: str = PAYLOAD_TYPE, payload: bytes = PAYLOAD) -> bytes:
    return KEY.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))


SIG = _sign()


def _body(**over: Any) -> dict[str, Any]:
    """A Rekor intoto 0.0.2 body as Rekor writes it: signature, certificate and payload twice-base64."""
    sig_entry = {"sig": _b64(_b64(SIG).encode()), "publicKey": _b64(CERT.public_bytes(serialization.Encoding.PEM))}
    sig_entry.update(over.pop("sig_entry", {}))
    envelope = {"payload": _b64(_b64(PAYLOAD).encode()), "payloadType": PAYLOAD_TYPE, "signatures": [sig_entry]}
    envelope.update(over.pop("envelope", {}))
    content: dict[str, Any] = {
        "envelope": envelope,
        "hash": {"algorithm": "sha256", "value": "11" * 32},
        "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(PAYLOAD).hexdigest()},
    }
    content.update(over.pop("content", {}))
    body = {"apiVersion": "0.0.2", "kind": "intoto", "spec": {"content": content}}
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def _bundle(body: dict[str, Any], *, sigs: list[bytes] | None = None, payload: bytes = PAYLOAD,
            cert: x509.Certificate = CERT) -> Bundle:
    doc = {
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "verificationMaterial": {
            "x509CertificateChain": {"certificates": [{"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))}]},
            "tlogEntries": [{
                "logIndex": "7", "logId": {"keyId": _b64(b"\x01" * 32)},
                "kindVersion": {"kind": "intoto", "version": "0.0.2"},
                "integratedTime": str(int(T.timestamp())),
                "inclusionPromise": {"signedEntryTimestamp": _b64(b"not checked here")},
                "inclusionProof": {"logIndex": "7", "rootHash": _b64(b"\x02" * 32), "treeSize": "8",
                                   "hashes": [_b64(b"\x03" * 32)],
                                   "checkpoint": {"envelope": "example.org - 1\n8\nAgIC\n\n— example.org AAAA\n"}},
                "canonicalizedBody": _b64(json.dumps(body).encode()),
            }],
        },
        "dsseEnvelope": {"payload": _b64(payload), "payloadType": PAYLOAD_TYPE,
                         "signatures": [{"sig": _b64(s), "keyid": ""} for s in (sigs or [SIG])]},
    }
    return Bundle.from_json(json.dumps(doc))


def test_intoto_body_that_describes_the_envelope_is_accepted() -> None:
    validate_intoto_v002_entry_body(_bundle(_body()))  # no exception: this is the happy path


def test_intoto_body_without_logged_payload_is_accepted() -> None:
    body = _body()
    del body["spec"]["content"]["envelope"]["payload"]  # Rekor may omit it; the payload hash still binds it
    validate_intoto_v002_entry_body(_bundle(body))


OTHER_SIG = _sign()  # ECDSA is randomised: a second, valid but different signature
OTHER_PAYLOAD = PAYLOAD.replace(b'"x"', b'"y"')
OTHER_PAYLOAD_SIG = _sign(payload=OTHER_PAYLOAD)


def test_envelope_with_two_signatures_is_refused() -> None:
    """sigstore's envelope model refuses it; the body check would refuse it again if that ever changed."""
    from sigstore.dsse import InvalidEnvelope

    with pytest.raises((InvalidEnvelope, VerificationError), match="exactly one signature"):
        validate_intoto_v002_entry_body(_bundle(_body(), sigs=[SIG, OTHER_SIG]))


@pytest.mark.parametrize("body, bundle_kw, fragment", [
    (_body(sig_entry={"sig": _b64(_b64(OTHER_SIG).encode())}), {}, "signature does not match"),
    (_body(sig_entry={"sig": _b64(SIG)}), {}, "signature does not match"),  # once-base64: not what Rekor logs
    (_body(sig_entry={"sig": "%%%"}), {}, "signature does not match"),
    (_body(envelope={"signatures": [
        {"sig": _b64(_b64(SIG).encode()), "publicKey": _b64(CERT.public_bytes(serialization.Encoding.PEM))}] * 2}),
     {}, "exactly one signature"),
    (_body(sig_entry={"publicKey": _b64(OTHER_CERT.public_bytes(serialization.Encoding.PEM))}), {},
     "certificate does not match"),
    (_body(sig_entry={"publicKey": _b64(b"not a certificate")}), {}, "not a PEM certificate"),
    (_body(envelope={"payloadType": "text/plain"}), {}, "payload type does not match"),
    (_body(content={"payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(OTHER_PAYLOAD).hexdigest()}}),
     {}, "payload hash does not match"),
    (_body(content={"payloadHash": None}), {}, "lacks a sha256 payload hash"),
    (_body(envelope={"payload": _b64(_b64(OTHER_PAYLOAD).encode())}), {}, "payload does not match"),
    # the envelope swapped for another one the same key signed, its logged signature swapped too
    (_body(sig_entry={"sig": _b64(_b64(OTHER_PAYLOAD_SIG).encode())}),
     {"payload": OTHER_PAYLOAD, "sigs": [OTHER_PAYLOAD_SIG]}, "payload hash does not match"),
    (_body(), {"cert": OTHER_CERT}, "certificate does not match"),
    (_body(apiVersion="0.0.1"), {}, "not 0.0.2"),
    (_body(kind="dsse"), {}, "invalid intoto log entry"),
    ({"apiVersion": "0.0.2", "kind": "intoto", "spec": {}}, {}, "invalid intoto log entry"),
])
def test_intoto_body_that_describes_something_else_is_refused(
    body: dict[str, Any], bundle_kw: dict[str, Any], fragment: str,
) -> None:
    if body.get("spec", {}).get("content", {}).get("payloadHash", 0) is None:
        del body["spec"]["content"]["payloadHash"]
    with pytest.raises(VerificationError, match=fragment):
        validate_intoto_v002_entry_body(_bundle(body, **bundle_kw))


def test_intoto_integrated_time_counts_only_through_the_conformant_verifier(vectors: Path) -> None:
    """sigstore-python refuses an intoto entry's integrated time outright; ours takes it (SET checked later)."""
    from sigstore.verify import Verifier

    root = load_trust_config(vectors / "sigstore" / "trusted_root.staging.json")
    bundle = _bundle(_body())
    with pytest.raises(VerificationError, match="Integrated time only supported"):
        Verifier(trusted_root=root)._establish_time(bundle)
    assert [v.time for v in ConformantVerifier(trusted_root=root)._establish_time(bundle)] == [T]


def test_intoto_bundle_still_needs_chain_sct_and_set(vectors: Path) -> None:
    """The intoto path reuses sigstore's common checks: a self-signed certificate gets nowhere."""
    root = load_trust_config(vectors / "sigstore" / "trusted_root.staging.json")
    from sigstore.verify.policy import UnsafeNoOp

    with pytest.raises(VerificationError, match="certificate chain"):
        ConformantVerifier(trusted_root=root).verify_dsse(_bundle(_body()), UnsafeNoOp())

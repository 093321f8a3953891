"""Managed-key message-signature bundles (a key signed the artifact's bytes; no certificate).

Built from our own keys with sigstore's protobuf models, in the form the
sigstore-conformance `managed-key-*` cases use (hint = base64 sha256 of the DER SPKI).
Attacker: someone who hands over a valid bundle for another artifact, edits the
signed digest, or signs with another key.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from mlspec_attest.cli.main import main
from mlspec_attest.errors import EvidenceVerificationError, InputError
from mlspec_attest.evidence.sigstore import verify_evidence


def _bundle(tmp_path: Path, private, data: bytes, *, digest: bytes | None = None, hint: str | None = None,
            signed: bytes | None = None) -> Path:
    from sigstore_models.bundle import v1 as bundle_pb
    from sigstore_models.common import v1 as common_pb

    public = private.public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    message = signed if signed is not None else data
    if isinstance(private, ed25519.Ed25519PrivateKey):
        sig = private.sign(message)
    else:
        sig = private.sign(hashlib.sha256(message).digest(), ec.ECDSA(Prehashed(hashes.SHA256())))
    bundle = bundle_pb.Bundle(
        media_type="application/vnd.dev.sigstore.bundle.v0.3+json",
        verification_material=bundle_pb.VerificationMaterial(
            public_key=common_pb.PublicKeyIdentifier(
                hint=hint if hint is not None else base64.b64encode(hashlib.sha256(der).digest()).decode()),
            tlog_entries=[]),
        message_signature=common_pb.MessageSignature(
            message_digest=common_pb.HashOutput(algorithm=common_pb.HashAlgorithm.SHA2_256,
                                                digest=base64.b64encode(
                                                    digest if digest is not None else hashlib.sha256(data).digest())),
            signature=base64.b64encode(sig)),  # sigstore_models take base64 for bytes fields
    )
    out = tmp_path / "artifact.sigstore.json"
    out.write_text(bundle.to_json())
    return out


def _pub(tmp_path: Path, private, name: str = "key.pub") -> Path:
    p = tmp_path / name
    p.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    return p


@pytest.fixture(params=["ecdsa-p256", "ed25519"])
def key(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return ec.generate_private_key(ec.SECP256R1()) if request.param == "ecdsa-p256" else \
        ed25519.Ed25519PrivateKey.generate()


def test_managed_key_message_signature_verifies(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    artifact = tmp_path / "a.txt"
    artifact.write_bytes(b"hello, world\n")
    bundle, pub = _bundle(tmp_path, key, artifact.read_bytes()), _pub(tmp_path, key)
    r = verify_evidence(bundle, trust_config=None, artifact=artifact, key=pub)
    assert r.kind == "message_signature" and r.signer.method == "key"
    assert r.artifact_digest == f"sha256:{hashlib.sha256(artifact.read_bytes()).hexdigest()}"
    res = CliRunner().invoke(main, ["evidence", "verify", str(bundle), "--artifact", str(artifact), "--key", str(pub)])
    assert res.exit_code == 0 and "message_signature" in res.output


def test_p256_digest_alone_suffices_ed25519_needs_the_file(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    data = b"payload bytes"
    bundle, pub = _bundle(tmp_path, key, data), _pub(tmp_path, key)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        with pytest.raises(InputError, match="give --artifact"):
            verify_evidence(bundle, trust_config=None, digest=digest, key=pub)
    else:
        assert verify_evidence(bundle, trust_config=None, digest=digest, key=pub).kind == "message_signature"


@pytest.mark.parametrize("attack", ["other artifact", "messageDigest of another artifact", "signature over other bytes",
                                    "another key", "wrong hint"])
def test_managed_key_attacks_fail(tmp_path: Path, key, attack: str) -> None:  # type: ignore[no-untyped-def]
    artifact = tmp_path / "a.txt"
    artifact.write_bytes(b"the real artifact")
    other = ec.generate_private_key(ec.SECP256R1())
    pub = _pub(tmp_path, key)
    if attack == "other artifact":
        bundle = _bundle(tmp_path, key, b"another artifact")
    elif attack == "messageDigest of another artifact":  # digest claims our file, signature is over another
        bundle = _bundle(tmp_path, key, artifact.read_bytes(), signed=b"another artifact")
    elif attack == "signature over other bytes":
        bundle = _bundle(tmp_path, key, artifact.read_bytes(), signed=artifact.read_bytes() + b"!")
    elif attack == "another key":
        bundle = _bundle(tmp_path, other, artifact.read_bytes(), hint="")
    else:
        bundle = _bundle(tmp_path, key, artifact.read_bytes(), hint=base64.b64encode(b"\0" * 32).decode())
    with pytest.raises(EvidenceVerificationError):
        verify_evidence(bundle, trust_config=None, artifact=artifact, key=pub)
    res = CliRunner().invoke(main, ["evidence", "verify", str(bundle), "--artifact", str(artifact), "--key", str(pub)])
    assert res.exit_code == 1 and res.output.startswith("FAIL")


def test_message_signature_over_a_directory_is_an_input_error(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bundle, pub = _bundle(tmp_path, key, b"x"), _pub(tmp_path, key)
    (tmp_path / "d").mkdir()
    res = CliRunner().invoke(main, ["evidence", "verify", str(bundle), "--artifact", str(tmp_path / "d"),
                                    "--key", str(pub)])
    assert res.exit_code == 2 and "not a directory" in res.output

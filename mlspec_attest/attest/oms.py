"""OpenSSF model-signing (OMS) v1.0 signatures written by mlspec, for `model_signing verify key`.

The package stage can leave ``model.sig`` beside the model, in the form
``model_signing sign key`` writes: a Sigstore bundle v0.3 whose verification
material is a public-key hint (sha256 of the PEM SPKI) with no log entries, holding
a DSSE envelope of an in-toto Statement v1 with predicate
``https://model_signing/signature/v1.0`` (resources: every file's name and sha256;
serialization: method ``files``, the ignore paths). The subject digest is the one
``mlspec hash`` prints (digests.py), so the chain's package subject and the OMS
signature name the same model. model-signing's key verifier accepts ECDSA keys only
(P-256 here); an Ed25519 key writes a signature only mlspec can check.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from mlspec_attest._internal.files import write_file
from mlspec_attest.digests import GIT_IGNORES, SHARD_SIZE, SIGNATURE_FILE, digest_directory, digest_path, oms_digest
from mlspec_attest.errors import InputError
from mlspec_attest.keys import Signer
from mlspec_attest.model.canonical import canonicalize
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, pae

OMS_PREDICATE_TYPE = "https://model_signing/signature/v1.0"
BUNDLE_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"


def oms_statement(model: str | os.PathLike[str], *, ignore: Sequence[str] = (), method: str = "files",
                  hash_type: str = "sha256", shard_size: int = SHARD_SIZE) -> dict[str, Any]:
    """The OMS v1.0 Statement model-signing would sign for this model (file or directory).

    ``method="shards"`` / ``hash_type="blake3"``: model-signing's other serialisations
    (digests.oms_digest), e.g. one huge weights file hashed on every core.
    """
    path = Path(model)
    if (method, hash_type) != ("files", "sha256"):
        od = oms_digest(path, method=method, hash_type=hash_type, shard_size=shard_size, ignore=ignore)
        serialization: dict[str, Any] = od.serialization
        if path.is_dir():
            serialization["ignore_paths"] = sorted({*GIT_IGNORES, SIGNATURE_FILE, *ignore})
        return {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": path.resolve().name, "digest": {"sha256": od.subject_sha256}}],
            "predicateType": OMS_PREDICATE_TYPE,
            "predicate": {"serialization": serialization,
                          "resources": [{"algorithm": a, "digest": h, "name": n} for n, a, h in od.resources]},
        }
    if path.is_dir():
        d = digest_directory(path, ignore=ignore)
        resources = [{"algorithm": "sha256", "digest": h, "name": rel} for rel, h in d.files]
        ignore_paths = sorted({*GIT_IGNORES, SIGNATURE_FILE, *ignore})
        subject = d.sha256
    else:
        d = digest_path(path)
        resources = [{"algorithm": "sha256", "digest": d.sha256, "name": "."}]
        ignore_paths, subject = [], d.oms_sha256
    assert subject == hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    serialization = {"method": "files", "hash_type": "sha256", "allow_symlinks": False}
    if ignore_paths:
        serialization["ignore_paths"] = ignore_paths
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": path.resolve().name, "digest": {"sha256": subject}}],
        "predicateType": OMS_PREDICATE_TYPE,
        "predicate": {"serialization": serialization, "resources": resources},
    }


def sign_oms(model: str | os.PathLike[str], signer: Signer, *, ignore: Sequence[str] = (), method: str = "files",
             hash_type: str = "sha256", shard_size: int = SHARD_SIZE) -> bytes:
    """The model.sig bytes: a Sigstore bundle v0.3 (key hint, no tlog) around the signed DSSE envelope."""
    statement = oms_statement(model, ignore=ignore, method=method, hash_type=hash_type, shard_size=shard_size)
    return key_signed_bundle(canonicalize(statement), signer)


def key_signed_bundle(payload: bytes, signer: Signer) -> bytes:
    """A Sigstore bundle v0.3 with public-key verification material around a DSSE in-toto envelope."""
    from sigstore_models import intoto as intoto_pb
    from sigstore_models.bundle import v1 as bundle_pb
    from sigstore_models.common import v1 as common_pb

    if isinstance(signer.private_key, ec.EllipticCurvePrivateKey) and signer.private_key.curve.name != "secp256r1":
        raise InputError("OMS signatures are written with P-256 or Ed25519 keys only")
    sig = signer.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload))
    hint = hashlib.sha256(signer.public.to_pem()).hexdigest()  # model-signing's key hint: sha256 of the PEM SPKI
    bundle = bundle_pb.Bundle(
        media_type=BUNDLE_MEDIA_TYPE,
        verification_material=bundle_pb.VerificationMaterial(
            public_key=common_pb.PublicKeyIdentifier(hint=hint), tlog_entries=[]),
        dsse_envelope=intoto_pb.Envelope(
            payload=base64.b64encode(payload), payload_type=IN_TOTO_PAYLOAD_TYPE,
            signatures=[intoto_pb.Signature(sig=base64.b64encode(sig), keyid="")]),
    )
    return bundle.to_json().encode("utf-8")


def signature_path(model: str | os.PathLike[str]) -> Path:
    """Where the package stage writes it: DIR/model.sig, or FILE.sig beside a single-file model."""
    p = Path(model)
    return p / SIGNATURE_FILE if p.is_dir() else p.with_name(p.name + ".sig")


def write_atomically(out: Path, data: bytes) -> Path:
    """Through _internal/files.py: no-follow, exclusive temp, fsync, rename (a planted symlink is refused)."""
    return write_file(out.parent, out.name, data, replace=True, what="OMS signature")

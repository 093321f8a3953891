"""Sigstore support: keyless signing, identity policies, offline verification.

Why this module exists: a stage may be signed keylessly (Fulcio certificate +
Rekor entry) instead of with a long-lived key, and external evidence (model
signatures, SLSA provenance) arrives as Sigstore bundles. Everything here
verifies **offline** against a trusted root the caller supplies: the trust
anchor is the user's file, never the network and never the bundle.

sigstore-python is imported lazily inside functions, so importing this module
(and the CLI that uses it) stays fast.

Error contract: unusable input raises ``InputError`` (CLI exit 2); verification
that ran and failed raises ``EvidenceVerificationError`` (CLI exit 1).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from mlspec_attest._internal.loaders import read_bounded
from mlspec_attest.errors import EvidenceVerificationError, InputError
from mlspec_attest.evidence.identity import IDENTITY_CLAIMS, IdentityRule  # the policy model; re-exported here
from mlspec_attest.keys import keyid_of
from mlspec_attest.model.canonical import parse_json
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, pae

if TYPE_CHECKING:  # pragma: no cover - typing only
    from cryptography.x509 import Certificate
    from sigstore.models import TrustedRoot
    from sigstore.verify.policy import VerificationPolicy

MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # a Sigstore bundle is a few KB; refuse absurd files
MAX_TRUST_CONFIG_BYTES = 4 * 1024 * 1024
MAX_KEY_BYTES = 1024 * 1024
MAX_DSSE_SIGNATURES = 16
_HASH_CHUNK = 1024 * 1024

INTOTO_PAYLOAD_TYPE = IN_TOTO_PAYLOAD_TYPE  # one definition: model/envelope.py
INTOTO_STATEMENT_TYPES = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")
_TRUSTED_ROOT_MEDIA_PREFIX = "application/vnd.dev.sigstore.trustedroot"
_CLIENT_TRUST_CONFIG_MEDIA_PREFIX = "application/vnd.dev.sigstore.clienttrustconfig"
_DIGEST_RE = re.compile(r"sha256:([0-9a-fA-F]{64})")

# Fulcio certificate extensions (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md)
_OID_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
_OID_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"
_OID_OTHERNAME_SAN = "1.3.6.1.4.1.57264.1.7"


TrustConfigArg = Union["TrustedRoot", str, "os.PathLike[str]", None]


# --------------------------------------------------------------------------- trust config


def load_trust_config(path: str | os.PathLike[str]) -> TrustedRoot:
    """Load a Sigstore trusted root, or a ClientTrustConfig wrapping one.

    Both forms exist in the wild: the TUF target ``trusted_root.json`` and the
    ``--trust-config`` file sigstore-python's CLI takes. Verification needs only
    the trusted root, so that is what is returned.
    """
    p = Path(path)
    raw = read_bounded(p, MAX_TRUST_CONFIG_BYTES, "Sigstore trust config")
    doc = parse_json(raw, source=str(p))
    if not isinstance(doc, dict):
        raise InputError(f"{p}: not a Sigstore trusted root or ClientTrustConfig (top level is not an object)")
    media = doc.get("mediaType")
    if not isinstance(media, str):
        media = ""
    is_client = media.startswith(_CLIENT_TRUST_CONFIG_MEDIA_PREFIX) or (not media and "trustedRoot" in doc)
    is_root = media.startswith(_TRUSTED_ROOT_MEDIA_PREFIX) or (
        not media and ("tlogs" in doc or "certificateAuthorities" in doc)
    )
    if not (is_client or is_root):
        raise InputError(
            f"{p}: not a Sigstore trusted root or ClientTrustConfig "
            f"(mediaType {media or 'missing'!s}); pass trusted_root.json or a clienttrustconfig file"
        )

    from sigstore.errors import Error as SigstoreError
    from sigstore.models import ClientTrustConfig, TrustedRoot
    from sigstore_models.trustroot import v1 as trustroot_v1

    try:
        if is_client:
            root = ClientTrustConfig.from_json(raw.decode("utf-8")).trusted_root
        else:
            root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(raw))
    except (SigstoreError, ValueError) as exc:  # pydantic ValidationError is a ValueError
        kind = "ClientTrustConfig" if is_client else "trusted root"
        raise InputError(f"{p}: invalid Sigstore {kind}: {_one_line(exc)}") from None
    if not root._inner.tlogs:
        raise InputError(f"{p}: trusted root lists no transparency logs; it cannot verify anything")
    return root


def _resolve_trust(trust_config: TrustConfigArg) -> TrustedRoot | None:
    if trust_config is None:
        return None
    if isinstance(trust_config, (str, os.PathLike)):
        return load_trust_config(trust_config)
    return trust_config


# --------------------------------------------------------------------------- identity policy


def _cert_sans(cert: Certificate) -> list[str]:
    """Every identity-bearing SAN: emails, URIs and Sigstore's otherName (username)."""
    from cryptography.x509 import (
        ExtensionNotFound,
        OtherName,
        RFC822Name,
        SubjectAlternativeName,
        UniformResourceIdentifier,
    )

    try:
        san_ext = cert.extensions.get_extension_for_class(SubjectAlternativeName).value
    except ExtensionNotFound:
        return []
    sans: list[str] = list(san_ext.get_values_for_type(RFC822Name))
    sans += san_ext.get_values_for_type(UniformResourceIdentifier)
    for other in san_ext.get_values_for_type(OtherName):
        if other.type_id.dotted_string == _OID_OTHERNAME_SAN:
            sans.append(_decode_ext_value(other.value, der=True))
    return sans


def _decode_ext_value(value: bytes, *, der: bool) -> str:
    """Fulcio extensions are raw UTF-8 (v1 OIDs) or a DER UTF8String (v2 OIDs)."""
    if der:
        try:
            from cryptography.hazmat import asn1

            return str(asn1.decode_der(str, value))
        except Exception:  # older cryptography or not DER: fall back to a manual strip
            if len(value) >= 2 and value[0] == 0x0C and value[1] < 0x80:
                value = value[2:]
    return value.decode("utf-8", errors="replace")


def _cert_ext(cert: Certificate, oid: str, *, der: bool) -> str | None:
    from cryptography.x509 import ExtensionNotFound, ObjectIdentifier

    try:
        ext = cert.extensions.get_extension_for_oid(ObjectIdentifier(oid)).value
    except ExtensionNotFound:
        return None
    return _decode_ext_value(ext.value, der=der)  # type: ignore[attr-defined]


def _cert_issuer(cert: Certificate) -> str | None:
    v2 = _cert_ext(cert, _OID_ISSUER_V2, der=True)
    return v2 if v2 is not None else _cert_ext(cert, _OID_ISSUER_V1, der=False)


class SANPatternPolicy:
    """A sigstore ``VerificationPolicy``: some SAN fully matches a regex, and the issuer is exact.

    sigstore-python has no regex identity policy (cosign's ``--certificate-identity-regexp``
    equivalent), so this small class fills the gap with the same ``verify(cert)`` protocol.
    """

    def __init__(self, pattern: str, issuer: str) -> None:
        self._pattern = re.compile(pattern)
        self._issuer = issuer

    def verify(self, cert: Certificate) -> None:
        from sigstore.errors import VerificationError

        actual_issuer = _cert_issuer(cert)
        if actual_issuer != self._issuer:
            raise VerificationError(
                f"Certificate's OIDC issuer does not match (got {actual_issuer!r}, expected {self._issuer!r})"
            )
        sans = _cert_sans(cert)
        if not any(self._pattern.fullmatch(s) for s in sans):
            raise VerificationError(
                f"Certificate's SANs do not fully match /{self._pattern.pattern}/; actual SANs: {sans}"
            )


def rule_to_policy(rule: IdentityRule) -> VerificationPolicy:
    """One rule -> sigstore ``AllOf`` of SAN/issuer and every pinned claim."""
    from sigstore.verify import policy as sp

    parts: list[Any] = []
    if rule.san is not None:
        parts.append(sp.Identity(identity=rule.san, issuer=rule.issuer))
    else:
        assert rule.san_pattern is not None
        parts.append(SANPatternPolicy(rule.san_pattern, rule.issuer))
    for name, (cls_name, _oid, _der) in IDENTITY_CLAIMS.items():
        value = getattr(rule, name)
        if value is not None:
            parts.append(getattr(sp, cls_name)(value))
    return parts[0] if len(parts) == 1 else sp.AllOf(parts)


def identities_to_policy(rules: list[IdentityRule]) -> VerificationPolicy:
    """Several allowed identities -> sigstore ``AnyOf`` that explains every rule's failure."""
    if not rules:
        raise InputError("no identity given: pin at least one signer identity (SAN + issuer)")
    from sigstore.errors import VerificationError
    from sigstore.verify.policy import AnyOf

    class _ExplainingAnyOf(AnyOf):
        """AnyOf whose error says why each alternative failed (sigstore's says only '0 of N')."""

        def verify(self, cert: Certificate) -> None:
            reasons: list[str] = []
            for rule, child in zip(rules, self._children):
                try:
                    child.verify(cert)
                    return
                except VerificationError as exc:
                    reasons.append(f"{rule.describe()}: {_one_line(exc)}")
            raise VerificationError(
                "signer matches no allowed identity: " + "; ".join(reasons)
            )

    if len(rules) == 1:
        return rule_to_policy(rules[0])
    return _ExplainingAnyOf([rule_to_policy(r) for r in rules])


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SignerIdentity:
    """Who signed: a certificate identity (keyless) or a public key id (key-based)."""

    method: str  # "keyless" | "key"
    san: str | None = None
    issuer: str | None = None
    keyid: str | None = None  # sha256 of the key's DER SubjectPublicKeyInfo (mlspec convention)
    claims: dict[str, str] = field(default_factory=dict)
    signed_at: _dt.datetime | None = None  # earliest verified signing time (TSA or log), for revocation

    def describe(self) -> str:
        if self.method == "key":
            return f"key {self.keyid}"
        return f"{self.san} (issuer {self.issuer})"

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "san": self.san, "issuer": self.issuer, "keyid": self.keyid,
                "claims": dict(self.claims)}


@dataclass(frozen=True)
class EvidenceResult:
    """What a verified bundle proves: who signed which payload/artifact, and when."""

    kind: str  # "dsse" | "message_signature"
    signer: SignerIdentity
    artifact_digest: str | None  # "sha256:HEX" that was checked, if any
    payload_type: str | None = None
    payload: bytes | None = None  # DSSE payload bytes exactly as signed
    predicate_type: str | None = None
    subjects: list[dict[str, Any]] = field(default_factory=list)
    matched_subject: dict[str, Any] | None = None
    integrated_time: _dt.datetime | None = None  # Rekor v1 integrated time (covered by its SET)
    timestamps: list[_dt.datetime] = field(default_factory=list)  # verified signed times (TSA or log)
    tlog: str = ""  # human description of the transparency log evidence

    def to_dict(self) -> dict[str, Any]:
        """Stable JSON form for ``--format json``."""
        return {
            "kind": self.kind,
            "signer": self.signer.to_dict(),
            "artifact_digest": self.artifact_digest,
            "payload_type": self.payload_type,
            "predicate_type": self.predicate_type,
            "subjects": self.subjects,
            "matched_subject": self.matched_subject,
            "integrated_time": _iso(self.integrated_time),
            "timestamps": [_iso(t) for t in self.timestamps],
            "transparency_log": self.tlog,
            "payload_sha256": hashlib.sha256(self.payload).hexdigest() if self.payload is not None else None,
        }


def _iso(t: _dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------- inputs


def parse_digest(digest: str) -> bytes:
    """``sha256:HEX`` -> 32 raw bytes; anything else is a usage error."""
    m = _DIGEST_RE.fullmatch(digest.strip()) if isinstance(digest, str) else None
    if not m:
        raise InputError(f"digest {digest!r}: expected sha256:<64 hex digits>")
    return bytes.fromhex(m.group(1))


def hash_file(path: str | os.PathLike[str]) -> bytes:
    """Streaming sha256 of a regular file (constant memory)."""
    import stat as _stat

    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{p}: artifact not found") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read artifact: {exc.strerror}") from None
    if _stat.S_ISDIR(mode):
        raise InputError(f"{p}: is a directory; pass its digest with --digest sha256:HEX instead")
    if not _stat.S_ISREG(mode):
        raise InputError(f"{p}: not a regular file (FIFO, device or socket); refusing to read it")
    from mlspec_attest.digests import sha256_file  # the one streaming, FIFO-safe file hash

    return bytes.fromhex(sha256_file(p)[0])


def _artifact_digest(artifact: Path | str | None, digest: str | None) -> bytes | None:
    if artifact is not None and digest is not None:
        raise InputError("give either an artifact or a digest, not both")
    if artifact is not None:
        return hash_file(artifact)
    if digest is not None:
        return parse_digest(digest)
    return None


def _read_bundle(bundle_path: str | os.PathLike[str], data: bytes | None = None) -> tuple[bytes, Any]:
    """Read (unless ``data`` is given) and schema-parse a bundle with sigstore's own protobuf-JSON models."""
    p = Path(bundle_path)
    if data is not None and len(data) > MAX_BUNDLE_BYTES:
        raise InputError(f"{p}: Sigstore bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    raw = data if data is not None else read_bounded(p, MAX_BUNDLE_BYTES, "Sigstore bundle")
    return raw, _parse_bundle_model(raw, str(p))


def _parse_bundle_model(raw: bytes, source: str) -> Any:
    parse_json(raw, source=source)  # strict first: duplicate keys, NaN, bad UTF-8 -> exit 2
    from sigstore_models.bundle.v1 import Bundle as BundleModel

    try:
        model = BundleModel.from_json(raw)
    except ValueError as exc:
        raise InputError(f"{source}: not a Sigstore bundle: {_one_line(exc)}") from None
    media = model.media_type
    if not media.startswith("application/vnd.dev.sigstore.bundle"):
        raise InputError(f"{source}: unsupported bundle media type {media!r}")
    if model.dsse_envelope is None and model.message_signature is None:
        raise InputError(f"{source}: bundle has neither a DSSE envelope nor a message signature")
    return model


def parse_bundle(raw: bytes, source: str) -> Any:
    """A Sigstore bundle's bytes, schema-parsed (InputError naming ``source`` when they are none)."""
    return _parse_bundle_model(raw, source)


def load_public_key(path: str | os.PathLike[str]) -> Any:
    """Load a PEM (text before the block is fine) or DER SubjectPublicKeyInfo public key."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    p = Path(path)
    data = read_bounded(p, MAX_KEY_BYTES, "public key")
    try:
        if b"-----BEGIN" in data:
            return load_pem_public_key(data)
        return load_der_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{p}: not a usable public key (PEM or DER SubjectPublicKeyInfo): {_one_line(exc)}") from None
    except UnsupportedAlgorithm as exc:
        raise InputError(f"{p}: unsupported public key: {_one_line(exc)}") from None


def _spki(key: Any, pem: bool) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.PEM if pem else Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def key_id(key: Any) -> str:
    """mlspec keyid: lowercase hex sha256 of the DER SubjectPublicKeyInfo (keys.keyid_of)."""
    return keyid_of(key)


# --------------------------------------------------------------------------- DSSE / statement helpers


def _verify_with_key(key: Any, signature: bytes, message: bytes) -> bool:
    """Check one DER-ECDSA or Ed25519 signature; the hash follows the curve (P-256->SHA-256...)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey):
            algo: hashes.HashAlgorithm | None = {"secp256r1": hashes.SHA256(), "secp384r1": hashes.SHA384(),
                                                 "secp521r1": hashes.SHA512()}.get(
                key.curve.name
            )
            if algo is None:
                raise InputError(f"unsupported EC curve {key.curve.name}; use P-256, P-384 or P-521")
            key.verify(signature, message, ec.ECDSA(algo))
            return True
    except InvalidSignature:
        return False
    raise InputError(f"unsupported key type {type(key).__name__}; use Ed25519 or ECDSA (P-256/P-384/P-521)")


def _parse_statement(payload_type: str, payload: bytes) -> tuple[str, list[dict[str, Any]]]:
    """The signed in-toto Statement's predicateType and subjects; anything else fails verification."""
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise EvidenceVerificationError(
            f"DSSE payloadType is {payload_type!r}, expected {INTOTO_PAYLOAD_TYPE!r} (an in-toto Statement)"
        )
    try:
        stmt = parse_json(payload, source="signed DSSE payload")
    except InputError as exc:
        raise EvidenceVerificationError(f"signed payload is not an in-toto Statement: {exc}") from None
    if not isinstance(stmt, dict) or stmt.get("_type") not in INTOTO_STATEMENT_TYPES:
        raise EvidenceVerificationError("signed payload is not an in-toto Statement (missing or unknown _type)")
    subjects = stmt.get("subject")
    ptype = stmt.get("predicateType")
    if not isinstance(subjects, list) or not subjects or not all(isinstance(s, dict) for s in subjects):
        raise EvidenceVerificationError("signed in-toto Statement has no usable 'subject' list")
    if not isinstance(ptype, str):
        raise EvidenceVerificationError("signed in-toto Statement has no 'predicateType'")
    return ptype, subjects


def _match_subject(subjects: list[dict[str, Any]], digest: bytes, source: str) -> dict[str, Any]:
    want = digest.hex()
    for s in subjects:
        d = s.get("digest")
        if isinstance(d, dict) and isinstance(d.get("sha256"), str) and d["sha256"].lower() == want:
            return s
    names = ", ".join(str(s.get("name")) for s in subjects)
    raise EvidenceVerificationError(
        f"{source}: artifact sha256:{want} matches no subject of the signed Statement (subjects: {names})"
    )


# --------------------------------------------------------------------------- verification


def verify_evidence(
    bundle_path: str | os.PathLike[str],
    *,
    trust_config: TrustConfigArg,
    artifact: Path | str | None = None,
    digest: str | None = None,
    identities: list[IdentityRule] | None = None,
    key: Path | str | None = None,
    data: bytes | None = None,
) -> EvidenceResult:
    """Verify a Sigstore bundle offline and say who signed what.

    ``data``: the bundle's bytes when the caller already read (and digest-checked) them;
    then ``bundle_path`` only names it in messages and is never opened.

    Keyless bundles (certificate) need ``trust_config`` and ``identities``;
    key-based bundles (public key hint, e.g. OpenSSF model signatures) need
    ``key``. The artifact (or its ``sha256:`` digest) must be the signed
    message, or for DSSE one of the in-toto Statement's subjects.
    """
    if key is not None and identities:
        raise InputError("give either signer identities or a public key, not both")
    if key is None and not identities:
        raise InputError("pin the signer: give an identity (SAN + issuer) or a public key")
    if artifact is not None and digest is not None:
        raise InputError("give either an artifact or a digest, not both")
    if artifact is None and digest is None:
        raise InputError("give the artifact (file or directory) or its digest (sha256:HEX) the bundle must cover")
    raw, model = _read_bundle(bundle_path, data)
    # A DSSE statement is matched against an artifact path after its signature is verified, since
    # what to hash depends on the signed predicate (an OMS signature names its files and ignores).
    bind_later = artifact is not None and model.dsse_envelope is not None
    if artifact is not None and not bind_later and Path(artifact).is_dir():
        raise InputError(f"{artifact}: a message signature signs one file's bytes, not a directory; "
                         "give the signed file")
    want = None if bind_later else _artifact_digest(artifact, digest)
    root = _resolve_trust(trust_config)  # loaded even when unused, so a bad file is reported
    vm = model.verification_material
    has_cert = vm.certificate is not None or vm.x509_certificate_chain is not None
    if key is not None:
        if has_cert:
            raise InputError(
                f"{bundle_path}: bundle carries a signing certificate (keyless); verify it with an identity and issuer, not a key"
            )
        result = _verify_key_bundle(model, key, want, str(bundle_path), artifact)
        return _bind_artifact(result, Path(artifact), Path(bundle_path)) if bind_later else result  # type: ignore[arg-type]
    if not has_cert:
        raise InputError(
            f"{bundle_path}: bundle is signed with a key (no certificate); verify it with --key PUBKEY"
        )
    if root is None:
        raise InputError("keyless bundles need a trust config (Sigstore trusted root) to verify offline")
    assert identities is not None
    result = _verify_keyless(raw, model, root, identities, want, str(bundle_path))
    return _bind_artifact(result, Path(artifact), Path(bundle_path)) if bind_later else result  # type: ignore[arg-type]


OMS_PREDICATE_TYPE = "https://model_signing/signature/v1.0"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _bind_artifact(result: EvidenceResult, artifact: Path, bundle_path: Path) -> EvidenceResult:
    """Match a verified DSSE statement against a file or directory on disk, names included.

    * OpenSSF model-signing v1.0 (OMS): as ``model_signing verify`` does, hash the model
      with the signed serialization (``files``/sha256, the signed ``ignore_paths``, the
      signature file itself left out when it lies inside) and require the signed
      resources, name by name, to equal what is on disk; the subject digest too.
    * Any other statement: a file's sha256 must be a subject; a directory's digest must
      be a subject that also binds its file names (mlspec's manifest annotation), since
      the directory digest alone does not (a rename would pass).
    """
    from dataclasses import replace

    from mlspec_attest.digests import MANIFEST_ANNOTATION, digest_directory, digest_path

    source = str(bundle_path)
    assert result.payload is not None
    statement = parse_json(result.payload, source="signed DSSE payload")
    if result.predicate_type == OMS_PREDICATE_TYPE:
        on_disk, subject_digest = _oms_model_files(statement, artifact, bundle_path, source)
        signed = _oms_resources(statement, source)
        if signed != on_disk:
            raise EvidenceVerificationError(f"{source}: {artifact} is not the signed model: "
                                            f"{_resource_diff(signed, on_disk)}")
        matched = _match_subject(result.subjects, bytes.fromhex(subject_digest), source)
        return replace(result, artifact_digest=f"sha256:{subject_digest}", matched_subject=matched)
    if artifact.is_dir():
        d = digest_directory(artifact)
        matched = _match_subject(result.subjects, bytes.fromhex(d.sha256), source)
        annotations = matched.get("annotations")
        if not isinstance(annotations, dict) or annotations.get(MANIFEST_ANNOTATION) != d.manifest_sha256:
            raise EvidenceVerificationError(
                f"{source}: the subject matching {artifact} does not bind its file names (no or another "
                f"{MANIFEST_ANNOTATION}); files may have been renamed. Check it with the statement's own "
                "tool, or pass --digest to accept the directory digest alone")
        return replace(result, artifact_digest=f"sha256:{d.sha256}", matched_subject=matched)
    file_digest = digest_path(artifact).sha256
    matched = _match_subject(result.subjects, bytes.fromhex(file_digest), source)
    return replace(result, artifact_digest=f"sha256:{file_digest}", matched_subject=matched)


def _oms_resources(statement: Any, source: str) -> list[tuple[str, str]]:
    """The signed (name, sha256) pairs, in model-signing's order; malformed ones fail verification."""
    from mlspec_attest.digests import oms_order

    resources = (statement.get("predicate") or {}).get("resources") if isinstance(statement, dict) else None
    if not isinstance(resources, list):
        raise EvidenceVerificationError(f"{source}: OMS predicate has no resources list")
    out = []
    for r in resources:
        if not (isinstance(r, dict) and r.get("algorithm") == "sha256" and isinstance(r.get("name"), str)
                and isinstance(r.get("digest"), str) and _HEX64.fullmatch(r["digest"])):
            raise EvidenceVerificationError(f"{source}: OMS resource {r!r} is not a sha256 file digest")
        out.append((r["name"], r["digest"]))
    if len({n for n, _ in out}) != len(out):
        raise EvidenceVerificationError(f"{source}: OMS resources name a file twice")
    return sorted(out, key=lambda item: oms_order(item[0]))


def _oms_model_files(statement: Any, artifact: Path, bundle_path: Path, source: str) -> tuple[list[tuple[str, str]], str]:
    """(name, sha256) of the model on disk, hashed as the signed serialization says; and its subject digest."""
    from mlspec_attest.digests import digest_directory, digest_path

    serialization = (statement.get("predicate") or {}).get("serialization") if isinstance(statement, dict) else None
    if not isinstance(serialization, dict) or serialization.get("method") != "files" \
            or serialization.get("hash_type") != "sha256":
        raise EvidenceVerificationError(f"{source}: OMS serialization {serialization!r} is not supported "
                                        "(only method 'files' with hash_type 'sha256')")
    if not artifact.is_dir():
        d = digest_path(artifact)
        return [(".", d.sha256)], d.oms_sha256
    ignore = serialization.get("ignore_paths", [])
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise EvidenceVerificationError(f"{source}: OMS ignore_paths is not a list of paths")
    root = artifact.resolve()
    ignore = [p for p in ignore if p not in ("", ".")]
    for p in ignore:
        if p.startswith("/") or ".." in p.split("/"):
            raise EvidenceVerificationError(f"{source}: OMS ignore path {p!r} leaves the model directory")
    try:  # model-signing leaves the signature file out when it lies inside the model
        ignore.append(bundle_path.resolve().relative_to(root).as_posix())
    except ValueError:
        pass
    d = digest_directory(artifact, ignore=ignore, default_ignores=False)
    return list(d.files), d.sha256


def _resource_diff(signed: list[tuple[str, str]], on_disk: list[tuple[str, str]]) -> str:
    a, b = dict(signed), dict(on_disk)
    parts = []
    if missing := sorted(set(a) - set(b)):
        parts.append(f"signed but absent: {', '.join(missing[:5])}")
    if extra := sorted(set(b) - set(a)):
        parts.append(f"present but not signed: {', '.join(extra[:5])}")
    if changed := sorted(n for n in set(a) & set(b) if a[n] != b[n]):
        parts.append(f"changed: {', '.join(changed[:5])}")
    return "; ".join(parts) or "same files in another order"


def _verify_keyless(
    raw: bytes, model: Any, root: TrustedRoot, identities: list[IdentityRule], want: bytes | None, source: str
) -> EvidenceResult:
    from sigstore.errors import Error as SigstoreError
    from sigstore.errors import VerificationError
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle, InvalidBundle
    from sigstore_models.common.v1 import HashAlgorithm

    from mlspec_attest.evidence.conformant import ConformantVerifier  # sigstore's Verifier, spec-corrected

    policy = identities_to_policy(identities)
    try:
        bundle = Bundle.from_json(raw)
    except InvalidBundle as exc:
        # Parsed fine, but lacks what keyless evidence needs (log entry, proof, ...): evidence fails.
        raise EvidenceVerificationError(f"{source}: incomplete Sigstore bundle: {_one_line(exc)}") from None
    except (ValueError, SigstoreError) as exc:
        raise InputError(f"{source}: unusable Sigstore bundle: {_one_line(exc)}") from None
    try:
        verifier = ConformantVerifier(trusted_root=root)
    except SigstoreError as exc:
        raise InputError(f"trust config cannot be used: {_one_line(exc)}") from None

    payload_type = payload = ptype = matched = None
    subjects: list[dict[str, Any]] = []
    try:
        if model.dsse_envelope is not None:
            kind = "dsse"
            payload_type, payload = verifier.verify_dsse(bundle, policy)
            ptype, subjects = _parse_statement(payload_type, payload)
            if want is not None:
                matched = _match_subject(subjects, want, source)
        else:
            kind = "message_signature"
            if want is None:
                raise InputError("a message-signature bundle needs the artifact or its digest")
            verifier.verify_artifact(Hashed(algorithm=HashAlgorithm.SHA2_256, digest=want), bundle, policy)
    except VerificationError as exc:
        raise EvidenceVerificationError(f"{source}: {_one_line(exc)}") from None
    except SigstoreError as exc:  # e.g. MetadataError: trust root lacks CT/Rekor keys
        raise EvidenceVerificationError(f"{source}: {_one_line(exc)}") from None

    cert = bundle.signing_certificate
    claims = {n: v for n, (_c, oid, der) in IDENTITY_CLAIMS.items() if (v := _cert_ext(cert, oid, der=der))}
    sans = _cert_sans(cert)
    signer = SignerIdentity(method="keyless", san=sans[0] if sans else None, issuer=_cert_issuer(cert), claims=claims)
    integrated, times, tlog = _log_facts(verifier, bundle, model)
    return EvidenceResult(
        kind=kind, signer=signer, artifact_digest=f"sha256:{want.hex()}" if want is not None else None,
        payload_type=payload_type, payload=payload, predicate_type=ptype, subjects=subjects,
        matched_subject=matched, integrated_time=integrated, timestamps=times, tlog=tlog,
    )


def _log_facts(verifier: Any, bundle: Any, model: Any) -> tuple[_dt.datetime | None, list[_dt.datetime], str]:
    """Signing times sigstore verified, and a one-line description of the log entry."""
    entry = model.verification_material.tlog_entries[0]
    integrated = None
    if entry.integrated_time and entry.inclusion_promise is not None:
        integrated = _dt.datetime.fromtimestamp(int(entry.integrated_time), tz=_dt.timezone.utc)
    try:  # private in sigstore-python 3/4; re-run only to report which times were verified
        times = sorted({v.time for v in verifier._establish_time(bundle)})
    except Exception:
        times = [integrated] if integrated else []
    kv = entry.kind_version
    rekor = "Rekor v2" if kv.version == "0.0.2" else "Rekor v1"
    tlog = f"{rekor} entry {kv.kind}/{kv.version} at log index {entry.log_index}, inclusion proof verified"
    if integrated is not None:
        tlog += ", inclusion promise (SET) verified"
    return integrated, times, tlog


def _verify_key_bundle(model: Any, key_path: Path | str, want: bytes | None, source: str,
                       artifact_path: Path | str | None = None) -> EvidenceResult:
    """Key-hint bundles (no certificate): sigstore-python cannot verify these, so check DSSE here."""
    key = load_public_key(key_path)
    env = model.dsse_envelope
    hint = getattr(model.verification_material.public_key, "hint", None)
    if hint:
        # model-signing writes hex sha256 of the PEM SPKI; Sigstore clients (cosign, the conformance
        # suite) write base64 of sha256 over the DER SPKI; mlspec's keyid is hex of the latter.
        der, pem = hashlib.sha256(_spki(key, pem=False)).digest(), hashlib.sha256(_spki(key, pem=True)).digest()
        accepted = {pem.hex(), der.hex(), base64.b64encode(der).decode(), base64.b64encode(pem).decode()}
        if hint not in accepted and hint.lower() not in accepted:
            raise EvidenceVerificationError(
                f"{source}: bundle's public key hint {hint} does not identify the given key "
                f"(keyid {key_id(key)}); wrong key?"
            )
    if env is None:
        return _verify_key_message_signature(model, key, want, artifact_path, source)
    sigs = env.signatures
    if not sigs:
        raise EvidenceVerificationError(f"{source}: DSSE envelope has no signatures")
    if len(sigs) > MAX_DSSE_SIGNATURES:
        raise InputError(f"{source}: DSSE envelope has {len(sigs)} signatures, over the limit of {MAX_DSSE_SIGNATURES}")
    message = pae(env.payload_type, env.payload)
    if not any(_verify_with_key(key, s.sig, message) for s in sigs):
        raise EvidenceVerificationError(f"{source}: DSSE signature does not verify with key {key_id(key)}")
    ptype, subjects = _parse_statement(env.payload_type, env.payload)
    matched = _match_subject(subjects, want, source) if want is not None else None
    n = len(model.verification_material.tlog_entries)
    tlog = (
        "no transparency log entry present (key-signed bundle; the pinned key is the trust anchor)"
        if n == 0
        else f"{n} transparency log entr{'y' if n == 1 else 'ies'} present but NOT verified (key-signed bundle; the pinned key is the trust anchor)"
    )
    return EvidenceResult(
        kind="dsse", signer=SignerIdentity(method="key", keyid=key_id(key)),
        artifact_digest=f"sha256:{want.hex()}" if want is not None else None,
        payload_type=env.payload_type, payload=env.payload, predicate_type=ptype, subjects=subjects,
        matched_subject=matched, tlog=tlog,
    )


MAX_ED25519_MESSAGE = 64 * 1024 * 1024  # Ed25519 signs the whole message, which must then be read into memory


def _verify_key_message_signature(model: Any, key: Any, want: bytes | None, artifact: Path | str | None,
                                  source: str) -> EvidenceResult:
    """A managed-key message signature (hashedrekord-style): the key signed the artifact's bytes.

    ECDSA over SHA-256 is checked on the digest alone (prehashed), so ``--digest`` suffices;
    another curve's hash, or Ed25519 (which signs the message itself), needs the artifact.
    The bundle's ``messageDigest`` must name the same artifact when present. Log entries
    and timestamps are reported, not verified: the pinned key is the trust anchor.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    if want is None:
        raise InputError("a message-signature bundle needs the artifact or its digest")
    ms = model.message_signature
    md = ms.message_digest
    if md is not None and md.digest:
        if str(getattr(md.algorithm, "name", md.algorithm)) not in ("SHA2_256", "HashAlgorithm.SHA2_256"):
            raise EvidenceVerificationError(f"{source}: messageDigest algorithm {md.algorithm} is not SHA2_256")
        if md.digest != want:
            raise EvidenceVerificationError(f"{source}: the bundle signs sha256:{md.digest.hex()}, "
                                            f"not the artifact sha256:{want.hex()}")
    sig = ms.signature
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve_hashes: dict[str, Any] = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384,
                                         "secp521r1": hashes.SHA512}
        algo = curve_hashes.get(key.curve.name)
        if algo is None:
            raise InputError(f"unsupported EC curve {key.curve.name}; use P-256, P-384 or P-521")
        if algo is hashes.SHA256:
            digest = want
        elif artifact is not None:
            h = hashlib.new(algo().name)
            from mlspec_attest._internal.files import open_stream

            with open_stream(artifact, what="artifact") as fh:  # non-blocking, fstat-checked
                while chunk := fh.read(_HASH_CHUNK):
                    h.update(chunk)
            digest = h.digest()
        else:
            raise InputError(f"a {key.curve.name} message signature is over {algo.name}; give --artifact FILE")
        try:
            key.verify(sig, digest, ec.ECDSA(Prehashed(algo())))
            ok = True
        except InvalidSignature:
            ok = False
    elif isinstance(key, ed25519.Ed25519PublicKey):
        if artifact is None:
            raise InputError("an Ed25519 message signature is over the artifact's bytes; give --artifact FILE")
        data = read_bounded(Path(artifact), MAX_ED25519_MESSAGE, "artifact")
        if hashlib.sha256(data).digest() != want:
            raise EvidenceVerificationError(f"{source}: the artifact changed while it was read")
        ok = _verify_with_key(key, sig, data)
    else:
        raise InputError(f"unsupported key type {type(key).__name__}; use Ed25519 or ECDSA (P-256/P-384/P-521)")
    if not ok:
        raise EvidenceVerificationError(f"{source}: message signature does not verify with key {key_id(key)}")
    n = len(model.verification_material.tlog_entries)
    tlog = ("no transparency log entry present (key-signed bundle; the pinned key is the trust anchor)" if n == 0
            else f"{n} transparency log entr{'y' if n == 1 else 'ies'} present but NOT verified (key-signed "
                 "bundle; the pinned key is the trust anchor)")
    return EvidenceResult(kind="message_signature", signer=SignerIdentity(method="key", keyid=key_id(key)),
                          artifact_digest=f"sha256:{want.hex()}", tlog=tlog)


def verify_keyless_statement(
    bundle_bytes: bytes, *, trust_config: TrustConfigArg, identities: list[IdentityRule]
) -> tuple[bytes, SignerIdentity]:
    """Verify a keylessly signed stage attestation and return its in-toto payload bytes as signed.

    The chain verifier calls this for ``attestations/NNNN-STAGE.sigstore.json``;
    subject/artifact checks are the chain verifier's job, so none is done here.
    """
    model = _parse_bundle_model(bundle_bytes, "sigstore attestation")
    if model.dsse_envelope is None:
        raise EvidenceVerificationError("sigstore attestation: bundle holds no DSSE envelope (an attestation must be DSSE)")
    vm = model.verification_material
    if vm.certificate is None and vm.x509_certificate_chain is None:
        raise EvidenceVerificationError("sigstore attestation: bundle has no signing certificate (not keyless)")
    root = _resolve_trust(trust_config)
    if root is None:
        raise InputError("keyless attestations need a Sigstore trust config to verify offline")
    res = _verify_keyless(bundle_bytes, model, root, identities, None, "sigstore attestation")
    assert res.payload is not None
    # The verified time, not the statement's claimed finishedOn, is what a revocation is compared with.
    times = [t for t in (*res.timestamps, res.integrated_time) if t is not None]
    return res.payload, dataclasses.replace(res.signer, signed_at=min(times)) if times else res.signer


# --------------------------------------------------------------------------- keyless signing


def sign_statement_keyless(statement_bytes: bytes, *, identity_token: str | None = None, staging: bool = False) -> bytes:
    """Sign in-toto Statement bytes keylessly (Fulcio + Rekor) and return a bundle v0.3 as JSON bytes.

    The bytes are signed exactly as given (they are the JCS payload the chain
    hashes). Without ``identity_token`` an ambient CI credential is detected
    (GitHub Actions ``id-token: write``, GitLab, Buildkite, CircleCI, GCP).
    Needs network access to the TUF repository, Fulcio, Rekor and the TSA.
    """
    from sigstore import dsse
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import ExpiredIdentity, IdentityToken, detect_credential
    from sigstore.sign import SigningContext

    try:
        statement = dsse.Statement(statement_bytes)
    except SigstoreError as exc:
        raise InputError(f"cannot sign keylessly: not an in-toto Statement: {_one_line(exc)}") from None

    if identity_token is None:
        try:
            identity_token = detect_credential()
        except SigstoreError as exc:
            raise InputError(f"cannot sign keylessly: ambient credential detection failed: {_one_line(exc)}") from None
        except OSError as exc:
            raise InputError(f"cannot sign keylessly: ambient credential detection failed: {_one_line(exc)}") from None
    if not identity_token:
        raise InputError(
            "cannot sign keylessly: no OIDC identity token; pass one (e.g. SIGSTORE_ID_TOKEN) or run in CI "
            "with ambient credentials (GitHub Actions needs 'permissions: id-token: write')"
        )
    try:
        token = IdentityToken(identity_token)
    except (SigstoreError, ExpiredIdentity) as exc:
        raise InputError(f"cannot sign keylessly: unusable identity token: {_one_line(exc)}") from None

    instance = "staging" if staging else "production"
    try:
        trust = ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
        context = SigningContext.from_trust_config(trust)
        with context.signer(token, cache=False) as signer:
            bundle = signer.sign_dsse(statement)
    except ExpiredIdentity as exc:
        raise InputError(f"cannot sign keylessly: identity token expired: {_one_line(exc)}") from None
    except (SigstoreError, OSError) as exc:  # requests' errors are OSErrors
        raise InputError(
            f"cannot sign keylessly with Sigstore {instance} (network, TUF, Fulcio or Rekor failed): {_one_line(exc)}"
        ) from None
    return bundle.to_json().encode("utf-8")


__all__ = [
    "EvidenceResult",
    "EvidenceVerificationError",
    "IdentityRule",
    "SANPatternPolicy",
    "SignerIdentity",
    "identities_to_policy",
    "load_public_key",
    "load_trust_config",
    "pae",
    "parse_digest",
    "rule_to_policy",
    "sign_statement_keyless",
    "verify_evidence",
    "verify_keyless_statement",
]

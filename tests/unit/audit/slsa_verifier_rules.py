"""slsa-verifier's `verify-vsa` checks, encoded in Python (slsa-verifier is a Go tool we cannot fetch here).

Read from github.com/slsa-framework/slsa-verifier at commit aaf98fd ("chore: Update
CODEOWNERS (#883)"): cli/slsa-verifier/verify/verify_vsa.go and options.go (flags and
defaults), verifiers/internal/vsa/verifier.go (the order of checks), verifiers/internal/
vsa/v1.0/vsa.go (the Go types the predicate is decoded into), verifiers/utils/dsse.go
(envelope and statement decoding), and the libraries it calls: go-securesystemslib
v0.9.0 dsse/verify.go (keyid matching: an empty --public-key-id becomes the key's SSH
SHA256 fingerprint, and a signature whose keyid differs from it is skipped) and
sigstore v1.8.12 signature/dsse adapters (KeyID returns --public-key-id as given).
Each function names the Go function it mirrors; nothing here is copied code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = ("https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1")
VSA_PREDICATE_TYPE = "https://slsa.dev/verification_summary/v1"
# Go's time.Time.UnmarshalJSON: RFC 3339 with optional fractional seconds.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


class VerifyVSAFailed(Exception):
    """`Verifying VSA: FAILED: ...` (exit status 1)."""


@dataclass
class VerifyVSACommand:
    """The flags of `slsa-verifier verify-vsa` (options.go VerifyVSAOptions)."""

    attestation_path: str
    public_key_path: str
    verifier_id: str
    resource_uri: str
    subject_digests: list[str] = field(default_factory=list)
    verified_levels: list[str] = field(default_factory=list)
    public_key_id: str = ""  # default "": then the SSH SHA256 fingerprint (go-securesystemslib)

    @classmethod
    def from_argv(cls, argv: list[str]) -> VerifyVSACommand:
        """Parse `verify-vsa --flag value ...` as cobra does for these string / string-array flags."""
        assert argv[0] == "verify-vsa", argv
        names = {"--attestation-path": "attestation_path", "--public-key-path": "public_key_path",
                 "--verifier-id": "verifier_id", "--resource-uri": "resource_uri",
                 "--public-key-id": "public_key_id"}
        lists = {"--subject-digest": "subject_digests", "--verified-level": "verified_levels"}
        values: dict[str, Any] = {"subject_digests": [], "verified_levels": []}
        it = iter(argv[1:])
        for flag in it:
            flag, _, inline = flag.partition("=")
            value = inline or next(it)
            if flag in names:
                values[names[flag]] = value
            elif flag in lists:
                values[lists[flag]].append(value)
            else:
                raise AssertionError(f"unknown flag {flag}")
        return cls(**values)


def ssh_sha256_fingerprint(public_key: Any) -> str:
    """go-securesystemslib dsse.SHA256KeyID: ssh.FingerprintSHA256 of the key's SSH wire form."""
    line = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    wire = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(wire).digest()).decode().rstrip("=")


def _go_b64(text: Any, *, url_fallback: bool) -> bytes:
    """base64.StdEncoding (then URLEncoding where Go tries it); padded; Go skips CR/LF."""
    if not isinstance(text, str):
        raise VerifyVSAFailed("invalid DSSE payload: not a base64 string")
    cleaned = text.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        if not url_fallback:
            raise VerifyVSAFailed("invalid DSSE payload: illegal base64 data") from None
    try:
        return base64.b64decode(cleaned, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise VerifyVSAFailed("unable to base64 decode payload") from None


def _verify_one(public_key: Any, sig: bytes, message: bytes) -> bool:
    """sigstore signature.LoadVerifier: Ed25519 signs the message; ECDSA (P-256: SHA-256) verifies
    ASN.1 DER when the bytes parse as DER, else IEEE P1363 r||s (ECDSAVerifier.VerifySignature)."""
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(sig, message)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            try:
                public_key.verify(sig, message, ec.ECDSA(hashes.SHA256()))  # DER, as ecdsa.VerifyASN1
            except (InvalidSignature, ValueError):
                if _is_der(sig) or not sig or len(sig) > 132 or len(sig) % 2:
                    return False
                half = len(sig) // 2
                der = encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))
                public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        else:
            return False
        return True
    except (InvalidSignature, ValueError):
        return False


def _is_der(sig: bytes) -> bool:
    try:
        decode_dss_signature(sig)
        return True
    except ValueError:
        return False


def _pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _go_types(predicate: Any) -> None:
    """json.Unmarshal into vsa10.Predicate: a JSON value of another type than the Go field is an error."""
    def want(cond: bool, what: str) -> None:
        if not cond:
            raise VerifyVSAFailed(f"invalid DSSE payload: json: cannot unmarshal {what}")

    def str_map(v: Any, what: str) -> None:
        want(v is None or (isinstance(v, dict) and all(isinstance(x, str) for x in v.values())), what)

    def material(v: Any, what: str) -> None:
        want(v is None or isinstance(v, dict), what)
        if isinstance(v, dict):
            want(v.get("uri") is None or isinstance(v["uri"], str), f"{what}.uri")
            str_map(v.get("digest"), f"{what}.digest")

    want(isinstance(predicate, dict), "predicate")
    ver = predicate.get("verifier")
    want(ver is None or isinstance(ver, dict), "verifier")
    if isinstance(ver, dict):
        want(ver.get("id") is None or isinstance(ver["id"], str), "verifier.id")
        str_map(ver.get("version"), "verifier.version")
    tv = predicate.get("timeVerified")
    want(tv is None or (isinstance(tv, str) and bool(_RFC3339.fullmatch(tv))), "timeVerified into time.Time")
    for name in ("resourceUri", "verificationResult", "slsaVersion"):
        want(predicate.get(name) is None or isinstance(predicate[name], str), name)
    material(predicate.get("policy"), "policy")
    ia = predicate.get("inputAttestations")
    want(ia is None or isinstance(ia, list), "inputAttestations")
    for i, m in enumerate(ia or []):
        material(m, f"inputAttestations[{i}]")
    vl = predicate.get("verifiedLevels")
    want(vl is None or (isinstance(vl, list) and all(isinstance(x, str) for x in vl)),
         "verifiedLevels into []string")
    dl = predicate.get("dependencyLevels")
    want(dl is None or (isinstance(dl, dict) and all(isinstance(x, int) and not isinstance(x, bool)
                                                     for x in dl.values())), "dependencyLevels")


def _slsa_levels(levels: list[str]) -> dict[str, int]:
    """extractSLSALevels: SLSA_<TRACK>_LEVEL_<n>; any other SLSA_ string is an error."""
    out: dict[str, int] = {}
    for level in levels:
        if not level.startswith("SLSA_"):
            continue
        parts = level.split("_", 3)
        if len(parts) != 4 or parts[2] != "LEVEL" or not re.fullmatch(r"[+-]?\d+", parts[3]):
            raise VerifyVSAFailed(f"invalid SLSA level: {level}")
        out[parts[1]] = max(out.get(parts[1], int(parts[3])), int(parts[3]))
    return out


def verify_vsa(cmd: VerifyVSACommand) -> bytes:
    """verifiers.VerifyVSA as the CLI calls it; returns the payload, raises VerifyVSAFailed."""
    with open(cmd.public_key_path, "rb") as fh:
        public_key = serialization.load_pem_public_key(fh.read())  # cryptoutils.UnmarshalPEMToPublicKey
    with open(cmd.attestation_path, "rb") as fh:
        attestation = fh.read()
    # utils.EnvelopeFromBytes: Go json (unknown fields ignored, last duplicate wins).
    try:
        env = json.loads(attestation)
    except ValueError as exc:
        raise VerifyVSAFailed(f"invalid DSSE payload: {exc}") from None
    if not isinstance(env, dict) or env.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
        raise VerifyVSAFailed("invalid DSSE payload: expected payload type application/vnd.in-toto+json")
    # verifyEnvelopeSignature -> dsse.EnvelopeVerifier.Verify, threshold 1.
    signatures = env.get("signatures") or []
    if not signatures:
        raise VerifyVSAFailed("no valid signature: no signature found")
    body = _go_b64(env.get("payload"), url_fallback=True)  # Envelope.DecodeB64Payload
    message = _pae(env["payloadType"], body)
    key_id = cmd.public_key_id or ssh_sha256_fingerprint(public_key)
    accepted = False
    for s in signatures:
        sig = _go_b64(s.get("sig"), url_fallback=True)
        sig_keyid = s.get("keyid") or ""
        if sig_keyid and key_id and sig_keyid != key_id:
            continue  # "If provider and signature include key IDs but do not match skip."
        if _verify_one(public_key, sig, message):
            accepted = True
            break
    if not accepted:
        raise VerifyVSAFailed("no valid signature: accepted signatures do not match threshold, Found: 0, Expected 1")
    # utils.StatementFromEnvelope: the payload decoded with StdEncoding only, non-empty.
    payload = _go_b64(env.get("payload"), url_fallback=False)
    if not payload:
        raise VerifyVSAFailed("invalid format: empty payload")
    try:
        statement = json.loads(payload)
    except ValueError as exc:
        raise VerifyVSAFailed(f"invalid DSSE payload: {exc}") from None
    if not isinstance(statement, dict) or statement.get("_type") not in STATEMENT_TYPES:
        raise VerifyVSAFailed("invalid DSSE payload: invalid statement type")
    # vsa10.VSAFromStatement
    if statement.get("predicateType") != VSA_PREDICATE_TYPE:
        raise VerifyVSAFailed("invalid DSSE payload: expected predicate type " + VSA_PREDICATE_TYPE)
    predicate = statement.get("predicate")
    _go_types(predicate)
    subjects = statement.get("subject") or []
    # matchExepectedSubjectDigests
    if not cmd.subject_digests:
        raise VerifyVSAFailed("empty required field: no subject digests provided")
    found: dict[str, set[str]] = {}
    for subject in subjects:
        for kind, value in (subject.get("digest") or {}).items():
            found.setdefault(kind, set()).add(value)
    if not found:
        raise VerifyVSAFailed("invalid DSSE payload: no subject digests found in the VSA")
    for expected in cmd.subject_digests:
        kind, sep, value = expected.partition(":")
        if not sep:
            raise VerifyVSAFailed(f"expected digest {expected} is not in the format <digest type>:<digest value>")
        if value not in found.get(kind, set()):
            raise VerifyVSAFailed(f"missing subject digest: expected digest not found: {expected}")
    # matchVerifierID, matchResourceURI, confirmVerificationResult
    verifier_id = (predicate.get("verifier") or {}).get("id") or ""
    if not verifier_id:
        raise VerifyVSAFailed("empty required field: no verifierID found in the VSA")
    if cmd.verifier_id != verifier_id:
        raise VerifyVSAFailed(f"verifier ID mismatch: wanted {cmd.verifier_id}, got {verifier_id}")
    resource_uri = predicate.get("resourceUri") or ""
    if not resource_uri:
        raise VerifyVSAFailed("empty required field: no resourceURI provided")
    if cmd.resource_uri != resource_uri:
        raise VerifyVSAFailed(f"resource URI mismatch: wanted {cmd.resource_uri}, got {resource_uri}")
    if predicate.get("verificationResult") != "PASSED":
        raise VerifyVSAFailed(f"verification result is not Passed: {predicate.get('verificationResult')}")
    # matchVerifiedLevels
    got_levels = list(predicate.get("verifiedLevels") or [])
    wanted, got = _slsa_levels(cmd.verified_levels), _slsa_levels(got_levels)
    for track, minimum in wanted.items():
        if track not in got or got[track] < minimum:
            raise VerifyVSAFailed(f"mismatch verified levels: expected SLSA level {track} >= {minimum}")
    for level in cmd.verified_levels:
        if not level.startswith("SLSA_") and level not in got_levels:
            raise VerifyVSAFailed(f"mismatch verified levels: expected verified level not found: {level}")
    return payload

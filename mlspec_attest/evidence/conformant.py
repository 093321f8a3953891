"""sigstore-python's ``Verifier``, corrected where it departs from the Sigstore specification.

Two departures make sigstore-python 4.x refuse bundles the specification (and the
sigstore-conformance suite, and sigstore-go / sigstore-js) accept:

* **TSA validity end is inclusive.** A trusted root's ``TimeRange`` is a closed
  interval, but ``Verifier._verify_signed_timestamp`` trusts a timestamp only when
  ``gen_time < validFor.end``. Here the end is inclusive (``<=``); nothing else changes,
  and a timestamp one second after the end is still refused. A ``validFor`` without a
  start is refused (fail closed) instead of crashing the comparison.
* **Rekor v1 ``intoto`` v0.0.2 entries.** ``_establish_time`` takes a Rekor v1 integrated
  time only from ``dsse``/``hashedrekord`` 0.0.1 entries, and ``verify_dsse`` has no body
  check for ``intoto`` 0.0.2, so DSSE bundles logged as in-toto entries (older cosign,
  custom instances) cannot be verified. Here an ``intoto`` 0.0.2 entry's integrated time
  counts when its inclusion promise is present (the SET is still verified over the body,
  time and index by sigstore's own ``LogEntry._verify``), and its body must agree with the
  bundle as sigstore-js requires, and a little more: one signature equal to the
  envelope's, the payload hash equal to sha256 of the envelope's payload, the same
  payload type, the same signing certificate, and the same payload when logged.

Everything else (chain building, SCT, identity policy, inclusion proof, checkpoint, SET,
signature) is sigstore-python's own code, reached through ``super()``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sigstore import dsse
from sigstore._internal.timestamp import TimestampSource, TimestampVerificationResult
from sigstore.errors import VerificationError
from sigstore.verify import Verifier

if TYPE_CHECKING:
    from rfc3161_client import TimeStampResponse
    from sigstore.models import Bundle
    from sigstore.verify.policy import VerificationPolicy

INTOTO_V002 = ("intoto", "0.0.2")


def _kind_version(bundle: Bundle) -> tuple[str, str]:
    kv = bundle.log_entry._inner.kind_version
    return (kv.kind, kv.version)


def within_closed_range(moment: datetime, start: datetime | None, end: datetime | None) -> bool:
    """``start <= moment <= end`` (a trusted root's TimeRange); no start means not trusted."""
    if start is None:
        return False
    return start <= moment and (end is None or moment <= end)


class ConformantVerifier(Verifier):
    """A sigstore ``Verifier`` that follows the specification in the two places named above."""

    def _verify_signed_timestamp(
        self, timestamp_response: TimeStampResponse, message: bytes
    ) -> TimestampVerificationResult | None:
        """sigstore-python's TSA check with the authority's validity end inclusive."""
        from rfc3161_client import VerificationError as Rfc3161VerificationError
        from rfc3161_client import VerifierBuilder

        gen_time = timestamp_response.tst_info.gen_time
        for authority in self._trusted_root.get_timestamp_authorities():
            certificates = authority.certificates(allow_expired=True)
            if len(certificates) < 2:  # a TSA leaf and a root at least
                continue
            builder = VerifierBuilder().tsa_certificate(certificates[0]).add_root_certificate(certificates[-1])
            for intermediate in certificates[1:-1]:
                builder = builder.add_intermediate_certificate(intermediate)
            try:
                builder.build().verify_message(timestamp_response, message)
            except Rfc3161VerificationError:
                continue
            if within_closed_range(gen_time, authority.validity_period_start, authority.validity_period_end):
                return TimestampVerificationResult(source=TimestampSource.TIMESTAMP_AUTHORITY, time=gen_time)
        return None

    def _establish_time(self, bundle: Bundle) -> list[TimestampVerificationResult]:
        """Upstream's, plus the integrated time of a Rekor v1 ``intoto`` 0.0.2 entry with a SET."""
        if _kind_version(bundle) != INTOTO_V002:
            return super()._establish_time(bundle)
        verified: list[TimestampVerificationResult] = []
        if bundle.verification_material.timestamp_verification_data:
            if not self._trusted_root.get_timestamp_authorities():
                raise VerificationError(
                    "no Timestamp Authorities have been provided to validate this bundle but it contains a signed timestamp"
                )
            verified.extend(self._verify_timestamp_authority(bundle))
        inner = bundle.log_entry._inner
        if inner.integrated_time and inner.inclusion_promise:
            verified.append(TimestampVerificationResult(
                source=TimestampSource.TRANSPARENCY_SERVICE,
                time=datetime.fromtimestamp(inner.integrated_time, tz=timezone.utc),
            ))
        return verified

    def verify_dsse(self, bundle: Bundle, policy: VerificationPolicy) -> tuple[str, bytes]:
        """Upstream's for every entry kind it knows; the same steps plus an intoto body check otherwise."""
        if _kind_version(bundle) != INTOTO_V002:
            return super().verify_dsse(bundle, policy)
        self._verify_common_signing_cert(bundle, policy)  # steps 0-6: time, chain, SCT, policy, proof, SET
        envelope = bundle._dsse_envelope
        if envelope is None:
            raise VerificationError("cannot perform DSSE verification on a bundle without a DSSE envelope")
        dsse._verify(bundle.signing_certificate.public_key(), envelope)  # type: ignore[arg-type]
        validate_intoto_v002_entry_body(bundle)
        return (envelope._inner.payload_type, envelope._inner.payload)


def _b64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode(text or "", validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError(f"intoto log entry: {what} is not base64") from None


def _double_b64(text: str | None) -> bytes | None:
    """Rekor's twice-base64 field, decoded; ``None`` when it is not that (so it matches nothing)."""
    try:
        return base64.b64decode(base64.b64decode(text or "", validate=True), validate=True)
    except (binascii.Error, ValueError):
        return None


def validate_intoto_v002_entry_body(bundle: Bundle) -> None:
    """The logged in-toto entry must describe exactly this envelope, signature and certificate."""
    import rekor_types
    from cryptography.x509 import load_pem_x509_certificate
    from pydantic import ValidationError
    from rekor_types._internal.intoto import IntotoV002Schema

    envelope = bundle._dsse_envelope
    if envelope is None:
        raise VerificationError("cannot perform DSSE verification on a bundle without a DSSE envelope")
    try:
        body = rekor_types.Intoto.model_validate_json(bundle.log_entry._inner.canonicalized_body)
    except ValidationError as exc:
        raise VerificationError(f"invalid intoto log entry: {exc.error_count()} schema error(s)") from None
    spec = body.spec.root
    if body.api_version != "0.0.2" or not isinstance(spec, IntotoV002Schema):
        raise VerificationError(f"intoto log entry body is version {body.api_version}, not 0.0.2")
    logged = spec.content.envelope
    signed = envelope._inner
    if len(logged.signatures) != 1 or len(signed.signatures) != 1:
        raise VerificationError("intoto log entry and envelope must each carry exactly one signature")
    # Rekor stores the signature and the certificate base64-encoded once more than DSSE does.
    if _double_b64(logged.signatures[0].sig) != signed.signatures[0].sig:
        raise VerificationError("intoto log entry signature does not match the bundle's envelope")
    try:
        logged_cert = load_pem_x509_certificate(_b64(logged.signatures[0].public_key, "public key"))
    except ValueError:
        raise VerificationError("intoto log entry: public key is not a PEM certificate") from None
    if logged_cert != bundle.signing_certificate:
        raise VerificationError("intoto log entry certificate does not match the bundle's signing certificate")
    if logged.payload_type != signed.payload_type:
        raise VerificationError("intoto log entry payload type does not match the bundle's envelope")
    payload_hash = spec.content.payload_hash
    if payload_hash is None or payload_hash.algorithm.value != "sha256":
        raise VerificationError("intoto log entry lacks a sha256 payload hash")
    if payload_hash.value != hashlib.sha256(signed.payload).hexdigest():
        raise VerificationError("intoto log entry payload hash does not match the bundle's envelope")
    if logged.payload is not None:
        if _double_b64(logged.payload) != signed.payload:
            raise VerificationError("intoto log entry payload does not match the bundle's envelope")


__all__ = ["ConformantVerifier", "validate_intoto_v002_entry_body", "within_closed_range"]

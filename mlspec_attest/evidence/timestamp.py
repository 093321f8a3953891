"""RFC 3161 time-stamp tokens over DSSE signatures: time the signer cannot choose.

A key revoked ``after: T`` may still have made honest signatures before T, but the
time an attestation states (``run.finishedOn``) is written by whoever holds the key,
thief included. A token from a time-stamping authority the policy names binds the
signature bytes to the TSA's clock (its ``genTime``); only that, not the signer's
word, can show the signature existed before T. Tokens are verified with
``rfc3161-client`` (Trail of Bits): PKI status, the CMS signature and chain at
genTime up to the roots the policy names, the pinned TSA certificate, the critical
timeStamping EKU and the message imprint.

Tokens live beside the attestations, named by the signature they cover:
``bundle/timestamps/<sha256 of the raw signature bytes>.tsr`` (DER TimeStampResp).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlspec_attest.model.canonical import sha256_hex

TIMESTAMPS = "timestamps"
MAX_TOKEN_BYTES = 64 * 1024


def token_name(signature: bytes) -> str:
    """Where the token over ``signature`` is stored, relative to the bundle root."""
    return f"{TIMESTAMPS}/{sha256_hex(signature)}.tsr"


def timestamp_request(signature: bytes) -> bytes:
    """A DER TimeStampReq over the signature (sha256, nonce, asking for the TSA certificate)."""
    from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

    return bytes(TimestampRequestBuilder().data(signature).hash_algorithm(HashAlgorithm.SHA256)
                 .nonce(nonce=True).cert_request(cert_request=True).build().as_bytes())


def _load_cert(path: Path) -> Any:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())


def verified_time(token: bytes, signature: bytes, authorities: Sequence[Any]) -> tuple[datetime, str]:
    """The genTime a trusted TSA vouches for over ``signature``, and the TSA's name; ValueError otherwise."""
    from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

    if not authorities:
        raise ValueError("the policy names no timestamp_authorities")
    try:
        response = decode_timestamp_response(token)
    except Exception as exc:  # the parser's own errors: a malformed token is a refusal, not a crash
        raise ValueError(f"not an RFC 3161 TimeStampResp: {exc}") from None
    problems = []
    for tsa in authorities:
        try:
            builder = VerifierBuilder(tsa_certificate=_load_cert(tsa.certificate),
                                      roots=[_load_cert(p) for p in tsa.roots],
                                      intermediates=[_load_cert(p) for p in tsa.intermediates])
            builder.build().verify_message(response, signature)
        except (VerificationError, ValueError) as exc:
            problems.append(f"{tsa.name}: {exc}")
            continue
        gen_time = response.tst_info.gen_time
        if gen_time.tzinfo is None:
            gen_time = gen_time.replace(tzinfo=timezone.utc)
        return gen_time, tsa.name
    raise ValueError("; ".join(problems))


def fetch_token(attestation: Path, tsa_url: str, *, timeout: float = 30.0) -> list[Path]:
    """Ask ``tsa_url`` for a token over each signature of a DSSE attestation; store them atomically."""
    import urllib.error
    import urllib.request

    from rfc3161_client import decode_timestamp_response

    from mlspec_attest._internal.files import write_file
    from mlspec_attest._internal.loaders import read_bounded
    from mlspec_attest.errors import InputError
    from mlspec_attest.model.canonical import parse_json
    from mlspec_attest.model.envelope import Envelope

    if not tsa_url.startswith(("http://", "https://")):
        raise InputError(f"--tsa {tsa_url}: give an http:// or https:// URL")
    try:
        envelope = Envelope.from_dict(parse_json(read_bounded(attestation, what="attestation"),
                                                 source=str(attestation)))
    except ValueError as exc:
        raise InputError(f"{attestation}: not a DSSE envelope: {exc}") from None
    bundle_root = attestation.parent.parent
    written = []
    for signature in envelope.signatures:
        request = urllib.request.Request(tsa_url, data=timestamp_request(signature.sig), method="POST",
                                         headers={"Content-Type": "application/timestamp-query"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                token = response.read(MAX_TOKEN_BYTES + 1)
        except (urllib.error.URLError, OSError) as exc:
            raise InputError(f"--tsa {tsa_url}: no answer from the time-stamping authority: {exc}") from None
        try:
            imprint = decode_timestamp_response(token).tst_info.message_imprint.message
        except Exception as exc:  # a TSA error page, or a rejection without a token
            raise InputError(f"--tsa {tsa_url}: the answer is not a granted RFC 3161 token: {exc}") from None
        if len(token) > MAX_TOKEN_BYTES or imprint != hashlib.sha256(signature.sig).digest():
            raise InputError(f"--tsa {tsa_url}: the token does not cover this signature; not stored")
        # no-follow from the bundle root down: a planted timestamps/ symlink is refused, never written through
        target = write_file(bundle_root, token_name(signature.sig), token, replace=True, what="time-stamp token")
        written.append(target)
    return written

"""Per-inference log: JSON Lines records as leaves of an RFC 9162 Merkle tree,
sealed batch by batch by signed ``log``-stage attestations.

Files in a log directory (see docs/logging.md):

- ``log.json``      header: format, pipeline digest, origin, hash algorithm.
- ``records.jsonl`` one RFC 8785 canonical JSON record per line; the exact line
                    bytes (without the newline) are the Merkle leaf.
- ``leaves.bin``    the 32-byte leaf hashes in order: an unsigned cache used to
                    generate proofs and to locate tampering; always re-derivable.
- ``seals.jsonl``   one line per seal: tree size, root, consistency proof from the
                    previous seal, byte range, attestation payload digest.
- ``checkpoints/``  one C2SP tlog-checkpoint body per seal (the attested product).

This module is the log's public surface; the parts live beside it: ``records``
(schema and encoding), ``format`` (files, seals, signed heads), ``writer``
(InferenceLog), ``proofs`` (inclusion proofs) and ``verification`` (verify, in phases).
"""

from __future__ import annotations

from mlspec_attest.log.format import (
    CHECKPOINT_DIR,
    HASH_ALGORITHM,
    HEADER_FILE,
    LEAVES_FILE,
    LOG_FORMAT,
    PROOF_FORMAT,
    RECORDS_FILE,
    SEALS_FILE,
    Seal,
    SignedHead,
    checkpoint_body,
    is_sealed_log_metadata,
    iter_records,
)
from mlspec_attest.log.proofs import prove, verify_proof
from mlspec_attest.log.records import (
    FAST_ENCODER,
    InferenceRecord,
    digest_value,
    encode_json,
    encode_record,
    ncsa_time,
    normalize_record,
)
from mlspec_attest.log.verification import LogReport, verify
from mlspec_attest.log.writer import InferenceLog, SealFn

__all__ = [
    "CHECKPOINT_DIR", "FAST_ENCODER", "HASH_ALGORITHM", "HEADER_FILE", "LEAVES_FILE", "LOG_FORMAT", "PROOF_FORMAT",
    "RECORDS_FILE", "SEALS_FILE", "InferenceLog", "InferenceRecord", "LogReport", "Seal", "SealFn", "SignedHead",
    "checkpoint_body", "digest_value", "encode_json", "encode_record", "is_sealed_log_metadata", "iter_records",
    "ncsa_time", "normalize_record", "prove", "verify", "verify_proof",
]

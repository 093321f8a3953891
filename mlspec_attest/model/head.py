"""The signed chain head: the defence against truncation and rollback.

Whoever controls a bundle directory can delete its newest attestations (say a
monitor attestation that withdrew the model) or put back an older chain that was
complete and valid: every file in it is still genuinely signed. Signatures on the
attestations cannot tell; only a statement about the *whole* chain, made at a
known time and valid for a short while, can. That is TUF's timestamp role.

``mlspec attest head`` writes ``bundle/head.dsse.json``: an in-toto statement,
DSSE-signed like the attestations, over

    {genesis, sequence, payloadSha256 (of the newest attestation), issued, expires}

A policy with ``head: {signers: [...], required: true}`` makes the gate check
that the head is signed by those keys, unexpired, of this chain (genesis), and
names exactly the newest attestation: a shorter chain (truncation, or an older
chain) or a different newest attestation (fork) is refused, and so is a chain
that grew past the head without the head being re-signed. Re-sign the head
after every append and periodically (before it expires), as TUF re-signs its
timestamp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mlspec_attest.model.canonical import canonicalize, parse_json
from mlspec_attest.model.statement import STATEMENT_TYPE

HEAD_FILE = "head.dsse.json"
HEAD_PREDICATE_TYPE = "https://mlspec.org/attestation/head/v1"
HEAD_SUBJECT = "mlspec:chain-head"
MAX_HEAD_BYTES = 64 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


@dataclass(frozen=True)
class ChainHead:
    """The parsed, not yet trusted, content of a head statement."""

    genesis: str
    sequence: int
    payload_sha256: str
    issued: datetime
    expires: datetime


def _fmt(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value: Any, label: str) -> datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(f"{label} must be an RFC 3339 UTC time like 2030-01-31T00:00:00Z")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def head_statement(head: ChainHead) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": HEAD_SUBJECT, "digest": {"sha256": head.payload_sha256}}],
        "predicateType": HEAD_PREDICATE_TYPE,
        "predicate": {"genesis": head.genesis, "sequence": head.sequence, "payloadSha256": head.payload_sha256,
                      "issued": _fmt(head.issued), "expires": _fmt(head.expires)},
    }


def parse_head_payload(payload: bytes) -> ChainHead:
    """Parse a head statement; ValueError/InputError say what is wrong."""
    data = parse_json(payload, source="head payload")
    if canonicalize(data) != payload:
        raise ValueError("head payload is not in RFC 8785 canonical form")
    if not isinstance(data, dict) or data.get("_type") != STATEMENT_TYPE \
            or data.get("predicateType") != HEAD_PREDICATE_TYPE:
        raise ValueError(f"not a chain-head statement ({HEAD_PREDICATE_TYPE})")
    p = data.get("predicate")
    if not isinstance(p, dict) or set(p) != {"genesis", "sequence", "payloadSha256", "issued", "expires"}:
        raise ValueError("head predicate must hold exactly genesis, sequence, payloadSha256, issued, expires")
    seq = p["sequence"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError("head sequence must be a non-negative integer")
    for label in ("genesis", "payloadSha256"):
        if not isinstance(p[label], str) or not _HEX64.fullmatch(p[label]):
            raise ValueError(f"head {label} must be 64 lowercase hex digits")
    if data.get("subject") != [{"name": HEAD_SUBJECT, "digest": {"sha256": p["payloadSha256"]}}]:
        raise ValueError("head subject must be the newest attestation's payload digest")
    issued, expires = _time(p["issued"], "issued"), _time(p["expires"], "expires")
    if expires <= issued:
        raise ValueError("head expires before it was issued")
    return ChainHead(genesis=p["genesis"], sequence=seq, payload_sha256=p["payloadSha256"],
                     issued=issued, expires=expires)

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

import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .bundle import Bundle, write_atomically
from .canonical import canonicalize, parse_json
from .envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
from .errors import InputError
from .keys import Signer
from .loaders import read_bounded
from .statement import STATEMENT_TYPE

if TYPE_CHECKING:  # pragma: no cover
    from .policy import Policy
    from .report_model import Report

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


def sign_head(bundle_dir: str | os.PathLike[str], signers: Sequence[Signer], valid_for: timedelta,
              *, now: datetime | None = None) -> tuple[Path, ChainHead]:
    """Sign the bundle's current newest attestation as its head (under the append lock, atomically)."""
    if not signers:
        raise InputError("signing the chain head needs at least one --key")
    if valid_for <= timedelta(0):
        raise InputError("--expires must be a positive duration, e.g. 24h")
    bundle = Bundle(bundle_dir)
    bundle.require_exists()
    issued = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    with bundle.locked():
        newest = bundle.head()
        if newest is None:
            raise InputError(f"{bundle.root}: the bundle holds no attestation; there is no head to sign")
        head = ChainHead(genesis=newest.genesis, sequence=newest.sequence, payload_sha256=newest.payload_sha256,
                         issued=issued, expires=issued + valid_for)
        envelope = Envelope(payload_type=IN_TOTO_PAYLOAD_TYPE, payload=canonicalize(head_statement(head)))
        for signer in signers:
            envelope.sign(signer)
        target = bundle.root / HEAD_FILE
        write_atomically(target, envelope.to_json(), replace=True)
    return target, head


def check_head(policy: "Policy", bundle: Bundle, chain: Sequence[Any], report: "Report", now: datetime) -> None:
    """Findings for a missing, forged, expired, stale or mismatching chain head (no-op without ``head:``)."""
    rule = policy.head
    if rule is None:
        return
    path = bundle.root / HEAD_FILE
    if not os.path.lexists(path):
        if rule.required:
            report.add("HEAD_MISSING", f"the policy requires a signed chain head and the bundle has no {HEAD_FILE}",
                       hint="sign one with 'mlspec attest head --bundle B --key K' after the last append")
        return
    try:
        data = read_bounded(path, MAX_HEAD_BYTES, "chain head")
        envelope = Envelope.from_dict(parse_json(data, source=HEAD_FILE))
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE or data != envelope.to_json():
            raise ValueError("not the envelope form mlspec writes")
    except (InputError, ValueError) as exc:
        report.add("HEAD_INVALID", f"{HEAD_FILE}: unreadable chain head: {exc}", file=HEAD_FILE)
        return
    verified, lies = envelope.check_signatures([policy.keys[n] for n in rule.signers])
    if lies or len(verified) < rule.threshold:
        report.add("HEAD_SIGNATURE_INVALID", f"{HEAD_FILE}: {len(verified)} valid signature(s) by the head signers "
                   f"({', '.join(rule.signers)}), policy needs {rule.threshold}"
                   + (f" ({lies[0]})" if lies else ""), file=HEAD_FILE)
        return
    try:
        head = parse_head_payload(envelope.payload)
    except (InputError, ValueError) as exc:
        report.add("HEAD_INVALID", f"{HEAD_FILE}: {exc}", file=HEAD_FILE)
        return
    if now >= head.expires:
        report.add("HEAD_EXPIRED", f"the signed chain head expired at {_fmt(head.expires)}; an expired head cannot "
                   "prove the chain is current (an older chain may be replayed)", file=HEAD_FILE,
                   hint="re-sign it with 'mlspec attest head' (do so on a schedule, before it expires)")
    if rule.max_validity is not None and head.expires - head.issued > rule.max_validity:
        report.add("HEAD_INVALID", f"the chain head is valid for {head.expires - head.issued}, longer than the "
                   f"policy's max_validity {rule.max_validity}", file=HEAD_FILE)
    if not chain:
        return
    genesis = chain[0].payload_sha256 if chain[0].sequence == 0 else None
    if genesis is not None and head.genesis != genesis:
        report.add("HEAD_MISMATCH", "the signed chain head belongs to another chain (its genesis differs)",
                   file=HEAD_FILE, sequence=head.sequence)
        return
    last = chain[-1]
    if head.sequence > last.sequence:
        report.add("CHAIN_ROLLBACK", f"the signed chain head names sequence {head.sequence} but the bundle ends at "
                   f"sequence {last.sequence}: newer attestations were removed, or an older chain is presented",
                   sequence=head.sequence, file=HEAD_FILE)
        return
    if head.sequence < last.sequence:
        report.add("HEAD_BEHIND", f"attestations after sequence {head.sequence} are not covered by the signed chain "
                   f"head (the bundle ends at {last.sequence})", sequence=last.sequence, file=HEAD_FILE,
                   hint="re-sign the head with 'mlspec attest head' after every append")
    at = next((e for e in chain if e.sequence == head.sequence), None)
    if at is None or at.payload_sha256 != head.payload_sha256:
        report.add("HEAD_MISMATCH", f"sequence {head.sequence} in the bundle is not the attestation the signed chain "
                   "head names (the chain was forked or replaced)", sequence=head.sequence, file=HEAD_FILE)

"""Revocation that cannot be undone by backdating.

A key revoked ``after: T`` is assumed stolen from T on. Whoever holds it can re-sign
the whole chain (a swapped model included) and write any ``finishedOn`` he likes, so
the time an attestation states never rescues a signature by that key. A signature
counts only when time the policy trusts proves it existed before T:

* an RFC 3161 token over the signature bytes, from a TSA the policy names under
  ``timestamp_authorities`` (``bundle/timestamps/<sha256(sig)>.tsr``), genTime < T;
* a signed chain head, by head signers none of which is revoked, issued before T,
  covering the attestation's sequence and naming the attestation this chain holds
  at the head's sequence (so a re-signed chain, whose payloads differ, is not covered).

Keyless (Sigstore) attestations need neither: their certificate is checked against
Rekor's integrated time by sigstore-python, a time the signer does not write.
Otherwise: KEY_REVOKED.
"""

from __future__ import annotations

from datetime import datetime

from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import parse_json
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope, pae
from mlspec_attest.model.head import HEAD_FILE, MAX_HEAD_BYTES, ChainHead, _fmt, parse_head_payload
from mlspec_attest.verify.context import Entry, VerifyContext


def check_revocations(ctx: VerifyContext) -> None:
    """Keep a revoked key's signature only with trusted proof of its time; else KEY_REVOKED."""
    pending = [e for e in ctx.chain if e.pending_revocations]
    if not pending:
        return
    head = _trusted_head(ctx)
    for entry in pending:
        for keyid in sorted({k for k, _ in entry.pending_revocations}):
            revocation = ctx.policy.revocation_of(keyid)  # every entry counts: the earliest after wins
            assert revocation is not None  # pending only when the key is revoked
            signatures = [sig for k, sig in entry.pending_revocations if k == keyid]
            proof = _timestamp_proof(ctx, entry, keyid, signatures, revocation.after) \
                or _head_proof(ctx, entry, head, revocation.after)
            if proof:
                continue
            name = ctx.policy.key_name(keyid)
            ctx.report.add("KEY_REVOKED", f"sequence {entry.sequence} ({entry.stage}): signed by revoked key "
                           f"{name} ({revocation.reason or 'revoked'}) and nothing the policy trusts proves the "
                           f"signature was made before {_fmt(revocation.after)}; the time the attestation "
                           "states does not count", stage=entry.stage, sequence=entry.sequence,
                           file=entry.file.path.name,
                           hint="timestamp signatures with a TSA the policy names (timestamp_authorities), or "
                                "re-attest with a new key")
            if name in entry.signers:
                entry.signers.remove(name)
            rule = ctx.policy.stages.get(entry.stage)
            if rule is None or len(entry.signers) < rule.threshold:
                entry.authentic = False


def _timestamp_proof(ctx: VerifyContext, entry: Entry, keyid: str, signatures: list[bytes],
                     after: datetime) -> bool:
    if not ctx.policy.timestamp_authorities:
        return False
    from mlspec_attest.evidence.timestamp import MAX_TOKEN_BYTES, token_name, verified_time  # lazy: rfc3161-client

    key = next((k for k in ctx.policy.keys.values() if k.keyid == keyid), None)
    message = pae(IN_TOTO_PAYLOAD_TYPE, entry.payload)
    for sig in signatures:
        if key is None or not key.verify(sig, message):
            continue
        try:
            if not ctx.bundle.exists(token_name(sig)):
                continue
            # no-follow, bounded, non-blocking: a planted symlink or FIFO is refused, never followed
            token = ctx.bundle.read(token_name(sig), limit=MAX_TOKEN_BYTES, what="timestamp token")
            gen_time, tsa = verified_time(token, sig, ctx.policy.timestamp_authorities)
        except (InputError, ValueError) as exc:
            ctx.report.add("TIMESTAMP_INVALID", f"{token_name(sig)}: the time-stamp token for "
                           f"sequence {entry.sequence} ({entry.stage}) is not trusted: {exc}",
                           stage=entry.stage, sequence=entry.sequence, file=str(token_name(sig)))
            continue
        if gen_time < after:
            return True
    return False


def _trusted_head(ctx: VerifyContext) -> ChainHead | None:
    """The bundle's chain head when its signatures satisfy head.signers with no revoked key; else None."""
    rule = ctx.policy.head
    if rule is None:
        return None
    revoked = {r.keyid for r in ctx.policy.revoked}
    keys = [ctx.policy.keys[n] for n in rule.signers if ctx.policy.keys[n].keyid not in revoked]
    try:
        if not ctx.bundle.exists(HEAD_FILE):
            return None
        data = ctx.bundle.read(HEAD_FILE, limit=MAX_HEAD_BYTES, what="chain head")
        envelope = Envelope.from_dict(parse_json(data, source=HEAD_FILE))
        verified, lies = envelope.check_signatures(keys)
        if lies or len(verified) < rule.threshold or envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            return None
        return parse_head_payload(envelope.payload)
    except (InputError, ValueError):
        return None


def _head_proof(ctx: VerifyContext, entry: Entry, head: ChainHead | None, after: datetime) -> bool:
    if head is None or head.issued >= after or head.sequence < entry.sequence:
        return False
    at = next((e for e in ctx.chain if e.sequence == head.sequence), None)
    return at is not None and at.payload_sha256 == head.payload_sha256


def check_signed_now(ctx: VerifyContext, entry: Entry) -> None:
    """A signature being made now by a revoked key that no trusted time can ever vouch for: KEY_REVOKED.

    The gate's rule (check_revocations) seen from the signer's side (``mlspec attest``): the
    signature does not exist yet, so when ``after`` is past no time-stamp or head issued
    before it can cover it. A key revoked from a time still ahead may sign only if the
    policy trusts some time that can prove it: a TSA (``timestamp_authorities``; then
    ``mlspec attest timestamp`` before ``after``) or a head signer that is not revoked.
    """
    revoked = {r.keyid for r in ctx.policy.revoked}
    head_can_prove = ctx.policy.head is not None and any(
        ctx.policy.keys[n].keyid not in revoked for n in ctx.policy.head.signers)
    for keyid in sorted({k for k, _ in entry.pending_revocations}):
        revocation = ctx.policy.revocation_of(keyid)
        if revocation is None:
            continue
        if revocation.after <= ctx.now:
            why = f"is revoked since {_fmt(revocation.after)}; a signature made now never counts"
        elif not (ctx.policy.timestamp_authorities or head_can_prove):
            why = (f"is revoked from {_fmt(revocation.after)} and the policy trusts no time that could prove this "
                   "signature older (no timestamp_authorities, no unrevoked head signer)")
        else:
            continue
        ctx.report.add("KEY_REVOKED", f"sequence {entry.sequence} ({entry.stage}): key {ctx.policy.key_name(keyid)} "
                       f"{why} ({revocation.reason or 'revoked'})", stage=entry.stage, sequence=entry.sequence,
                       file=entry.file.path.name, hint="sign with the key that replaced it ('mlspec keys rotate')")

"""Sign the chain head: the bundle's newest attestation, valid for a short while (see model/head.py)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mlspec_attest.bundle import Bundle, Head
from mlspec_attest.errors import InputError, VerificationError
from mlspec_attest.keys import PublicKey, Signer
from mlspec_attest.model.canonical import canonicalize
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
from mlspec_attest.model.head import ChainHead, head_statement
from mlspec_attest.store import open_bundle

DEFAULT_HEAD_VALIDITY = timedelta(hours=24)
"""How long a head signed on append stays valid: the window in which an older chain could be replayed."""


@dataclass(frozen=True)
class HeadSigning:
    """Keys and validity with which the attestor re-signs the chain head after every append.

    Why on every append: a head that lags behind the chain is refused (HEAD_BEHIND), and
    only a current head makes deleting the newest attestations detectable (CHAIN_ROLLBACK).
    """

    signers: tuple[Signer, ...]
    valid_for: timedelta = DEFAULT_HEAD_VALIDITY
    # Whose existing head the writer also believes (the policy's head signers), and whose never
    # (keys the policy revokes as of now, the writer's own included): see check_not_behind_head.
    also_trust: tuple[PublicKey, ...] = ()
    distrust: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.signers:
            raise InputError("signing the chain head needs at least one key")
        if self.valid_for <= timedelta(0):
            raise InputError("the head's validity must be a positive duration, e.g. 24h")


class HeadAhead(VerificationError):
    """The chain is behind its own signed head: attestations were removed or replaced (exit 1)."""


def trusted_head_keys(signers: Iterable[Signer], also_trust: Iterable[PublicKey] = (),
                      distrust: Iterable[str] = ()) -> tuple[PublicKey, ...]:
    """The keys whose head a writer believes: its own head keys and ``also_trust``, minus ``distrust`` (keyids)."""
    keys = {s.public.keyid: s.public for s in signers}
    keys.update((k.keyid, k) for k in also_trust)
    never = set(distrust)
    return tuple(k for keyid, k in sorted(keys.items()) if keyid not in never)


def check_not_behind_head(bundle: Bundle, tip: Head | None, *, trusted: Sequence[PublicKey] | None,
                          initial: bool = False) -> None:
    """Refuse to extend or re-sign a chain that its own signed head says is longer (or different).

    Who this stops: someone who can delete files in the bundle (or bucket) removes the
    newest attestations (a monitor reading that withdrew the model) and waits for the next
    honest append or the scheduled ``mlspec attest head`` to sign a fresh head over the
    shorter chain, which would launder the truncation into a chain that passes. A chain
    with attestations but no head is refused too (deleting the head is the other half of
    the same attack) unless ``initial``: a deliberate first head, after 'mlspec verify'.

    Two questions, in this order. Does any readable head say the chain was longer or other?
    Then refuse, whoever signed it and even with ``initial``: such a head can only cause a
    refusal, which deleting files could cause anyway. Does the head vouch for this tip? Only
    when a ``trusted`` key signed it and it has not expired (reviews: an unsigned head naming
    the shortened tip, and an old head put back after the tail was deleted, made the next
    writer sign over the truncation); otherwise it counts as no head. ``trusted=None`` is for
    a writer that signs no head: it can then never launder anything, as the gate still judges
    the head. What this cannot see is an older head that a trusted key signed, still valid,
    put back naming the shortened tip exactly: an older valid state, which the gate accepts
    too until that head expires (docs/security.md, "Rollback within a head's validity").
    """
    from mlspec_attest.model.canonical import parse_json
    from mlspec_attest.model.head import HEAD_FILE, MAX_HEAD_BYTES, parse_head_payload

    where = f"{bundle.label}/{HEAD_FILE}"
    restore = "restore the missing attestations (from a copy or the store's versions)"
    fix = (f"{restore}; if the chain really is complete, check it with 'mlspec verify {bundle.label}' and sign "
           "its head with 'mlspec attest head --initial'")
    if tip is None:
        if bundle.exists(HEAD_FILE) and not initial:
            raise HeadAhead(f"{where}: the bundle has a chain head but no attestation: every attestation was "
                            f"removed; {restore}, or remove {HEAD_FILE} too to start a new chain")
        return
    if not bundle.exists(HEAD_FILE):
        if initial:
            return
        raise HeadAhead(f"{where}: the chain holds {tip.sequence + 1} attestation(s) but no signed head; refusing "
                        "to sign one over it (removing the head with the newest attestations is how a truncation "
                        f"would be laundered). If this chain never had a head, check it with 'mlspec verify "
                        f"{bundle.label}' and sign its first with 'mlspec attest head --initial'")
    try:
        doc = parse_json(bundle.read(HEAD_FILE, limit=MAX_HEAD_BYTES, what="chain head"), source=HEAD_FILE)
        envelope = Envelope.from_dict(doc)
        signed = parse_head_payload(envelope.payload)
    except (InputError, ValueError, TypeError) as exc:
        if initial:
            return
        raise HeadAhead(f"{where}: the chain head is unreadable ({exc}); refusing to sign over it: {fix}") from None
    # Evidence first: a readable head saying the chain was longer, or other, can only ever cause a
    # refusal, whoever signed it, and --initial does not override it (review: a head key rotated,
    # the tail deleted, then '--initial' signed over the shortened chain). Remove the file to start over.
    if signed.genesis != tip.genesis:
        raise HeadAhead(f"{where}: the head belongs to another chain (genesis {signed.genesis[:16]}..., "
                        f"this chain's is {tip.genesis[:16]}...): {fix}")
    if signed.sequence > tip.sequence:
        raise HeadAhead(f"{where}: the head names sequence {signed.sequence} but the newest attestation is "
                        f"{tip.sequence}: attestations were removed (the gate reports CHAIN_ROLLBACK); {fix}")
    if signed.sequence == tip.sequence and signed.payload_sha256 != tip.payload_sha256:
        raise HeadAhead(f"{where}: the head names another attestation at sequence {tip.sequence} than the "
                        f"one in the bundle: the newest attestation was replaced (HEAD_MISMATCH); {fix}")
    if trusted is None:
        return
    # Then belief: a head naming this tip (or an earlier one) vouches that nothing newer was removed
    # only if a trusted key signed it and it is still valid; an older head put back after deleting
    # what came later is exactly such a head, so its validity bounds that replay (docs/security.md).
    verified, _problems = envelope.check_signatures(trusted)
    if not verified:
        if initial:
            return
        names = ", ".join(k.keyid[:16] for k in trusted) or "none given"
        raise HeadAhead(f"{where}: the chain head is signed by no key this writer trusts (its head keys and the "
                        f"policy's unrevoked head signers, keyids {names}); a head nobody trusted signed proves "
                        f"nothing about what was removed: {fix}")
    if datetime.now(timezone.utc) >= signed.expires:
        if initial:
            return
        raise HeadAhead(f"{where}: the chain head expired at {signed.expires:%Y-%m-%dT%H:%M:%SZ}; an expired head "
                        "cannot show that nothing newer was removed (an older head may have been put back): "
                        f"{fix}")


MAX_TIP_REREADS = 64
"""How often a writer on a shared store re-reads a tip that other writers moved past while it read the head."""


def tip_not_behind_head(bundle: Bundle, *, trusted: Sequence[PublicKey] | None,
                        initial: bool = False) -> Head | None:
    """The chain's newest attestation, refused (HeadAhead) if the trusted signed head says the chain is longer.

    On a shared store the tip and the head are two reads: another writer can append and
    re-sign the head in between, so a head ahead of a tip that has since moved is a race,
    and the tip is read again. It continues only while the chain grows (a later sequence
    each time), at most MAX_TIP_REREADS times; a tip that stays put, shrinks or vanishes
    under a head ahead of it is the truncation this refuses.
    """
    tip = bundle.head()
    for _ in range(MAX_TIP_REREADS):
        try:
            check_not_behind_head(bundle, tip, trusted=trusted, initial=initial)
            return tip
        except HeadAhead:
            if not bundle.is_remote:
                raise
            fresh = bundle.head()
            if fresh is None or tip is None or fresh.sequence <= tip.sequence:
                raise
            tip = fresh
    check_not_behind_head(bundle, tip, trusted=trusted, initial=initial)
    return tip


def sign_head(bundle_dir: str | os.PathLike[str], signers: Sequence[Signer], valid_for: timedelta,
              *, now: datetime | None = None, initial: bool = False,
              also_trust: Sequence[PublicKey] = (), distrust: Iterable[str] = ()) -> tuple[Path | str, ChainHead]:
    """Sign the bundle's current newest attestation as its head (under the append lock, atomically).

    Refuses (HeadAhead) a chain that is behind its existing head, believing a head only when
    ``signers`` or ``also_trust`` (the policy's head signers) signed it, and none of ``distrust``
    (keyids the policy revokes); ``initial`` allows a chain with no readable, trusted or valid head
    to get its first one, never one over a head that names a later attestation.
    """
    if not signers:
        raise InputError("signing the chain head needs at least one --key")
    if valid_for <= timedelta(0):
        raise InputError("--expires must be a positive duration, e.g. 24h")
    bundle = open_bundle(bundle_dir)
    bundle.require_exists()
    with bundle.locked(create=False):
        tip = tip_not_behind_head(bundle, trusted=trusted_head_keys(signers, also_trust, distrust), initial=initial)
        return sign_head_locked(bundle, HeadSigning(tuple(signers), valid_for), now=now, at_least=tip)


def sign_head_locked(bundle: Bundle, signing: HeadSigning, *, now: datetime | None = None,
                     at_least: Head | None = None) -> tuple[Path | str, ChainHead]:
    """The head for the newest attestation; the caller holds the append lock (on S3: a conditional write).

    ``at_least``: the tip the caller checked (or just wrote). The newest attestation is read
    again (on S3 another writer may have appended since: its head is the right one), but a
    tip *behind* that one, or another attestation in its place, means files were removed in
    between: refused (HeadAhead), never signed over (review: deleting in that gap).
    """
    issued = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    newest = bundle.head()
    if newest is None and at_least is None:
        raise InputError(f"{bundle.label}: the bundle holds no attestation; there is no head to sign")
    if at_least is not None and (newest is None or newest.sequence < at_least.sequence or (
            newest.sequence == at_least.sequence and newest.payload_sha256 != at_least.payload_sha256)):
        raise HeadAhead(f"{bundle.label}: the newest attestation changed while its head was being signed "
                        f"(expected sequence {at_least.sequence} or later, found "
                        f"{'none' if newest is None else newest.sequence}): files were removed or replaced; "
                        "nothing was signed")
    assert newest is not None
    head = ChainHead(genesis=newest.genesis, sequence=newest.sequence, payload_sha256=newest.payload_sha256,
                     issued=issued, expires=issued + signing.valid_for)
    envelope = Envelope(payload_type=IN_TOTO_PAYLOAD_TYPE, payload=canonicalize(head_statement(head)))
    for signer in signing.signers:
        envelope.sign(signer)
    target = bundle.write_head(envelope.to_json(), head.sequence)
    return target, head

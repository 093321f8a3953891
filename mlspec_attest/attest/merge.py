"""Merging co-signatures from another copy of a bundle: add signatures, never change anything else.

Two co-signers who each sign their own copy (``mlspec attest cosign``) end up with two
bundles that differ only in signature lists. ``merge_cosignatures`` brings the other
copy's signatures into this bundle, so a policy threshold (k of n signers) can be met.

What it refuses, for the whole merge, before writing anything:

* an envelope whose payloadType or payload bytes differ from this bundle's (that would be
  a different statement, not a co-signature), an envelope with fields DSSE does not have,
  or a signature listed twice;
* an attestation file only the other copy has (a merge never adds statements; this
  bundle may have more: the other copy can be an older prefix of it);
* a Sigstore bundle file that is not byte-identical (it holds one signature: nothing to merge);
* a new signature that no trusted key verifies, that a revoked key made, or whose keyid
  hint is not its key's keyid (the gate would refuse those);
* more than ``MAX_SIGNATURES`` signatures on one envelope.

The chain head (head.dsse.json) is left alone: it binds the newest attestation's payload
digest, and payloads never change here, so the head stays valid and keeps its rollback
protection. Each changed file is replaced atomically under the bundle's append lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from mlspec_attest._internal import files as safe
from mlspec_attest._internal.loaders import MAX_INPUT_BYTES
from mlspec_attest.bundle import ATTESTATIONS, TEMP_PREFIX, Bundle, check_totals
from mlspec_attest.errors import InputError
from mlspec_attest.keys import PublicKey
from mlspec_attest.model.canonical import parse_json
from mlspec_attest.model.envelope import MAX_SIGNATURES, Envelope, Signature, pae


@dataclass
class MergedFile:
    """What the merge adds to one attestation file."""

    name: str
    added: list[str] = field(default_factory=list)  # keyids of the signatures added
    already: list[str] = field(default_factory=list)  # keyids that already had a signature here


def _names(bundle: Bundle) -> list[str]:
    bundle.require_exists()
    names = sorted(n for n in safe.list_names(bundle.root, ATTESTATIONS)
                   if not (n.startswith(TEMP_PREFIX) or n.startswith(".")))
    check_totals(bundle.root, names)
    return names


def _read(bundle: Bundle, name: str) -> bytes:
    return safe.read_file(f"{ATTESTATIONS}/{name}", root=bundle.root, limit=MAX_INPUT_BYTES, what="attestation")


def _envelope(data: bytes, where: str) -> Envelope:
    """A strictly parsed DSSE envelope: unknown fields, lenient base64 and repeated signatures refused."""
    try:
        doc = parse_json(data, source=where)
        envelope = Envelope.from_dict(doc)
    except (InputError, ValueError) as exc:
        raise InputError(f"{where}: not a DSSE envelope mlspec can merge: {exc}; nothing was merged") from None
    if len(doc["signatures"]) != len(envelope.signatures):
        raise InputError(f"{where}: the same signature is listed twice; nothing was merged")
    return envelope


def _signer_of(signature: Signature, message: bytes, trusted: list[PublicKey]) -> PublicKey | None:
    return next((k for k in trusted if k.verify(signature.sig, message)), None)


def plan_merge(bundle: Bundle, other: Bundle, trusted: Iterable[PublicKey],
               revoked: Iterable[str] = ()) -> list[tuple[MergedFile, Envelope | None]]:
    """Check everything and return, per attestation file, what to add (the envelope to write, or None)."""
    keys = list(trusted)
    if not keys:
        raise InputError("no trusted keys to check the other copy's signatures against (pass --policy); "
                         "nothing was merged")
    revoked_ids = set(revoked)
    mine, theirs = _names(bundle), _names(other)
    extra = sorted(set(theirs) - set(mine))
    if extra:
        raise InputError(f"{other.root}: {ATTESTATIONS}/{extra[0]} is not in {bundle.root}: a merge only adds "
                         "signatures, never statements; nothing was merged")
    plan: list[tuple[MergedFile, Envelope | None]] = []
    for name in theirs:
        where = f"{other.root / ATTESTATIONS / name}"
        local_data, other_data = _read(bundle, name), _read(other, name)
        if not name.endswith(".dsse.json"):
            if local_data != other_data:
                raise InputError(f"{where}: differs from {bundle.root / ATTESTATIONS / name} and is not a DSSE "
                                 "envelope (a Sigstore bundle holds one signature): nothing to merge; nothing "
                                 "was merged")
            plan.append((MergedFile(name), None))
            continue
        local = _envelope(local_data, str(bundle.root / ATTESTATIONS / name))
        incoming = _envelope(other_data, where)
        if incoming.payload_type != local.payload_type:
            raise InputError(f"{where}: payloadType {incoming.payload_type!r:.80} differs from this bundle's; "
                             "nothing was merged")
        if incoming.payload != local.payload:
            raise InputError(f"{where}: the signed payload differs from this bundle's: that is another statement, "
                             "not a co-signature; nothing was merged")
        message = pae(local.payload_type, local.payload)
        have = {k.keyid for s in local.signatures if (k := _signer_of(s, message, keys)) is not None}
        entry, merged = MergedFile(name), Envelope(local.payload_type, local.payload, list(local.signatures))
        for index, signature in enumerate(incoming.signatures):
            if signature in local.signatures:
                continue
            key = _signer_of(signature, message, keys)
            if key is None:
                raise InputError(f"{where}: signature {index} (keyid {signature.keyid[:16] or '(none)'}) verifies "
                                 "under no key of the policy; only signatures by known keys are merged; nothing "
                                 "was merged")
            if key.keyid in revoked_ids:
                raise InputError(f"{where}: signature {index} is by revoked key {key.keyid[:16]}; nothing was merged")
            if signature.keyid != key.keyid:
                raise InputError(f"{where}: signature {index} names keyid {signature.keyid[:16] or '(none)'} but was "
                                 f"made by {key.keyid[:16]} (the gate refuses such a hint); nothing was merged")
            if key.keyid in have:
                entry.already.append(key.keyid)  # a second signature by one key counts once: not added
                continue
            have.add(key.keyid)
            merged.signatures.append(signature)
            entry.added.append(key.keyid)
        if len(merged.signatures) > MAX_SIGNATURES:
            raise InputError(f"{where}: the merge would give {len(merged.signatures)} signatures, more than "
                             f"{MAX_SIGNATURES}; nothing was merged")
        plan.append((entry, merged if entry.added else None))
    return plan


def merge_cosignatures(bundle_dir: str | os.PathLike[str], other_dir: str | os.PathLike[str],
                       trusted: Iterable[PublicKey], revoked: Iterable[str] = ()) -> list[MergedFile]:
    """Add the other copy's verified co-signatures to this bundle (under its lock); refuse any other difference."""
    bundle, other = Bundle(bundle_dir), Bundle(other_dir)
    if os.path.realpath(bundle.root) == os.path.realpath(other.root):
        raise InputError(f"{other.root}: is the bundle itself; name the other copy")
    with bundle.locked(create=False):
        plan = plan_merge(bundle, other, trusted, revoked)  # every check before the first write
        for entry, envelope in plan:
            if envelope is not None:
                safe.write_file(bundle.root, f"{ATTESTATIONS}/{entry.name}", envelope.to_json(), replace=True,
                                what="attestation")
    return [entry for entry, _ in plan]

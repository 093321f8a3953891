"""Sign the chain head: the bundle's newest attestation, valid for a short while (see model/head.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mlspec_attest.bundle import Bundle
from mlspec_attest.errors import InputError
from mlspec_attest.keys import Signer
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

    def __post_init__(self) -> None:
        if not self.signers:
            raise InputError("signing the chain head needs at least one key")
        if self.valid_for <= timedelta(0):
            raise InputError("the head's validity must be a positive duration, e.g. 24h")


def sign_head(bundle_dir: str | os.PathLike[str], signers: Sequence[Signer], valid_for: timedelta,
              *, now: datetime | None = None) -> tuple[Path | str, ChainHead]:
    """Sign the bundle's current newest attestation as its head (under the append lock, atomically)."""
    if not signers:
        raise InputError("signing the chain head needs at least one --key")
    if valid_for <= timedelta(0):
        raise InputError("--expires must be a positive duration, e.g. 24h")
    bundle = open_bundle(bundle_dir)
    bundle.require_exists()
    with bundle.locked():
        return sign_head_locked(bundle, HeadSigning(tuple(signers), valid_for), now=now)


def sign_head_locked(bundle: Bundle, signing: HeadSigning, *, now: datetime | None = None
                     ) -> tuple[Path | str, ChainHead]:
    """The head for the newest attestation; the caller holds the append lock (on S3: a conditional write)."""
    issued = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    newest = bundle.head()
    if newest is None:
        raise InputError(f"{bundle.label}: the bundle holds no attestation; there is no head to sign")
    head = ChainHead(genesis=newest.genesis, sequence=newest.sequence, payload_sha256=newest.payload_sha256,
                     issued=issued, expires=issued + signing.valid_for)
    envelope = Envelope(payload_type=IN_TOTO_PAYLOAD_TYPE, payload=canonicalize(head_statement(head)))
    for signer in signing.signers:
        envelope.sign(signer)
    target = bundle.write_head(envelope.to_json(), head.sequence)
    return target, head

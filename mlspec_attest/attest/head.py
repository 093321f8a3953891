"""Sign the chain head: the bundle's newest attestation, valid for a short while (see model/head.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mlspec_attest._internal import files as safe
from mlspec_attest.bundle import Bundle
from mlspec_attest.errors import InputError
from mlspec_attest.keys import Signer
from mlspec_attest.model.canonical import canonicalize
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
from mlspec_attest.model.head import HEAD_FILE, ChainHead, head_statement


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
        target = safe.write_file(bundle.root, HEAD_FILE, envelope.to_json(), replace=True, what="chain head")
    return target, head

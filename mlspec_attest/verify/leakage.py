"""The leakage proof: the training and hold-back sets share no row (from split's row fingerprints).

Who could walk around it: split's runner handing over a hold-back set that is a shuffled
copy of training rows (a different file, so whole-file digests differ) and attesting no
fingerprints at all. The proof is therefore required (policy ``leakage.required``, on by
default): a split without train and hold-back fingerprints is a finding, an empty set
proves nothing, and every pair of attested sets (train, validation, hold-back) is compared.

Cost at 14 million rows: each blob is streamed once (sha256 and decode together, one
block in memory), the sets are held as uint64 arrays (8 bytes a row) and each pair is
compared by binary search of the smaller set in the larger (leakage.overlap).
"""

from __future__ import annotations

import os
from itertools import combinations
from typing import Any

from mlspec_attest._internal.files import MAX_FILE_BYTES, open_stream
from mlspec_attest.errors import InputError
from mlspec_attest.verify.context import VerifyContext, digest_of, role_of


def _read_blob(ctx: VerifyContext, subject: dict[str, Any], where: str) -> Any:
    """Decode a fingerprint blob and check it is the one split signed."""
    from mlspec_attest.leakage import MAGIC, read_fingerprints

    # No-follow below the bundle, non-blocking, regular files only: a FIFO, device or
    # symlink planted at blobs/ is a finding, not a hang. A v2 blob is streamed (its row
    # count is capped); a v1 blob is read whole, so it keeps the 64 MiB bound.
    name = f"blobs/{digest_of(subject)}"
    with open_stream(name, root=ctx.bundle.root, what="fingerprint blob") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_FILE_BYTES and os.pread(fh.fileno(), len(MAGIC), 0) != MAGIC:
            raise ValueError(f"{ctx.bundle.root / name}: fingerprint blob is {size} bytes, over the "
                             f"{MAX_FILE_BYTES}-byte limit for v1 blobs; refusing to read it")
        values, sha256 = read_fingerprints(fh, where, v1_limit=MAX_FILE_BYTES)
    if sha256 != digest_of(subject):
        raise ValueError("differs from the digest split signed")
    return values


def check_leakage(ctx: VerifyContext) -> None:
    """Prove the split's sets pairwise disjoint from its row fingerprints; their absence is a finding."""
    chain, report = ctx.chain, ctx.report
    from mlspec_attest.leakage import HOLDBACK_ROLE, TRAIN_ROLE, is_fingerprint_role, overlap

    split = next((e for e in reversed(chain) if e.stage == "split"), None)
    if split is None:
        return
    sets: dict[str, Any] = {}
    for s in split.statement.subjects:
        role = role_of(s)
        if not is_fingerprint_role(role):
            continue
        assert role is not None
        try:
            if role in sets:
                raise ValueError(f"a second fingerprint file for {role}")
            values = _read_blob(ctx, s, s.get("name", role))
            if not values.size:
                raise ValueError("holds no rows; an empty set proves nothing")
            sets[role] = values
        except (OSError, ValueError, InputError) as exc:
            report.add("LEAKAGE_EVIDENCE_INVALID", f"sequence {split.sequence} (split): fingerprints "
                       f"{s.get('name')}: {exc}", sequence=split.sequence, stage="split")
    absent = [r for r in (TRAIN_ROLE, HOLDBACK_ROLE) if r not in sets]
    if absent and ctx.policy.leakage_required:
        report.add("LEAKAGE_EVIDENCE_MISSING", f"sequence {split.sequence} (split): no usable row fingerprints "
                   f"for {', '.join(absent)}; the gate cannot prove the hold-back set shares no rows with "
                   "training", sequence=split.sequence, stage="split",
                   hint="attest split with --fingerprints train=TRAIN.csv --fingerprints holdback=HOLDBACK.csv")
    for (role_a, a), (role_b, b) in combinations(sorted(sets.items()), 2):
        shared = overlap(a, b)
        if shared:
            report.add("LEAKAGE", f"sequence {split.sequence} (split): {shared} row(s) of "
                       f"{role_b.removeprefix('fingerprints-')} also appear in "
                       f"{role_a.removeprefix('fingerprints-')} (of {len(b)} rows)",
                       sequence=split.sequence, stage="split",
                       hint="re-split so the sets share no rows")

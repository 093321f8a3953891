"""The leakage proof: the training and hold-back sets share no row (from split's row fingerprints).

Who could walk around it: split's runner handing over a hold-back set that is a shuffled
copy of training rows (a different file, so whole-file digests differ) and attesting no
fingerprints at all. The proof is therefore required (policy ``leakage.required``, on by
default): a split without train and hold-back fingerprints is a finding, an empty set
proves nothing, and every pair of attested sets (train, validation, hold-back) is compared.

Cost at 14 million rows: each blob is streamed once (sha256 and decode together, one
block in memory); all sets but the largest are held as uint64 arrays (8 bytes a row),
the largest is compared block by block, each pair by binary search (leakage.overlap).
A blob whose bytes turn out not to be the signed ones counts for nothing.
"""

from __future__ import annotations

import io
import os
from itertools import combinations
from typing import Any

from mlspec_attest._internal.files import MAX_FILE_BYTES, open_stream
from mlspec_attest.errors import InputError
from mlspec_attest.verify.context import VerifyContext, digest_of, role_of

# A v2 blob is about 5.4 bytes a row: 14 million rows is 75 MB. On an object store it is read
# whole (one bounded GET), so its bound is larger than the 64 MiB a local v1 file may be.
REMOTE_BLOB_LIMIT = 8 * MAX_FILE_BYTES


def _open_blob(ctx: VerifyContext, subject: dict[str, Any], where: str) -> Any:
    """An open FingerprintStream of a blob (the caller checks its sha256 once it has read it all)."""
    from mlspec_attest.leakage import MAGIC, FingerprintStream

    # No-follow below the bundle, non-blocking, regular files only: a FIFO, device or
    # symlink planted at blobs/ is a finding, not a hang. A v2 blob is streamed (its row
    # count is capped); a v1 blob is read whole, so it keeps the 64 MiB bound.
    name = f"blobs/{digest_of(subject)}"
    if ctx.bundle.is_remote:
        # An object store: one bounded GET (its size was checked against the cap in the listing).
        data = ctx.bundle.read(name, limit=REMOTE_BLOB_LIMIT, what="fingerprint blob")
        if len(data) > MAX_FILE_BYTES and not data.startswith(MAGIC):
            raise ValueError(f"{ctx.bundle.label}/{name}: a v1 fingerprint blob over {MAX_FILE_BYTES} bytes; "
                             "refusing it")
        stream = FingerprintStream(data, where, v1_limit=MAX_FILE_BYTES)
        if not stream.count:
            raise ValueError("holds no rows; an empty set proves nothing")
        stream.file = io.BytesIO()  # nothing to close but the same shape as a local blob's stream
        return stream
    fh = open_stream(name, root=ctx.bundle.root, what="fingerprint blob")
    try:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_FILE_BYTES and os.pread(fh.fileno(), len(MAGIC), 0) != MAGIC:
            raise ValueError(f"{ctx.bundle.root / name}: fingerprint blob is {size} bytes, over the "
                             f"{MAX_FILE_BYTES}-byte limit for v1 blobs; refusing to read it")
        stream = FingerprintStream(fh, where, v1_limit=MAX_FILE_BYTES)
        if not stream.count:
            raise ValueError("holds no rows; an empty set proves nothing")
    except BaseException:
        fh.close()
        raise
    stream.file = fh
    return stream


def _signed(stream: Any, subject: dict[str, Any]) -> None:
    stream.file.close()
    if stream.sha256 != digest_of(subject):
        raise ValueError("differs from the digest split signed")


def check_leakage(ctx: VerifyContext) -> None:
    """Prove the split's sets pairwise disjoint from its row fingerprints; their absence is a finding.

    The largest set is streamed block by block against the others (held as arrays), so
    memory is the smaller sets plus one block: ~50 MB for a 14M-row 60/20/20 split.
    """
    chain, report = ctx.chain, ctx.report
    from mlspec_attest.leakage import HOLDBACK_ROLE, TRAIN_ROLE, is_fingerprint_role, overlap

    split = next((e for e in reversed(chain) if e.stage == "split"), None)
    if split is None:
        return

    def invalid(s: dict[str, Any], exc: Exception) -> None:
        report.add("LEAKAGE_EVIDENCE_INVALID", f"sequence {split.sequence} (split): fingerprints "
                   f"{s.get('name')}: {exc}", sequence=split.sequence, stage="split")

    opened: dict[str, tuple[dict[str, Any], Any]] = {}
    for s in split.statement.subjects:
        role = role_of(s)
        if not is_fingerprint_role(role):
            continue
        assert role is not None
        try:
            if role in opened:
                raise ValueError(f"a second fingerprint file for {role}")
            opened[role] = (s, _open_blob(ctx, s, s.get("name", role)))
        except (OSError, ValueError, InputError) as exc:
            invalid(s, exc)
    sets: dict[str, Any] = {}
    largest = max(opened, key=lambda r: opened[r][1].count, default=None)
    for role, (s, stream) in sorted(opened.items()):
        if role == largest:
            continue
        try:
            sets[role] = stream.values()
            _signed(stream, s)
        except (OSError, ValueError, InputError) as exc:
            sets.pop(role, None)
            stream.file.close()
            invalid(s, exc)
    shared_with_largest: dict[str, int] = {}
    if largest is not None:
        s, stream = opened[largest]
        try:
            counts = dict.fromkeys(sets, 0)
            for block in stream.blocks():
                for role in sets:
                    counts[role] += overlap(sets[role], block)
            _signed(stream, s)
            shared_with_largest = counts
            sets[largest] = stream  # present (its values were checked, not kept)
        except (OSError, ValueError, InputError) as exc:
            stream.file.close()
            invalid(s, exc)
    absent = [r for r in (TRAIN_ROLE, HOLDBACK_ROLE) if r not in sets]
    if absent and ctx.policy.leakage_required:
        report.add("LEAKAGE_EVIDENCE_MISSING", f"sequence {split.sequence} (split): no usable row fingerprints "
                   f"for {', '.join(absent)}; the gate cannot prove the hold-back set shares no rows with "
                   "training", sequence=split.sequence, stage="split",
                   hint="attest split with --fingerprints train=TRAIN.csv --fingerprints holdback=HOLDBACK.csv")
    for role_a, role_b in combinations(sorted(sets), 2):
        if largest in (role_a, role_b):
            other = role_b if role_a == largest else role_a
            shared = shared_with_largest.get(other, 0)
        else:
            shared = overlap(sets[role_a], sets[role_b])
        if shared:
            size_b = sets[role_b].count if role_b == largest else len(sets[role_b])
            report.add("LEAKAGE", f"sequence {split.sequence} (split): {shared} row(s) of "
                       f"{role_b.removeprefix('fingerprints-')} also appear in "
                       f"{role_a.removeprefix('fingerprints-')} (of {size_b} rows)",
                       sequence=split.sequence, stage="split",
                       hint="re-split so the sets share no rows")

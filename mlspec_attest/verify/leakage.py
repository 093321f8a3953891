"""The leakage proof: the training and hold-back sets share no row (from split's row fingerprints).

Who could walk around it: split's runner handing over a hold-back set that is a shuffled
copy of training rows (a different file, so whole-file digests differ) and attesting no
fingerprints at all. The proof is therefore required (policy ``leakage.required``, on by
default): a split without train and hold-back fingerprints is a finding, an empty set
proves nothing, and every pair of attested sets (train, validation, hold-back) is compared.

Also walked around before (review): a second data set of a role with no fingerprints
of its own, v1 and v2 sets compared (unrelated hashes), and a bundle holder's crafted
blob decoded before its digest was known (a zlib bomb, a plane that is not zlib). Now
every split data set needs exactly one bound set, one version per split, and each
blob's sha256 is checked before it is decoded (one hash for a swapped blob).

Cost at 14 million rows: each blob is hashed, then streamed once (decode and a second
sha256 together, one block in memory); all sets but the largest are held as uint64
arrays (8 bytes a row), the largest is compared block by block, each pair by binary
search (leakage.overlap). A blob whose bytes are not the signed ones counts for nothing.
"""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from itertools import combinations
from typing import Any

from mlspec_attest._internal.files import MAX_FILE_BYTES, open_stream
from mlspec_attest.errors import InputError
from mlspec_attest.verify.context import VerifyContext, digest_of, role_of

# A v2 blob is about 5.4 bytes a row: 14 million rows is 75 MB. On an object store it is read
# whole (one bounded GET), so its bound is larger than the 64 MiB a local v1 file may be.
REMOTE_BLOB_LIMIT = 8 * MAX_FILE_BYTES
# What a blob that is not a valid fingerprint set may raise while read or decoded: each is a finding.
_BAD_BLOB = (OSError, ValueError, InputError, zlib.error, MemoryError, OverflowError)


def _sha256_of(fh: Any) -> str:
    """The sha256 of an open file from its start (1 MiB reads: memory stays flat)."""
    sha = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        sha.update(chunk)
    return sha.hexdigest()


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
        if hashlib.sha256(data).hexdigest() != digest_of(subject):
            raise ValueError("differs from the digest split signed")  # before any decoding: one hash
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
        if size > REMOTE_BLOB_LIMIT:
            raise ValueError(f"{ctx.bundle.root / name}: fingerprint blob is {size} bytes, over the "
                             f"{REMOTE_BLOB_LIMIT}-byte limit; refusing to read it")
        # The bytes must be those split signed BEFORE any decoding: a swapped blob (a zlib bomb, a
        # one-value-a-block file) costs one hash, and only a blob split's signer wrote is decoded.
        if _sha256_of(fh) != digest_of(subject):
            raise ValueError("differs from the digest split signed")
        fh.seek(0)
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

    Every data set split attests (train, validation, hold-back, test roles) must have
    exactly one fingerprint set bound to it (``fingerprints-of-sha256`` = its digest), all
    sets must be of one blob version (v1 and v2 hash rows differently: comparing them
    proves nothing), and every pair is compared. The largest set is streamed block by
    block against the others (held as arrays): ~50 MB for a 14M-row 60/20/20 split.
    """
    chain, report = ctx.chain, ctx.report
    from mlspec_attest.leakage import HOLDBACK_ROLE, SMALL_SET, TRAIN_ROLE, as_array, is_fingerprint_role, overlap
    from mlspec_attest.verify.lineage import FINGERPRINTS_OF_SHA256, SPLIT_SET_ROLES

    split = next((e for e in reversed(chain) if e.stage == "split"), None)
    if split is None:
        return

    def invalid(s: dict[str, Any], exc: Exception | str) -> None:
        report.add("LEAKAGE_EVIDENCE_INVALID", f"sequence {split.sequence} (split): fingerprints "
                   f"{s.get('name')}: {exc}", sequence=split.sequence, stage="split")

    subjects = split.statement.subjects
    data = {digest_of(s): s for s in subjects if role_of(s) in SPLIT_SET_ROLES}
    bound: dict[Any, list[int]] = {}  # data digest -> indexes of the fingerprint subjects naming it
    labels: dict[int, str] = {}
    roles: dict[int, str] = {}
    for i, s in enumerate(subjects):
        role = role_of(s)
        if is_fingerprint_role(role):
            assert role is not None
            roles[i] = role
            of = (s.get("annotations") or {}).get(FINGERPRINTS_OF_SHA256)
            bound.setdefault(of, []).append(i)
    for i, role in roles.items():
        label = role.removeprefix("fingerprints-")
        labels[i] = label if list(roles.values()).count(role) == 1 else f"{label} ({subjects[i].get('name')})"
    opened: dict[int, tuple[dict[str, Any], Any]] = {}
    for i in roles:
        s = subjects[i]
        of = (s.get("annotations") or {}).get(FINGERPRINTS_OF_SHA256)
        try:
            # Two different sets claiming one file: which is its? Neither counts. (The same blob twice,
            # as when two set roles name one file, is one set: SPLIT_SETS_NOT_DISTINCT speaks for that.)
            if of in data and len({digest_of(subjects[j]) for j in bound[of]}) > 1:
                raise ValueError(f"one of {len(bound[of])} different fingerprint files bound to "
                                 f"{data[of].get('name')}; each data set has exactly one")
            opened[i] = (s, _open_blob(ctx, s, s.get("name", roles[i])))
        except _BAD_BLOB as exc:
            invalid(s, exc)
    versions = {i: stream.version for i, (_, stream) in opened.items()}
    if len(set(versions.values())) > 1:
        # v1 is a sha256 prefix, v2 XXH3-64: the same row has unrelated values, so no overlap is ever seen.
        mix = ", ".join(f"{labels[i]} v{v}" for i, v in sorted(versions.items()))
        report.add("LEAKAGE_EVIDENCE_INVALID", f"sequence {split.sequence} (split): fingerprint sets of mixed "
                   f"formats ({mix}); rows hashed differently cannot be compared", sequence=split.sequence,
                   stage="split", hint="fingerprint every set with one mlspec version (v2)")
        for _, stream in opened.values():
            stream.file.close()
        opened = {}
    sets: dict[int, Any] = {}
    largest = max(opened, key=lambda r: opened[r][1].count, default=None)
    for i, (s, stream) in sorted(opened.items()):
        if i == largest:
            continue
        try:
            sets[i] = stream.values()
            _signed(stream, s)
        except _BAD_BLOB as exc:
            sets.pop(i, None)
            stream.file.close()
            invalid(s, exc)
    shared_with_largest: dict[int, int] = {}
    if largest is not None:
        s, stream = opened[largest]
        if stream.count > SMALL_SET:  # its blocks are numpy arrays: hold the small sets as arrays too, once
            sets = {i: as_array(values) for i, values in sets.items()}
        try:
            counts = dict.fromkeys(sets, 0)
            for block in stream.blocks():
                for i in sets:
                    counts[i] += overlap(sets[i], block)
            _signed(stream, s)
            shared_with_largest = counts
            sets[largest] = stream  # present (its values were checked, not kept)
        except _BAD_BLOB as exc:
            stream.file.close()
            invalid(s, exc)
    if ctx.policy.leakage_required:
        present = {roles[i] for i in sets}
        absent = [r for r in (TRAIN_ROLE, HOLDBACK_ROLE) if r not in present]
        if absent:
            report.add("LEAKAGE_EVIDENCE_MISSING", f"sequence {split.sequence} (split): no usable row fingerprints "
                       f"for {', '.join(absent)}; the gate cannot prove the hold-back set shares no rows with "
                       "training", sequence=split.sequence, stage="split",
                       hint="attest split with --fingerprints train=TRAIN.csv --fingerprints holdback=HOLDBACK.csv")
        usable = {(subjects[i].get("annotations") or {}).get(FINGERPRINTS_OF_SHA256) for i in sets}
        for d, s in data.items():
            if d not in usable and d not in bound:
                # A set nobody fingerprinted (a second train file, a validation copy of training rows).
                report.add("LEAKAGE_EVIDENCE_MISSING", f"sequence {split.sequence} (split): data set "
                           f"{s.get('name')} ({role_of(s)}) has no row fingerprints bound to it "
                           f"({FINGERPRINTS_OF_SHA256}); the gate cannot prove it shares no rows with the other "
                           "sets", sequence=split.sequence, stage="split",
                           hint="attest split with --fingerprints SET=PATH for every data set it produces")
    for a, b in combinations(sorted(sets, key=lambda i: (roles[i], i)), 2):
        if largest in (a, b):
            shared = shared_with_largest.get(b if a == largest else a, 0)
        else:
            shared = overlap(sets[a], sets[b])
        if shared:
            size_b = sets[b].count if b == largest else len(sets[b])
            report.add("LEAKAGE", f"sequence {split.sequence} (split): {shared} row(s) of "
                       f"{labels[b]} also appear in {labels[a]} (of {size_b} rows)",
                       sequence=split.sequence, stage="split",
                       hint="re-split so the sets share no rows")

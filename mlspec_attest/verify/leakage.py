"""The leakage proof: the training and hold-back sets share no row (from split's row fingerprints).

Who could walk around it: split's runner handing over a hold-back set that is a shuffled
copy of training rows (a different file, so whole-file digests differ) and attesting no
fingerprints at all. The proof is therefore required (policy ``leakage.required``, on by
default): a split without train and hold-back fingerprints is a finding, an empty set
proves nothing, and every pair of attested sets (train, validation, hold-back) is compared.
"""

from __future__ import annotations

from itertools import combinations

from mlspec_attest._internal.files import MAX_FILE_BYTES
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import sha256_hex
from mlspec_attest.verify.context import VerifyContext, digest_of, role_of


def check_leakage(ctx: VerifyContext) -> None:
    """Prove the split's sets pairwise disjoint from its row fingerprints; their absence is a finding."""
    chain, report, bundle = ctx.chain, ctx.report, ctx.bundle
    from mlspec_attest.leakage import HOLDBACK_ROLE, TRAIN_ROLE, is_fingerprint_role, overlap, parse_fingerprints

    split = next((e for e in reversed(chain) if e.stage == "split"), None)
    if split is None:
        return
    sets: dict[str, list[int]] = {}
    for s in split.statement.subjects:
        role = role_of(s)
        if not is_fingerprint_role(role):
            continue
        assert role is not None
        try:
            # No-follow below the bundle, non-blocking, regular files only, bounded: a FIFO,
            # device, symlink or huge sparse file planted at blobs/ is a finding, not a hang.
            data = bundle.read(f"blobs/{digest_of(s)}", limit=MAX_FILE_BYTES, what="fingerprint blob")
            if sha256_hex(data) != digest_of(s):
                raise ValueError("differs from the digest split signed")
            values = parse_fingerprints(data, s.get("name", role))
            if not values:
                raise ValueError("holds no rows; an empty set proves nothing")
            if role in sets:
                raise ValueError(f"a second fingerprint file for {role}")
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

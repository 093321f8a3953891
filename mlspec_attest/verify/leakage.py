"""The leakage proof: the training and hold-back sets share no row (from split's row fingerprints)."""

from __future__ import annotations

from mlspec_attest._internal.files import read_file
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import sha256_hex
from mlspec_attest.verify.context import VerifyContext, digest_of, role_of


def check_leakage(ctx: VerifyContext) -> None:
    """Prove train and hold-back sets disjoint when split attested row fingerprints."""
    chain, report, bundle = ctx.chain, ctx.report, ctx.bundle
    from mlspec_attest.leakage import HOLDBACK_ROLE, TRAIN_ROLE, overlap, parse_fingerprints

    split = next((e for e in reversed(chain) if e.stage == "split"), None)
    if split is None:
        return
    sets: dict[str, list[int]] = {}
    for s in split.statement.subjects:
        role = role_of(s)
        if role not in (TRAIN_ROLE, HOLDBACK_ROLE):
            continue
        try:
            # No-follow below the bundle, non-blocking, regular files only, bounded: a FIFO,
            # device, symlink or huge sparse file planted at blobs/ is a finding, not a hang.
            data = read_file(f"blobs/{digest_of(s)}", root=bundle.root, what="fingerprint blob")
            if sha256_hex(data) != digest_of(s):
                raise ValueError("differs from the digest split signed")
            sets[role] = parse_fingerprints(data, s.get("name", role))
        except (OSError, ValueError, InputError) as exc:
            report.add("LEAKAGE_EVIDENCE_INVALID", f"sequence {split.sequence} (split): fingerprints "
                       f"{s.get('name')}: {exc}", sequence=split.sequence, stage="split")
    if TRAIN_ROLE in sets and HOLDBACK_ROLE in sets:
        shared = overlap(sets[TRAIN_ROLE], sets[HOLDBACK_ROLE])
        if shared:
            report.add("LEAKAGE", f"sequence {split.sequence} (split): {shared} row(s) of the hold-back set "
                       f"also appear in the training set (of {len(sets[HOLDBACK_ROLE])} hold-back rows)",
                       sequence=split.sequence, stage="split",
                       hint="re-split so the hold-back set shares no rows with training")

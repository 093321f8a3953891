"""External evidence (Sigstore bundles in ``evidence/``) that the policy requires per stage."""

from __future__ import annotations

from pathlib import Path

from mlspec_attest._internal.files import MAX_FILE_BYTES
from mlspec_attest.bundle import Bundle
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import sha256_hex
from mlspec_attest.policy import EvidenceRule, Policy
from mlspec_attest.verify.context import Entry, VerifyContext, digest_of, role_of


def check_evidence(ctx: VerifyContext) -> None:
    """Attached evidence files match their signed digests and satisfy the policy's evidence rules."""
    policy, chain, report, bundle = ctx.policy, ctx.chain, ctx.report, ctx.bundle
    for e in chain:
        rule = policy.stages.get(e.stage)
        present: list[tuple[Path, bytes]] = []  # the bytes digest-checked here are the bytes verified below
        for rd in e.statement.evidence:
            path = Path(rd["name"]) if bundle.is_remote else bundle.root / rd["name"]
            data, problem = _read_evidence(bundle, rd["name"])
            if problem is not None:
                report.add("EVIDENCE_INVALID", f"sequence {e.sequence} ({e.stage}): evidence {rd['name']}: {problem}",
                           sequence=e.sequence, stage=e.stage)
            elif data is None:
                report.add("EVIDENCE_MISSING", f"sequence {e.sequence} ({e.stage}): evidence file "
                           f"{rd['name']} is missing from the bundle", sequence=e.sequence, stage=e.stage)
            elif sha256_hex(data) != digest_of(rd):
                report.add("EVIDENCE_TAMPERED", f"sequence {e.sequence} ({e.stage}): evidence file "
                           f"{rd['name']} differs from the digest the stage signed", sequence=e.sequence,
                           stage=e.stage)
            else:
                present.append((path, data))
        for ev_rule in (rule.evidence if rule else ()):
            label = ev_rule.name
            reasons = [_evidence_attempt(policy, ev_rule, e, path, data) for path, data in present]
            if "" not in reasons:
                why = "; ".join(r for r in reasons if r) or "no evidence attached"
                report.add("EVIDENCE_UNSATISFIED", f"sequence {e.sequence} ({e.stage}): policy evidence rule "
                           f"{label} not met: {why}", sequence=e.sequence, stage=e.stage,
                           hint=f"attach it with 'mlspec attest stage {e.stage} --evidence FILE'")


def _read_evidence(bundle: Bundle | Path, name: str) -> tuple[bytes | None, str | None]:
    """(bytes, None), (None, None) when absent, or (None, why it is refused).

    Read no-follow below the bundle root, non-blocking, regular files only, bounded:
    a symlink, FIFO, device or huge file planted under evidence/ is a finding.
    """
    bundle = Bundle(bundle) if isinstance(bundle, Path) else bundle
    parts = Path(name).parts
    if len(parts) < 2 or parts[0] != "evidence" or ".." in parts:
        return None, "points outside evidence/"
    try:
        return bundle.read(name, limit=MAX_FILE_BYTES, what="evidence file"), None
    except InputError as exc:
        if str(exc).endswith(("evidence file not found", "directory not found")):
            return None, None
        return None, str(exc)


def _evidence_attempt(policy: Policy, ev_rule: EvidenceRule, e: Entry, path: Path, data: bytes) -> str:
    """Empty string when this evidence file satisfies the rule, else why not.

    ``data`` are the bytes already read no-follow and matched to the signed digest; the
    file is never read again by path (a swap or symlink after the check would change them).
    """
    from mlspec_attest.evidence.sigstore import EvidenceVerificationError, verify_evidence

    role = ev_rule.subject_role
    candidates = [digest_of(m) for m in e.statement.materials if role is None or role_of(m) == role]
    if not candidates:
        return f"the stage has no material{' with role ' + role if role else ''} for the evidence to cover"
    problems = []
    for digest in candidates:
        try:
            result = verify_evidence(path, data=data, trust_config=policy.trust_config, digest=f"sha256:{digest}",
                                   identities=list(ev_rule.identities) or None, key=ev_rule.key)
        except (EvidenceVerificationError, InputError) as exc:
            problems.append(str(exc))
            continue
        wanted = ev_rule.predicate_type
        if wanted and result.predicate_type != wanted:
            problems.append(f"predicate type {result.predicate_type} is not {wanted}")
            continue
        return ""
    return f"{path.name}: {problems[-1] if problems else 'not verified'}"

"""Time rules: policy expiry, attestation age and chain freshness."""

from __future__ import annotations

from mlspec_attest.verify.context import VerifyContext, time_or_none


def check_time(ctx: VerifyContext) -> None:
    """Policy expiry, max_age per attestation, freshness of the newest one."""
    p, chain, report = ctx.policy, ctx.chain, ctx.report
    if p.expires is not None and ctx.now > p.expires:
        report.add("POLICY_EXPIRED", f"policy {p.source} expired at {p.expires.isoformat()}",
                   hint="have the policy owner review and re-issue it")
    for e in chain:
        when = time_or_none(e.time)
        if p.max_age is not None and (when is None or ctx.now - when > p.max_age):
            report.add("ATTESTATION_TOO_OLD", f"sequence {e.sequence} ({e.stage}) is older than the "
                       f"policy's max_age (or states no valid time)", sequence=e.sequence, stage=e.stage)
    if p.freshness is not None and chain:
        newest = time_or_none(chain[-1].time)
        if newest is None or ctx.now - newest > p.freshness:
            report.add("CHAIN_STALE", f"the newest attestation (sequence {chain[-1].sequence}, "
                       f"{chain[-1].stage}) is older than the policy's freshness bound; the bundle may have "
                       "been truncated", sequence=chain[-1].sequence, stage=chain[-1].stage)

"""Time rules: policy expiry, attestation age and chain freshness."""

from __future__ import annotations

from typing import Any

from mlspec_attest.verify.context import VerifyContext, time_or_none

RUN_TIMES = ("startedOn", "finishedOn")


def check_time(ctx: VerifyContext) -> None:
    """Policy expiry, max_age per attestation, freshness of the newest one."""
    p, chain, report = ctx.policy, ctx.chain, ctx.report
    if p.expires is not None and ctx.now > p.expires:
        report.add("POLICY_EXPIRED", f"policy {p.source} expired at {p.expires.isoformat()}",
                   hint="have the policy owner review and re-issue it")
    for e in chain:
        _check_run_times(ctx, e)
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


def _check_run_times(ctx: VerifyContext, e: Any) -> None:
    """run.startedOn/finishedOn: RFC 3339 strings (finishedOn required), not later than now + clock_skew.

    A non-string or missing time used to be skipped silently, which switched off every
    rule that reads it (max_age, freshness, regression); now it is TIME_INVALID. A time
    in the future is what a backdating signer's mirror image looks like (a chain made to
    look fresh for longer); beyond the policy's clock_skew it is TIME_IN_FUTURE.
    """
    limit = ctx.now + ctx.policy.clock_skew
    for label in RUN_TIMES:
        value = e.statement.run.get(label)
        if value is None and label == "startedOn":
            continue
        if not isinstance(value, str):
            ctx.report.add("TIME_INVALID", f"sequence {e.sequence} ({e.stage}): run.{label} is "
                           f"{'missing' if value is None else type(value).__name__ + ', not an RFC 3339 string'}",
                           sequence=e.sequence, stage=e.stage, file=e.file.path.name)
            continue
        when = time_or_none(value)
        if when is None:
            if label == "startedOn":  # finishedOn strings are checked with the chain (chain.py)
                ctx.report.add("TIME_INVALID", f"sequence {e.sequence} ({e.stage}): run.startedOn "
                               f"{value[:40]!r} is not an RFC 3339 time", sequence=e.sequence, stage=e.stage,
                               file=e.file.path.name)
            continue
        if when > limit:
            ctx.report.add("TIME_IN_FUTURE", f"sequence {e.sequence} ({e.stage}): run.{label} {value} is later "
                           f"than now plus the policy's clock_skew ({ctx.policy.clock_skew})",
                           sequence=e.sequence, stage=e.stage, file=e.file.path.name,
                           hint="check the signer's clock; raise clock_skew only if clocks really drift that far")

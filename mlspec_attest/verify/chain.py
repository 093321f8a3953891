"""Chain integrity: one linear sequence from the genesis, every link intact, stages in lifecycle order."""

from __future__ import annotations

from datetime import timedelta

from mlspec_attest.bundle import attestation_file_name
from mlspec_attest.model.report import Report
from mlspec_attest.verify.context import Entry, VerifyContext, order_of, time_or_none


def regressed(previous: str | None, current: str | None, skew: timedelta) -> bool:
    """True when ``current`` claims a time more than ``skew`` before ``previous`` (both must parse).

    Two hosts' clocks differ by seconds; the policy's ``clock_skew`` (default 5m) is the
    documented tolerance, the same one ``mlspec attest`` checks before it signs.
    """
    a, b = time_or_none(previous), time_or_none(current)
    return a is not None and b is not None and a - b > skew


def build_chain(entries: list[Entry], report: Report, *, skew: timedelta = timedelta(0)) -> list[Entry]:
    """The chain in signed-sequence order (never file order), with forks, gaps and broken links reported.

    ``skew``: how far an attestation's time may lie before its predecessor's (the policy's clock_skew).
    """
    by_seq: dict[int, list[Entry]] = {}
    for e in entries:
        by_seq.setdefault(e.sequence, []).append(e)
    for seq, group in sorted(by_seq.items()):
        if len(group) > 1:
            files = ", ".join(e.file.path.name for e in group)
            report.add("CHAIN_FORK", f"sequence {seq} appears {len(group)} times ({files})", sequence=seq,
                       stage=group[0].stage)
    chain = [sorted(by_seq[s], key=lambda e: e.file.path.name)[0] for s in sorted(by_seq)]
    if not chain:
        report.add("CHAIN_EMPTY", "the bundle holds no readable attestation")
        return chain
    if chain[0].sequence != 0:
        report.add("CHAIN_NO_GENESIS", "no attestation with sequence 0 (the genesis)", sequence=0)
    genesis = chain[0].payload_sha256 if chain[0].sequence == 0 else None
    expected = 0
    for i, e in enumerate(chain):
        if e.sequence != expected:
            missing = f"{expected}" if e.sequence == expected + 1 else f"{expected}..{e.sequence - 1}"
            report.add("CHAIN_GAP", f"sequence {missing} missing before sequence {e.sequence} ({e.stage})",
                       sequence=expected, stage=e.stage, hint="an attestation was removed from the bundle")
        expected = e.sequence + 1
        link = e.statement.chain
        if e.sequence > 0:
            if genesis is not None and link.genesis != genesis:
                report.add("CHAIN_GENESIS_MISMATCH", f"sequence {e.sequence} ({e.stage}) belongs to another "
                           "chain (its genesis differs)", sequence=e.sequence, stage=e.stage,
                           hint="an attestation from another pipeline run was spliced in")
            prev = chain[i - 1] if i > 0 and chain[i - 1].sequence == e.sequence - 1 else None
            if prev is not None and link.previous != prev.payload_sha256:
                report.add("CHAIN_LINK_BROKEN", f"sequence {e.sequence} ({e.stage}) does not follow sequence "
                           f"{prev.sequence}: its 'previous' digest differs", sequence=e.sequence, stage=e.stage)
        expected_name = attestation_file_name(e.sequence, e.stage, e.file.kind)
        if e.file.path.name != expected_name:
            report.add("FILE_NAME_MISMATCH", f"{e.file.path.name} holds sequence {e.sequence} ({e.stage}); "
                       f"expected file name {expected_name}", sequence=e.sequence, stage=e.stage,
                       file=e.file.path.name, hint="files were renamed or swapped; restore the bundle")
        if e.time is not None and time_or_none(e.time) is None:
            report.add("TIME_INVALID", f"sequence {e.sequence} ({e.stage}): run.finishedOn {e.time[:40]!r} is "
                       "not an RFC 3339 time", sequence=e.sequence, stage=e.stage, file=e.file.path.name)
        if i > 0 and regressed(chain[i - 1].time, e.time, skew):
            report.add("CHAIN_TIME_REGRESSION", f"sequence {e.sequence} ({e.stage}) claims a time "
                       f"({e.time}) before its predecessor's ({chain[i - 1].time}) by more than the "
                       f"clock skew allowed ({skew})", sequence=e.sequence, stage=e.stage,
                       hint="fix the signing host's clock (NTP); raise the policy's clock_skew only if "
                            "clocks really drift that far")
    return chain


def check_stage_order(ctx: VerifyContext) -> None:
    """Lifecycle order, repeats, required stages (those the phase requires) and the objectives as genesis."""
    policy, chain, report = ctx.policy, ctx.chain, ctx.report
    if ctx.phase.name not in policy.phases:
        report.add("PHASE_NOT_ALLOWED", f"the policy {policy.source} does not allow verifying under phase "
                   f"{ctx.phase.name!r} (phases: {', '.join(policy.phases)})",
                   hint=f"verify with --phase {policy.phases[-1]}, or have the policy owner add the phase")
    seen: dict[str, int] = {}
    last_order = 0
    for e in chain:
        order = e.statement.stage.order
        in_group = e.stage in policy.interleave
        if e.stage == "objectives" and e.sequence != 0:
            report.add("STAGE_ORDER", f"sequence {e.sequence}: objectives may only be the genesis "
                       "(sequence 0); criteria cannot change after the pipeline started",
                       sequence=e.sequence, stage=e.stage)
        elif order < last_order and not (in_group and order_of(policy.interleave) <= last_order):
            report.add("STAGE_ORDER", f"sequence {e.sequence}: stage {e.stage} comes after a later lifecycle "
                       "stage", sequence=e.sequence, stage=e.stage)
        last_order = max(last_order, order)
        seen[e.stage] = seen.get(e.stage, 0) + 1
        rule = policy.stages.get(e.stage)
        if rule and seen[e.stage] == 2 and not rule.repeat:
            report.add("STAGE_REPEATED", f"sequence {e.sequence}: stage {e.stage} appears more than once "
                       "and the policy does not allow it to repeat", sequence=e.sequence, stage=e.stage)
    for name, rule in policy.stages.items():
        if rule.required and name not in seen and ctx.phase.requires(name):
            report.add("STAGE_MISSING", f"required stage {name} is missing from the chain", stage=name,
                       hint=f"run 'mlspec attest stage {name} ...' in the pipeline")
    if policy.objectives_required and chain and chain[0].stage != "objectives":
        report.add("CHAIN_NO_OBJECTIVES", "the chain does not start with the objectives (sequence 0)",
                   sequence=0, stage="objectives")

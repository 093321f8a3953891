"""The objectives codified at genesis, and the policy's own per-stage CEL checks, evaluated over the chain."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import canonicalize, sha256_hex
from mlspec_attest.model.report import INFO, WARNING, ObjectiveLine
from mlspec_attest.verify.context import VerifyContext

if TYPE_CHECKING:
    from mlspec_attest.objectives.criteria import Objectives


def check_objectives(ctx: VerifyContext) -> None:
    """Evaluate the genesis objectives' criteria on the latest authentic metadata of each stage."""
    chain, report = ctx.chain, ctx.report
    if not chain or chain[0].stage != "objectives" or not chain[0].authentic:
        return
    from mlspec_attest.objectives.criteria import Objectives, evaluate, vacuity  # lazy: CEL

    try:
        objectives = Objectives.from_dict(chain[0].statement.metadata, source="objectives attestation")
    except InputError as exc:
        report.add("OBJECTIVES_INVALID", f"sequence 0 (objectives): {exc}", sequence=0, stage="objectives")
        return
    _check_pin(ctx, objectives)
    latest = {e.stage: e.statement.metadata for e in chain if e.authentic}
    # A phase defers only the criteria of later stages that have no attestation at all: a present
    # one (even a forged one, which fails on its signature anyway) is judged.
    present = {e.stage for e in chain}
    deferred = {c.name for c in objectives.criteria if not ctx.phase.requires(c.stage) and c.stage not in present}
    for crit in objectives.criteria:
        if crit.name in deferred:
            report.add("OBJECTIVE_DEFERRED", f"criterion {crit.name} ({crit.stage}: {crit.expression}) is not "
                       f"judged in phase {ctx.phase.name}: stage {crit.stage} has no attestation yet",
                       severity=INFO, stage=crit.stage,
                       hint="verify again with --phase full once the stage ran (docs/objectives.md)")
    for r in evaluate(objectives, latest):
        if r.name in deferred:
            continue
        report.objectives.append(ObjectiveLine(
            name=r.name, stage=r.stage, expression=r.expression, severity=r.severity, passed=r.passed,
            values=dict(r.values), message=r.message, description=getattr(r, "description", "")))
        if not r.passed:
            report.add("OBJECTIVE_FAILED" if r.severity == "block" else "OBJECTIVE_WARNING",
                       f"criterion {r.name} ({r.stage}: {r.expression}) failed: {r.message}",
                       severity="error" if r.severity == "block" else WARNING, stage=r.stage)
    for crit in objectives.criteria:
        try:
            why = vacuity(crit.compile())
        except InputError:
            continue  # already a failed criterion above
        if why:
            # Signed by the owner, but a constant criterion gates nothing: whatever it says, refuse it.
            report.add("OBJECTIVE_VACUOUS", f"criterion {crit.name} ({crit.stage}: {crit.expression}) {why}",
                       sequence=0, stage="objectives",
                       hint="write a criterion that compares an attested metric; 'mlspec objectives check' refuses these")


def _check_pin(ctx: VerifyContext, objectives: Objectives) -> None:
    """The chain must start from the objectives in force: the pinned project, a recent enough revision."""
    pin, report = ctx.policy.objectives, ctx.report
    if pin is None:
        return
    if objectives.project != pin.project:
        report.add("OBJECTIVES_PROJECT_MISMATCH", f"sequence 0 (objectives): the objectives are for project "
                   f"{objectives.project!r}, the policy pins {pin.project!r}", sequence=0, stage="objectives",
                   hint="start the chain from this project's objectives")
    if objectives.revision < pin.min_revision:
        report.add("OBJECTIVES_OUTDATED", f"sequence 0 (objectives): objectives revision {objectives.revision} is "
                   f"older than the policy's min_revision {pin.min_revision}; a retired objectives file cannot "
                   "start a new chain", sequence=0, stage="objectives",
                   hint="attest the current objectives file and re-run the pipeline")
    if pin.sha256:
        digest = sha256_hex(canonicalize(ctx.chain[0].statement.metadata))
        if digest not in pin.sha256:
            report.add("OBJECTIVES_DIGEST_MISMATCH", f"sequence 0 (objectives): objectives digest {digest} is not "
                       "one the policy pins (objectives.sha256)", sequence=0, stage="objectives",
                       hint="'mlspec objectives check FILE' prints the digest to pin")


def check_policy_weaknesses(ctx: VerifyContext) -> None:
    """A policy that weakens separation of duties says so on every verification."""
    for code, message in ctx.policy.weaknesses:
        ctx.report.add(code, message, severity=WARNING, stage="objectives")


def check_policy_checks(ctx: VerifyContext) -> None:
    """Each stage's policy CEL checks (compiled when the policy loaded) over its statement."""
    policy, chain, report = ctx.policy, ctx.chain, ctx.report
    if not any(rule.checks for rule in policy.stages.values()):
        return
    from celpy import celtypes

    from mlspec_attest.objectives.cel import evaluate_expression  # lazy: CEL

    for e in chain:
        rule = policy.stages.get(e.stage)
        for check in (rule.checks if rule else ()):
            outcome = evaluate_expression(check.program, {
                "subject": e.statement.subjects, "materials": e.statement.materials,
                "metadata": e.statement.metadata, "run": e.statement.run,
                "predicate": e.statement.raw.get("predicate", {})})
            ok = (outcome.error is None and not outcome.missing
                  and isinstance(outcome.value, celtypes.BoolType) and bool(outcome.value))
            if not ok:
                detail = outcome.error or (f"missing {', '.join(outcome.missing)}" if outcome.missing
                                           else f"result {outcome.value!r}")
                report.add("CHECK_FAILED", f"sequence {e.sequence} ({e.stage}): policy check {check.name} "
                           f"({check.expression}) failed: {detail}", sequence=e.sequence, stage=e.stage)

"""The objectives codified at genesis, and the policy's own per-stage CEL checks, evaluated over the chain."""

from __future__ import annotations

from mlspec_attest.errors import InputError
from mlspec_attest.model.report import WARNING, ObjectiveLine
from mlspec_attest.verify.context import VerifyContext


def check_objectives(ctx: VerifyContext) -> None:
    """Evaluate the genesis objectives' criteria on the latest authentic metadata of each stage."""
    chain, report = ctx.chain, ctx.report
    if not chain or chain[0].stage != "objectives" or not chain[0].authentic:
        return
    from mlspec_attest.objectives.criteria import Objectives, evaluate  # lazy: CEL

    try:
        objectives = Objectives.from_dict(chain[0].statement.metadata, source="objectives attestation")
    except InputError as exc:
        report.add("OBJECTIVES_INVALID", f"sequence 0 (objectives): {exc}", sequence=0, stage="objectives")
        return
    latest = {e.stage: e.statement.metadata for e in chain if e.authentic}
    for r in evaluate(objectives, latest):
        report.objectives.append(ObjectiveLine(
            name=r.name, stage=r.stage, expression=r.expression, severity=r.severity, passed=r.passed,
            values=dict(r.values), message=r.message, description=getattr(r, "description", "")))
        if not r.passed:
            report.add("OBJECTIVE_FAILED" if r.severity == "block" else "OBJECTIVE_WARNING",
                       f"criterion {r.name} ({r.stage}: {r.expression}) failed: {r.message}",
                       severity="error" if r.severity == "block" else WARNING, stage=r.stage)


def check_policy_checks(ctx: VerifyContext) -> None:
    policy, chain, report = ctx.policy, ctx.chain, ctx.report
    if not any(rule.checks for rule in policy.stages.values()):
        return
    from celpy import celtypes

    from mlspec_attest.objectives.cel import ExpressionError, compile_expression, evaluate_expression  # lazy: CEL

    variables = ("subject", "materials", "metadata", "run", "predicate")
    compiled = {}
    for rule in policy.stages.values():
        for check in rule.checks:
            try:
                compiled[check.expression] = compile_expression(check.expression, variables)
            except ExpressionError as exc:
                raise InputError(f"{policy.source}: stages.{rule.name} check {check.name}: "
                                 f"{exc.position()}: {exc.reason}; fix the expression") from None
    for e in chain:
        rule = policy.stages.get(e.stage)
        for check in (rule.checks if rule else ()):
            outcome = evaluate_expression(compiled[check.expression], {
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

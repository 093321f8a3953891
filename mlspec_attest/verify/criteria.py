"""The objectives codified at genesis, and the policy's own per-stage CEL checks, evaluated over the chain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    judged = {e.stage: e for e in chain if e.authentic}  # the attestation each criterion read
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
    for r in evaluate(objectives, latest, _previous_release(ctx, objectives)):
        if r.name in deferred:
            continue
        report.objectives.append(ObjectiveLine(
            name=r.name, stage=r.stage, expression=r.expression, severity=r.severity, passed=r.passed,
            values=dict(r.values), message=r.message, description=getattr(r, "description", "")))
        if not r.passed:
            read = judged.get(r.stage)
            report.add("OBJECTIVE_FAILED" if r.severity == "block" else "OBJECTIVE_WARNING",
                       f"criterion {r.name} ({r.stage}: {r.expression}) failed: {r.message}",
                       severity="error" if r.severity == "block" else WARNING, stage=r.stage,
                       sequence=read.sequence if read is not None else None,
                       file=read.file.path.name if read is not None and read.file is not None else None,
                       hint=_objective_hint(r.stage, read is not None))
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


def _objective_hint(stage: str, attested: bool) -> str:
    """What to do about a failed criterion: attest the stage it reads, or meet the objective."""
    if not attested:
        return (f"the chain holds no authentic {stage} attestation for this criterion to read; "
                f"attest the {stage} stage (signed by a key the policy allows)")
    return (f"the {stage} attestation named here does not meet the objective codified at sequence 0; "
            f"improve the model and attest {stage} again (the objectives cannot change once the chain started)")


def _previous_release(ctx: VerifyContext, objectives: Objectives) -> Any:
    """What ``previous.*`` reads: the verified predecessor's stages, or why there is none.

    Fail closed: without a verified predecessor a criterion that reads ``previous`` fails,
    unless the gate *established* a first release (a release history was given and holds
    no other release of this project) and the criterion says ``first_release: pass``. A
    runner cannot skip the comparison by leaving ``succeeds`` out: with a history that
    holds a release of the project, that is PREDECESSOR_UNDECLARED.
    """
    from mlspec_attest.objectives.criteria import PreviousRelease, reads_previous

    if ctx.predecessor is not None:
        return PreviousRelease(metadata=ctx.predecessor.metadata_by_stage())
    readers = []
    for crit in objectives.criteria:
        try:
            if reads_previous(crit.compile()):
                readers.append(crit)
        except InputError:
            continue
    if not readers:
        return PreviousRelease()
    if ctx.predecessor_declared:
        return PreviousRelease(reason="the declared predecessor release did not verify (see the PREDECESSOR_ "
                                      "finding)")
    if ctx.releases is None:
        return PreviousRelease(reason="the package declares no predecessor (succeeds) and no release history "
                                      "was given (--releases DIR) to show this is a first release")
    from mlspec_attest.releases import payload_digests, project_of, release_dirs

    # Every release of this project in the history counts, branches of this run included (they
    # share its genesis); only a copy of this very release (holding its package attestation) does not.
    packages = [e.payload_sha256 for e in ctx.chain if e.stage == "package" and e.authentic]
    own = packages[-1] if packages else None
    # A release being verified as this one's successor (its package on ctx.release_line) is later on
    # the line, never earlier: verifying v1 as v2's predecessor with v2 in the history is no UNDECLARED.
    later = ctx.release_line
    earlier = [d for d in release_dirs(ctx.releases)
               if project_of(d) == objectives.project
               and not (payload_digests(d) & (later | ({own} if own else set())))]
    if earlier:
        names = ", ".join(d.name for d in earlier[:3])
        ctx.report.add("PREDECESSOR_UNDECLARED", f"criteria {', '.join(c.name for c in readers)} compare with the "
                       f"previous release, but the package declares none while the release history holds "
                       f"releases of project {objectives.project!r} ({names})", stage="package",
                       hint="attest the package with --succeeds PREVIOUS_BUNDLE")
        return PreviousRelease(reason="the package declares no predecessor although earlier releases exist "
                                      "(PREDECESSOR_UNDECLARED)")
    return PreviousRelease(first_release=True, reason="this is a first release: the release history holds no "
                                                      f"earlier release of project {objectives.project!r}")


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

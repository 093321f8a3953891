"""The ML rules: what flowed from which stage to which (the model tested is the model packaged, test data is hold-back data)."""

from __future__ import annotations

from mlspec_attest.verify.context import HOLDBACK_ROLES, MODEL_ROLES, Entry, VerifyContext, digest_of, role_of


def check_artifact_flow(ctx: VerifyContext) -> None:
    """Materials come from earlier stages; evaluate/test/package use the trained model; test uses hold-back data."""
    policy, chain, report = ctx.policy, ctx.chain, ctx.report
    produced: set[str] = set()
    latest: dict[str, Entry] = {}
    for e in chain:
        if e.stage != "ingest":
            for m in e.statement.materials:
                role = role_of(m)
                if digest_of(m) not in produced and role not in policy.external_roles:
                    report.add("MATERIAL_UNKNOWN", f"sequence {e.sequence} ({e.stage}): material "
                               f"{m.get('name')} was not produced by an earlier stage nor declared by ingest",
                               sequence=e.sequence, stage=e.stage,
                               hint="attest it as a product of the stage that made it, or as an ingest material")
        for rd in e.statement.subjects + (e.statement.materials if e.stage == "ingest" else []):
            produced.add(digest_of(rd))
        latest[e.stage] = e

    train = latest.get("train")
    if train is not None:
        models = {digest_of(s) for s in train.statement.subjects if role_of(s) in MODEL_ROLES}
        models = models or {digest_of(s) for s in train.statement.subjects}
        for stage in ("evaluate", "test", "package"):
            e = latest.get(stage)
            if e is None:
                continue
            used = [m for m in e.statement.materials if role_of(m) in MODEL_ROLES]
            if not used:
                report.add("MODEL_NOT_DECLARED", f"sequence {e.sequence} ({stage}): no material with role "
                           "'model'; cannot prove which model it used", sequence=e.sequence, stage=stage,
                           hint=f"pass --material model=PATH to 'mlspec attest stage {stage}'")
            for m in used:
                if digest_of(m) not in models:
                    report.add("MODEL_MISMATCH", f"sequence {e.sequence} ({stage}): model {m.get('name')} "
                               f"(sha256 {digest_of(m)[:12]}…) is not the model trained at sequence "
                               f"{train.sequence}", sequence=e.sequence, stage=stage)
    split, test, evaluate = latest.get("split"), latest.get("test"), latest.get("evaluate")
    if test is not None:
        test_data = {digest_of(m) for m in test.statement.materials if role_of(m) in HOLDBACK_ROLES}
        if not test_data:
            report.add("TEST_DATA_NOT_DECLARED", f"sequence {test.sequence} (test): no material with role "
                       "'holdback-data'", sequence=test.sequence, stage="test",
                       hint="pass --material holdback-data=PATH")
        if split is not None and test_data:
            holdback = {digest_of(s) for s in split.statement.subjects if role_of(s) in HOLDBACK_ROLES}
            if not test_data <= holdback:
                report.add("TEST_DATA_NOT_HOLDBACK", f"sequence {test.sequence} (test): test data is not the "
                           f"hold-back set produced by split (sequence {split.sequence})",
                           sequence=test.sequence, stage="test")
        for other in (evaluate, train):
            if other is None:
                continue
            other_data = {digest_of(m) for m in other.statement.materials
                          if role_of(m) not in MODEL_ROLES and role_of(m) not in policy.external_roles}
            overlap = test_data & other_data
            if overlap:
                report.add("TEST_DATA_REUSED", f"sequence {test.sequence} (test): attested on the same data as "
                           f"{other.stage} (sequence {other.sequence}); the test must use its own hold-back "
                           "set", sequence=test.sequence, stage="test")


def check_rollback_target(ctx: VerifyContext) -> None:
    """A monitor's rollback target must be a package this chain attested earlier."""
    chain, report = ctx.chain, ctx.report
    packaged: set[str] = set()
    for e in chain:
        if e.stage == "package" and e.authentic:
            packaged.update(digest_of(s) for s in e.statement.subjects)
        target = e.statement.metadata.get("rollback_target") if e.stage == "monitor" else None
        if isinstance(target, dict):
            digest = (target.get("digest") or {}).get("sha256")
            if digest not in packaged:
                report.add("ROLLBACK_TARGET_UNKNOWN", f"sequence {e.sequence} (monitor): rollback target "
                           f"{target.get('name')} is not a package attested earlier in this chain",
                           sequence=e.sequence, stage="monitor",
                           hint="name the digest of an earlier package stage's subject")

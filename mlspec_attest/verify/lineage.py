"""The ML rules: what flowed from which stage to which (the model tested is the model packaged, test data is hold-back data)."""

from __future__ import annotations

from typing import Any

from mlspec_attest.digests import MANIFEST_ANNOTATION as _MANIFEST
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
            user = latest.get(stage)
            if user is None:
                continue
            used = [m for m in user.statement.materials if role_of(m) in MODEL_ROLES]
            if not used:
                report.add("MODEL_NOT_DECLARED", f"sequence {user.sequence} ({stage}): no material with role "
                           "'model'; cannot prove which model it used", sequence=user.sequence, stage=stage,
                           hint=f"pass --material model=PATH to 'mlspec attest stage {stage}'")
            for m in used:
                if digest_of(m) not in models:
                    report.add("MODEL_MISMATCH", f"sequence {user.sequence} ({stage}): model {m.get('name')} "
                               f"(sha256 {digest_of(m)[:12]}…) is not the model trained at sequence "
                               f"{train.sequence}", sequence=user.sequence, stage=stage)
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


# Stages whose metadata describes data a model is trained or judged on (attest.attestor.DATA_STAGES).
DATA_STAGES = frozenset({"ingest", "analyze", "transform", "validate", "split", "train", "evaluate", "test"})
PACKAGE_ROLE = "package"
METADATA_SUBJECT_PREFIX = "mlspec:"


def check_metadata_schema(ctx: VerifyContext) -> None:
    """Re-check every stage's signed metadata against its schema: a key holder can sign anything."""
    from mlspec_attest.errors import InputError
    from mlspec_attest.model.metadata import validate_metadata  # lazy: jsonschema

    for e in ctx.chain:
        try:
            validate_metadata(e.stage, e.statement.metadata, source=f"sequence {e.sequence} ({e.stage})")
        except InputError as exc:
            ctx.report.add("METADATA_INVALID", str(exc).removesuffix("; see docs/stages.md"),
                           sequence=e.sequence, stage=e.stage, hint="see docs/stages.md for the stage's schema")


def check_deprecated_data(ctx: VerifyContext) -> None:
    """Data marked deprecated (``isDeprecated: true``, ``status: deprecated``) must not reach training."""
    from mlspec_attest.model.metadata import deprecated_markers

    for e in ctx.chain:
        if e.stage in DATA_STAGES:
            for where in deprecated_markers(e.statement.metadata):
                ctx.report.add("DATA_DEPRECATED", f"sequence {e.sequence} ({e.stage}): metadata marks its data "
                               f"deprecated at {where}; a model must not be trained or judged on it",
                               sequence=e.sequence, stage=e.stage, hint="re-run the pipeline on a current dataset")


def check_subject_names(ctx: VerifyContext) -> None:
    """Two subjects under one name make 'which file is the model?' ambiguous: refuse the statement."""
    for e in ctx.chain:
        seen: set[str] = set()
        for s in e.statement.subjects:
            name = s.get("name", "")
            if name in seen:
                ctx.report.add("SUBJECT_DUPLICATE", f"sequence {e.sequence} ({e.stage}): subject {name!r} is "
                               "named twice", sequence=e.sequence, stage=e.stage)
            seen.add(name)


def package_subjects(entry: Entry) -> list[dict[str, Any]]:
    """What a package stage ships: its role-``package`` subjects, else every file subject."""
    subjects = [s for s in entry.statement.subjects if not str(s.get("name", "")).startswith(METADATA_SUBJECT_PREFIX)]
    tagged = [s for s in subjects if role_of(s) == PACKAGE_ROLE]
    return tagged or subjects


def _trained_models(chain: list[Entry]) -> tuple[Entry | None, dict[str, dict[str, Any]]]:
    train = next((e for e in reversed(chain) if e.stage == "train"), None)
    if train is None:
        return None, {}
    subjects = [s for s in train.statement.subjects if role_of(s) in MODEL_ROLES] or train.statement.subjects
    return train, {digest_of(s): s for s in subjects}


def check_package_contents(ctx: VerifyContext) -> None:
    """The package must hold the trained model, file by file, as its signed manifest (in the bundle) shows.

    Who could walk around it: the package stage's runner naming the trained model as its
    material while shipping another ``model.pkl``. The manifest digest is signed, its
    bytes are in ``blobs/``, and the trained model's sha256 must be one of its files.
    """
    from mlspec_attest.manifest import load

    chain, report, blobs = ctx.chain, ctx.report, ctx.bundle.root / "blobs"
    train, models = _trained_models(chain)
    for e in chain:
        if e.stage != "package" or train is None:
            continue
        declared = {digest_of(m) for m in e.statement.materials if role_of(m) in MODEL_ROLES} & models.keys()
        # Declared none of the trained models (MODEL_NOT_DECLARED/MISMATCH say so when artifact_flow is on):
        # the package must still hold one of them, or it ships a model nobody trained.
        need_all = bool(declared)
        declared = declared or set(models)
        wanted: dict[str, set[str]] = {}  # model digest -> the file digests that make it up
        for digest in declared:
            rd = models[digest]
            manifest_sha = (rd.get("annotations") or {}).get(_MANIFEST)
            if isinstance(manifest_sha, str):
                try:
                    wanted[digest] = set(load(blobs, manifest_sha, f"model {rd.get('name')}").values())
                except (OSError, ValueError) as exc:
                    report.add("PACKAGE_MANIFEST_INVALID", f"sequence {train.sequence} (train): {exc}",
                               sequence=train.sequence, stage="train")
                    wanted[digest] = {digest}
            else:
                wanted[digest] = {digest}
        for s in package_subjects(e):
            manifest_sha = (s.get("annotations") or {}).get(_MANIFEST)
            if manifest_sha is None:
                files = {digest_of(s)}  # a single file: it can only be the model itself
            else:
                try:
                    files = set(load(blobs, str(manifest_sha), f"package {s.get('name')}").values())
                except (OSError, ValueError) as exc:
                    report.add("PACKAGE_MANIFEST_INVALID", f"sequence {e.sequence} (package): {s.get('name')}: "
                               f"{exc}", sequence=e.sequence, stage="package",
                               hint="the bundle must keep blobs/<manifest sha256>; re-attest the package")
                    continue
            missing = [d for d, parts in wanted.items() if not parts <= files]
            if not missing or (not need_all and len(missing) < len(wanted)):
                continue
            for digest in missing if need_all else missing[:1]:
                report.add("PACKAGE_MODEL_ABSENT", f"sequence {e.sequence} (package): {s.get('name')} does not "
                           f"contain the trained model {models[digest].get('name')} (sha256 {digest[:12]}…) as a "
                           "file; it ships another model", sequence=e.sequence, stage="package",
                           hint="package the model file that the train stage attested")


def check_deployment_links(ctx: VerifyContext) -> None:
    """Serve names the package it rolled out; monitor and every log batch name the serve they watch.

    Who could walk around it: a serve runner declaring an unrelated file (role
    ``external``) as what it rolled out, a monitor or log bound to no roll-out at all.
    Each link is by digest: serve's role-``package`` material is a subject of the package
    stage before it; monitor's ``serve_attestation`` and log's ``pipeline`` are the
    payload sha256 of an authentic serve attestation before them (when the policy
    lists a serve stage at all; one that does not keeps deployment outside the chain).
    """
    report = ctx.report
    packaged: dict[str, dict[str, Any]] = {}
    serves: set[str] = set()
    for e in ctx.chain:
        if e.stage == "package" and e.authentic:
            packaged = {digest_of(s): s for s in package_subjects(e)}
        elif e.stage == "serve":
            used = [m for m in e.statement.materials if role_of(m) == PACKAGE_ROLE]
            if not used:
                report.add("SERVE_PACKAGE_MISSING", f"sequence {e.sequence} (serve): no material with role "
                           "'package'; cannot prove what was rolled out", sequence=e.sequence, stage="serve",
                           hint="pass --material package=PATH (the packaged directory) to the serve stage")
            for m in used:
                rd = packaged.get(digest_of(m))
                same = rd is not None and (m.get("annotations") or {}).get(_MANIFEST) == \
                    (rd.get("annotations") or {}).get(_MANIFEST)
                if not same:
                    report.add("SERVE_PACKAGE_UNKNOWN", f"sequence {e.sequence} (serve): rolled out "
                               f"{m.get('name')} (sha256 {digest_of(m)[:12]}…), which is not what the package "
                               "stage before it attested", sequence=e.sequence, stage="serve")
            if e.authentic:
                serves.add(e.payload_sha256)
        elif e.stage in ("monitor", "log") and "serve" in ctx.policy.stages:
            # A policy that lists no serve stage keeps deployment outside this chain.
            key = "serve_attestation" if e.stage == "monitor" else "pipeline"
            named = e.statement.metadata.get(key)
            code = e.stage.upper()
            if not isinstance(named, str):
                report.add(f"{code}_SERVE_MISSING", f"sequence {e.sequence} ({e.stage}): metadata names no "
                           f"serve attestation ({key}); cannot prove which roll-out it watches",
                           sequence=e.sequence, stage=e.stage,
                           hint=f"set {key} to the payload sha256 of the serve attestation")
            elif named not in serves:
                report.add(f"{code}_SERVE_UNKNOWN", f"sequence {e.sequence} ({e.stage}): {key} {named[:16]}… is "
                           "not an authentic serve attestation earlier in this chain", sequence=e.sequence,
                           stage=e.stage)


def check_metadata_sources(ctx: VerifyContext) -> None:
    """Metadata read from a file that is also a product must still say what that file says.

    Who could walk around it: a test runner passing ``--metadata reports/test.json
    --product reports/test.json --set metrics.r2=0.65`` so the criterion reads 0.65 while
    the hashed report says 0.47. The attestor records the binding (``metadataSources``)
    and keeps the file in ``blobs/``; here every bound key must equal the file's, exactly.
    """
    from mlspec_attest._internal.loaders import read_bounded
    from mlspec_attest.model.metadata import bound_source_problems

    blobs = ctx.bundle.root / "blobs"
    for e in ctx.chain:
        sources = (e.statement.raw.get("predicate") or {}).get("metadataSources")
        if sources is None:
            continue
        where = f"sequence {e.sequence} ({e.stage})"
        invalid, differ = bound_source_problems(
            e.statement.metadata, e.statement.subjects, sources,
            lambda digest: read_bounded(blobs / digest, what="metadata source"))
        for reason in invalid:
            ctx.report.add("METADATA_SOURCE_INVALID", f"{where}: {reason}", sequence=e.sequence, stage=e.stage,
                           hint="the bundle must keep blobs/<sha256> of every bound metadata file")
        for text in differ:
            ctx.report.add("METADATA_CONTRADICTS_PRODUCT", f"{where}: signed metadata at {text}, the attested "
                           "product it was read from", sequence=e.sequence, stage=e.stage,
                           hint="attest the file's own values; change the file, not the metadata")

"""The ML rules: what flowed from which stage to which (the model tested is the model packaged, test data is hold-back data)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlspec_attest.digests import MANIFEST_ANNOTATION as _MANIFEST
from mlspec_attest.verify.context import (
    HOLDBACK_ROLES,
    MODEL_ROLES,
    Entry,
    VerifyContext,
    blob_source,
    digest_of,
    read_blob,
    role_of,
)


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
    """A monitor's rollback target must be a package this chain attested earlier, or a release on
    the chain's verified predecessor line (verify/releases.py)."""
    from mlspec_attest.releases import package_subjects
    from mlspec_attest.verify.releases import line_packages

    chain, report = ctx.chain, ctx.report
    released = line_packages(ctx)
    packaged: set[str] = set()
    for e in chain:
        if e.stage == "package" and e.authentic:
            packaged.update(digest_of(s) for s in package_subjects(e.statement.subjects))  # the release, not side products
        target = e.statement.metadata.get("rollback_target") if e.stage == "monitor" else None
        if isinstance(target, dict):
            digest = (target.get("digest") or {}).get("sha256")
            if digest not in packaged and digest not in released:
                report.add("ROLLBACK_TARGET_UNKNOWN", f"sequence {e.sequence} (monitor): rollback target "
                           f"{target.get('name')} is not a package attested earlier in this chain nor a release "
                           "on its verified predecessor line", sequence=e.sequence, stage="monitor",
                           hint="name the digest of an earlier package stage's subject, or of a release the "
                                "package succeeds (--succeeds, verified with --releases DIR)")


# Stages whose metadata describes data a model is trained or judged on (attest.attestor.DATA_STAGES).
DATA_STAGES = frozenset({"ingest", "analyze", "transform", "validate", "split", "train", "evaluate", "test"})
PACKAGE_ROLE = "package"
METADATA_SUBJECT_PREFIX = "mlspec:"


def check_metadata_schema(ctx: VerifyContext) -> None:
    """Re-check every stage's signed metadata against its schema: a key holder can sign anything.

    The verdict is usually taken where the file was read (on every core, verify/_parallel.py);
    an entry without one (built elsewhere) is checked here: never skipped.
    """
    from mlspec_attest.verify._parallel import metadata_problem

    for e in ctx.chain:
        problem = e.metadata_problem if e.metadata_problem is not None else metadata_problem(e)
        if problem:
            ctx.report.add("METADATA_INVALID", problem.removesuffix("; see docs/stages.md"),
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
    The same runner could sign the real directory's digest while the manifest annotation
    names a manifest of other files (the real ones plus a ``sitecustomize.py``): every
    manifest read here must recompute to its subject's own digest (MANIFEST_UNBOUND), with
    or without a train stage.
    """
    from mlspec_attest.manifest import ManifestUnbound, load

    chain, report, blobs = ctx.chain, ctx.report, blob_source(ctx.bundle)
    train, models = _trained_models(chain)
    for e in chain:
        if e.stage != "package":
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
                    wanted[digest] = set(load(blobs, manifest_sha, f"model {rd.get('name')}",
                                              subject_sha256=digest).values())
                except (OSError, ValueError) as exc:
                    if train is None:  # models come from a train stage; for the type checker
                        continue
                    code = "MANIFEST_UNBOUND" if isinstance(exc, ManifestUnbound) else "PACKAGE_MANIFEST_INVALID"
                    report.add(code, f"sequence {train.sequence} (train): {exc}",
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
                    files = set(load(blobs, str(manifest_sha), f"package {s.get('name')}",
                                     subject_sha256=digest_of(s)).values())
                except ManifestUnbound as exc:
                    report.add("MANIFEST_UNBOUND", f"sequence {e.sequence} (package): {exc}", sequence=e.sequence,
                               stage="package", hint="the package's signed digest and its file manifest must "
                               "describe the same directory; re-attest the package")
                    continue
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
    from mlspec_attest.model.metadata import bound_source_problems

    for e in ctx.chain:
        sources = (e.statement.raw.get("predicate") or {}).get("metadataSources")
        if sources is None:
            continue
        where = f"sequence {e.sequence} ({e.stage})"
        invalid, differ = bound_source_problems(
            e.statement.metadata, e.statement.subjects, sources,
            lambda digest: read_blob(ctx.bundle, digest, "metadata source"))
        for reason in invalid:
            ctx.report.add("METADATA_SOURCE_INVALID", f"{where}: {reason}", sequence=e.sequence, stage=e.stage,
                           hint="the bundle must keep blobs/<sha256> of every bound metadata file")
        for text in differ:
            ctx.report.add("METADATA_CONTRADICTS_PRODUCT", f"{where}: signed metadata at {text}, the attested "
                           "product it was read from", sequence=e.sequence, stage=e.stage,
                           hint="attest the file's own values; change the file, not the metadata")


REPORT_SUFFIXES = (".json", ".yaml", ".yml")


def _criteria_stages(ctx: VerifyContext) -> dict[str, bool]:
    """Stage -> whether a blocking criterion reads it, from the authentic genesis objectives."""
    from mlspec_attest.errors import InputError
    from mlspec_attest.objectives.criteria import Objectives

    chain = ctx.chain
    if not chain or chain[0].stage != "objectives" or not chain[0].authentic:
        return {}
    try:  # canonical stage names: a criterion on "testing" reads the test stage
        objectives = Objectives.from_dict(chain[0].statement.metadata, source="objectives attestation")
    except InputError:
        return {}  # OBJECTIVES_INVALID
    from mlspec_attest.objectives.criteria import stages_read

    out: dict[str, bool] = {}
    for crit in objectives.criteria:
        for stage in stages_read(crit):  # its own stage and those it names (evaluate.metrics.r2)
            out[stage] = out.get(stage, False) or crit.severity == "block"
    return out


def check_metrics_binding(ctx: VerifyContext) -> None:
    """The metadata a criterion reads must come from an attested report file kept in ``blobs/``.

    Who could walk around it: a stage's runner holding the pipeline key, signing
    ``metrics.accuracy: 0.99`` while the attested ``reports/test.json`` says 0.8654 and
    simply leaving ``metadataSources`` out. So binding is required, not opt-in: every
    stage a criterion reads must bind its metadata to a product (the values each
    criterion reads must be in the bound files, check_metadata_sources proves they are
    equal), and every JSON/YAML report it attests must be one of those bound files
    (a second, honest report cannot sit beside a bound forgery). A policy can waive it
    (``metrics_binding: {required: false}``); then every verification warns.
    """
    if not ctx.policy.metrics_binding_required:
        return
    from mlspec_attest.log.format import is_sealed_log_metadata
    from mlspec_attest.model.report import WARNING

    read = _criteria_stages(ctx)
    latest = {e.stage: e for e in ctx.chain if e.authentic}
    for stage, blocking in sorted(read.items()):
        e = latest.get(stage)
        if e is None:
            continue  # the criterion fails on missing metrics (OBJECTIVE_FAILED)
        if stage == "log" and is_sealed_log_metadata(e.statement.metadata):
            continue  # a sealed head is bound to the records themselves (verify/inference_log.py)
        severity = "error" if blocking else WARNING
        where = f"sequence {e.sequence} ({stage})"
        sources = (e.statement.raw.get("predicate") or {}).get("metadataSources")
        bound = {(s.get("name"), (s.get("digest") or {}).get("sha256"))
                 for s in (sources if isinstance(sources, list) else []) if isinstance(s, dict)}
        for s in e.statement.subjects:
            name = str(s.get("name", ""))
            if name.lower().endswith(REPORT_SUFFIXES) and (name, digest_of(s)) not in bound:
                ctx.report.add("REPORT_UNBOUND", f"{where}: report {name} is attested but the signed metadata is "
                               "not bound to it (metadataSources), so the criteria may read other values than it "
                               "says", severity=severity, sequence=e.sequence, stage=stage,
                               hint=f"attest it with --metadata {name} --product {name}")
        if not bound:
            ctx.report.add("METADATA_UNBOUND", f"{where}: a criterion reads this stage's metadata, but none of it is "
                           "bound to an attested report file (no metadataSources); the runner could sign any "
                           "metric", severity=severity, sequence=e.sequence, stage=stage,
                           hint="attest the report with --metadata FILE --product FILE; or the policy can say "
                                "metrics_binding: {required: false}")
            continue
        _check_reads_bound(ctx, e, _bound_files(bound, lambda d: read_blob(ctx.bundle, d, "metadata source")), severity)
    _check_previous_bound(ctx)


def _bound_set(e: Entry) -> set[tuple[Any, Any]]:
    sources = (e.statement.raw.get("predicate") or {}).get("metadataSources")
    return {(s.get("name"), (s.get("digest") or {}).get("sha256"))
            for s in (sources if isinstance(sources, list) else []) if isinstance(s, dict)}


def _bound_files(bound: set[tuple[Any, Any]], read: Callable[[str], bytes]) -> dict[str, Any]:
    """The stage's bound report files (``read`` fetches a blob by digest), merged: what its criteria may read."""
    from mlspec_attest.errors import InputError
    from mlspec_attest.model.metadata import parse_yaml

    merged: dict[str, Any] = {}
    for source_name, source_digest in sorted(bound, key=str):
        try:
            part = parse_yaml(read(str(source_digest)),
                              source=str(source_name))
        except (InputError, OSError, ValueError):
            continue  # METADATA_SOURCE_INVALID (check_metadata_sources) says why
        if isinstance(part, dict):
            _deep_merge(merged, part)
    return merged


def _local_blobs(bundle_dir: Path) -> Callable[[str], bytes]:
    """Blob reader for a release in the (local) release history."""
    from mlspec_attest._internal.loaders import read_bounded

    return lambda digest: read_bounded(bundle_dir / "blobs" / digest, what="metadata source")


def _check_previous_bound(ctx: VerifyContext) -> None:
    """What a criterion reads under ``previous.<stage>`` must be bound to a report in the predecessor's
    bundle: the predecessor's own gate checked only what *its* criteria read, and its runner could have
    signed any other metric (``--set metrics.r2=0.1``, to make a weak challenger look good)."""
    predecessor = ctx.predecessor
    if predecessor is None or not ctx.chain or not ctx.chain[0].authentic:
        return
    from mlspec_attest.errors import InputError
    from mlspec_attest.model.report import WARNING
    from mlspec_attest.objectives.cel import evaluate_expression
    from mlspec_attest.objectives.criteria import Objectives, _bindings, reads_previous

    try:
        objectives = Objectives.from_dict(ctx.chain[0].statement.metadata, source="objectives attestation")
    except InputError:
        return
    latest = {e.stage: e.statement.metadata for e in ctx.chain if e.authentic}
    theirs = {e.stage: e for e in predecessor.chain if e.authentic}
    signed = predecessor.metadata_by_stage()
    for crit in objectives.criteria:
        try:
            ast = crit.compile()
        except InputError:
            continue
        if not reads_previous(ast):
            continue
        own = latest.get(crit.stage) or {}
        outcome = evaluate_expression(ast, _bindings(own, latest, signed))
        named = sorted({p.split(".")[1] for p in list(outcome.reads) + list(outcome.missing)
                        if p.startswith("previous.") and p.count(".") >= 1})
        severity = "error" if crit.severity == "block" else WARNING
        for stage in named:
            e = theirs.get(stage)
            if e is None:
                continue  # the criterion fails on the missing stage (OBJECTIVE_FAILED)
            bound = _bound_set(e)
            where = f"the previous release's sequence {e.sequence} ({stage}, {predecessor.bundle.name})"
            files = _bound_files(bound, _local_blobs(predecessor.bundle)) if bound else {}
            check = evaluate_expression(ast, _bindings(own, latest, {**signed, stage: files}))
            missing = [p for p in check.missing if p.startswith(f"previous.{stage}.") or p == f"previous.{stage}"]
            if missing or not bound:
                ctx.report.add("METADATA_UNBOUND", f"criterion {crit.name} reads {', '.join(missing) or stage} of "
                               f"{where}, which no report file bound there holds; its runner could have signed "
                               "any value", severity=severity, stage=crit.stage,
                               hint="the predecessor must attest that stage's report with --metadata FILE "
                                    "--product FILE")


def _deep_merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for k, v in part.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = v


def _check_reads_bound(ctx: VerifyContext, e: Entry, bound: dict[str, Any], severity: str) -> None:
    """Each criterion on the stage, evaluated over the bound files alone, must find every value it reads."""
    from mlspec_attest.errors import InputError
    from mlspec_attest.objectives.cel import evaluate_expression
    from mlspec_attest.objectives.criteria import Objectives, _bindings

    try:
        objectives = Objectives.from_dict(ctx.chain[0].statement.metadata, source="objectives attestation")
    except InputError:
        return  # OBJECTIVES_INVALID
    from mlspec_attest.objectives.criteria import VARIABLES, stages_read

    latest = {x.stage: x.statement.metadata for x in ctx.chain if x.authentic}
    previous = ctx.predecessor.metadata_by_stage() if ctx.predecessor is not None else None
    for crit in objectives.criteria:
        if e.stage not in stages_read(crit):
            continue
        # This stage's values come from its bound files only; every other stage from what it signed.
        own = bound if crit.stage == e.stage else (latest.get(crit.stage) or {})
        try:
            outcome = evaluate_expression(crit.compile(), _bindings(own, {**latest, e.stage: bound}, previous))
        except InputError:
            continue
        roots = {e.stage} | (set(VARIABLES) if crit.stage == e.stage else set())
        missing = [p for p in outcome.missing if p.split(".", 1)[0] in roots]
        if missing:
            ctx.report.add("METADATA_UNBOUND", f"sequence {e.sequence} ({e.stage}): criterion {crit.name} reads "
                           f"{', '.join(missing)}, which no bound report file holds", severity=severity,
                           sequence=e.sequence, stage=e.stage,
                           hint="put the metric in the report file the stage binds (--metadata FILE --product FILE)")


FINGERPRINTS_OF_SHA256 = "mlspec.dev/fingerprints-of-sha256"
SPLIT_SET_ROLES = ("train-data", "eval-data", "validation-data", "holdback-data", "test-data")


def check_training_data(ctx: VerifyContext) -> None:
    """Split's sets are distinct files, train trained on split's train set, and the leakage proof is of those sets.

    Who could walk around it: split's runner naming the training file as the hold-back
    set too, train declaring no data (or its data under an external role such as
    ``code``), and fingerprints of other files standing in as the leakage proof.
    """
    from mlspec_attest.leakage import FINGERPRINT_ROLE_PREFIX, HOLDBACK_ROLE, TRAIN_ROLE

    report = ctx.report
    split = next((e for e in reversed(ctx.chain) if e.stage == "split"), None)
    train = next((e for e in reversed(ctx.chain) if e.stage == "train"), None)
    if split is None:
        return
    sets: dict[str, str] = {}  # digest -> role
    by_role: dict[str, set[str]] = {}
    for s in split.statement.subjects:
        role = role_of(s)
        if role not in SPLIT_SET_ROLES:
            continue
        d = digest_of(s)
        if d in sets:
            report.add("SPLIT_SETS_NOT_DISTINCT", f"sequence {split.sequence} (split): {s.get('name')} ({role}) is "
                       f"the same file (sha256 {str(d)[:12]}…) as the {sets[d]} subject; the sets must differ",
                       sequence=split.sequence, stage="split", hint="split into separate train/validation/hold-back files")
        sets[str(d)] = str(role)
        by_role.setdefault(str(role), set()).add(str(d))
    train_sets = by_role.get("train-data", set())
    holdback_sets = by_role.get("holdback-data", set()) | by_role.get("test-data", set())
    if train is not None and train.sequence > split.sequence:
        declared = {digest_of(m) for m in train.statement.materials if role_of(m) == "train-data"}
        if not declared:
            report.add("TRAIN_DATA_NOT_DECLARED", f"sequence {train.sequence} (train): no material with role "
                       "'train-data'; cannot prove the model was trained on split's training set",
                       sequence=train.sequence, stage="train", hint="pass --material train-data=PATH")
        elif not declared <= train_sets:
            report.add("TRAIN_DATA_NOT_SPLIT", f"sequence {train.sequence} (train): its train-data material is not "
                       f"the train-data subject of split (sequence {split.sequence})", sequence=train.sequence,
                       stage="train")
        for m in train.statement.materials:
            if digest_of(m) in holdback_sets:
                report.add("TEST_DATA_REUSED", f"sequence {train.sequence} (train): material {m.get('name')} "
                           f"(role {role_of(m)}) is split's hold-back set; training must not see it",
                           sequence=train.sequence, stage="train")
    wanted = {TRAIN_ROLE: train_sets, HOLDBACK_ROLE: holdback_sets,
              FINGERPRINT_ROLE_PREFIX + "validation": by_role.get("eval-data", set()) | by_role.get("validation-data", set())}
    for s in split.statement.subjects:
        role = role_of(s)
        if not isinstance(role, str) or not role.startswith(FINGERPRINT_ROLE_PREFIX):
            continue
        of = (s.get("annotations") or {}).get(FINGERPRINTS_OF_SHA256)
        allowed = wanted.get(role, set(sets))
        if not isinstance(of, str) or of not in allowed:
            report.add("LEAKAGE_EVIDENCE_UNBOUND", f"sequence {split.sequence} (split): fingerprints {s.get('name')} "
                       f"do not name ({FINGERPRINTS_OF_SHA256}) the digest of split's "
                       f"{role.removeprefix(FINGERPRINT_ROLE_PREFIX)} subject; the proof may be of other files",
                       sequence=split.sequence, stage="split",
                       hint="attest split with --fingerprints SET=PATH where PATH is also that set's --product")


_MODEL_REF = re.compile(r"@sha256:([0-9a-f]{12,64})\Z")  # 48 bits at least: no short-prefix grinding


def check_served_model(ctx: VerifyContext) -> None:
    """Serve's rolled-out model and the log's model are the package's declared model, which is the trained one.

    Who could walk around it: serve's runner rolling out another model and the log
    naming it (``rollout.model: evil-model@…``) while the package says ``credit-model@…``.
    """
    report = ctx.report
    ident: str | None = None
    train, models = _trained_models(ctx.chain)
    for e in ctx.chain:
        md = e.statement.metadata
        if e.stage == "package" and e.authentic:
            ident = md.get("model_identifier") if isinstance(md.get("model_identifier"), str) else None
            embeds = ident is not None and "@sha256:" in ident
            m = _MODEL_REF.search(ident or "")
            if embeds and models and not (m and any(d.startswith(m.group(1)) for d in models)):
                report.add("PACKAGE_MODEL_ID_MISMATCH", f"sequence {e.sequence} (package): model_identifier "
                           f"{ident} names a digest that is not the trained model's", sequence=e.sequence,
                           stage="package")
        elif e.stage in ("serve", "log"):
            if e.stage == "serve":
                rollout = md.get("rollout")
                named = rollout.get("model") if isinstance(rollout, dict) else None
            else:  # a log names its model at "model" (verify/_kept.py keeps it on every log)
                named = md.get("model")
            if named is None:
                continue
            code = "SERVE_MODEL_MISMATCH" if e.stage == "serve" else "LOG_MODEL_MISMATCH"
            if ident is None:
                report.add(code, f"sequence {e.sequence} ({e.stage}): names model {str(named)[:80]!r}, but no "
                           "package before it declares a model_identifier", sequence=e.sequence, stage=e.stage)
            elif named != ident:
                report.add(code, f"sequence {e.sequence} ({e.stage}): names model {str(named)[:80]!r}, the package "
                           f"declares {ident!r}: it serves another model", sequence=e.sequence, stage=e.stage)


def package_model_identifier(chain: list[Entry]) -> str | None:
    """The latest authentic package's declared model identifier (what log records must name)."""
    for e in reversed(chain):
        if e.stage == "package" and e.authentic:
            ident = e.statement.metadata.get("model_identifier")
            return ident if isinstance(ident, str) else None
    return None

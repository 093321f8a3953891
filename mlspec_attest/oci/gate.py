"""``mlspec verify oci://`` and ``mlspec pull``: find the chain among a model's referrers and gate on it.

Anyone who can push to the repository can attach referrers, so a referrer is never trusted
for being there. Each chain referrer (at most MAX_CHAINS) is fetched into a private
directory under the hostile-input caps (sizes from descriptors checked before download,
every byte checked against its digest), then verified with the local policy like a
bundle on disk. A candidate counts only if (1) its ``subject`` is this model's manifest,
(2) every attestation in it is signed by a key the policy trusts, and (3) the model's
layers are exactly the files its package stage signed. Of the candidates that count, the
newest wins (the longest chain; among unrelated chains, the latest signed time), so:

- a forged or foreign chain (not signed by trusted keys, or for another model) is
  ignored with a warning: it can neither pass the gate nor deny it;
- an older chain cannot hide a newer, failing one (a monitor reading that fails its
  objectives fails the gate even when an earlier, passing chain is still attached);
- two trusted chains that disagree about the same history (same genesis, different
  entries) fail the gate (``OCI_CHAIN_FORK``): only a key holder can cause that.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mlspec_attest.bundle import MAX_ATTESTATIONS, MAX_BUNDLE_BYTES
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import parse_json
from mlspec_attest.model.formats import format_utc, parse_rfc3339
from mlspec_attest.model.report import Report
from mlspec_attest.oci.layout import (
    CHAIN_ARTIFACT_TYPE,
    EMPTY,
    FILE_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    UNPACK_ANNOTATION,
    Descriptor,
    LayoutError,
    Manifest,
    check_title,
)
from mlspec_attest.oci.package import PackageError, expected_files
from mlspec_attest.oci.push import BUNDLE_FOLDERS, HEAD_FILE, MAX_FILE_BYTES
from mlspec_attest.oci.reference import OciReference
from mlspec_attest.oci.registry import Ambiguous, DeadlineExceeded, DigestMismatch, RegistryClient, TooLarge
from mlspec_attest.policy import Policy

MAX_CHAINS = 16  # chain referrers verified per model; more is refused (OCI_TOO_MANY_REFERRERS)
MAX_REFERRERS = 1000  # entries of a referrers index
# Layers of one chain referrer: attestations + head + blobs + evidence. Far below bundle.MAX_ATTESTATIONS:
# each layer is a request, and a manifest of 20k layers naming one tiny blob would cost hours per chain.
MAX_CHAIN_LAYERS = 5000
DEADLINE_ENV = "MLSPEC_OCI_DEADLINE_SECONDS"  # the total time budget of one gate run
DEFAULT_DEADLINE_SECONDS = 900.0


@dataclass
class Candidate:
    """One chain referrer and what became of it."""

    descriptor: Descriptor
    root: Path
    report: Report | None = None
    files: dict[str, str] = field(default_factory=dict)
    problem: tuple[str, str] | None = None  # (finding code, why it does not count)
    authentic: bool = False

    @property
    def history(self) -> dict[int, str]:
        return {s.sequence: s.payload_sha256 for s in self.report.stages} if self.report else {}

    @property
    def newest_time(self) -> datetime | None:
        times = [parse_rfc3339(s.time) for s in self.report.stages if s.time] if self.report else []
        return max((t for t in times if t is not None), default=None)


@dataclass
class GateResult:
    report: Report
    model: Manifest | None
    model_digest: str | None
    chosen: Candidate | None
    candidates: list[Candidate]
    client: RegistryClient


def _model(client: RegistryClient, ref: OciReference, report: Report) -> tuple[Manifest | None, str | None]:
    try:
        got = client.get_manifest(ref.digest or ref.tag or "latest")
    except Ambiguous as exc:
        report.add("OCI_MANIFEST_INVALID", f"{ref}: the model manifest is not usable: {exc}")
        return None, None
    except DigestMismatch as exc:
        report.add("OCI_DIGEST_MISMATCH", f"{ref}: model manifest: {exc}; refusing a registry that serves other "
                   "bytes than the digest names")
        return None, None
    if got is None:
        raise InputError(f"{ref}: no such manifest in the registry (check the repository, tag or digest)")
    data, digest = got
    try:
        return Manifest.from_dict(parse_json(data, source=str(ref)), str(ref)), digest
    except (LayoutError, InputError) as exc:
        report.add("OCI_MANIFEST_INVALID", f"{ref}: the model manifest is not usable: {exc}")
        return None, digest


def _layer_problem(model: Manifest, files: dict[str, str]) -> str | None:
    """How the model's layers differ from the signed package files (None: exactly equal)."""
    from mlspec_attest.manifest import diff

    layers: dict[str, str] = {}
    untitled = duplicated = 0
    # A layer typed as an archive (or marked for unpacking) is unpacked by ORAS and other clients:
    # the signed bytes would become files nobody attested. Only the plain-file type is a file.
    unpacked = sorted(str(layer.title) for layer in model.layers
                      if layer.media_type != FILE_MEDIA_TYPE or UNPACK_ANNOTATION in layer.annotations)
    unsafe = []
    for layer in model.layers:
        if layer.title:
            try:
                check_title(layer.title, "model layer")
            except LayoutError:
                unsafe.append(repr(layer.title))
        if not layer.title:
            untitled += 1
        elif layer.title in layers:
            duplicated += 1
        else:
            layers[layer.title] = layer.sha256
    difference = diff(files, layers.items())
    if not difference and not untitled and not duplicated and not unpacked and not unsafe and model.config == EMPTY:
        return None
    parts = [difference.describe()] if difference else []
    if unsafe:
        parts.append(f"layer title(s) {', '.join(unsafe[:5])} are not plain relative paths (a client would write "
                     "them outside its directory)")
    if unpacked:
        parts.append(f"layer(s) {', '.join(unpacked[:5])} not typed {FILE_MEDIA_TYPE} (clients may unpack them)")
    if model.config != EMPTY:
        parts.append(f"the config is {model.config.media_type} {model.config.digest}, not the empty descriptor")
    if untitled:
        parts.append(f"{untitled} layer(s) without a {'org.opencontainers.image.title'} name")
    if duplicated:
        parts.append(f"{duplicated} layer name(s) repeated")
    return "; ".join(parts)


def _fetch_chain(client: RegistryClient, candidate: Candidate, model_digest: str) -> None:
    """Download one chain referrer into ``candidate.root`` (a fresh private directory), or set its problem."""
    from mlspec_attest._internal import files as safe

    d = candidate.descriptor
    try:
        got = client.get_manifest(d.digest, expected=d)
    except DigestMismatch as exc:
        code = ("OCI_TOO_LARGE" if isinstance(exc, TooLarge) else
                "OCI_REFERRER_INVALID" if isinstance(exc, Ambiguous) else "OCI_DIGEST_MISMATCH")
        candidate.problem = (code, f"referrer {d.digest}: {exc}")
        return
    if got is None:
        candidate.problem = ("OCI_REFERRER_INVALID", f"referrer {d.digest} is listed but not in the registry")
        return
    try:
        manifest = Manifest.from_dict(parse_json(got[0], source=d.digest), f"referrer {d.digest}")
    except (LayoutError, InputError) as exc:
        candidate.problem = ("OCI_REFERRER_INVALID", str(exc))
        return
    if manifest.artifact_type != CHAIN_ARTIFACT_TYPE:
        candidate.problem = ("OCI_REFERRER_INVALID", f"referrer {d.digest} is a {manifest.artifact_type!r}, "
                             f"not an mlspec chain, though the index lists it as one")
        return
    if manifest.subject is None or manifest.subject.digest != model_digest or \
            manifest.subject.media_type != MANIFEST_MEDIA_TYPE:
        where = manifest.subject.digest if manifest.subject else "nothing"
        candidate.problem = ("OCI_SUBJECT_MISMATCH", f"chain referrer {d.digest} is attached to {where}, not to "
                             f"this model's image manifest ({model_digest})")
        return
    total = sum(layer.size for layer in manifest.layers)
    if len(manifest.layers) > min(MAX_CHAIN_LAYERS, MAX_ATTESTATIONS * 3) or total > MAX_BUNDLE_BYTES:
        candidate.problem = ("OCI_TOO_LARGE", f"chain referrer {d.digest}: {len(manifest.layers)} layers, {total} "
                             f"bytes: beyond the limits ({MAX_CHAIN_LAYERS} layers, {MAX_BUNDLE_BYTES} bytes)")
        return
    seen: set[str] = set()
    try:
        for layer in manifest.layers:
            title = check_title(layer.title, f"chain referrer {d.digest}")
            if not (title == HEAD_FILE or ("/" in title and title.split("/", 1)[0] in BUNDLE_FOLDERS)):
                raise LayoutError(f"chain referrer {d.digest}: layer {title!r} is not a bundle file")
            if title.lower() in seen:
                raise LayoutError(f"chain referrer {d.digest}: layer {title!r} appears twice")
            seen.add(title.lower())
    except LayoutError as exc:
        candidate.problem = ("OCI_REFERRER_INVALID", str(exc))
        return
    safe.make_dirs(candidate.root, "attestations")
    fetched: dict[tuple[str, int], bytes] = {}  # identical descriptors are fetched once
    for layer in manifest.layers:
        try:
            key = (layer.digest, layer.size)
            data = fetched[key] if key in fetched else client.fetch_blob(layer, limit=MAX_FILE_BYTES)
            fetched[key] = data
        except DigestMismatch as exc:
            code = "OCI_TOO_LARGE" if isinstance(exc, TooLarge) else "OCI_DIGEST_MISMATCH"
            candidate.problem = (code, f"chain referrer {d.digest}: layer {layer.title}: {exc}")
            return
        try:  # a file and a folder of one name (blobs/a, blobs/a/b): this candidate is junk, not the run
            parent = str(layer.title).rpartition("/")[0]
            if parent:
                safe.make_dirs(candidate.root, parent)
            safe.write_file(candidate.root, str(layer.title), data, replace=False, what="chain file")
        except (InputError, OSError) as exc:
            candidate.problem = ("OCI_REFERRER_INVALID", f"chain referrer {d.digest}: layer {layer.title} cannot be "
                                 f"laid out as a bundle file ({exc}); ignored")
            return


def _authentic(candidate: Candidate) -> bool:
    """Every attestation file of the chain became a stage signed by a key the policy trusts.

    A file that failed to parse or verify is not a stage at all, so counting files (not
    stage lines) is what stops a chain with one forged entry from looking trusted.
    """
    report = candidate.report
    if report is None or not report.stages:
        return False
    files = [p for p in (candidate.root / "attestations").iterdir() if p.is_file()]
    return len(files) == len(report.stages) and all(s.signers for s in report.stages)


def _choose(candidates: list[Candidate], report: Report) -> Candidate | None:
    """The newest counted candidate; OCI_CHAIN_FORK when two trusted histories of one genesis disagree."""
    counted = [c for c in candidates if c.problem is None]
    if not counted:
        return None
    families: list[Candidate] = []
    # Longest first; among equally long ones a passing one first: a copy of the genuine chain
    # stripped of an unsigned file (the head, a blob) fails closed, and must not deny the original.
    for c in sorted(counted, key=lambda c: (len(c.history), c.report is not None and c.report.passed), reverse=True):
        for head in families:
            shared = c.history.keys() & head.history.keys()
            if all(c.history[s] == head.history[s] for s in shared):
                break  # a prefix of (or equal to) a longer chain already kept
            if c.history.get(0) == head.history.get(0):
                report.add("OCI_CHAIN_FORK", f"chain referrers {head.descriptor.digest} and {c.descriptor.digest} "
                           "are both signed by trusted keys but disagree about the same history; refusing both")
                return None
        else:
            families.append(c)
    families.sort(key=lambda c: (c.newest_time is not None, c.newest_time or datetime.min, len(c.history)),
                  reverse=True)
    return families[0]


def gate(ref: OciReference, policy: Policy, workdir: Path, *, plain_http: bool = False, now: datetime | None = None,
         log_dir: str | os.PathLike[str] | None = None, phase: str = "full",
         releases: str | os.PathLike[str] | None = None) -> GateResult:
    """Verify the model at ``ref`` from its chain referrers; chain files land below ``workdir`` (caller cleans up)."""
    from mlspec_attest.verify.verifier import Verifier

    client = RegistryClient(ref, plain_http=plain_http)
    verifier = Verifier(policy, now=now, phase=phase, releases=releases)
    empty = Report(bundle=str(ref), policy=str(policy.source), policy_sha256=policy.digest,
                   verified_at=format_utc(verifier.now))
    budget = deadline_seconds()
    client.deadline = time.monotonic() + budget
    try:
        return _gate(client, verifier, empty, ref, workdir, log_dir)
    except DeadlineExceeded:
        empty.add("OCI_DEADLINE_EXCEEDED", f"{ref}: the gate did not finish within its {budget:g} s budget "
                  f"({DEADLINE_ENV}); refusing to deploy. A registry this slow, or referrers this many, needs a look",
                  hint=f"raise {DEADLINE_ENV} for a slow registry; remove stale or foreign referrers")
        return GateResult(empty, None, None, None, [], client)
    finally:
        client.deadline = None  # the budget is the gate's; pull's download of the model layers is not bounded by it


def deadline_seconds() -> float:
    """The gate's total time budget: $MLSPEC_OCI_DEADLINE_SECONDS (a positive number), else 900 s."""
    raw = os.environ.get(DEADLINE_ENV, "").strip()
    if not raw:
        return DEFAULT_DEADLINE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise InputError(f"${DEADLINE_ENV}={raw!r}: give the gate's time budget in seconds (a non-negative number)")
    return value


def _gate(client: RegistryClient, verifier: Any, empty: Report, ref: OciReference, workdir: Path,
          log_dir: str | os.PathLike[str] | None) -> GateResult:
    """The gate proper (see gate); the client's deadline bounds every request it makes."""
    model, model_digest = _model(client, ref, empty)
    if model is None or model_digest is None:
        return GateResult(empty, model, model_digest, None, [], client)
    try:
        referrers, via = client.referrers(model_digest)
    except DigestMismatch as exc:
        empty.add("OCI_REFERRER_INVALID", f"{ref}: the referrers of {model_digest}: {exc}")
        return GateResult(empty, model, model_digest, None, [], client)
    chains = list({d.digest: d for d in referrers if d.artifact_type == CHAIN_ARTIFACT_TYPE}.values())
    if len(referrers) > MAX_REFERRERS or len(chains) > MAX_CHAINS:
        empty.add("OCI_TOO_MANY_REFERRERS", f"{ref}: {len(chains)} chain referrers ({len(referrers)} in all) via "
                  f"the {via}; more than the {MAX_CHAINS} the gate verifies. Remove the stale or foreign ones")
        return GateResult(empty, model, model_digest, None, [], client)
    if not chains:
        empty.add("OCI_NO_CHAIN", f"{ref}: no mlspec chain is attached to {model_digest} (looked up via the {via}); "
                  "push one with 'mlspec push'")
        return GateResult(empty, model, model_digest, None, [], client)
    candidates = []
    workdir.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix="chains-", dir=workdir))  # fresh per run, mode 0700
    for i, descriptor in enumerate(chains):
        candidate = Candidate(descriptor, private / f"chain-{i}")
        candidates.append(candidate)
        _fetch_chain(client, candidate, model_digest)
        if candidate.problem:
            continue
        try:
            candidate.report = verifier.verify(candidate.root, (), log_dir=log_dir)
        except (InputError, OSError) as exc:  # a layout the verifier cannot read is this candidate's problem only
            candidate.problem = ("OCI_REFERRER_INVALID", f"chain referrer {descriptor.digest}: not a readable "
                                 f"bundle ({exc}); ignored")
            continue
        candidate.report.bundle = f"{ref.with_digest(model_digest)} (chain {descriptor.digest})"
        candidate.authentic = _authentic(candidate)
        if not candidate.authentic:
            candidate.problem = ("OCI_CHAIN_UNTRUSTED", f"chain referrer {descriptor.digest}: not every attestation "
                                 "in it is signed by a key the local policy trusts")
            continue
        try:
            _, candidate.files = expected_files(candidate.report, candidate.root)
        except PackageError as exc:
            candidate.problem = (exc.code, f"chain referrer {descriptor.digest}: {exc}")
            continue
        problem = _layer_problem(model, candidate.files)
        if problem:
            candidate.problem = ("OCI_LAYER_MISMATCH", f"the artifact's layers are not the files the package stage "
                                 f"of chain {descriptor.digest} signed ({problem})")
    chosen = _choose(candidates, empty)
    if chosen is None or chosen.report is None:
        report = empty
        if not any(f.code == "OCI_CHAIN_FORK" for f in empty.findings):
            shown = next((c for c in candidates if c.authentic and c.report), None)
            if shown is not None and shown.report is not None:
                report = shown.report
                report.findings.extend(empty.findings)
            for c in candidates:
                if c.problem:
                    report.add(c.problem[0], c.problem[1])
            report.add("OCI_NO_TRUSTED_CHAIN", f"{ref}: none of the {len(candidates)} chain referrer(s) of "
                       f"{model_digest} is a chain the local policy trusts for exactly these layers; refusing to deploy")
        report.artifacts.append({"path": str(ref.with_digest(model_digest)), "sha256": model_digest[7:],
                                 "matched": None, "layers": len(model.layers)})
        return GateResult(report, model, model_digest, None, candidates, client)
    report = chosen.report
    package = next(s for s in reversed(report.stages) if s.stage == "package")
    report.artifacts.append({"path": str(ref.with_digest(model_digest)), "sha256": model_digest[7:],
                             "matched": {"sequence": package.sequence, "chain": chosen.descriptor.digest},
                             "layers": len(model.layers)})
    for c in candidates:
        if c is not chosen:
            why = c.problem[0] + ": " + c.problem[1] if c.problem else "an older or unrelated trusted chain"
            report.add("OCI_REFERRER_IGNORED", f"referrer {c.descriptor.digest} not used ({why})", severity="warning")
    return GateResult(report, model, model_digest, chosen, candidates, client)

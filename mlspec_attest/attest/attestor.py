"""The Python API pipelines call; the CLI is a thin layer over it.

    attestor = Attestor("bundle", load_signer("keys/pipeline.key"))
    with attestor.stage("train") as s:
        s.material("data/train.csv", role="train-data")
        s.product("model.onnx", role="model")
        s.metadata(framework="sklearn", hyperparameters={"C": 1.0})
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from mlspec_attest._version import TOOL_NAME, __version__
from mlspec_attest.attest.head import HeadSigning, sign_head_locked, tip_not_behind_head, trusted_head_keys
from mlspec_attest.bundle import Bundle, Head, SequenceTaken, attestation_file_name
from mlspec_attest.digests import MANIFEST_ANNOTATION, digest_path
from mlspec_attest.errors import AppendRefused, InputError
from mlspec_attest.keys import PublicKey, Signer
from mlspec_attest.leakage import is_fingerprint_role
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
from mlspec_attest.model.report import Finding
from mlspec_attest.model.stages import Stage, resolve
from mlspec_attest.model.statement import (
    ROLE_ANNOTATION,
    ChainLink,
    build_statement,
    payload_digest,
    resource_descriptor,
)
from mlspec_attest.store import open_bundle

# Stages whose directory products keep their file manifest in bundle/blobs (the gate looks inside them).
MANIFEST_STAGES = frozenset({"train", "package"})
# Stages whose metadata describes the data a model is trained or judged on (deprecated data is refused).
DATA_STAGES = frozenset({"ingest", "analyze", "transform", "validate", "split", "train", "evaluate", "test"})
# Predicate field binding metadata keys to the product file they were read from (docs/format.md).
METADATA_SOURCES_FIELD = "metadataSources"
# Stages whose metadata names the data set they ran on, and the material roles that are one.
DATASET_ROLES = {"evaluate": {"eval-data", "validation-data", "data"}, "test": {"holdback-data", "test-data", "data"}}


GENESIS = ChainLink(genesis=None, sequence=0, previous=None)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ArtifactRef:
    """A file or directory a stage consumed or produced, with an optional role."""

    path: Path
    role: str | None = None
    name: str | None = None

    @classmethod
    def parse(cls, spec: str | os.PathLike[str] | ArtifactRef) -> ArtifactRef:
        """Accept ``PATH`` or ``ROLE=PATH`` (e.g. ``model=out/model.onnx``)."""
        if isinstance(spec, ArtifactRef):
            return spec
        text = os.fspath(spec)
        role, sep, rest = text.partition("=")
        if sep and role and all(c.isalnum() or c in "-_" for c in role) and rest:
            return cls(path=Path(rest), role=role)
        return cls(path=Path(text))


def _file_sha256(path: Path) -> str:
    """Streaming sha256 of a file (the data set a fingerprint file was computed from)."""
    return digest_path(path).sha256


def _descriptor_name(path: Path, base_dir: Path) -> str:
    """Project-relative POSIX name; paths escaping the project are refused."""
    try:
        resolved = (base_dir / path).resolve() if not path.is_absolute() else path.resolve()
        real_base = base_dir.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        raise InputError(f"{path}: cannot resolve the path (symlink loop?); refusing it") from None
    if not resolved.is_relative_to(real_base):
        raise InputError(f"{path}: artifact is outside the project directory {base_dir}; "
                         "copy it into the project or run from a directory that contains it")
    return resolved.relative_to(real_base).as_posix() or "."


def describe(ref: ArtifactRef, base_dir: Path, manifests: dict[str, bytes] | None = None) -> dict[str, Any]:
    """The descriptor of one artifact; a directory's manifest bytes go to ``manifests`` when given."""
    path = ref.path if ref.path.is_absolute() else base_dir / ref.path
    name = ref.name or _descriptor_name(ref.path, base_dir)
    digest = digest_path(path)
    annotations: dict[str, Any] = {}
    if ref.role:
        annotations[ROLE_ANNOTATION] = ref.role
    if digest.is_dir and digest.manifest_sha256:
        annotations[MANIFEST_ANNOTATION] = digest.manifest_sha256
        if manifests is not None:
            from mlspec_attest.manifest import encode
            from mlspec_attest.model.canonical import sha256_hex

            data = encode(digest.files, digest.ignored)
            if sha256_hex(data) != digest.manifest_sha256:  # the two encodings must never drift apart
                raise AssertionError("file manifest encoding differs from digests.digest_path's")
            manifests[digest.manifest_sha256] = data
    return resource_descriptor(name, digest.sha256, annotations=annotations)


@dataclass(frozen=True)
class Attestation:
    """What one append produced; ``forced``: the gate's objections ``force`` overrode (the gate will refuse it)."""

    sequence: int
    stage: str
    path: Path
    payload_sha256: str
    statement: dict[str, Any]
    redactions: list[str]
    run_redactions: list[str] = field(default_factory=list)  # pointers into predicate.run
    forced: tuple[Finding, ...] = ()


class AppendPolicy(Protocol):
    """The gate's rules for one append (verify/preflight.py ``AppendGate``), handed in: attest/ never imports the gate."""

    @property
    def source(self) -> str: ...

    def check_statement(self, bundle: Bundle, payload: bytes) -> list[Finding]: ...

    def check_signatures(self, bundle: Bundle, payload: bytes, data: bytes, kind: str) -> list[Finding]: ...

    def head_keys(self) -> tuple[PublicKey, ...]: ...

    def distrusted_keyids(self) -> frozenset[str]: ...


@dataclass
class StageRecorder:
    """Collects what a stage did; signs and appends when the ``with`` block succeeds."""

    attestor: Attestor
    stage_name: str
    materials: list[ArtifactRef] = field(default_factory=list)
    products: list[ArtifactRef] = field(default_factory=list)
    metadata_parts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    metadata_files: list[Path] = field(default_factory=list)
    fingerprints: list[tuple[str, Path]] = field(default_factory=list)  # (set name, CSV): split's leakage proof
    result: Attestation | None = None
    started_on: str = field(default_factory=utc_now)

    def material(self, path: str | os.PathLike[str], role: str | None = None) -> None:
        self.materials.append(ArtifactRef(Path(path), role))

    def product(self, path: str | os.PathLike[str], role: str | None = None) -> None:
        self.products.append(ArtifactRef(Path(path), role))

    def metadata_file(self, path: str | os.PathLike[str]) -> None:
        """Metadata read from a file; when the file is also a product the gate can check the binding."""
        self.metadata_files.append(Path(path))

    def metadata(self, values: dict[str, Any] | None = None, /, **fields: Any) -> None:
        self.metadata_parts.append((f"metadata #{len(self.metadata_parts) + 1}", {**(values or {}), **fields}))

    def __enter__(self) -> StageRecorder:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.result = self.attestor.attest(
                self.stage_name, metadata_files=self.metadata_files, metadata_parts=self.metadata_parts,
                materials=self.materials, fingerprints=self.fingerprints,
                products=self.products, started_on=self.started_on)


class Attestor:
    """Appends stage attestations to one bundle, signed with keys or (``keyless``) Sigstore."""

    def __init__(self, bundle: str | os.PathLike[str], signers: Signer | Sequence[Signer] = (),
                 *, base_dir: str | os.PathLike[str] | None = None,
                 keyless: Callable[[bytes], bytes] | None = None, fail_on_secret: bool = False,
                 head: HeadSigning | None = None, capture_run: bool = True, policy: AppendPolicy | None = None,
                 force: bool = False):
        self.bundle = open_bundle(bundle)
        # What ran (command, git, Python, distributions, lockfiles, CI job): attest/runinfo.py.
        self.capture_run = capture_run
        # With ``policy``, every append is first judged by the gate's own rules and refused (AppendRefused,
        # nothing written) when the gate would refuse it; ``force`` appends anyway and records why.
        self.policy = policy
        self.force = force
        self.fail_on_secret = fail_on_secret  # the default for every attest(), stage() blocks included
        # With ``head``, every append re-signs head.dsse.json under the same lock (docs/security.md).
        self.head = head
        self.signers = [signers] if isinstance(signers, Signer) else list(signers)
        self.keyless = keyless
        if not self.signers and keyless is None:
            raise InputError("at least one signing key is needed (or Sigstore keyless signing)")
        # Relative artifact paths are relative to base_dir (the project root), which also
        # anchors the names recorded in descriptors.
        self.base_dir = (Path(base_dir) if base_dir is not None else Path.cwd()).absolute()

    def _seal(self, payload: bytes) -> tuple[bytes, str]:
        """The file to store for a payload, and its kind (dsse or sigstore)."""
        if self.keyless is not None:
            return self.keyless(payload), "sigstore"
        envelope = Envelope(payload_type=IN_TOTO_PAYLOAD_TYPE, payload=payload)
        for signer in self.signers:
            envelope.sign(signer)
        return envelope.to_json(), "dsse"

    def _captured_run(self) -> tuple[dict[str, Any], list[str]]:
        """The automatically captured part of ``run`` (redacted) and its redaction pointers."""
        if not self.capture_run:
            return {}, []
        from mlspec_attest.attest.runinfo import capture

        return capture(self.base_dir)

    def stage(self, name: str) -> StageRecorder:
        resolve(name)  # fail early on a typo
        return StageRecorder(self, name)

    def _fingerprints(self, fingerprints: Iterable[tuple[str, str | os.PathLike[str]]],
                      known: dict[Path, str] | None = None) -> tuple[list[dict[str, Any]], list[bytes]]:
        """Split's row fingerprints of each named set: the subjects, and the blobs the bundle keeps (leakage.py).

        ``known`` maps resolved product paths to the sha256 just computed for them, so a set
        that is also a product is not read a second time for its ``fingerprints-of-sha256``.
        """
        blobs: list[bytes] = []
        descriptors: list[dict[str, Any]] = []
        for set_name, csv_path in fingerprints:
            from mlspec_attest.leakage import FINGERPRINT_ROLE_PREFIX, fingerprints_of_csv
            from mlspec_attest.model.canonical import sha256_hex

            if not set_name or not all(c.isalnum() or c in "-_" for c in set_name):
                raise InputError(f"--fingerprints {set_name}={csv_path}: the set name must be letters, digits, - or _")
            csv_file = Path(csv_path) if Path(csv_path).is_absolute() else self.base_dir / csv_path
            try:
                fp_bytes = fingerprints_of_csv(csv_file)
            except OSError as exc:
                raise InputError(f"{csv_path}: cannot read the data set to fingerprint: {exc.strerror or exc}") from None
            blobs.append(fp_bytes)
            descriptors.append(resource_descriptor(
                f"mlspec:fingerprints/{set_name}", sha256_hex(fp_bytes),
                annotations={ROLE_ANNOTATION: FINGERPRINT_ROLE_PREFIX + set_name,
                             "mlspec.dev/fingerprints-of": _descriptor_name(Path(csv_path), self.base_dir),
                             # the gate binds the proof to split's data subject by this digest (LEAKAGE_EVIDENCE_UNBOUND)
                             "mlspec.dev/fingerprints-of-sha256": (known or {}).get(csv_file.resolve())
                             or _file_sha256(csv_file)}))
        return descriptors, blobs

    def attest(self, stage: str | Stage, *, metadata: dict[str, Any] | None = None,
               metadata_files: Iterable[str | os.PathLike[str]] = (),
               metadata_parts: Iterable[tuple[str, dict[str, Any]]] = (),
               sets: Iterable[str] = (), materials: Iterable[str | os.PathLike[str] | ArtifactRef] = (),
               products: Iterable[str | os.PathLike[str] | ArtifactRef] = (),
               allow_secrets: Iterable[str] = (), fail_on_secret: bool | None = None, started_on: str | None = None,
               invocation_id: str | None = None,
               evidence: Iterable[str | os.PathLike[str]] = (),
               fingerprints: Iterable[tuple[str, str | os.PathLike[str]]] = (),
               force: bool | None = None) -> Attestation:
        """Hash, build, validate, redact, sign and append one stage attestation.

        Secrets are redacted (``predicate.redactions`` lists them); with
        ``fail_on_secret`` any secret not kept by ``allow_secrets`` is an InputError
        instead, naming pointers only, and nothing is written.

        ``fingerprints`` are (set name, CSV path) pairs: split's row fingerprints of each
        set, computed here and kept in the bundle as the leakage proof (leakage.py).

        With a ``policy`` (the Attestor's), the would-be chain is judged by the gate's rules
        before signing and again once signed; an objection raises ``AppendRefused`` (exit 1)
        with nothing written, unless ``force``.
        """
        from mlspec_attest._internal.loaders import load_mapping
        from mlspec_attest.attest.redaction import redact_all, refusal
        from mlspec_attest.model.metadata import apply_set, merge_metadata, validate_metadata

        stage_obj = stage if isinstance(stage, Stage) else resolve(stage)
        started_on = started_on or utc_now()

        parts: list[tuple[str, dict[str, Any]]] = []
        metadata_refs: list[ArtifactRef] = []
        with _secret_free_errors():  # a duplicate key, a conflict, a bad number may be the credential
            for file in metadata_files:
                parts.append((os.fspath(file), load_mapping(file, "metadata file")))
                metadata_refs.append(ArtifactRef(Path(file).absolute()))  # read from the working directory
            parts.extend(metadata_parts)
            if metadata:
                parts.append(("metadata", metadata))
            merged = merge_metadata(parts) if parts else {}
        from_files = [(ref, part) for ref, (_, part) in zip(metadata_refs, parts)]
        for assignment in sets:
            _apply_set_quietly(apply_set, merged, assignment)
        material_rds = [describe(ArtifactRef.parse(m), self.base_dir) for m in materials]
        if stage_obj.name in DATASET_ROLES and "dataset" not in merged:
            # The data source is already attested as a material: name it rather than ask twice.
            datasets = [m["name"] for m in material_rds
                        if (m.get("annotations") or {}).get(ROLE_ANNOTATION) in DATASET_ROLES[stage_obj.name]]
            if len(datasets) == 1:
                merged["dataset"] = datasets[0]
        if stage_obj.name == "test" and "holdback" not in merged and any(
                (m.get("annotations") or {}).get(ROLE_ANNOTATION) in {"holdback-data", "test-data"}
                for m in material_rds):
            merged["holdback"] = True
        source = ", ".join(name for name, _ in parts) or "metadata"
        redaction = redact_all(merged, allow_secrets)
        if (self.fail_on_secret if fail_on_secret is None else fail_on_secret) and redaction.reasons:
            raise InputError(refusal(redaction.reasons, ", ".join([name for name, _ in parts] + ["--set"] * bool(sets))
                                     or "metadata"))
        clean, redactions = redaction.metadata, redaction.pointers
        validate_metadata(stage_obj.name, clean, source=source)
        if stage_obj.name == "objectives":
            # The same checks as 'mlspec objectives check': never sign criteria the gate would refuse.
            from mlspec_attest.objectives.criteria import Objectives  # lazy: CEL

            Objectives.from_dict(clean, source=source).compile_all()
        if stage_obj.name in DATA_STAGES:
            _refuse_deprecated(stage_obj.name, clean, source)

        product_refs = [ArtifactRef.parse(p) for p in products]
        manifests: dict[str, bytes] = {}
        subject_rds = [describe(ref, self.base_dir, manifests if stage_obj.name in MANIFEST_STAGES else None)
                       for ref in product_refs]
        known = {(r.path if r.path.is_absolute() else self.base_dir / r.path).resolve(): d["digest"]["sha256"]
                 for r, d in zip(product_refs, subject_rds) if "annotations" not in d
                 or MANIFEST_ANNOTATION not in d["annotations"]}  # files only: a directory's digest is not its sha256
        fingerprint_rds, fingerprint_blobs = self._fingerprints(fingerprints, known)
        subject_rds.extend(fingerprint_rds)
        bound_sources, bound_blobs = _bind_metadata_sources(from_files, subject_rds, merged)
        if not subject_rds:
            # No products: the statement is about the stage's metadata itself.
            from mlspec_attest.model.canonical import canonicalize, sha256_hex

            subject_rds = [resource_descriptor(f"mlspec:{stage_obj.name}-metadata",
                                               sha256_hex(canonicalize(clean)))]
        _refuse_duplicate_names(subject_rds, "--product")
        evidence_blobs, evidence_rds = _evidence_files(evidence)
        captured, run_redactions = self._captured_run()

        run_id = invocation_id or str(uuid.uuid4())

        def statement_for(link: ChainLink) -> tuple[dict[str, Any], bytes]:
            run = {
                "startedOn": started_on,
                "finishedOn": utc_now(),
                "tool": {"name": TOOL_NAME, "version": __version__},
                "invocationId": run_id,
                "host": socket.gethostname(),
                **captured,
            }
            if run_redactions:
                run["redactions"] = run_redactions  # pointers into run (the command line, the CI variables)
            return build_statement(stage_obj, chain=link, subjects=subject_rds, materials=material_rds,
                                   metadata=clean, run=run, redactions=redactions, evidence=evidence_rds,
                                   extra={METADATA_SOURCES_FIELD: bound_sources} if bound_sources else None)

        def link_after(tip: Head | None) -> ChainLink:
            if tip is None:
                return GENESIS
            if stage_obj.name == "objectives":
                raise InputError(
                    f"{self.bundle.label}: objectives can only be the first attestation (sequence 0); "
                    "the chain already has one, and criteria cannot change after the pipeline started")
            return ChainLink(genesis=tip.genesis, sequence=tip.sequence + 1, previous=tip.payload_sha256)

        forcing = self.force if force is None else force
        if not self.bundle.is_remote:
            # An append that will be refused must not touch the bundle at all (not even create it or its
            # lock file): judged here first, and again under the lock below. The head's evidence only
            # (trusted=None): the gate's rules word a revoked key better; whether the head is believed is
            # judged under the lock, before anything is written.
            tip = tip_not_behind_head(self.bundle, trusted=None, initial=self.head is None)
        if self.policy is not None and not forcing and not self.bundle.is_remote:
            # Keyless signing publishes, so only keys sign this dry run.
            self._preflight(statement_for(link_after(tip))[1], 0 if tip is None else tip.sequence + 1,
                            stage_obj.name, False, seal=self.keyless is None)
        with self.bundle.locked():
            for _attempt in self.bundle.attempts():  # one under the local lock; bounded retries on S3
                # Never extend (nor re-sign the head of) a chain its signed head says is longer: that is
                # how a removed tail would be laundered into a chain that passes (attest/head.py).
                head = tip_not_behind_head(self.bundle, trusted=self._head_trust(), initial=self.head is None)
                link = link_after(head)
                statement, payload = statement_for(link)  # re-linked on every retry
                try:
                    forced, sealed = self._preflight(payload, link.sequence, stage_obj.name, forcing)
                except AppendRefused as exc:
                    if self.bundle.is_remote and exc.findings and all(
                            getattr(f, "code", None) == "CHAIN_FORK" for f in exc.findings):
                        continue  # another writer published this sequence after we read the tip: re-link
                    raise
                assert sealed is not None
                data, kind = sealed
                for content, descriptor in zip(evidence_blobs, evidence_rds):
                    self.bundle.store_file(descriptor["name"], content)
                for ref, descriptor in zip(product_refs, subject_rds):
                    if is_fingerprint_role(ref.role):
                        # Small, and the verifier needs the bytes to prove the sets are disjoint.
                        from mlspec_attest._internal.files import read_file
                        from mlspec_attest.model.canonical import sha256_hex

                        path = ref.path if ref.path.is_absolute() else self.base_dir / ref.path
                        blob = read_file(path, what="row fingerprints")
                        if sha256_hex(blob) != descriptor["digest"]["sha256"]:
                            raise InputError(f"{path}: changed while it was being attested; run the stage again")
                        self.bundle.store_file(f"blobs/{descriptor['digest']['sha256']}", blob)
                for blob in [*manifests.values(), *fingerprint_blobs, *bound_blobs]:
                    from mlspec_attest.model.canonical import sha256_hex

                    self.bundle.store_file(f"blobs/{sha256_hex(blob)}", blob)
                try:
                    path = self.bundle.write_new(attestation_file_name(link.sequence, stage_obj.name, kind), data)
                except SequenceTaken:
                    continue  # another writer took this sequence: re-read the tip, re-link, re-sign
                if self.head is not None:
                    # A crash between the two writes leaves a head one behind (HEAD_BEHIND), never a wrong one.
                    sign_head_locked(self.bundle, self.head, at_least=Head(
                        sequence=link.sequence, payload_sha256=payload_digest(payload),
                        genesis=link.genesis or payload_digest(payload)))
                break
        return Attestation(sequence=link.sequence, stage=stage_obj.name, path=path,
                           payload_sha256=payload_digest(payload), statement=statement, redactions=redactions,
                           run_redactions=run_redactions, forced=forced)

    def _head_trust(self) -> tuple[PublicKey, ...] | None:
        """Whose signed head this writer believes before it re-signs one (None: it signs none)."""
        if self.head is None:
            return None
        also, never = list(self.head.also_trust), set(self.head.distrust)
        if self.policy is not None:
            also += self.policy.head_keys()
            never |= self.policy.distrusted_keyids()
        return trusted_head_keys(self.head.signers, also, never)

    def _preflight(self, payload: bytes, sequence: int, stage: str, force: bool, *, seal: bool = True
                   ) -> tuple[tuple[Finding, ...], tuple[bytes, str] | None]:
        """The gate's rules on the statement, then (once sealed) on its signatures; returns what ``force`` overrode."""
        forced = self._judge(self.policy.check_statement(self.bundle, payload), sequence, stage, force) \
            if self.policy is not None else ()
        if not seal:
            return forced, None
        sealed = self._seal(payload)  # after the statement rules: keyless signing publishes to Rekor
        if self.policy is not None:
            forced += self._judge(self.policy.check_signatures(self.bundle, payload, *sealed), sequence, stage, force)
        return forced, sealed

    def _judge(self, findings: list[Finding], sequence: int, stage: str, force: bool) -> tuple[Finding, ...]:
        """Refuse (AppendRefused, one line naming the rule) unless ``force``; returns what was overridden."""
        if not findings or force:
            return tuple(findings)
        assert self.policy is not None
        first = findings[0]
        more = f" (and {len(findings) - 1} more: {', '.join(f.code for f in findings[1:])})" if len(findings) > 1 else ""
        fix = f"Fix it ({first.hint.rstrip('.')})" if first.hint else "Fix it"
        raise AppendRefused(f"{self.bundle.label}: refused to append sequence {sequence} ({stage}): the gate's policy "
                            f"{self.policy.source} would refuse it: [{first.code}] {first.message}{more}. Nothing was "
                            f"written. {fix}, or pass --force to append anyway (the gate will still refuse it)",
                            tuple(findings))


def _evidence_files(evidence: Iterable[str | os.PathLike[str]]) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Each --evidence file, parsed as the DSSE envelope or Sigstore bundle it claims to be, and its descriptor."""
    evidence_blobs: list[bytes] = []
    evidence_rds: list[dict[str, Any]] = []
    for file in evidence:
        from mlspec_attest._internal.loaders import read_bounded
        from mlspec_attest.model.canonical import sha256_hex

        content = read_bounded(file, what="evidence file")
        digest = sha256_hex(content)
        kind = _evidence_kind(content, os.fspath(file))
        evidence_blobs.append(content)
        evidence_rds.append(resource_descriptor(
            f"evidence/{digest}.{kind}.json", digest,
            annotations={"source": Path(file).name, "kind": kind}))
    return evidence_blobs, evidence_rds


def _evidence_kind(content: bytes, source: str) -> str:
    """``dsse`` or ``sigstore``: evidence is parsed as what it claims to be, or refused.

    Copying any file into the bundle would ship a mistaken ``--evidence .env`` (with its
    passwords) next to the model; only a DSSE envelope or a Sigstore bundle is evidence.
    """
    from mlspec_attest.model.canonical import parse_json

    hint = f"{source}: not evidence: --evidence takes a DSSE envelope or a Sigstore bundle (JSON); nothing was written"
    with _secret_free_errors():
        try:
            data = parse_json(content, source=source)
        except InputError:
            raise InputError(hint) from None
        if isinstance(data, dict) and "mediaType" in data:
            from mlspec_attest.evidence.sigstore import parse_bundle

            try:
                parse_bundle(content, source)
            except InputError:  # its schema errors quote input values: say less
                raise InputError(f"{source}: not a Sigstore bundle (it has a mediaType but does not parse as one; "
                                 "'mlspec evidence verify' says why); nothing was written") from None
            return "sigstore"
        try:
            Envelope.from_dict(data)
        except ValueError as exc:
            raise InputError(f"{hint} ({exc})") from None
    return "dsse"


def _refuse_duplicate_names(descriptors: list[dict[str, Any]], flag: str) -> None:
    seen: set[str] = set()
    for rd in descriptors:
        if rd["name"] in seen:
            raise InputError(f"{flag} {rd['name']} given twice")
        seen.add(rd["name"])


@contextlib.contextmanager
def _secret_free_errors(hints: Iterable[str] = ()) -> Iterator[None]:
    """Every InputError raised inside leaves with its message sanitised (stderr goes to CI logs)."""
    from mlspec_attest.attest.redaction import sanitise_message

    try:
        yield
    except InputError as exc:
        raise type(exc)(sanitise_message(str(exc), hints)) from None


def _apply_set_quietly(apply_set: Callable[[dict[str, Any], str], Any], merged: dict[str, Any],
                       assignment: str) -> None:
    """``--set`` errors quote the assignment; never let one quote a secret value."""
    from mlspec_attest.attest.redaction import is_secret_key, secret_pattern

    key, _, value = assignment.partition("=")
    secret = bool(value) and (bool(secret_pattern(assignment)) or bool(secret_pattern(value))
                              or any(is_secret_key(part) for part in key.split(".")))
    with _secret_free_errors([value] if secret else []):
        apply_set(merged, assignment)


def _refuse_deprecated(stage: str, metadata: dict[str, Any], source: str) -> None:
    """Data marked deprecated (the seed's ``isDeprecated``) must not flow into training."""
    from mlspec_attest.model.metadata import deprecated_markers

    found = deprecated_markers(metadata)
    if found:
        raise InputError(f"{source}: metadata for stage {stage!r} marks its data deprecated at {found[0]}; "
                         "use a current dataset version (the gate refuses deprecated data)")


def _bind_metadata_sources(from_files: list[tuple[ArtifactRef, dict[str, Any]]], subject_rds: list[dict[str, Any]],
                           signed: dict[str, Any]) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Record which metadata came from a file this stage also attests as a product, and refuse contradictions.

    The product's bytes are kept in the bundle (blobs/<sha256>) so the gate and replay
    can check, from the bundle alone, that the signed metadata still says what the
    hashed file says (a ``--set`` cannot quietly raise a metric the report does not have).
    """
    from mlspec_attest._internal.loaders import read_bounded
    from mlspec_attest.attest.redaction import redact
    from mlspec_attest.model.canonical import sha256_hex
    from mlspec_attest.model.metadata import contradictions

    # A product is bound by content, not path: a copy, hard link or symlink of the file counts too.
    by_digest = {rd["digest"]["sha256"]: rd for rd in subject_rds}
    bound: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for ref, part in from_files:
        content = read_bounded(ref.path, what="metadata file")
        rd = by_digest.get(sha256_hex(content))
        if rd is None:
            continue
        if redact(part, ())[1]:
            raise InputError(f"{ref.path}: this metadata file is also a product and holds a secret; keeping it as "
                             "the bundle's proof would publish the secret, so move the secret out of the file")
        differ = contradictions(part, signed)
        if differ:
            raise InputError(f"{ref.path}: the signed metadata would say something else than this file, which is "
                             f"also attested as a product, at {differ[0]}; change the file, not the metadata")
        bound.append({"name": rd["name"], "digest": dict(rd["digest"])})
        blobs.append(content)
    return bound, blobs

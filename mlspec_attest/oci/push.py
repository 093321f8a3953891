"""``mlspec push BUNDLE oci://...``: the packaged model as an artifact, the chain and VSA as its referrers.

Only an artifact the gate binds is pushed: the bundle is verified first with the local
policy and ``--artifact`` (the packaged directory or file), so a push can never attach
a chain to files it does not attest. Blobs upload with their digest, so the registry
itself refuses a file that changed between hashing and upload.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from mlspec_attest.bundle import ATTESTATIONS, BLOBS, EVIDENCE, MAX_BUNDLE_BYTES, TEMP_PREFIX
from mlspec_attest.errors import InputError
from mlspec_attest.model.head import HEAD_FILE
from mlspec_attest.model.report import Report
from mlspec_attest.oci.layout import (
    CHAIN_ARTIFACT_TYPE,
    CONTENT_ANNOTATION,
    DSSE_MEDIA_TYPE,
    EMPTY,
    EMPTY_BLOB,
    FILE_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MODEL_ARTIFACT_TYPE,
    PACKAGE_SHA256,
    PREDICATE_TYPE_ANNOTATIONS,
    SEQUENCE,
    TITLE,
    UNPACK_ANNOTATION,
    VSA_PREDICATE_TYPE,
    Descriptor,
    LayoutError,
    Manifest,
    bundle_media_type,
    check_title,
    descriptor_of,
    encode_index,
    fallback_tag,
)
from mlspec_attest.oci.package import PackageError, expected_files
from mlspec_attest.oci.reference import OciReference
from mlspec_attest.oci.registry import DigestMismatch, RegistryClient

# Every folder a bundle keeps (bundle.py, evidence/timestamp.py) and the chain head (model/head.py).
BUNDLE_FOLDERS = (ATTESTATIONS, BLOBS, EVIDENCE, "timestamps")
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class PushResult:
    model: str  # oci://...@sha256: of the model manifest
    model_pushed: bool
    chain: str
    vsa: str | None
    referrers_via: str
    uploaded_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def bundle_files(root: Path) -> list[tuple[str, bytes]]:
    """Every file the chain needs, by bundle-relative path: head, attestations, blobs, evidence (no symlinks)."""
    from mlspec_attest._internal import files as safe

    found: list[tuple[str, bytes]] = []
    total = 0

    def add(rel: str) -> None:
        nonlocal total
        data = safe.read_file(rel, root=root, limit=MAX_FILE_BYTES, what="bundle file")
        total += len(data)
        if total > MAX_BUNDLE_BYTES:
            raise InputError(f"{root}: bundle files add up to more than {MAX_BUNDLE_BYTES} bytes; refusing to push")
        found.append((rel, data))

    def walk(rel: str) -> None:
        for name in sorted(safe.list_names(root, rel)):
            if name.startswith(".") or name.startswith(TEMP_PREFIX):
                continue
            child = f"{rel}/{name}"
            st = os.lstat(root / child)
            if stat.S_ISLNK(st.st_mode):
                raise InputError(f"{root / child}: is a symlink; a bundle pushed to a registry holds real files only")
            if stat.S_ISDIR(st.st_mode):
                walk(child)
            elif stat.S_ISREG(st.st_mode):
                add(child)

    if (root / HEAD_FILE).is_file() and not (root / HEAD_FILE).is_symlink():
        add(HEAD_FILE)
    for folder in BUNDLE_FOLDERS:
        if safe.exists(folder, root=root):
            walk(folder)
    return found


def _model_manifest(report: Report, bundle_root: Path, artifact: Path) -> tuple[Manifest, list[tuple[Path, Descriptor]]]:
    try:
        line, files = expected_files(report, bundle_root)
    except PackageError as exc:
        raise InputError(f"{bundle_root}: {exc}") from None
    base = artifact if artifact.is_dir() else artifact.parent
    real_base = base.resolve()
    uploads: list[tuple[Path, Descriptor]] = []
    for title, sha256 in files.items():
        try:
            check_title(title, f"{bundle_root}: packaged file")
        except LayoutError as exc:
            raise InputError(f"{exc}; it cannot be an OCI layer title (rename it and re-attest the package)") from None
        path = base / title if artifact.is_dir() else artifact
        # Never open outside the artifact: a symlinked parent or file pointing elsewhere is refused.
        if not path.resolve().is_relative_to(real_base) or not path.is_file():
            raise InputError(f"{path}: not a regular file inside {artifact}; refusing to push what lies outside it")
        size = path.stat().st_size
        uploads.append((path, Descriptor(FILE_MEDIA_TYPE, f"sha256:{sha256}", size, {TITLE: title})))
    annotations = {SEQUENCE: str(line.sequence)}
    subjects = [s for s in line.subjects if not str(s.get("name", "")).startswith("mlspec:")]
    if len(subjects) == 1:
        annotations[PACKAGE_SHA256] = subjects[0]["digest"]["sha256"]
        annotations[TITLE] = str(subjects[0].get("name", ""))
    return Manifest(MODEL_ARTIFACT_TYPE, EMPTY, tuple(d for _, d in uploads), annotations=annotations), uploads


def _same_files(manifest: Manifest, wanted: Manifest) -> bool:
    """Same files, typed as plain files, empty config: what the gate accepts (gate._layer_problem)."""
    def key(m: Manifest) -> list[tuple[str | None, str, str, bool]]:
        return sorted((d.title, d.digest, d.media_type, UNPACK_ANNOTATION in d.annotations) for d in m.layers)

    return manifest.config == EMPTY and key(manifest) == key(wanted)


def _statement_type(data: bytes) -> str | None:
    """The predicateType inside a DSSE file (unverified: a discovery hint for other tools, never trusted)."""
    from mlspec_attest.bundle import extract_payload
    from mlspec_attest.model.canonical import parse_json

    try:
        value = parse_json(extract_payload("dsse", data), source="payload").get("predicateType")
    except (ValueError, InputError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def push(report: Report, bundle_root: Path, artifact: Path, target: OciReference, *, plain_http: bool = False,
         vsa: bytes | None = None) -> PushResult:
    """Push a verified bundle's package to ``target`` and attach chain (and VSA) as referrers."""
    client = RegistryClient(target, plain_http=plain_http)
    model, uploads = _model_manifest(report, bundle_root, artifact)
    reference = target.tag or target.digest or "latest"
    uploaded = 0
    model_pushed = False
    subject_bytes: bytes
    notes: list[str] = []
    try:
        existing = client.get_manifest(reference) if target.tag else None
    except DigestMismatch as exc:  # an index or another document at the tag: replaced, said so
        existing = None
        notes.append(f"tag {reference} held something that is not an image manifest ({exc}); replaced")
    if existing is not None and _reuse(existing[0], model):
        subject_bytes = existing[0]
    else:
        if existing is not None:
            notes.append(f"tag {reference} moved from {existing[1]} (other files) to this package")
        subject_bytes = model.encode()
        digest = descriptor_of(MANIFEST_MEDIA_TYPE, subject_bytes).digest
        if target.digest and target.digest != digest:
            raise InputError(f"{target}: this package's manifest would be {digest}, not {target.digest}; push to a "
                             "tag instead")
        if not client.manifest_exists(digest) or target.tag:
            client.upload_bytes(EMPTY_BLOB, EMPTY)
            for path, descriptor in uploads:
                client.upload_file(path, descriptor)
                uploaded += descriptor.size
            client.put_manifest(subject_bytes, reference)
            model_pushed = True
    subject = descriptor_of(MANIFEST_MEDIA_TYPE, subject_bytes)
    subject = Descriptor(subject.media_type, subject.digest, subject.size, {})

    files = bundle_files(bundle_root)
    layers = []
    for rel, data in files:
        annotations = {TITLE: rel}
        layer = descriptor_of(bundle_media_type(rel), data, annotations)
        client.upload_bytes(data, layer)
        uploaded += layer.size
        layers.append(layer)
    chain = Manifest(CHAIN_ARTIFACT_TYPE, EMPTY, tuple(layers), subject=subject,
                     annotations={SEQUENCE: str(max((s.sequence for s in report.stages), default=0))})
    chain_digest = client.put_manifest(chain.encode(), chain.descriptor().digest)
    attached = [chain.descriptor()]
    vsa_digest = None
    if vsa is not None:
        predicate = _statement_type(vsa) or VSA_PREDICATE_TYPE
        annotations = {CONTENT_ANNOTATION: "dsse-envelope", **{k: predicate for k in PREDICATE_TYPE_ANNOTATIONS}}
        layer = descriptor_of(DSSE_MEDIA_TYPE, vsa, {TITLE: "vsa.dsse.json", "predicateType": predicate})
        client.upload_bytes(vsa, layer)
        vsa_manifest = Manifest(DSSE_MEDIA_TYPE, EMPTY, (layer,), subject=subject, annotations=annotations)
        vsa_digest = client.put_manifest(vsa_manifest.encode(), vsa_manifest.descriptor().digest)
        attached.append(vsa_manifest.descriptor())
    via = "referrers API"
    if not client.referrers_api(subject.digest):
        via = "referrers tag schema"
        current = client.fallback_index(subject.digest)
        known = {d.digest for d in current}
        merged = current + [d for d in attached if d.digest not in known]
        if len(merged) != len(current):
            client.put_manifest(encode_index(merged), fallback_tag(subject.digest), media_type=INDEX_MEDIA_TYPE)
    model_ref = target.with_digest(subject.digest)
    return PushResult(model=str(model_ref), model_pushed=model_pushed, chain=chain_digest, vsa=vsa_digest,
                      referrers_via=via, uploaded_bytes=uploaded, notes=notes)


def _reuse(data: bytes, wanted: Manifest) -> bool:
    """An artifact already at the tag is reused when its layers are exactly the package's files."""
    from mlspec_attest.model.canonical import parse_json

    try:
        return _same_files(Manifest.from_dict(parse_json(data, source="manifest"), "manifest"), wanted)
    except (LayoutError, InputError):
        return False

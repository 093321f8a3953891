"""The wire layout in the registry: media types, annotations, and the manifests mlspec writes and reads.

Every manifest mlspec writes is RFC 8785 canonical JSON, so its digest is reproducible.
Everything read back is validated here before it is used: a descriptor must have a
sha256 digest, a non-negative integer size and a media type, and a title must be a
plain relative path (no ``..``, no absolute path, no backslash), so a hostile registry
cannot name a file outside the download directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mlspec_attest.model.canonical import canonicalize, sha256_hex

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
# The model: one layer per packaged file, named by its path in the package.
MODEL_ARTIFACT_TYPE = "application/vnd.mlspec.model.v1"
FILE_MEDIA_TYPE = "application/vnd.mlspec.model.file.v1"
# The chain: one referrer whose layers are the bundle's files.
CHAIN_ARTIFACT_TYPE = "application/vnd.mlspec.chain.v1"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"  # as cosign stores DSSE attestations
SIGSTORE_BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
BLOB_MEDIA_TYPE = "application/vnd.mlspec.bundle.blob.v1"
# The VSA: its own referrer, typed like a cosign bundle-format attestation so admission controllers find it.
VSA_PREDICATE_TYPE = "https://slsa.dev/verification_summary/v1"
TITLE = "org.opencontainers.image.title"
UNPACK_ANNOTATION = "io.deis.oras.content.unpack"  # ORAS unpacks such a layer as a directory archive
PREDICATE_TYPE_ANNOTATIONS = ("dev.sigstore.bundle.predicateType", "in-toto.io/predicate-type")
CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
PACKAGE_SHA256 = "mlspec.dev/package-sha256"
SEQUENCE = "mlspec.dev/chain-sequence"

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # the distribution spec's recommended manifest limit
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_SEGMENT = re.compile(r"[A-Za-z0-9_+=-][A-Za-z0-9_.+=-]*")


class LayoutError(ValueError):
    """A manifest, index or descriptor that is not what mlspec can use (the message says why)."""


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor, validated at construction."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str]
    artifact_type: str | None = None

    @property
    def sha256(self) -> str:
        return self.digest[len("sha256:"):]

    @property
    def title(self) -> str | None:
        return self.annotations.get(TITLE)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Descriptor:
        if not isinstance(data, dict):
            raise LayoutError(f"{where}: a descriptor must be an object")
        media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise LayoutError(f"{where}: descriptor has no mediaType")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise LayoutError(f"{where}: descriptor digest {digest!r} is not sha256:<64 hex>")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise LayoutError(f"{where}: descriptor size {size!r} is not a non-negative integer")
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                        for k, v in annotations.items()):
            raise LayoutError(f"{where}: annotations must map strings to strings")
        artifact_type = data.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise LayoutError(f"{where}: artifactType must be a string")
        return cls(media_type, digest, size, dict(annotations), artifact_type)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def descriptor_of(media_type: str, data: bytes, annotations: dict[str, str] | None = None,
                  artifact_type: str | None = None) -> Descriptor:
    return Descriptor(media_type, f"sha256:{sha256_hex(data)}", len(data), dict(annotations or {}), artifact_type)


EMPTY = descriptor_of(EMPTY_MEDIA_TYPE, EMPTY_BLOB)


def check_title(title: str | None, where: str) -> str:
    """A layer title usable as a relative file path below a download directory, or LayoutError."""
    from mlspec_attest.manifest import path_problem

    if not title:
        raise LayoutError(f"{where}: layer has no {TITLE} annotation")
    problem = path_problem(title)  # the rule every manifest path obeys; then the stricter file-name set below
    if problem:
        raise LayoutError(f"{where}: layer title {title!r} {problem}; not a plain relative path")
    parts = title.split("/")
    if len(title) > 1024 or any(not _SEGMENT.fullmatch(p) or p in (".", "..") for p in parts):
        raise LayoutError(f"{where}: layer title {title!r} is not a plain relative path")
    return title


@dataclass(frozen=True)
class Manifest:
    """An OCI image manifest as mlspec uses it (artifact type, layers, optional subject)."""

    artifact_type: str | None
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Manifest:
        if not isinstance(data, dict) or data.get("schemaVersion") != 2:
            raise LayoutError(f"{where}: not an OCI manifest (schemaVersion 2)")
        # An ambiguous document (CVE-2021-41190): without its own mediaType, or with an index's
        # "manifests", other clients may read the same digest as an index of other images.
        if data.get("mediaType") != MANIFEST_MEDIA_TYPE:
            raise LayoutError(f"{where}: mediaType {data.get('mediaType')!r} is not {MANIFEST_MEDIA_TYPE}; refusing "
                              "a manifest that does not say what it is")
        if "manifests" in data:
            raise LayoutError(f"{where}: an image manifest with an index's \"manifests\" is ambiguous; refusing it")
        layers = data.get("layers")
        if not isinstance(layers, list):
            raise LayoutError(f"{where}: manifest has no layers list")
        config = Descriptor.from_dict(data.get("config"), f"{where} config")
        artifact_type = data.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise LayoutError(f"{where}: artifactType must be a string")
        subject = data.get("subject")
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise LayoutError(f"{where}: annotations must map strings to strings")
        return cls(artifact_type=artifact_type or (config.media_type if config.media_type != EMPTY_MEDIA_TYPE else None),
                   config=config,
                   layers=tuple(Descriptor.from_dict(d, f"{where} layer {i}") for i, d in enumerate(layers)),
                   subject=Descriptor.from_dict(subject, f"{where} subject") if subject is not None else None,
                   annotations=dict(annotations))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
                               "config": self.config.to_dict(), "layers": [d.to_dict() for d in self.layers]}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def encode(self) -> bytes:
        return canonicalize(self.to_dict())

    def descriptor(self) -> Descriptor:
        """How an index or a referrer's ``subject`` points at this manifest."""
        return descriptor_of(MANIFEST_MEDIA_TYPE, self.encode(), dict(self.annotations or {}), self.artifact_type)


def parse_index(data: Any, where: str) -> list[Descriptor]:
    """The ``manifests`` of an OCI image index (a referrers response or the tag-schema fallback)."""
    if not isinstance(data, dict) or data.get("schemaVersion") != 2 or not isinstance(data.get("manifests"), list):
        raise LayoutError(f"{where}: not an OCI image index")
    if data.get("mediaType") != INDEX_MEDIA_TYPE or "layers" in data or "config" in data:
        raise LayoutError(f"{where}: an index must declare mediaType {INDEX_MEDIA_TYPE} and hold no \"layers\" or "
                          "\"config\" (an ambiguous document, CVE-2021-41190); refusing it")
    return [Descriptor.from_dict(d, f"{where} manifests[{i}]") for i, d in enumerate(data["manifests"])]


def encode_index(manifests: list[Descriptor]) -> bytes:
    return canonicalize({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE,
                         "manifests": [d.to_dict() for d in manifests]})


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: ``sha256:<hex>`` -> ``sha256-<hex>``."""
    return digest.replace(":", "-", 1)


def bundle_media_type(path: str) -> str:
    """The media type of one bundle file in the chain referrer, by its bundle-relative path."""
    if path.endswith(".dsse.json"):
        return DSSE_MEDIA_TYPE
    if path.endswith(".sigstore.json"):
        return SIGSTORE_BUNDLE_MEDIA_TYPE
    return BLOB_MEDIA_TYPE

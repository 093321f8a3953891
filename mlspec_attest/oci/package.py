"""What the model artifact must hold: the packaged files the chain's last package stage signed.

The same function tells ``push`` which layers to upload and ``verify oci://`` which layers
to expect, so the two cannot drift. A directory subject contributes the files of its
signed manifest (``blobs/<manifest-sha256>``, checked against the signed digest); a file
subject contributes itself under its base name. A manifest must recompute to its
subject's own signed digest (MANIFEST_UNBOUND), or a runner could sign the real digest
while the layers follow a manifest of other files.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from mlspec_attest.digests import MANIFEST_ANNOTATION
from mlspec_attest.model.report import Report, StageLine
from mlspec_attest.verify.lineage import METADATA_SUBJECT_PREFIX, PACKAGE_ROLE

ROLE = "role"


class PackageError(ValueError):
    """The chain does not say which files make up the model (no package stage, manifest missing...)."""

    def __init__(self, message: str, code: str = "OCI_LAYER_MISMATCH") -> None:
        super().__init__(message)
        self.code = code  # the gate's finding code


def last_package(report: Report) -> StageLine:
    packages = [s for s in report.stages if s.stage == "package"]
    if not packages:
        raise PackageError("the chain has no package stage, so nothing says which files make up the model")
    return packages[-1]


def shipped_subjects(line: StageLine) -> list[dict[str, Any]]:
    """The package stage's role-``package`` subjects, else every file subject (as verify.lineage.package_subjects)."""
    subjects = [s for s in line.subjects if not str(s.get("name", "")).startswith(METADATA_SUBJECT_PREFIX)]
    tagged = [s for s in subjects if (s.get("annotations") or {}).get(ROLE) == PACKAGE_ROLE]
    return tagged or subjects


def expected_files(report: Report, bundle_root: Path) -> tuple[StageLine, dict[str, str]]:
    """(package stage, {layer title: sha256}) for the chain in ``report`` read from ``bundle_root``."""
    from mlspec_attest.manifest import ManifestUnbound, load

    line = last_package(report)
    files: dict[str, str] = {}
    for subject in shipped_subjects(line):
        name = str(subject.get("name", ""))
        manifest_sha256 = (subject.get("annotations") or {}).get(MANIFEST_ANNOTATION)
        if manifest_sha256:
            try:
                entries = load(bundle_root / "blobs", str(manifest_sha256), name,
                               subject_sha256=subject["digest"]["sha256"]).items()
            except ManifestUnbound as exc:
                raise PackageError(f"refusing the package: {exc}", "MANIFEST_UNBOUND") from None
            except (OSError, ValueError) as exc:
                raise PackageError(f"the signed file manifest of {name} is not usable: {exc}") from None
        else:
            entries = {posixpath.basename(name.rstrip("/")) or name: subject["digest"]["sha256"]}.items()
        for path, digest in entries:
            if files.get(path, digest) != digest:
                raise PackageError(f"two packaged subjects both hold {path!r} with different contents; an OCI "
                                   "artifact cannot carry both under one name")
            files[path] = digest
    if not files:
        raise PackageError(f"package stage (sequence {line.sequence}) ships no file")
    return line, files

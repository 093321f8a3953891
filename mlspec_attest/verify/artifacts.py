"""Deploy-time binding: the artifact about to ship is byte for byte what the package stage attested.

Only what the package ships (its role-``package`` subjects, see lineage.package_subjects)
can match: a side product of the package stage is not deployable. A directory is
compared file by file with the signed manifest kept in ``blobs/``, so a refusal names
the files that differ, are missing or were added.
"""

from __future__ import annotations

import os
from typing import Any

from mlspec_attest.digests import MANIFEST_ANNOTATION, ArtifactDigest, digest_path
from mlspec_attest.verify.context import VerifyContext, blob_source, digest_of
from mlspec_attest.verify.lineage import package_subjects


def _file_diff(ctx: VerifyContext, subjects: list[dict[str, Any]], digest: ArtifactDigest) -> str:
    """`` (differ: model.pkl)`` against the signed manifest of the (one) packaged directory."""
    from mlspec_attest.manifest import diff, load

    dirs = [s for s in subjects if (s.get("annotations") or {}).get(MANIFEST_ANNOTATION)]
    if not digest.is_dir or len(dirs) != 1:
        return ""
    s = dirs[0]
    try:
        signed = load(blob_source(ctx.bundle), str(s["annotations"][MANIFEST_ANNOTATION]), str(s.get("name")))
    except (OSError, ValueError):
        return " (its signed file manifest is not in the bundle, so the differing files cannot be named)"
    return f" ({s.get('name')}: {diff(signed, digest.files).describe()})"


def check_artifacts(ctx: VerifyContext) -> None:
    """Every --artifact must equal what the last package stage ships (digest and file manifest)."""
    chain, report, artifacts = ctx.chain, ctx.report, ctx.artifacts
    packages = [e for e in chain if e.stage == "package"]
    for artifact in artifacts:
        digest = digest_path(artifact)
        record: dict[str, Any] = {"path": os.fspath(artifact), "sha256": digest.sha256, "matched": None}
        report.artifacts.append(record)
        if not packages:
            report.add("ARTIFACT_NOT_PACKAGED", f"{artifact}: the chain has no package stage to bind it to",
                       stage="package")
            continue
        pkg = packages[-1]
        shipped = package_subjects(pkg)
        for s in shipped:
            annotations = s.get("annotations") or {}
            if digest_of(s) == digest.sha256 and annotations.get(MANIFEST_ANNOTATION) == digest.manifest_sha256:
                record["matched"] = {"sequence": pkg.sequence, "name": s.get("name")}
                break
        else:
            report.add("ARTIFACT_MISMATCH", f"{artifact} (sha256 {digest.sha256[:12]}…) is not what the package "
                       f"stage (sequence {pkg.sequence}) ships{_file_diff(ctx, shipped, digest)}; refusing to "
                       "deploy it", stage="package", sequence=pkg.sequence)

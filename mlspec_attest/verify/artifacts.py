"""Deploy-time binding: the artifact about to ship is byte for byte what the package stage attested."""

from __future__ import annotations

import os
from typing import Any

from mlspec_attest.digests import MANIFEST_ANNOTATION, digest_path
from mlspec_attest.verify.context import VerifyContext, digest_of


def check_artifacts(ctx: VerifyContext) -> None:
    """Every --artifact must equal a product of the last package stage (digest and file manifest)."""
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
        for s in pkg.statement.subjects:
            annotations = s.get("annotations") or {}
            if digest_of(s) == digest.sha256 and annotations.get(MANIFEST_ANNOTATION) == digest.manifest_sha256:
                record["matched"] = {"sequence": pkg.sequence, "name": s.get("name")}
                break
        else:
            report.add("ARTIFACT_MISMATCH", f"{artifact} (sha256 {digest.sha256[:12]}…) is not a product of the "
                       f"package stage (sequence {pkg.sequence}); refusing to deploy it", stage="package",
                       sequence=pkg.sequence)

"""Releases: a package names the release it succeeds, so a chain (one run) has a history.

A chain is one pipeline run. A *release history* is a directory holding one bundle per
release. A package stage declares its predecessor in its signed metadata::

    succeeds:
      package: {name: package/credit-model, digest: {sha256: <package digest>}}
      chain:   {genesis: <hex>, sequence: 12, payloadSha256: <hex of that attestation>}

``chain`` pins the predecessor's chain at an attestation at or after its package stage,
so a release with the right package digest but another chain (PREDECESSOR_MISMATCH)
cannot stand in for it. The gate (verify/releases.py) finds it in the history and
verifies it; a monitor may then roll back to any release of that verified line.

This module holds the wire object and the unverified reading that ``mlspec attest stage
package --succeeds BUNDLE`` does at signing time; nothing here is trusted by the gate.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlspec_attest.bundle import Bundle, extract_payload
from mlspec_attest.errors import InputError

SUCCEEDS = "succeeds"
PACKAGE_ROLE = "package"
MAX_RELEASES = 10_000  # bundles one history directory may hold (each is read only when its digest matches)
MAX_LINE = 64  # predecessors followed back from one release before the gate gives up (fail closed)
MAX_CANDIDATES = 16  # bundles verified per question (which is the predecessor, who succeeds it) before failing closed
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Predecessor:
    """The release a package succeeds: its package digest and the attestation its chain is pinned at."""

    package_name: str
    package_sha256: str
    genesis: str
    sequence: int
    payload_sha256: str

    @classmethod
    def from_dict(cls, data: Any, where: str = SUCCEEDS) -> Predecessor:
        """Validate at construction; ValueError names the field."""
        if not isinstance(data, dict) or set(data) != {"package", "chain"}:
            raise ValueError(f"{where} must hold exactly package and chain")
        package, chain = data["package"], data["chain"]
        if not isinstance(package, dict) or not isinstance(package.get("digest"), dict):
            raise ValueError(f"{where}.package must be {{name, digest: {{sha256}}}}")
        name, digest = package.get("name"), package["digest"].get("sha256")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.package.name must be a non-empty string")
        if not isinstance(chain, dict) or set(chain) != {"genesis", "sequence", "payloadSha256"}:
            raise ValueError(f"{where}.chain must hold exactly genesis, sequence, payloadSha256")
        for label, value in ((f"{where}.package.digest.sha256", digest), (f"{where}.chain.genesis", chain["genesis"]),
                             (f"{where}.chain.payloadSha256", chain["payloadSha256"])):
            if not isinstance(value, str) or not _HEX64.fullmatch(value):
                raise ValueError(f"{label} must be 64 lowercase hex digits")
        seq = chain["sequence"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(f"{where}.chain.sequence must be a non-negative integer")
        return cls(package_name=name, package_sha256=digest, genesis=chain["genesis"], sequence=seq,
                   payload_sha256=chain["payloadSha256"])

    def to_dict(self) -> dict[str, Any]:
        return {"package": {"name": self.package_name, "digest": {"sha256": self.package_sha256}},
                "chain": {"genesis": self.genesis, "sequence": self.sequence, "payloadSha256": self.payload_sha256}}


def package_subjects(subjects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The subjects that are the package: those with role ``package``, else all of them."""
    tagged = [s for s in subjects if isinstance(s.get("annotations"), dict)
              and s["annotations"].get("role") == PACKAGE_ROLE]
    return tagged or subjects


def _statements(bundle: Bundle) -> list[Any]:
    """Every statement of a bundle that parses, unverified (for naming a predecessor, never for trusting one)."""
    from mlspec_attest.model.statement import StageStatement

    out = []
    for bf in bundle.files():
        try:
            out.append(StageStatement.from_payload(extract_payload(bf.kind, bf.data)))
        except (ValueError, InputError, KeyError, TypeError):
            continue
    return out


def describe_release(bundle_dir: str | os.PathLike[str]) -> Predecessor:
    """What ``--succeeds BUNDLE`` signs: BUNDLE's latest package and the newest attestation of its chain.

    Read without verifying: the gate verifies the predecessor it names (and refuses a
    forgery); here a mistake is an InputError naming the bundle.
    """
    bundle = Bundle(bundle_dir)
    bundle.require_exists()
    head = bundle.head()
    if head is None:
        raise InputError(f"{bundle_dir}: the bundle holds no attestation; it is not a release")
    packages = [(st.chain.sequence, st.subjects) for st in _statements(bundle) if st.stage.name == "package"]
    if not packages:
        raise InputError(f"{bundle_dir}: the bundle has no package attestation; only a packaged run is a release")
    _, subjects = max(packages, key=lambda p: p[0])
    chosen = package_subjects(subjects)
    if len(chosen) != 1:
        raise InputError(f"{bundle_dir}: its package stage attests {len(chosen)} subjects; tag the package with "
                         "role 'package' (--product package=DIR) so the release is one artifact")
    subject = chosen[0]
    return Predecessor(package_name=str(subject.get("name")), package_sha256=subject["digest"]["sha256"],
                       genesis=head.genesis, sequence=head.sequence, payload_sha256=head.payload_sha256)


def release_dirs(history: str | os.PathLike[str]) -> list[Path]:
    """The bundles of a release history directory: its subdirectories that hold attestations/ (sorted)."""
    root = Path(history)
    if not root.is_dir():
        raise InputError(f"{history}: release history directory not found (--releases DIR: one bundle per release)")
    found = []
    for child in sorted(root.iterdir()):
        if child.is_symlink() or not child.is_dir() or child.name.startswith("."):
            continue
        if (child / "attestations").is_dir() and not (child / "attestations").is_symlink():
            found.append(child)
        if len(found) > MAX_RELEASES:
            raise InputError(f"{history}: more than {MAX_RELEASES} releases; refusing to scan it")
    return found


def packages_of(bundle_dir: Path) -> set[str]:
    """Package digests a bundle's (unverified) package statements name: which bundles to verify."""
    digests: set[str] = set()
    for st in _statements(Bundle(bundle_dir)):
        if st.stage.name == "package":
            digests.update(s["digest"]["sha256"] for s in package_subjects(st.subjects))
    return digests


def project_of(bundle_dir: Path) -> str | None:
    """The objectives project a bundle's genesis names (unverified): which releases are of the same model."""
    for st in _statements(Bundle(bundle_dir)):
        if st.chain.sequence == 0 and st.stage.name == "objectives":
            project = st.metadata.get("project")
            return project if isinstance(project, str) else None
    return None


def payload_digests(bundle_dir: Path) -> set[str]:
    """The payload digests of a bundle's attestations (unverified): is this history entry the chain itself?"""
    from mlspec_attest.model.canonical import sha256_hex

    out: set[str] = set()
    for bf in Bundle(bundle_dir).files():
        try:
            out.add(sha256_hex(extract_payload(bf.kind, bf.data)))
        except ValueError:
            continue
    return out


def declared_of(bundle_dir: Path) -> Predecessor | None:
    """The predecessor a history bundle's latest package claims (unverified): which bundles may succeed a release."""
    packages = [st for st in _statements(Bundle(bundle_dir)) if st.stage.name == "package"]
    if not packages:
        return None
    raw = max(packages, key=lambda st: st.chain.sequence).metadata.get(SUCCEEDS)
    try:
        return None if raw is None else Predecessor.from_dict(raw)
    except ValueError:
        return None

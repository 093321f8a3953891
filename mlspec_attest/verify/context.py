"""What every check reads: the parsed entries, the chain, the policy, the clock, the report."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mlspec_attest.bundle import Bundle, BundleFile
from mlspec_attest.errors import InputError
from mlspec_attest.model.formats import parse_rfc3339
from mlspec_attest.model.report import Report
from mlspec_attest.model.stages import DEFAULT_PHASE, Phase, resolve
from mlspec_attest.model.statement import ROLE_ANNOTATION, StageStatement
from mlspec_attest.policy import Policy

MODEL_ROLES = frozenset({"model"})
HOLDBACK_ROLES = frozenset({"holdback-data", "test-data"})


@dataclass
class Entry:
    """One attestation that parsed; ``authentic`` once its signatures satisfied the policy."""

    file: BundleFile
    payload: bytes
    payload_sha256: str
    statement: StageStatement
    signers: list[str]
    authentic: bool = False
    # Signatures by keys revoked ``after: T``, counted only once trusted time proves them older than T
    # (verify/revocation.py); (keyid, raw signature bytes) pairs.
    pending_revocations: list[tuple[str, bytes]] = field(default_factory=list)
    # The metadata schema verdict, taken where the file was read (verify/_parallel.py ``keep``):
    # None = not yet checked (check_metadata_schema then checks it), "" = valid, else the reason.
    metadata_problem: str | None = None
    # True while the metadata holds only the fields every-entry checks read (verify/_kept.py).
    metadata_kept: bool = False

    @property
    def sequence(self) -> int:
        return self.statement.chain.sequence

    @property
    def stage(self) -> str:
        return self.statement.stage.name

    @property
    def time(self) -> str | None:
        value = self.statement.run.get("finishedOn")
        return value if isinstance(value, str) else None


@dataclass
class VerifyContext:
    """The state one verification shares between its checks."""

    policy: Policy
    now: datetime
    bundle: Bundle
    report: Report
    chain: list[Entry] = field(default_factory=list)
    artifacts: Sequence[str | os.PathLike[str]] = ()
    log_dir: str | Path | None = None  # the inference log the chain's log attestations seal, when at hand
    releases: Path | None = None  # the release history (one bundle per release), when given
    release_line: frozenset[str] = frozenset()  # package payload digests of the successors being verified (cycle guard)
    predecessor: Any = None  # verify.releases.Release once the declared predecessor verified
    predecessor_declared: bool = False
    # Verifies another bundle with the same policy, clock and history (set by the Verifier): how the
    # release check verifies a predecessor without importing the verifier that runs it.
    phase: Phase = DEFAULT_PHASE  # which stages must exist; present ones are judged whatever the phase
    verify_other: Callable[[Path, frozenset[str]], VerifyContext] | None = None


def blob_source(bundle: Bundle) -> Path | Callable[[str, int], bytes]:
    """Where ``manifest.load`` reads blobs: BUNDLE/blobs locally, a bounded read through the store on S3."""
    if not bundle.is_remote:
        return bundle.root / "blobs"
    return lambda digest, limit: bundle.read(f"blobs/{digest}", limit=limit, what="blob")


def read_blob(bundle: Bundle, digest: str, what: str) -> bytes:
    """BUNDLE/blobs/DIGEST, bounded (InputError/OSError when missing or refused)."""
    from mlspec_attest._internal.loaders import read_bounded

    if bundle.is_remote:
        return bundle.read(f"blobs/{digest}", what=what)
    return read_bounded(bundle.root / "blobs" / digest, what=what)


def role_of(rd: dict[str, Any]) -> str | None:
    annotations = rd.get("annotations")
    return annotations.get(ROLE_ANNOTATION) if isinstance(annotations, dict) else None


def digest_of(rd: dict[str, Any]) -> str:
    digest: str = rd["digest"]["sha256"]
    return digest


@functools.lru_cache(maxsize=1 << 12)
def _parsed_time(value: str) -> datetime | None:
    return parse_rfc3339(value)  # datetimes are immutable: sharing one between checks is safe


def time_or_none(value: str | None) -> datetime | None:
    """A signed time as an aware datetime, or None when absent or not RFC 3339 (a finding, not a crash).

    Memoised: the chain, clock and lineage checks read each entry's time about six times.
    """
    return _parsed_time(value) if isinstance(value, str) and value else None


def later(first: str | None, second: str | None) -> bool:
    """True when both times parse and ``first`` is after ``second`` (compared as instants, not strings)."""
    a, b = time_or_none(first), time_or_none(second)
    return a is not None and b is not None and a > b


def order_of(names: Iterable[str]) -> int:
    return min(resolve(n).order for n in names)


def stage_from_file_name(file_name: str) -> str | None:
    parts = file_name.split("-", 1)
    if len(parts) == 2:
        try:
            return resolve(parts[1].split(".", 1)[0]).name
        except InputError:
            return None
    return None

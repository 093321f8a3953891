"""The bundle directory: where attestations live, and how one is appended safely.

Order always comes from the signed ``sequence``; file names are for humans. An
append holds an exclusive lock, writes a temp file, fsyncs it, renames it into
place and fsyncs the directory, so a crash at any instant leaves the bundle as
it was before, and two writers never fork the chain.
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlspec_attest._internal import files as safe
from mlspec_attest._internal.loaders import MAX_INPUT_BYTES
from mlspec_attest.errors import InputError

if TYPE_CHECKING:
    from mlspec_attest.store.base import BundleStore

ATTESTATIONS = "attestations"
EVIDENCE = "evidence"
LOCK_FILE = ".mlspec.lock"
BLOBS = "blobs"
TEMP_PREFIX = safe.TEMP_PREFIX
# What one verify/replay reads from a bundle's attestations/, all files together (apparent sizes,
# so a sparse file counts what it would cost to read) and in number: beyond either, exit 2 before
# anything is read. A 13-stage bundle is ~100 KiB; a 10,000-entry monitored chain ~50 MiB.
MAX_BUNDLE_BYTES = 1024 * 1024 * 1024
MAX_ATTESTATIONS = 100_000
_NAME = re.compile(r"(\d{4,})-([a-z]+)\.(dsse|sigstore)\.json")


@dataclass(frozen=True)
class BundleFile:
    """One attestation file as found on disk (contents not yet trusted)."""

    path: Path
    number: int | None  # from the file name; a hint only
    kind: str  # "dsse" or "sigstore"
    data: bytes


class SequenceTaken(Exception):
    """Another writer claimed the sequence number first (object stores only): re-read the tip and retry."""


@dataclass(frozen=True)
class Head:
    sequence: int
    payload_sha256: str
    genesis: str


def attestation_file_name(sequence: int, stage: str, kind: str = "dsse") -> str:
    return f"{sequence:04d}-{stage}.{kind}.json"


def extract_payload(kind: str, data: bytes) -> bytes:
    """The signed statement bytes inside a DSSE file or a Sigstore bundle (unverified)."""
    from mlspec_attest.model.canonical import parse_json

    try:
        doc = parse_json(data, source="attestation")  # depth-bounded: no RecursionError
    except InputError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    envelope = doc.get("dsseEnvelope") if kind == "sigstore" else doc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), str):
        raise ValueError("no DSSE payload found")
    return base64.b64decode(envelope["payload"], validate=True)


def head_from_file(kind: str, data: bytes, where: str, number: int, label: str) -> Head:
    """The chain tip an attestation file's signed link names (checked against its file number)."""
    from mlspec_attest.model.canonical import parse_json, sha256_hex
    from mlspec_attest.model.statement import ChainLink

    try:
        payload = extract_payload(kind, data)
        link = ChainLink.from_dict(parse_json(payload, source=where)["predicate"]["chain"])
    except (ValueError, KeyError, TypeError, InputError) as exc:
        raise InputError(f"{where}: newest attestation is unreadable ({exc}); run 'mlspec verify {label}'") from None
    if link.sequence != number:
        raise InputError(f"{where}: file number {number} differs from signed sequence {link.sequence}; "
                         f"run 'mlspec verify {label}'")
    digest = sha256_hex(payload)
    return Head(sequence=link.sequence, payload_sha256=digest, genesis=link.genesis or digest)


class Bundle:
    """A bundle in a local directory (the default); ``store.s3.S3Bundle`` is the same on object storage."""

    is_remote = False

    def __init__(self, root: str | os.PathLike[str]):
        from mlspec_attest.store.base import LocalStore

        self.root = Path(root)
        self.attestations_dir = self.root / ATTESTATIONS
        self.store: BundleStore = LocalStore(self.root)  # the seam (store/base.py); the flock below serialises appends

    @property
    def label(self) -> str:
        """How findings and messages name this bundle."""
        return str(self.root)

    def read(self, name: str, *, limit: int = MAX_INPUT_BYTES, what: str = "file") -> bytes:
        """BUNDLE/NAME, read no-follow below the root, bounded (InputError '... {what} not found' if absent)."""
        return self.store.read(name, limit=limit, what=what)

    def exists(self, name: str) -> bool:
        return self.store.exists(name)

    def attempts(self) -> Iterator[int]:
        """One attempt: under the lock no other writer can take the sequence number."""
        yield 0

    def write_head(self, data: bytes, sequence: int) -> Path | str:
        """Replace head.dsse.json atomically; the caller holds the lock."""
        from mlspec_attest.model.head import HEAD_FILE

        return safe.write_file(self.root, HEAD_FILE, data, replace=True, what="chain head")

    def create(self) -> None:
        safe.make_dirs(self.root, ATTESTATIONS)

    def require_exists(self) -> None:
        if not self.root.is_dir():
            raise InputError(f"{self.root}: bundle directory not found")
        if self.attestations_dir.is_symlink():
            raise InputError(f"{self.attestations_dir}: is a symlink; refusing to follow it (a bundle's "
                             f"{ATTESTATIONS}/ must be a real directory)")
        if not self.attestations_dir.is_dir():
            raise InputError(f"{self.root}: not a bundle (no {ATTESTATIONS}/ folder); create one with 'mlspec attest stage'")

    def files(self) -> list[BundleFile]:
        """Every attestation-like file; stray names are reported by the verifier, not skipped silently."""
        self.require_exists()
        found: list[BundleFile] = []
        names = [n for n in safe.list_names(self.root, ATTESTATIONS)
                 if not (n.startswith(TEMP_PREFIX) or n.startswith("."))]
        check_totals(self.root, names)
        for name in names:
            entry = self.attestations_dir / name
            match = _NAME.fullmatch(name)
            kind = match.group(3) if match else ("sigstore" if ".sigstore." in name else "dsse")
            number = int(match.group(1)) if match else None
            data = safe.read_file(f"{ATTESTATIONS}/{name}", root=self.root, limit=MAX_INPUT_BYTES,
                                  what="attestation")
            found.append(BundleFile(path=entry, number=number, kind=kind, data=data))
        return found

    @contextmanager
    def locked(self, *, create: bool = True) -> Iterator[None]:
        """Exclusive advisory lock for appends; also cleans temp files a crash left.

        ``create=False`` (cosign, head signing: they change an existing bundle) refuses a
        directory that is not already a bundle instead of making one there.
        """
        if create:
            self.create()
        else:
            self.require_exists()
        fd = safe.open_lock(self.root, LOCK_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Only a writer that died (kill -9) leaves these; we hold the lock, so none is in use.
            # Each folder is opened no-follow: a planted symlink is refused, never cleaned through.
            for folder in (ATTESTATIONS, "", EVIDENCE, BLOBS):
                safe.remove_stale_temps(self.root, folder)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def head(self) -> Head | None:
        """The newest attestation, found by file number and checked against its signed sequence."""
        if not safe.exists(ATTESTATIONS, root=self.root):
            return None
        best: tuple[int, Path, str] | None = None
        for name in safe.list_names(self.root, ATTESTATIONS):
            match = _NAME.fullmatch(name)
            if match and (best is None or int(match.group(1)) > best[0]):
                best = (int(match.group(1)), self.attestations_dir / name, match.group(3))
        if best is None:
            return None
        number, path, kind = best
        try:
            data = safe.read_file(f"{ATTESTATIONS}/{path.name}", root=self.root, limit=MAX_INPUT_BYTES,
                                  what="attestation")
        except InputError as exc:
            raise InputError(f"{path}: newest attestation is unreadable ({exc}); run 'mlspec verify {self.root}'") from None
        return head_from_file(kind, data, str(path), number, str(self.root))

    def store_file(self, name: str, data: bytes) -> Path:
        """Store evidence or a blob under the bundle (content-addressed names, so idempotent)."""
        if safe.exists(name, root=self.root):
            return self.root / name
        return safe.write_file(self.root, name, data, replace=True, what="bundle file")

    def write_new(self, name: str, data: bytes) -> Path:
        """Atomically create attestations/NAME, never replacing one; the caller holds the lock."""
        return safe.write_file(self.root, f"{ATTESTATIONS}/{name}", data, replace=False, what="attestation")


def check_totals(root: Path, names: list[str]) -> None:
    """Refuse a bundle whose attestation files (``names``) exceed MAX_ATTESTATIONS or MAX_BUNDLE_BYTES.

    Sizes come from lstat through the no-follow directory fd, before any file is read: 120
    sparse 63 MiB files cost nothing on disk but 7.5 GiB to read.
    """
    where = root / ATTESTATIONS
    if len(names) > MAX_ATTESTATIONS:
        raise InputError(f"{where}: {len(names)} files, more than the {MAX_ATTESTATIONS} a bundle may hold; "
                         "refusing to read it (remove the stray files)")
    total = 0
    with safe.open_dir(root, ATTESTATIONS) as dir_fd:
        for name in names:
            try:
                size = os.lstat(name, dir_fd=dir_fd).st_size
            except FileNotFoundError:
                continue
            if size <= MAX_INPUT_BYTES:  # a bigger one is refused by name when read (the per-file bound)
                total += size
            if total > MAX_BUNDLE_BYTES:
                raise InputError(f"{where}: its files add up to more than {MAX_BUNDLE_BYTES} bytes (the bundle "
                                 "limit, see docs/security.md); refusing to read it (remove the stray or "
                                 "oversized files)")


def read_attestation_file(path: Path) -> bytes:
    """The bytes of BUNDLE/attestations/NAME, read no-follow below the bundle root, bounded."""
    return safe.read_file(f"{ATTESTATIONS}/{path.name}", root=path.parent.parent, limit=MAX_INPUT_BYTES,
                          what="attestation")


def write_atomically(target: Path, data: bytes, *, replace: bool) -> None:
    """Write ``target`` in its directory through the one safe-write routine (see _internal/files.py)."""
    safe.write_file(target.parent, target.name, data, replace=replace)

"""The bundle directory: where attestations live, and how one is appended safely.

Order always comes from the signed ``sequence``; file names are for humans. An
append holds an exclusive lock, writes a temp file, fsyncs it, renames it into
place and fsyncs the directory, so a crash at any instant leaves the bundle as
it was before, and two writers never fork the chain.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mlspec_attest._internal.loaders import MAX_INPUT_BYTES, read_bounded
from mlspec_attest.errors import InputError

ATTESTATIONS = "attestations"
EVIDENCE = "evidence"
LOCK_FILE = ".mlspec.lock"
TEMP_PREFIX = ".tmp-"
_NAME = re.compile(r"(\d{4,})-([a-z]+)\.(dsse|sigstore)\.json")


@dataclass(frozen=True)
class BundleFile:
    """One attestation file as found on disk (contents not yet trusted)."""

    path: Path
    number: int | None  # from the file name; a hint only
    kind: str  # "dsse" or "sigstore"
    data: bytes


@dataclass(frozen=True)
class Head:
    sequence: int
    payload_sha256: str
    genesis: str


def attestation_file_name(sequence: int, stage: str, kind: str = "dsse") -> str:
    return f"{sequence:04d}-{stage}.{kind}.json"


def extract_payload(kind: str, data: bytes) -> bytes:
    """The signed statement bytes inside a DSSE file or a Sigstore bundle (unverified)."""
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    envelope = doc.get("dsseEnvelope") if kind == "sigstore" else doc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), str):
        raise ValueError("no DSSE payload found")
    return base64.b64decode(envelope["payload"], validate=True)


class Bundle:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.attestations_dir = self.root / ATTESTATIONS

    def create(self) -> None:
        self.attestations_dir.mkdir(parents=True, exist_ok=True)

    def require_exists(self) -> None:
        if not self.root.is_dir():
            raise InputError(f"{self.root}: bundle directory not found")
        if not self.attestations_dir.is_dir():
            raise InputError(f"{self.root}: not a bundle (no {ATTESTATIONS}/ folder); create one with 'mlspec attest stage'")

    def files(self) -> list[BundleFile]:
        """Every attestation-like file; stray names are reported by the verifier, not skipped silently."""
        self.require_exists()
        found: list[BundleFile] = []
        for entry in sorted(self.attestations_dir.iterdir()):
            if entry.name.startswith(TEMP_PREFIX) or entry.name.startswith("."):
                continue
            match = _NAME.fullmatch(entry.name)
            kind = match.group(3) if match else ("sigstore" if ".sigstore." in entry.name else "dsse")
            number = int(match.group(1)) if match else None
            data = read_bounded(entry, MAX_INPUT_BYTES, "attestation")
            found.append(BundleFile(path=entry, number=number, kind=kind, data=data))
        return found

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive advisory lock for appends; also cleans temp files a crash left."""
        self.create()
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Only a writer that died (kill -9) leaves these; we hold the lock, so none is in use.
            for folder in (self.attestations_dir, self.root, self.root / EVIDENCE):
                for stale in folder.glob(TEMP_PREFIX + "*"):
                    stale.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def head(self) -> Head | None:
        """The newest attestation, found by file number and checked against its signed sequence."""
        from mlspec_attest.model.canonical import sha256_hex
        from mlspec_attest.model.statement import ChainLink

        if not self.attestations_dir.is_dir():
            return None
        best: tuple[int, Path, str] | None = None
        for entry in self.attestations_dir.iterdir():
            match = _NAME.fullmatch(entry.name)
            if match and (best is None or int(match.group(1)) > best[0]):
                best = (int(match.group(1)), entry, match.group(3))
        if best is None:
            return None
        number, path, kind = best
        try:
            payload = extract_payload(kind, read_bounded(path, MAX_INPUT_BYTES, "attestation"))
            link = ChainLink.from_dict(json.loads(payload)["predicate"]["chain"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: newest attestation is unreadable ({exc}); run 'mlspec verify {self.root}'") from None
        if link.sequence != number:
            raise InputError(f"{path}: file number {number} differs from signed sequence {link.sequence}; "
                             f"run 'mlspec verify {self.root}'")
        digest = sha256_hex(payload)
        return Head(sequence=link.sequence, payload_sha256=digest, genesis=link.genesis or digest)

    def store_file(self, name: str, data: bytes) -> Path:
        """Store evidence or a blob under the bundle (content-addressed names, so idempotent)."""
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            write_atomically(target, data, replace=True)
        return target

    def write_new(self, name: str, data: bytes) -> Path:
        """Atomically create attestations/NAME; the caller holds the lock."""
        final = self.attestations_dir / name
        if final.exists():
            raise InputError(f"{final}: already exists; refusing to overwrite an attestation")
        write_atomically(final, data, replace=False)
        return final


def write_atomically(target: Path, data: bytes, *, replace: bool) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory.

    A crash at any instant leaves either the old state or the complete new file;
    the temp name starts with TEMP_PREFIX so the next locked append removes it.
    """
    tmp = target.with_name(f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if replace:
        os.replace(tmp, target)
    else:
        os.rename(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

"""Where a bundle's files live: a local directory (the default) or an S3-compatible bucket.

The seam is ``BundleStore``: list a folder with sizes, read bytes (bounded), create an
object only if it is absent, and replace one only if it is still the version read.
That is all a hash-chained, append-only bundle needs from storage; the chain's order
still comes from the signed ``sequence`` alone (docs/storage.md).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from mlspec_attest._internal import files as safe
from mlspec_attest.errors import InputError

S3_SCHEME = "s3://"


class StoreConflict(Exception):
    """A conditional write lost: the object exists (create) or changed since it was read (replace)."""


class HeadKept(str):
    """``write_head``'s result when it did NOT write: a head naming a later sequence was left in place.

    A ``str`` (the head's location), so callers that print the target keep working; a caller
    that says "signed head ... -> TARGET" checks ``isinstance(result, HeadKept)`` and says
    the head was kept at ``kept_sequence`` instead.
    """

    kept_sequence: int

    def __new__(cls, where: str, kept_sequence: int) -> HeadKept:
        made = super().__new__(cls, where)
        made.kept_sequence = kept_sequence
        return made


@runtime_checkable
class BundleStore(Protocol):
    """What a bundle needs from the storage under it (names are '/'-separated, relative)."""

    label: str

    def list(self, folder: str) -> list[tuple[str, int]]:
        """(name, size) of every object directly in ``folder``, sizes as the store reports them."""

    def read(self, name: str, *, limit: int, what: str) -> bytes:
        """The object's bytes; InputError '... {what} not found' when absent, or when larger than ``limit``."""

    def exists(self, name: str) -> bool: ...

    def create(self, name: str, data: bytes) -> None:
        """Write ``name`` only if no object has that name (StoreConflict otherwise)."""

    def read_versioned(self, name: str, *, limit: int, what: str) -> tuple[bytes, str] | None:
        """The bytes and a version token for ``replace``, or None when absent."""

    def replace(self, name: str, data: bytes, *, version: str | None) -> None:
        """Write ``name`` only if it is still at ``version`` (None: only if absent); StoreConflict otherwise."""


def is_remote(location: object) -> bool:
    """True for an ``s3://`` bundle location (str only: a Path is always local)."""
    return isinstance(location, str) and location.startswith(S3_SCHEME)


class LocalStore:
    """``BundleStore`` over a directory: every read no-follow and bounded, every write atomic (files.py).

    Mutual exclusion comes from the bundle's ``flock`` (``Bundle.locked``); the conditions
    here hold under it, and ``create`` is race-free on its own (link(2) fails if the name exists).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.label = str(self.root)

    def list(self, folder: str) -> list[tuple[str, int]]:
        with safe.open_dir(self.root, folder) as dir_fd:
            return [(n, os.lstat(n, dir_fd=dir_fd).st_size) for n in safe.list_names(self.root, folder)]

    def read(self, name: str, *, limit: int, what: str) -> bytes:
        return safe.read_file(name, root=self.root, limit=limit, what=what)

    def exists(self, name: str) -> bool:
        return safe.exists(name, root=self.root)

    def create(self, name: str, data: bytes) -> None:
        if safe.exists(name, root=self.root):
            raise StoreConflict(name)
        try:
            safe.write_file(self.root, name, data, replace=False)
        except InputError as exc:
            if str(exc).endswith("already exists; refusing to overwrite it"):
                raise StoreConflict(name) from None
            raise

    def read_versioned(self, name: str, *, limit: int, what: str) -> tuple[bytes, str] | None:
        if not safe.exists(name, root=self.root):
            return None
        data = self.read(name, limit=limit, what=what)
        return data, hashlib.sha256(data).hexdigest()

    def replace(self, name: str, data: bytes, *, version: str | None) -> None:
        current = self.read_versioned(name, limit=safe.MAX_FILE_BYTES, what="file")
        if (current[1] if current else None) != version:
            raise StoreConflict(name)
        safe.write_file(self.root, name, data, replace=True)

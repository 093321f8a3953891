"""Where a bundle's files live: a local directory (the default) or an S3-compatible bucket.

The seam is ``BundleStore``: list a folder with sizes, read bytes (bounded), create an
object only if it is absent, and replace one only if it is still the version read.
That is all a hash-chained, append-only bundle needs from storage; the chain's order
still comes from the signed ``sequence`` alone (docs/storage.md).
"""

from __future__ import annotations

from typing import Protocol

S3_SCHEME = "s3://"


class StoreConflict(Exception):
    """A conditional write lost: the object exists (create) or changed since it was read (replace)."""


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

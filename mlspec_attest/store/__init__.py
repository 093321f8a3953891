"""Bundles on local disk (the default) or S3-compatible object storage: ``open_bundle`` picks.

The storage seam itself (``BundleStore``, ``StoreConflict``) is in ``store.base``; the S3
implementation in ``store.s3``; docs/storage.md says what each store guarantees.
"""

from __future__ import annotations

import os

from mlspec_attest.bundle import Bundle
from mlspec_attest.store.base import S3_SCHEME, BundleStore, HeadKept, StoreConflict, is_remote

__all__ = ["S3_SCHEME", "BundleStore", "HeadKept", "StoreConflict", "is_remote", "open_bundle"]


def open_bundle(location: str | os.PathLike[str]) -> Bundle:
    """The bundle at a directory or at ``s3://BUCKET/PREFIX`` (configured from AWS_* variables)."""
    if is_remote(location):
        from mlspec_attest.store.s3 import S3Bundle

        return S3Bundle(str(location))
    return Bundle(location)

"""The BundleStore contract, held by both stores: the local directory and S3 (a real SeaweedFS).

What a chain needs from storage is small, and each part is an attack if it silently
does something else: create must refuse an existing name (else two writers both win),
replace must refuse a stale version (else a newer head is overwritten), reads must be
bounded and say 'not found' the same way (evidence.py tells absent from refused by it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from seaweed import SeaweedS3

from mlspec_attest.errors import InputError
from mlspec_attest.store import BundleStore, StoreConflict, open_bundle
from mlspec_attest.store.base import LocalStore
from mlspec_attest.store.s3 import S3Store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BundleStore]:
    if request.param == "local":
        yield LocalStore(tmp_path)
        return
    server: SeaweedS3 = request.getfixturevalue("s3_env")
    yield S3Store(f"s3://{server.new_bucket()}/contract")


def test_both_are_bundle_stores(store: BundleStore) -> None:
    assert isinstance(store, BundleStore)


def test_create_refuses_an_existing_name(store: BundleStore) -> None:
    store.create("claims/000000000001", b"first")
    with pytest.raises(StoreConflict):
        store.create("claims/000000000001", b"second")
    assert store.read("claims/000000000001", limit=100, what="claim") == b"first"


def test_replace_refuses_a_stale_version_and_absent_means_absent(store: BundleStore) -> None:
    store.replace("head.dsse.json", b"head-1", version=None)  # only if absent
    with pytest.raises(StoreConflict):
        store.replace("head.dsse.json", b"head-x", version=None)
    found = store.read_versioned("head.dsse.json", limit=100, what="chain head")
    assert found is not None and found[0] == b"head-1"
    store.replace("head.dsse.json", b"head-2", version=found[1])
    with pytest.raises(StoreConflict):  # the version read before head-2 is stale now
        store.replace("head.dsse.json", b"head-3", version=found[1])
    assert store.read("head.dsse.json", limit=100, what="chain head") == b"head-2"


def test_reads_are_bounded_and_absence_is_named(store: BundleStore) -> None:
    store.create("blobs/big", b"z" * 200)
    with pytest.raises(InputError):
        store.read("blobs/big", limit=199, what="blob")
    with pytest.raises(InputError, match="blob not found"):
        store.read("blobs/absent", limit=100, what="blob")
    assert store.read_versioned("blobs/absent", limit=100, what="blob") is None
    assert store.exists("blobs/big") and not store.exists("blobs/absent")


def test_listing_gives_names_and_sizes(store: BundleStore) -> None:
    store.create("attestations/0000-objectives.dsse.json", b"abc")
    store.create("attestations/0001-ingest.dsse.json", b"defgh")
    assert store.list("attestations") == [("0000-objectives.dsse.json", 3), ("0001-ingest.dsse.json", 5)]


def test_open_bundle_picks_the_store_from_the_location(tmp_path: Path, s3_env: SeaweedS3) -> None:
    assert isinstance(open_bundle(tmp_path).store, LocalStore)
    assert isinstance(open_bundle(f"s3://{s3_env.new_bucket()}/x").store, S3Store)
    assert isinstance(open_bundle(str(tmp_path / "s3:" / "x")).store, LocalStore)  # only the s3:// prefix is remote

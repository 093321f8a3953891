"""The package file manifest kept in the bundle: encoding equals digest_path's, strict parsing, diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlspec_attest.digests import digest_path
from mlspec_attest.manifest import diff, encode, load, parse
from mlspec_attest.model.canonical import sha256_hex

A, B = "a" * 64, "b" * 64


def test_encoding_is_the_signed_manifest_digest(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "model.pkl").write_bytes(b"weights")
    (tmp_path / "d" / "sub" / "x.txt").write_bytes(b"x")
    digest = digest_path(tmp_path / "d")
    assert sha256_hex(encode(digest.files)) == digest.manifest_sha256
    assert parse(encode(digest.files), "m") == dict(digest.files)


@pytest.mark.parametrize("data", [
    b'{"files":[{"path":"a","sha256":"' + A.encode() + b'"},{"path":"a","sha256":"' + B.encode() + b'"}]}',
    b'{"files": []}',  # not canonical
    b'{"files":[{"path":"a","sha256":"xyz"}]}',
    b'{"files":[],"more":1}',
    b'[]',
])
def test_malformed_manifests_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse(data, "m")


def test_load_checks_the_signed_digest(tmp_path: Path) -> None:
    data = encode([("model.pkl", A)])
    (tmp_path / sha256_hex(data)).write_bytes(data)
    assert load(tmp_path, sha256_hex(data), "m") == {"model.pkl": A}
    (tmp_path / sha256_hex(data)).write_bytes(encode([("model.pkl", B)]))
    with pytest.raises(ValueError, match="differs from the digest"):
        load(tmp_path, sha256_hex(data), "m")
    with pytest.raises(OSError):
        load(tmp_path, "c" * 64, "m")
    with pytest.raises(ValueError):
        load(tmp_path, "../x", "m")


def test_diff_names_files() -> None:
    result = diff({"model.pkl": A, "req.txt": A, "gone": A}, [("model.pkl", B), ("req.txt", A), ("new", A)])
    assert (result.differing, result.missing, result.extra) == (("model.pkl",), ("gone",), ("new",))
    assert result.describe() == "differ: model.pkl; missing: gone; extra: new"
    assert not diff({"a": A}, [("a", A)])

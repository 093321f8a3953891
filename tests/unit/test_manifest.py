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


def test_encoding_equals_the_oms_walk_with_ignored_files(tmp_path: Path) -> None:
    """interop's walk (component-wise order, top-level .git* ignored but bound, model.sig left out)
    and lineage's blob encoding must agree, or the attestor refuses (AssertionError) every such package."""
    d = tmp_path / "d"
    for rel in ("a/b", "a.b", "a-b", "a/c/d", ".gitattributes", ".git/HEAD", "sub/.gitignore"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(rel.encode())
    (d / "model.sig").write_bytes(b"signature")
    digest = digest_path(d)
    assert digest.ignored and {p for p, _ in digest.ignored} == {".gitattributes", ".git/HEAD"}
    data = encode(digest.files, digest.ignored)
    assert sha256_hex(data) == digest.manifest_sha256
    files = parse(data, "m")
    assert files == dict(digest.files) and "sub/.gitignore" in files and "model.sig" not in files
    assert [p for p, _ in digest.files] == sorted(files, key=lambda p: tuple(p.split("/")))
    # a tampered ignored list is another digest; an empty or overlapping one is refused
    assert sha256_hex(encode(digest.files)) != digest.manifest_sha256
    with pytest.raises(ValueError):
        parse(b'{"files":[],"ignored":[]}', "m")
    with pytest.raises(ValueError, match="twice"):
        parse(encode([("a", A)], [("a", B)]), "m")


def test_attestor_stores_the_manifest_of_a_directory_with_git_files(tmp_path: Path) -> None:
    from mlspec_attest.attest.attestor import ArtifactRef, describe

    d = tmp_path / "model"
    (d / ".git").mkdir(parents=True)
    (d / ".git" / "config").write_bytes(b"[core]")
    (d / "model.pkl").write_bytes(b"weights")
    manifests: dict[str, bytes] = {}
    rd = describe(ArtifactRef.parse(f"model={d}"), tmp_path, manifests)
    (sha, data), = manifests.items()
    assert sha256_hex(data) == sha == digest_path(d).manifest_sha256
    assert rd["digest"]["sha256"] == digest_path(d).sha256
    assert parse(data, "m") == {"model.pkl": sha256_hex(b"weights")}

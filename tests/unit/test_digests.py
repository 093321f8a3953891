"""File and directory digests: correct (hashlib, OpenSSF model-signing), path-independent
of the parallel strategy, constant memory, and silent off a terminal."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlspec_attest import digests
from mlspec_attest._internal import progress
from mlspec_attest.digests import MANIFEST_ANNOTATION, ArtifactDigest, digest_directory, digest_path, sha256_file
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import canonicalize

MODEL_SIGNING_SUBJECT = "92745110b1ab4368471cbe31664e10174e954b113a3df333db860317b2c6dec4"


def _write(p: Path, data: bytes) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("size", [0, 1, digests.CHUNK - 1, digests.CHUNK, digests.CHUNK + 1, 3 * digests.CHUNK + 7])
def test_file_digest_equals_hashlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    p = _write(tmp_path / "f.bin", data)
    assert sha256_file(p) == (hashlib.sha256(data).hexdigest(), size)
    d = digest_path(p)
    assert d == ArtifactDigest(sha256=hashlib.sha256(data).hexdigest(), size=size)


def test_overlapped_reader_equals_hashlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small buffers so a modest file exercises many buffer rotations of the reader thread.
    monkeypatch.setattr(digests, "BIG_BUF", 64 * 1024 + 3)
    monkeypatch.setattr(digests, "OVERLAP_MIN", 1)
    data = os.urandom(5 * 1024 * 1024 + 11)
    p = _write(tmp_path / "big.bin", data)
    assert sha256_file(p) == (hashlib.sha256(data).hexdigest(), len(data))
    empty = _write(tmp_path / "empty.bin", b"")
    assert sha256_file(empty) == (hashlib.sha256(b"").hexdigest(), 0)


def test_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        sha256_file(tmp_path / "missing.bin")


def test_directory_digest_is_the_model_signing_subject(vectors: Path, tmp_path: Path) -> None:
    src = vectors / "model-signing" / "v1.1.0-elliptic-key"
    model = tmp_path / "model"
    model.mkdir()
    for name in ("signme-1", "signme-2"):  # model.sig and ignore-me are excluded, as model_signing does
        shutil.copyfile(src / name, model / name)
    d = digest_directory(model)
    assert d.sha256 == MODEL_SIGNING_SUBJECT
    assert d.is_dir and [rel for rel, _ in d.files] == ["signme-1", "signme-2"]


def _tree(root: Path) -> None:
    for i in range(300):
        _write(root / f"d{i % 7}" / f"f{i:04d}.txt", os.urandom(i * 37 % 5000))
    for i in range(3):
        _write(root / "weights" / f"shard-{i}.bin", os.urandom(digests.SMALL_FILE + 1000 * i))
    _write(root / "ünïcode name.txt", b"x")


def test_parallel_and_serial_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "m")
    serial = digest_directory(tmp_path / "m", workers=1)
    monkeypatch.setattr(digests, "PROCESS_MIN_FILES", 1)  # force the process pool for the small files
    monkeypatch.setattr(digests, "MIN_BATCH", 16)
    import concurrent.futures

    pools: list[int] = []

    class CountingPool(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args: object, **kwargs: object) -> None:
            pools.append(1)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", CountingPool)
    parallel = digest_directory(tmp_path / "m", workers=2)
    assert pools or digests._fork_context() is None  # the process path ran wherever fork is usable
    assert parallel == serial and parallel.files == serial.files
    monkeypatch.setattr(digests, "PROCESS_MIN_FILES", 10**9)  # threads only
    assert digest_directory(tmp_path / "m", workers=2) == serial
    # The outer digest is the model-signing form: sha256 over raw file digests in path order.
    outer = hashlib.sha256(b"".join(bytes.fromhex(h) for _, h in serial.files)).hexdigest()
    assert serial.sha256 == outer
    assert serial.size == sum(f.stat().st_size for f in (tmp_path / "m").rglob("*") if f.is_file())


def test_manifest_fast_path_is_rfc8785(tmp_path: Path) -> None:
    names = ["a", 'quo"te', "back\\slash", "tab\tnl\nctl\x01\x1f", "ünï", "emoji-\U0001f600", "del\x7f", "/slash"]
    manifest = [(n, hashlib.sha256(n.encode()).hexdigest()) for n in names]
    doc = {"files": [{"path": n, "sha256": h} for n, h in manifest]}
    assert digests._manifest_bytes(manifest) == canonicalize(doc)


def test_manifest_binds_names(tmp_path: Path) -> None:
    _write(tmp_path / "a" / "x", b"1")
    _write(tmp_path / "a" / "y", b"2")
    _write(tmp_path / "b" / "y", b"1")
    _write(tmp_path / "b" / "z", b"2")
    da, db = digest_directory(tmp_path / "a"), digest_directory(tmp_path / "b")
    assert da.sha256 == db.sha256  # the model-signing form ignores names...
    assert da.manifest_sha256 != db.manifest_sha256  # ...which is why the manifest is recorded too
    assert MANIFEST_ANNOTATION


def test_directory_refuses_escapes_and_specials(tmp_path: Path) -> None:
    outside = _write(tmp_path / "secret.txt", b"s")
    root = tmp_path / "m"
    _write(root / "ok.txt", b"ok")
    (root / "escape").symlink_to(outside)
    with pytest.raises(InputError, match="leaves the directory"):
        digest_directory(root)
    (root / "escape").unlink()
    (root / "dangling").symlink_to(root / "nowhere")
    with pytest.raises(InputError, match="dangling"):
        digest_directory(root)
    (root / "dangling").unlink()
    (root / "sub").mkdir()
    (root / "loop").symlink_to(root / "sub")
    with pytest.raises(InputError, match="symlinked directories"):
        digest_directory(root)
    (root / "loop").unlink()
    os.mkfifo(root / "fifo")
    with pytest.raises(InputError, match="not a regular file"):
        digest_directory(root)
    (root / "fifo").unlink()
    (root / "inner").symlink_to(root / "ok.txt")  # a link inside the tree is hashed as its target
    assert dict(digest_directory(root).files)["inner"] == hashlib.sha256(b"ok").hexdigest()


def test_hashing_memory_is_constant(tmp_path: Path) -> None:
    """Hash a 256 MiB sparse file in a fresh interpreter; its peak RSS may grow only by the buffers."""
    big = tmp_path / "sparse.bin"
    with open(big, "wb") as fh:
        fh.truncate(256 * 1024 * 1024)
    script = textwrap.dedent(f"""
        import hashlib, resource
        from mlspec_attest.digests import sha256_file
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        digest, size = sha256_file({str(big)!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(digest, size, after - before)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "MLSPEC_PROGRESS": "0"})
    digest, size, growth_kib = out.stdout.split()
    assert int(size) == 256 * 1024 * 1024
    h = hashlib.sha256()
    zeros = bytes(1024 * 1024)
    for _ in range(256):
        h.update(zeros)
    assert digest == h.hexdigest()
    assert int(growth_kib) < 32 * 1024, f"peak RSS grew by {int(growth_kib) // 1024} MiB"


def test_progress_is_off_when_not_a_tty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MLSPEC_PROGRESS", raising=False)
    assert isinstance(progress.reporter(1, 10, stream=io.StringIO()), progress.NullProgress)
    assert not progress.reporter(1, 10, stream=io.StringIO()).enabled
    monkeypatch.setattr(digests, "OVERLAP_MIN", 1)
    _write(tmp_path / "f.bin", os.urandom(100_000))
    sha256_file(tmp_path / "f.bin")
    digest_directory(tmp_path)
    assert capfd.readouterr().err == ""
    monkeypatch.setenv("MLSPEC_PROGRESS", "0")

    class FakeTTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not progress.reporter(1, 10, stream=FakeTTY()).enabled


def test_progress_line_on_a_tty_after_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeTTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("MLSPEC_PROGRESS", raising=False)
    stream = FakeTTY()
    assert progress.reporter(3, 3 * 2**20, stream=stream).enabled
    quick = progress.Progress(3, 3 * 2**20, stream=stream)  # default 1 s delay: a fast job draws nothing
    quick.advance(files=3, nbytes=3 * 2**20)
    quick.close()
    assert stream.getvalue() == ""
    slow = progress.Progress(3, 3 * 2**20, stream=stream, delay=0.0, interval=0.0)
    slow.advance(files=2, nbytes=2 * 2**20)
    slow.close()
    text = stream.getvalue()
    assert "2/3 files" in text and "2.0 MiB/3.0 MiB" in text and "/s" in text and text.endswith("\n")

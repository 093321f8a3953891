"""SHA-256 of files (streaming, constant memory) and of directories.

A directory's digest is the OpenSSF model-signing v1.0 "files" form: sha256 over
the raw 32-byte sha256 of every regular file, concatenated in sorted POSIX path
order. That makes our subject digest equal to the subject of a model-signing
signature over the same directory. Because that form does not bind file *names*,
we also record a manifest digest (sha256 of the RFC 8785 manifest of path and
digest pairs) that verification compares as well.
"""

from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .canonical import canonicalize
from .errors import InputError

CHUNK = 1024 * 1024
MANIFEST_ANNOTATION = "mlspec.dev/manifest-sha256"


@dataclass(frozen=True)
class ArtifactDigest:
    """What we know about one hashed artifact."""

    sha256: str
    size: int
    is_dir: bool = False
    manifest_sha256: str | None = None
    files: tuple[tuple[str, str], ...] = field(default=(), repr=False)


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Stream a regular file through sha256 with one reused buffer."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    try:
        with open(path, "rb", buffering=0) as fh:
            while True:
                n = fh.readinto(buf)
                if not n:
                    break
                h.update(view[:n])
                size += n
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    return h.hexdigest(), size


def _walk_regular_files(root: Path) -> list[tuple[str, Path]]:
    """Every regular file below root as (posix relative path, path); refuse escapes."""
    real_root = root.resolve()
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in list(dirnames):
            p = base / name
            if p.is_symlink():
                target = p.resolve()
                if not target.is_relative_to(real_root):
                    raise InputError(f"{p}: symlink leaves the directory {root}; refusing it")
                raise InputError(f"{p}: symlinked directories are not hashed; replace it with a copy")
        for name in filenames:
            p = base / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = p.resolve()
                if not target.is_relative_to(real_root):
                    raise InputError(f"{p}: symlink leaves the directory {root}; refusing it")
                st = target.stat()
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"{p}: not a regular file (FIFO, device or socket); refusing it")
            rel = PurePosixPath(*p.relative_to(root).parts).as_posix()
            found.append((rel, p))
    found.sort(key=lambda item: item[0])
    return found


def digest_directory(root: str | os.PathLike[str], workers: int | None = None) -> ArtifactDigest:
    """Digest a directory tree; threads overlap I/O since hashlib releases the GIL."""
    root = Path(root)
    files = _walk_regular_files(root)
    workers = workers or min(4, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda item: sha256_file(item[1]), files))
    outer = hashlib.sha256()
    manifest = []
    total = 0
    for (rel, _), (hexdigest, size) in zip(files, results):
        outer.update(bytes.fromhex(hexdigest))
        manifest.append({"path": rel, "sha256": hexdigest})
        total += size
    manifest_sha = hashlib.sha256(canonicalize({"files": manifest})).hexdigest()
    return ArtifactDigest(
        sha256=outer.hexdigest(),
        size=total,
        is_dir=True,
        manifest_sha256=manifest_sha,
        files=tuple((m["path"], m["sha256"]) for m in manifest),
    )


def digest_path(path: str | os.PathLike[str]) -> ArtifactDigest:
    """Digest a file or directory, refusing special files and dangling paths."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: artifact not found") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read artifact: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return digest_directory(p)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: not a regular file or directory (FIFO, device or socket); refusing it")
    hexdigest, size = sha256_file(p)
    return ArtifactDigest(sha256=hexdigest, size=size)

"""SHA-256 of files (streaming, constant memory) and of directories.

A directory's digest is the OpenSSF model-signing v1.0 "files" form: sha256 over
the raw 32-byte sha256 of every regular file, concatenated in the order
model-signing uses (``PurePosixPath`` order: component by component, so ``a/b``
sorts before ``a-b/x``), leaving out what model-signing leaves out by default
(top-level ``.git``, ``.gitattributes``, ``.github``, ``.gitignore``) and the
signature file ``model.sig``. That makes our subject digest equal to the subject
of a model-signing signature over the same directory. Because that form does not
bind file *names*, we also record a manifest digest (sha256 of the RFC 8785
manifest of path and digest pairs) that verification compares as well; the
manifest also lists the git files left out of the subject (``ignored``), so they
cannot change without a finding either (docs/format.md, "Directory digests").

Speed (docs/performance.md): a large file is read by a helper thread into a few
rotating buffers while the caller hashes the previous one (both release the GIL),
so reading overlaps hashing; memory stays at NBUFS x BIG_BUF whatever the size.
A directory of many small files is per-file-overhead bound (open/read/close in
Python), so batches go to a forked process pool; big files go to threads, since
hashlib and read() release the GIL. A progress line appears on a TTY after 1 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import stat
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlspec_attest._internal.progress import NullProgress, reporter
from mlspec_attest._internal.workers import cpus, oversubscribed
from mlspec_attest._internal.workers import fork_context as _fork_context
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import canonicalize

CHUNK = 1024 * 1024  # read size for ordinary files (one reused buffer per thread)
BIG_BUF = 4 * 1024 * 1024  # rotating buffer size for overlapped reads
NBUFS = 3  # buffers in flight: one being read, one being hashed, one spare
OVERLAP_MIN = 16 * 1024 * 1024  # files at least this big get a reader thread
SMALL_FILE = 1024 * 1024  # below this a file is per-file-overhead bound (process pool)
PROCESS_MIN_FILES = 2000  # fewer small files than this: a pool costs more than it saves
MIN_BATCH = 256  # minimum files per process batch
MANIFEST_ANNOTATION = "mlspec.dev/manifest-sha256"
# What model-signing leaves out of a directory by default (hashing.Config.hash,
# --ignore-git-paths): top-level entries only, a directory with everything below it.
GIT_IGNORES: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")
# The OMS signature file itself cannot be covered by the digest it signs.
SIGNATURE_FILE = "model.sig"

_local = threading.local()


@dataclass(frozen=True)
class ArtifactDigest:
    """What we know about one hashed artifact."""

    sha256: str
    size: int
    is_dir: bool = False
    manifest_sha256: str | None = None
    files: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    ignored: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def oms_sha256(self) -> str:
        """model-signing's subject digest: for a directory ``sha256``; for a file sha256(raw sha256).

        model-signing hashes a single-file model as a one-resource manifest (name ".")
        and its subject is sha256 over that one raw digest, not the file's own sha256.
        """
        if self.is_dir:
            return self.sha256
        return hashlib.sha256(bytes.fromhex(self.sha256)).hexdigest()


def _buffer() -> bytearray:
    """One reused CHUNK buffer per thread (no allocation per file)."""
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(CHUNK)
    return buf


def _read_error(path: Any, exc: OSError) -> InputError:
    return InputError(f"{path}: cannot read: {exc.strerror or exc}")


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _open_regular(path: str | os.PathLike[str]) -> int:
    """Open for hashing without blocking and check what was opened (not what the walk saw).

    A FIFO or device swapped in after the walk would otherwise hang the read (or never
    end); O_NONBLOCK makes the open return at once and fstat refuses anything not regular.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path}: not a regular file (FIFO, device or socket); refusing it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _hash_plain(path: str | os.PathLike[str], progress: NullProgress) -> tuple[bytes, int]:
    """Stream one file through sha256 with the thread's reused buffer.

    os.open/os.readv rather than open(): no file object per file, which is a visible
    share of the cost when a tree holds tens of thousands of small files.
    """
    h = hashlib.sha256()
    buf = _buffer()
    view = memoryview(buf)
    bufs = [buf]
    size = 0
    try:
        fd = _open_regular(path)
        try:
            while True:
                n = os.readv(fd, bufs)
                if not n:
                    break
                h.update(view[:n])
                size += n
                progress.advance(nbytes=n)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _read_error(path, exc) from None
    return h.digest(), size


def _hash_overlapped(path: str | os.PathLike[str], progress: NullProgress) -> tuple[bytes, int]:
    """Hash a big file while a reader thread fills the next buffer (constant memory)."""
    try:
        fh = os.fdopen(_open_regular(path), "rb", buffering=0)
    except OSError as exc:
        raise _read_error(path, exc) from None
    with fh:
        try:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):  # pragma: no cover - not everywhere
            pass
        free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        full: queue.SimpleQueue[tuple[bytearray, int] | OSError] = queue.SimpleQueue()
        for _ in range(NBUFS):
            free.put(bytearray(BIG_BUF))

        def reader() -> None:
            try:
                while True:
                    buf = free.get()
                    if buf is None:  # the hasher gave up
                        return
                    n = fh.readinto(buf)
                    full.put((buf, n or 0))
                    if not n:
                        return
            except OSError as exc:
                full.put(exc)

        thread = threading.Thread(target=reader, name="mlspec-read", daemon=True)
        thread.start()
        h = hashlib.sha256()
        size = 0
        try:
            while True:
                item = full.get()
                if isinstance(item, OSError):
                    raise _read_error(path, item) from None
                buf, n = item
                if not n:
                    break
                h.update(memoryview(buf)[:n] if n != len(buf) else buf)
                size += n
                free.put(buf)
                progress.advance(nbytes=n)
        finally:
            free.put(None)
            thread.join()
    return h.digest(), size


def _hash_one(path: str | os.PathLike[str], size_hint: int, progress: NullProgress) -> tuple[bytes, int]:
    if size_hint >= OVERLAP_MIN:
        return _hash_overlapped(path, progress)
    return _hash_plain(path, progress)


def sha256_file(path: str | os.PathLike[str], *, progress: NullProgress | None = None) -> tuple[str, int]:
    """Stream a regular file through sha256 in constant memory; big files overlap read and hash."""
    try:
        size_hint = os.stat(path).st_size
    except OSError as exc:
        raise _read_error(path, exc) from None
    own = progress is None
    prog = reporter(1, size_hint) if own and size_hint >= OVERLAP_MIN else (progress or NullProgress())
    try:
        digest, size = _hash_one(path, size_hint, prog)
        prog.advance(files=1)
    finally:
        if own:
            prog.close()
    return digest.hex(), size


# -- directories ------------------------------------------------------------------------
@dataclass(frozen=True)
class _File:
    rel: str
    path: str
    size: int


def oms_order(rel: str) -> tuple[str, ...]:
    """model-signing's sort key: ``PurePosixPath`` compares component lists, not whole strings."""
    return tuple(rel.split("/"))


def _ignore_key(rel: str) -> tuple[str, ...]:
    """A relative ignore path as components; ``..``, absolute and empty paths are refused."""
    parts = tuple(p for p in rel.split("/") if p not in ("", "."))
    if not parts or rel.startswith("/") or ".." in parts:
        raise InputError(f"--ignore {rel!r}: give a path relative to the directory, inside it")
    return parts


def _is_ignored(rel: str, ignores: Sequence[tuple[str, ...]]) -> bool:
    """model-signing's should_ignore: the path is an ignore path or lies below one."""
    parts = oms_order(rel)
    return any(parts[:len(ig)] == ig for ig in ignores)


def files_digest(files: Iterable[tuple[str, str]]) -> str:
    """The directory subject digest (model-signing "files") of (relative path, sha256 hex) pairs.

    sha256 over the raw file digests in model-signing's path order: what digest_directory
    signs, recomputed from a file manifest so a reader can check the manifest belongs to
    the subject that names it (a manifest of other files cannot hide behind a real digest).
    """
    outer = hashlib.sha256()
    for _rel, hexd in sorted(files, key=lambda f: oms_order(f[0])):
        outer.update(bytes.fromhex(hexd))
    return outer.hexdigest()


def _walk_regular_files(root: Path) -> list[_File]:
    """Every regular file below root, in model-signing's path order; refuse escapes and specials.

    os.scandir keeps this to one lstat per file (d_type answers "is it a dir?"), which
    matters for trees of tens of thousands of small files.
    """
    real_root = root.resolve()
    found: list[_File] = []
    stack: list[tuple[str, str]] = [(os.fspath(root), "")]
    while stack:
        dirpath, prefix = stack.pop()
        try:
            with os.scandir(dirpath) as it:
                entries = list(it)
        except OSError as exc:
            raise InputError(f"{dirpath}: cannot list directory: {exc.strerror or exc}") from None
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_symlink():
                p = Path(entry.path)
                try:
                    target = p.resolve()
                except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
                    raise InputError(f"{p}: symlink loop; refusing it") from None
                if not target.is_relative_to(real_root):
                    raise InputError(f"{p}: symlink leaves the directory {root}; refusing it")
                try:
                    st = target.stat()
                except OSError:
                    raise InputError(f"{p}: dangling symlink; refusing it") from None
                if stat.S_ISDIR(st.st_mode):
                    raise InputError(f"{p}: symlinked directories are not hashed; replace it with a copy")
            elif entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, rel + "/"))
                continue
            else:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    raise InputError(f"{entry.path}: cannot stat: {exc.strerror or exc}") from None
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"{entry.path}: not a regular file (FIFO, device or socket); refusing it")
            found.append(_File(rel, entry.path, st.st_size))
    found.sort(key=lambda f: oms_order(f.rel))
    return found


def _hash_batch(paths: Sequence[str]) -> list[tuple[bytes, int] | str]:
    """Process-pool worker: hash a batch of small files; errors come back as messages."""
    out: list[tuple[bytes, int] | str] = []
    null = NullProgress()
    for p in paths:
        try:
            out.append(_hash_plain(p, null))
        except InputError as exc:
            out.append(str(exc))
    return out


def _hash_files(files: list[_File], workers: int, progress: NullProgress,
                allow_processes: bool = True) -> list[tuple[bytes, int]]:
    """Digests of files in input order, parallel where it pays off."""
    results: list[tuple[bytes, int] | None] = [None] * len(files)
    if workers <= 1 or len(files) <= 1:
        for i, f in enumerate(files):
            results[i] = _hash_one(f.path, f.size, progress)
            progress.advance(files=1)
        return results  # type: ignore[return-value]

    small = [i for i, f in enumerate(files) if f.size < SMALL_FILE]
    big = [i for i, f in enumerate(files) if f.size >= SMALL_FILE]
    pool = None
    futures = []
    ctx = _fork_context() if allow_processes and len(small) >= PROCESS_MIN_FILES else None
    if ctx is not None:
        # Per-file Python overhead dominates small files: spread batches over processes.
        from concurrent.futures import ProcessPoolExecutor

        per = max(MIN_BATCH, min(2048, len(small) // (workers * 6) + 1))
        batches = [small[i:i + per] for i in range(0, len(small), per)]
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        futures = [(b, pool.submit(_hash_batch, [files[i].path for i in b])) for b in batches]
        small = []
    try:
        # Big files on threads (the GIL is released while reading and hashing); one big
        # file alone gets the overlapped reader instead. Small files left over run here too.
        if len(big) == 1:
            i = big[0]
            results[i] = _hash_overlapped(files[i].path, progress) if files[i].size >= OVERLAP_MIN \
                else _hash_plain(files[i].path, progress)
            progress.advance(files=1)
        elif big:
            def job(i: int) -> None:
                results[i] = _hash_plain(files[i].path, progress)
                progress.advance(files=1)

            from concurrent.futures import ThreadPoolExecutor  # lazy: the gate's start need not pay for it

            with ThreadPoolExecutor(max_workers=min(workers, len(big)), thread_name_prefix="mlspec-hash") as tp:
                for pending in [tp.submit(job, i) for i in big]:
                    pending.result()
        for i in small:
            results[i] = _hash_plain(files[i].path, progress)
            progress.advance(files=1)
        for batch, fut in futures:
            nbytes = 0
            for i, r in zip(batch, fut.result()):
                if isinstance(r, str):
                    raise InputError(r)
                results[i] = r
                nbytes += r[1]
            progress.advance(files=len(batch), nbytes=nbytes)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return results  # type: ignore[return-value]


def _manifest_bytes(manifest: list[tuple[str, str]], ignored: Sequence[tuple[str, str]] = ()) -> bytes:
    """RFC 8785 bytes of {"files": [{"path", "sha256"}...]} without the slow generic encoder.

    For a list of objects with the fixed keys "path" < "sha256" and string values,
    JCS equals json.dumps(ensure_ascii=False, compact); lone surrogates (undecodable
    file names) fail the UTF-8 encode and fall back to the generic canonicaliser,
    which refuses them with its usual message. Files left out of the subject digest
    are bound under "ignored" (the key is absent when there are none, so a tree
    without them keeps the manifest digest it always had).
    """
    doc: dict[str, Any] = {"files": [{"path": rel, "sha256": hexd} for rel, hexd in manifest]}
    if ignored:
        doc["ignored"] = [{"path": rel, "sha256": hexd} for rel, hexd in ignored]
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return canonicalize(doc)


def digest_directory(root: str | os.PathLike[str], workers: int | None = None, *,
                     ignore: Sequence[str] = (), default_ignores: bool = True) -> ArtifactDigest:
    """Digest a directory tree in parallel (processes for many small files, threads for big ones).

    ``workers=1`` (or MLSPEC_HASH_WORKERS=1) hashes serially in this process; the
    result never depends on it. A machine already loaded beyond its cores keeps the
    threads but skips the process pool (see parallel.oversubscribed).

    ``ignore`` (paths relative to root, like model-signing's ``--ignore-paths``) and
    the default git ignores leave files out of the subject digest but not out of
    the manifest, which lists them under "ignored"; only the top-level signature
    file ``model.sig`` is left out of both (it signs the digest, so it cannot be in it).
    """
    root = Path(root)
    ignores = [_ignore_key(p) for p in ignore]
    if default_ignores:
        ignores += [(g,) for g in GIT_IGNORES]
    every = [f for f in _walk_regular_files(root) if not (default_ignores and f.rel == SIGNATURE_FILE)]
    files = [f for f in every if not _is_ignored(f.rel, ignores)]
    left_out = [f for f in every if _is_ignored(f.rel, ignores)]
    files_and_left_out = files + left_out
    forced = os.environ.get("MLSPEC_HASH_WORKERS", "").strip()
    pinned = workers or (int(forced) if forced.isdigit() and int(forced) > 0 else None)
    total = sum(f.size for f in files_and_left_out)
    with reporter(len(files_and_left_out), total) as progress:
        results = _hash_files(files_and_left_out, pinned or cpus(), progress,
                              allow_processes=pinned is not None or not oversubscribed())
    manifest: list[tuple[str, str]] = []
    size = 0
    for f, (raw, n) in zip(files, results[:len(files)]):
        manifest.append((f.rel, raw.hex()))
        size += n
    ignored = tuple((f.rel, raw.hex()) for f, (raw, _n) in zip(left_out, results[len(files):]))
    manifest_sha = hashlib.sha256(_manifest_bytes(manifest, ignored)).hexdigest()
    return ArtifactDigest(
        sha256=files_digest(manifest),
        size=size,
        is_dir=True,
        manifest_sha256=manifest_sha,
        files=tuple(manifest),
        ignored=ignored,
    )


def _stat_artifact(p: Path) -> os.stat_result:
    """``stat`` of an artifact path (following a top-level symlink, as the digest does), as one-line errors."""
    try:
        return p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: artifact not found") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read artifact: {exc.strerror}") from None


def digest_path(path: str | os.PathLike[str], *, ignore: Sequence[str] = (),
                default_ignores: bool = True) -> ArtifactDigest:
    """Digest a file or directory, refusing special files and dangling paths.

    Ignores apply to directories only, as in model-signing (a single file has nothing to leave out).
    """
    p = Path(path)
    st = _stat_artifact(p)
    if stat.S_ISDIR(st.st_mode):
        return digest_directory(p, ignore=ignore, default_ignores=default_ignores)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: not a regular file or directory (FIFO, device or socket); refusing it")
    hexdigest, size = sha256_file(p)
    return ArtifactDigest(sha256=hexdigest, size=size)


# -- model-signing's other serialisations: shards, and BLAKE3 ---------------------------------
# model-signing 1.1 (hashing.Config.use_shard_serialization): every file cut into fixed byte
# ranges [k*size, min((k+1)*size, file size)), each hashed on its own (in parallel), named
# "PATH:START:END" with algorithm "sha256-sharded-SIZE"; empty files have no shard. BLAKE3 is
# not sharded there: "shards" with blake3 is the files method with BLAKE3 file digests. The
# subject is sha256 over the raw resource digests in manifest order (path components, then
# start), as for the files method (model_signing/_signing/signing.py, Payload).
SHARD_SIZE = 1_000_000_000  # model-signing's default shard size (1 GB)
OMS_METHODS = ("files", "shards")
OMS_HASHES = ("sha256", "blake3")
SHARD_BUF = 8 * 1024 * 1024  # per-thread read buffer for a shard


@dataclass(frozen=True)
class OmsDigest:
    """An artifact as model-signing serialises it: method, resources and the subject digest it signs."""

    method: str
    hash_type: str
    shard_size: int | None
    subject_sha256: str
    resources: tuple[tuple[str, str, str], ...] = field(repr=False)  # (name, algorithm, hex digest)
    size: int = 0

    @property
    def serialization(self) -> dict[str, Any]:
        """The predicate's ``serialization`` fields that fix the digest (ignore paths are added by the caller)."""
        out: dict[str, Any] = {"method": self.method, "hash_type": self.hash_type, "allow_symlinks": False}
        if self.shard_size is not None:
            out["shard_size"] = self.shard_size
        return out


def _pread_exact(fd: int, buf: bytearray, offset: int, path: Any) -> int:
    """Fill ``buf`` from ``offset`` (less only at the end of the range the caller asked for)."""
    try:
        return os.preadv(fd, [buf], offset)
    except OSError as exc:
        raise _read_error(path, exc) from None


def _hash_range(path: str, start: int, end: int, algorithm: str) -> bytes:
    """Digest of bytes [start, end) of a file: os.preadv, so threads share no file offset.

    The file is opened by _open_regular (non-blocking, fstat-checked: no FIFO or device);
    a file shorter than the walk saw is refused, not hashed short.
    """
    if algorithm == "blake3":
        import blake3

        h: Any = blake3.blake3(max_threads=blake3.blake3.AUTO if end - start >= OVERLAP_MIN else 1)
    else:
        h = hashlib.sha256()
    buf = getattr(_local, "shard_buf", None)
    if buf is None:
        buf = _local.shard_buf = bytearray(SHARD_BUF)
    view = memoryview(buf)
    try:
        fd = _open_regular(path)
    except OSError as exc:
        raise _read_error(path, exc) from None
    try:
        pos = start
        while pos < end:
            want = min(len(buf), end - pos)
            n = _pread_exact(fd, buf if want == len(buf) else view[:want], pos, path)  # type: ignore[arg-type]
            if n <= 0:
                raise InputError(f"{path}: changed while it was hashed (ends at {pos}, expected {end} bytes)")
            h.update(view[:n])  # sha256 and blake3 release the GIL for large updates
            pos += n
    finally:
        os.close(fd)
    return bytes(h.digest())


def oms_digest(path: str | os.PathLike[str], *, method: str = "files", hash_type: str = "sha256",
               shard_size: int = SHARD_SIZE, ignore: Sequence[str] = (), default_ignores: bool = True,
               workers: int | None = None) -> OmsDigest:
    """model-signing's resources and subject digest of a file or directory for ``method`` and ``hash_type``.

    Equal to ``model_signing.hashing.Config().use_shard_serialization(hashing_algorithm=...,
    shard_size=...)`` (or ``use_file_serialization``) followed by its signing payload
    (tests/unit/test_oms_shards.py compares them). Shards are hashed on ``workers``
    threads (default: the cores), so one 2 GiB file uses every core.
    """
    if method not in OMS_METHODS or hash_type not in OMS_HASHES:
        raise InputError(f"--method {method} --hash {hash_type}: choose a method of {', '.join(OMS_METHODS)} "
                         f"and a hash of {', '.join(OMS_HASHES)}")
    if shard_size <= 0:
        raise InputError(f"--shard-size {shard_size}: give a positive number of bytes")
    if hash_type == "blake3":
        method = "files"  # model-signing: "For BLAKE3 this is equivalent to not sharding"
    p = Path(path)
    st = _stat_artifact(p)
    if stat.S_ISDIR(st.st_mode):
        ignores = [_ignore_key(i) for i in ignore]
        if default_ignores:
            ignores += [(g,) for g in GIT_IGNORES]
        files = [f for f in _walk_regular_files(p)
                 if not (default_ignores and f.rel == SIGNATURE_FILE) and not _is_ignored(f.rel, ignores)]
    elif stat.S_ISREG(st.st_mode):
        files = [_File(".", os.fspath(p), st.st_size)]
    else:
        raise InputError(f"{p}: not a regular file or directory (FIFO, device or socket); refusing it")
    if method == "shards":
        jobs = [(f, start, min(start + shard_size, f.size)) for f in files for start in range(0, f.size, shard_size)]
        algorithm = f"{hash_type}-sharded-{shard_size}"
    else:
        jobs = [(f, 0, f.size) for f in files]
        algorithm = hash_type
    forced = os.environ.get("MLSPEC_HASH_WORKERS", "").strip()
    n = workers or (int(forced) if forced.isdigit() and int(forced) > 0 else cpus())
    if n <= 1 or len(jobs) <= 1:
        digests = [_hash_range(f.path, s, e, hash_type) for f, s, e in jobs]
    else:
        from concurrent.futures import ThreadPoolExecutor

        # Few, uneven jobs (a 2 GiB file is shards of 1 GB, 1 GB and 147 MB): one thread each, and the
        # kernel shares the cores among them, so the critical path is half the bytes (1.07 GB), not the
        # two-job thread's 1.15 GB. Many jobs: one thread per core, the largest first, for a short tail.
        threads = len(jobs) if len(jobs) <= 2 * n else n
        largest_first = sorted(range(len(jobs)), key=lambda i: jobs[i][2] - jobs[i][1], reverse=True)
        digests = [b""] * len(jobs)

        def hash_job(i: int) -> None:
            f, start, end = jobs[i]
            digests[i] = _hash_range(f.path, start, end, hash_type)

        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mlspec-shard") as tp:
            for done in [tp.submit(hash_job, i) for i in largest_first]:
                done.result()
    order = sorted(range(len(jobs)), key=lambda i: (oms_order(jobs[i][0].rel), jobs[i][1], jobs[i][2]))
    names = [f"{f.rel}:{s}:{e}" if method == "shards" else f.rel for f, s, e in jobs]
    resources = tuple((names[i], algorithm, digests[i].hex()) for i in order)
    subject = hashlib.sha256(b"".join(digests[i] for i in order)).hexdigest()
    return OmsDigest(method=method, hash_type=hash_type, shard_size=shard_size if method == "shards" else None,
                     subject_sha256=subject, resources=resources, size=sum(f.size for f in files))

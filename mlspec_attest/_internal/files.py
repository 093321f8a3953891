"""The one way this package opens, reads and writes bundle, log, project and artifact files.

Every file under a directory we were handed (a received bundle, a log directory,
a project) may have been planted by someone else. So:

* a directory is opened once (following symlinks only for the path the caller
  named), and everything below it is opened *relative to that fd* with
  ``O_NOFOLLOW``: a symlinked component inside the directory is refused, never
  followed, so no read or write can be redirected elsewhere;
* every open is ``O_NONBLOCK`` (a FIFO cannot hang us) and ``O_CLOEXEC``, and is
  checked with ``fstat`` on what was actually opened (no stat/open race): only
  regular files are read, devices and FIFOs are refused;
* whole-file reads are bounded (``MAX_FILE_BYTES`` by default, checked before
  reading and again while reading); large legitimate inputs are streamed, with a
  bound on each line;
* writes go to an unpredictable temp name created exclusively (``O_EXCL``) in
  the same directory fd, are fsynced, renamed into place, and the directory is
  fsynced.

Errors are ``InputError`` naming the file and what to do (exit 2).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat as _stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

from mlspec_attest.errors import InputError

MAX_FILE_BYTES = 64 * 1024 * 1024  # what docs/security.md promises for every whole-file read
MAX_LINE_BYTES = 16 * 1024 * 1024  # one JSON Lines record / seal
TEMP_PREFIX = ".tmp-"
_TEMP_TOKEN_HEX = 24  # write_file's temp names: TEMP_PREFIX + secrets.token_hex(12)
_OUR_TEMP = re.compile(re.escape(TEMP_PREFIX) + "[0-9a-f]{%d}" % _TEMP_TOKEN_HEX)

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_READ = os.O_RDONLY | _NONBLOCK | _CLOEXEC
_DIR = os.O_RDONLY | _DIRECTORY | _CLOEXEC

PathLike = str | os.PathLike[str]


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _parts(rel: PathLike) -> list[str]:
    """The components of a path relative to a directory; '..' and absolute paths are refused."""
    text = os.fspath(rel)
    if os.path.isabs(text):
        raise InputError(f"{text}: expected a path inside the directory, got an absolute path")
    parts = [p for p in Path(text).parts if p not in ("", ".")]
    if ".." in parts:
        raise InputError(f"{text}: '..' is not allowed here; name a file inside the directory")
    return parts


def _symlink_refusal(where: str) -> InputError:
    return InputError(f"{where}: is a symlink; refusing to follow it (replace it with a real file or directory)")


def _open_child_dir(dir_fd: int, name: str, where: str, *, create: bool) -> int:
    for attempt in (0, 1):
        try:
            return os.open(name, _DIR | _NOFOLLOW, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create or attempt:
                raise InputError(f"{where}: directory not found") from None
            try:
                os.mkdir(name, 0o755, dir_fd=dir_fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise InputError(f"{where}: cannot create directory: {_why(exc)}") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                try:
                    if _stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
                        raise _symlink_refusal(where) from None
                except OSError:
                    pass
                raise InputError(f"{where}: not a directory") from None
            raise InputError(f"{where}: cannot open directory: {_why(exc)}") from None
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def open_dir(root: PathLike, rel: PathLike = "", *, create: bool = False) -> Iterator[int]:
    """An fd of ``root/rel``; ``root`` is the caller's choice, each component of ``rel`` is opened no-follow."""
    root_s = os.fspath(root)
    if create:
        try:
            os.makedirs(root_s, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{root_s}: cannot create directory: {_why(exc)}") from None
    try:
        fd = os.open(root_s, _DIR)
    except FileNotFoundError:
        raise InputError(f"{root_s}: directory not found") from None
    except NotADirectoryError:
        raise InputError(f"{root_s}: not a directory") from None
    except OSError as exc:
        raise InputError(f"{root_s}: cannot open directory: {_why(exc)}") from None
    where = root_s
    try:
        for part in _parts(rel):
            where = os.path.join(where, part)
            child = _open_child_dir(fd, part, where, create=create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _check_regular(fd: int, where: str, limit: int | None, what: str) -> os.stat_result:
    st = os.fstat(fd)
    if _stat.S_ISDIR(st.st_mode):
        raise InputError(f"{where}: is a directory, expected a {what}")
    if not _stat.S_ISREG(st.st_mode):
        raise InputError(f"{where}: not a regular file (FIFO, device or socket); refusing to read it")
    if limit is not None and st.st_size > limit:
        raise InputError(f"{where}: {what} is {st.st_size} bytes, over the {limit}-byte limit; refusing to read it")
    return st


def open_regular(path: PathLike, *, root: PathLike | None = None, limit: int | None = None,
                 what: str = "file") -> int:
    """An fd of a regular file, opened non-blocking and fstat-checked (the caller closes it).

    With ``root``, ``path`` is relative to it and no component below ``root`` may be
    a symlink. Without, ``path`` is one the user named on the command line: its
    symlinks are followed (their choice), but a FIFO or device is never read.
    """
    if root is not None:
        parts = _parts(path)
        if not parts:
            raise InputError(f"{root}: expected a file name inside the directory")
        where = os.path.join(os.fspath(root), *parts)
        with open_dir(root, os.path.join(*parts[:-1]) if len(parts) > 1 else "") as dir_fd:
            fd = _open_in(dir_fd, parts[-1], where, what)
    else:
        where = os.fspath(path)
        try:
            # Refuse specials before opening them at all (opening some devices has effects);
            # the fstat below closes the race with a swap after this stat.
            if not _stat.S_ISREG(os.stat(where).st_mode) and not _stat.S_ISDIR(os.stat(where).st_mode):
                raise InputError(f"{where}: not a regular file (FIFO, device or socket); refusing to read it")
            fd = os.open(where, _READ)
        except FileNotFoundError:
            raise InputError(f"{where}: {what} not found") from None
        except IsADirectoryError:
            raise InputError(f"{where}: is a directory, expected a {what}") from None
        except OSError as exc:
            raise InputError(f"{where}: cannot read {what}: {_why(exc)}") from None
    try:
        _check_regular(fd, where, limit, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_in(dir_fd: int, name: str, where: str, what: str) -> int:
    """``name`` in an open directory, no-follow and non-blocking (not yet fstat-checked)."""
    try:
        return os.open(name, _READ | _NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        raise InputError(f"{where}: {what} not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _symlink_refusal(where) from None
        raise InputError(f"{where}: cannot read {what}: {_why(exc)}") from None


def read_file_in(dir_fd: int, name: str, where: str, *, limit: int = MAX_FILE_BYTES, what: str = "file") -> bytes:
    """``read_file(rel/name, root=...)`` for a file directly in a directory the caller opened with
    ``open_dir`` (same refusals, same messages): one open per file instead of one per component,
    for readers of many files in one directory (the verifier's attestations)."""
    if not name or name in (".", "..") or "/" in name:
        raise InputError(f"{where}: expected a file name inside the directory")
    fd = _open_in(dir_fd, name, where, what)
    try:
        _check_regular(fd, where, limit, what)
    except BaseException:
        os.close(fd)
        raise
    return _read_fd(fd, where, limit, what)


def read_file(path: PathLike, *, root: PathLike | None = None, limit: int = MAX_FILE_BYTES,
              what: str = "file") -> bytes:
    """A whole regular file, refused before reading when over ``limit`` (and if it grows past it)."""
    fd = open_regular(path, root=root, limit=limit, what=what)
    where = os.path.join(os.fspath(root), os.fspath(path)) if root is not None else os.fspath(path)
    return _read_fd(fd, where, limit, what)


def _read_fd(fd: int, where: str, limit: int, what: str) -> bytes:
    """Read an open, fstat-checked regular file to its end, bounded; closes ``fd``."""
    try:
        size = os.fstat(fd).st_size
        chunks, total = [], 0
        while True:  # normally one read; more only if the file grew meanwhile
            chunk = os.read(fd, max(size + 1 - total, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise InputError(f"{where}: {what} grew past the {limit}-byte limit while reading")
    except OSError as exc:
        raise InputError(f"{where}: cannot read {what}: {_why(exc)}") from None
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def open_stream(path: PathLike, *, root: PathLike | None = None, what: str = "file") -> BinaryIO:
    """A buffered binary reader over a checked regular file, for inputs too large to read whole."""
    fd = open_regular(path, root=root, what=what)
    return os.fdopen(fd, "rb")


def read_lines(fh: IO[Any], source: str, limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Lines of a stream (newline kept), refusing any line longer than ``limit``: memory stays bounded.

    Splits 1 MiB chunks on b"\\n" only (exactly the lines ``for line in fh`` gives), which
    keeps the per-line cost at that of plain iteration on multi-GB record files.
    """
    no = 0
    rest = b""
    while True:
        chunk = fh.read(1 << 20)
        if not chunk:
            if rest:
                yield rest  # an incomplete last line: callers see it has no newline
            return
        parts = (rest + chunk if rest else chunk).split(b"\n")
        rest = parts.pop()
        for line in parts:
            no += 1
            if len(line) >= limit:
                raise InputError(f"{source}:{no}: line is longer than {limit} bytes; refusing to read it")
            yield line + b"\n"
        if len(rest) > limit:
            raise InputError(f"{source}:{no + 1}: line is longer than {limit} bytes; refusing to read it")


def exists(path: PathLike, *, root: PathLike) -> bool:
    """Whether ``root/path`` exists (as anything, a symlink included), looked up without following links."""
    try:
        parts = _parts(path)
        with open_dir(root, os.path.join(*parts[:-1]) if len(parts) > 1 else "") as dir_fd:
            os.lstat(parts[-1], dir_fd=dir_fd)
        return True
    except (InputError, FileNotFoundError, NotADirectoryError):
        return False


def make_dirs(root: PathLike, rel: PathLike) -> None:
    """Create ``root/rel`` (and parents) without following any symlink below ``root``."""
    with open_dir(root, rel, create=True):
        pass


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


def _fsync_dir(dir_fd: int) -> None:
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass


def write_file(root: PathLike, rel: PathLike, data: bytes | Iterable[bytes], *, replace: bool = True, mode: int = 0o644,
               what: str = "file") -> Path:
    """Atomically write ``root/rel``: exclusive random temp in the same directory fd, fsync, rename, fsync dir.

    A crash leaves the old state or the whole new file (plus a ``.tmp-*`` file the
    next locked append removes). With ``replace=False`` an existing file (or
    symlink) at the name is refused, never overwritten. ``data`` may be an iterable of
    chunks, for files too large to hold in memory.
    """
    parts = _parts(rel)
    if not parts:
        raise InputError(f"{root}: expected a file name to write")
    target = Path(os.fspath(root), *parts)
    with open_dir(root, os.path.join(*parts[:-1]) if len(parts) > 1 else "", create=True) as dir_fd:
        name = parts[-1]
        tmp = f"{TEMP_PREFIX}{secrets.token_hex(_TEMP_TOKEN_HEX // 2)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode, dir_fd=dir_fd)
        except OSError as exc:
            raise InputError(f"{target}: cannot write {what}: {_why(exc)}") from None
        try:
            try:
                for chunk in ((data,) if isinstance(data, (bytes, bytearray, memoryview)) else data):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if replace:
                try:  # a directory or symlink-to-directory planted at the name must not swallow the file
                    st = os.lstat(name, dir_fd=dir_fd)
                    if _stat.S_ISDIR(st.st_mode):
                        raise InputError(f"{target}: is a directory; refusing to replace it with a {what}")
                except FileNotFoundError:
                    pass
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                try:  # link(2) fails if the name exists: no check-then-rename race
                    os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
                except FileExistsError:
                    raise InputError(f"{target}: already exists; refusing to overwrite it") from None
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                        raise
                    # no hard links on this filesystem: check, then rename (writers hold the bundle lock)
                    if _lexists(name, dir_fd):
                        raise InputError(f"{target}: already exists; refusing to overwrite it") from None
                    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                else:
                    os.unlink(tmp, dir_fd=dir_fd)
        except OSError as exc:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise InputError(f"{target}: cannot write {what}: {_why(exc)}") from None
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise
        _fsync_dir(dir_fd)
    return target


def open_append(root: PathLike, rel: PathLike, *, what: str = "file", buffering: int = -1) -> BinaryIO:
    """An appending writer on ``root/rel`` (created if absent); a symlink or special file there is refused."""
    parts = _parts(rel)
    where = os.path.join(os.fspath(root), *parts)
    with open_dir(root, os.path.join(*parts[:-1]) if len(parts) > 1 else "") as dir_fd:
        try:
            fd = os.open(parts[-1], os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _NONBLOCK | _CLOEXEC,
                         0o644, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _symlink_refusal(where) from None
            raise InputError(f"{where}: cannot write {what}: {_why(exc)}") from None
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            raise InputError(f"{where}: not a regular file (FIFO, device or socket); refusing to write it")
        if st.st_nlink > 1:  # a hard link planted at the name would make us append to another file
            raise InputError(f"{where}: has {st.st_nlink} hard links; refusing to append to a file shared "
                             "with another path (copy it to a file of its own)")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab", buffering=buffering)


def open_lock(root: PathLike, name: str) -> int:
    """An fd of the lock file ``root/name`` (created if absent); a planted symlink is refused, not followed."""
    where = os.path.join(os.fspath(root), name)
    with open_dir(root) as dir_fd:
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _NONBLOCK | _CLOEXEC, 0o644, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _symlink_refusal(where) from None
            raise InputError(f"{where}: cannot open lock file: {_why(exc)}") from None
    if not _stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{where}: not a regular file; refusing to use it as a lock")
    return fd


def is_own_temp_name(name: str) -> bool:
    """Whether ``name`` is exactly what write_file names its temp files (a user's ``.tmp-notes`` is not)."""
    return _OUR_TEMP.fullmatch(name) is not None


def remove_stale_temps(root: PathLike, rel: PathLike = "") -> None:
    """Unlink the temp files write_file left in ``root/rel`` (absent directory: nothing to do).

    Only names write_file itself makes (``.tmp-`` + 24 hex digits), only regular files
    owned by us with a single link (or a second one to a file
    write_new published here): a user's ``.tmp-swap``, a symlink, a directory or a
    hard link to somebody else's file is never removed. Symlinked dirs are refused.
    """
    try:
        ctx = open_dir(root, rel)
        dir_fd = ctx.__enter__()
    except InputError as exc:
        if "directory not found" in str(exc):
            return
        raise
    try:
        with os.scandir(dir_fd) as it:
            entries = list(it)
        names = [e.name for e in entries if is_own_temp_name(e.name)]
        # write_new publishes with link(2): a kill between the link and the temp's unlink leaves the
        # temp as a second name of the published file, in this same directory. That name is ours too.
        published = {e.inode() for e in entries if not is_own_temp_name(e.name) and e.is_file(follow_symlinks=False)}
        for name in names:
            try:
                st = os.lstat(name, dir_fd=dir_fd)
                ours = st.st_nlink == 1 or (st.st_nlink == 2 and st.st_ino in published)
                if _stat.S_ISREG(st.st_mode) and ours and st.st_uid == os.geteuid():
                    os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
    finally:
        ctx.__exit__(None, None, None)


def list_names(root: PathLike, rel: PathLike = "") -> list[str]:
    """Entry names of ``root/rel``, sorted, listed through a no-follow directory fd."""
    with open_dir(root, rel) as dir_fd, os.scandir(dir_fd) as it:
        return sorted(e.name for e in it)

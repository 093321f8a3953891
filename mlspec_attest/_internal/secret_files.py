"""Reading a secret (a key passphrase, a token PIN) from a file only its owner can read.

The rule ssh applies to private keys: a secret file that group or others can read, or
that another user owns, may already be someone else's, so it is refused. The file is
opened no-follow and non-blocking and every check is made on the opened descriptor, so
a symlink, FIFO or device is refused and a swap after a stat changes nothing.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from mlspec_attest.errors import InputError

MAX_SECRET_BYTES = 4096


def read_owner_only(path: str | os.PathLike[str], what: str, limit: int = MAX_SECRET_BYTES) -> bytes:
    """The file's bytes with one trailing newline dropped; InputError (one line) when unsafe or empty."""
    p = Path(path).expanduser()
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        why = "it is a symlink (refused)" if exc.errno == errno.ELOOP else exc.strerror
        raise InputError(f"{p}: cannot read the {what}: {why}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{p}: the {what} is not a regular file")
        if st.st_mode & 0o077:
            raise InputError(f"{p}: the {what} is readable by group or others (mode "
                             f"{stat.S_IMODE(st.st_mode):04o}); run 'chmod 600 {p}'")
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise InputError(f"{p}: the {what} belongs to another user (uid {st.st_uid})")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputError(f"{p}: the {what} is longer than {limit} bytes")
    data = data.removesuffix(b"\n").removesuffix(b"\r")
    if not data:
        raise InputError(f"{p}: the {what} is empty")
    return data

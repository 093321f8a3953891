"""Row fingerprints: evidence that training and hold-back sets share no rows.

A fingerprint file is the sorted, de-duplicated big-endian uint64 prefixes of the
sha256 of each row's bytes (for CSV: the line without its newline; header
excluded). The split stage attests one per set as a product with role
``fingerprints-<set>`` (e.g. ``fingerprints-train``, ``fingerprints-holdback``);
the attestor copies these small files into ``bundle/blobs/`` so the verifier can
prove disjointness from the bundle alone. 64-bit prefixes make an accidental
collision among a million rows a ~3e-8 event, so a reported overlap is real.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable
from pathlib import Path

from mlspec_attest.errors import InputError

FINGERPRINT_ROLE_PREFIX = "fingerprints-"
TRAIN_ROLE = "fingerprints-train"
HOLDBACK_ROLE = "fingerprints-holdback"
_ITEM = struct.Struct(">Q")


def row_fingerprint(row: bytes) -> int:
    return int.from_bytes(hashlib.sha256(row).digest()[:8], "big")


def fingerprints_of_rows(rows: Iterable[bytes]) -> bytes:
    values = sorted({row_fingerprint(r) for r in rows})
    return b"".join(_ITEM.pack(v) for v in values)


def fingerprints_of_csv(path: str | os.PathLike[str], header: bool = True) -> bytes:
    from mlspec_attest._internal.files import open_stream, read_lines

    with open_stream(path, what="data file") as fh:  # streamed, each row bounded
        rows = (line.rstrip(b"\r\n") for line in read_lines(fh, os.fspath(path)))
        if header:
            next(rows, None)
        return fingerprints_of_rows(line for line in rows if line.strip())


def write_fingerprints(csv_path: str | os.PathLike[str], out: str | os.PathLike[str], header: bool = True) -> Path:
    data = fingerprints_of_csv(csv_path, header)
    from mlspec_attest._internal.files import write_file

    out = Path(out)
    return write_file(out.parent, out.name, data, replace=True, what="fingerprints")


def parse_fingerprints(data: bytes, where: str) -> list[int]:
    """Decode and check the form (whole items, strictly increasing)."""
    if len(data) % 8:
        raise ValueError(f"{where}: length {len(data)} is not a multiple of 8")
    values = [v for (v,) in _ITEM.iter_unpack(data)]
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{where}: fingerprints are not sorted and unique")
    return values


def overlap(a: list[int], b: list[int]) -> int:
    """Rows in both sets (linear merge of two sorted lists)."""
    i = j = count = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            count += 1
            i += 1
            j += 1
        elif a[i] < b[j]:
            i += 1
        else:
            j += 1
    return count


def is_fingerprint_role(role: str | None) -> bool:
    return bool(role) and role.startswith(FINGERPRINT_ROLE_PREFIX)  # type: ignore[union-attr]


def require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: fingerprint file not found")

"""Row fingerprints: evidence that training and hold-back sets share no rows.

A *row* is one line of a CSV; the first line (the header) is left out, and so are
lines holding only whitespace. v2 strips a row's leading and trailing ASCII whitespace
(so CRLF, re-padded and re-indented copies match); v1 stripped trailing CR/LF only.
A set's fingerprints are the sorted, de-duplicated 64-bit hashes of its rows. The split stage attests one file per
set as a product with role ``fingerprints-<set>`` (``fingerprints-train``,
``fingerprints-holdback``...); the attestor copies it into ``bundle/blobs/`` so the
gate proves the sets pairwise disjoint from the bundle alone (verify/leakage.py).

Two blob formats (docs/format.md, "Row fingerprints"):

* **v1** (before 0.2): the big-endian uint64 prefixes of sha256(row), 8 bytes a row.
  Still read, so old chains verify and replay.
* **v2** (written now): XXH3-64 (seed 0) of each row, sorted, as zlib-compressed byte
  planes of the deltas in blocks of ``BLOCK_VALUES``: about 5.3 bytes a row at 14
  million rows (the information content of a random 64-bit set is ~5.2), decoded
  block by block with bounded memory.

What the proof guarantees: the *attested fingerprint sets* are disjoint. The hash is
deterministic, so two equal rows always get equal fingerprints: a set computed from
the attested file cannot hide a shared row, whatever the hash's collision resistance
(a collision can only add a false LEAKAGE finding, ~N_a*N_b/2^64 by accident: 3e-6 at
14M x 3.5M rows). That a set *was* computed from the file it names
(``mlspec.dev/fingerprints-of-sha256``) is only shown by recomputing it from the data
(:func:`recompute_matches`), which whoever holds the data can do at any time; the gate,
holding only the bundle, cannot (docs/security.md).

Speed: rows are split from 8 MiB chunks with ``bytes.split`` and hashed by one C call
each (xxhash), straight into a NumPy uint64 array; no Python object outlives its chunk.
A large file is cut at a newline into two halves hashed by two forked processes.
"""

from __future__ import annotations

import array
import hashlib
import io
import itertools
import os
import struct
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mlspec_attest.errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import xxhash
else:
    class _Deferred:
        """A module imported on first use: numpy takes ~0.1 s to import, and every `mlspec attest`
        and `verify` imports this module for the role names alone (attestor, verify/lineage.py)."""

        def __init__(self, name: str) -> None:
            self._name = name

        def __getattr__(self, attr: str) -> Any:
            import importlib

            return getattr(importlib.import_module(self._name), attr)

    np, xxhash = _Deferred("numpy"), _Deferred("xxhash")

FINGERPRINT_ROLE_PREFIX = "fingerprints-"
TRAIN_ROLE = "fingerprints-train"
HOLDBACK_ROLE = "fingerprints-holdback"
_ITEM = struct.Struct(">Q")

MAGIC = b"MLSPECFP"
VERSION = 2
HASH_XXH3_64 = 1
_HEADER = struct.Struct(">8sBBHIQ")  # magic, version, hash id, reserved (0), values per block, count
_PLANE = struct.Struct(">BI")  # codec (0 raw, 1 zlib), stored length
RAW, ZLIB = 0, 1
BLOCK_VALUES = 1 << 20  # values per block: the decoder holds one block (8 MiB) at a time
MAX_BLOCK_VALUES = 1 << 24
MIN_BLOCK_VALUES = 1 << 12  # smaller blocks only when the whole set is smaller (decoding cost per byte stays low)
MAX_FINGERPRINTS = 1 << 28  # rows a set may declare (2 GiB decoded): zlib inflates ~1000x, so cap it
CHUNK = 1 << 20  # bytes read per step (bigger chunks fragment the heap: 8 MiB cost +110 MB at 14M rows)
SMALL_SET = 1 << 14  # sets of at most this many rows are decoded and compared without numpy
PARALLEL_MIN = 64 << 20  # files at least this big are fingerprinted by two processes
_LE64 = "<u8"  # little-endian uint64: the byte-plane order of the v2 blob


# -- rows -> fingerprints ------------------------------------------------------------------
def row_fingerprint(row: bytes) -> int:
    """The v2 fingerprint of one row: XXH3-64 with seed 0."""
    return xxhash.xxh3_64_intdigest(row)


def row_fingerprint_v1(row: bytes) -> int:
    """The v1 fingerprint of one row: the first 8 bytes of its sha256, big-endian."""
    return int.from_bytes(hashlib.sha256(row).digest()[:8], "big")


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sort in place and drop repeats (rare, so the copy happens only when there are some)."""
    values.sort()
    return _sorted_unique_sorted(values)


def fingerprints_of_rows(rows: Iterable[bytes]) -> bytes:
    """The v2 blob of an iterable of rows (each row as it is: no header, no stripping)."""
    values = np.fromiter(map(xxhash.xxh3_64_intdigest, rows), dtype=np.uint64)
    return bytes(encode(_sorted_unique(values)))


def _hash_range(fd: int, start: int, end: int, header: bool, where: str, line_limit: int) -> np.ndarray:
    """Fingerprints (unsorted) of the rows whose lines start in [start, end) of a file.

    ``start`` is 0 or just after a newline. Lines are split from CHUNK reads; a line
    longer than ``line_limit`` is refused, so memory stays bounded whatever the file.
    """
    out = np.empty(1 << 16, dtype=np.uint64)
    n = no = 0
    pos, rest, skip_first = start, b"", header and start == 0
    xxh, strip = xxhash.xxh3_64_intdigest, bytes.strip
    while True:
        chunk = os.pread(fd, min(CHUNK, end - pos), pos) if pos < end else b""
        if not chunk:  # end of the range (or the file shrank): a last line without a newline
            if not rest:
                break
            lines, rest, maybe_long = rest.replace(b"\r", b"\n").split(b"\n"), b"", True
        else:
            pos += len(chunk)
            maybe_long = len(rest) + len(chunk) >= line_limit
            buf = rest + chunk if rest else chunk
            # csv's line ends: CRLF, LF and a lone CR. Only a lone CR needs the copy (strip drops a CRLF's
            # CR); a CRLF cut by this read counts as lone, and its LF then makes a blank line: no row.
            if b"\r" in buf and buf.count(b"\r") != buf.count(b"\r\n"):
                buf = buf.replace(b"\r", b"\n")
            lines = buf.split(b"\n")
            rest = lines.pop()
            if len(rest) > line_limit:
                raise InputError(f"{where}:{no + len(lines) + 1}: line is longer than {line_limit} bytes; "
                                 "refusing to read it")
        if maybe_long and lines and max(map(len, lines)) >= line_limit:
            raise InputError(f"{where}: a line is longer than {line_limit} bytes; refusing to read it")
        no += len(lines)
        if skip_first and lines:
            del lines[0]
            skip_first = False
        # The row is the line stripped of surrounding ASCII whitespace (CR of CRLF included), so a
        # copy re-indented, re-padded or re-terminated is still the same row; blank lines are none.
        values = np.fromiter(map(xxh, filter(None, map(strip, lines))), dtype=np.uint64)
        if n + values.size > out.size:
            out.resize(max(2 * out.size, n + values.size), refcheck=False)  # realloc: no second copy
        out[n:n + values.size] = values
        n += values.size
    out.resize(n, refcheck=False)
    return out


def _split_point(fd: int, size: int) -> int:
    """Just after the first newline at or past the middle (the size if there is none within 16 MiB)."""
    from mlspec_attest._internal.files import MAX_LINE_BYTES

    mid = size // 2
    probe = os.pread(fd, MAX_LINE_BYTES + 1, mid)
    at = probe.find(b"\n")
    return size if at < 0 else mid + at + 1


def _hash_file(fd: int, size: int, header: bool, where: str) -> list[np.ndarray]:
    """All fingerprints of an open file as one or two sorted, unique runs (two processes when it is big).

    The runs are merged block by block while encoding (:func:`_merged`), so the
    parent never holds a merged copy next to them.
    """
    from mlspec_attest._internal.files import MAX_LINE_BYTES
    from mlspec_attest._internal.workers import cpus, fork_context, oversubscribed

    forced = os.environ.get("MLSPEC_FINGERPRINT_WORKERS", "").strip()
    parallel = forced != "1" and size >= PARALLEL_MIN and cpus() > 1 and (forced == "2" or not oversubscribed())
    cut = _split_point(fd, size) if parallel and fork_context() is not None else size
    if cut >= size:
        return [_sorted_unique(_hash_range(fd, 0, size, header, where, MAX_LINE_BYTES))]
    # A forked child hashes the second half and hands back its sorted values through a pipe:
    # a status byte, the count, then the values in native order (same machine, same build).
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child; the parent checks what it sends
        code = 0
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                try:
                    values = _sorted_unique(_hash_range(fd, cut, size, False, where, MAX_LINE_BYTES))
                    pipe.write(b"\x00" + struct.pack("=Q", values.size))
                    pipe.write(values.tobytes())  # one copy of half the set, in the child
                except InputError as exc:
                    pipe.write(b"\x01" + str(exc).encode("utf-8", "replace"))
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            first = _sorted_unique(_hash_range(fd, 0, cut, header, where, MAX_LINE_BYTES))
            status = pipe.read(1)
            if status == b"\x01":
                raise InputError(pipe.read(64 * 1024).decode("utf-8", "replace"))
            head = pipe.read(8) if status == b"\x00" else b""
            if len(head) != 8:
                raise InputError(f"{where}: the fingerprinting worker failed; MLSPEC_FINGERPRINT_WORKERS=1 runs "
                                 "it in one process")
            (count,) = struct.unpack("=Q", head)
            second = np.empty(count, dtype=np.uint64)
            got = pipe.readinto(second.view(np.uint8).data) if count else 0
            if got != count * 8:
                raise InputError(f"{where}: the fingerprinting worker's result was cut short")
    finally:
        os.waitpid(pid, 0)
    return [first, second]


def _merged(runs: list[np.ndarray], step: int = BLOCK_VALUES) -> Iterator[np.ndarray]:
    """Sorted, unique pieces of the union of sorted, unique runs (a row in both halves counts once)."""
    if len(runs) == 1:
        for start in range(0, runs[0].size, step):
            yield runs[0][start:start + step]
        return
    a, b = runs
    i = j = 0
    while i < a.size or j < b.size:
        ta, tb = a[i:i + step], b[j:j + step]
        # Everything up to the smaller of the two last values: nothing later can be smaller.
        limit = min(ta[-1], tb[-1]) if ta.size and tb.size else (ta[-1] if ta.size else tb[-1])
        ka, kb = int(np.searchsorted(ta, limit, "right")), int(np.searchsorted(tb, limit, "right"))
        piece = np.concatenate((ta[:ka], tb[:kb]))
        i, j = i + ka, j + kb
        yield _sorted_unique(piece)


def _sorted_unique_sorted(values: np.ndarray) -> np.ndarray:
    """Drop repeats of a sorted array."""
    if values.size > 1:
        repeats = np.flatnonzero(values[1:] == values[:-1])
        if repeats.size:
            values = np.delete(values, repeats + 1)
    return values


def _runs_of_csv(path: str | os.PathLike[str], header: bool) -> list[np.ndarray]:
    from mlspec_attest._internal.files import open_regular

    where = os.fspath(path)
    fd = open_regular(path, what="data file")  # no FIFO or device: it would hang the read
    try:
        try:
            return _hash_file(fd, os.fstat(fd).st_size, header, where)
        except OSError as exc:
            raise InputError(f"{where}: cannot read the data file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def fingerprint_values_of_csv(path: str | os.PathLike[str], header: bool = True) -> np.ndarray:
    """Sorted, unique v2 fingerprints of a CSV's rows (streamed; memory ~ 8 bytes a row)."""
    runs = _runs_of_csv(path, header)
    return runs[0] if len(runs) == 1 else np.concatenate(list(_merged(runs)))


def fingerprints_of_csv(path: str | os.PathLike[str], header: bool = True) -> bytes:
    """The v2 fingerprint blob of a CSV (what split attests for a set).

    The bytes() copy is made after the runs are freed, so it does not raise the peak.
    """
    return bytes(encode(_merged(_runs_of_csv(path, header))))


def write_fingerprints(csv_path: str | os.PathLike[str], out: str | os.PathLike[str], header: bool = True) -> Path:
    data = fingerprints_of_csv(csv_path, header)
    from mlspec_attest._internal.files import write_file

    out = Path(out)
    return write_file(out.parent, out.name, data, replace=True, what="fingerprints")


# -- the v2 blob ------------------------------------------------------------------------
def _plane_bytes(plane: np.ndarray) -> bytes:
    """One byte plane: zlib when a sample shows it compresses (the high planes), raw otherwise."""
    raw = plane.tobytes()
    sample = raw[:4096]
    if len(zlib.compress(sample, 1)) < 0.9 * len(sample):
        # Z_RLE: runs plus Huffman codes, what small-valued and all-zero planes need; fast.
        deflater = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
        packed = deflater.compress(raw) + deflater.flush()
        if len(packed) < len(raw):
            return _PLANE.pack(ZLIB, len(packed)) + packed
    return _PLANE.pack(RAW, len(raw)) + raw


def encode(values: np.ndarray | Iterable[np.ndarray], block_values: int = BLOCK_VALUES) -> bytearray:
    """The v2 blob of sorted, unique uint64 fingerprints, given whole or as ascending pieces (docs/format.md)."""
    pieces: Iterable[np.ndarray] = [values] if isinstance(values, np.ndarray) else values
    out = bytearray(_HEADER.pack(MAGIC, VERSION, HASH_XXH3_64, 0, block_values, 0))
    prev: np.uint64 | None = None
    count = 0
    pending: list[np.ndarray] = []
    held = 0

    def flush(block: np.ndarray) -> None:
        nonlocal prev
        if block.size > 1 and not bool(np.all(block[1:] > block[:-1])) or \
                prev is not None and block.size and not block[0] > prev:
            raise ValueError("fingerprints must be sorted and unique")
        deltas = np.diff(block, prepend=np.uint64(0) if prev is None else prev).astype(_LE64, copy=False)
        prev = block[-1]
        planes = deltas.view(np.uint8).reshape(-1, 8)
        for k in range(8):
            out.extend(_plane_bytes(np.ascontiguousarray(planes[:, k])))

    for piece in pieces:
        piece = np.asarray(piece, dtype=np.uint64)
        count += piece.size
        pending.append(piece)
        held += piece.size
        while held >= block_values:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            flush(joined[:block_values])
            pending, held = [joined[block_values:]], joined.size - block_values
    if held:
        flush(np.concatenate(pending) if len(pending) > 1 else pending[0])
    out[:_HEADER.size] = _HEADER.pack(MAGIC, VERSION, HASH_XXH3_64, 0, block_values, count)
    return out  # a bytearray: a bytes() copy would double the peak for a 70 MB blob


def encode_v1(values: Iterable[int]) -> bytes:
    """The v1 blob (8 bytes a row); kept for tests and auditors comparing old chains."""
    return b"".join(_ITEM.pack(int(v)) for v in values)


class _Reader:
    """Exact reads from a stream, hashing what was read (the blob's digest is what split signed)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.sha256.update(data)
        return data

    def exact(self, n: int, what: str) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise ValueError(f"truncated: {what} ends early")
        return data


def _planes(reader: _Reader, where: str, n: int) -> list[bytes]:
    """The 8 byte planes of one block of ``n`` values, each checked and exactly ``n`` bytes."""
    planes = []
    for _k in range(8):
        codec, length = _PLANE.unpack(reader.exact(_PLANE.size, "a plane header"))
        if codec == RAW and length == n:
            data = reader.exact(length, "a plane")
        elif codec == ZLIB and length <= 2 * n + 64:
            inflater = zlib.decompressobj()
            try:
                data = inflater.decompress(reader.exact(length, "a plane"), n)  # bounded: never more than n
            except zlib.error as exc:
                raise ValueError(f"{where}: a compressed plane is not valid zlib ({exc})") from None
            if len(data) != n or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
                raise ValueError(f"{where}: a compressed plane does not hold exactly {n} bytes")
        else:
            raise ValueError(f"{where}: plane codec {codec} with length {length} is not valid for {n} values")
        planes.append(data)
    return planes


def _values_numpy(planes: list[bytes], n: int, prev: int | None, where: str) -> np.ndarray:
    deltas = np.empty(n, dtype=_LE64)
    columns = deltas.view(np.uint8).reshape(n, 8)
    for k, data in enumerate(planes):
        columns[:, k] = np.frombuffer(data, dtype=np.uint8)
    # Strictly increasing, no wrap-around: every delta >= 1 (the very first value may be 0)
    # and the running sum never passes 2^64 (a wrapped sum would be smaller than its predecessor).
    values = np.cumsum(deltas, dtype=np.uint64)
    if prev is not None:
        if int(values[0]) > 2**64 - 1 - prev or int(deltas[0]) == 0:
            raise ValueError(f"{where}: fingerprints are not sorted and unique")
        values += np.uint64(prev)
    if n > 1 and not bool(np.all(values[1:] > values[:-1])):
        raise ValueError(f"{where}: fingerprints are not sorted and unique")
    return values


def _values_python(planes: list[bytes], n: int, prev: int | None, where: str) -> list[int]:
    """The same values and refusals as ``_values_numpy``, without importing numpy (~50 ms).

    For small sets only (``SMALL_SET``): a 13-stage demo's sets are a few hundred rows, and
    numpy's import was an eighth of its whole ``mlspec verify``. The planes are interleaved
    back into little-endian uint64s by C slice assignment; the sums are exact Python ints,
    so "no wrap-around" is "never past 2^64 - 1" and "strictly increasing" is "every delta
    after the set's first value at least 1", the two conditions the numpy path checks.
    """
    interleaved = bytearray(8 * n)
    for k, data in enumerate(planes):
        interleaved[k::8] = data
    deltas = array.array("Q")
    deltas.frombytes(interleaved)
    if sys.byteorder != "little":
        deltas.byteswap()
    first = 0 if prev is None else 1  # the set's very first value may be 0; every later delta is >= 1
    if n and (deltas[0] < first or min(deltas[1:], default=1) < 1):
        raise ValueError(f"{where}: fingerprints are not sorted and unique")
    values = list(itertools.accumulate(deltas)) if prev is None else list(itertools.accumulate(deltas, initial=prev))[1:]
    if values and values[-1] > 2**64 - 1:
        raise ValueError(f"{where}: fingerprints are not sorted and unique")
    return values


def _decode_v2_blocks(reader: _Reader, where: str, block_values: int, count: int) -> Iterator[Any]:
    """The blocks after a checked header (FingerprintStream): numpy arrays, or lists for a small set."""
    small = count <= SMALL_SET
    prev: int | None = None
    for start in range(0, count, block_values):
        n = min(block_values, count - start)
        planes = _planes(reader, where, n)
        values: Any = _values_python(planes, n, prev, where) if small else _values_numpy(planes, n, prev, where)
        prev = int(values[-1])
        yield values
    if reader.read(1):
        raise ValueError(f"{where}: trailing bytes after the last block")


class FingerprintStream:
    """A v1 or v2 blob read block by block: the gate streams the largest set instead of holding it.

    ``count`` is known once the stream is open (v2: the header; v1: the size); ``blocks()``
    yields sorted values, checking the form as it goes; ``sha256`` is that of every byte
    read, final once ``blocks()`` is exhausted (it then also refuses trailing bytes).
    """

    def __init__(self, source: IO[bytes] | bytes, where: str, v1_limit: int | None = None) -> None:
        self.where = where
        self.file: Any = None  # the caller's open file, if it wants this object to carry it
        self._reader = _Reader(io.BytesIO(source) if isinstance(source, bytes) else source)
        magic = self._reader.read(len(MAGIC))
        self.version = 2 if magic == MAGIC else 1
        self._v1: Any = None  # the values of a v1 blob: a numpy array, or a list for a small set
        if self.version == 2:
            head = self._reader.exact(_HEADER.size - len(MAGIC), "header")
            version, hash_id, reserved, self._block_values, self.count = struct.unpack(">BBHIQ", head)
            if version != VERSION or hash_id != HASH_XXH3_64 or reserved:
                raise ValueError(f"{where}: unknown fingerprint format version {version}, hash {hash_id}")
            if self.count > MAX_FINGERPRINTS:
                raise ValueError(f"{where}: {self.count} fingerprints, over the {MAX_FINGERPRINTS} limit")
            # Blocks below MIN_BLOCK_VALUES cost 8 plane headers a few values (a 1 MB blob decoding for
            # seconds); only a set that small itself (at most MIN_BLOCK_VALUES blocks) may use them.
            low = 1 if self.count <= MIN_BLOCK_VALUES else MIN_BLOCK_VALUES
            if not low <= self._block_values <= MAX_BLOCK_VALUES:
                raise ValueError(f"{where}: block size {self._block_values} is outside {low}..{MAX_BLOCK_VALUES}")
            return
        rest = magic + self._reader.read(-1 if v1_limit is None else v1_limit + 1 - len(magic))
        if v1_limit is not None and len(rest) > v1_limit:
            raise ValueError(f"{where}: a v1 fingerprint file over {v1_limit} bytes; refusing to read it")
        if len(rest) % 8:
            raise ValueError(f"{where}: length {len(rest)} is not a multiple of 8")
        if len(rest) // 8 <= SMALL_SET:
            self._v1 = [v for (v,) in _ITEM.iter_unpack(rest)]
            increasing = all(a < b for a, b in zip(self._v1, self._v1[1:]))
        else:
            self._v1 = np.frombuffer(rest, dtype=">u8").astype(np.uint64)
            increasing = not self._v1.size or bool(np.all(self._v1[1:] > self._v1[:-1]))
        self.count = len(self._v1)
        if not increasing:
            raise ValueError(f"{where}: fingerprints are not sorted and unique")

    @property
    def sha256(self) -> str:
        return self._reader.sha256.hexdigest()

    def blocks(self) -> Iterator[Any]:
        """Sorted values block by block: numpy uint64 arrays, or lists of ints for a small set."""
        if self._v1 is not None:
            for start in range(0, len(self._v1), BLOCK_VALUES):
                yield self._v1[start:start + BLOCK_VALUES]
            return
        yield from _decode_v2_blocks(self._reader, self.where, self._block_values, self.count)

    def values(self) -> Any:
        """All values (8 bytes a row), grown block by block (realloc, no second copy); a list if small."""
        if self._v1 is not None:
            return self._v1
        if self.count <= SMALL_SET:
            return [v for block in self.blocks() for v in block]
        values = np.empty(0, dtype=np.uint64)
        for block in self.blocks():
            n = values.size
            values.resize(n + block.size, refcheck=False)
            values[n:] = block
        return values


def read_fingerprints(source: IO[bytes] | bytes, where: str, v1_limit: int | None = None) -> tuple[np.ndarray, str]:
    """Decode a v1 or v2 blob, checking its form; returns the values and the sha256 of the bytes read.

    Memory: the values (8 bytes a row) plus one block; a compressed plane can never
    inflate past its block (zlib's max_length), so a crafted blob cannot blow it up.
    A v1 blob is read whole, refused past ``v1_limit`` bytes.
    """
    stream = FingerprintStream(source, where, v1_limit)
    values = np.asarray(stream.values(), dtype=np.uint64)  # always an array here (the gate takes lists)
    return values, stream.sha256


def parse_fingerprints(data: bytes, where: str) -> np.ndarray:
    """Decode (v1 or v2) and check the form (whole items, strictly increasing)."""
    return read_fingerprints(data, where)[0]


def as_array(values: Any) -> np.ndarray:
    """Sorted values as a uint64 array (a small set's list, converted once rather than per block)."""
    return np.asarray(values, dtype=np.uint64)


def overlap(a: Any, b: Any) -> int:
    """Values in both sorted, unique sets (binary search of the smaller in the larger)."""
    if isinstance(a, list) and isinstance(b, list):  # two small sets: no numpy import
        return len(set(a).intersection(b))
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    if a.size < b.size:
        a, b = b, a
    if not b.size or not a.size:
        return 0
    at = np.searchsorted(a, b)
    np.minimum(at, a.size - 1, out=at)
    return int(np.count_nonzero(a[at] == b))


def recompute_matches(blob: bytes, csv_path: str | os.PathLike[str], header: bool = True) -> bool:
    """Whether a blob is the fingerprint set of a CSV (the check only a holder of the data can make)."""
    values, _ = read_fingerprints(blob, os.fspath(csv_path))
    if blob[:len(MAGIC)] == MAGIC:
        again = fingerprint_values_of_csv(csv_path, header)
    else:
        from mlspec_attest._internal.files import open_stream, read_lines

        with open_stream(csv_path, what="data file") as fh:
            # Rows end as csv's do (CRLF, LF or a lone CR), as in v2: a CR-joined copy hides no row.
            rows = (row for line in read_lines(fh, os.fspath(csv_path))
                    for row in line.rstrip(b"\r\n").split(b"\r"))
            if header:
                next(rows, None)
            again = np.array(sorted({row_fingerprint_v1(r) for r in rows if r.strip()}), dtype=np.uint64)
    return bool(np.array_equal(values, again))


def is_fingerprint_role(role: str | None) -> bool:
    return bool(role) and role.startswith(FINGERPRINT_ROLE_PREFIX)  # type: ignore[union-attr]


def require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: fingerprint file not found")
